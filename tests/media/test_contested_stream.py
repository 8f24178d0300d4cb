"""Issue 22 follow-up: a stray stream that holds the latch, and the caller's own stream as
its challenger (the soak's ``stray+jitter`` and ``stray`` profiles).

1. The stray gets the latch first when jitter delays the caller's first packets; the
   caller's packets then reach only the in-band detector of the competing stream. Every
   one of them must reach it, reordered or not (they used to count only while their
   sequence numbers came in order: 11 of 40 soak calls lost digits).
2. One key press must never be reported twice because two streams (two detectors) heard
   it.
"""

from __future__ import annotations

import random
import socket
from collections.abc import AsyncIterator

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autocall.audio import g711
from autocall.audio.tones import beep, dtmf
from autocall.media import MediaEngine, MediaSession
from autocall.media.reorder import ReorderBuffer
from autocall.media.rtp import RtpPacket
from autocall.media.source import SourceValidator
from tests.media.udp_call import Packet, digits_after, udp_call

pytestmark = pytest.mark.timeout(30)

US, CALLER = 40310, 40311  # h9's port range: 40000-40999
CALLER_SSRC, STRAY_SSRC = 0xCA11, 0x5742
FRAME = 0.02


# -- the source validator: the challenger's packets, jittered -----------------------------


@given(
    jitter=st.lists(st.floats(0, 0.04), min_size=60, max_size=60),
    lead=st.integers(2, 6),
)
@settings(max_examples=200, deadline=None)
def test_every_packet_of_a_reordered_challenger_is_shown_once(
    jitter: list[float], lead: int
) -> None:
    """The stray latches first (``lead`` packets ahead); the caller's packets arrive with
    0-40 ms of jitter each (so reordered) and must all come out as contested, once."""
    events: list[tuple[float, int, int]] = [(FRAME * k, STRAY_SSRC, k) for k in range(80)]
    events += [(FRAME * (lead + i) + j, CALLER_SSRC, i) for i, j in enumerate(jitter)]
    events.sort()
    validator: SourceValidator[int] = SourceValidator()
    shown: list[int] = []
    for t, ssrc, i in events:
        admit = validator.check(ssrc, (1000 + i) % 65536, 160 * i, t, i)
        if ssrc == CALLER_SSRC:
            assert not admit.new_source, "the stray is alive: no take-over"
            if admit.contested:
                shown.extend(admit.items)
    assert validator.ssrc == STRAY_SSRC
    # the first packet may be seen before the caller is steady: held, then shown with it
    assert sorted(shown) == list(range(len(jitter)))


@given(gap=st.integers(0, 3000), late=st.booleans())
def test_the_reorder_buffer_says_what_gap_the_timestamps_put_before_resumed_audio(
    gap: int, late: bool
) -> None:
    """After `mark_idle` (an arrival pause), ``resume_gap`` is the silence the sender's
    timestamps put before the next audio (capped like any gap), whatever the arrivals."""
    rb = ReorderBuffer()
    tone = np.ones(160, dtype=np.int16)
    for i in range(3):
        rb.push(i, 160 * i, tone, FRAME * i)
    rb.pop(0.05)
    rb.mark_idle()
    assert rb.resume_gap is None
    arrival = 1.0 if late else 0.06
    if late:  # the next packet is held back: the one after it comes first
        rb.push(4, 640 + gap, tone, arrival)
    rb.push(3, 480 + gap, tone, arrival)
    rb.pop(arrival)
    assert rb.resume_gap == min(gap, rb.max_gap)


# -- a live session over UDP --------------------------------------------------------------


@pytest.fixture
async def call(engine: MediaEngine) -> AsyncIterator[tuple[MediaSession, socket.socket]]:
    async with udp_call(engine, US, CALLER) as both:
        yield both


def stream(pcm: np.ndarray, ssrc: int, seq0: int, ts0: int, start: float = 0.0) -> list[Packet]:
    payload = g711.ulaw_encode(pcm)
    return [
        (
            start + FRAME * i,
            bytes(
                RtpPacket(
                    0,
                    (seq0 + i) % 65536,
                    (ts0 + 160 * i) % 2**32,
                    ssrc,
                    payload[160 * i : 160 * (i + 1)],
                    marker=i == 0,
                )  # fmt: skip
            ),
        )
        for i in range(len(payload) // 160)
    ]


def keys(code: str) -> np.ndarray:
    lead = np.zeros(800, dtype=np.int16)
    return np.concatenate((lead, dtmf(code, on_ms=100, off_ms=100), lead))


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_jittered_caller_behind_a_stray_that_latched_first_keeps_every_digit(
    call: tuple[MediaSession, socket.socket], seed: int
) -> None:
    """The soak's stray+jitter: each stray packet right behind the caller's, which is
    then delayed by 0-40 ms (so the stray comes first and latches)."""
    media, caller = call
    code = "56785678"
    rng = random.Random(seed)
    real = [(t + rng.uniform(0, 0.04), p) for t, p in stream(keys(code), CALLER_SSRC, 100, 5000)]
    noise = beep(300, 1000 * len(keys(code)) // 8000, -30)
    stray = stream(noise, STRAY_SSRC, 40000, 3_000_000_000)
    assert await digits_after(media, real + stray, caller) == code
    assert media.stats().source_switches == 0


# -- one press, two streams ---------------------------------------------------------------


@pytest.mark.parametrize("copy_first", [False, True])
async def test_a_press_heard_on_two_streams_is_reported_once(
    call: tuple[MediaSession, socket.socket], copy_first: bool
) -> None:
    """A gateway that sends the caller's audio twice, the second copy under another SSRC
    and timestamp space (or a latch that moves to the challenger in the middle of a
    tone): the latched stream's detector and the competing stream's both hear each key.
    Repeated keys with real pauses between them stay two presses."""
    media, caller = call
    code = "55667788"
    real = stream(keys(code), CALLER_SSRC, 100, 5000, start=0.02 if copy_first else 0.0)
    copy = stream(keys(code), STRAY_SSRC, 40000, 3_000_000_000, start=0.0 if copy_first else 0.03)
    assert await digits_after(media, real + copy, caller) == code


# -- a delivery hold longer than the signal's idle time ------------------------------------


def held(packets: list[Packet], start: float, length: float) -> list[Packet]:
    """The network holds what is sent in [start, start + length) and then sends it at once."""
    return [(start + length if start <= t < start + length else t, p) for t, p in packets]


@pytest.mark.parametrize("hold_ms", [300, 450])
async def test_a_hold_longer_than_the_idle_time_mid_tone_does_not_double_a_digit(
    call: tuple[MediaSession, socket.socket], hold_ms: int
) -> None:
    """The timestamps say the tone went on: only a gap in them may split it (issue 22)."""
    media, caller = call
    code = "5858"
    packets = stream(keys(code), CALLER_SSRC, 100, 5000)
    # in the tone of the second key (0.3-0.4 s), 40 ms after it starts
    packets = held(packets, 0.34, hold_ms / 1000)
    assert await digits_after(media, packets, caller) == code


@pytest.mark.parametrize("hold_at", [0.2, 0.24, 0.28])
async def test_two_presses_with_a_long_hold_in_their_pause_stay_two(
    call: tuple[MediaSession, socket.socket], hold_at: float
) -> None:
    """The first tone sounds 0.1-0.2 s, the second 0.3-0.4 s: the timestamps have a real
    pause between them, so the silence of a 300 ms hold in it must not merge them."""
    media, caller = call
    packets = held(stream(keys("55"), CALLER_SSRC, 100, 5000), hold_at, 0.3)
    assert await digits_after(media, packets, caller) == "55"


async def test_a_long_hold_mid_tone_on_the_competing_stream_does_not_double_a_digit(
    call: tuple[MediaSession, socket.socket],
) -> None:
    """The stray holds the latch (it came first) and goes on through the hold; the
    caller's stream, heard by the competing stream's detector, is held for 300 ms."""
    media, caller = call
    code = "5858"
    real = held(stream(keys(code), CALLER_SSRC, 100, 5000, start=0.1), 0.44, 0.3)
    noise = beep(300, 1000 * len(keys(code)) // 8000 + 500, -30)
    stray = stream(noise, STRAY_SSRC, 40000, 3_000_000_000)
    assert await digits_after(media, real + stray, caller) == code
    assert media.stats().source_switches == 0


async def test_a_stray_that_takes_over_after_a_long_hold_mid_tone_does_not_double_a_digit(
    call: tuple[MediaSession, socket.socket],
) -> None:
    """The caller holds the latch; a 300 ms hold of both streams mid-tone, then the held
    stray packets come first (they were not delayed by jitter): the stray takes the latch
    over, and the rest of the tone is heard by the competing stream's detector."""
    media, caller = call
    code = "5858"
    real = stream(keys(code), CALLER_SSRC, 100, 5000)
    noise = beep(300, 1000 * len(keys(code)) // 8000, -30)
    stray = [(t + 0.005, p) for t, p in stream(noise, STRAY_SSRC, 40000, 3_000_000_000)]
    real = held(real, 0.34, 0.3)
    stray = [(0.639 if 0.34 <= t < 0.64 else t, p) for t, p in stray]  # held, first
    assert await digits_after(media, real + stray, caller) == code
    assert media.stats().source_switches == 1
