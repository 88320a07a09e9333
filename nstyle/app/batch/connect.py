"""Reaching a Dask scheduler by address: the one way every command that takes one (``batch``,
``video --clips``, a tiled ``stylize``, ``grid``) connects, so they all behave alike.

Why not just ``distributed.Client(address, timeout=...)``. Dask bounds the TCP connect by that timeout,
but not the handshake that follows (``distributed.comm.core.connect`` awaits the peer's first message
with no deadline): a server that accepts the connection and says nothing holds ``Client()`` forever.
And Dask reads a message's 8-byte length prefix and allocates that many bytes before it reads them
(``comm/tcp.py``, ``read`` -> ``host_array(n)``): a server that is not a Dask scheduler can make the
client allocate whatever its first eight bytes claim (an HTTP server's ``HTTP/1.1`` reads as 3.5e18
bytes). No Dask setting bounds either: ``distributed.comm.timeouts.connect`` covers the connect only,
``distributed.comm.shard`` only splits the frames Dask *writes*, and a maximum message size exists for
websockets alone.

So before Dask sees an address nstyle checks it itself:

1. The text (:func:`parse_address`): ``tcp://HOST:PORT`` or ``tls://HOST:PORT`` (a bare ``HOST:PORT`` is
   tcp, as Dask reads it), HOST a host name or an IP address (IPv6 in brackets), PORT 1-65535. Anything
   else is one line naming where the address came from (the flag, ``$DASK_SCHEDULER_ADDRESS``).
2. The handshake (:func:`probe`). A Dask server speaks first: one small message (its compression, Python
   version and pickle protocol -- 66 bytes on the wire with distributed 2026.8). The probe connects
   (tls: with Dask's own TLS settings), reads the 8-byte length and refuses any length above
   ``HANDSHAKE_LIMIT`` before reading further, then checks the frame table and that the message decodes
   (msgpack) to a dict with a Dask handshake's keys. Whatever the server sends, the probe holds at most
   ``HANDSHAKE_LIMIT`` bytes, and all of it -- name lookup, connect, TLS, handshake -- within
   ``CONNECT_SECONDS``.
3. Then ``Client(address, timeout=CONNECT_SECONDS)``: past the first handshake Dask bounds its own
   waits (the scheduler's identity and its first reply) by that timeout. A server that answers the
   probe and then stops answering is a misbehaving scheduler, which the trust model below covers.

Every wait here runs under ``interrupts.waiting()``: Ctrl-C or SIGTERM raises KeyboardInterrupt in it at
once, whatever the command was doing before (the command then exits 130).

Trust. A Dask scheduler can run code on every client that connects to it (results and errors come back
pickled), so nstyle connects only where the user points it, and the user should point it only at a
scheduler of their own. The checks above keep a wrong address -- a typo, a web server, a port
that hangs -- from hanging the client or filling its memory; they are no defence against a hostile
scheduler, and none is possible.
"""
import contextlib
import ipaddress
import os
import re
import socket
import struct
import threading
import time

from ... import interrupts
from ...errors import InputError

CONNECT_SECONDS = 10.0        # the whole probe, and Dask's own connect after it
HANDSHAKE_LIMIT = 64 * 2**10  # a Dask handshake is under 100 bytes; nothing legitimate comes near this
SCHEMES = ("tcp", "tls")
ADDRESS_HINT = "write it as tcp://HOST:PORT, like tcp://127.0.0.1:8786"
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_LENGTH = struct.Struct("Q")  # Dask's frame lengths: native-order unsigned 64-bit (comm/tcp.py)


def _shown(text, limit=80):
    text = repr(text)
    return text if len(text) <= limit else text[:limit - 5] + "...'"


def parse_address(text, source="scheduler"):
    """The scheduler address ``text`` checked and written out in full (``tcp://HOST:PORT``); InputError
    naming ``source`` (``--scheduler``, ``$DASK_SCHEDULER_ADDRESS`` ...; None: argparse names the flag)
    when it is not one."""
    def bad(why):
        where = f"{source}: " if source else ""
        return InputError(f"{where}{_shown(text)} is not a scheduler address: {why}", hint=ADDRESS_HINT)

    if not isinstance(text, str):
        raise bad("expected text")
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "tcp", text
    if scheme not in SCHEMES:
        raise bad(f"nstyle reaches a scheduler over {' or '.join(s + '://' for s in SCHEMES)}, not {scheme}://")
    host, colon, port = rest.rpartition(":")
    if not colon or not host:
        raise bad("it needs a host and a port (HOST:PORT)")
    if not port.isascii() or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise bad(f"the port must be a number from 1 to 65535 (got {_shown(port, 20)})")
    if host.startswith("["):
        if not host.endswith("]"):
            raise bad("an IPv6 address goes in brackets, like [::1]:8786")
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise bad(f"{_shown(host, 50)} is not an IPv6 address") from None
    elif not _host_name(host):
        raise bad(f"{_shown(host, 50)} is not a host name or an IP address")
    return f"{scheme}://{host}:{int(port)}"


def _host_name(host):
    try:
        ipaddress.IPv4Address(host)
        return True
    except ValueError:
        pass
    labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
    return len(host) <= 253 and all(_LABEL.match(label) for label in labels)


def scheduler_address(given, source="--scheduler"):
    """``given`` (named ``source`` in errors), else ``$DASK_SCHEDULER_ADDRESS``, else None (a local
    cluster); a given or inherited address is checked by :func:`parse_address`."""
    if given:
        return parse_address(given, source)
    inherited = os.environ.get("DASK_SCHEDULER_ADDRESS")
    return parse_address(inherited, "$DASK_SCHEDULER_ADDRESS") if inherited else None


# ---------------------------------------------------------------------------------------------------
# The handshake check.

def _split(address):
    scheme, rest = address.split("://", 1)
    host, port = rest.rsplit(":", 1)
    return scheme, host.strip("[]"), int(port)


class _Deadline:
    def __init__(self, address, seconds):
        self.address, self.seconds, self.end = address, seconds, time.monotonic() + seconds

    def left(self, what):
        left = self.end - time.monotonic()
        if left <= 0:
            raise self.silent(what)
        return left

    def silent(self, what):
        return InputError(f"no Dask scheduler answers at {self.address}: {what} within {self.seconds:g} s",
                          hint="is the scheduler running, and is this its address (the one `dask scheduler` "
                               "printed)?")


def _resolve(host, port, deadline):
    """getaddrinfo in a helper thread: a stalled name lookup cannot be interrupted, a join can."""
    box = {}

    def lookup():
        try:
            box["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            box["error"] = exc

    thread = threading.Thread(target=lookup, name="nstyle-resolve", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(min(0.1, deadline.left(f"the name {host} did not resolve")))
    if "error" in box:
        raise InputError(f"no Dask scheduler answers at {deadline.address}: cannot resolve {host} "
                         f"({box['error']})", hint="check the host name") from None
    return box["infos"]


def _connect(infos, deadline):
    errors = []
    for family, kind, proto, _, sockaddr in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(deadline.left("no connection"))
            sock.connect(sockaddr)
            return sock
        except TimeoutError:
            sock.close()
            raise deadline.silent("no connection") from None
        except OSError as exc:
            sock.close()
            errors.append(f"{type(exc).__name__}: {exc.strerror or exc}")
    raise InputError(f"no Dask scheduler answers at {deadline.address} ({'; '.join(dict.fromkeys(errors))})",
                     hint="start one with `dask scheduler`, or leave the scheduler out for a local cluster")


def _tls(sock, host, deadline):
    from distributed.security import Security  # noqa: PLC0415
    context = Security().get_connection_args("client").get("ssl_context")
    if context is None:
        sock.close()
        raise InputError(f"{deadline.address}: tls:// needs Dask's TLS settings (a CA file, and this "
                         "client's certificate and key)",
                         hint="set distributed.comm.tls.ca-file and distributed.comm.tls.client.cert/key "
                              "in Dask's configuration")
    try:
        sock.settimeout(deadline.left("no TLS handshake"))
        return context.wrap_socket(sock, server_hostname=host)
    except TimeoutError:
        sock.close()
        raise deadline.silent("no TLS handshake") from None
    except OSError as exc:  # ssl.SSLError included
        sock.close()
        raise InputError(f"{deadline.address}: the TLS handshake failed ({exc})",
                         hint="check Dask's TLS settings, or use tcp://") from None


def _read(sock, n, deadline):
    """Exactly ``n`` bytes (the caller has bounded n), within the deadline."""
    data = bytearray()
    while len(data) < n:
        sock.settimeout(deadline.left("it accepted the connection but sent no Dask handshake"))
        try:
            chunk = sock.recv(min(n - len(data), 65536))
        except TimeoutError:
            raise deadline.silent("it accepted the connection but sent no Dask handshake") from None
        except OSError as exc:
            raise InputError(f"{deadline.address}: the connection broke during the handshake "
                             f"({exc.strerror or exc})") from None
        if not chunk:
            raise _not_dask(deadline.address, "it closed the connection without a Dask handshake")
        data += chunk
    return bytes(data)


def _not_dask(address, why):
    return InputError(f"{address} is not a Dask scheduler: {why}",
                      hint="check the address and port (the one `dask scheduler` printed; 8786 by default)")


def check_handshake(message, address):
    """InputError unless ``message`` (what followed the length prefix) is a Dask handshake: a frame
    table -- a count, then one length per frame, adding up to the rest -- whose first frame is a
    msgpack dict with the keys a Dask peer sends."""
    import msgpack  # noqa: PLC0415 -- a dependency of distributed

    size = _LENGTH.size
    if len(message) < 2 * size:
        raise _not_dask(address, "its first message is too short for a Dask handshake")
    (count,) = _LENGTH.unpack_from(message)
    if not 1 <= count <= 16 or len(message) < (count + 1) * size:
        raise _not_dask(address, "its first message has no Dask frame table")
    lengths = [_LENGTH.unpack_from(message, size * (i + 1))[0] for i in range(count)]
    start = size * (count + 1)
    if sum(lengths) != len(message) - start:
        raise _not_dask(address, "its first message's frame lengths do not add up")
    try:
        handshake = msgpack.unpackb(message[start:start + lengths[0]], raw=False)
    except Exception:  # noqa: BLE001 -- msgpack raises ValueError, ExtraData, FormatError ...
        handshake = None
    if not isinstance(handshake, dict) or not {"python", "pickle-protocol"} <= set(handshake):
        raise _not_dask(address, "its first message is not a Dask handshake")
    return handshake


def probe(address, timeout=CONNECT_SECONDS):
    """Check that a Dask scheduler answers at ``address`` (as :func:`parse_address` wrote it): connect,
    read its handshake (bounded in size and time), hang up. InputError when none does."""
    scheme, host, port = _split(address)
    deadline = _Deadline(address, timeout)
    with interrupts.waiting():
        sock = _connect(_resolve(host, port, deadline), deadline)
        try:
            if scheme == "tls":
                sock = _tls(sock, host, deadline)
            (n,) = _LENGTH.unpack(_read(sock, _LENGTH.size, deadline))
            if n > HANDSHAKE_LIMIT:
                raise _not_dask(address, f"its first message claims {n} bytes (a Dask handshake is under "
                                         f"{HANDSHAKE_LIMIT // 1024} KiB); nothing more was read")
            check_handshake(_read(sock, n, deadline), address)
        finally:
            sock.close()


@contextlib.contextmanager
def remote_client(address, timeout=CONNECT_SECONDS):
    """A ``distributed.Client`` on the scheduler at ``address`` (checked by :func:`parse_address` here
    too), after :func:`probe`; InputError when none answers. Closed when the block ends."""
    from distributed import Client  # noqa: PLC0415
    address = parse_address(address)
    probe(address, timeout)
    with interrupts.waiting():
        try:
            client = Client(address, timeout=f"{timeout}s")
        except (OSError, TimeoutError) as exc:
            raise InputError(f"no Dask scheduler answers at {address} ({type(exc).__name__}: {exc})",
                             hint="start one with `dask scheduler`, or leave the scheduler out for a local "
                                  "cluster") from None
    with client:
        yield client
