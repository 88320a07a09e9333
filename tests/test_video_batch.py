"""Several clips as Dask tasks (one clip per task) through the batch machinery's cluster and workers."""
import pytest

pytest.importorskip("av", reason="needs the video extra")
pytest.importorskip("cv2", reason="needs the video extra")
pytest.importorskip("distributed", reason="needs the batch extra")

from nstyle.app.batch.progress import JobsProgress  # noqa: E402
from nstyle.app.video.batch import run_video_batch  # noqa: E402
from nstyle.app.video.media import open_source, write_video  # noqa: E402
from nstyle.errors import InputError  # noqa: E402

from .clitools import nstyle, random_weights_file, stripes_image  # noqa: E402
from .test_video_clip import clip_images  # noqa: E402

FAST = {"content_layers": ("relu2_1",), "style_layers": ("relu1_1", "relu2_1")}


@pytest.mark.slow
def test_two_clips_on_a_local_cluster(tmp_path, capsys):
    stripes_image(48, 48).save(tmp_path / "style.png")
    a = write_video(tmp_path / "a.mp4", clip_images(frames=4, width=48, height=36), 10)
    (tmp_path / "b").mkdir()
    for i, img in enumerate(clip_images(frames=3, width=48, height=36, seed=5), 1):
        img.save(tmp_path / "b" / f"frame{i:02d}.png")
    weights = random_weights_file(tmp_path)
    jobs = run_video_batch([a, tmp_path / "b"], tmp_path / "style.png", tmp_path / "out", size=48, iters=3,
                           weights=weights, workers=2, threads=1, progress=JobsProgress(mode="lines"), **FAST)
    assert [j.result["status"] for j in jobs] == ["done", "done"], [j.result for j in jobs]
    assert open_source(tmp_path / "out" / "a.mp4").count == 4 and open_source(tmp_path / "out" / "b.mp4").count == 3
    assert "[2/2] done" in capsys.readouterr().err
    with pytest.raises(InputError, match="clip .*missing.mp4: .*no such file"):
        run_video_batch([a, tmp_path / "missing.mp4"], tmp_path / "style.png", tmp_path / "out2", weights=weights)
    r = nstyle(tmp_path, "video", "style.png", "--clips", "a.mp4", "b", "-o", "out3", "--size", "48", "--iters", "2",
               "--weights", weights, "--workers", "1", "--content-layers", "relu2_1", "--style-layers", "relu1_1")
    assert r.code == 0, r
    assert sorted(p.name for p in (tmp_path / "out3").iterdir()) == ["a.mp4", "b.mp4"]
