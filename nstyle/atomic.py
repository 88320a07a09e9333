"""Atomic file writes: everything nstyle writes goes to a temporary file beside the target, then is
renamed over it, so a crash, a full disk or Ctrl-C part-way leaves any previous file intact and no
partial one.

A target that exists and is not a regular file (a device such as /dev/null, a FIFO, a socket, or a
symlink to one) is refused: renaming over it would replace the device node itself. Errors name the
target, never the temporary file.

A run killed outright (SIGKILL, the machine's OOM killer, a power cut) cannot remove its temporary file.
Each is named ``.nstyle-<host>-<pid>-<random><suffix>.part`` so that the next run writing into the
same folder can tell it is stale -- its process, on this host, is gone -- and remove it
(:func:`clean_stale_parts`, once per folder per process). Another host's (a shared disk) or an older
nstyle's (no pid in the name) is removed once it is a day old; a live process's is never touched.
"""
import contextlib
import hashlib
import os
import re
import stat
import tempfile
import time


def _current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def special_file(path):
    """A description ("a character device", ...) when ``path`` exists and is not a regular file or a
    folder (following symlinks), else None."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    for test, what in ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return what
    return None


STALE_AGE = 24 * 3600  # seconds after which a temporary file whose process cannot be checked is stale
_PART = re.compile(r"^\.nstyle-(?:([0-9a-f]{8})-(\d+)-)?.+\.part$")
_swept = set()


def _host_id():
    return hashlib.sha256(os.uname().nodename.encode()).hexdigest()[:8]


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # another user's process (or a number we cannot ask about): keep its file
    return True


def clean_stale_parts(folder):
    """Remove the temporary files that killed nstyle runs left in ``folder`` (see the module docstring);
    returns how many. Only regular files named as :func:`atomic_path` names them."""
    host, removed = _host_id(), 0
    try:
        names = os.listdir(folder)
    except OSError:
        return 0
    now = time.time()
    for name in names:
        match = _PART.match(name)
        if not match:
            continue
        path = os.path.join(folder, name)
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode):
            continue
        mine = match.group(1) == host and match.group(2) is not None
        stale = (not _alive(int(match.group(2)))) if mine else now - st.st_mtime > STALE_AGE
        if stale:
            try:
                os.unlink(path)
                removed += 1
            except OSError:
                pass
    return removed


@contextlib.contextmanager
def atomic_path(path):
    """A temporary file's path in ``path``'s folder, for the block to write; renamed to ``path`` (with the
    usual permissions) when the block ends, removed if it raises (KeyboardInterrupt included).

    Raises OSError naming ``path`` (not the temporary file) when the folder cannot be written or the
    disk fills, and refuses a ``path`` that is a device, FIFO or socket (or a symlink to one).
    """
    path = os.fspath(path)
    special = special_file(path)
    if special:
        raise OSError(f"refusing to replace {path}: it is {special}, not a regular file")
    folder = os.path.dirname(os.path.abspath(path))
    if folder not in _swept:
        _swept.add(folder)
        clean_stale_parts(folder)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".nstyle-{_host_id()}-{os.getpid()}-",
                                   suffix=os.path.splitext(path)[1] + ".part", dir=folder)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot write {path}: {exc.strerror}", path) from None
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_current_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except OSError as exc:
        _remove(tmp)
        if exc.filename in (tmp, None) or exc.filename == path:
            raise OSError(exc.errno, f"cannot write {path}: {exc.strerror or exc}", path) from None
        raise
    except BaseException:
        _remove(tmp)
        raise


def _remove(tmp):
    try:
        os.unlink(tmp)
    except OSError:
        pass


def atomic_write(path, write, binary=True):
    """Call ``write(fileobj)`` on a temporary file in ``path``'s folder, flush it to disk, then rename it
    to ``path`` (see :func:`atomic_path`). Returns ``path``."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
    return path
