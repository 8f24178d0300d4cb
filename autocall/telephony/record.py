"""THE call record (DESIGN.md §4): one shape for a campaign attempt, an informer call
and an inbound call alike.

No heavy imports (no sip, no media, no numpy): the store, the campaign model, the web
and reports read it without loading a user agent. :func:`build` is the one place a call
and its dialogue become a record. ``outcome`` is the campaign's retry outcome (a
``campaign.model.Outcome`` value) when the call decides it (hung up early, a machine),
``dialogue_outcome`` is what the tree ended with (``opt-out``, ``confirmed``…).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol

__all__ = ["HUNG_UP_EARLY", "OPT_OUT", "CallFacts", "CallRecord", "CallStatus", "DialogueFacts",
           "StoredRecord", "Unfinished", "UnfinishedCalls", "build"]

# The opt-out's one spelling: the trees' outcome and the campaigns' retry outcome.
OPT_OUT = "opt-out"
# The retry outcome of a callee gone before giving any answer (the call decides it).
HUNG_UP_EARLY = "hung-up-early"


class CallStatus(StrEnum):
    """DESIGN.md §4 call status."""

    QUEUED = "queued"
    INITIATED = "initiated"
    RINGING = "ringing"
    IN_PROGRESS = "in-progress"
    COMPLETED = "completed"
    BUSY = "busy"
    NO_ANSWER = "no-answer"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def final(self) -> bool:
        return self in _FINAL


_FINAL = {CallStatus.COMPLETED, CallStatus.BUSY, CallStatus.NO_ANSWER, CallStatus.FAILED,
          CallStatus.CANCELED}


class CallFacts(Protocol):
    """What the record reads from a call (``telephony.call.Call`` has it)."""

    @property
    def status(self) -> CallStatus: ...
    @property
    def sip_code(self) -> int | None: ...
    @property
    def q850_cause(self) -> int | None: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def answered_at(self) -> datetime | None: ...
    @property
    def ended_at(self) -> datetime | None: ...
    @property
    def ended_by(self) -> str | None: ...
    @property
    def call_id(self) -> str: ...


class LiveDialogue(Protocol):
    """A dialogue still running (``dialogue.engine.Engine``): what it has so far."""

    @property
    def digits(self) -> str: ...
    @property
    def path(self) -> Sequence[str]: ...
    @property
    def variables(self) -> Mapping[str, object]: ...


class DialogueFacts(LiveDialogue, Protocol):
    """What the record reads from a dialogue's run (``telephony.runner.RunResult``)."""

    @property
    def outcome(self) -> str: ...
    @property
    def recording(self) -> str | None: ...
    @property
    def error(self) -> str | None: ...
    @property
    def failed(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One call, as stored and reported; ``unfinished`` while the call is still going
    (written at answer) or when a crash cut it."""

    status: CallStatus
    sip_code: int | None = None
    q850: int | None = None
    started_at: datetime | None = None
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    digits: str = ""
    path: Sequence[str] = ()  # a tuple as built, a list as read back
    variables: Mapping[str, object] = field(default_factory=dict)
    recording: str | None = None
    dialogue_outcome: str | None = None
    answered_by: str | None = None  # human, machine, fax, unknown (AMD)
    outcome: str | None = None  # the retry outcome, when the call decides it
    error: str | None = None
    reason: str | None = None  # the final response's reason phrase, or ours
    ended_by: str | None = None  # "local" when our side produced the final status
    # who and where
    campaign: str | None = None
    contact_id: int | None = None
    attempt_no: int | None = None
    number: str | None = None
    caller_id: str | None = None
    call_id: str | None = None
    direction: str = "outbound"
    source: str | None = None
    tree: str | None = None
    node: str | None = None  # the process that wrote it (closes it if a crash cut it)
    unfinished: bool = False

    @property
    def duration(self) -> float | None:
        """Seconds from the start (INVITE) to the end."""
        return _seconds(self.started_at, self.ended_at)

    @property
    def billable(self) -> float | None:
        """Seconds from the answer to the end; None if never answered."""
        return _seconds(self.answered_at, self.ended_at)

    @property
    def opted_out(self) -> bool:
        return self.dialogue_outcome == OPT_OUT

    def as_json(self) -> dict[str, object]:
        """The fields for a JSON line or ``--json`` (times as ISO 8601, seconds as floats)."""
        out: dict[str, object] = asdict(self)
        for name in ("started_at", "answered_at", "ended_at"):
            when = out[name]
            out[name] = when.isoformat() if isinstance(when, datetime) else None
        out.update(status=self.status.value, path=list(self.path),
                   variables=dict(self.variables), duration=self.duration,
                   billable=self.billable)
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredRecord(CallRecord):
    """A record as a store reads it back: with its row's id, and the seconds as stored (a
    row moved from an older store keeps its own)."""

    id: int
    duration: float | None = None
    billable: float | None = None


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return None if start is None or end is None else (end - start).total_seconds()


def build(call: CallFacts | None, run: DialogueFacts | None, *, started: datetime,
          status: CallStatus | None = None, error: str | None = None,
          unfinished: bool = False, number: str | None = None, caller_id: str | None = None,
          direction: str = "outbound", source: str | None = None, tree: str | None = None,
          campaign: str | None = None, contact_id: int | None = None,
          attempt_no: int | None = None, node: str | None = None) -> CallRecord:
    """The record of ``call`` (None: it never left) and its dialogue (None: none ran).

    A dialogue that could not be delivered (a prompt could not play) makes the call
    failed, so a campaign retries it; a dialogue that ran makes it completed; ``status``
    overrides the call's own (a call cut by a drain is canceled).
    """
    c, r = call, run
    if r is not None and r.failed:
        status = CallStatus.FAILED
    elif status is None and r is not None and not unfinished:
        status = CallStatus.COMPLETED
    elif status is None and c is not None:
        status = c.status
    answered = c.answered_at if c is not None else None
    ended = c.ended_at if c is not None else None
    return CallRecord(
        status=status or CallStatus.FAILED, started_at=started,
        answered_at=answered or (started if r is not None else None),
        ended_at=None if unfinished else ended or datetime.now(UTC),
        sip_code=(c.sip_code or (200 if r else None)) if c is not None else None,
        q850=c.q850_cause if c is not None else None,
        reason=c.reason if c is not None else None,
        ended_by=c.ended_by if c is not None else None,
        call_id=c.call_id if c is not None else None,
        digits=r.digits if r else "", path=tuple(r.path) if r else (),
        variables=dict(r.variables) if r else {}, recording=r.recording if r else None,
        dialogue_outcome=r.outcome if r else None,
        error=error or (r.error if r else None), unfinished=unfinished, number=number,
        caller_id=caller_id, direction=direction, source=source, tree=tree,
        campaign=campaign, contact_id=contact_id, attempt_no=attempt_no, node=node)


class Unfinished:
    """One answered call's record while it goes on: written at answer and again when its
    digits or path change, so a crash leaves it (unfinished), never nothing."""

    def __init__(self, at_answer: Callable[[], CallRecord],
                 write: Callable[[CallRecord], object]) -> None:
        """``at_answer`` builds the record as the answer left it (``build(...,
        unfinished=True)``); the dialogue's digits, path and variables go on top."""
        self.at_answer, self.write = at_answer, write
        self.dialogue: LiveDialogue | None = None
        self._seen: tuple[str, tuple[str, ...]] | None = None

    def report(self) -> None:
        """Write now if anything changed since the last write (the first always does)."""
        d = self.dialogue
        seen = (d.digits, tuple(d.path)) if d is not None else ("", ())
        if seen == self._seen:
            return
        self._seen = seen
        record = self.at_answer()
        if d is not None:
            record = replace(record, digits=seen[0], path=seen[1], variables=dict(d.variables))
        self.write(record)


# How often calls in progress are looked at; a changed one is written (one timer for all).
UNFINISHED_EVERY = 1.0


class UnfinishedCalls:
    """The calls in progress of one process, looked at every ``UNFINISHED_EVERY``."""

    def __init__(self, every: float = UNFINISHED_EVERY) -> None:
        self.every = every
        self._calls: set[Unfinished] = set()
        self._task: asyncio.Task[None] | None = None

    def add(self, call: Unfinished) -> Unfinished:
        """Write ``call`` at once (its answer) and then whenever it changes."""
        with contextlib.suppress(Exception):  # a store that fails must not fail the call
            call.report()
        self._calls.add(call)
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._watch())
        return call

    def discard(self, call: Unfinished) -> None:
        self._calls.discard(call)

    async def _watch(self) -> None:
        while self._calls:
            await asyncio.sleep(self.every)
            for call in list(self._calls):
                with contextlib.suppress(Exception):  # the end record comes all the same
                    call.report()
