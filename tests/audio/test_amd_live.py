"""AMD on a live media session times the far end's audio, not our playout.

A voicemail's RTP arrives with a delivery hold now and then (no packet lost, none
reordered, as a busy host or a carrier's network does it: issue 22). Playout conceals
each hold with silence and grows its buffer, so a detector fed from playout hears the
beep later than it was sent, and the message that waits for the beep starts late (CI saw
0.53 s after the beep for a 0.5 s promise). Fed the signal in RTP order, the detector's
clock stays the sender's.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import numpy as np
import pytest

from autocall.audio import g711
from autocall.audio.amd import AmdBeep, AmdDetector
from autocall.media import MediaEngine
from autocall.media.rtp import RtpPacket
from autocall.telephony.answer import AmdPool
from tests.media.udp_call import udp_call

sys.path.insert(0, str(Path(__file__).parent))

import amd_corpus  # noqa: E402

pytestmark = pytest.mark.timeout(60)

US, CALLER = 47040, 47041  # h8's range: 47000-47999
FRAME = 160
SEED = 20261204


async def _send(sock: object, pcm: np.ndarray, holds: dict[int, int]) -> None:
    """Paced 20 ms PCMU packets; at packet ``i`` in ``holds`` the next ``n`` are held back
    and then sent at once with it."""
    payload = g711.ulaw_encode(pcm)
    packets = [
        bytes(RtpPacket(0, 7 + i, 160 * i, 0xA11CE, payload[FRAME * i : FRAME * (i + 1)]))
        for i in range(len(payload) // FRAME)
    ]
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    release = 0
    for i, data in enumerate(packets):
        release = max(release, i + holds.get(i, 0))
        delay = t0 + 0.02 * release - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        sock.sendto(data, ("127.0.0.1", US))  # type: ignore[attr-defined]


async def test_delivery_holds_do_not_move_the_beep_or_the_message() -> None:
    clip = amd_corpus.make_clip("vm-beep", SEED, 0)
    assert clip.beep_end is not None
    # 160 ms holds every second, as in the soak's "hold" profile.
    holds = {i: 8 for i in range(40, clip.samples.size // FRAME, 50)}
    engine = MediaEngine()
    pool = AmdPool()
    async with udp_call(engine, US, CALLER) as (media, caller):
        listener = pool.listen(media)
        await _send(caller, clip.samples, holds)
        await asyncio.sleep(0.5)
        events = list(listener.events)
        listener.close()
    engine.close()
    sent = AmdDetector().feed(clip.samples)  # on the sender's own clock
    assert [type(e) for e in events] == [type(e) for e in sent], (events, sent)
    assert any(isinstance(e, AmdBeep) for e in sent) and abs(sent[-1].at - clip.beep_end) < 0.5
    # The live clock started a tick or two before the first packet came; after that, the
    # holds (eight of them before the beep) move nothing.
    lead = events[0].at - sent[0].at
    assert 0.0 <= lead <= 0.06, (events, sent)
    for live, true in zip(events, sent, strict=True):
        if isinstance(true, AmdBeep):
            assert isinstance(live, AmdBeep)
            assert abs(live.end - true.end - lead) <= 0.021, (live, true, lead)
        else:
            assert abs(live.at - true.at - lead) <= 0.021, (live, true, lead)
