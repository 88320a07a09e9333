"""What a run may write: the checks every output path passes before any work starts.

Every command (and the API's grid and reconstruction sheets) calls these with the list of every file the
run will write and every file it reads -- the images, and the weights file wherever it comes from
(``--weights``, ``$NSTYLE_WEIGHTS`` or the cache). A run is refused, in one line and before anything
loads, when an output

- is one of the inputs (by name, symlink, hard link or ``..``), or two outputs are the same file;
- is a folder, a device, a FIFO or a socket (or a symlink to one): nstyle writes by renaming a new file
  into place, which would replace the device node itself;
- lies in a folder that does not exist or cannot be written (tried for real: os.access can be wrong);
- is an image whose suffix Pillow cannot write as RGB.
"""
import os
import re
import tempfile

from ...atomic import special_file
from ...errors import InputError
from .imageio import output_format


def same_file(a, b):
    """True when the paths name one file (or would: the same resolved path when neither exists yet)."""
    try:
        if os.path.exists(a) and os.path.exists(b):
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def read_paths(paths, weights=None):
    """Every file a run reads: ``paths`` (those that are paths: images may also be in-memory) and the
    weights file it will load -- the named one, else $NSTYLE_WEIGHTS, else the cached default."""
    from ...weights.paths import default_weights_path  # noqa: PLC0415
    found = [os.fspath(p) for p in paths if isinstance(p, (str, bytes, os.PathLike))]
    found.append(os.fspath(weights or os.environ.get("NSTYLE_WEIGHTS") or default_weights_path()))
    return found


def check_output_path(path, what, inputs, image=True, probe_folder=True):
    """InputError unless ``path`` may be written by this run (see the module docstring). probe_folder:
    also check its folder (exists, can be written); a caller with many outputs checks each folder once."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise InputError(f"{what} {path}: is a folder; give a file name")
    special = special_file(path)
    if special:
        raise InputError(f"{what} {path}: is {special}, not a regular file; nstyle would replace it",
                         hint="write to a regular file")
    if image:
        output_format(path, what)
    for src in inputs:
        if src and same_file(path, src):
            raise InputError(f"{what} {path}: is also a file this run reads; nstyle never overwrites an input",
                             hint="choose another output name")
    if not probe_folder:
        return
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise InputError(f"{what} {path}: the folder {folder} does not exist", hint="create it first")
    try:  # os.access can be wrong (read-only mounts, ACLs): try it for real
        with tempfile.TemporaryFile(dir=folder, prefix=".nstyle-check-"):
            pass
    except OSError as exc:
        raise InputError(f"{what} {path}: cannot write in {folder} ({exc.strerror or exc})") from None


def snapshot_path(output, step):
    """Where ``--save-every`` writes the image of iteration ``step``: OUT's stem + _iter<step> + suffix."""
    stem, suffix = os.path.splitext(os.fspath(output))
    return f"{stem}_iter{step}{suffix}"


def _snapshot_pattern(output):
    stem, suffix = os.path.splitext(os.path.realpath(os.fspath(output)))
    return re.compile(re.escape(stem) + r"_iter\d+" + re.escape(suffix) + "$")


def check_outputs(outputs, inputs, snapshots_of=None, snapshot_steps=()):
    """Check every output: ``outputs`` is a list of (path, what, is_image). No two may be the same file.

    snapshots_of: the image whose ``--save-every`` snapshots the run will also write, at the iterations
    ``snapshot_steps``; none of them may be an input (through a link too), a special file or another
    output -- whatever its iteration number.
    """
    outputs = [(os.fspath(p), w, img) for p, w, img in outputs if p]
    for path, what, image in outputs:
        check_output_path(path, what, inputs, image)
    for i, (a, what_a, _) in enumerate(outputs):
        for b, what_b, _ in outputs[i + 1:]:
            if same_file(a, b):
                raise InputError(f"{what_a} and {what_b} name the same file {b}")
    if snapshots_of:
        for step in snapshot_steps:
            path = snapshot_path(snapshots_of, step)
            if os.path.lexists(path):  # only existing files can be a link to an input or a device
                special = special_file(path)
                if special or any(src and same_file(path, src) for src in inputs):
                    raise InputError(f"--save-every would write over {path}: it is "
                                     f"{special or 'a file this run reads'}", hint="choose another output name")
        pattern = _snapshot_pattern(snapshots_of)
        for path, what in [(p, "an input") for p in inputs if p] + [(p, w) for p, w, _ in outputs]:
            if pattern.match(os.path.realpath(path)):
                raise InputError(f"--save-every would write over {what} {path}",
                                 hint="choose another output name")
