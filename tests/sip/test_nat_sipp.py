"""A configured public address (behind NAT, ``AUTOCALL_ADVERTISED_HOST``): the agent
binds 127.0.0.1 but names the public address in Via sent-by, Contact and SDP c=, and
still gets its answers (rport, RFC 3581). Real Kamailio and SIPp on 127.0.0.1."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest

from autocall.sip.message import Address
from autocall.sip.transaction import Timers
from autocall.telephony.call import CallStatus, UserAgent
from tests.peers import SCENARIOS, Kamailio, Sipp

pytestmark = [pytest.mark.peers, pytest.mark.timeout(60)]

_ports = itertools.count(19680, 5)  # ours: 19680-19699
FAST = Timers(t1=0.1, t2=0.4, t4=0.5, timer_d=0.5)
PUBLIC = ("203.0.113.7", 5099)  # TEST-NET-3: nobody answers there, so answers must
# come back by rport to where we really are
USERS = {"alice": "s3cret-Pa55"}


async def test_kamailio_registers_our_public_address() -> None:
    port = next(_ports)
    with Kamailio(port=port, users=USERS):
        ua = await UserAgent.start(user="alice", password=USERS["alice"], domain="127.0.0.1",
                                   proxy=f"sip:127.0.0.1:{port}", register=True, timers=FAST,
                                   bind_port=port + 3, advertise_host=PUBLIC[0],
                                   advertise_port=PUBLIC[1])
        try:
            assert await ua.wait_registered(5), ua.sip.register_error
            hosts = [Address.parse(b).uri.hostport for b in ua.sip.bindings]
            assert hosts == [PUBLIC], ua.sip.bindings
        finally:
            await ua.close()


async def test_a_call_names_the_public_address_in_via_contact_and_sdp(tmp_path: Path) -> None:
    port = next(_ports)
    peer = Sipp(SCENARIOS / "uas_answer.xml", port=port, media_port=port + 2, cwd=tmp_path,
                extra=["-trace_msg"])
    with peer:
        ua = await UserAgent.start(bind_port=port + 3, timers=FAST, advertise_host=PUBLIC[0],
                                   advertise_port=PUBLIC[1])
        try:
            call = await ua.call(f"sip:sipp@127.0.0.1:{port}", ring_timeout=10)
            assert await call.wait_answer(10) is CallStatus.IN_PROGRESS
            await call.hangup()
            assert await call.wait_ended(5) is CallStatus.COMPLETED
            assert await asyncio.to_thread(peer.wait, 10) == 0, peer.errors()
        finally:
            await ua.close()
    trace = "".join(p.read_text(errors="replace") for p in tmp_path.glob("*messages*"))
    invite = trace[trace.index("INVITE sip:"):]
    invite = invite[:invite.index("------")]
    assert "Via: SIP/2.0/UDP 203.0.113.7:5099;" in invite
    assert "Contact: <sip:autocall@203.0.113.7:5099>" in invite
    assert "c=IN IP4 203.0.113.7" in invite
    assert f"127.0.0.1:{port + 3}" not in invite  # the bind address leaks nowhere
    assert "IN IP4 127.0.0.1" not in invite
