"""A scheduler address that does not behave: malformed addresses refused up front, servers that are not Dask
schedulers (silent, garbage, a huge length prefix) refused within the documented time and a bounded amount of
memory, Ctrl-C and SIGTERM ending the wait with exit 130 -- for `batch`, `video --clips` and a tiled `stylize`,
which share one connect function (``app/batch/connect.py``).

The fake servers are sockets on 127.0.0.1 in a thread of this process; the real scheduler is a `dask scheduler`
process."""
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("distributed")

from nstyle.app.batch import connect  # noqa: E402
from nstyle.app.batch.connect import CONNECT_SECONDS, parse_address, probe, scheduler_address  # noqa: E402
from nstyle.errors import InputError  # noqa: E402

from .clitools import (  # noqa: E402
    FAST_LAYERS,
    assert_one_line_error,
    env_for,
    gradient_image,
    nstyle,
    random_weights_file,
    stripes_image,
)


class FakeServer:
    """A TCP server on 127.0.0.1 that is not a Dask scheduler, run in a thread.

    mode "silent": accepts and says nothing; "http": answers like a web server; "close": hangs up at once;
    "huge": sends a length prefix of 8 GiB, then ``stream`` bytes of junk, then nothing more (keeping the
    connection open). ``accepted`` is set at the first connection."""

    def __init__(self, mode, stream=0):
        self.mode, self.stream = mode, stream
        self.accepted, self.stopping = threading.Event(), threading.Event()
        self.conns = []

    def __enter__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.1)
        self.address = "tcp://127.0.0.1:%d" % self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        return self

    def _serve(self):
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.conns.append(conn)
            self.accepted.set()
            try:
                if self.mode == "close":
                    conn.close()
                elif self.mode == "http":
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
                elif self.mode == "huge":
                    conn.sendall(struct.pack("Q", 8 * 2**30))
                    junk, sent = b"\x00" * 2**20, 0
                    conn.settimeout(5)
                    while sent < self.stream and not self.stopping.is_set():
                        conn.sendall(junk)
                        sent += len(junk)
            except OSError:  # the client hung up: that is what it should do
                pass

    def __exit__(self, *exc):
        self.stopping.set()
        self.thread.join(timeout=10)
        for conn in self.conns + [self.sock]:
            conn.close()


# -- addresses ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, why", [
    ("tcp://127.0.0.1", "needs a host and a port"),
    ("tcp://127.0.0.1:0", "port must be a number from 1 to 65535"),
    ("tcp://127.0.0.1:65536", "port must be a number from 1 to 65535"),
    ("tcp://127.0.0.1:-5", "port must be"),
    ("tcp://127.0.0.1:87a6", "port must be"),
    ("tcp://127.0.0.1:８７８６", "port must be"),  # full-width digits: isdigit() alone would take them
    ("tcp://:8786", "needs a host"),
    ("tcp://bad host:8786", "not a host name"),
    ("tcp://-x.example:8786", "not a host name"),
    ("tcp://a..b:8786", "not a host name"),
    ("tcp://::1:8786", "not a host name"),
    ("tcp://[::g]:8786", "not an IPv6 address"),
    ("tcp://[::1:8786", "in brackets"),
    ("tcp://127.0.0.1:8786/status", "port must be"),
    ("http://127.0.0.1:8787", "not http://"),
    ("inproc://127.0.0.1/1/2", "not inproc://"),
    ("ws://127.0.0.1:8786", "not ws://"),
    ("", "needs a host"),
    ("x" * 5000 + ":1", "not a host name"),
])
def test_malformed_addresses_are_refused_naming_where_they_came_from(text, why):
    with pytest.raises(InputError) as info:
        parse_address(text, "--scheduler")
    message = info.value.message
    assert message.startswith("--scheduler: ") and why in message, message
    assert len(message) < 300 and "\n" not in message, message


@pytest.mark.parametrize("text, expected", [
    ("tcp://127.0.0.1:8786", "tcp://127.0.0.1:8786"),
    ("127.0.0.1:8786", "tcp://127.0.0.1:8786"),
    ("tls://scheduler.example.org:8786", "tls://scheduler.example.org:8786"),
    ("tcp://[::1]:1", "tcp://[::1]:1"),
    ("tcp://localhost:65535", "tcp://localhost:65535"),
    ("tcp://localhost:08786", "tcp://localhost:8786"),
])
def test_good_addresses_are_written_out_in_full(text, expected):
    assert parse_address(text, "--scheduler") == expected


def test_the_environment_variable_is_checked_and_named(monkeypatch):
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", "tcp://127.0.0.1:99999")
    with pytest.raises(InputError, match=r"^\$DASK_SCHEDULER_ADDRESS: .*port"):
        scheduler_address(None)
    assert scheduler_address("tcp://127.0.0.1:1") == "tcp://127.0.0.1:1"  # a given one wins
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS")
    assert scheduler_address(None) is None


# -- servers that are not Dask schedulers --------------------------------------------------------------

def test_a_silent_server_times_out_in_the_time_asked():
    with FakeServer("silent") as server:
        start = time.monotonic()
        with pytest.raises(InputError, match="no Dask scheduler answers at .*no Dask handshake within 1 s"):
            probe(server.address, timeout=1.0)
        assert 0.9 < time.monotonic() - start < 3.0


@pytest.mark.parametrize("mode, why", [("http", "its first message claims"), ("close", "closed the connection"),
                                       ("huge", "claims 8589934592 bytes")])
def test_a_server_that_is_not_dask_gets_one_clear_line(mode, why):
    with FakeServer(mode, stream=2**20) as server:
        with pytest.raises(InputError, match="is not a Dask scheduler") as info:
            probe(server.address, timeout=5.0)
        assert why in info.value.message and "\n" not in info.value.message, info.value.message


def test_a_refused_connection_is_no_scheduler():
    with socket.socket() as s:  # a port nobody listens on: bound, never listening
        s.bind(("127.0.0.1", 0))
        address = "tcp://127.0.0.1:%d" % s.getsockname()[1]
        with pytest.raises(InputError, match="no Dask scheduler answers at .*ConnectionRefusedError"):
            probe(address, timeout=5.0)


def test_a_handshake_is_checked_frame_by_frame():
    import msgpack
    body = msgpack.packb({"compression": None, "python": [3, 11, 7], "pickle-protocol": 5})
    table = struct.pack("QQ", 1, len(body))
    assert connect.check_handshake(table + body, "a")["pickle-protocol"] == 5
    for bad in (table + body[:-1], struct.pack("QQ", 1, 3) + msgpack.packb([1, 2]),
                struct.pack("QQ", 99, len(body)) + body, struct.pack("QQ", 1, 2) + b"\xc1\xc1",
                table[:8] + msgpack.packb({"python": 1})):
        with pytest.raises(InputError, match="is not a Dask scheduler"):
            connect.check_handshake(bad, "a")


# -- the commands --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    gradient_image(40, 32).save(folder / "photo.png")
    stripes_image(32, 32).save(folder / "style.png")
    (folder / "clip").mkdir()
    for i in range(1, 3):
        gradient_image(40, 32, seed=i).save(folder / "clip" / f"frame{i:02d}.png")
    return folder, random_weights_file(folder)


def command(kind, folder, weights, address, out):
    """`nstyle ...` arguments that connect to ``address`` as their first network step."""
    common = ["--iters", "2", "--weights", str(weights), *FAST_LAYERS]
    if kind == "batch":
        return ["batch", "--contents", folder / "photo.png", "--styles", folder / "style.png", "-o", out,
                "--size", "32", "--scheduler", address, *common]
    if kind == "video":
        return ["video", folder / "style.png", "--clips", folder / "clip", "-o", out, "--size", "32",
                "--scheduler", address, *common]
    return ["stylize", folder / "photo.png", folder / "style.png", "-o", Path(out).with_suffix(".png"), "--size", "48",
            "--tile", "32", "--tile-scheduler", address, *common]


KINDS = ["batch", "video", "stylize"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_malformed_address_is_one_line_exit_2_before_any_work(kind, inputs, tmp_path):
    if kind == "video":
        pytest.importorskip("av")
    folder, weights = inputs
    r = nstyle(tmp_path, *command(kind, folder, weights, "tcp://127.0.0.1:70000", tmp_path / "out"))
    assert_one_line_error(r, 2, "not a scheduler address", "65535")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir()), r


def test_a_malformed_environment_address_names_the_variable(inputs, tmp_path):
    folder, weights = inputs
    args = command("batch", folder, weights, "x", tmp_path / "out")
    args = args[:args.index("--scheduler")] + args[args.index("--scheduler") + 2:]
    r = nstyle(tmp_path, *args, DASK_SCHEDULER_ADDRESS="tcp://127.0.0.1")
    assert_one_line_error(r, 2, "$DASK_SCHEDULER_ADDRESS", "not a scheduler address")


def _start(tmp_path, args):
    return subprocess.Popen([sys.executable, "-m", "nstyle", *map(str, args)], cwd=tmp_path, env=env_for(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_a_silent_server_ends_the_command_in_the_documented_time(kind, inputs, tmp_path):
    if kind == "video":
        pytest.importorskip("av")
    folder, weights = inputs
    with FakeServer("silent") as server:
        proc = _start(tmp_path, command(kind, folder, weights, server.address, tmp_path / "out"))
        assert server.accepted.wait(120), proc.communicate(timeout=60)
        start = time.monotonic()
        out, err = proc.communicate(timeout=CONNECT_SECONDS + 30)
        waited = time.monotonic() - start
    assert proc.returncode == 2 and "no Dask scheduler answers at " + server.address in err, (out, err)
    assert "Traceback" not in err and CONNECT_SECONDS - 1 < waited < CONNECT_SECONDS + 10, (waited, err)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_ends_the_wait_at_once_with_exit_130(kind, sig, inputs, tmp_path):
    if kind == "video":
        pytest.importorskip("av")
    folder, weights = inputs
    with FakeServer("silent") as server:
        proc = _start(tmp_path, command(kind, folder, weights, server.address, tmp_path / "out"))
        try:
            assert server.accepted.wait(120), proc.communicate(timeout=60)
            time.sleep(0.5)  # well inside the wait
            start = time.monotonic()
            proc.send_signal(sig)
            out, err = proc.communicate(timeout=30)
        finally:
            proc.kill()
    assert proc.returncode == 130, (out, err)
    assert time.monotonic() - start < 5 and "Traceback" not in err, err


def _peak_rss_bytes(tmp_path, args, timeout=120):
    """Run `nstyle ARGS`; (exit code, stderr, the process's peak resident memory in bytes)."""
    err_path = tmp_path / "stderr.txt"
    with open(err_path, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "nstyle", *map(str, args)], cwd=tmp_path,
                                env=env_for(tmp_path), stdout=subprocess.DEVNULL, stderr=err)
    killer = threading.Timer(timeout, proc.kill)
    killer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        killer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, err_path.read_text(), usage.ru_maxrss * 1024


def test_a_huge_length_prefix_cannot_make_the_client_allocate_it(inputs, tmp_path):
    """The server claims an 8 GiB message and streams 256 MiB of it: the client reads none of it (its
    peak memory is that of the same command against a server that hangs up at once), and says why."""
    folder, weights = inputs
    with FakeServer("close") as server:
        code, err, baseline = _peak_rss_bytes(tmp_path, command("batch", folder, weights, server.address,
                                                                tmp_path / "out"))
    assert code == 2 and "not a Dask scheduler" in err, err
    with FakeServer("huge", stream=256 * 2**20) as server:
        code, err, peak = _peak_rss_bytes(tmp_path, command("batch", folder, weights, server.address,
                                                            tmp_path / "out"))
    assert code == 2 and "is not a Dask scheduler: its first message claims 8589934592 bytes" in err, err
    assert peak < baseline + 32 * 2**20, (peak, baseline)


# -- a real scheduler ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dask_scheduler(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scheduler")
    proc = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
         "--dashboard-address", "127.0.0.1:0", "--scheduler-file", str(folder / "s.json")],
        cwd=folder, env=env_for(folder), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (folder / "s.json").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        yield json.loads((folder / "s.json").read_text())["address"]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.mark.slow
def test_a_real_scheduler_passes_the_check_and_connects(dask_scheduler):
    start = time.monotonic()
    probe(dask_scheduler)
    assert time.monotonic() - start < 5
    with connect.remote_client(dask_scheduler) as client:
        assert client.scheduler_info()["address"] == dask_scheduler


def test_a_wait_ends_on_a_signal_even_after_the_result_exists():
    """After an optimiser loop signals are deferred (the command is writing its result): a wait for a
    scheduler must still end at once, and the deferred phase comes back afterwards."""
    from nstyle import interrupts
    interrupts.install()
    try:
        interrupts.defer()
        with pytest.raises(KeyboardInterrupt):
            with interrupts.waiting():
                threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()
                time.sleep(5)
        assert interrupts._state.phase == interrupts._DEFERRED and interrupts.interrupted()
        os.kill(os.getpid(), signal.SIGINT)  # deferred again: remembered, not raised
        time.sleep(0.1)
    finally:
        interrupts.uninstall()


# -- tls:// ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    """A self-signed certificate (its own CA) for 127.0.0.1, and Dask's client settings that use it."""
    import shutil
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    folder = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", folder / "key.pem",
                    "-out", folder / "cert.pem", "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    cert, key = str(folder / "cert.pem"), str(folder / "key.pem")
    return {"folder": folder, "cert": cert, "key": key,
            "config": {"distributed.comm.tls.ca-file": cert, "distributed.comm.tls.client.cert": cert,
                       "distributed.comm.tls.client.key": key}}


def test_tls_without_dask_tls_settings_is_one_line():
    with pytest.raises(InputError, match="tls:// needs Dask's TLS settings"):
        with FakeServer("silent") as server:
            probe(server.address.replace("tcp://", "tls://"), timeout=2.0)


@pytest.mark.parametrize("mode, message", [("silent", "no TLS handshake within 1 s"),
                                           ("http", "the TLS handshake failed")])
def test_tls_to_a_server_that_does_not_speak_it(mode, message, tls_files):
    import dask
    with dask.config.set(tls_files["config"]), FakeServer(mode) as server:
        with pytest.raises(InputError, match=message):
            probe(server.address.replace("tcp://", "tls://"), timeout=1.0)


@pytest.mark.slow
def test_a_real_tls_scheduler_passes_the_check_and_connects(tls_files):
    import dask
    folder = tls_files["folder"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
         "--protocol", "tls", "--tls-ca-file", tls_files["cert"], "--tls-cert", tls_files["cert"],
         "--tls-key", tls_files["key"], "--dashboard-address", "127.0.0.1:0", "--scheduler-file",
         str(folder / "s.json")], cwd=folder, env=env_for(folder), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (folder / "s.json").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        address = json.loads((folder / "s.json").read_text())["address"]
        assert address.startswith("tls://")
        with dask.config.set(tls_files["config"]):
            probe(address)
            with connect.remote_client(address) as client:
                assert client.scheduler_info()["address"] == address
    finally:
        proc.terminate()
        proc.wait(timeout=30)
