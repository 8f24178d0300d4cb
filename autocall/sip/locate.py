"""Locating SIP servers (RFC 3263): from a URI to the ordered list of next hops to try.

A carrier hands out a name, not an address: ``sip:trunk.example.net`` resolves through
NAPTR (which transports, in what order) to SRV (which servers, with priority and weight)
to A records. The client tries the hops in order and moves to the next one on a
transport error, a timeout or a 503 (§4.3). The choices are pure functions over records
(``plan``, ``naptr_services``, ``srv_order``); ``locate`` only asks a :class:`Lookup` the
questions they raise, so the rules are tested without a DNS server.

Only A records are asked for: the transports bind IPv4 sockets.
"""

from __future__ import annotations

import contextlib
import ipaddress
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from autocall.sip.message import URI

__all__ = ["Hop", "Lookup", "Naptr", "Srv", "Transport", "default_port", "locate",
           "naptr_services", "plan", "srv_order", "up_first"]

Transport = Literal["udp", "tcp", "tls"]
Addr = tuple[str, int]

# RFC 3263 §4.1 service fields; RFC 3261 §19.1.2 default ports.
SERVICES: dict[str, Transport] = {"SIP+D2U": "udp", "SIP+D2T": "tcp", "SIPS+D2T": "tls"}
NAMES: dict[str, Transport] = {"udp": "udp", "tcp": "tcp", "tls": "tls"}
SRV_PREFIX: dict[Transport, str] = {"udp": "_sip._udp", "tcp": "_sip._tcp",
                                    "tls": "_sips._tcp"}


@dataclass(frozen=True, slots=True)
class Naptr:
    order: int
    preference: int
    flags: str
    service: str
    replacement: str


@dataclass(frozen=True, slots=True)
class Srv:
    priority: int
    weight: int
    port: int
    target: str


@dataclass(frozen=True, slots=True)
class Hop:
    """One server to try. ``host`` is the name it came from (for TLS: the name the
    certificate must carry)."""

    transport: Transport
    address: str
    port: int
    host: str


class Lookup(Protocol):
    """The three DNS questions RFC 3263 asks. An empty list means "no such records"."""

    async def naptr(self, name: str) -> list[Naptr]: ...

    async def srv(self, name: str) -> list[Srv]: ...

    async def a(self, name: str) -> list[str]: ...


def default_port(transport: Transport) -> int:
    return 5061 if transport == "tls" else 5060


def _numeric(host: str) -> bool:
    """An address, or a localhost name (RFC 6761 §6.3: never asked of DNS)."""
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return True
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(host)
        return True
    return False


@dataclass(frozen=True, slots=True)
class Plan:
    """What §4.1/§4.2 decide before any query: a fixed transport (or None: ask NAPTR),
    and whether the port is fixed (no SRV)."""

    transport: Transport | None
    port: int | None


def plan(uri: URI, supported: Sequence[Transport]) -> Plan:
    """§4.1: a ``transport`` parameter wins; a numeric host or an explicit port means
    UDP for sip and TLS for sips; otherwise NAPTR decides. §4.2: a numeric host or an
    explicit port means no SRV. Raises ValueError for a transport this UA cannot use."""
    secure = uri.scheme == "sips"
    param = (uri.params.get("transport") or "").lower()
    transport: Transport | None = None
    if param:
        if param not in NAMES:
            raise ValueError(f"transport={param} is not one of udp, tcp, tls")
        transport = "tls" if secure and param == "tcp" else NAMES[param]
    elif _numeric(uri.host) or uri.port is not None:
        transport = "tls" if secure else "udp"
        if transport not in supported and not secure and supported:
            transport = supported[0]  # a configured TCP/TLS UA sends there over its transport
    if transport is not None and transport not in supported:
        raise ValueError(f"{uri} needs {transport.upper()}, this UA speaks "
                         f"{', '.join(t.upper() for t in supported)}")
    fixed = uri.port if uri.port is not None else (
        default_port(transport) if transport is not None and _numeric(uri.host) else None)
    return Plan(transport, fixed)


def naptr_services(records: Sequence[Naptr], supported: Sequence[Transport],
                   secure: bool) -> list[tuple[Transport, str]]:
    """§4.1: the NAPTRs this client can use, lowest order then preference first: flag
    "s" (go on with SRV), a SIP service of a supported transport; only SIPS+D2T for a
    sips URI."""
    usable = []
    for rec in sorted(records, key=lambda r: (r.order, r.preference)):
        transport = SERVICES.get(rec.service.upper())
        if transport is None or rec.flags.lower() != "s" or transport not in supported:
            continue
        if secure and transport != "tls":
            continue
        usable.append((transport, rec.replacement.rstrip(".")))
    return usable


def srv_order(records: Sequence[Srv], rng: random.Random) -> list[Srv]:
    """RFC 2782: lowest priority first; within one priority, a weighted random draw
    (weight-0 records first in the running sum, picked rarely but not never).
    A single record whose target is "." means the service is not offered here."""
    if len(records) == 1 and records[0].target in (".", ""):
        return []
    ordered: list[Srv] = []
    for priority in sorted({r.priority for r in records}):
        group = sorted((r for r in records if r.priority == priority), key=lambda r: r.weight)
        while group:
            total = sum(r.weight for r in group)
            # RFC 2782 draws from 0..total, which hands the 0 to the first record; only a
            # weight-0 record (sorted first) should get that small chance.
            pick = rng.randint(0 if group[0].weight == 0 else 1, total) if total else 0
            running = 0
            for index, rec in enumerate(group):
                running += rec.weight
                if running >= pick:
                    ordered.append(group.pop(index))
                    break
    return ordered


def up_first(hops: Sequence[Addr], down_until: dict[Addr, float], now: float) -> list[Addr]:
    """The same servers, those that failed lately (still in ``down_until``) moved to the
    end in their order: later calls do not wait out a dead server's timeout again."""
    return sorted(hops, key=lambda hop: down_until.get(hop, 0.0) > now)


def _unique(hops: list[Hop]) -> list[Hop]:
    seen: set[tuple[str, str, int]] = set()
    out = []
    for hop in hops:
        key = (hop.transport, hop.address, hop.port)
        if key not in seen:
            seen.add(key)
            out.append(hop)
    return out


async def _hops(dns: Lookup, transport: Transport, host: str, port: int) -> list[Hop]:
    with contextlib.suppress(ValueError):
        return [Hop(transport, str(ipaddress.ip_address(host)), port, host)]
    addresses = await dns.a(host)
    return [Hop(transport, address, port, host) for address in addresses]


async def _from_srv(dns: Lookup, transport: Transport, name: str,
                    rng: random.Random) -> list[Hop]:
    hops: list[Hop] = []
    for rec in srv_order(await dns.srv(name), rng):
        hops += await _hops(dns, transport, rec.target.rstrip("."), rec.port)
    return hops


async def locate(uri: URI, dns: Lookup, supported: Sequence[Transport],
                 rng: random.Random | None = None) -> list[Hop]:
    """The hops to try for ``uri``, in order (may be empty: nothing answers for it).
    ``supported`` is the UA's transports in its order of preference."""
    rng = rng or random.Random()
    secure = uri.scheme == "sips"
    decided = plan(uri, supported)
    host = uri.host
    if decided.port is not None:
        transport = decided.transport or ("tls" if secure else supported[0])
        return _unique(await _hops(dns, transport, host, decided.port))
    hops: list[Hop] = []
    if decided.transport is None:
        for transport, replacement in naptr_services(await dns.naptr(host), supported, secure):
            hops += await _from_srv(dns, transport, replacement, rng)
    candidates = [decided.transport] if decided.transport else [
        t for t in supported if t == "tls" or not secure]
    if not hops:  # no usable NAPTR: SRV per transport, in the UA's order (§4.1)
        for transport in candidates:
            hops += await _from_srv(dns, transport, f"{SRV_PREFIX[transport]}.{host}", rng)
    if not hops:  # no SRV either: the name's A records on the default port (§4.2)
        transport = candidates[0] if candidates else "tls"
        hops = await _hops(dns, transport, host, default_port(transport))
    return _unique(hops)
