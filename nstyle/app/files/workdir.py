"""nstyle's own work folders -- a tiled run's tiles and base, a video's frames and pass folders, a sheet's
cells -- and the files ("pieces") it keeps in them to resume a run.

A work folder is where nstyle writes a finished piece and later trusts it enough to skip redoing it, and
where it deletes what it wrote once the run is over. Anything else found there -- a symbolic link, a
folder, a file of the wrong size or content, a PNG that declares a huge picture -- was not written by
nstyle and is neither used nor followed out of the folder:

- Every path is opened one component at a time below the work folder with ``O_NOFOLLOW`` (the folder
  itself too): a symlink at any level, a piece or a pass folder, reads as "not there" (the piece is
  redone) and is never deleted through; a work folder that is itself a symlink is refused.
- A piece is written from bytes encoded in memory (atomically, ``atomic.py``) and its record -- size in
  bytes, SHA-256, picture size -- goes into the folder's JSON file. A piece is trusted only when it is a
  regular file whose size and SHA-256 match its record; it is then decoded from the bytes that were
  checked (no second open) with the pixel limit set to the recorded picture size.
- A piece is deleted only when ``lstat`` (through the same component-by-component walk) says it is a
  regular file, and a folder only with ``rmdir`` (which removes an empty folder, never a link).

Races with another process rewriting the folder while nstyle runs are out of scope; the checks make a
planted file harmless, not a concurrent attacker.
"""
import hashlib
import io
import os
import stat

from PIL import Image

from ...atomic import atomic_write
from ...errors import InputError
from .imageio import output_format

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


def _parts(rel):
    parts = [p for p in os.fspath(rel).replace("\\", "/").split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise ValueError(f"{rel!r} leaves the work folder")
    return parts


def _open_dir(folder, parts):
    """A descriptor of ``folder``/``parts`` opened without following any link at any level (the folder
    itself included); None when one is missing, a link or not a folder."""
    try:
        fd = os.open(folder, _DIR_FLAGS)
    except OSError:
        return None
    for part in parts:
        try:
            sub = os.open(part, _DIR_FLAGS, dir_fd=fd)
        except OSError:
            os.close(fd)
            return None
        os.close(fd)
        fd = sub
    return fd


def check_folder(folder, what):
    """InputError unless ``folder`` is missing or a real folder (not a link to one, not a file)."""
    folder = os.fspath(folder)
    try:
        mode = os.lstat(folder).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise InputError(f"{what} {folder}: {exc.strerror}") from None
    if stat.S_ISLNK(mode):
        raise InputError(f"{what} {folder} is a symbolic link; nstyle keeps its work only in a real folder",
                         hint="give the folder it points to, or write the output elsewhere")
    if not stat.S_ISDIR(mode):
        raise InputError(f"{what} {folder} exists and is not a folder", hint="move it away")


def make_folder(folder, rel="", what="work folder"):
    """Create ``folder`` and ``folder/rel`` as needed; InputError when a level is a link or a file."""
    check_folder(folder, what)
    os.makedirs(folder, exist_ok=True)
    check_folder(folder, what)
    path = os.fspath(folder)
    for part in _parts(rel):
        path = os.path.join(path, part)
        check_folder(path, what)
        try:
            os.mkdir(path)
        except FileExistsError:
            check_folder(path, what)


def encode(img, rel):
    """(bytes of ``img`` in the format ``rel``'s suffix names, the record that identifies them)."""
    buffer = io.BytesIO()
    img.save(buffer, format=output_format(rel))
    data = buffer.getvalue()
    return data, {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(), "size": list(img.size)}


def write_piece(folder, rel, img, what="work file"):
    """Write ``img`` atomically to ``folder/rel`` (its folders made as needed); returns its record.
    InputError when something that is not a regular file stands at that name (a link, a folder)."""
    parts = _parts(rel)
    make_folder(folder, os.path.join(*parts[:-1]) if len(parts) > 1 else "")
    path = os.path.join(os.fspath(folder), *parts)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None and not stat.S_ISREG(mode):
        kind = "a symbolic link" if stat.S_ISLNK(mode) else "a folder" if stat.S_ISDIR(mode) else "not a file"
        raise InputError(f"{what} {path} is {kind}, not a file nstyle wrote; nstyle will not write through it",
                         hint="move it away and run again")
    data, record = encode(img, rel)
    atomic_write(path, lambda fh: fh.write(data))
    return record


def read_file(folder, rel, limit):
    """The bytes of ``folder/rel`` when it is a regular file reached without links and of at most
    ``limit`` bytes; else None."""
    parts = _parts(rel)
    fd = _open_dir(folder, parts[:-1])
    if fd is None:
        return None
    try:
        file_fd = os.open(parts[-1], _FILE_FLAGS, dir_fd=fd)
    except OSError:
        return None
    finally:
        os.close(fd)
    st = os.fstat(file_fd)
    if not stat.S_ISREG(st.st_mode) or st.st_size > limit:  # a folder, a FIFO, a device: not ours
        os.close(file_fd)
        return None
    with os.fdopen(file_fd, "rb") as fh:
        data = fh.read(limit + 1)
    return data if len(data) <= limit else None


def read_piece(folder, rel, record):
    """The bytes of the piece ``rel`` when they are exactly those its record describes; else None."""
    if not _valid_record(record):
        return None
    data = read_file(folder, rel, record["bytes"])
    if data is None or len(data) != record["bytes"] or hashlib.sha256(data).hexdigest() != record["sha256"]:
        return None
    return data


def load_piece(folder, rel, record):
    """The piece ``rel`` as an RGB image when it checks out against its record (see the module
    docstring); None otherwise (missing, a link, changed, undecodable)."""
    data = read_piece(folder, rel, record)
    if data is None:
        return None
    width, height = record["size"]
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = width * height  # Pillow refuses twice this before decoding a pixel
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.size != (width, height):
                return None
            return im.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _valid_record(record):
    return (isinstance(record, dict) and isinstance(record.get("bytes"), int) and record["bytes"] >= 0
            and isinstance(record.get("sha256"), str) and isinstance(record.get("size"), list)
            and len(record["size"]) == 2 and all(isinstance(v, int) and v > 0 for v in record["size"]))


def remove_file(folder, rel):
    """Delete ``folder/rel`` when it is a regular file reached without links; True when deleted."""
    parts = _parts(rel)
    fd = _open_dir(folder, parts[:-1])
    if fd is None:
        return False
    try:
        if not stat.S_ISREG(os.stat(parts[-1], dir_fd=fd, follow_symlinks=False).st_mode):
            return False
        os.unlink(parts[-1], dir_fd=fd)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def remove_folder(folder, rel=""):
    """Remove the folder ``folder/rel`` when it is empty (rmdir never removes a link or its target)."""
    parts = _parts(rel)
    if not parts:
        try:
            if stat.S_ISDIR(os.lstat(folder).st_mode):
                os.rmdir(folder)
                return True
        except OSError:
            pass
        return False
    fd = _open_dir(folder, parts[:-1])
    if fd is None:
        return False
    try:
        os.rmdir(parts[-1], dir_fd=fd)
        return True
    except OSError:  # not empty, a link, gone: it stays
        return False
    finally:
        os.close(fd)
