"""Issue 22, a loaded machine: a receiver that is seconds behind reads a backlog of packets
a few per wake-up, and must hear in it exactly the keys that were sent.

Under load (load average 10-16) serve reported the RFC 4733 '4' 3.4 s after it arrived,
and stored '123456778' and '123456678' for '12345678': the relay saw every packet on time
and in order. The engine reads at most `MediaEngine.max_reads` datagrams per socket per
wake-up; the kernel stamps of a backlog are seconds old, so between two slices of it the
signal counted as idle and silence went to the detector in the middle of a tone: two
presses. Idle now counts from when packets are read.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator

import numpy as np
import pytest

from autocall.media import Digit, MediaEngine
from autocall.media.reorder import ReorderBuffer
from tests.media.udp_call import keyed, udp_call

pytestmark = pytest.mark.timeout(60)

US, CALLER = 35010, 35011  # this helper's range: 35000-35999
FRAME = 0.02
SIGNAL_IDLE = 0.25


def test_a_backlog_read_in_slices_is_not_idle_between_them() -> None:
    """Sans-I/O: 120 packets that arrived 20 ms apart from t=0, read 8 per wake-up from
    t=3 s on (a receiver 3 s behind). Between slices the signal is not idle; once the
    backlog is read and nothing more comes, it is, counted from the last reading."""
    buf = ReorderBuffer()
    tone = np.full(160, 1000, np.int16)
    wake = 3.0
    for i in range(120):
        buf.push(100 + i, 5000 + 160 * i, tone, i * FRAME, read=wake)
        if i % 8 == 7:
            assert len(np.concatenate(buf.pop(wake))) == 8 * 160
            wake += FRAME
            assert not buf.idle(wake, SIGNAL_IDLE), i  # the next slice is still unread
    assert not buf.idle(wake + 0.2, SIGNAL_IDLE)
    assert buf.idle(wake + SIGNAL_IDLE, SIGNAL_IDLE)


@pytest.fixture
async def engine() -> AsyncIterator[MediaEngine]:
    # Two reads per wake-up (8 by default): the backlog takes many slices to read, as
    # it did with twenty calls' sockets to read on a loaded machine.
    engine = MediaEngine(max_reads=2)
    yield engine
    engine.close()


async def test_a_receiver_seconds_behind_hears_each_key_once(engine: MediaEngine) -> None:
    """Live: the caller sends '5678' at its pace while our event loop is blocked for
    1.5 s (the loaded process), so the whole code waits in the socket and is read a
    few packets per wake-up after the block."""
    async with udp_call(engine, US, CALLER) as (media, caller):
        got: list[Digit] = []
        media.on_digit.append(got.append)
        packets = keyed("5678")

        def send() -> None:
            t0 = time.monotonic()
            for i, data in enumerate(packets):
                delay = t0 + FRAME * i - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                caller.sendto(data, ("127.0.0.1", US))

        await asyncio.sleep(0.1)
        sender = threading.Thread(target=send)
        sender.start()
        time.sleep(1.5)  # the event loop does nothing meanwhile: a backlog of ~75 packets
        sender.join()
        for _ in range(100):
            await asyncio.sleep(FRAME)
            if len(got) >= 4:
                break
        await asyncio.sleep(0.5)  # a doubled key would come after the fourth
        assert "".join(d.digit for d in got) == "5678", got
