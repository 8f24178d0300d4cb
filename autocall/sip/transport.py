"""asyncio UDP and TCP transports for SIP (RFC 3261 §18).

The bind address (where the socket listens) is kept apart from the advertised address
(what goes into Via and Contact), because behind NAT or in a container they differ.
Transports only move bytes and frame TCP streams; everything else is in the sans-I/O
modules.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from autocall.sip.message import Request, Response, StreamParser, parse_message

__all__ = ["Transport", "UdpTransport", "TcpTransport", "Received", "default_advertise"]

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


class Transport:
    name = "UDP"
    reliable = False

    def __init__(self, handler: Handler, advertise: Addr) -> None:
        self.handler = handler
        self.advertise = advertise
        self.local: Addr = ("0.0.0.0", 0)
        self.on_unreachable: Unreachable | None = None

    def send(self, message: Request | Response, dest: Addr) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

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


class _TcpConn(asyncio.Protocol):
    def __init__(self, owner: TcpTransport) -> None:
        self.owner = owner
        self.parser = StreamParser()
        self.transport: asyncio.Transport | None = None
        self.peer: Addr = ("", 0)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = (str(peer[0]), int(peer[1]))
        self.owner._conns[self.peer] = self

    def data_received(self, data: bytes) -> None:
        try:
            messages = self.parser.feed(data)
        except ValueError as exc:
            # A broken stream cannot be re-framed: report and drop the connection (§18.3).
            self.owner.handler(Received(None, data, self.peer, self.owner, str(exc)))
            if self.transport is not None:
                self.transport.close()
            return
        for msg in messages:
            self.owner.handler(Received(msg, b"", self.peer, self.owner))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.owner._conns.get(self.peer) is self:
            del self.owner._conns[self.peer]


class TcpTransport(Transport):
    """Listens for connections and reuses one connection per peer in both directions."""

    name = "TCP"
    reliable = True

    def __init__(self, handler: Handler, advertise: Addr) -> None:
        super().__init__(handler, advertise)
        self._server: asyncio.Server | None = None
        self._conns: dict[Addr, _TcpConn] = {}
        self._pending: dict[Addr, asyncio.Task[None]] = {}
        self._queued: dict[Addr, list[bytes]] = {}

    @classmethod
    async def create(cls, handler: Handler, bind: Addr,
                     advertise: tuple[str | None, int | None] = (None, None)) -> TcpTransport:
        self = cls(handler, ("", 0))
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _TcpConn(self), bind[0], bind[1])
        host, port = self._server.sockets[0].getsockname()[:2]
        self.local = (host, port)
        self.advertise = (advertise[0] or default_advertise(host), advertise[1] or port)
        return self

    def send(self, message: Request | Response, dest: Addr) -> None:
        data = bytes(message)
        conn = self._conns.get(dest)
        if conn is not None and conn.transport is not None and not conn.transport.is_closing():
            conn.transport.write(data)
            return
        self._queued.setdefault(dest, []).append(data)
        if dest not in self._pending:
            self._pending[dest] = asyncio.get_running_loop().create_task(self._connect(dest))

    async def _connect(self, dest: Addr) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, proto = await asyncio.wait_for(
                loop.create_connection(lambda: _TcpConn(self), dest[0], dest[1]), 5)
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
        if self._server is not None:
            self._server.close()
        for conn in list(self._conns.values()):
            if conn.transport is not None:
                conn.transport.close()
        for task in self._pending.values():
            task.cancel()
