"""The up-front checks every command that runs the network makes, in one function, before any weights
load or any iteration runs: the thread counts in the environment, the weights file, the device, every
output (``app/files/outputs.py``: format, folder, writability, not an input -- the weights included --
not a device or FIFO, no two the same, no snapshot over another file), matplotlib for --plot, and the
memory the run needs. So a run that cannot finish fails in its first second, whichever command started it.
"""
import os

from ..app.files.outputs import check_outputs, read_paths
from ..app.files.runlog import require_matplotlib
from ..backend import resolve_device
from ..errors import InputError, WeightsError
from ..weights.guard import check_regular

MAX_THREADS = 1024  # more would only exhaust the machine: each thread has its own stack and buffers


def check_thread_environment(environ=None):
    """InputError (exit 2) naming the variable when a thread count nstyle reads from the environment
    (``cpu/threads.py``: NSTYLE_NUM_THREADS, OMP_NUM_THREADS, ...) is set but is not a whole number from
    1 to MAX_THREADS: the kernels would otherwise pass over it silently and run on another count than
    the one the user asked for."""
    from ..cpu.threads import ENV_VARS  # noqa: PLC0415
    environ = os.environ if environ is None else environ
    for var in ENV_VARS:
        text = environ.get(var, "").strip()
        if not text:
            continue
        first = text.split(",")[0].strip()  # OMP_NUM_THREADS may list one count per nesting level
        n = int(first) if first.isdigit() else 0
        if not 1 <= n <= MAX_THREADS:
            raise InputError(f"environment variable {var}={text!r}: expected a whole number of threads from 1 to "
                             f"{MAX_THREADS}", hint=f"unset {var}, or set it to the number of cores to use")


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
    check_thread_environment()
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
