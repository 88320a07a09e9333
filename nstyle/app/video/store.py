"""Where a video run keeps its finished frames, so that a rerun with the same settings continues.

Frames are PNG files, ``frame_000001.png`` on, written atomically as each one is finished, with
``nstyle-video.json`` beside them: the settings hash and one record per finished frame (its losses and
temporal error). For a folder OUTPUT the frames are the output itself; for a video file they sit in
``OUTPUT.frames/`` until the container is written (then the folder goes, unless asked to keep it).
With ``--passes N`` the frames of the earlier passes go in ``pass1/`` ... ``pass<N-1>/`` inside it.

A frame on disk counts as done only when the JSON lists it (written after the PNG) and the settings hash
matches. Frames written with other settings are removed -- only the files this module names, never
anything else in the folder; a folder that holds frame files but no ``nstyle-video.json`` is refused.
"""
import json
import os
import re

from PIL import Image

from ...atomic import atomic_write
from ...errors import InputError
from ...version import __version__
from ..files.imageio import load_rgb, save_image
from ..batch.worker import settings_hash

STATE_FILE = "nstyle-video.json"
_FRAME = re.compile(r"^frame_\d{6}\.png$")


def work_folder(output, kind):
    """The folder that holds the frames: OUTPUT itself for a folder, OUTPUT.frames for a video file."""
    output = os.fspath(output).rstrip("/\\") or os.fspath(output)
    return output if kind == "folder" else output + ".frames"


class FrameStore:
    def __init__(self, folder, settings, passes=1):
        self.folder, self.settings, self.passes = os.fspath(folder), settings, passes
        self.hash = settings_hash(settings)
        self.records = {}   # "pass:frame" -> record

    # -- checks and opening ---------------------------------------------------------------------
    def check(self):
        """InputError when the folder cannot be ours: a file, or frames that nstyle did not write."""
        if os.path.lexists(self.folder) and not os.path.isdir(self.folder):
            raise InputError(f"frames folder {self.folder}: is a file, not a folder", hint="move it away")
        if os.path.isdir(self.folder) and not os.path.isfile(self._state_path()):
            if any(_FRAME.match(n) for n in os.listdir(self.folder)):
                raise InputError(f"frames folder {self.folder}: holds frame files that nstyle did not write "
                                 f"(no {STATE_FILE})", hint="choose another output, or move those files away")

    def open(self, log=None):
        """Create the folder, or keep its frames when their settings match (else remove them).
        Returns the number of final frames already done."""
        self.check()
        os.makedirs(self.folder, exist_ok=True)
        state = self._read_state()
        if state is not None and state.get("settings_hash") == self.hash:
            self.records = {k: r for k, r in state.get("frames", {}).items()
                            if os.path.isfile(self._path_for_key(k))}
        elif state is not None:
            removed = self._remove_frames()
            if log and removed:
                log(f"{removed} frames in {self.folder} were made with other settings: removed")
        self.save_state()
        return sum(1 for k in self.records if k.startswith(f"{self.passes}:"))

    def _read_state(self):
        try:
            with open(self._state_path(), encoding="utf-8") as fh:
                state = json.load(fh)
        except (OSError, ValueError):
            return None
        return state if isinstance(state, dict) else None

    def _remove_frames(self):
        removed = 0
        for sub in [""] + [f"pass{p}" for p in range(1, 100)]:
            folder = os.path.join(self.folder, sub)
            if not os.path.isdir(folder):
                continue
            for name in os.listdir(folder):
                if _FRAME.match(name):
                    os.remove(os.path.join(folder, name))
                    removed += 1
            if sub:
                try:
                    os.rmdir(folder)
                except OSError:
                    pass
        self.records = {}
        return removed

    # -- frames ------------------------------------------------------------------------------------
    def _state_path(self):
        return os.path.join(self.folder, STATE_FILE)

    def path(self, frame, pass_=None):
        """The PNG of frame number ``frame`` (1-based) after pass ``pass_`` (default: the last)."""
        pass_ = self.passes if pass_ is None else pass_
        sub = "" if pass_ == self.passes else f"pass{pass_}"
        return os.path.join(self.folder, sub, f"frame_{frame:06d}.png")

    def _path_for_key(self, key):
        p, k = key.split(":")
        return self.path(int(k), int(p))

    def done(self, frame, pass_=None):
        return f"{self.passes if pass_ is None else pass_}:{frame}" in self.records

    def record(self, frame, pass_=None):
        return self.records.get(f"{self.passes if pass_ is None else pass_}:{frame}")

    def load(self, frame, pass_=None):
        return load_rgb(self.path(frame, pass_), max_pixels=None, what="frame")

    def save(self, frame, image, record, pass_=None):
        """Write the frame's PNG, then list it in the JSON (so a listed frame is always complete)."""
        path = self.path(frame, pass_)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        save_image(image, path)
        self.records[f"{self.passes if pass_ is None else pass_}:{frame}"] = record
        self.save_state()

    def final_frames(self, count):
        """The final pass's frames 1.. as long as they are consecutive and done."""
        k = 1
        while k <= count and self.done(k):
            yield Image.open(self.path(k)).convert("RGB")
            k += 1

    def save_state(self):
        state = {"nstyle": __version__, "settings_hash": self.hash, "settings": self.settings,
                 "frames": self.records}
        text = json.dumps(state, indent=1, sort_keys=True, default=str)
        atomic_write(self._state_path(), lambda fh: fh.write(text + "\n"), binary=False)

    def clean(self, remove_all):
        """After a finished run: remove the earlier passes' frames, and with ``remove_all`` (a video output,
        now in its container) the whole folder -- only the files this module writes."""
        if remove_all:
            self._remove_frames()
            for path in (self._state_path(), self.folder):
                try:
                    (os.rmdir if path == self.folder else os.remove)(path)
                except OSError:
                    pass
            return
        for p in range(1, self.passes):
            folder = os.path.dirname(self.path(1, p))
            for name in os.listdir(folder) if os.path.isdir(folder) else ():
                if _FRAME.match(name):
                    os.remove(os.path.join(folder, name))
            try:
                os.rmdir(folder)
            except OSError:
                pass
