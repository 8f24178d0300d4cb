"""Keep-alive of a registered agent (RFC 5626 §3.5.1, §4.4.1): the sans-I/O timing, then
OPTIONS over UDP at a real SIPp registrar and CRLFCRLF over TCP at a registrar peer
written here (SIPp cannot show a bare CRLF), all on 127.0.0.1."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

import pytest

from autocall.config import Settings, TrunkSettings
from autocall.sip.keepalive import KeepAlive, PathLost, Ping
from autocall.sip.transaction import Timers
from autocall.telephony.call import UserAgent
from tests.peers import SCENARIOS, Sipp

_ports = itertools.count(19650, 10)  # ours: 19650-19699 (peer, its media, our agent)
FAST = Timers(t1=0.1, t2=0.4, t4=0.5, timer_d=0.5)


def test_pings_come_every_80_to_100_percent_of_the_interval() -> None:
    draws: list[tuple[float, float]] = []

    def draw(low: float, high: float) -> float:
        draws.append((low, high))
        return high if len(draws) % 2 else low

    ka = KeepAlive(30, reliable=True, draw=draw)
    ka.start(100.0)
    assert ka.deadline == 130.0 and ka.on_timer(129.9) == []
    assert ka.on_timer(130.0) == [Ping("crlf")] and ka.deadline == 154.0
    assert draws == [(24.0, 30.0), (24.0, 30.0)]


def test_over_udp_one_options_at_a_time_and_no_answer_means_the_path_is_lost() -> None:
    ka = KeepAlive(10, reliable=False, draw=lambda low, high: high)
    ka.start(0.0)
    assert ka.on_timer(10.0) == [Ping("options")] and ka.waiting
    assert ka.on_timer(20.0) == []  # still out: not a second one
    assert ka.answered(405) == [] and not ka.waiting  # any answer proves the path
    assert ka.on_timer(30.0) == [Ping("options")]
    assert ka.answered(None) == [PathLost("no answer to the keep-alive OPTIONS")]
    assert ka.sent == 2


def test_a_bad_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        KeepAlive(0, reliable=False)


def test_the_interval_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOCALL_SIP_KEEPALIVE", "25")
    assert TrunkSettings.from_env().keepalive == 25.0
    monkeypatch.setenv("AUTOCALL_SIP_KEEPALIVE", "soon")
    with pytest.raises(ValueError, match="AUTOCALL_SIP_KEEPALIVE='soon' is not a number"):
        TrunkSettings.from_env()
    monkeypatch.setenv("AUTOCALL_SIP_KEEPALIVE", "-1")
    with pytest.raises(ValueError, match="0 \\(off\\) to 3600"):
        TrunkSettings.from_env()


@pytest.mark.peers
@pytest.mark.timeout(30)
async def test_a_registered_agent_pings_its_udp_registrar_with_options(tmp_path: Path) -> None:
    port = next(_ports)
    peer = Sipp(SCENARIOS / "uas_registrar_keepalive.xml", port=port, media_port=port + 2,
                calls=3, cwd=tmp_path)
    with peer:
        ua = await UserAgent.start(bind_port=port + 7, timers=FAST, register=True,
                                   registrar=f"sip:127.0.0.1:{port}", keepalive=1.0)
        try:
            await asyncio.wait_for(ua.sip.registered.wait(), 5)
            registered = time.monotonic()
            assert await asyncio.to_thread(peer.wait, 10) == 0, peer.errors()
            took = time.monotonic() - registered
            assert 1.6 <= took <= 3.0, took  # two pings, 0.8-1 s apart each
            ka = ua.sip.keepalive
            assert ka is not None and ka.sent >= 2 and not ka.waiting
        finally:
            await ua.close()


class _TcpRegistrar:
    """Answers REGISTER with 200 and counts the CRLFCRLF keep-alives between messages."""

    def __init__(self) -> None:
        self.registers = 0
        self.pings: list[float] = []
        self.server: asyncio.Server | None = None

    async def serve(self, port: int) -> None:
        self.server = await asyncio.start_server(self._conn, "127.0.0.1", port)

    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buf = b""
        while data := await reader.read(4096):
            buf += data
            while True:
                if buf.startswith(b"\r\n\r\n"):
                    self.pings.append(time.monotonic())
                    buf = buf[4:]
                    writer.write(b"\r\n")  # the pong (RFC 5626 §4.4.1)
                    continue
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    break
                head, buf = buf[:end].decode(), buf[end + 4:]
                assert head.startswith("REGISTER "), head
                self.registers += 1
                lines = head.split("\r\n")[1:]
                keep = [ln for ln in lines if ln.split(":", 1)[0].lower()
                        in ("via", "from", "to", "call-id", "cseq", "contact")]
                reply = "SIP/2.0 200 OK\r\n" + "\r\n".join(
                    f"{ln};tag=r1" if ln.lower().startswith("to:") else ln for ln in keep)
                writer.write(reply.encode() + b"\r\nContent-Length: 0\r\n\r\n")

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


@pytest.mark.timeout(30)
async def test_over_tcp_the_keepalive_is_a_double_crlf_on_the_registration_connection(
        ) -> None:
    port = next(_ports)
    registrar = _TcpRegistrar()
    await registrar.serve(port)
    ua = await UserAgent.start(bind_port=port + 7, transport="tcp", timers=FAST,
                               register=True, registrar=f"sip:127.0.0.1:{port};transport=tcp",
                               keepalive=0.5)
    try:
        await asyncio.wait_for(ua.sip.registered.wait(), 5)
        registered = time.monotonic()
        await asyncio.sleep(1.6)
        assert registrar.registers == 1
        gaps = [b - a for a, b in zip([registered, *registrar.pings], registrar.pings,
                                      strict=False)]
        assert 2 <= len(registrar.pings) <= 4, gaps
        assert all(0.35 <= g <= 0.6 for g in gaps), gaps
    finally:
        await ua.close()
        registrar.close()


def test_the_public_port_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOCALL_ADVERTISED_HOST", "203.0.113.7")
    monkeypatch.setenv("AUTOCALL_ADVERTISED_PORT", "5099")
    settings = Settings.from_env()
    assert (settings.advertised_host, settings.advertised_port) == ("203.0.113.7", 5099)
    monkeypatch.setenv("AUTOCALL_ADVERTISED_PORT", "70000")
    with pytest.raises(ValueError, match="AUTOCALL_ADVERTISED_PORT='70000' is not a port"):
        Settings.from_env()


class _SilentUdpRegistrar(asyncio.DatagramProtocol):
    """Answers REGISTER with 200 and never answers OPTIONS: a path that died after the
    registration (the NAT forgot us, the registrar moved)."""

    def __init__(self) -> None:
        self.registers: list[float] = []
        self.options: list[float] = []
        self.transport: asyncio.DatagramTransport | None = None

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        head = data.decode(errors="replace").split("\r\n\r\n", 1)[0]
        if head.startswith("OPTIONS "):
            self.options.append(time.monotonic())
            return
        if not head.startswith("REGISTER ") or self.transport is None:
            return
        self.registers.append(time.monotonic())
        keep = [ln for ln in head.split("\r\n")[1:] if ln.split(":", 1)[0].lower()
                in ("via", "from", "to", "call-id", "cseq", "contact")]
        reply = "SIP/2.0 200 OK\r\n" + "\r\n".join(
            f"{ln};tag=r1" if ln.lower().startswith("to:") else ln for ln in keep)
        self.transport.sendto(reply.encode() + b"\r\nContent-Length: 0\r\n\r\n", addr)


@pytest.mark.timeout(30)
async def test_an_unanswered_options_keepalive_registers_again_at_once() -> None:
    port = next(_ports)
    loop = asyncio.get_running_loop()
    transport, registrar = await loop.create_datagram_endpoint(
        _SilentUdpRegistrar, local_addr=("127.0.0.1", port))
    registrar.transport = transport
    t1 = 0.05  # an OPTIONS times out after 64*T1 = 3.2 s
    ua = await UserAgent.start(bind_port=port + 7, timers=Timers(t1=t1, t2=0.4, t4=0.5),
                               register=True, registrar=f"sip:127.0.0.1:{port}",
                               register_expires=600, keepalive=0.5)
    try:
        await asyncio.wait_for(ua.sip.registered.wait(), 5)
        deadline = time.monotonic() + 8
        while len(registrar.registers) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert len(registrar.registers) == 2, "no new REGISTER after the lost keep-alive"
        first_ping = registrar.options[0] - registrar.registers[0]
        again = registrar.registers[1] - registrar.options[0]
        assert 0.35 <= first_ping <= 0.65, first_ping
        assert 64 * t1 <= again <= 64 * t1 + 1.5, again  # not the 300 s refresh
    finally:
        await ua.close()
        transport.close()
