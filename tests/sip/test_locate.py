"""RFC 3263 server location: the rules on records (no DNS), then the same questions
asked of a real DNS server on 127.0.0.1 with TTLs, negative answers and silence."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Iterator

import pytest

from autocall.config import parse_nameserver
from autocall.sip.dns import DnsLookup
from autocall.sip.locate import (
    Hop,
    Naptr,
    Srv,
    locate,
    naptr_services,
    plan,
    srv_order,
    up_first,
)
from autocall.sip.message import URI
from tests.sip.dnsserver import DnsServer

ZONE = """
$TTL 300
@        IN SOA ns.example.test. admin.example.test. 1 3600 600 86400 20
@        IN NS ns.example.test.
ns       IN A 127.0.0.1
trunk    IN NAPTR 20 10 "s" "SIP+D2U" "" _sip._udp.trunk.example.test.
trunk    IN NAPTR 10 10 "s" "SIP+D2T" "" _sip._tcp.trunk.example.test.
trunk    IN NAPTR 30 10 "s" "SIPS+D2T" "" _sips._tcp.trunk.example.test.
trunk    IN NAPTR 5 10 "u" "E2U+sip" "!^.*$!sip:x@y!" .
_sip._udp.trunk IN SRV 10 0 5071 a.example.test.
_sip._udp.trunk IN SRV 20 0 5072 b.example.test.
_sip._tcp.trunk IN SRV 10 0 5073 a.example.test.
_sip._udp.plain IN SRV 10 0 5074 b.example.test.
nosrv    IN A 127.0.0.9
a        60 IN A 127.0.0.2
b        IN A 127.0.0.3
b        IN A 127.0.0.4
"""


@pytest.fixture
def server() -> Iterator[DnsServer]:
    srv = DnsServer(ZONE, "example.test.")
    yield srv
    srv.close()


def lookup(server: DnsServer, clock: list[float] | None = None) -> DnsLookup:
    now = clock if clock is not None else [0.0]
    return DnsLookup([server.address], timeout=1.0, clock=lambda: now[0])


# -- the rules, on records ---------------------------------------------------------------

def test_plan_follows_rfc3263_section_4_1() -> None:
    udp_tcp = ("udp", "tcp")
    assert plan(URI.parse("sip:x@192.0.2.1"), udp_tcp).port == 5060
    assert plan(URI.parse("sip:x@192.0.2.1"), udp_tcp).transport == "udp"
    assert plan(URI.parse("sip:x@h.example:5080"), udp_tcp).port == 5080
    assert plan(URI.parse("sip:x@h.example"), udp_tcp).transport is None  # ask NAPTR
    assert plan(URI.parse("sip:x@h.example;transport=tcp"), udp_tcp).transport == "tcp"
    assert plan(URI.parse("sip:x@h.example;transport=tcp"), udp_tcp).port is None  # SRV
    assert plan(URI.parse("sips:x@192.0.2.1"), ("tls",)).port == 5061
    with pytest.raises(ValueError, match="needs TLS"):
        plan(URI.parse("sips:x@192.0.2.1"), udp_tcp)
    with pytest.raises(ValueError, match="transport=sctp"):
        plan(URI.parse("sip:x@h.example;transport=sctp"), udp_tcp)


def test_naptr_order_then_preference_supported_transports_s_flag_only() -> None:
    records = [Naptr(20, 10, "s", "SIP+D2U", "_sip._udp.t"),
               Naptr(10, 20, "s", "SIP+D2T", "_sip._tcp.t"),
               Naptr(10, 10, "S", "SIP+D2T", "_sip._tcp.first"),
               Naptr(1, 1, "u", "E2U+sip", ""),
               Naptr(2, 1, "s", "SIPS+D2T", "_sips._tcp.t")]
    assert naptr_services(records, ("udp", "tcp"), secure=False) == [
        ("tcp", "_sip._tcp.first"), ("tcp", "_sip._tcp.t"), ("udp", "_sip._udp.t")]
    assert naptr_services(records, ("udp", "tcp", "tls"), secure=True) == [
        ("tls", "_sips._tcp.t")]


def test_srv_priority_first_and_weights_share_the_traffic() -> None:
    records = [Srv(20, 0, 1, "backup"), Srv(10, 3, 1, "big"), Srv(10, 1, 1, "small")]
    rng = random.Random(7)
    firsts = Counter(srv_order(records, rng)[0].target for _ in range(4000))
    assert set(firsts) == {"big", "small"}  # priority 20 is never first
    assert 0.70 < firsts["big"] / 4000 < 0.80  # weight 3 of 4 (RFC 2782)
    assert all(srv_order(records, rng)[-1].target == "backup" for _ in range(50))
    assert srv_order([Srv(0, 0, 0, ".")], rng) == []  # "service not offered here"


# -- against a DNS server ------------------------------------------------------------------

async def test_naptr_srv_a_in_order(server: DnsServer) -> None:
    hops = await locate(URI.parse("sip:robot@trunk.example.test"), lookup(server),
                        ("udp", "tcp"), random.Random(1))
    assert hops[:2] == [Hop("tcp", "127.0.0.2", 5073, "a.example.test"),  # NAPTR order 10
                        Hop("udp", "127.0.0.2", 5071, "a.example.test")]  # 20, prio 10
    assert set(hops[2:]) == {Hop("udp", "127.0.0.3", 5072, "b.example.test"),  # prio 20:
                             Hop("udp", "127.0.0.4", 5072, "b.example.test")}  # its 2 As
    udp_only = await locate(URI.parse("sip:robot@trunk.example.test"), lookup(server),
                            ("udp",), random.Random(1))
    assert [h.port for h in udp_only] == [5071, 5072, 5072]


async def test_without_naptr_srv_then_a_on_the_default_port(server: DnsServer) -> None:
    dns = lookup(server)
    hops = await locate(URI.parse("sip:robot@plain.example.test"), dns, ("udp",))
    assert sorted((h.address, h.port) for h in hops) == [("127.0.0.3", 5074),
                                                         ("127.0.0.4", 5074)]
    hops = await locate(URI.parse("sip:robot@nosrv.example.test"), dns, ("tcp",))
    assert hops == [Hop("tcp", "127.0.0.9", 5060, "nosrv.example.test")]
    assert await locate(URI.parse("sip:robot@missing.example.test"), dns, ("udp",)) == []
    explicit = await locate(URI.parse("sip:robot@nosrv.example.test:5099"), dns, ("udp",))
    assert explicit == [Hop("udp", "127.0.0.9", 5099, "nosrv.example.test")]
    assert server.asked[("nosrv.example.test", "NAPTR")] == 1  # explicit port: no NAPTR


async def test_answers_are_cached_for_their_ttl_and_negative_ones_for_the_soa(
        server: DnsServer) -> None:
    clock = [0.0]
    dns = lookup(server, clock)
    for _ in range(3):
        assert await dns.a("a.example.test") == ["127.0.0.2"]
        assert await dns.naptr("missing.example.test") == []
    assert server.asked[("a.example.test", "A")] == 1
    assert server.asked[("missing.example.test", "NAPTR")] == 1
    clock[0] = 19.0  # the SOA says 20 s for "no such name" (RFC 2308 §5)
    await dns.naptr("missing.example.test")
    assert server.asked[("missing.example.test", "NAPTR")] == 1
    clock[0] = 21.0
    await dns.naptr("missing.example.test")
    assert server.asked[("missing.example.test", "NAPTR")] == 2
    clock[0] = 59.0  # the A record's own TTL is 60 s
    await dns.a("a.example.test")
    assert server.asked[("a.example.test", "A")] == 1
    clock[0] = 61.0
    await dns.a("a.example.test")
    assert server.asked[("a.example.test", "A")] == 2


async def test_a_silent_server_is_a_short_wait_and_not_remembered(server: DnsServer) -> None:
    dns = DnsLookup([server.address], timeout=0.3)
    server.silent = True
    loop = asyncio.get_running_loop()
    started = loop.time()
    ticks = 0

    async def ticker() -> None:  # the event loop keeps running while DNS waits
        nonlocal ticks
        while True:
            await asyncio.sleep(0.02)
            ticks += 1

    task = asyncio.create_task(ticker())
    assert await locate(URI.parse("sip:robot@trunk.example.test"), dns, ("udp",)) == []
    task.cancel()
    assert loop.time() - started < 3.0
    assert ticks >= 10
    server.silent = False
    assert await dns.a("a.example.test") == ["127.0.0.2"]  # the timeout was not cached


def test_nameserver_setting_is_parsed_with_its_port() -> None:
    assert parse_nameserver("127.0.0.1") == ("127.0.0.1", 53)
    assert parse_nameserver("127.0.0.1:5353") == ("127.0.0.1", 5353)
    with pytest.raises(ValueError, match="ADDRESS:PORT"):
        parse_nameserver("127.0.0.1:dns")


def test_servers_that_failed_lately_go_last_until_their_time_is_up() -> None:
    a, b, c = ("127.0.0.1", 1), ("127.0.0.1", 2), ("127.0.0.1", 3)
    down = {a: 100.0, c: 50.0}
    assert up_first([a, b, c], down, now=10.0) == [b, a, c]
    assert up_first([a, b, c], down, now=60.0) == [b, c, a]  # c is back, a still down
    assert up_first([a, b, c], down, now=100.5) == [a, b, c]
