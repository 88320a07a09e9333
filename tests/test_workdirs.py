"""nstyle's own work folders (issue 26 item 4): the cells and tiles folders (``figures/cells.CellStore``,
``tiles/run.discard``) and a video's frames and pass folders (``video/store.FrameStore``) read and delete
only the regular files nstyle wrote there. A planted link, folder, FIFO, changed file or huge PNG is made
again or refused -- never used, never decoded, never followed out of the folder."""
import json
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from nstyle.app.figures.cells import SETTINGS_FILE, CellStore
from nstyle.app.tiles.run import discard
from nstyle.app.video.store import STATE_FILE, FrameStore
from nstyle.errors import InputError

from .clitools import gradient_image

SIZE = (24, 16)


def picture(seed=0):
    return gradient_image(*SIZE, seed=seed)


def huge_png(path, side=12000):
    """A PNG of a few hundred bytes that declares side x side RGB pixels (Pillow only warns below 179
    megapixels, so opening and decoding it would allocate 3 * side**2 bytes)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (1 + 3 * side) * 4)
    Path = type(path)
    Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b""))


@pytest.fixture
def opened(monkeypatch):
    """Every path or file object ``PIL.Image.open`` is called on during the test."""
    seen, real = [], Image.open

    def spy(fp, *args, **kwargs):
        seen.append(fp)
        return real(fp, *args, **kwargs)

    monkeypatch.setattr(Image, "open", spy)
    return seen


def planted(kind, path, outside):
    """Replace ``path`` with a planted thing of ``kind``; ``outside`` is a folder beyond the work folder."""
    genuine = path.read_bytes() if path.exists() else None
    if path.exists():
        path.unlink()
    if kind == "link to the same bytes":  # even the very bytes nstyle wrote, reached through a link
        (outside / path.name).write_bytes(genuine)
        path.symlink_to(outside / path.name)
    elif kind == "other picture":  # a valid PNG of the right size, other pixels
        picture(seed=9).save(path)
    elif kind == "truncated":
        path.write_bytes(genuine[:len(genuine) // 2])
    elif kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "huge png":
        huge_png(path)
    return path


KINDS = ["link to the same bytes", "other picture", "truncated", "folder", "fifo", "huge png"]


# -- cells and tiles ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_a_planted_cell_is_made_again_never_used(kind, tmp_path, opened):
    folder, outside = tmp_path / "sheet_cells", tmp_path / "elsewhere"
    outside.mkdir()
    CellStore(folder, {"s": 1}).save("a", picture())
    assert np.array_equal(np.asarray(CellStore(folder, {"s": 1}).load("a", SIZE)), np.asarray(picture()))
    path = planted(kind, folder / "a.png", outside)
    opened.clear()
    store = CellStore(folder, {"s": 1})
    assert store.load("a", SIZE) is None, kind
    assert not any(os.fspath(p) == os.fspath(path) for p in opened if isinstance(p, (str, os.PathLike)))
    if kind in ("link to the same bytes", "folder", "fifo"):  # not a file nstyle wrote: not written through
        with pytest.raises(InputError, match="not a file nstyle wrote"):
            store.save("a", picture())
        assert kind != "link to the same bytes" or (outside / "a.png").read_bytes() != b""
    else:  # a regular file: made again, and then trusted
        store.save("a", picture(seed=3))
        assert np.array_equal(np.asarray(CellStore(folder, {"s": 1}).load("a", SIZE)), np.asarray(picture(seed=3)))


def test_a_huge_png_is_never_decoded(tmp_path, opened):
    folder = tmp_path / "cells"
    CellStore(folder, {"s": 1}).save("a", picture())
    huge_png(folder / "a.png")
    opened.clear()
    assert CellStore(folder, {"s": 1}).load("a", SIZE) is None
    assert opened == [], "the planted file was opened by Pillow"


def test_a_cells_folder_that_is_a_link_is_refused(tmp_path):
    real = tmp_path / "real"
    CellStore(real, {"s": 1}).save("a", picture())
    (tmp_path / "link_cells").symlink_to(real)
    with pytest.raises(InputError, match="symbolic link"):
        CellStore(tmp_path / "link_cells", {"s": 1})
    with pytest.raises(InputError, match="symbolic link"):
        CellStore(tmp_path / "link_cells", {"s": 2}, restart=True)
    assert (real / "a.png").is_file()


def test_a_restart_deletes_only_regular_files_it_wrote(tmp_path):
    folder, outside = tmp_path / "cells", tmp_path / "elsewhere"
    outside.mkdir()
    store = CellStore(folder, {"s": 1})
    for name in "abc":
        store.save(name, picture())
    planted("link to the same bytes", folder / "a.png", outside)
    planted("folder", folder / "b.png", outside)
    (folder / "mine.png").write_bytes(b"the user's")
    CellStore(folder, {"s": 2}, restart=True)
    assert (outside / "a.png").is_file() and (folder / "a.png").is_symlink() and (folder / "b.png").is_dir()
    assert not (folder / "c.png").exists() and (folder / "mine.png").read_bytes() == b"the user's"


def test_discarding_a_tiles_folder_never_follows_a_link(tmp_path):
    victims = tmp_path / "victims"
    store = CellStore(victims, {"s": 1})
    for name in ("base", "p1_0_0"):
        store.save(name, picture())
    (tmp_path / "out_tiles").symlink_to(victims)  # a tiles folder planted as a link to another store
    discard(tmp_path / "out_tiles")
    assert sorted(p.name for p in victims.iterdir()) == ["base.png", "p1_0_0.png", SETTINGS_FILE]

    folder = tmp_path / "tiles"
    store = CellStore(folder, {"s": 1})
    for name in ("base", "p1_0_0", "p1_0_1"):
        store.save(name, picture())
    planted("folder", folder / "base.png", tmp_path)
    planted("link to the same bytes", folder / "p1_0_0.png", victims)
    discard(folder)  # no error on the folder; the link is no regular file: it stays, and so does its target
    assert sorted(p.name for p in folder.iterdir()) == ["base.png", "p1_0_0.png"]
    assert (victims / "p1_0_0.png").is_file()


# -- video frames ----------------------------------------------------------------------------------------

def frames_store(folder, settings=None, passes=2, frames=2):
    """A FrameStore with ``frames`` frames finished in every pass."""
    store = FrameStore(folder, settings or {"s": 1}, passes)
    store.open()
    for p in range(1, passes + 1):
        for k in range(1, frames + 1):
            store.save(k, picture(seed=10 * p + k), {"loss": 1.0}, p)
    return store


@pytest.mark.parametrize("kind", KINDS)
def test_a_planted_frame_is_made_again(kind, tmp_path, opened):
    folder = tmp_path / "out"
    frames_store(folder)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    planted(kind, folder / "pass1" / "frame_000002.png", outside)
    planted(kind, folder / "frame_000001.png", outside)
    opened.clear()
    store = FrameStore(folder, {"s": 1}, 2)
    assert store.open() == 1  # of the last pass, frame 2 is still good
    assert store.done(1, 1) and not store.done(2, 1) and not store.done(1) and store.done(2)
    assert np.array_equal(np.asarray(store.load(2)), np.asarray(picture(seed=22)))
    paths = {os.fspath(p) for p in opened if isinstance(p, (str, os.PathLike))}
    assert not paths & {os.fspath(folder / "frame_000001.png"), os.fspath(folder / "pass1" / "frame_000002.png")}


def test_a_frame_changed_during_the_run_is_refused(tmp_path):
    store = frames_store(tmp_path / "out", passes=1)
    planted("other picture", tmp_path / "out" / "frame_000002.png", tmp_path)
    with pytest.raises(InputError, match="changed or vanished"):
        store.load(2)


def test_frames_and_pass_folders_that_are_links_are_refused(tmp_path):
    real = tmp_path / "real"
    frames_store(real)
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(InputError, match="symbolic link"):
        FrameStore(tmp_path / "link", {"s": 1}, 2).check()
    other = tmp_path / "other"
    other.mkdir()
    os.rename(real / "pass1", other / "pass1")
    (real / "pass1").symlink_to(other / "pass1")
    with pytest.raises(InputError, match="symbolic link"):
        FrameStore(real, {"s": 1}, 2).open()
    assert sorted(p.name for p in (other / "pass1").iterdir()) == ["frame_000001.png", "frame_000002.png"]


def test_removing_frames_never_follows_a_pass_folder_link(tmp_path):
    folder, victims = tmp_path / "out", tmp_path / "victims"
    frames_store(folder)
    os.rename(folder / "pass1", victims)
    (folder / "pass1").symlink_to(victims)
    # other settings: the old frames go -- but not through the link
    FrameStore(folder, {"s": 2}, 1).open()
    assert sorted(p.name for p in victims.iterdir()) == ["frame_000001.png", "frame_000002.png"]
    assert (folder / "pass1").is_symlink() and not (folder / "frame_000001.png").exists()


def test_cleaning_up_leaves_what_nstyle_did_not_write(tmp_path):
    folder = tmp_path / "clip.mp4.frames"
    store = frames_store(folder)
    planted("folder", folder / "frame_000002.png", tmp_path)
    (folder / "notes.txt").write_text("the user's")
    store.clean(remove_all=True)  # no error on the planted folder
    assert sorted(p.name for p in folder.iterdir()) == ["frame_000002.png", "notes.txt"]
    assert not (folder / "pass1").exists()


def test_a_state_file_that_is_a_link_is_not_ours(tmp_path):
    real = tmp_path / "real"
    frames_store(real, passes=1)
    folder = tmp_path / "out"
    folder.mkdir()
    picture().save(folder / "frame_000001.png")
    (folder / STATE_FILE).symlink_to(real / STATE_FILE)
    with pytest.raises(InputError, match="nstyle did not write"):
        FrameStore(folder, {"s": 1}, 1).check()
    assert json.loads((real / STATE_FILE).read_text())["settings"] == {"s": 1}
