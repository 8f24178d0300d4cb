"""A MediaSession's subscriber lists and its record of received digits (loopback UDP)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import numpy as np
import pytest

from autocall.audio.tones import beep
from autocall.media import Digit, MediaEngine, MediaSession

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def pair() -> AsyncIterator[tuple[MediaSession, MediaSession]]:
    """Two live sessions on loopback, each sending to the other."""
    engine = MediaEngine()
    a = await MediaSession.open(engine)
    b = await MediaSession.open(engine)
    a.start(("127.0.0.1", b.local_port), 0, 101)
    b.start(("127.0.0.1", a.local_port), 0, 101)
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()
        engine.close()

Frames = list[np.ndarray]


async def test_every_subscriber_hears_and_one_that_leaves_hears_no_more(
    pair: tuple[MediaSession, MediaSession],
) -> None:
    a, b = pair
    first: Frames = []
    second: Frames = []
    signal: Frames = []
    leaving: Callable[[np.ndarray], None] = first.append
    b.on_audio.append(leaving)
    b.on_audio.append(second.append)
    b.on_signal.append(signal.append)
    await a.play(beep(1000, 200, -10))
    await asyncio.sleep(0.1)
    assert first and len(first) == len(second) and signal
    b.on_audio.remove(leaving)
    heard = len(first)
    await asyncio.sleep(0.1)
    assert len(first) == heard and len(second) > heard


async def test_digits_are_kept_for_every_reader_and_read_once_by_digits(
    pair: tuple[MediaSession, MediaSession],
) -> None:
    a, b = pair
    told: list[Digit] = []
    b.on_digit.append(told.append)
    await a.send_dtmf("12", duration_ms=60, gap_ms=60)
    await asyncio.sleep(0.3)
    assert "".join(d.digit for d in b.received_digits) == "12"
    assert told == b.received_digits
    read: list[Digit] = []
    async for d in b.digits():  # what came before digits() was called is kept
        read.append(d)
        if len(read) == 2:
            break
    assert read == b.received_digits
    later = asyncio.ensure_future(_all(b))
    await asyncio.sleep(0.05)
    await b.close()
    assert await asyncio.wait_for(later, 1) == []  # each digit is read once
    assert b.stats().dtmf_received == 2


async def _all(media: MediaSession) -> list[Digit]:
    return [d async for d in media.digits()]


def _loud_at(frames: Frames, hz: float) -> int:
    """Frames whose strongest frequency is ``hz`` (±50 Hz) and that are not silence."""
    n = 0
    for f in frames:
        x = f.astype(np.float64)
        if np.sqrt(np.mean(x * x)) < 300:
            continue
        peak = np.argmax(np.abs(np.fft.rfft(x))) * 8000 / len(x)
        n += abs(peak - hz) <= 50
    return n


async def test_a_listener_who_comes_back_hears_the_stream_from_then_on(
    pair: tuple[MediaSession, MediaSession],
) -> None:
    """Playout runs only while someone listens (nobody: no jitter buffer at all); one who
    comes back hears what arrives from then on, at once, nothing kept from before."""
    a, b = pair
    frames: Frames = []
    b.on_audio.append(frames.append)
    playing = asyncio.ensure_future(a.play(beep(1000, 600, -10)))
    await asyncio.sleep(0.3)
    assert _loud_at(frames, 1000) >= 8
    b.on_audio.remove(frames.append)  # in the middle of the tone: some of it buffered
    await playing  # the rest of it while nobody listens
    await asyncio.sleep(0.3)
    back: Frames = []
    b.on_audio.append(back.append)
    await a.play(beep(2000, 300, -10))
    await asyncio.sleep(0.15)
    b.on_audio.remove(back.append)
    assert _loud_at(back, 1000) == 0  # nothing of what came while nobody listened
    assert _loud_at(back, 2000) >= 12  # the 15 frames of the new tone, edges aside
    assert b.stats().late_packets == 0
