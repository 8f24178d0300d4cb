"""Kamailio as registrar and proxy: digest auth (401 REGISTER, 407 INVITE), Record-Route."""

from __future__ import annotations

import asyncio
import itertools
import logging

import pytest

from autocall.sip.transaction import Timers
from autocall.telephony.call import CallStatus, UserAgent
from tests.peers import SCENARIOS, Kamailio, Sipp

pytestmark = [pytest.mark.peers, pytest.mark.timeout(60)]

_ports = itertools.count(20300, 4)
FAST = Timers(t1=0.1, t2=0.4, t4=0.5, timer_d=0.5)
USERS = {"alice": "s3cret-Pa55"}


async def test_register_answers_401_and_refreshes() -> None:
    port = next(_ports)
    with Kamailio(port=port, users=USERS) as kam:
        ua = await UserAgent.start(user="alice", password=USERS["alice"], domain="127.0.0.1",
                                   proxy=f"sip:127.0.0.1:{port}", register=True,
                                   register_expires=2, timers=FAST)
        try:
            assert await ua.wait_registered(5), ua.sip.register_error
            first_cseq = ua.sip._reg_cseq
            ua.sip.registered.clear()
            assert await ua.wait_registered(5)  # refreshed before the 2 s expiry
            assert ua.sip._reg_cseq > first_cseq
        finally:
            await ua.close()
        assert USERS["alice"] not in kam.output()


async def test_wrong_password_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    port = next(_ports)
    with Kamailio(port=port, users=USERS):
        ua = await UserAgent.start(user="alice", password="wrong", domain="127.0.0.1",
                                   proxy=f"sip:127.0.0.1:{port}", register=True, timers=FAST)
        try:
            assert not await ua.wait_registered(1.5)
            assert ua.sip.register_error is not None and "401" in ua.sip.register_error
        finally:
            await ua.close()
    assert "REGISTER failed" in caplog.text and "wrong" not in caplog.text  # no secrets


async def test_call_through_proxy_with_407_and_record_route() -> None:
    kport, sport = next(_ports), next(_ports)
    with Kamailio(port=kport, users=USERS), \
            Sipp(SCENARIOS / "uas_answer.xml", port=sport, media_port=sport + 2) as far:
        ua = await UserAgent.start(user="alice", password=USERS["alice"], domain="127.0.0.1",
                                   proxy=f"sip:127.0.0.1:{kport}", timers=FAST)
        try:
            call = await ua.call(f"sip:sipp@127.0.0.1:{sport}", caller_id="alice",
                                 ring_timeout=10)
            assert await call.wait_answer(10) is CallStatus.IN_PROGRESS, call
            invite = call.session.usage.invite
            assert invite.headers.get("Proxy-Authorization") is not None  # answered the 407
            dialog = call.session.usage.dialog
            assert dialog is not None and any(f":{kport}" in r for r in dialog.route_set)
            await call.hangup()
            assert await call.wait_ended(5) is CallStatus.COMPLETED
            assert far.wait(10) == 0, far.errors()  # our BYE reached SIPp via Kamailio
        finally:
            await ua.close()


async def test_options_to_proxy() -> None:
    port = next(_ports)
    with Kamailio(port=port, users=USERS):
        ua = await UserAgent.start(timers=FAST)
        try:
            code, _reason, elapsed = await ua.options(f"sip:127.0.0.1:{port}")
            assert code == 200 and 0 <= elapsed < 2
        finally:
            await ua.close()


async def test_inbound_call_through_proxy_to_registered_agent() -> None:
    kport, sport = next(_ports), next(_ports)
    with Kamailio(port=kport, users=USERS):
        ua = await UserAgent.start(user="alice", password=USERS["alice"], domain="127.0.0.1",
                                   proxy=f"sip:127.0.0.1:{kport}", register=True, timers=FAST)
        try:
            assert await ua.wait_registered(5), ua.sip.register_error
            with Sipp(SCENARIOS / "uac_call.xml", port=sport, media_port=sport + 2,
                      remote=f"127.0.0.1:{kport}", service="alice") as caller:
                call = await asyncio.wait_for(anext(aiter(ua.incoming())), 5)
                await call.answer()
                assert call.session.usage.dialog is not None
                assert any(f":{kport}" in r for r in call.session.usage.dialog.route_set)
                assert await call.wait_ended(10) is CallStatus.COMPLETED
                assert [d.digit for d in call.digits] == ["7", "9"]
                assert caller.wait(10) == 0, caller.errors()
        finally:
            await ua.close()


async def test_call_with_wrong_password_fails_with_407() -> None:
    kport = next(_ports)
    with Kamailio(port=kport, users=USERS):
        ua = await UserAgent.start(user="alice", password="not-it", domain="127.0.0.1",
                                   proxy=f"sip:127.0.0.1:{kport}", timers=FAST)
        try:
            call = await ua.call("sip:sipp@127.0.0.1:5999", caller_id="alice", ring_timeout=10)
            assert await call.wait_ended(10) is CallStatus.FAILED
            assert call.sip_code == 407  # answered once, challenged again: give up, no loop
            assert call.session.usage.invite.cseq.number == 2
        finally:
            await ua.close()


async def test_ring_timeout_cancel_through_proxy_twice() -> None:
    kport, sport = next(_ports), next(_ports)
    with Kamailio(port=kport, users=USERS), \
            Sipp(SCENARIOS / "uas_ring.xml", port=sport, media_port=sport + 2, calls=2) as far:
        ua = await UserAgent.start(user="alice", password=USERS["alice"], domain="127.0.0.1",
                                   proxy=f"sip:127.0.0.1:{kport}", timers=FAST)
        try:
            for _ in range(2):  # the second call must go out like the first
                call = await ua.call(f"sip:sipp@127.0.0.1:{sport}", ring_timeout=0.8)
                assert await call.wait_ended(10) is CallStatus.NO_ANSWER
                assert call.sip_code == 487
            assert far.wait(10) == 0, far.errors()
        finally:
            await ua.close()
