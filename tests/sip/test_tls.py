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
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from autocall.config import TrunkSettings, tls_from_env
from autocall.sip.message import URI
from autocall.sip.transaction import Timers
from autocall.sip.transport import TlsSettings, TlsTransport
from autocall.telephony.call import CallStatus, UserAgent
from tests.peers import SCENARIOS, Kamailio, KamailioTls, Sipp
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
def kamailio(cert: Issued, ca: TestCa | None = None,
             require_client_cert: bool = False) -> Iterator[tuple[Kamailio, int]]:
    udp = next(_ports)
    tls = KamailioTls(udp + 1, cert.cert_file, cert.key_file,
                      ca.cert_file if ca is not None else None, require_client_cert)
    with Kamailio(port=udp, users=USERS, tls=tls) as kam:
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
async def test_mutual_tls_client_certificate(ca: TestCa, server_cert: Issued) -> None:
    mine = ca.issue("alice")
    with kamailio(server_cert, ca, require_client_cert=True) as (_kam, port):
        async with agent(port, TlsSettings(ca_file=ca.cert_file, server_name=NAME),
                         register=True) as ua:
            why = await register_error(ua)
        assert "503" in why and "client certificate" in why, why
        assert "AUTOCALL_SIP_TLS_CERT_FILE" in why, why
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
