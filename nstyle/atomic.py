"""Atomic file writes: everything nstyle writes goes to a temporary file beside the target, then is
renamed over it, so a crash, a full disk or Ctrl-C part-way leaves any previous file intact and no
partial one.

A target that exists and is not a regular file (a device such as /dev/null, a FIFO, a socket, or a
symlink to one) is refused: renaming over it would replace the device node itself. Errors name the
target, never the temporary file.
"""
import contextlib
import os
import stat
import tempfile


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
    try:
        fd, tmp = tempfile.mkstemp(prefix=".nstyle-", suffix=os.path.splitext(path)[1] + ".part", dir=folder)
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
