"""A live `MediaSession` and its caller's UDP socket on fixed loopback ports, two sessions
talking to each other, and the RTP packets of a keyed code: shared by the media tests."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import numpy as np

from autocall.audio import g711
from autocall.audio.tones import dtmf
from autocall.media import Digit, MediaEngine, MediaSession
from autocall.media.rtp import RtpPacket


@asynccontextmanager
async def session_pair(engine: MediaEngine, payload_type: int
                       ) -> AsyncIterator[tuple[MediaSession, MediaSession]]:
    """Two sessions on loopback sending ``payload_type`` (and RFC 4733 as 101) to each other."""
    a = await MediaSession.open(engine)
    b = await MediaSession.open(engine)
    a.start(("127.0.0.1", b.local_port), payload_type=payload_type, dtmf_payload_type=101)
    b.start(("127.0.0.1", a.local_port), payload_type=payload_type, dtmf_payload_type=101)
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


@asynccontextmanager
async def udp_call(
    engine: MediaEngine, us: int, caller_port: int
) -> AsyncIterator[tuple[MediaSession, socket.socket]]:
    media = await MediaSession.open(engine, port=us)
    caller = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    caller.bind(("127.0.0.1", caller_port))
    caller.setblocking(False)
    media.start(("127.0.0.1", caller_port), payload_type=0, dtmf_payload_type=101)
    try:
        yield media, caller
    finally:
        await media.close()
        caller.close()


def keyed(code: str, on_ms: int = 100, off_ms: int = 100) -> list[bytes]:
    """100 ms of silence, ``code`` in-band, 100 ms of silence: 20 ms PCMU packets."""
    lead = np.zeros(800, dtype=np.int16)
    pcm = np.concatenate((lead, dtmf(code, on_ms=on_ms, off_ms=off_ms), lead))
    payload = g711.ulaw_encode(pcm)
    return [
        bytes(RtpPacket(0, 100 + i, 5000 + 160 * i, 0xCA11, payload[160 * i : 160 * (i + 1)]))
        for i in range(len(payload) // 160)
    ]


Packet = tuple[float, bytes]  # send time (seconds from the start), datagram


async def digits_after(media: MediaSession, packets: list[Packet], sock: socket.socket) -> str:
    """Send ``packets`` from ``sock`` to ``media`` at their times; the digits it heard."""
    got: list[Digit] = []
    media.on_digit.append(got.append)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for t, data in sorted(packets, key=lambda p: p[0]):
        delay = t0 + t - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        sock.sendto(data, ("127.0.0.1", media.local_port))
    await asyncio.sleep(0.8)  # the signal's idle time and the release confirmation
    return "".join(d.digit for d in got)
