"""Place one outbound call and run its tree: the one way `autocall call`, the campaign
placer and the web API's dialer worker do it.

:class:`OutboundCall` dials, reports the status callbacks (initiated, ringing,
answered, completed), writes the record at answer and as digits come (``on_progress``),
runs the tree — after answering-machine detection when asked — hangs up, and builds the
record (DESIGN.md §4). A caller that is cancelled mid-call (a signal) asks
:meth:`OutboundCall.hang_up` and :meth:`OutboundCall.record` for what is known.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from autocall.audio.amd import AnsweredBy
from autocall.dialogue.schema import Tree
from autocall.telephony.answer import AmdOptions, Answered, run_answered, shared_pool
from autocall.telephony.call import Call
from autocall.telephony.record import (
    HUNG_UP_EARLY,
    CallFacts,
    CallRecord,
    CallStatus,
    Unfinished,
    UnfinishedCalls,
    build,
)
from autocall.telephony.runner import AudioCache, CallRunner, RunResult
from autocall.telephony.webhooks import StatusCallbacks, WebhookClient

__all__ = ["Dial", "Dialer", "OutboundCall", "Services", "call_record", "informer_tree",
           "report_ringing", "when_ringing"]


class Dialer(Protocol):
    """What placing a call needs of a user agent (``telephony.call.UserAgent``)."""

    async def call(self, target: str, *, caller_id: str | None = None,
                   display_name: str | None = None,
                   headers: dict[str, str] | list[tuple[str, str]] | None = None,
                   ring_timeout: float | None = 30.0, record: str | Path | None = None,
                   late_offer: bool = False) -> Call: ...


@dataclass(frozen=True)
class Dial:
    """One call to place: where, the tree and its variables, and how."""

    uri: str
    tree: Tree
    number: str  # as the tree sees it: {number} and {callee}
    variables: Mapping[str, str] = field(default_factory=dict)
    caller_id: str | None = None
    ring_timeout: float = 30.0
    headers: Mapping[str, str] = field(default_factory=dict)
    record_to: Path | None = None  # the whole call as a stereo WAV
    amd: AmdOptions | None = None
    key: str | None = None  # the status callbacks' call key (default: the SIP Call-ID)


@dataclass
class Services:
    """What every call of a process shares: prompt audio, webhooks, callbacks, limits."""

    audio: AudioCache
    recordings_dir: Path = Path("recordings")
    webhooks: WebhookClient = field(default_factory=WebhookClient)
    callbacks: StatusCallbacks = field(default_factory=lambda: StatusCallbacks(None))
    max_call_seconds: float = 600.0
    speech_model: object | None = None
    unfinished: UnfinishedCalls = field(default_factory=UnfinishedCalls)


def when_ringing(call: Call, notify: Callable[[], None]) -> None:
    """Call ``notify`` once, when the far end first rings (a 180/183; now if it has),
    from the call's own ringing event: so it always precedes "answered", even when the
    200 follows at once."""
    if call.ringing_at is not None:
        notify()
    else:
        call.on_ringing.append(notify)


def report_ringing(call: Call, callbacks: StatusCallbacks, key: str) -> None:
    """Send the "ringing" status callback when the far end first rings."""
    when_ringing(call, lambda: callbacks.send(key, "ringing"))


def retry_outcome(run: RunResult) -> str | None:
    """The retry outcome a dialogue implies (None: the status decides).

    Hanging up before the tree ends without giving any answer is "hung up early" (worth
    another try), even where the rest was messages only (an informer cut off mid-message
    did not deliver it); hanging up after answering something is a completed call.
    """
    return HUNG_UP_EARLY if run.caller_hung_up and run.inputs == 0 else None


def informer_tree(*, say: str | None, lang: str, play: Path | None, repeat: int,
                  confirm: str | None, confirm_timeout: float = 6.0) -> Tree:
    """The tree of a one-off call: the message ``repeat`` times, then an optional confirm."""
    message: dict[str, object] = {"say": say, "language": lang} if say else {"play": str(play)}
    nodes: dict[str, object] = {}
    for i in range(repeat):
        nodes[f"message{i + 1}"] = {**message, "next": f"message{i + 2}" if i + 1 < repeat
                                    else ("confirm" if confirm else None)}
    if confirm:
        nodes["confirm"] = {
            "menu": {"prompt": {"say": f"To confirm, press {_spoken(confirm)}.", "language": lang},
                     "items": {confirm: "confirmed"}, "timeout": confirm_timeout, "retries": 1,
                     "invalid": None, "no_input": None},
            "on_failure": "not_confirmed"}
        nodes["confirmed"] = {"say": {"say": "Thank you.", "language": lang},
                              "next": "confirmed_end"}
        nodes["confirmed_end"] = {"hangup": "confirmed"}
        nodes["not_confirmed"] = {"hangup": "not-confirmed"}
    return Tree.model_validate({"name": "informer", "language": lang, "start": "message1",
                                "nodes": nodes})


def _spoken(key: str) -> str:
    return {"*": "star", "#": "hash"}.get(key, key)


class OutboundCall:
    """One call being placed by :meth:`place`; :meth:`record` says what is known so far."""

    def __init__(self, ua: Dialer, dial: Dial, services: Services, *,
                 on_progress: Callable[[CallRecord], object] | None = None,
                 on_ringing: Callable[[], None] | None = None) -> None:
        self.ua, self.dial, self.services, self.on_progress = ua, dial, services, on_progress
        self.on_ringing = on_ringing
        self.started = datetime.now(UTC)
        self.call: Call | None = None
        self.run: RunResult | None = None
        self.answered: Answered[RunResult] | None = None

    @property
    def key(self) -> str:
        return self.dial.key or (self.call.call_id if self.call is not None else "")

    def callback(self, status: str, **fields: object) -> None:
        self.services.callbacks.send(self.key, status, **fields)

    async def place(self) -> CallRecord:
        """Dial, run the tree if answered, hang up; the call's record."""
        d, live = self.dial, None
        self.call = call = await self.ua.call(
            d.uri, caller_id=d.caller_id, ring_timeout=d.ring_timeout, headers=dict(d.headers),
            record=d.record_to)
        self.callback("initiated", number=d.number)
        report_ringing(call, self.services.callbacks, self.key)
        if self.on_ringing is not None:
            when_ringing(call, self.on_ringing)
        try:
            if await call.wait_answer() is not CallStatus.IN_PROGRESS:
                record = self.record()
                self.callback("completed", call_status=record.status.value,
                              sip_code=record.sip_code)
                return record
            self.callback("answered", number=d.number)
            if self.on_progress is not None:  # written at answer, then as digits come
                live = self.services.unfinished.add(
                    Unfinished(lambda: self.record(unfinished=True), self.on_progress))
            if d.amd is None:
                self.run = await self._dialogue(None, live)
            else:  # the tree's machine: wins over the campaign's or the CLI's on_machine
                self.answered = await run_answered(
                    call, shared_pool(), d.amd.for_tree(d.tree),
                    lambda who: self._dialogue(who, live))
                self.run = self.answered.run
            await self.hang_up(5.0)
            record = self.record()
            self.callback("completed", call_status=record.status.value,
                          outcome=record.outcome or record.dialogue_outcome,
                          answered_by=record.answered_by)
            return record
        finally:
            if live is not None:
                self.services.unfinished.discard(live)
            await self.hang_up(5.0)

    async def _dialogue(self, answered_by: AnsweredBy | None, live: Unfinished | None
                        ) -> RunResult:
        assert self.call is not None
        d, s = self.dial, self.services
        facts = {"number": d.number, "callee": d.number, "caller": d.caller_id or "",
                 "call_id": self.call.call_id}
        runner = CallRunner(self.call, d.tree, {**d.variables, **facts}, audio=s.audio,
                            recordings_dir=s.recordings_dir, webhooks=s.webhooks,
                            call_facts=facts, max_seconds=s.max_call_seconds,
                            speech_model=s.speech_model, answered_by=answered_by)
        if live is not None:
            live.dialogue = runner.engine
        return await runner.run()

    async def hang_up(self, timeout: float) -> None:
        """BYE (or CANCEL while ringing) and wait for the end, at most ``timeout`` s."""
        if self.call is None:
            return
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(self.call.hangup(), timeout)
            await self.call.wait_ended(timeout)

    def record(self, error: str | None = None, unfinished: bool = False) -> CallRecord:
        """The record as things stand (``unfinished`` while the call goes on)."""
        return call_record(self.call, self.run, self.answered, started=self.started,
                           error=error, unfinished=unfinished, number=self.dial.uri,
                           caller_id=self.dial.caller_id)


def call_record(call: CallFacts | None, run: RunResult | None,
                answered: Answered[RunResult] | None, *, started: datetime,
                error: str | None = None, unfinished: bool = False, number: str | None = None,
                caller_id: str | None = None) -> CallRecord:
    """:func:`record.build` plus what an outbound call decides: the retry outcome of a
    callee gone early, and AMD's verdict, details and outcome (machine, left-message…)."""
    record = build(call, run, started=started, error=error, unfinished=unfinished,
                   number=number, caller_id=caller_id)
    if run is not None and not run.failed and not unfinished:
        record = replace(record, outcome=retry_outcome(run))
    if answered is None:
        return record
    if run is None and not unfinished:  # AMD hung up or left no dialogue: answered
        record = replace(record, status=CallStatus.COMPLETED, sip_code=record.sip_code or 200,
                         answered_at=record.answered_at or started)
    if answered.outcome:
        outcome: str | None = answered.outcome
    elif answered.hung_up:
        outcome = HUNG_UP_EARLY  # gone before we knew who it was: worth another try
    else:
        outcome = record.outcome
    return replace(record, variables={**record.variables, "amd": answered.result.to_json()},
                   answered_by=answered.result.answered_by, outcome=outcome)
