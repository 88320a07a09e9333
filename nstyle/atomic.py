"""Atomic file writes: everything nstyle writes goes to a temporary file beside the target, then is
renamed over it, so a crash, a full disk or Ctrl-C part-way leaves any previous file intact and no
partial one."""
import os
import tempfile


def _current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path, write, binary=True):
    """Call ``write(fileobj)`` on a temporary file in ``path``'s folder, then rename it to ``path``.

    The temporary file is removed on any failure (including KeyboardInterrupt) and the exception
    re-raised. Returns ``path``.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    suffix = os.path.splitext(path)[1]
    fd, tmp = tempfile.mkstemp(prefix=".nstyle-", suffix=suffix + ".part", dir=folder)
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_current_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
