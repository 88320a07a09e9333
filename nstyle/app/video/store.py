"""Where a video run keeps its finished frames, so that a rerun with the same settings continues.

Frames are PNG files, ``frame_000001.png`` on, written atomically as each one is finished, with
``nstyle-video.json`` beside them: the settings hash and one record per finished frame (its losses and
temporal error). For a folder OUTPUT the frames are the output itself; for a video file they sit in
``OUTPUT.frames/`` until the container is written (then the folder goes, unless asked to keep it).
With ``--passes N`` the frames of the earlier passes go in ``pass1/`` ... ``pass<N-1>/`` inside it.

A frame on disk counts as done only when the JSON lists it (written after the PNG) with its file's
record -- bytes, SHA-256, picture size -- the file is exactly that, and the settings hash matches
(``files/workdir.py``: no link is followed at any level, a planted or changed frame is made again).
Frames written with other settings are removed -- only the regular files the JSON lists, never anything
else in the folder and never through a link; a folder that holds frame files but no
``nstyle-video.json`` is refused, and so is a frames folder or a pass folder that is a link.
"""
import json
import os
import re

from ...atomic import atomic_write
from ...errors import InputError
from ...version import __version__
from ..batch.worker import settings_hash
from ..files.workdir import (
    check_folder,
    load_piece,
    make_folder,
    read_file,
    read_piece,
    remove_file,
    remove_folder,
    write_piece,
)

STATE_FILE = "nstyle-video.json"
STATE_LIMIT = 256 * 2**20  # a state file larger than this is not one nstyle wrote
_FRAME = re.compile(r"^frame_\d{6}\.png$")
_KEY = re.compile(r"^\d{1,2}:\d{1,9}$")


def work_folder(output, kind):
    """The folder that holds the frames: OUTPUT itself for a folder, OUTPUT.frames for a video file."""
    output = os.fspath(output).rstrip("/\\") or os.fspath(output)
    return output if kind == "folder" else output + ".frames"


class FrameStore:
    def __init__(self, folder, settings, passes=1):
        self.folder, self.settings, self.passes = os.fspath(folder), settings, passes
        self.hash = settings_hash(settings)
        self.records = {}   # "pass:frame" -> record
        self.files = {}     # "pass:frame" -> its PNG's record (workdir.write_piece)

    # -- checks and opening ---------------------------------------------------------------------
    def check(self):
        """InputError when the folder cannot be ours: a file, a link, or frames that nstyle did not write."""
        check_folder(self.folder, "frames folder")
        if os.path.isdir(self.folder) and self._read_state() is None:
            if any(_FRAME.match(n) for n in os.listdir(self.folder)):
                raise InputError(f"frames folder {self.folder}: holds frame files that nstyle did not write "
                                 f"(no {STATE_FILE})", hint="choose another output, or move those files away")

    def open(self, log=None):
        """Create the folder, or keep its frames when their settings match (else remove them).
        Returns the number of final frames already done."""
        self.check()
        make_folder(self.folder, what="frames folder")
        state = self._read_state()
        if state is not None and state.get("settings_hash") == self.hash:
            files = state.get("files") if isinstance(state.get("files"), dict) else {}
            frames = state.get("frames") if isinstance(state.get("frames"), dict) else {}
            self.files = {k: files[k] for k in frames if _KEY.match(str(k)) and k in files
                          and self._checked(k, files[k])}
            self.records = {k: frames[k] for k in self.files}
        elif state is not None:
            removed = self._remove_frames(state)
            if log and removed:
                log(f"{removed} frames in {self.folder} were made with other settings: removed")
        for p in range(1, self.passes):  # a pass folder that is a link: refused now, not after a pass
            check_folder(os.path.join(self.folder, f"pass{p}"), "pass folder")
        self.save_state()
        return sum(1 for k in self.records if k.startswith(f"{self.passes}:"))

    def _checked(self, key, record):
        """True when the frame file of ``key`` is exactly what its record says was written (its bytes
        hashed, not decoded: they are the bytes nstyle encoded)."""
        return read_piece(self.folder, self._rel(key), record) is not None

    def _read_state(self):
        data = read_file(self.folder, STATE_FILE, STATE_LIMIT)
        try:
            state = json.loads(data.decode("utf-8")) if data is not None else None
        except (UnicodeDecodeError, ValueError):
            return None
        return state if isinstance(state, dict) else None

    def _remove_frames(self, state=None):
        """Delete the frames a state lists (``state``: another run's; None: this one's) -- regular files
        only, never through a link -- and the pass folders they leave empty. Returns how many."""
        passes = self.passes
        if state is None:
            keys = set(self.records) | set(self.files)
        else:
            keys = {k for part in ("frames", "files") if isinstance(state.get(part), dict) for k in state[part]}
            keys = {k for k in keys if _KEY.match(str(k))}
            given = (state.get("settings") or {}).get("passes") if isinstance(state.get("settings"), dict) else None
            passes = given if isinstance(given, int) and given >= 1 else max((int(k.split(":")[0]) for k in keys),
                                                                             default=1)
        removed = sum(remove_file(self.folder, self._rel(k, passes)) for k in keys if _KEY.match(str(k)))
        for p in range(1, 100):
            remove_folder(self.folder, f"pass{p}")
        self.records, self.files = {}, {}
        return removed

    # -- frames ------------------------------------------------------------------------------------
    def _state_path(self):
        return os.path.join(self.folder, STATE_FILE)

    def path(self, frame, pass_=None):
        """The PNG of frame number ``frame`` (1-based) after pass ``pass_`` (default: the last)."""
        return os.path.join(self.folder, self._rel(self._key(frame, pass_)))

    def _key(self, frame, pass_=None):
        return f"{self.passes if pass_ is None else pass_}:{frame}"

    def _rel(self, key, passes=None):
        """A frame's path inside the folder, from its key ("pass:frame") in a run of ``passes`` passes
        (default: this one's): the last pass's frames at the top, the others in ``pass<p>/``."""
        p, k = (int(v) for v in str(key).split(":"))
        return (f"pass{p}/" if p != (passes or self.passes) else "") + f"frame_{k:06d}.png"

    def done(self, frame, pass_=None):
        return f"{self.passes if pass_ is None else pass_}:{frame}" in self.records

    def record(self, frame, pass_=None):
        return self.records.get(f"{self.passes if pass_ is None else pass_}:{frame}")

    def load(self, frame, pass_=None):
        """A finished frame as an RGB image; InputError when its file is no longer what was written."""
        key = self._key(frame, pass_)
        image = load_piece(self.folder, self._rel(key), self.files.get(key))
        if image is None:
            raise InputError(f"frame {self.path(frame, pass_)} changed or vanished while this run used it",
                             hint="run the same command again: frames that do not check out are made again")
        return image

    def save(self, frame, image, record, pass_=None):
        """Write the frame's PNG, then list it in the JSON (so a listed frame is always complete)."""
        key = self._key(frame, pass_)
        self.files[key] = write_piece(self.folder, self._rel(key), image, what="frame")
        self.records[key] = record
        self.save_state()

    def final_frames(self, count):
        """The final pass's frames 1.. as long as they are consecutive and done."""
        k = 1
        while k <= count and self.done(k):
            yield self.load(k)
            k += 1

    def save_state(self):
        state = {"nstyle": __version__, "settings_hash": self.hash, "settings": self.settings,
                 "frames": self.records, "files": self.files}
        text = json.dumps(state, indent=1, sort_keys=True, default=str)
        atomic_write(self._state_path(), lambda fh: fh.write(text + "\n"), binary=False)

    def clean(self, remove_all):
        """After a finished run: remove the earlier passes' frames, and with ``remove_all`` (a video output,
        now in its container) the whole folder -- only the files this module writes."""
        if remove_all:
            self._remove_frames()
            remove_file(self.folder, STATE_FILE)
            remove_folder(self.folder)
            return
        for key in [k for k in self.files if not k.startswith(f"{self.passes}:")]:
            remove_file(self.folder, self._rel(key))
            self.files.pop(key)
        for p in range(1, self.passes):
            remove_folder(self.folder, f"pass{p}")
        self.save_state()
