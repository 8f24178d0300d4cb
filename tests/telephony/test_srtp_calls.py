"""Two of our agents over SIP/TLS with SRTP (SDES keys, RFC 4568) on loopback.

Each agent serves TLS with a certificate from a CA made here, so calls go both ways.
What must hold: the policy decides the profile and keys of every offer and answer, both
ends agree on a suite and encrypt, audio and DTMF cross both ways, and a mismatch of
policies ends as 488 with the reason, never as a call in clear text that was to be secret.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from autocall.audio.tones import beep
from autocall.cli import app
from autocall.sip.sdes import SrtpPolicy
from autocall.sip.sdp import parse_sdp
from autocall.sip.transaction import Timers
from autocall.sip.transport import TlsSettings
from autocall.telephony.call import Call, CallStatus, DigitEvent, UserAgent
from tests.tlsca import Issued, TestCa

pytestmark = [pytest.mark.timeout(60)]

_ports = itertools.count(19500)  # 19500-19529: this file's SIP/TLS ports
FAST = Timers(t1=0.1, t2=0.4, t4=0.5, timer_d=0.5)
SHA80, SHA32 = "AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32"


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCa:
    return TestCa(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def cert(ca: TestCa) -> Issued:
    return ca.issue("sip.test", ips=("127.0.0.1",))


@asynccontextmanager
async def agent(ca: TestCa, cert: Issued, user: str, srtp: SrtpPolicy
                ) -> AsyncIterator[tuple[UserAgent, int]]:
    port = next(_ports)
    ua = await UserAgent.start(bind_port=port, transport="tls", user=user, timers=FAST,
                               tls=TlsSettings(ca_file=ca.cert_file, cert_file=cert.cert_file,
                                               key_file=cert.key_file), srtp=srtp)
    try:
        yield ua, port
    finally:
        await ua.close()


async def ring(caller: UserAgent, callee: UserAgent, uri: str) -> tuple[Call, Call]:
    call = await caller.call(uri, ring_timeout=5)
    incoming = await asyncio.wait_for(anext(aiter(callee.incoming())), 5)
    return call, incoming


async def test_calls_both_ways_encrypted_with_dtmf_and_audio(ca: TestCa, cert: Issued,
                                                             tmp_path: Path) -> None:
    required, optional = SrtpPolicy("required"), SrtpPolicy("optional")
    async with agent(ca, cert, "alice", required) as (alice, a_port), \
            agent(ca, cert, "robot", optional) as (robot, r_port):
        for caller, callee, uri in ((alice, robot, f"sips:robot@127.0.0.1:{r_port}"),
                                    (robot, alice, f"sips:alice@127.0.0.1:{a_port}")):
            call, incoming = await ring(caller, callee, uri)
            offer = parse_sdp(incoming.session.usage.invite.body)
            assert offer.audio is not None
            # the caller's policy shapes the offer: required → RTP/SAVP, optional → RTP/AVP
            # with keys (best effort); both list the two suites, 80 first
            assert offer.audio.profile == ("RTP/SAVP" if caller is alice else "RTP/AVP")
            assert [(c.tag, c.suite) for c in offer.audio.crypto] == [(1, SHA80), (2, SHA32)]
            wav = tmp_path / f"{caller.sip.config.user}.wav"
            await incoming.answer(record=wav)
            assert await call.wait_answer(5) is CallStatus.IN_PROGRESS
            assert call.negotiated is not None and call.negotiated.crypto is not None
            assert call.negotiated.crypto.suite == SHA80
            assert call.negotiated.profile == offer.audio.profile  # the answer keeps it
            await asyncio.sleep(0.2)
            assert await call.play(beep(1000, 600, -10))
            assert await call.send_dtmf("1#") == "rfc4733"
            assert await incoming.send_dtmf("9") == "rfc4733"
            got = [await incoming.next_event(3), await incoming.next_event(3)]
            assert [(e.digit, e.source) for e in got if isinstance(e, DigitEvent)] == \
                [("1", "rfc4733"), ("#", "rfc4733")]
            back = await call.next_event(3)
            assert isinstance(back, DigitEvent) and back.digit == "9"
            for side in (call, incoming):
                stats = side.media.stats()
                assert stats.srtp_suite == SHA80 and stats.srtp_failures == 0, stats
                assert stats.packets_received > 30
            await call.hangup()
            assert await incoming.wait_ended(5) is CallStatus.COMPLETED
            # what the callee recorded (decrypted) holds the caller's 1 kHz tone
            pcm, _ = sf.read(wav, dtype="int16")
            left = pcm[:, 0]
            loud = np.flatnonzero(np.abs(left) > 500)
            assert len(loud) > 0.5 * 8000 * 0.6
            segment = left[loud[0]:loud[-1]].astype(np.float64)
            spectrum = np.abs(np.fft.rfft(segment * np.hanning(len(segment))))
            assert abs(np.argmax(spectrum) * 8000 / len(segment) - 1000) < 15


async def test_optional_falls_back_to_plain_rtp_with_a_peer_that_has_srtp_off(
        ca: TestCa, cert: Issued) -> None:
    async with agent(ca, cert, "alice", SrtpPolicy("optional")) as (alice, _), \
            agent(ca, cert, "robot", SrtpPolicy("off")) as (robot, r_port):
        call, incoming = await ring(alice, robot, f"sips:robot@127.0.0.1:{r_port}")
        await incoming.answer()
        assert await call.wait_answer(5) is CallStatus.IN_PROGRESS
        assert b"a=crypto" not in (call.session.usage.remote_sdp or b"")
        await asyncio.sleep(0.3)
        assert call.media.stats().srtp_suite is None
        assert call.media.stats().packets_received > 5  # plain RTP flows
        await call.hangup()


async def test_required_against_off_is_refused_with_488_both_ways(ca: TestCa,
                                                                  cert: Issued) -> None:
    async with agent(ca, cert, "alice", SrtpPolicy("required")) as (alice, a_port), \
            agent(ca, cert, "robot", SrtpPolicy("off")) as (robot, r_port):
        # robot (off) is offered RTP/SAVP: it cannot answer, and says why
        call, incoming = await ring(alice, robot, f"sips:robot@127.0.0.1:{r_port}")
        assert incoming.offer_problem() == "RTP/SAVP (SRTP) offered but AUTOCALL_SRTP=off"
        await incoming.answer()
        assert await call.wait_ended(5) is CallStatus.FAILED
        assert call.sip_code == 488
        # alice (required) is offered plain RTP by robot: refused the same way
        call, incoming = await ring(robot, alice, f"sips:alice@127.0.0.1:{a_port}")
        assert "no usable SRTP key in the RTP/AVP offer" in str(incoming.offer_problem())
        await incoming.answer()
        assert await call.wait_ended(5) is CallStatus.FAILED and call.sip_code == 488


async def test_an_answer_without_keys_to_a_required_offer_ends_the_call(
        ca: TestCa, cert: Issued) -> None:
    """A broken far end answers our RTP/SAVP offer with plain RTP/AVP: we hang up (488)."""
    async with agent(ca, cert, "alice", SrtpPolicy("required")) as (alice, _), \
            agent(ca, cert, "robot", SrtpPolicy("off")) as (robot, r_port):
        call, incoming = await ring(alice, robot, f"sips:robot@127.0.0.1:{r_port}")
        incoming.session.answer(incoming._sdp())  # an offer-shaped plain answer, no keys
        assert await call.wait_ended(5) is CallStatus.FAILED
        assert call.sip_code == 488
        assert "AUTOCALL_SRTP=required" in (call.reason or "")


async def test_keys_over_plain_udp_are_refused_at_start() -> None:
    with pytest.raises(ValueError, match="over udp anyone on the path reads them"):
        await UserAgent.start(transport="udp", srtp=SrtpPolicy("optional"))
    ua = await UserAgent.start(transport="udp", srtp=SrtpPolicy("optional", clear_keys=True))
    await ua.close()


async def test_hold_and_resume_keep_the_keys_and_the_stream(ca: TestCa, cert: Issued) -> None:
    """A re-INVITE repeats our key (RFC 4568 §7.1.4 allows it): no re-key, no failures."""
    async with agent(ca, cert, "alice", SrtpPolicy("required")) as (alice, _), \
            agent(ca, cert, "robot", SrtpPolicy("required")) as (robot, r_port):
        call, incoming = await ring(alice, robot, f"sips:robot@127.0.0.1:{r_port}")
        await incoming.answer()
        assert await call.wait_answer(5) is CallStatus.IN_PROGRESS
        first = parse_sdp(call.session.usage.invite.body).audio
        assert first is not None
        tx_before, rx_before = call.media._srtp, incoming.media._srtp
        assert await call.hold() == 200
        assert await call.unhold() == 200
        reoffer = parse_sdp(incoming.session.usage.remote_sdp or b"").audio
        assert reoffer is not None and reoffer.crypto == first.crypto  # same keys offered
        assert call.media._srtp is tx_before and incoming.media._srtp is rx_before
        assert await incoming.send_dtmf("2") == "rfc4733"
        ev = await call.next_event(3)
        assert isinstance(ev, DigitEvent) and ev.digit == "2"
        assert call.media.stats().srtp_failures == 0
        assert incoming.media.stats().srtp_failures == 0
        await call.hangup()


def test_cli_call_refuses_keys_in_clear_and_bad_settings_before_dialing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AUTOCALL_SRTP", "required")
    result = runner.invoke(app, ["call", "sip:bob@127.0.0.1:19599", "--say", "hi"])
    assert result.exit_code == 2, result.output
    shown = " ".join(result.output.split())  # rich wraps long lines
    assert "over udp anyone on the path reads them" in shown, shown
    monkeypatch.setenv("AUTOCALL_SRTP", "maybe")
    result = runner.invoke(app, ["call", "sip:bob@127.0.0.1:19599", "--say", "hi"])
    assert result.exit_code == 2
    assert "AUTOCALL_SRTP='maybe': use off, optional or required" in " ".join(
        result.output.split())
