"""The "ringing" status callback comes from the call's ringing event, never from polling.

A 200 right behind the 180 was once answered between two looks of a 50 ms watcher and
its "ringing" callback lost; an event cannot miss it. Virtual phones on loopback.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from autocall.telephony.call import CallStatus, UserAgent
from autocall.telephony.outbound import report_ringing
from autocall.telephony.virtual import Behaviour, PhoneScript, VirtualPhones
from autocall.telephony.webhooks import StatusCallbacks

pytestmark = pytest.mark.peers


class _Seen(StatusCallbacks):
    """Status callbacks kept in a list instead of POSTed."""

    def __init__(self) -> None:
        super().__init__(None)
        self.seen: list[tuple[str, str]] = []

    def send(self, call_id: str, status: str, **fields: Any) -> None:
        self.seen.append((call_id, status))


BOOK = {
    "+12025550201": PhoneScript(ring_seconds=0.0),  # 200 in the same breath as the 180
    "+12025550202": PhoneScript(Behaviour.BUSY, ring_seconds=0.0),  # no 180 at all
    "+12025550203": PhoneScript(Behaviour.NO_ANSWER),  # rings until cancelled
}


async def test_ringing_is_reported_before_the_answer_even_when_200_follows_at_once() -> None:
    async with VirtualPhones(BOOK) as phones:
        ua = await UserAgent.start(bind_host="127.0.0.1")
        try:
            for _ in range(5):
                callbacks = _Seen()
                call = await ua.call(phones.uri("+12025550201"))
                report_ringing(call, callbacks, "k")
                assert await call.wait_answer(10) is CallStatus.IN_PROGRESS
                assert call.ringing_at is not None
                assert callbacks.seen == [("k", "ringing")]  # already there, exactly once
                await call.hangup()
                assert callbacks.seen == [("k", "ringing")]
        finally:
            await ua.close()


async def test_no_180_no_ringing_callback() -> None:
    async with VirtualPhones(BOOK) as phones:
        ua = await UserAgent.start(bind_host="127.0.0.1")
        try:
            callbacks = _Seen()
            call = await ua.call(phones.uri("+12025550202"))
            report_ringing(call, callbacks, "k")
            assert await call.wait_answer(10) is CallStatus.BUSY
            assert callbacks.seen == []
        finally:
            await ua.close()


async def test_a_call_that_already_rang_is_reported_at_once() -> None:
    async with VirtualPhones(BOOK) as phones:
        ua = await UserAgent.start(bind_host="127.0.0.1")
        try:
            rang = asyncio.Event()
            call = await ua.call(phones.uri("+12025550203"))
            call.on_ringing.append(rang.set)
            await asyncio.wait_for(rang.wait(), 10)
            callbacks = _Seen()
            report_ringing(call, callbacks, "late")
            assert callbacks.seen == [("late", "ringing")]
            await call.hangup()
            assert await call.wait_ended(10) is CallStatus.CANCELED
            assert callbacks.seen == [("late", "ringing")]
        finally:
            await ua.close()
