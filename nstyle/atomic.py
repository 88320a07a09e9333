"""Atomic file writes: everything nstyle writes goes to a temporary file beside the target, then is
renamed over it, so a crash, a full disk or Ctrl-C part-way leaves any previous file intact and no
partial one."""
import contextlib
import os
import tempfile


def _current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path):
    """A temporary file's path in ``path``'s folder, for the block to write; renamed to ``path`` (with the
    usual permissions) when the block ends, removed if it raises (KeyboardInterrupt included)."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".nstyle-", suffix=os.path.splitext(path)[1] + ".part", dir=folder)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_current_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write(path, write, binary=True):
    """Call ``write(fileobj)`` on a temporary file in ``path``'s folder, flush it to disk, then rename it
    to ``path`` (see :func:`atomic_path`). Returns ``path``."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
    return path
