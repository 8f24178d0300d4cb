"""SIP over TLS (RFC 3261 §26.2) against Kamailio's TLS module, with a CA made here.

Kamailio listens on UDP (for SIPp) and TLS (for us); digest auth as in test_kamailio.
What must hold: REGISTER and INVITE over TLS with 401/407 answered; calls from the proxy
reach us down the connection we opened (Via alias, RFC 5923: we have no certificate to
accept connections with); every certificate problem (wrong name, expired, untrusted,
client certificate wanted) and the two timeouts (TCP connect, TLS handshake) end the
request at once as a local 503 whose reason says which it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autocall.cli import app
from autocall.config import Settings, TrunkSettings, tls_from_env
from autocall.sip.message import URI
from autocall.sip.transaction import Timers
from autocall.sip.transport import TcpLimits, TlsSettings, TlsTransport
from autocall.sip.ua import SipUA, UAConfig
from autocall.telephony.call import CallStatus, UserAgent
from tests.peers import SCENARIOS, Kamailio, KamailioTls, Sipp
from tests.sip.dnsserver import DnsServer
from tests.telephony.serving import records, serve
from tests.tlsca import Issued, TestCa, days_ago

pytestmark = [pytest.mark.timeout(60)]

_ports = itertools.count(18700, 2)  # Kamailio: UDP and UDP + 1 for TLS; single ports
_sipp_ports = itertools.count(18760, 6)  # SIPp: SIP, then media on +2 … +5
# 18790–18799: bench/bench_tls.py
FAST = Timers(t1=0.1, t2=0.4, t4=0.5, timer_d=0.5)
USERS = {"alice": "s3cret-Pa55"}
NAME = "sip.test"


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCa:
    return TestCa(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def server_cert(ca: TestCa) -> Issued:
    return ca.issue(NAME)  # a name only: connecting by address needs server_name


@contextlib.contextmanager
def kamailio(cert: Issued, ca: TestCa | None = None, require_client_cert: bool = False,
             defines: tuple[str, ...] = ()) -> Iterator[tuple[Kamailio, int]]:
    """Kamailio on UDP (for SIPp) and on TLS (the port it yields, for us)."""
    udp = next(_ports)
    tls = KamailioTls(udp + 1, cert.cert_file, cert.key_file,
                      ca.cert_file if ca is not None else None, require_client_cert)
    with Kamailio(port=udp, users=USERS, tls=tls, defines=defines) as kam:
        yield kam, tls.port


@contextlib.asynccontextmanager
async def agent(tls_port: int | None, tls: TlsSettings, *, register: bool = False,
                password: str = USERS["alice"]) -> AsyncIterator[UserAgent]:
    """Alice over TLS, through Kamailio's TLS port (None: no proxy, straight to targets)."""
    proxy = f"sip:127.0.0.1:{tls_port}" if tls_port is not None else None
    ua = await UserAgent.start(transport="tls", user="alice", password=password,
                               domain="127.0.0.1", proxy=proxy,
                               register=register, register_expires=60, tls=tls, timers=FAST)
    try:
        yield ua
    finally:
        await ua.close()


async def register_error(ua: UserAgent, within: float = 5.0) -> str:
    """The first registration failure (the agent retries; the first one is the story)."""
    deadline = asyncio.get_running_loop().time() + within
    while ua.sip.register_error is None:
        assert asyncio.get_running_loop().time() < deadline, "no registration outcome"
        await asyncio.sleep(0.02)
    assert not ua.sip.registered.is_set()
    return ua.sip.register_error


@pytest.mark.peers
async def test_register_over_tls_with_digest(ca: TestCa, server_cert: Issued) -> None:
    with kamailio(server_cert) as (kam, port):
        async with agent(port, TlsSettings(ca_file=ca.cert_file, server_name=NAME),
                         register=True) as ua:
            assert await ua.wait_registered(5), ua.sip.register_error
            assert isinstance(ua.sip.transport, TlsTransport)
            assert ua.sip.transport.connections == 1  # 401 and the retry: one connection
            assert ua.sip._reg_cseq == 2  # answered the 401 once
            assert ";transport=tls" in ua.sip.contact() and "SIP/2.0/TLS" in ua.sip.via()
        assert USERS["alice"] not in kam.output()


@pytest.mark.peers
async def test_invite_over_tls_with_407_and_bye(ca: TestCa, server_cert: Issued) -> None:
    sport = next(_sipp_ports)
    with kamailio(server_cert) as (_kam, port), \
            Sipp(SCENARIOS / "uas_answer.xml", port=sport, media_port=sport + 2) as far:
        async with agent(port, TlsSettings(ca_file=ca.cert_file, server_name=NAME)) as ua:
            call = await ua.call(f"sip:sipp@127.0.0.1:{sport}", caller_id="alice",
                                 ring_timeout=10)
            assert await call.wait_answer(10) is CallStatus.IN_PROGRESS, call
            invite = call.session.usage.invite
            assert invite.headers.get("Proxy-Authorization") is not None  # the 407
            dialog = call.session.usage.dialog
            assert dialog is not None
            assert any(f":{port}" in r and "transport=tls" in r for r in dialog.route_set)
            await call.hangup()
            assert await call.wait_ended(5) is CallStatus.COMPLETED
            assert far.wait(10) == 0, far.errors()  # our BYE went out over TLS via Kamailio
            assert ua.sip.transport is not None and ua.sip.transport.connections == 1


@pytest.mark.peers
async def test_inbound_call_comes_down_our_own_connection(ca: TestCa,
                                                          server_cert: Issued) -> None:
    """We hold no certificate, so nobody can connect to us: a call for alice reaches us
    only because Kamailio reuses the connection of our REGISTER (Via ;alias)."""
    sport = next(_sipp_ports)
    with kamailio(server_cert) as (kam, port):
        async with agent(port, TlsSettings(ca_file=ca.cert_file, server_name=NAME),
                         register=True) as ua:
            assert await ua.wait_registered(5), ua.sip.register_error
            assert isinstance(ua.sip.transport, TlsTransport) and not ua.sip.transport.serving
            with Sipp(SCENARIOS / "uac_call.xml", port=sport, media_port=sport + 2,
                      remote=f"127.0.0.1:{kam.port}", service="alice") as caller:
                call = await asyncio.wait_for(anext(aiter(ua.incoming())), 10)
                await call.answer()
                assert await call.wait_ended(10) is CallStatus.COMPLETED
                assert [d.digit for d in call.digits] == ["7", "9"]
                assert caller.wait(10) == 0, caller.errors()
            assert ua.sip.transport.connections == 1


@pytest.mark.peers
async def test_wrong_server_name_is_refused_with_a_clear_503(ca: TestCa,
                                                             server_cert: Issued) -> None:
    with kamailio(server_cert) as (_kam, port):
        async with agent(port, TlsSettings(ca_file=ca.cert_file, server_name="other.test"),
                         register=True) as ua:
            why = await register_error(ua)
        assert "503" in why
        assert f"TLS connection to 127.0.0.1:{port} failed: its certificate is not for " \
               "'other.test'" in why, why
        # by address (no server_name): the certificate names sip.test, not 127.0.0.1
        async with agent(port, TlsSettings(ca_file=ca.cert_file), register=True) as ua:
            why = await register_error(ua)
        assert "its certificate is not for '127.0.0.1'" in why, why


@pytest.mark.peers
async def test_expired_certificate_is_refused_on_register_and_invite(ca: TestCa) -> None:
    expired = ca.issue(NAME, not_before=days_ago(30), not_after=days_ago(1))
    with kamailio(expired) as (_kam, port):
        async with agent(port, TlsSettings(ca_file=ca.cert_file, server_name=NAME),
                         register=True) as ua:
            why = await register_error(ua)
            assert "its certificate has expired" in why and "503" in why, why
            call = await ua.call("sip:bob@127.0.0.1", caller_id="alice", ring_timeout=10)
            assert await call.wait_ended(3) is CallStatus.FAILED  # at once, no Timer B
            assert call.sip_code == 503
            assert call.reason is not None and "its certificate has expired" in call.reason


@pytest.mark.peers
async def test_certificate_of_an_unknown_ca_is_untrusted(server_cert: Issued,
                                                         tmp_path: Path) -> None:
    stranger = TestCa(tmp_path / "other", "some other CA")
    with kamailio(server_cert) as (_kam, port):
        async with agent(port, TlsSettings(ca_file=stranger.cert_file, server_name=NAME),
                         register=True) as ua:
            why = await register_error(ua)
    assert "not signed by a CA we trust" in why and "AUTOCALL_SIP_TLS_CA_FILE" in why, why


@pytest.mark.peers
async def test_verify_off_accepts_any_certificate(server_cert: Issued, tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    with kamailio(server_cert) as (_kam, port):
        async with agent(port, TlsSettings(verify=False, server_name="whatever"),
                         register=True) as ua:
            assert await ua.wait_registered(5), ua.sip.register_error
    assert "verification is off" in caplog.text


@pytest.mark.peers
async def test_mutual_tls_client_certificate(ca: TestCa, server_cert: Issued,
                                            tmp_path: Path) -> None:
    mine = ca.issue("alice")
    stranger = TestCa(tmp_path / "other", "a CA Kamailio does not trust").issue("alice")
    with kamailio(server_cert, ca, require_client_cert=True) as (_kam, port):
        async with agent(port, TlsSettings(ca_file=ca.cert_file, server_name=NAME),
                         register=True) as ua:
            why = await register_error(ua)
        assert "503" in why and "client certificate" in why, why
        assert "AUTOCALL_SIP_TLS_CERT_FILE" in why, why
        async with agent(port, TlsSettings(ca_file=ca.cert_file, server_name=NAME,
                                           cert_file=stranger.cert_file,
                                           key_file=stranger.key_file),
                         register=True) as ua:
            why = await register_error(ua)
        assert "503" in why and "the server refused our client certificate" in why, why
        async with agent(port, TlsSettings(ca_file=ca.cert_file, server_name=NAME,
                                           cert_file=mine.cert_file, key_file=mine.key_file),
                         register=True) as ua:
            assert await ua.wait_registered(5), ua.sip.register_error
            # our own certificate also lets us accept TLS connections (serve)
            assert isinstance(ua.sip.transport, TlsTransport) and ua.sip.transport.serving


async def test_handshake_timeout_reads_apart_from_connect_timeout(ca: TestCa) -> None:
    # A TCP server that accepts and never says a TLS word.
    mute_port = next(_ports)
    accepted: list[asyncio.StreamWriter] = []

    async def hold(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        accepted.append(w)

    mute = await asyncio.start_server(hold, "127.0.0.1", mute_port)
    # A listener whose backlog is full: the kernel drops further SYNs, the connect hangs.
    full = socket.socket()
    full.bind(("127.0.0.1", next(_ports)))
    full.listen(0)
    fillers = []
    for _ in range(3):
        s = socket.socket()
        s.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            s.connect(full.getsockname())
        fillers.append(s)
    await asyncio.sleep(0.2)
    tls = TlsSettings(ca_file=ca.cert_file, server_name=NAME, connect_timeout=0.5,
                      handshake_timeout=0.5)
    try:
        async with agent(None, tls) as ua:
            t0 = asyncio.get_running_loop().time()
            code, reason, _ = await ua.options(f"sip:127.0.0.1:{mute_port}")
            took = asyncio.get_running_loop().time() - t0
            assert code == 503 and 0.4 < took < 2, (code, reason, took)
            assert f"TLS handshake with 127.0.0.1:{mute_port} timed out after 0.5 s" in reason
            assert "is that port TLS?" in reason
            assert accepted  # the TCP connection was made
            busy = full.getsockname()[1]
            code, reason, _ = await ua.options(f"sip:127.0.0.1:{busy}")
            assert code == 503
            assert f"TCP connect to 127.0.0.1:{busy} timed out after 0.5 s" in reason, reason
            closed = next(_ports)  # nobody listens: refused at once
            code, reason, _ = await ua.options(f"sip:127.0.0.1:{closed}")
            assert code == 503 and "Connection refused" in reason, reason
    finally:
        mute.close()
        for w in accepted:
            w.close()
        for s in fillers:
            s.close()
        full.close()


async def test_plain_tcp_peer_is_not_tls(ca: TestCa) -> None:
    """A SIP-over-TCP server on the port we expected TLS on: it answers our ClientHello
    with garbage or a close; either way the reason says so, not 'timeout'."""
    port = next(_ports)

    async def answer_plain(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await r.read(100)
        w.write(b"SIP/2.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await w.drain()
        w.close()

    server = await asyncio.start_server(answer_plain, "127.0.0.1", port)
    try:
        async with agent(None, TlsSettings(ca_file=ca.cert_file, server_name=NAME)) as ua:
            code, reason, _ = await ua.options(f"sip:127.0.0.1:{port}")
        assert code == 503 and "does not speak TLS on that port" in reason, reason
    finally:
        server.close()


def test_settings_from_env(monkeypatch: pytest.MonkeyPatch, ca: TestCa) -> None:
    mine = ca.issue("alice")
    monkeypatch.setenv("AUTOCALL_SIP_TRANSPORT", "TLS")
    monkeypatch.setenv("AUTOCALL_SIP_TLS_CA_FILE", str(ca.cert_file))
    monkeypatch.setenv("AUTOCALL_SIP_TLS_CERT_FILE", str(mine.cert_file))
    monkeypatch.setenv("AUTOCALL_SIP_TLS_KEY_FILE", str(mine.key_file))
    monkeypatch.setenv("AUTOCALL_SIP_TLS_SERVER_NAME", "trunk.example.net")
    trunk = TrunkSettings.from_env()
    assert trunk.transport == "tls"
    assert trunk.tls == TlsSettings(verify=True, ca_file=ca.cert_file,
                                    cert_file=mine.cert_file, key_file=mine.key_file,
                                    server_name="trunk.example.net")
    monkeypatch.setenv("AUTOCALL_SIP_TLS_VERIFY", "no")
    assert tls_from_env().verify is False
    monkeypatch.setenv("AUTOCALL_SIP_TLS_VERIFY", "maybe")
    with pytest.raises(ValueError, match="AUTOCALL_SIP_TLS_VERIFY='maybe': expected 1 or 0"):
        tls_from_env()
    monkeypatch.delenv("AUTOCALL_SIP_TLS_VERIFY")
    for name in ("AUTOCALL_SIP_TLS_CA_FILE", "AUTOCALL_SIP_TLS_CERT_FILE",
                 "AUTOCALL_SIP_TLS_KEY_FILE", "AUTOCALL_SIP_TLS_SERVER_NAME"):
        monkeypatch.delenv(name)
    assert tls_from_env() == TlsSettings()  # verify on, system CAs


def test_unusable_files_are_named(ca: TestCa, tmp_path: Path) -> None:
    mine, other = ca.issue("alice"), ca.issue("bob")
    missing = tmp_path / "nope.pem"
    with pytest.raises(ValueError, match=f"TLS CA file {missing}: No such file"):
        TlsSettings(ca_file=missing).client_context()
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ValueError, match=f"TLS CA file {junk}: no PEM certificate"):
        TlsSettings(ca_file=junk).client_context()
    with pytest.raises(ValueError, match=f"TLS certificate {junk}: no PEM certificate"):
        TlsSettings(cert_file=junk).client_context()
    with pytest.raises(ValueError, match="the key does not belong to the certificate"):
        TlsSettings(cert_file=mine.cert_file, key_file=other.key_file).client_context()
    with pytest.raises(ValueError, match="needs its certificate file"):
        TlsSettings(key_file=mine.key_file).server_context()
    assert TlsSettings().server_context() is None
    assert TlsSettings(cert_file=mine.cert_file, key_file=mine.key_file).server_context()


async def test_unknown_transport_is_refused() -> None:
    with pytest.raises(ValueError, match="'sctp' is not one of udp, tcp, tls"):
        await UserAgent.start(transport="sctp")


def test_uri_default_port_of_tls_registrar() -> None:
    assert URI.parse("sips:sip.test").hostport == ("sip.test", 5061)


@pytest.mark.peers
def test_serve_over_tls_behind_kamailio(ca: TestCa, server_cert: Issued, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """`autocall serve --transport tls` with a certificate of its own: SIPp calls
    Kamailio over UDP, Kamailio opens a TLS connection to serve and relays the call;
    the caller's digits walk the tree as over UDP."""
    robot = ca.issue("robot.test")
    serve_port, sport = next(_ports), next(_sipp_ports)
    for name, value in (("CA_FILE", ca.cert_file), ("CERT_FILE", robot.cert_file),
                        ("KEY_FILE", robot.key_file), ("SERVER_NAME", NAME)):
        monkeypatch.setenv(f"AUTOCALL_SIP_TLS_{name}", str(value))
    forward = f'TLS_FORWARD="sip:127.0.0.1:{serve_port};transport=tls"'
    with kamailio(server_cert, defines=(forward,)) as (kam, _port), \
            serve(tmp_path, serve_port, "--transport", "tls", stream=True):
        caller = Sipp(SCENARIOS / "uac_call.xml", port=sport, media_port=sport + 2,
                      remote=f"127.0.0.1:{kam.port}", service="robot", timeout=20)
        with caller:
            assert caller.wait(15) == 0, caller.errors()
        time.sleep(0.3)
    (record,) = records(tmp_path)
    assert record["status"] == "completed" and record["answered_at"], record
    assert record["digits"] == "79" and record["path"] == ["welcome", "sales", "confirmed"]


async def test_not_yet_valid_certificate_and_a_silent_close_after_the_handshake(
        ca: TestCa, tmp_path: Path) -> None:
    """Against a TLS server made here with Python's ssl (OpenSSL): a certificate whose
    validity starts tomorrow; then a server that trusts another CA than our client
    certificate's. asyncio's server closes without sending its alert, so the request ends
    at once on the close, with a hint (Kamailio's alert is named: see the mutual test)."""
    port = next(_ports)
    future = ca.issue(NAME, not_before=days_ago(-1))

    async def silent(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await _r.read(1)
        w.close()

    ctx = TlsSettings(cert_file=future.cert_file, key_file=future.key_file).server_context()
    assert ctx is not None
    server = await asyncio.start_server(silent, "127.0.0.1", port, ssl=ctx)
    try:
        async with agent(None, TlsSettings(ca_file=ca.cert_file, server_name=NAME)) as ua:
            code, reason, _ = await ua.options(f"sip:127.0.0.1:{port}")
        assert code == 503 and "its certificate is not valid yet" in reason, reason
    finally:
        server.close()
        await server.wait_closed()
    # A server that wants client certificates from another CA refuses ours.
    port = next(_ports)
    good = ca.issue(NAME)
    other = TestCa(tmp_path / "other", "another CA")
    ctx = TlsSettings(cert_file=good.cert_file, key_file=good.key_file).server_context()
    assert ctx is not None
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=str(other.cert_file))
    server = await asyncio.start_server(silent, "127.0.0.1", port, ssl=ctx)
    mine = ca.issue("alice")
    try:
        async with agent(None, TlsSettings(ca_file=ca.cert_file, server_name=NAME,
                                           cert_file=mine.cert_file,
                                           key_file=mine.key_file)) as ua:
            t0 = asyncio.get_running_loop().time()
            code, reason, _ = await ua.options(f"sip:127.0.0.1:{port}")
            took = asyncio.get_running_loop().time() - t0
        assert code == 503 and took < 2, (code, reason, took)  # not Timer F (6.4 s here)
        assert f"TLS connection to 127.0.0.1:{port} was closed by the server before it " \
               "answered (did it refuse our client certificate?)" in reason, reason
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.peers
def test_cli_options_over_tls(ca: TestCa, server_cert: Issued, tmp_path: Path,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOCALL_SIP_TLS_CA_FILE", str(ca.cert_file))
    monkeypatch.setenv("AUTOCALL_SIP_TLS_SERVER_NAME", NAME)
    runner = CliRunner()
    with kamailio(server_cert) as (_kam, port):
        args = ["sip", "options", f"127.0.0.1:{port}", "--transport", "tls", "--json",
                "--bind", "127.0.0.1:0"]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["status"] == 200
        monkeypatch.setenv("AUTOCALL_SIP_TLS_SERVER_NAME", "other.test")
        result = runner.invoke(app, args)
        assert result.exit_code == 1, result.output
        answer = json.loads(result.output)
        assert answer["status"] == 503 and "is not for 'other.test'" in answer["reason"]
    missing = tmp_path / "missing-ca.pem"
    monkeypatch.setenv("AUTOCALL_SIP_TLS_CA_FILE", str(missing))
    result = runner.invoke(app, args)
    shown = " ".join(result.output.split())  # rich wraps long lines
    assert result.exit_code == 2 and f"TLS CA file {missing}: No such file" in shown, shown


def test_cli_call_refuses_bad_tls_settings_before_dialing(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    runner = CliRunner()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AUTOCALL_SIP_TLS_VERIFY", "perhaps")
    result = runner.invoke(app, ["call", "sip:bob@127.0.0.1:18799", "--say", "hi",
                                 "--transport", "tls"])
    assert result.exit_code == 2, result.output
    assert "AUTOCALL_SIP_TLS_VERIFY='perhaps'" in result.output
    monkeypatch.delenv("AUTOCALL_SIP_TLS_VERIFY")
    monkeypatch.setenv("AUTOCALL_SIP_TLS_CERT_FILE", str(tmp_path / "mine.pem"))
    result = runner.invoke(app, ["call", "sip:bob@127.0.0.1:18799", "--say", "hi",
                                 "--transport", "tls"])
    assert result.exit_code == 2, result.output
    shown = " ".join(result.output.split())  # rich wraps long lines
    assert f"TLS certificate {tmp_path / 'mine.pem'}: No such file" in shown, shown
    result = runner.invoke(app, ["call", "sip:bob@127.0.0.1:18799", "--say", "hi",
                                 "--transport", "sctp"])
    assert result.exit_code == 2 and "use udp, tcp or tls" in result.output, result.output


def trunk_zone(tls_port: int) -> str:
    """trunk.example.test: TLS only (NAPTR SIPS+D2T), one SRV target, edge1."""
    return f"""
$TTL 300
@     IN SOA ns.example.test. admin.example.test. 1 3600 600 86400 60
@     IN NS ns.example.test.
trunk IN NAPTR 10 10 "s" "SIPS+D2T" "" _sips._tcp.trunk.example.test.
_sips._tcp.trunk IN SRV 10 0 {tls_port} edge1.example.test.
edge1 IN A 127.0.0.1
"""


async def options_by_name(ca: TestCa, dns: DnsServer) -> tuple[int, str]:
    ua = await UserAgent.start(transport="tls", tls=TlsSettings(ca_file=ca.cert_file),
                               dns_servers=(dns.address,), timers=FAST)
    try:
        code, reason, _ = await ua.options("sip:trunk.example.test")
        return code, reason
    finally:
        await ua.close()


@pytest.mark.peers
@pytest.mark.parametrize("certified", ["trunk.example.test", "edge1.example.test"])
async def test_certificate_is_checked_for_the_domain_dns_was_asked_about(
        ca: TestCa, certified: str) -> None:
    """RFC 5922 §4: a trunk found through NAPTR → SRV (SIPS+D2T) → A must show a
    certificate for the domain we asked about, not for the SRV target, which DNS (not
    the trunk) chose. No server_name is configured."""
    alias = 'DOMAIN_ALIAS="trunk.example.test"'  # Kamailio answers OPTIONS for it
    with kamailio(ca.issue(certified), defines=(alias,)) as (_kam, port):
        dns = DnsServer(trunk_zone(port), "example.test.", next(_ports))
        try:
            code, reason = await options_by_name(ca, dns)
        finally:
            dns.close()
    assert dns.asked[("_sips._tcp.trunk.example.test", "SRV")] == 1
    if certified == "trunk.example.test":
        assert code == 200, reason
    else:
        assert code == 503 and "its certificate is not for 'trunk.example.test'" in reason, \
            reason


async def test_half_open_handshakes_are_held_to_the_tcp_limits(ca: TestCa) -> None:
    """Strangers that connect to our TLS port and never say hello count against the TCP
    limits before their handshake: past ``max_per_source`` they are closed at once, the
    others when the handshake timeout runs out; then a real client still gets in."""
    mine = ca.issue(NAME, ips=("127.0.0.1",))
    port = next(_ports)
    serving = TlsSettings(cert_file=mine.cert_file, key_file=mine.key_file,
                          handshake_timeout=1.0)
    server = await SipUA.start(UAConfig(bind_port=port, transport="tls", tls=serving,
                                        tcp_limits=TcpLimits(max_per_source=3), timers=FAST))
    loop = asyncio.get_running_loop()
    strangers = [await asyncio.open_connection("127.0.0.1", port) for _ in range(5)]
    try:
        t0 = loop.time()
        closed_at: list[float] = []

        async def until_closed(reader: asyncio.StreamReader) -> None:
            await reader.read()  # b"" at EOF, or a reset
            closed_at.append(loop.time() - t0)

        with contextlib.suppress(ConnectionError):
            await asyncio.wait_for(asyncio.gather(*(until_closed(r) for r, _ in strangers),
                                                  return_exceptions=True), 5)
        closed_at.sort()
        assert len(closed_at) == 5
        assert closed_at[1] < 0.5, closed_at  # two over the limit: at once
        assert all(0.8 < t < 2.5 for t in closed_at[2:]), closed_at  # the handshake timeout
        assert isinstance(server.transport, TlsTransport)
        assert server.transport.connections == 0
        async with agent(None, TlsSettings(ca_file=ca.cert_file)) as ua:
            code, reason, _ = await ua.options(f"sip:127.0.0.1:{port}")
            assert code == 200, reason  # verified by address: the certificate has 127.0.0.1
    finally:
        for _, writer in strangers:
            writer.close()
        await server.close()


async def test_settings_reach_the_agent_that_call_serve_and_campaigns_share(
        ca: TestCa, monkeypatch: pytest.MonkeyPatch) -> None:
    """UserAgent.from_settings is the one mapping from settings for call, serve and
    campaigns: the trunk's TLS settings must arrive in its transport."""
    mine = ca.issue("robot.test")
    monkeypatch.setenv("AUTOCALL_SIP_TRANSPORT", "tls")
    monkeypatch.setenv("AUTOCALL_SIP_TLS_CA_FILE", str(ca.cert_file))
    monkeypatch.setenv("AUTOCALL_SIP_TLS_CERT_FILE", str(mine.cert_file))
    monkeypatch.setenv("AUTOCALL_SIP_TLS_KEY_FILE", str(mine.key_file))
    monkeypatch.setenv("AUTOCALL_SIP_TLS_SERVER_NAME", "trunk.example.net")
    settings = Settings.from_env()
    ua = await UserAgent.from_settings(settings)
    try:
        transport = ua.sip.transport
        assert isinstance(transport, TlsTransport) and transport.serving
        assert transport.settings == settings.trunk.tls
        assert transport.server_name(("192.0.2.9", 5061)) == "trunk.example.net"
        assert ua.sip.via().startswith("SIP/2.0/TLS ") and ";alias" in ua.sip.via()
    finally:
        await ua.close()


@pytest.mark.peers
async def test_registration_follows_a_lost_connection(ca: TestCa, server_cert: Issued) -> None:
    """Kamailio restarts (its connection to us and its location table are gone): we
    register again at once, not at the refresh 30 s later, and calls reach us again
    down the new connection."""
    udp = next(_ports)
    tls = KamailioTls(udp + 1, server_cert.cert_file, server_cert.key_file)
    sport = next(_sipp_ports)
    kam = Kamailio(port=udp, users=USERS, tls=tls).start()
    try:
        async with agent(tls.port, TlsSettings(ca_file=ca.cert_file, server_name=NAME),
                         register=True) as ua:  # register_expires=60: refresh after 30 s
            assert await ua.wait_registered(5), ua.sip.register_error
            kam.stop()
            ua.sip.registered.clear()  # set again only by a REGISTER that succeeds
            kam = Kamailio(port=udp, users=USERS, tls=tls).start()
            assert await ua.wait_registered(6), ua.sip.register_error
            with Sipp(SCENARIOS / "uac_call.xml", port=sport, media_port=sport + 2,
                      remote=f"127.0.0.1:{udp}", service="alice") as caller:
                call = await asyncio.wait_for(anext(aiter(ua.incoming())), 10)
                await call.answer()
                assert await call.wait_ended(10) is CallStatus.COMPLETED
                assert caller.wait(10) == 0, caller.errors()
    finally:
        kam.stop()


async def test_sips_call_between_two_agents(ca: TestCa) -> None:
    """RFC 5630 §3.1.3: a sips: INVITE carries a sips: Contact, the answer too, and the
    dialog stays secure; the callee serves TLS with a certificate for its address."""
    robot = ca.issue(NAME, ips=("127.0.0.1",))
    port = next(_ports)
    server = await UserAgent.start(bind_port=port, transport="tls", user="robot", timers=FAST,
                                   tls=TlsSettings(ca_file=ca.cert_file,
                                                   cert_file=robot.cert_file,
                                                   key_file=robot.key_file))
    try:
        async with agent(None, TlsSettings(ca_file=ca.cert_file)) as ua:
            call = await ua.call(f"sips:robot@127.0.0.1:{port}", ring_timeout=5)
            incoming = await asyncio.wait_for(anext(aiter(server.incoming())), 5)
            invite = incoming.session.usage.invite
            assert invite.uri.scheme == "sips"
            assert invite.contact is not None and invite.contact.uri.scheme == "sips"
            assert "transport=" not in str(invite.contact.uri)  # sips: says TLS already
            await incoming.answer()
            assert await call.wait_answer(5) is CallStatus.IN_PROGRESS, call
            dialog = call.session.usage.dialog
            assert dialog is not None and dialog.secure
            assert dialog.remote_target.scheme == "sips"  # the callee's 200 Contact
            await call.hangup()
            assert await call.wait_ended(5) is CallStatus.COMPLETED
            assert await incoming.wait_ended(5) is CallStatus.COMPLETED
            assert isinstance(ua.sip.transport, TlsTransport)
            assert ua.sip.transport.connections == 1  # the BYE took the INVITE's connection
    finally:
        await server.close()
