"""The up-front checks every command that runs the network makes, in one function, before any weights
load or any iteration runs: the weights file, the device, every output (``app/files/outputs.py``: format,
folder, writability, not an input -- the weights included -- not a device or FIFO, no two the same, no
snapshot over another file), matplotlib for --plot, and the memory the run needs. So a run that
cannot finish fails in its first second, whichever command started it.
"""
from ..app.files.outputs import check_outputs, read_paths
from ..app.files.runlog import require_matplotlib
from ..backend import resolve_device
from ..errors import WeightsError
from ..weights.guard import check_regular


def check_weights_file(path):
    """A --weights file that is not there, or is a folder, FIFO or device, fails now, not after the
    images have been read."""
    if path:
        try:
            check_regular(path)
        except WeightsError as exc:
            raise WeightsError(exc.message, hint="run `nstyle weights fetch` for the default weights, or give "
                                                 "another --weights") from None


def check_run(*, reads, weights, device, outputs=(), plans=(), check_memory=True, snapshots_of=None,
              snapshot_every=0, plot=None):
    """Refuse (InputError, WeightsError or DeviceError: exit 2) a run that cannot finish.

    reads: the input files; weights: the --weights value (None: $NSTYLE_WEIGHTS or the cache);
    device: the --device value; outputs: (path, what, is_image) for every file the run writes;
    plans: the run's stylize plans (their memory estimates are checked); snapshots_of: the image whose
    --save-every snapshots are written, every ``snapshot_every`` iterations; plot: the --plot path.
    """
    check_weights_file(weights)
    resolve_device(device)  # --device gpu without CuPy or a GPU: one line, exit 2
    steps = ()
    if snapshots_of and plans:
        steps = range(snapshot_every, plans[0].total_iters + 1, snapshot_every)
    check_outputs(outputs, read_paths(reads, weights), snapshots_of=snapshots_of, snapshot_steps=steps)
    if plot:
        require_matplotlib()
    if check_memory and plans:
        max(plans, key=lambda p: p.memory.total).check_memory()
