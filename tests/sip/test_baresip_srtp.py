"""baresip with SRTP (its own SDES implementation in libre, not libsrtp) over SIP/TLS.

baresip's account says ``mediaenc=srtp-mand`` (RTP/SAVP, keys required) or ``srtp``
(RTP/AVP with keys, best effort); our agent serves TLS with a certificate of a CA made
here, which baresip trusts, and baresip serves TLS on its port + 1 with another. Calls
go both ways, DTMF both ways (RFC 4733 inside SRTP), and baresip's recording of what it
decrypted holds our tone.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from autocall.audio.tones import beep
from autocall.sip.sdes import SrtpPolicy
from autocall.sip.sdp import parse_sdp
from autocall.sip.transaction import Timers
from autocall.sip.transport import TlsSettings
from autocall.telephony.call import Call, CallStatus, DigitEvent, UserAgent
from tests.peers import Baresip, BaresipControl
from tests.sip.baresip_calls import decoded, tone_heard, walk_front_desk
from tests.telephony.serving import records, serve
from tests.tlsca import Issued, TestCa

pytestmark = [pytest.mark.peers, pytest.mark.timeout(90)]

# Ports: ours 19540-19545; baresip SIP 19530/19550/19570/19580 (TLS +1, ctrl +3, RTP from
# +5); test_srtp_calls.py takes 19500-19529, bench_srtp.py 19590-19591.
FAST = Timers(t1=0.1, t2=0.4, t4=0.5, timer_d=0.5)
TONE_HZ = 1333.0
SHA80 = "AES_CM_128_HMAC_SHA1_80"


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCa:
    return TestCa(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def ours(ca: TestCa) -> Issued:
    return ca.issue("robot.test", ips=("127.0.0.1",))


@pytest.fixture(scope="module")
def theirs(ca: TestCa) -> Path:
    """baresip wants its certificate and key in one PEM file."""
    issued = ca.issue("bob.test", ips=("127.0.0.1",))
    both = ca.dir / "baresip.pem"
    both.write_bytes(issued.cert_file.read_bytes() + issued.key_file.read_bytes())
    return both


async def _talk(call: Call, ctrl: BaresipControl) -> None:
    """Our tone to baresip, then a key each way; the call is established on both sides."""
    loop = asyncio.get_running_loop()
    assert await call.play(beep(TONE_HZ, 1500, level_dbm0=-6))
    ctrl.send("sndcode", "4")  # RFC 4733 events, inside baresip's SRTP
    ev = await call.next_event(5)
    assert isinstance(ev, DigitEvent) and (ev.digit, ev.source) == ("4", "rfc4733"), ev
    assert await call.send_dtmf("6") == "rfc4733"
    got = await loop.run_in_executor(None, ctrl.wait_event, "CALL_DTMF_START", 5.0)
    assert got.get("param") == "6"
    stats = call.media.stats()
    assert stats.srtp_suite == SHA80 and stats.srtp_failures == 0, stats
    assert stats.packets_received > 50  # baresip's (silent) audio, all authenticated


def _heard_our_tone(phone: Baresip) -> None:
    assert f"SRTP is Enabled (cryptosuite={SHA80})" in phone.output()  # baresip's own word
    tone_heard(phone, TONE_HZ)  # over a second of our tone, decrypted


async def test_we_call_baresip_over_tls_with_mandatory_srtp(ca: TestCa, ours: Issued,
                                                            theirs: Path) -> None:
    loop = asyncio.get_running_loop()
    with Baresip(port=19550, ctrl_port=19553, rtp_ports=(19555, 19565), certificate=theirs,
                 cafile=ca.cert_file, mediaenc="srtp-mand") as phone:
        ctrl = phone.control()
        ua = await UserAgent.start(bind_port=19540, transport="tls", user="robot", timers=FAST,
                                   tls=TlsSettings(ca_file=ca.cert_file),
                                   srtp=SrtpPolicy("required"))
        try:
            call = await ua.call("sips:bob@127.0.0.1:19551", ring_timeout=15)
            assert await call.wait_answer(15) is CallStatus.IN_PROGRESS, phone.output()[-1500:]
            answer = parse_sdp(call.session.usage.remote_sdp or b"")
            assert answer.audio is not None and answer.audio.profile == "RTP/SAVP"
            assert [c.tag for c in answer.audio.crypto] == [1]  # our tag 1: the _80 suite
            await loop.run_in_executor(None, ctrl.wait_event, "CALL_ESTABLISHED", 5.0)
            await _talk(call, ctrl)
            await call.hangup()
            assert await call.wait_ended(5) is CallStatus.COMPLETED
        finally:
            ctrl.close()
            await ua.close()
        await asyncio.sleep(0.5)  # let baresip close its WAV files
    _heard_our_tone(phone)


@pytest.mark.parametrize("mediaenc", ["srtp-mand", "srtp"])
async def test_baresip_calls_us_over_tls_with_srtp(ca: TestCa, ours: Issued, theirs: Path,
                                                   mediaenc: str) -> None:
    """``srtp-mand`` offers RTP/SAVP; ``srtp`` offers RTP/AVP with keys, which our
    optional policy takes as SRTP too (best effort, RFC 4568 with RTP/AVP)."""
    loop = asyncio.get_running_loop()
    sip = 19570 if mediaenc == "srtp" else 19580
    robot = 19541 if mediaenc == "srtp" else 19542
    with Baresip(port=sip, ctrl_port=sip + 3, rtp_ports=(sip + 5, sip + 9), certificate=theirs,
                 cafile=ca.cert_file, mediaenc=mediaenc) as phone:
        ctrl = phone.control()
        ua = await UserAgent.start(bind_port=robot, transport="tls", user="robot", timers=FAST,
                                   tls=TlsSettings(ca_file=ca.cert_file, cert_file=ours.cert_file,
                                                   key_file=ours.key_file),
                                   srtp=SrtpPolicy("optional"))
        try:
            ctrl.send("dial", f"sip:robot@127.0.0.1:{robot};transport=tls")
            call = await asyncio.wait_for(anext(aiter(ua.incoming())), 10)
            offer = parse_sdp(call.session.usage.invite.body)
            assert offer.audio is not None
            assert offer.audio.profile == ("RTP/SAVP" if mediaenc == "srtp-mand" else "RTP/AVP")
            assert offer.audio.crypto, "baresip offered no key"
            await call.answer()
            await loop.run_in_executor(None, ctrl.wait_event, "CALL_ESTABLISHED", 5.0)
            await _talk(call, ctrl)
            await call.hangup()
            assert await call.wait_ended(5) is CallStatus.COMPLETED
        finally:
            ctrl.close()
            await ua.close()
        await asyncio.sleep(0.5)
    _heard_our_tone(phone)


def test_autocall_serve_answers_baresip_over_tls_with_srtp_required(
        ca: TestCa, ours: Issued, theirs: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The product path: `autocall serve` with AUTOCALL_SRTP=required over TLS; baresip
    (srtp-mand) calls, hears the tree's prompts (decrypted, not silence) and walks it
    with keys sent inside SRTP."""
    for name, value in (("CA_FILE", ca.cert_file), ("CERT_FILE", ours.cert_file),
                        ("KEY_FILE", ours.key_file)):
        monkeypatch.setenv(f"AUTOCALL_SIP_TLS_{name}", str(value))
    monkeypatch.setenv("AUTOCALL_SRTP", "required")
    monkeypatch.setenv("AUTOCALL_TTS", "espeak")
    with Baresip(port=19530, ctrl_port=19533, rtp_ports=(19535, 19539), certificate=theirs,
                 cafile=ca.cert_file, mediaenc="srtp-mand") as phone, \
            serve(tmp_path, 19545, "--transport", "tls", stream=True):
        walk_front_desk(phone.control(), "sip:robot@127.0.0.1:19545;transport=tls", tmp_path,
                        welcome=1.5)
    assert f"SRTP is Enabled (cryptosuite={SHA80})" in phone.output()
    (rec,) = records(tmp_path)
    assert rec["digits"] == "79" and rec["path"] == ["welcome", "sales", "confirmed"], rec
    pcm, rate = decoded(phone)
    assert np.sqrt(np.mean(pcm[: rate * 3] ** 2)) > 0.01  # the welcome prompt, decrypted
