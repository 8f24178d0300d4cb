"""asyncio UDP, TCP and TLS transports for SIP (RFC 3261 §18, §26.2).

The bind address (where the socket listens) is kept apart from the advertised address
(what goes into Via and Contact), because behind NAT or in a container they differ.
Transports only move bytes and frame TCP streams; everything else is in the sans-I/O
modules.

TLS (``TlsTransport``, set up by ``TlsSettings``) is the TCP transport with a handshake in
front: certificates are verified by default, one connection per peer is reused in both
directions (our Via carries ``alias``, RFC 5923, so a proxy sends requests for us back
down the connection we opened), and every failure to connect becomes one sentence that
says what went wrong (``tls_failure``): refused, TCP connect timeout, TLS handshake
timeout, expired, wrong name, untrusted CA, client certificate wanted or refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from autocall.sip.lograte import LogRate
from autocall.sip.message import MAX_MESSAGE, Request, Response, StreamParser, parse_message
from autocall.sip.tls import TlsSettings, tls_failure

__all__ = ["Transport", "UdpTransport", "TcpTransport", "TcpLimits", "TlsSettings",
           "TlsTransport", "Received", "default_advertise", "Resolver", "tls_failure"]

log = logging.getLogger(__name__)
Addr = tuple[str, int]
UDP_RECEIVE_BUFFER = 4 << 20


@dataclass(frozen=True)
class Received:
    """One inbound datagram/frame: a parsed message, or the bytes and why they failed."""

    message: Request | Response | None
    raw: bytes
    source: Addr
    transport: Transport
    error: str | None = None


Handler = Callable[[Received], None]
Unreachable = Callable[[Addr, str], None]
"""Told when a destination cannot be reached (a refused TCP connection): address, why."""
Closed = Callable[[Addr], None]
"""Told when a connection we opened to a peer has ended (TCP, TLS): its address."""


def default_advertise(bound_host: str) -> str:
    """What to advertise when bound to a wildcard: the address of the default route.

    0.0.0.0 in Via, Contact or SDP would mean "nowhere" (RFC 3264 §8.4: hold), so ask the
    kernel which source address it would use (a UDP connect sends nothing); fall back to
    loopback on a machine without a route.
    """
    if bound_host not in ("0.0.0.0", "::", ""):
        return bound_host
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1 (RFC 5737): never really reached
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1"


class Resolver:
    """Host names to IPv4 addresses, cached ``ttl`` seconds. Lookups run through
    ``loop.getaddrinfo`` (a worker thread), never on the event loop: a blocking lookup
    would stall every call's media. A records only: RFC 3263 SRV/NAPTR selection is left
    to the deployment's DNS."""

    def __init__(self, ttl: float = 60.0) -> None:
        self.ttl = ttl
        self._cache: dict[str, tuple[str, float]] = {}

    def cached(self, host: str) -> str | None:
        """``host`` itself when it is an address, else its unexpired cached address."""
        with contextlib.suppress(ValueError):
            ipaddress.ip_address(host)
            return host
        hit = self._cache.get(host)
        return hit[0] if hit is not None and hit[1] > time.monotonic() else None

    async def resolve(self, host: str) -> str:
        known = self.cached(host)
        if known is not None:
            return known
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, family=socket.AF_INET,
                                                              type=socket.SOCK_DGRAM)
        if not infos:
            raise OSError(f"cannot resolve {host!r}")
        addr = str(infos[0][4][0])
        self._cache[host] = (addr, time.monotonic() + self.ttl)
        return addr


class Transport:
    name = "UDP"
    reliable = False
    via_params = ""
    """Added to our Via's parameters (TLS: ``;alias``, RFC 5923 connection reuse)."""

    def __init__(self, handler: Handler, advertise: Addr) -> None:
        self.handler = handler
        self.advertise = advertise
        self.local: Addr = ("0.0.0.0", 0)
        self.on_unreachable: Unreachable | None = None
        self.on_closed: Closed | None = None

    def send(self, message: Request | Response, dest: Addr) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def keepalive(self, dest: Addr) -> bool:
        """Send a CRLFCRLF keep-alive (RFC 5626 §3.5.1) on the open connection to
        ``dest``; False when there is none (it opens none: the next REGISTER will).
        Datagram transports keep alive with OPTIONS instead: always False."""
        return False

    def name_peer(self, dest: Addr, host: str) -> None:
        """``dest`` was found by looking ``host`` up: TLS checks that name in its
        certificate (RFC 5922 §7). Other transports do not care."""

    def _deliver(self, data: bytes, source: Addr) -> None:
        try:
            msg = parse_message(data, stream=self.reliable)
        except ValueError as exc:
            self.handler(Received(None, data, source, self, str(exc)))
            return
        self.handler(Received(msg, data, source, self))


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, owner: UdpTransport) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if data.strip(b"\r\n\0 ") == b"":  # keep-alive pings (RFC 5626 §4.4.1)
            return
        self.owner._deliver(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP error: %s", exc)


class UdpTransport(Transport):
    name = "UDP"
    reliable = False

    def __init__(self, handler: Handler, advertise: Addr) -> None:
        super().__init__(handler, advertise)
        self._transport: asyncio.DatagramTransport | None = None

    @classmethod
    async def create(cls, handler: Handler, bind: Addr,
                     advertise: tuple[str | None, int | None] = (None, None)) -> UdpTransport:
        self = cls(handler, ("", 0))
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _Udp(self), local_addr=bind)
        self._transport = transport
        # Hundreds of calls set up together bring 100/180/200 bursts that overflow the
        # default ~200 KB buffer; every lost response then waits for a retransmission
        # (T1 = 500 ms and doubling). The kernel caps this at net.core.rmem_max.
        with contextlib.suppress(OSError):
            transport.get_extra_info("socket").setsockopt(
                socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER
            )
        host, port = transport.get_extra_info("sockname")[:2]
        self.local = (host, port)
        self.advertise = (advertise[0] or default_advertise(host), advertise[1] or port)
        return self

    def send(self, message: Request | Response, dest: Addr) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.sendto(bytes(message), dest)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


@dataclass(frozen=True)
class TcpLimits:
    """What one stranger may hold on our TCP port (issue 12 item 3: slow-loris).

    ``header_timeout``: a message must be complete this many seconds after its first
    byte. ``idle_timeout``: a connection with no traffic either way is closed. Messages
    over ``max_message`` bytes close the connection (a stream cannot be re-framed, §18.3).
    At most ``max_per_source`` inbound connections per source IP and ``max_total`` in
    all; more are closed on accept.
    """

    header_timeout: float = 10.0
    idle_timeout: float = 300.0
    max_message: int = MAX_MESSAGE
    max_per_source: int = 32
    max_total: int = 4096


class _TcpConn(asyncio.Protocol):
    def __init__(self, owner: TcpTransport, inbound: bool = True) -> None:
        self.owner = owner
        self.inbound = inbound
        self.parser = StreamParser(owner.limits.max_message)
        self.transport: asyncio.Transport | None = None
        self.peer: Addr = ("", 0)
        self.partial_since: float | None = None
        self.last_activity = 0.0
        self.counted = False
        self.heard = False
        """True once the peer sent anything on this connection."""
        self.dropped: str | None = None
        """Why we closed it ourselves (a limit), if we did."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = (str(peer[0]), int(peer[1]))
        self.last_activity = self.owner.now()
        refusal = self.owner._admit(self)
        if refusal is not None:
            self.owner.lograte.log(logging.WARNING, "tcp-refused",
                                   "TCP connection from %s:%s closed: %s", *self.peer, refusal)
            transport.abort()
            return
        self.owner._accepted(self)

    def data_received(self, data: bytes) -> None:
        now = self.owner.now()
        self.last_activity = now
        self.heard = True
        try:
            messages = self.parser.feed(data)
        except ValueError as exc:
            # A broken stream cannot be re-framed: report and drop the connection (§18.3).
            self.owner.handler(Received(None, data[:2048], self.peer, self.owner, str(exc)))
            self.parser = StreamParser(0)  # free what was buffered; the 400 may still leave
            if self.transport is not None:
                self.transport.close()
            return
        if self.parser.pending == 0:
            self.partial_since = None
        elif self.partial_since is None or messages:
            self.partial_since = now  # a new message started: its clock starts now
        for msg in messages:
            self.owner.handler(Received(msg, b"", self.peer, self.owner))

    def drop(self, why: str) -> None:
        """Close at once, buffers and all (``abort``: a slow reader must not keep them)."""
        self.owner.lograte.log(logging.WARNING, "tcp-dropped", "TCP connection %s:%s closed: %s",
                               *self.peer, why)
        self.dropped = why
        self.parser = StreamParser(0)
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.owner._conns.get(self.peer) is self:
            del self.owner._conns[self.peer]
        self.owner._release(self)
        self.transport = None
        self.owner._lost(self, exc)


class TcpTransport(Transport):
    """Listens for connections and reuses one connection per peer in both directions.

    ``limits`` (``TcpLimits``) bounds what inbound connections may hold; one sweep a
    second closes those past their header or idle timeout.
    """

    name = "TCP"
    reliable = True

    def __init__(self, handler: Handler, advertise: Addr,
                 limits: TcpLimits | None = None) -> None:
        super().__init__(handler, advertise)
        self.limits = limits or TcpLimits()
        self.lograte = LogRate(log)
        self._server: asyncio.Server | None = None
        self._conns: dict[Addr, _TcpConn] = {}
        self._all: set[_TcpConn] = set()
        self._per_source: dict[str, int] = {}
        self._pending: dict[Addr, asyncio.Task[None]] = {}
        self._queued: dict[Addr, list[bytes]] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self._closing = False

    @classmethod
    async def create(cls, handler: Handler, bind: Addr,
                     advertise: tuple[str | None, int | None] = (None, None),
                     limits: TcpLimits | None = None) -> TcpTransport:
        self = cls(handler, ("", 0), limits)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _TcpConn(self), bind[0], bind[1])
        host, port = self._server.sockets[0].getsockname()[:2]
        self.local = (host, port)
        self.advertise = (advertise[0] or default_advertise(host), advertise[1] or port)
        self._schedule_sweep()
        return self

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    @property
    def connections(self) -> int:
        """Open connections, inbound and outbound."""
        return len(self._all)

    def _admit(self, conn: _TcpConn) -> str | None:
        """Why an inbound connection is closed at once (over a limit), or None to keep it."""
        host = conn.peer[0]
        if conn.inbound:
            if len(self._all) >= self.limits.max_total:
                return f"{self.limits.max_total} connections open (limit)"
            if self._per_source.get(host, 0) >= self.limits.max_per_source:
                return f"{self.limits.max_per_source} connections from {host} (limit)"
        self._all.add(conn)
        self._per_source[host] = self._per_source.get(host, 0) + 1
        conn.counted = True
        return None

    def _release(self, conn: _TcpConn) -> None:
        if not conn.counted:
            return
        conn.counted = False
        self._all.discard(conn)
        host = conn.peer[0]
        left = self._per_source.get(host, 1) - 1
        if left > 0:
            self._per_source[host] = left
        else:
            self._per_source.pop(host, None)

    def _accepted(self, conn: _TcpConn) -> None:
        """A connection passed the limits: it carries messages for its peer from now."""
        self._conns[conn.peer] = conn

    def _lost(self, conn: _TcpConn, exc: Exception | None) -> None:
        """A connection ended (``exc``: why, None for an orderly close): one of ours is
        reported to ``on_closed`` unless we are shutting down."""
        if not conn.inbound and not self._closing and self.on_closed is not None:
            self.on_closed(conn.peer)

    def _schedule_sweep(self) -> None:
        interval = min(1.0, self.limits.header_timeout / 4, self.limits.idle_timeout / 4)
        self._sweeper = asyncio.get_running_loop().call_later(interval, self._sweep)

    def _sweep(self) -> None:
        """Close connections past their header timeout (a message left half sent) or idle
        timeout. One pass a second over at most ``max_total`` connections."""
        now = self.now()
        lim = self.limits
        for conn in list(self._all):
            if conn.partial_since is not None and now - conn.partial_since > lim.header_timeout:
                conn.drop(f"message not complete after {lim.header_timeout:g} s")
            elif now - conn.last_activity > lim.idle_timeout:
                conn.drop(f"idle for {lim.idle_timeout:g} s")
        self._schedule_sweep()

    def send(self, message: Request | Response, dest: Addr) -> None:
        data = bytes(message)
        conn = self._conns.get(dest)
        if conn is not None and conn.transport is not None and not conn.transport.is_closing():
            conn.last_activity = self.now()
            conn.transport.write(data)
            return
        self._queued.setdefault(dest, []).append(data)
        if dest not in self._pending:
            self._pending[dest] = asyncio.get_running_loop().create_task(self._connect(dest))

    def keepalive(self, dest: Addr) -> bool:
        conn = self._conns.get(dest)
        if conn is None or conn.transport is None or conn.transport.is_closing():
            return False
        conn.last_activity = self.now()
        conn.transport.write(b"\r\n\r\n")
        return True

    async def _connect(self, dest: Addr) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, proto = await asyncio.wait_for(
                loop.create_connection(lambda: _TcpConn(self, inbound=False), dest[0], dest[1]),
                5)
            for data in self._queued.pop(dest, []):
                if proto.transport is not None:
                    proto.transport.write(data)
        except (TimeoutError, OSError) as exc:
            log.info("TCP connect to %s:%s failed: %s", dest[0], dest[1], exc)
            self._queued.pop(dest, None)
            self._pending.pop(dest, None)
            if self.on_unreachable is not None:
                why = "connect timed out" if isinstance(exc, TimeoutError) \
                    else (os.strerror(exc.errno) if exc.errno else str(exc))
                self.on_unreachable(dest, why)
        finally:
            self._pending.pop(dest, None)

    def close(self) -> None:
        self._closing = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._server is not None:
            self._server.close()
        for conn in list(self._all):
            if conn.transport is not None:
                conn.transport.close()
        for task in self._pending.values():
            task.cancel()


class _NoCertificate(asyncio.Protocol):
    """Accepts and closes: a TLS transport without a certificate cannot serve, but still
    holds the port it advertises (the alias of its outbound connections)."""

    def __init__(self, owner: TlsTransport) -> None:
        self.owner = owner

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername") or ("?", 0)
        self.owner.lograte.log(logging.WARNING, "tls-no-cert",
                               "TLS connection from %s:%s closed: no certificate to serve with "
                               "(set AUTOCALL_SIP_TLS_CERT_FILE and AUTOCALL_SIP_TLS_KEY_FILE)",
                               peer[0], peer[1])
        assert isinstance(transport, asyncio.Transport)
        transport.abort()


class TlsTransport(TcpTransport):
    """SIP over TLS: the TCP transport (framing, limits, one connection per peer reused
    both ways) with a handshake on every connection.

    Outbound: a TCP connect (``connect_timeout``), then the handshake
    (``handshake_timeout``) checked against ``server_name(dest)``; a failure ends every
    transaction waiting for that peer with the sentence of ``tls_failure`` (the agent
    turns it into a local 503). A connection of ours that ends under waiting requests
    ends them the same way (``_lost``: a TLS alert after the handshake, as TLS 1.3 sends
    for a refused client certificate, or a plain close).
    Inbound: with a certificate of ours the listening port accepts TLS (``serve``), the
    handshake starting only once the TCP limits admitted the connection; without a
    certificate, connections to it are closed with a log line.
    """

    name = "TLS"
    reliable = True
    via_params = ";alias"

    def __init__(self, handler: Handler, advertise: Addr, limits: TcpLimits | None = None,
                 settings: TlsSettings | None = None) -> None:
        super().__init__(handler, advertise, limits)
        self.settings = settings or TlsSettings()
        self._client = self.settings.client_context()
        self._serving = self.settings.server_context()
        self._names: dict[Addr, str] = {}
        self._handshakes: set[asyncio.Task[None]] = set()
        if not self.settings.verify:
            log.warning("TLS certificate verification is off: any server will do "
                        "(AUTOCALL_SIP_TLS_VERIFY=0)")

    @classmethod
    async def create(cls, handler: Handler, bind: Addr,
                     advertise: tuple[str | None, int | None] = (None, None),
                     limits: TcpLimits | None = None,
                     settings: TlsSettings | None = None) -> TlsTransport:
        self = cls(handler, ("", 0), limits, settings)
        loop = asyncio.get_running_loop()
        if self._serving is not None:  # TLS after the limits: see _accepted
            self._server = await loop.create_server(lambda: _TcpConn(self), bind[0], bind[1])
        else:
            self._server = await loop.create_server(lambda: _NoCertificate(self), bind[0],
                                                    bind[1])
        host, port = self._server.sockets[0].getsockname()[:2]
        self.local = (host, port)
        self.advertise = (advertise[0] or default_advertise(host), advertise[1] or port)
        self._schedule_sweep()
        return self

    @property
    def serving(self) -> bool:
        """True when inbound TLS connections are accepted (a certificate is configured)."""
        return self._serving is not None

    def name_peer(self, dest: Addr, host: str) -> None:
        self._names[dest] = host

    def server_name(self, dest: Addr) -> str:
        """The name ``dest``'s certificate must carry: the configured one, else the name
        ``dest`` was found by, else its address (checked against the IP SANs)."""
        return self.settings.server_name or self._names.get(dest) or dest[0]

    async def _connect(self, dest: Addr) -> None:
        loop = asyncio.get_running_loop()
        where, name = f"{dest[0]}:{dest[1]}", self.server_name(dest)
        limits = self.settings
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        handed_over = False
        why: str | None = None
        try:
            try:
                await asyncio.wait_for(loop.sock_connect(sock, dest), limits.connect_timeout)
            except TimeoutError:
                why = (f"TCP connect to {where} timed out after {limits.connect_timeout:g} s "
                       "(no TLS handshake was started)")
            except OSError as exc:
                why = f"TCP connect to {where} failed: " \
                    f"{os.strerror(exc.errno) if exc.errno else exc}"
            if why is None:
                try:
                    _, proto = await asyncio.wait_for(loop.create_connection(
                        lambda: _TcpConn(self, inbound=False), sock=sock, ssl=self._client,
                        server_hostname=name,
                        ssl_handshake_timeout=limits.handshake_timeout + 1),
                        limits.handshake_timeout)
                    handed_over = True
                    for data in self._queued.pop(dest, []):
                        if proto.transport is not None:
                            proto.transport.write(data)
                except TimeoutError:
                    why = (f"TLS handshake with {where} timed out after "
                           f"{limits.handshake_timeout:g} s (the TCP connection was made, but "
                           "no TLS answer came: is that port TLS?)")
                except (OSError, ssl.SSLError, EOFError) as exc:
                    why = tls_failure(exc, where, name)
        finally:
            self._pending.pop(dest, None)
            if not handed_over:
                sock.close()
        if why is not None:
            self._queued.pop(dest, None)
            self.lograte.log(logging.WARNING, "tls-connect", "%s", why)
            if self.on_unreachable is not None:
                self.on_unreachable(dest, why)

    def _accepted(self, conn: _TcpConn) -> None:
        """Ours is up (the handshake is behind it); an inbound one has passed the TCP
        limits (per source, in all) and only now gets its handshake, so a crowd of
        half-open handshakes is held to those limits like any TCP connection."""
        if not conn.inbound:
            super()._accepted(conn)
            return
        assert conn.transport is not None and self._serving is not None
        conn.transport.pause_reading()  # the ClientHello is for the handshake, not SIP
        task = asyncio.get_running_loop().create_task(self._handshake(conn))
        self._handshakes.add(task)
        task.add_done_callback(self._handshakes.discard)

    async def _handshake(self, conn: _TcpConn) -> None:
        raw = conn.transport
        assert raw is not None and self._serving is not None
        try:
            tls = await asyncio.get_running_loop().start_tls(
                raw, conn, self._serving, server_side=True,
                ssl_handshake_timeout=self.settings.handshake_timeout)
        except OSError as exc:  # ssl.SSLError, and ConnectionAbortedError for the timeout
            why = exc.reason if isinstance(exc, ssl.SSLError) and exc.reason else (
                str(exc) or type(exc).__name__)
            self.lograte.log(logging.WARNING, "tls-handshake",
                             "TLS handshake from %s:%s failed: %s", *conn.peer, why)
            raw.abort()
            self._release(conn)
            return
        if tls is None or conn.transport is None:  # lost while the handshake ended
            self._release(conn)
            return
        conn.transport = tls
        conn.last_activity = self.now()
        super()._accepted(conn)

    def _lost(self, conn: _TcpConn, exc: Exception | None) -> None:
        """A connection we opened ended under requests still waiting on it: they get why
        at once (§17.1.4), not a timeout. Their answers cannot come another way: the
        server would need a certificate of ours to connect back. A TLS alert names the
        cause (under TLS 1.3 a refused client certificate comes only after the
        handshake); a close before any answer may be such a refusal without the alert."""
        if not conn.inbound and not self._closing and self.on_unreachable is not None:
            self.on_unreachable(conn.peer, self._why_lost(conn, exc))
        super()._lost(conn, exc)

    def _why_lost(self, conn: _TcpConn, exc: Exception | None) -> str:
        where = f"{conn.peer[0]}:{conn.peer[1]}"
        if conn.dropped is not None:
            why = f"TLS connection to {where} closed by us: {conn.dropped}"
        elif isinstance(exc, ssl.SSLError):
            why = tls_failure(exc, where, self.server_name(conn.peer))
        elif isinstance(exc, OSError):
            why = f"TLS connection to {where} was lost: " \
                f"{os.strerror(exc.errno) if exc.errno else exc}"
        elif conn.heard:
            why = f"TLS connection to {where} was closed by the server"
        else:
            why = f"TLS connection to {where} was closed by the server before it answered" + (
                " (did it refuse our client certificate?)" if self.settings.cert_file else "")
        return why

    def close(self) -> None:
        for task in self._handshakes:
            task.cancel()
        super().close()
