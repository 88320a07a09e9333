"""``nstyle video``: stylised video without flicker (Ruder, Dosovitskiy & Brox 2016).

    driver.py     stylize_video, prepare_video (every check before any weights load), VideoPlan
    run.py        run_video: the passes over the frames, the container at the end or on Ctrl-C;
                  VideoResult (the consistency figures), VideoInterrupted
    frame.py      one frame: stylize's stages with the temporal term
    objective.py  the temporal term at a stage's size (the term: model/terms/temporal.py)
    flow.py       OpenCV's DIS / Farneback flow; the links (flow + reliability) between frames
    media.py      PyAV in and out (and folders of numbered frames), audio copied through
    store.py      the frames folder: finished frames kept for a rerun with the same settings
    progress.py   progress over frames with an ETA
    batch.py      several clips as Dask tasks (one per clip), on ``nstyle batch``'s cluster and workers

PyAV and OpenCV are imported only when a video is read or a flow computed (``pip install 'nstyle[video]'``).
"""
from .driver import DEFAULT_TEMPORAL_WEIGHT, VideoInterrupted, VideoPlan, VideoResult, prepare_video, stylize_video  # noqa: F401
from .run import run_video  # noqa: F401
