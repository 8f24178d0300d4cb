"""`--placer MODULE:FACTORY` takes three shapes (issue 14: typed, not probed with getattr):
a placer, an awaitable of one, or an async context manager yielding one; a placer with
``aclose`` is closed when the run ends, the context manager is exited."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from autocall.campaign.dialer import CallRequest
from autocall.cli.campaign import _enter_placer
from autocall.config import Settings
from autocall.telephony.record import CallRecord, CallStatus


class Placer:
    def __init__(self) -> None:
        self.closed = False

    async def place(self, request: CallRequest) -> CallRecord:
        return CallRecord(CallStatus.COMPLETED)

    async def aclose(self) -> None:
        self.closed = True


class Plain:  # no aclose: nothing to close
    async def place(self, request: CallRequest) -> CallRecord:
        return CallRecord(CallStatus.COMPLETED)


def _enter(factory: object) -> tuple[object, list[str]]:
    """The placer the factory gives, and what happened by the time the run's stack closed."""
    seen: list[str] = []

    async def run() -> object:
        async with contextlib.AsyncExitStack() as stack:
            placer = await _enter_placer(stack, factory, "sqlite://")  # type: ignore[arg-type]
            seen.append("entered")
        seen.append("closed")
        return placer

    return asyncio.run(run()), seen


def test_a_placer_with_aclose_is_closed_when_the_run_ends() -> None:
    made = Placer()
    placer, _ = _enter(lambda settings: made)
    assert placer is made and made.closed


def test_an_awaitable_of_a_placer_is_awaited_and_closed() -> None:
    made = Placer()

    async def factory(settings: Settings) -> Placer:
        return made

    placer, _ = _enter(factory)
    assert placer is made and made.closed


def test_a_placer_without_aclose_is_used_as_it_is() -> None:
    made = Plain()
    placer, seen = _enter(lambda settings: made)
    assert placer is made and seen == ["entered", "closed"]


def test_an_async_context_manager_is_entered_and_exited() -> None:
    made = Placer()
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def factory(settings: Settings) -> AsyncIterator[Placer]:
        events.append("start")
        yield made
        events.append("stop")

    placer, seen = _enter(factory)
    assert placer is made and events == ["start", "stop"] and seen == ["entered", "closed"]
    assert not made.closed  # its context manager owns its end, aclose is not called too
