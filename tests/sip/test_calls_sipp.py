"""Outbound and inbound calls against a real SIPp on 127.0.0.1: every outcome, every digit.

SIPp runs the scenarios in ``tests/sip/scenarios``; its exit code says the far end saw
the SIP it expected from us, and our ``Call`` must report the matching status and code.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from autocall.audio import g711
from autocall.audio.tones import dtmf, silence
from autocall.sip.transaction import Timers
from autocall.telephony.call import CallStatus, DigitEvent, HangupEvent, UserAgent
from tests.peers import SCENARIOS, Sipp

pytestmark = [pytest.mark.peers, pytest.mark.timeout(60)]

_ports = itertools.count(20100, 4)
FAST = Timers(t1=0.1, t2=0.4, t4=0.5, timer_d=0.5)


def _sipp(scenario: str, **kw: object) -> tuple[Sipp, str]:
    port = next(_ports)
    peer = Sipp(SCENARIOS / scenario, port=port, media_port=port + 2, **kw)  # type: ignore[arg-type]
    return peer, f"sip:sipp@127.0.0.1:{port}"


async def _ua() -> UserAgent:
    return await UserAgent.start(timers=FAST)


@pytest.mark.parametrize(("scenario", "status", "code", "cause"), [
    ("uas_reject_486.xml", CallStatus.BUSY, 486, None),
    ("uas_reject_603.xml", CallStatus.BUSY, 603, None),
    ("uas_reject_503.xml", CallStatus.FAILED, 503, 34),  # with Reason: Q.850;cause=34
    ("uas_reject_404.xml", CallStatus.FAILED, 404, None),
    ("uas_reject_480.xml", CallStatus.NO_ANSWER, 480, None),
])
async def test_rejections_map_to_status_and_code(scenario: str, status: CallStatus,
                                                 code: int, cause: int | None) -> None:
    peer, target = _sipp(scenario)
    with peer:
        ua = await _ua()
        try:
            call = await ua.call(target, caller_id="1000", ring_timeout=10)
            assert await call.wait_answer(10) is status
            assert call.sip_code == code and call.q850_cause == cause
            assert call.answered_at is None and call.ended_at is not None
            events = [ev async for ev in call]
            assert isinstance(events[-1], HangupEvent) and events[-1].status is status
            assert peer.wait(10) == 0, peer.errors()  # SIPp got its ACK
        finally:
            await ua.close()


async def test_ring_timeout_cancels_as_no_answer() -> None:
    peer, target = _sipp("uas_ring.xml")
    with peer:
        ua = await _ua()
        try:
            call = await ua.call(target, ring_timeout=0.8)
            await asyncio.sleep(0.5)
            assert call.status is CallStatus.RINGING and call.sip_code == 180
            assert await call.wait_ended(10) is CallStatus.NO_ANSWER
            assert call.sip_code == 487
            assert peer.wait(10) == 0, peer.errors()  # SIPp saw CANCEL and got its ACK
        finally:
            await ua.close()


async def test_explicit_cancel_is_canceled() -> None:
    peer, target = _sipp("uas_ring.xml")
    with peer:
        ua = await _ua()
        try:
            # A host name, resolved off the event loop before the INVITE is built.
            call = await ua.call(target.replace("127.0.0.1", "localhost"), ring_timeout=30)
            await asyncio.sleep(0.4)
            await call.cancel()
            assert call.status is CallStatus.CANCELED and call.sip_code == 487
            assert peer.wait(10) == 0, peer.errors()
        finally:
            await ua.close()


async def test_answer_then_far_end_bye_is_completed() -> None:
    peer, target = _sipp("uas_answer_bye.xml")
    with peer:
        ua = await _ua()
        try:
            call = await ua.call(target, ring_timeout=10)
            assert await call.wait_answer(10) is CallStatus.IN_PROGRESS
            assert call.sip_code == 200 and call.answered_at is not None
            events = [ev async for ev in call]
            assert isinstance(events[-1], HangupEvent) and events[-1].by == "remote"
            assert call.status is CallStatus.COMPLETED and call.ended_by == "remote"
            assert call.duration is not None and 0.7 < call.duration < 5
            assert peer.wait(10) == 0, peer.errors()
        finally:
            await ua.close()


async def test_answer_rfc4733_digits_then_our_bye() -> None:
    peer, target = _sipp("uas_answer_rfc4733.xml")
    with peer:
        ua = await _ua()
        try:
            call = await ua.call(target, ring_timeout=10)
            assert await call.wait_answer(10) is CallStatus.IN_PROGRESS
            digits: list[tuple[str, str]] = []
            while len(digits) < 2:
                ev = await call.next_event(5)
                assert isinstance(ev, DigitEvent), ev
                digits.append((ev.digit, ev.source))
            assert digits == [("1", "rfc4733"), ("5", "rfc4733")]
            assert call.media.stats().packets_sent > 0
            await call.hangup()
            assert await call.wait_ended(5) is CallStatus.COMPLETED
            assert call.ended_by == "local"
            assert peer.wait(10) == 0, peer.errors()  # SIPp got our BYE
        finally:
            await ua.close()


async def test_answer_inband_digits(tmp_path: Path) -> None:
    pcm = np.concatenate([silence(200), dtmf("48", on_ms=120, off_ms=120), silence(300)])
    (tmp_path / "inband.ul").write_bytes(g711.ulaw_encode(pcm))
    peer, target = _sipp("uas_answer_inband.xml", cwd=tmp_path)
    with peer:
        ua = await _ua()
        try:
            call = await ua.call(target, ring_timeout=10, record=tmp_path / "call.wav")
            assert await call.wait_answer(10) is CallStatus.IN_PROGRESS
            got: list[tuple[str, str]] = []
            while len(got) < 2:
                ev = await call.next_event(5)
                assert isinstance(ev, DigitEvent), ev
                got.append((ev.digit, ev.source))
            assert got == [("4", "inband"), ("8", "inband")]
            await call.hangup()
            assert await call.wait_ended(5) is CallStatus.COMPLETED
            assert peer.wait(10) == 0, peer.errors()
            rec, rate = sf.read(str(tmp_path / "call.wav"), dtype="int16")
            assert rate == 8000 and rec.ndim == 2  # left: what we heard, right: what we sent
            assert np.abs(rec[:, 0]).max() > 1000 >= np.abs(rec[:, 1]).max()
        finally:
            await ua.close()


async def test_sipp_calls_us_with_dtmf_and_hangs_up() -> None:
    ua = await _ua()
    port = next(_ports)
    try:
        host, our_port = ua.sip.advertised
        peer = Sipp(SCENARIOS / "uac_call.xml", port=port, media_port=port + 2,
                    remote=f"{host}:{our_port}", service="robot")
        with peer:
            call = await asyncio.wait_for(anext(aiter(ua.incoming())), 5)
            assert call.direction == "inbound" and call.status is CallStatus.RINGING
            assert "sipp@" in call.remote
            await call.answer()
            assert call.status is CallStatus.IN_PROGRESS
            events = [ev async for ev in call]
            digits = [(e.digit, e.source) for e in events if isinstance(e, DigitEvent)]
            assert digits == [("7", "rfc4733"), ("9", "info")]
            assert isinstance(events[-1], HangupEvent) and events[-1].by == "remote"
            assert call.status is CallStatus.COMPLETED
            assert peer.wait(10) == 0, peer.errors()
    finally:
        await ua.close()


async def test_no_response_at_all_fails_with_408() -> None:
    ua = await _ua()
    try:
        # Nothing listens there: Timer B (64*T1 = 6.4 s with T1 = 0.1 s) ends the INVITE.
        call = await ua.call(f"sip:nobody@127.0.0.1:{next(_ports)}", ring_timeout=None)
        assert await call.wait_ended(15) is CallStatus.FAILED
        assert call.sip_code == 408
    finally:
        await ua.close()


async def test_inbound_reject_and_caller_cancel() -> None:
    ua = await _ua()
    try:
        host, our_port = ua.sip.advertised
        incoming = aiter(ua.incoming())
        port = next(_ports)
        with Sipp(SCENARIOS / "uac_rejected.xml", port=port, media_port=port + 2,
                  remote=f"{host}:{our_port}", service="robot") as caller:
            call = await asyncio.wait_for(anext(incoming), 5)
            await call.reject(486)
            assert call.status is CallStatus.BUSY and call.sip_code == 486
            assert caller.wait(10) == 0, caller.errors()
        port = next(_ports)
        with Sipp(SCENARIOS / "uac_cancel.xml", port=port, media_port=port + 2,
                  remote=f"{host}:{our_port}", service="robot") as caller:
            call = await asyncio.wait_for(anext(incoming), 5)
            assert call.status is CallStatus.RINGING
            assert await call.wait_ended(5) is CallStatus.CANCELED
            assert call.sip_code == 487 and call.ended_by == "remote"
            assert caller.wait(10) == 0, caller.errors()
    finally:
        await ua.close()


async def test_answer_crossing_our_cancel_is_acked_and_ended() -> None:
    peer, target = _sipp("uas_cancel_race.xml")
    with peer:
        ua = await _ua()
        try:
            call = await ua.call(target, ring_timeout=0.5)
            assert await call.wait_ended(10) is CallStatus.NO_ANSWER
            assert call.answered_at is None
            assert peer.wait(10) == 0, peer.errors()  # it got our ACK and our BYE
        finally:
            await ua.close()
