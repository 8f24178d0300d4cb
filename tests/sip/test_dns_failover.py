"""RFC 3263 against real peers: a trunk known only by name, served by a DNS server on
127.0.0.1 whose NAPTR and SRV records name two servers. The first is stopped, silent or
overloaded (503); the call goes through the second, and the first is tried first."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest

from autocall.sip.transaction import Timers
from autocall.telephony.call import CallStatus, UserAgent
from tests.peers import SCENARIOS, Kamailio, Sipp
from tests.sip.dnsserver import DnsServer

pytestmark = [pytest.mark.peers, pytest.mark.timeout(90)]

# This file's ports: 18800-18819.
FIRST, SECOND, CALLEE = 18801, 18803, 18805
# SIPp binds its media port and the one 2 above: 18810 and 18814 keep them apart.
FAST = Timers(t1=0.1, t2=0.4, t4=0.5, timer_d=0.5)  # Timer B = 64*T1 = 6.4 s
USERS = {"alice": "s3cret-Pa55"}
CALLS = 3


def zone(first: int, second: int) -> str:
    return f"""
$TTL 300
@     IN SOA ns.example.test. admin.example.test. 1 3600 600 86400 60
@     IN NS ns.example.test.
ns    IN A 127.0.0.1
trunk IN NAPTR 10 10 "s" "SIP+D2U" "" _sip._udp.trunk.example.test.
trunk IN NAPTR 20 10 "s" "SIP+D2T" "" _sip._tcp.trunk.example.test.
_sip._udp.trunk IN SRV 10 0 {first} one.example.test.
_sip._udp.trunk IN SRV 20 0 {second} two.example.test.
one   IN A 127.0.0.1
two   IN A 127.0.0.1
"""


@pytest.fixture
def dns() -> Iterator[DnsServer]:
    server = DnsServer(zone(FIRST, SECOND), "example.test.")
    yield server
    server.close()


@pytest.mark.parametrize("first_server", ["stopped", "silent"])
async def test_a_dead_first_proxy_fails_over_to_the_second(dns: DnsServer,
                                                           first_server: str) -> None:
    import socket
    hole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # takes packets, never answers
    if first_server == "silent":
        hole.bind(("127.0.0.1", FIRST))
    try:
        with Kamailio(port=SECOND, users=USERS), \
                Sipp(SCENARIOS / "uas_answer.xml", port=CALLEE, media_port=CALLEE + 2,
                     calls=CALLS) as far:
            ua = await UserAgent.start(user="alice", password=USERS["alice"],
                                       domain="127.0.0.1", proxy="sip:trunk.example.test",
                                       timers=FAST, dns_servers=(dns.address,))
            try:
                for _ in range(CALLS):  # calls go on being placed while the first is down
                    call = await ua.call(f"sip:sipp@127.0.0.1:{CALLEE}", caller_id="alice",
                                         ring_timeout=20)
                    assert await call.wait_answer(15) is CallStatus.IN_PROGRESS, call
                    assert call.session.usage.peer == ("127.0.0.1", SECOND)
                    await call.hangup()
                    assert await call.wait_ended(5) is CallStatus.COMPLETED
                assert far.wait(10) == 0, far.errors()
            finally:
                await ua.close()
        if first_server == "silent":  # tried by the first call only, then left alone
            hole.settimeout(0)
            invites = set()
            with contextlib.suppress(BlockingIOError):
                while True:
                    packet = hole.recv(65535)
                    assert packet.startswith(b"INVITE "), packet[:40]
                    invites.add(re.search(rb"branch=([^;\r\n]+)", packet).group(1))  # type: ignore[union-attr]
            assert len(invites) == 1, invites  # one transaction (retransmitted), one call
    finally:
        hole.close()
    assert dns.asked[("trunk.example.test", "NAPTR")] == 1
    assert dns.asked[("_sip._udp.trunk.example.test", "SRV")] == 1


def test_autocall_call_finds_the_trunk_by_srv_and_passes_an_overloaded_server(
        dns: DnsServer) -> None:
    """The CLI, configured as a user would: a trunk host name and a DNS server."""
    with Sipp(SCENARIOS / "uas_overloaded_503.xml", port=FIRST, media_port=18810) as busy, \
            Sipp(SCENARIOS / "uas_answer_bye.xml", port=SECOND, media_port=18814) as ok:
        env = {**os.environ, "AUTOCALL_SIP_HOST": "trunk.example.test",
               "AUTOCALL_DNS_SERVERS": f"{dns.address[0]}:{dns.address[1]}",
               "AUTOCALL_BIND_PORT": str(CALLEE + 4)}
        env.pop("AUTOCALL_SIP_PORT", None)
        run = subprocess.run(
            [sys.executable, "-c", "from autocall.cli import main; main()", "call", "1001",
             "--say", "Your order has shipped.", "--json", "--ring-timeout", "10"],
            env=env, capture_output=True, text=True, timeout=60)
        assert busy.wait(10) == 0, busy.errors()  # it got the INVITE first and said 503
        assert ok.wait(20) == 0, ok.errors()
    assert run.returncode == 0, run.stdout + run.stderr
    assert '"completed"' in run.stdout, run.stdout
