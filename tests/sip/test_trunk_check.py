"""`autocall sip check TRUNK` against real peers on 127.0.0.1: Kamailio as a registrar and
proxy with digest auth, SIPp as the echo number behind it (and as a trunk that answers
403), a DNS server that knows no such name, and Kamailio's TLS module with a test CA.
The verdicts themselves (`judge`) are sans-I/O and tested first."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from autocall.cli import app
from autocall.sip.callerid import CallerIdStyle
from autocall.sip.message import Address
from autocall.telephony.trunkcheck import FAIL, PASS, WARN, Answer, judge, judge_media
from tests.peers import SCENARIOS, Kamailio, KamailioTls, Sipp
from tests.sip.dnsserver import DnsServer
from tests.tlsca import TestCa, days_ago

# This file's ports: 33100-33199 (Kamailio on two, SIPp on SIP + media +2 … +5).
_ports = itertools.count(33100, 6)
USERS = {"alice": "s3cret-Pa55"}


# ---- verdicts (sans-I/O) --------------------------------------------------------------------
def _judge(step: str, answer: Answer) -> tuple[str, str]:
    return judge(step, answer, timeout=2.0, password_env="PBX_PW")


def test_verdicts_say_what_to_do() -> None:
    assert _judge("options", Answer(200, "OK")) == (PASS, "200 OK")
    outcome, why = _judge("options", Answer(408, "Request Timeout", local=True))
    assert outcome == FAIL and "no answer within 2 s" in why
    outcome, why = _judge("options", Answer(503, "Service Unavailable (certificate verify "
                                                 "failed)", local=True))
    assert outcome == FAIL and "certificate verify failed" in why
    assert _judge("options", Answer(405, "Method Not Allowed"))[0] == WARN
    outcome, why = _judge("register", Answer(401, "Unauthorized"))
    assert outcome == FAIL and "refused our credentials" in why and "PBX_PW" in why
    outcome, why = _judge("register", Answer(407, "Proxy Authentication Required",
                                             have_password=False))
    assert outcome == FAIL and "there is no password: set PBX_PW" in why
    outcome, why = _judge("register", Answer(403, "Forbidden"))
    assert outcome == FAIL and "refuses this account" in why
    assert _judge("register", Answer(405, "Method Not Allowed"))[0] == FAIL  # not a warning
    assert "does not know the echo number" in _judge("invite", Answer(404, "Not Found"))[1]
    assert _judge("invite", Answer(200, "OK"))[0] == PASS


def test_media_verdicts_tell_one_way_audio_from_a_number_that_does_not_echo() -> None:
    assert judge_media("159", 180, 1.2, "RTP port 40000")[0] == PASS
    outcome, why = judge_media("", 0, 2.0, "RTP port 40000")
    assert outcome == FAIL and "one-way audio" in why and "RTP port 40000" in why
    assert "AUTOCALL_ADVERTISED_HOST" in why
    outcome, why = judge_media("", 150, 2.0, "RTP port 40000")
    assert outcome == WARN and "heard no keys" in why and "150 RTP packets" in why
    outcome, why = judge_media("15", 150, 2.0, "RTP port 40000")
    assert outcome == WARN and "heard '15'" in why


# ---- against peers --------------------------------------------------------------------------
@pytest.fixture
def trunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for name in ("AUTOCALL_SIP_TRUNK", "AUTOCALL_SIP_HOST", "AUTOCALL_SIP_PORT",
                 "AUTOCALL_SIP_TRANSPORT", "AUTOCALL_SIP_USER", "AUTOCALL_SIP_PASSWORD",
                 "AUTOCALL_SIP_PASSWORD_FILE", "AUTOCALL_SIP_REGISTER", "AUTOCALL_DNS_SERVERS",
                 "AUTOCALL_SIP_CALLER_ID_HEADER", "AUTOCALL_SIP_TLS_CA_FILE",
                 "AUTOCALL_SIP_TLS_SERVER_NAME"):
        monkeypatch.delenv(name, raising=False)
    folder = tmp_path / "trunks"
    folder.mkdir()
    monkeypatch.setenv("AUTOCALL_SIP_TRUNKS_DIR", str(folder))
    monkeypatch.setenv("AUTOCALL_BIND_HOST", "127.0.0.1")
    yield folder


def _check(name: str, *args: str) -> Result:
    return CliRunner().invoke(app, ["sip", "check", name, "--timeout", "2", *args],
                              env={"COLUMNS": "250"})


def _steps(result: Result) -> dict[str, dict[str, object]]:
    data = json.loads(result.output)
    return {s["step"]: s for s in data["steps"]}


def _invite_sipp_got(workdir: Path) -> str:
    trace = "".join(p.read_text(errors="replace") for p in workdir.glob("*messages*"))
    invite = trace[trace.index("INVITE sip:"):]
    return invite[:invite.index("------")]


@pytest.mark.peers
@pytest.mark.timeout(60)
@pytest.mark.parametrize("style", list(CallerIdStyle))
async def test_a_good_trunk_passes_and_its_caller_id_header_reaches_the_callee(
        trunks: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        style: CallerIdStyle) -> None:
    kam_port, sipp_port = next(_ports), next(_ports)
    (trunks / "kam.yaml").write_text(
        f"preset: kamailio\nhost: 127.0.0.1\nport: {kam_port}\nuser: alice\n"
        f"password_env: KAM_PW\ncaller_id_header: {style}\ncaller_id: '+15550100'\n"
        f"echo: 'sip:echo@127.0.0.1:{sipp_port}'\n")
    monkeypatch.setenv("KAM_PW", USERS["alice"])
    sipp = Sipp(SCENARIOS / "uas_answer.xml", port=sipp_port, media_port=sipp_port + 2,
                cwd=tmp_path, extra=["-trace_msg", "-rtp_echo"])
    with Kamailio(port=kam_port, users=USERS), sipp:
        result = await asyncio.to_thread(_check, "kam", "--json")
        assert await asyncio.to_thread(sipp.wait, 10) == 0, sipp.errors()
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["ok"] is True and data["caller_id_header"] == str(style)
    steps = _steps(result)
    assert [s["outcome"] for s in steps.values()] == [PASS] * 5, steps
    assert steps["register"]["status"] == 200 and steps["invite"]["status"] == 200
    assert "returned our keys 159" in str(steps["media"]["detail"])
    assert "trace" not in steps["invite"]  # traces are for failures
    invite = _invite_sipp_got(tmp_path)
    from_ = Address.parse(next(line.split(":", 1)[1] for line in invite.splitlines()
                               if line.startswith("From:")))
    pai = [line for line in invite.splitlines() if line.startswith("P-Asserted-Identity:")]
    rpid = [line for line in invite.splitlines() if line.startswith("Remote-Party-ID:")]
    if style is CallerIdStyle.FROM:
        assert from_.uri.user == "+15550100" and pai == [] and rpid == []
    elif style is CallerIdStyle.PAI:
        assert from_.uri.user == "alice" and rpid == []
        assert pai == ['P-Asserted-Identity: "+15550100" <sip:+15550100@127.0.0.1>']
    else:
        assert from_.uri.user == "alice" and pai == [], invite
        assert rpid == ['Remote-Party-ID: "+15550100" <sip:+15550100@127.0.0.1>'
                        ';party=calling;screen=no;privacy=off'], invite


@pytest.mark.peers
@pytest.mark.timeout(60)
async def test_an_echo_number_that_sends_no_audio_back_is_one_way_audio(
        trunks: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The call is answered (SIP is fine), but no RTP comes back: the media step fails
    and says what to check; a human reading only SIP would have called it a pass."""
    kam_port, sipp_port = next(_ports), next(_ports)
    (trunks / "kam.yaml").write_text(
        f"preset: kamailio\nhost: 127.0.0.1\nport: {kam_port}\nuser: alice\n"
        f"password_env: KAM_PW\necho: 'sip:echo@127.0.0.1:{sipp_port}'\n")
    monkeypatch.setenv("KAM_PW", USERS["alice"])
    sipp = Sipp(SCENARIOS / "uas_answer.xml", port=sipp_port, media_port=sipp_port + 2,
                cwd=tmp_path, calls=2)  # no -rtp_echo: it answers and stays silent
    with Kamailio(port=kam_port, users=USERS), sipp:
        result = await asyncio.to_thread(_check, "kam", "--json")
        text = await asyncio.to_thread(_check, "kam")
        assert await asyncio.to_thread(sipp.wait, 10) == 0, sipp.errors()
    assert result.exit_code == 1, result.output
    steps = _steps(result)
    assert [steps[s]["outcome"] for s in ("options", "register", "invite")] == [PASS] * 3
    media = steps["media"]
    assert media["outcome"] == FAIL and "one-way audio: no RTP came back" in str(
        media["detail"]), media
    assert text.exit_code == 1 and "one-way audio" in text.output and "Traceback" not in text.output


@pytest.mark.peers
@pytest.mark.timeout(60)
async def test_a_wrong_password_fails_with_401_and_shows_the_trace(
        trunks: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = next(_ports)
    (trunks / "kam.yaml").write_text(f"preset: kamailio\nhost: 127.0.0.1\nport: {port}\n"
                                     "user: alice\npassword_env: KAM_PW\n")
    monkeypatch.setenv("KAM_PW", "not-the-password")
    with Kamailio(port=port, users=USERS):
        as_json = await asyncio.to_thread(_check, "kam", "--json")
        text = await asyncio.to_thread(_check, "kam")
        monkeypatch.delenv("KAM_PW")
        no_password = await asyncio.to_thread(_check, "kam", "--json")
    assert as_json.exit_code == 1, as_json.output
    steps = _steps(as_json)
    assert steps["options"]["outcome"] == PASS
    register = steps["register"]
    assert register["outcome"] == FAIL and register["status"] == 401
    assert "refused our credentials" in str(register["detail"])
    assert "KAM_PW" in str(register["detail"])
    trace = str(register["trace"])
    assert trace.count("REGISTER sip:127.0.0.1") == 2 and "SIP/2.0 401 Unauthorized" in trace
    assert 'response="***"' in trace  # the digest answer is not shown
    assert steps["invite"]["outcome"] == "skip"
    assert text.exit_code == 1 and "Traceback" not in text.output
    assert "SIP trace of register" in text.output and "WWW-Authenticate: Digest" in text.output
    assert "refused our credentials" in text.output
    assert no_password.exit_code == 1
    assert "there is no password: set KAM_PW" in str(_steps(no_password)["register"]["detail"])


@pytest.mark.peers
@pytest.mark.timeout(60)
async def test_a_trunk_that_forbids_the_account_fails_with_403(trunks: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    port = next(_ports)
    (trunks / "forbids.yaml").write_text(f"host: 127.0.0.1\nport: {port}\nregister: true\n"
                                         "user: alice\n")
    monkeypatch.setenv("AUTOCALL_SIP_PASSWORD", "whatever")
    sipp = Sipp(SCENARIOS / "uas_registrar_403.xml", port=port, media_port=port + 2,
                calls=2, cwd=tmp_path)
    with sipp:
        result = await asyncio.to_thread(_check, "forbids", "--json")
        assert await asyncio.to_thread(sipp.wait, 10) == 0, sipp.errors()
    assert result.exit_code == 1, result.output
    register = _steps(result)["register"]
    assert register["outcome"] == FAIL and register["status"] == 403
    assert "refuses this account or our address" in str(register["detail"])
    assert "SIP/2.0 403 Forbidden" in str(register["trace"])


@pytest.mark.peers
@pytest.mark.timeout(60)
async def test_an_unreachable_port_times_out_with_a_clear_message_and_trace(
        trunks: Path) -> None:
    port = next(_ports)  # nothing listens there
    (trunks / "dead.yaml").write_text(f"preset: kamailio\nhost: 127.0.0.1\nport: {port}\n")
    result = await asyncio.to_thread(_check, "dead", "--timeout", "1")
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert "no answer within 1 s: check host, port and transport" in result.output
    assert "not tried: options failed" in result.output
    assert "SIP trace of options" in result.output
    assert f"OPTIONS sip:127.0.0.1:{port} SIP/2.0" in result.output
    assert "sent again unchanged" in result.output  # the retransmissions, on one line


@pytest.mark.peers
@pytest.mark.timeout(60)
async def test_a_name_that_does_not_resolve_fails_at_dns(
        trunks: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    zone = ("$TTL 300\n@ IN SOA ns.example.test. admin.example.test. 1 3600 600 86400 60\n"
            "@ IN NS ns.example.test.\nns IN A 127.0.0.1\n")
    server = DnsServer(zone, "example.test.")
    try:
        monkeypatch.setenv("AUTOCALL_DNS_SERVERS", "{}:{}".format(*server.address))
        (trunks / "nowhere.yaml").write_text("preset: generic-udp\nhost: nowhere.example.test\n"
                                             "port: null\n")
        result = await asyncio.to_thread(_check, "nowhere", "--json")
    finally:
        server.close()
    assert result.exit_code == 1, result.output
    steps = _steps(result)
    assert steps["dns"]["outcome"] == FAIL
    assert "cannot resolve nowhere.example.test" in str(steps["dns"]["detail"])
    assert {steps[s]["outcome"] for s in ("options", "register", "invite")} == {"skip"}


@pytest.mark.peers
@pytest.mark.timeout(90)
async def test_tls_passes_with_the_right_ca_and_fails_clearly_without_it(
        trunks: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ca = TestCa(tmp_path / "ca")
    good = ca.issue("sip.test")
    expired = ca.issue("sip.test", not_before=days_ago(30), not_after=days_ago(1))
    monkeypatch.setenv("AUTOCALL_SIP_TLS_SERVER_NAME", "sip.test")
    monkeypatch.setenv("KAM_PW", USERS["alice"])
    for cert, ca_file, expected in ((good, ca.cert_file, None),
                                    (good, None, "not signed by a CA we trust"),
                                    (expired, ca.cert_file, "certificate has expired")):
        udp = next(_ports)
        tls = KamailioTls(udp + 1, cert.cert_file, cert.key_file)
        (trunks / "secure.yaml").write_text(
            f"preset: generic-tls\nhost: 127.0.0.1\nport: {tls.port}\nregister: true\n"
            "user: alice\npassword_env: KAM_PW\n")
        if ca_file is None:
            monkeypatch.delenv("AUTOCALL_SIP_TLS_CA_FILE", raising=False)
        else:
            monkeypatch.setenv("AUTOCALL_SIP_TLS_CA_FILE", str(ca_file))
        with Kamailio(port=udp, users=USERS, tls=tls):  # a handshake under load: 5 s
            result = await asyncio.to_thread(_check, "secure", "--json", "--timeout", "5")
        assert "Traceback" not in result.output
        steps = _steps(result)
        if expected is None:
            assert result.exit_code == 0, result.output
            assert steps["options"]["outcome"] == PASS and steps["register"]["outcome"] == PASS
        else:
            assert result.exit_code == 1, result.output
            assert steps["options"]["outcome"] == FAIL
            assert expected in str(steps["options"]["detail"]), steps["options"]
            assert steps["register"]["outcome"] == "skip"


@pytest.mark.peers
@pytest.mark.timeout(60)
def test_autocall_call_through_a_trunk_file_uses_its_caller_id_header(
        trunks: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """AUTOCALL_SIP_TRUNK names the trunk; `autocall call --caller-id` then carries the
    caller ID in that trunk's header (here Remote-Party-ID), as the trunk receives it."""
    port = next(_ports)
    (trunks / "office.yaml").write_text(f"preset: generic-rpid\nhost: 127.0.0.1\n"
                                        f"port: {port}\nuser: robot\n")
    monkeypatch.setenv("AUTOCALL_SIP_TRUNK", "office")
    monkeypatch.setenv("AUTOCALL_TTS_CACHE", str(tmp_path / "tts"))
    monkeypatch.setenv("AUTOCALL_DATABASE_URL", f"sqlite:///{tmp_path / 'calls.db'}")
    work = tmp_path / "sipp"
    work.mkdir()
    with Sipp(SCENARIOS / "uas_answer.xml", port=port, media_port=port + 2, timeout=20,
              cwd=work, extra=["-trace_msg"]) as peer:
        result = CliRunner().invoke(app, [
            "call", "+15550199", "--say", "Your parcel arrives today.",
            "--bind", "127.0.0.1:0", "--caller-id", "+12025550100", "--json"])
        peer.wait(10)
    assert result.exit_code == 0, result.output
    invite = _invite_sipp_got(work)
    assert invite.startswith(f"INVITE sip:+15550199@127.0.0.1:{port} SIP/2.0")
    assert ('Remote-Party-ID: "+12025550100" <sip:+12025550100@127.0.0.1>;party=calling;'
            'screen=no;privacy=off') in invite.splitlines(), invite
    assert "From: <sip:robot@127.0.0.1>;tag=" in invite, invite
    assert "P-Asserted-Identity" not in invite


@pytest.mark.peers
@pytest.mark.timeout(60)
async def test_without_a_proxy_the_asserted_identity_names_the_trunk_not_us(
        tmp_path: Path) -> None:
    """A campaign dials sip:NUMBER@trunk with no proxy: P-Asserted-Identity must name the
    trunk's domain, not our own (advertised) address."""
    from autocall.sip.transaction import Timers
    from autocall.telephony.call import CallStatus, UserAgent

    port = next(_ports)
    with Sipp(SCENARIOS / "uas_answer.xml", port=port, media_port=port + 2, cwd=tmp_path,
              extra=["-trace_msg"]) as peer:
        ua = await UserAgent.start(advertise_host="203.0.113.7", user="robot",
                                   caller_id_header=CallerIdStyle.PAI,
                                   timers=Timers(t1=0.1, t2=0.4, t4=0.5, timer_d=0.5))
        try:
            call = await ua.call(f"sip:+15550199@127.0.0.1:{port}", caller_id="+15550100",
                                 ring_timeout=10)
            assert await call.wait_answer(10) is CallStatus.IN_PROGRESS
            await call.hangup()
            await call.wait_ended(5)
            assert await asyncio.to_thread(peer.wait, 10) == 0, peer.errors()
        finally:
            await ua.close()
    invite = _invite_sipp_got(tmp_path)
    assert 'P-Asserted-Identity: "+15550100" <sip:+15550100@127.0.0.1>' in invite.splitlines()
    assert "From: <sip:robot@203.0.113.7>;tag=" in invite  # From: as before, our domain


@pytest.mark.peers
@pytest.mark.timeout(60)
async def test_a_transferred_call_asserts_the_same_caller_id_on_its_new_leg(
        tmp_path: Path) -> None:
    """The far end REFERs our PAI-style call elsewhere: the INVITE to the transfer target
    carries the P-Asserted-Identity of our first INVITE."""
    from autocall.sip.transaction import Timers
    from autocall.telephony.call import CallStatus, TransferredEvent, UserAgent

    port1, port2 = next(_ports), next(_ports)
    target = f"sip:sipp@127.0.0.1:{port2}"
    (tmp_path / "target").mkdir()
    second = Sipp(SCENARIOS / "uas_answer.xml", port=port2, media_port=port2 + 2,
                  cwd=tmp_path / "target", extra=["-trace_msg"])
    first = Sipp(SCENARIOS / "uas_refer_us.xml", port=port1, media_port=port1 + 2,
                 keys={"refer_to": target})
    with second, first:
        ua = await UserAgent.start(user="robot", caller_id_header=CallerIdStyle.PAI,
                                   accept_refer=lambda uri: uri == target,
                                   timers=Timers(t1=0.1, t2=0.4, t4=0.5, timer_d=0.5))
        try:
            call = await ua.call(f"sip:sipp@127.0.0.1:{port1}", caller_id="+15550100",
                                 ring_timeout=10)
            assert await call.wait_answer(10) is CallStatus.IN_PROGRESS, first.errors()
            ev = await call.next_event(10)
            assert isinstance(ev, TransferredEvent) and ev.sip_code == 200, ev
            await call.hangup()
            await call.wait_ended(5)
            assert await asyncio.to_thread(second.wait, 10) == 0, second.errors()
        finally:
            await ua.close()
    invite = _invite_sipp_got(tmp_path / "target")
    assert 'P-Asserted-Identity: "+15550100" <sip:+15550100@127.0.0.1>' in invite.splitlines()
    assert "From: <sip:robot@" in invite
