"""Issue 22, bursty loss: a run of lost packets inside a tone is not a pause between presses.

A hole in the *sequence numbers* says packets were sent and lost; only a gap in the
*timestamps* between consecutive packets says the sender paused (ITU-T Q.24: 40 ms or
more separates two digits). The receive path still puts silence where the lost audio
was (so a lost pause keeps two different keys apart), but a press that resumes exactly
after that silence is the press before it. In the soak's bursty-loss profile 17 of
1,200 calls stored a doubled digit ('12345667' for '12345678').
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import numpy as np
import pytest

from autocall.media import Digit, MediaEngine, MediaSession
from autocall.media.reorder import ReorderBuffer
from tests.media.udp_call import keyed, udp_call

pytestmark = pytest.mark.timeout(30)

US, CALLER = 40330, 40331  # h9's port range: 40000-40999
FRAME = 0.02


@pytest.fixture
async def call() -> AsyncIterator[tuple[MediaSession, socket.socket]]:
    engine = MediaEngine()
    async with udp_call(engine, US, CALLER) as pair:
        yield pair
    engine.close()


async def heard(media: MediaSession, sock: socket.socket, sent: list[bytes], lost: set[int]) -> str:
    got: list[Digit] = []
    media.on_digit.append(got.append)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for i, data in enumerate(sent):
        delay = t0 + FRAME * i - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if i not in lost:
            sock.sendto(data, ("127.0.0.1", US))
    await asyncio.sleep(0.8)  # the reorder window, the idle time, the release confirmation
    return "".join(d.digit for d in got)


@pytest.mark.parametrize("lost", [{7, 8}, {8, 9}, {8, 9, 10}, {9, 10}, {20, 21}])
async def test_a_run_of_lost_packets_inside_a_tone_does_not_double_a_digit(
    call: tuple[MediaSession, socket.socket], lost: set[int]
) -> None:
    """Tones of 160 ms ("5" is packets 5-12, "6" is 17-24): 40-60 ms lost in the middle."""
    media, caller = call
    assert await heard(media, caller, keyed("56", on_ms=160), lost) == "56"


async def test_two_presses_of_one_key_stay_two_when_part_of_the_pause_is_lost(
    call: tuple[MediaSession, socket.socket],
) -> None:
    """"55" with a 100 ms pause (packets 10-14), 40 ms of it lost: still two presses."""
    media, caller = call
    assert await heard(media, caller, keyed("55"), {11, 12}) == "55"


def test_the_reorder_buffer_says_how_much_silence_it_put_in_for_lost_packets() -> None:
    reorder = ReorderBuffer(window=0.2)
    tone = np.full(160, 3000, np.int16)
    for i in [0, 1, 2, 5, 6]:  # 3 and 4 lost: 40 ms
        reorder.push(i, 160 * i, tone, 0.0)
    reorder.pop(0.3)
    assert reorder.take_hole() == 320 and reorder.take_hole() == 0
    reorder.push(7, 160 * 7 + 800, tone, 0.4)  # the sender paused 100 ms: not a loss
    reorder.pop(0.4)
    assert reorder.take_hole() == 0


def test_audio_released_before_silence_is_marked_follows_it_directly() -> None:
    """A detector bank pads its silence after a call's last pop, when the next packet
    may already have been read: that packet resumes the audio with no gap (the soak's
    bursty-loss profile doubled a '7' this way, the pad taken for a pause)."""
    reorder = ReorderBuffer()
    tone = np.full(160, 3000, np.int16)
    for i in range(3):
        reorder.push(i, 160 * i, tone, FRAME * i)
    assert len(np.concatenate(reorder.pop(0.04))) == 480
    reorder.push(3, 480, tone, 0.06)  # read before the bank padded
    reorder.mark_idle()
    assert reorder.resume_gap == 0
    assert len(np.concatenate(reorder.pop(0.06))) == 160
