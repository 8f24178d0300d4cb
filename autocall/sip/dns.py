"""The DNS side of server location: NAPTR, SRV and A questions over dnspython's asyncio
resolver, each answer cached for its own TTL (RFC 1035 §3.2.1) and each "no such
record" for the zone's negative TTL (RFC 2308 §5). Nothing here blocks the event loop.

Without configured name servers, A records come from the system (``getaddrinfo`` in a
worker thread) so that /etc/hosts keeps working; NAPTR and SRV use /etc/resolv.conf.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable, Sequence

import dns.asyncresolver
import dns.exception
import dns.message
import dns.rdatatype
import dns.resolver
from dns.rdtypes.IN.A import A
from dns.rdtypes.IN.NAPTR import NAPTR
from dns.rdtypes.IN.SRV import SRV

from autocall.sip.locate import Naptr, Srv

__all__ = ["DnsLookup"]

log = logging.getLogger(__name__)

NEGATIVE_TTL = 30.0  # when a negative answer carries no SOA to say how long (RFC 2308 §5)
SYSTEM_TTL = 60.0  # getaddrinfo tells no TTL
Record = Naptr | Srv | str


def _negative_ttl(response: dns.message.Message | None) -> float:
    if response is not None:
        for rrset in response.authority:
            if rrset.rdtype == dns.rdatatype.SOA:
                return float(min(rrset.ttl, rrset[0].minimum))
    return NEGATIVE_TTL


class DnsLookup:
    """:class:`autocall.sip.locate.Lookup` with a TTL cache."""

    def __init__(self, nameservers: Sequence[tuple[str, int]] = (), timeout: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.nameservers = list(nameservers)
        self.clock = clock
        self._cache: dict[tuple[str, str], tuple[list[Record], float]] = {}
        self._resolver: dns.asyncresolver.Resolver | None = None
        self._timeout = timeout

    def _dns(self) -> dns.asyncresolver.Resolver:
        if self._resolver is None:
            configure = not self.nameservers
            try:
                resolver = dns.asyncresolver.Resolver(configure=configure)
            except dns.resolver.NoResolverConfiguration:
                resolver = dns.asyncresolver.Resolver(configure=False)
            if self.nameservers:
                resolver.nameservers = [host for host, _ in self.nameservers]
                resolver.port = self.nameservers[0][1]
            resolver.lifetime = self._timeout
            self._resolver = resolver
        return self._resolver

    async def _ask(self, name: str, kind: str) -> list[Record]:
        key = (name.lower(), kind)
        hit = self._cache.get(key)
        if hit is not None and hit[1] > self.clock():
            return hit[0]
        try:
            answer = await self._dns().resolve(name, kind, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer) as exc:
            response = (exc.response() if isinstance(exc, dns.resolver.NoAnswer)
                        else next(iter(exc.responses().values()), None))
            self._cache[key] = ([], self.clock() + _negative_ttl(response))
            return []
        except (dns.exception.Timeout, dns.resolver.NoNameservers) as exc:
            log.warning("DNS %s %s: %s", kind, name, exc)
            return []  # not cached: the next call asks again
        records = [r for r in map(self._record, answer) if r is not None]
        ttl = answer.rrset.ttl if answer.rrset is not None else 0
        self._cache[key] = (records, self.clock() + ttl)
        return records

    @staticmethod
    def _record(rdata: object) -> Record | None:
        if isinstance(rdata, NAPTR):
            return Naptr(rdata.order, rdata.preference, rdata.flags.decode(),
                         rdata.service.decode(),
                         rdata.replacement.to_text(omit_final_dot=True))
        if isinstance(rdata, SRV):
            return Srv(rdata.priority, rdata.weight, rdata.port,
                       rdata.target.to_text(omit_final_dot=True))
        if isinstance(rdata, A):
            return str(rdata.address)
        return None  # a CNAME in the answer section, for instance

    async def naptr(self, name: str) -> list[Naptr]:
        return [r for r in await self._ask(name, "NAPTR") if isinstance(r, Naptr)]

    async def srv(self, name: str) -> list[Srv]:
        return [r for r in await self._ask(name, "SRV") if isinstance(r, Srv)]

    async def a(self, name: str) -> list[str]:
        if self.nameservers:
            return [r for r in await self._ask(name, "A") if isinstance(r, str)]
        key = (name.lower(), "system")
        hit = self._cache.get(key)
        if hit is not None and hit[1] > self.clock():
            return [r for r in hit[0] if isinstance(r, str)]
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                name, None, family=socket.AF_INET, type=socket.SOCK_DGRAM)
        except OSError as exc:
            log.warning("DNS A %s: %s", name, exc)
            return []
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        self._cache[key] = (list(addresses), self.clock() + SYSTEM_TTL)
        return addresses
