"""The transport side's resolver: names are looked up off the event loop and cached."""

from __future__ import annotations

import asyncio

from autocall.sip.transport import Resolver


def test_addresses_are_known_and_names_wait_for_a_lookup() -> None:
    resolver = Resolver()
    assert resolver.cached("10.0.0.1") == "10.0.0.1" and resolver.cached("::1") == "::1"
    assert resolver.cached("localhost") is None  # never a blocking lookup here


async def test_a_lookup_runs_off_the_loop_and_is_cached_until_its_ttl() -> None:
    resolver = Resolver(ttl=0.2)
    lookup = asyncio.ensure_future(resolver.resolve("localhost"))
    assert not lookup.done()  # the loop went on while getaddrinfo ran
    assert await lookup == "127.0.0.1" and resolver.cached("localhost") == "127.0.0.1"
    await asyncio.sleep(0.25)
    assert resolver.cached("localhost") is None
