"""Reliable provisional responses (RFC 3262) and UPDATE in an early dialog (RFC 3311)
against a real SIPp on 127.0.0.1. SIPp's scenario checks what we send (Supported/Require,
RAck, answers), its exit code says it saw each message in time; our side checks what it
made of SIPp's messages (PRACKs, early media heard, the negotiated media)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from autocall.audio import g711
from autocall.audio.tones import beep, silence
from autocall.sip.transaction import Timers
from autocall.telephony.call import CallStatus, UserAgent
from tests.peers import SCENARIOS, Sipp

pytestmark = [pytest.mark.peers, pytest.mark.timeout(60)]

_ports = itertools.count(19600, 10)  # ours: 19600-19699 (SIPp, its media, our agent)
FAST = Timers(t1=0.1, t2=0.4, t4=0.5, timer_d=0.5)


async def test_a_reliable_183_is_pracked_and_its_early_media_heard(tmp_path: Path) -> None:
    # 0.6 s of 1 kHz, streamed by SIPp during the 183 only: a loud left channel in our
    # recording can only be early media.
    pcm = np.concatenate([beep(1000, 600), silence(100)])
    (tmp_path / "early.ul").write_bytes(g711.ulaw_encode(pcm))
    port = next(_ports)
    peer = Sipp(SCENARIOS / "uas_183_100rel.xml", port=port, media_port=port + 2,
                cwd=tmp_path)
    with peer:
        ua = await UserAgent.start(bind_port=port + 7, timers=FAST)
        try:
            call = await ua.call(f"sip:sipp@127.0.0.1:{port}", ring_timeout=10,
                                 record=tmp_path / "call.wav")
            assert await call.wait_answer(10) is CallStatus.IN_PROGRESS
            usage = call.session.usage
            assert usage.pracks == 1  # the 183's retransmissions were not PRACKed again
            assert usage.dialog is not None and usage.dialog.local_seq == 2  # PRACK was 2
            await call.hangup()  # BYE: CSeq 3 in the dialog the 183 made
            assert await call.wait_ended(5) is CallStatus.COMPLETED
            assert peer.wait(10) == 0, peer.errors()
            rec, rate = sf.read(str(tmp_path / "call.wav"), dtype="int16")
            assert rate == 8000 and rec.ndim == 2
            assert np.abs(rec[:, 0]).max() > 1000, "no early media heard"
        finally:
            await ua.close()
