"""The transport side's resolver: names are looked up off the event loop and cached."""

from __future__ import annotations

import asyncio

from autocall.sip.dialog import Dialog
from autocall.sip.invite import InviteUsage, StartRequest, Transmit
from autocall.sip.message import URI, Address, Headers, Request, Response
from autocall.sip.transport import Resolver, Transport
from autocall.sip.ua import InviteSession, SipUA, UAConfig


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


class _Recorder(Transport):
    """A transport that keeps what it was asked to send."""

    def __init__(self) -> None:
        super().__init__(lambda rx: None, ("127.0.0.1", 5060))
        self.sent: list[tuple[Request | Response, tuple[str, int]]] = []

    def send(self, message: Request | Response, dest: tuple[str, int]) -> None:
        self.sent.append((message, dest))

    def close(self) -> None:
        pass


async def test_sends_to_a_next_hop_by_name_wait_for_the_lookup_and_keep_their_order() -> None:
    ua = SipUA(UAConfig())
    recorder = _Recorder()
    ua.transport = recorder
    invite = Request("INVITE", "sip:b@localhost:5070", Headers([
        ("Via", ua.via()), ("From", "<sip:a@x>;tag=l"), ("To", "<sip:b@localhost>"),
        ("Call-ID", "c1"), ("CSeq", "1 INVITE")]))
    session = InviteSession(ua, InviteUsage(ua, "uac", invite))
    dialog = Dialog("c1", "l", "r", Address.parse("<sip:a@x>;tag=l"),
                    Address.parse("<sip:b@localhost>;tag=r"), URI.parse("sip:b@localhost:5070"),
                    local_seq=1)
    ack, bye = dialog.ack(1, ua.via()), dialog.new_request("BYE", ua.via())
    try:
        ua.execute(session, [Transmit(ack, dialog), StartRequest(bye, dialog)])
        assert recorder.sent == []  # nothing blocked the loop on a lookup
        for _ in range(100):
            if len(recorder.sent) >= 2:
                break
            await asyncio.sleep(0.01)
        assert [(m, d) for m, d in recorder.sent] == [(ack, ("127.0.0.1", 5070)),
                                                       (bye, ("127.0.0.1", 5070))]
    finally:
        await ua.close()
