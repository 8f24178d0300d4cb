"""Issue 22, 1 % loss: a call behind the others of its shared detector bank keeps its tone whole.

A bank analyses all its calls together, so it waits until each holds a batch; a call far
behind (its reorder buffer waiting for a lost packet, while other calls' holes kept the
bank waiting before) must not hold the others up. This pool once padded such a call with
silence, which landed in the middle of whatever it was receiving: in the soak, 9 of
1,200 calls at 1 % random loss stored a doubled digit that way ('12345667' for
'12345678'). The bank now holds that call out of the feed instead (its audio waits,
untouched, for the next one), so nothing is added to what the call received.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import numpy as np
import pytest

from autocall.audio.dtmf import DtmfEvent
from autocall.audio.tones import dtmf, silence
from autocall.media import Digit, MediaEngine, MediaSession
from autocall.media.detection import DetectorPool
from tests.media.udp_call import keyed, udp_call

pytestmark = pytest.mark.timeout(30)

US, CALLER = 40320, 40321  # h9's port range: 40000-40999
FRAME = 0.02


@pytest.fixture
async def call() -> AsyncIterator[tuple[MediaEngine, MediaSession, socket.socket]]:
    engine = MediaEngine()
    async with udp_call(engine, US, CALLER) as (media, caller):
        yield engine, media, caller
    engine.close()


@pytest.mark.parametrize("lost", [6, 7, 8])  # the second, third, fourth packet of the "5"
async def test_a_bank_pad_while_a_lost_packet_is_waited_for_does_not_double_a_digit(
    call: tuple[MediaEngine, MediaSession, socket.socket], lost: int
) -> None:
    engine, media, caller = call
    got: list[Digit] = []
    media.on_digit.append(got.append)
    pool = engine.detector_pool()
    # another call of the same bank, far ahead: the bank must feed without this one
    other = pool.attach(lambda ev: None)
    push = pool.pusher(other)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    held_before = pool.held
    for i, data in enumerate(keyed("56")):  # "5" is packets 5-9
        delay = t0 + FRAME * i - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        push(np.zeros(160, np.int16))
        if i == lost:
            push(np.zeros(4 * pool.batch, np.int16))  # the others are 400 ms ahead now
            continue
        caller.sendto(data, ("127.0.0.1", US))
    for _ in range(40):  # the signal's idle time and the release confirmation
        await asyncio.sleep(FRAME)
        push(np.zeros(160, np.int16))
    pool.detach(other)
    assert pool.held > held_before  # the case under test happened: this call was behind
    assert "".join(d.digit for d in got) == "56"


def test_a_call_behind_is_held_out_of_the_feed_not_padded() -> None:
    pool = DetectorPool(bank_size=4, batch=800)
    got: list[DtmfEvent] = []
    behind = pool.attach(got.append)
    ahead = pool.attach(lambda ev: None)
    tone = np.concatenate([dtmf("4", on_ms=100, off_ms=0), silence(500)])
    pool.push(behind, tone[:300])  # 37.5 ms into its '4'
    pool.push(ahead, np.zeros(4 * 800, np.int16))
    pool.run()
    assert pool.held == 1  # fed without it
    pool.push(behind, tone[300:])  # the rest of the press, then its release
    for _ in range(10):
        pool.push(behind, np.zeros(160, np.int16))
        pool.push(ahead, np.zeros(160, np.int16))
        pool.run()
    assert [(e.digit, round(e.start, 3), round(e.end - e.start, 3)) for e in got] == [
        ("4", 0.0, 0.1)
    ]
