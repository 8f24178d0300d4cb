"""TCP slow-loris against our SIP port, with raw sockets (issue 12 item 3).

Small ``TcpLimits`` keep the test short; the defaults (10 s header, 300 s idle, 64 KB,
32 per source, 4096 in all) are the same code with other numbers. Every wait is bounded
by an event (the server closing the socket), never a sleep followed by a timing check.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from autocall.sip.transport import TcpLimits, TcpTransport
from autocall.sip.ua import SipUA, UAConfig

pytestmark = [pytest.mark.peers, pytest.mark.timeout(60)]

PORT = 42400  # h3's range: 42000-42999
LIMITS = TcpLimits(header_timeout=0.5, idle_timeout=1.5, max_per_source=4, max_total=10)
OPTIONS = (
    b"OPTIONS sip:autocall@127.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bKtcp1\r\n"
    b"From: <sip:x@127.0.0.1>;tag=1\r\nTo: <sip:autocall@127.0.0.1>\r\n"
    b"Call-ID: tcp1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
)


async def _agent(port: int) -> SipUA:
    return await SipUA.start(UAConfig(bind_port=port, transport="tcp", tcp_limits=LIMITS))


async def _connect(
    port: int, source: str = "127.0.0.1"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))


async def _closed_by_server(reader: asyncio.StreamReader, within: float) -> bool:
    """True when the server closes (EOF or reset) within ``within`` seconds."""
    try:
        async with asyncio.timeout(within):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        return True
    return True


async def test_half_sent_header_is_closed_after_the_header_timeout() -> None:
    ua = await _agent(PORT)
    try:
        reader, writer = await _connect(PORT)
        writer.write(OPTIONS[:60])  # a request line and half a Via, then nothing
        await writer.drain()
        assert await _closed_by_server(reader, 5), "half-sent header held open"
        writer.close()
        # A whole request on a fresh connection is still answered.
        reader, writer = await _connect(PORT)
        writer.write(OPTIONS)
        reply = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert reply.startswith(b"SIP/2.0 200")
        # ...and that connection, idle afterwards, is closed by the idle timeout.
        assert await _closed_by_server(reader, 6), "idle connection held open"
        writer.close()
    finally:
        await ua.close()


async def test_huge_content_length_is_refused_before_its_body_is_held() -> None:
    ua = await _agent(PORT + 1)
    try:
        reader, writer = await _connect(PORT + 1)
        head = OPTIONS.replace(b"Content-Length: 0", b"Content-Length: 990000")
        writer.write(head + b"x" * 100_000)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        assert await _closed_by_server(reader, 5), "990 KB message held open"
        writer.close()
        assert isinstance(ua.transport, TcpTransport)
        async with asyncio.timeout(5):
            while ua.transport.connections:
                await asyncio.sleep(0.05)
    finally:
        await ua.close()


async def test_connections_per_source_and_in_all_are_capped_and_released() -> None:
    ua = await _agent(PORT + 2)
    assert isinstance(ua.transport, TcpTransport)
    tcp = ua.transport
    try:
        first = [await _connect(PORT + 2, "127.0.0.5") for _ in range(LIMITS.max_per_source)]
        extra_r, extra_w = await _connect(PORT + 2, "127.0.0.5")
        assert await _closed_by_server(extra_r, 5), "5th connection from one source kept"
        extra_w.close()
        # The first four are still served.
        r, w = first[0]
        w.write(OPTIONS)
        assert (await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 5)).startswith(b"SIP/2.0 200")
        others = [await _connect(PORT + 2, f"127.0.0.{6 + n // 3}") for n in range(6)]
        assert tcp.connections == LIMITS.max_total
        over_r, over_w = await _connect(PORT + 2, "127.0.0.20")
        assert await _closed_by_server(over_r, 5), "connection past max_total kept"
        over_w.close()
        for _, w in first + others:
            w.close()
        # Every closed connection is forgotten: nothing held for a stranger who left.
        async with asyncio.timeout(5):
            while tcp.connections or tcp._per_source:
                await asyncio.sleep(0.05)
    finally:
        await ua.close()
