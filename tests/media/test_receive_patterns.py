"""The two recorded patterns of issue 22, replayed into a live MediaSession over UDP.

1. The hiccup: the caller's sender pauses for 50-150 ms in the middle of a tone and then
   sends the held packets at once (nothing lost, nothing reordered). The fixed playout
   buffer used to run dry, conceal, and split the tone: a doubled digit.
2. The stray stream: a second stream from the caller's own address, with another SSRC
   and timestamp space, interleaved with the real one (a port reused while the previous
   caller's gateway still sends). Every SSRC change used to reset the buffer: all in-band
   digits were lost.

Two presses of the same key with a real pause between them stay two digits.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Sequence

import numpy as np
import pytest

from autocall.audio import g711
from autocall.audio.tones import beep, dtmf
from autocall.media import MediaEngine, MediaSession
from autocall.media.rtp import RtpPacket
from autocall.media.telephone_event import TelephoneEvent, event_code
from tests.media.udp_call import Packet, digits_after, udp_call

pytestmark = pytest.mark.timeout(30)

US, CALLER, OTHER = 40300, 40301, 40302  # h1's port range: 40000-40999


@pytest.fixture
async def call(engine: MediaEngine) -> AsyncIterator[tuple[MediaSession, socket.socket]]:
    async with udp_call(engine, US, CALLER) as both:
        yield both


def stream(
    pcm: np.ndarray, ssrc: int, seq0: int, ts0: int, holds: Sequence[tuple[float, float]] = ()
) -> list[Packet]:
    """20 ms μ-law packets at their pace; a packet due inside a hold (start, length) is
    sent when the hold ends, together with the others it held."""
    payload = g711.ulaw_encode(pcm)
    out: list[Packet] = []
    for i in range(len(payload) // 160):
        t = 0.02 * i
        for start, length in holds:
            if start <= t < start + length:
                t = start + length
        pkt = RtpPacket(0, (seq0 + i) % 65536, (ts0 + 160 * i) % 2**32, ssrc,
                        payload[160 * i : 160 * (i + 1)], marker=i == 0)  # fmt: skip
        out.append((t, bytes(pkt)))
    return out


def keys(code: str, on_ms: int = 100, off_ms: int = 100) -> np.ndarray:
    lead = np.zeros(800, dtype=np.int16)
    return np.concatenate((lead, dtmf(code, on_ms=on_ms, off_ms=off_ms), lead))


@pytest.mark.parametrize("hold_ms", [55, 60, 80, 150])
async def test_a_sender_hiccup_mid_tone_does_not_double_a_digit(
    call: tuple[MediaSession, socket.socket], hold_ms: int
) -> None:
    media, caller = call
    code = "12345678"
    # each tone is 100 ms from 0.1 + 0.2 k s: hold the packets from its 40th ms on
    holds = [(0.1 + 0.2 * k + 0.04, hold_ms / 1000) for k in range(len(code))]
    packets = stream(keys(code), 0x1234, 100, 5000, holds)
    assert await digits_after(media, packets, caller) == code


async def test_two_presses_of_one_key_with_a_real_pause_stay_two(
    call: tuple[MediaSession, socket.socket],
) -> None:
    media, caller = call
    code = "55669"
    holds = [(0.5, 0.06)]  # and a hiccup on the way
    packets = stream(keys(code, on_ms=80, off_ms=60), 0x1234, 100, 5000, holds)
    assert await digits_after(media, packets, caller) == code


@pytest.mark.parametrize("stray_first", [False, True])
async def test_a_stray_stream_from_the_callers_address_does_not_lose_inband_digits(
    call: tuple[MediaSession, socket.socket], stray_first: bool
) -> None:
    media, caller = call
    code = "12345678"
    real = stream(keys(code), 0x1234, 100, 5000)
    noise = beep(300, 1000 * len(keys(code)) // 8000, -30)  # the previous caller's room
    offset = 0.0 if not stray_first else -0.3
    stray = [(t + offset + 0.01, p) for t, p in stream(noise, 0x9999, 40000, 3_000_000_000)]
    if stray_first:  # the stray stream is there before the call's own and stops later
        real = [(t + 0.3, p) for t, p in real]
        stray = [(t + 0.3, p) for t, p in stray]
    assert await digits_after(media, real + stray, caller) == code
    stats = media.stats()
    assert stats.ignored_packets > 0


@pytest.mark.parametrize("event_ssrc", [0x1234, 0x5678], ids=["audio-ssrc", "own-ssrc"])
async def test_a_stray_stream_does_not_take_over_during_a_long_rfc4733_event(
    call: tuple[MediaSession, socket.socket], event_ssrc: int
) -> None:
    """Events only for 400 ms (the audio pauses, as senders do during an event)."""
    media, caller = call
    silence = np.zeros(2400, dtype=np.int16)
    head = stream(silence, 0x1234, 100, 5000)  # 300 ms of audio: 15 packets
    code = event_code("7")
    payloads = [bytes(TelephoneEvent(code, i >= 17, 10, 160 * min(i + 1, 17))) for i in range(20)]
    events = [
        (0.3 + 0.02 * i, bytes(RtpPacket(101, 115 + i, 7400, event_ssrc, p, marker=i == 0)))
        for i, p in enumerate(payloads)
    ]
    tail = [(t + 0.7, p) for t, p in stream(silence, 0x1234, 135, 5000 + 2400 + 3200)]
    stray = [(t + 0.01, p) for t, p in stream(np.zeros(9600, dtype=np.int16), 0x9999, 7, 77)]
    got = await digits_after(media, head + events + tail + stray, caller)
    assert got == "7"
    assert media.stats().source_switches == 0


async def test_rfc4733_on_the_callers_audio_ssrc_counts_while_a_stray_holds_the_latch(
    call: tuple[MediaSession, socket.socket],
) -> None:
    media, caller = call
    stray = stream(np.zeros(16000, dtype=np.int16), 0x9999, 7, 77)  # 2 s, there first
    real = [(t + 0.3, p) for t, p in stream(np.zeros(4000, dtype=np.int16), 0x1234, 100, 5000)]
    code = event_code("5")
    events = [
        (0.8 + 0.02 * i, bytes(RtpPacket(101, 125 + i, 9000, 0x1234, p, marker=i == 0)))
        for i, p in enumerate(bytes(TelephoneEvent(code, i >= 5, 10, 160 * min(i + 1, 5)))
                              for i in range(8))
    ]  # fmt: skip
    assert await digits_after(media, stray + real + events, caller) == "5"
