"""A scripted far end for dialer tests that are not about SIP.

It plays the callee side of the :class:`~autocall.campaign.dialer.CallPlacer` contract:
each number has a script of what happens on its 1st, 2nd… call (answer with digits,
busy, no answer, decline, invalid, hang up early, opt out). Every call is appended to a
log file (fsync'd) *when it is placed*, so a test can count real dials even after the
dialer process was SIGKILLed.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from autocall.campaign.dialer import CallRequest
from autocall.campaign.model import CallStatus, Outcome
from autocall.telephony.record import CallRecord


def _result(step: str, start: datetime, talk: float) -> CallRecord:
    kind, _, arg = step.partition(":")
    end = start + timedelta(seconds=talk)
    if kind == "answer":
        return CallRecord(CallStatus.COMPLETED, 200, 16, start, start + timedelta(seconds=talk / 2),
                          end, digits=arg, path=("greeting", "menu", f"choice-{arg or 'none'}"),
                          variables={"choice": arg} if arg else {})
    if kind == "optout":
        return CallRecord(CallStatus.COMPLETED, 200, 16, start, start, end, digits="9",
                          path=("greeting", "menu", "opt-out"), dialogue_outcome="opt-out")
    if kind == "early":
        return CallRecord(CallStatus.COMPLETED, 200, 16, start, start, end,
                          path=("greeting",), outcome=Outcome.HUNG_UP_EARLY)
    table = {
        "busy": (CallStatus.BUSY, 486, 17),
        "noanswer": (CallStatus.NO_ANSWER, 487, 19),
        "decline": (CallStatus.FAILED, 603, 21),
        "invalid": (CallStatus.FAILED, 404, 1),
        "unreachable": (CallStatus.FAILED, 503, 34),
        "fail": (CallStatus.FAILED, 500, 41),
    }
    status, code, cause = table[kind]
    return CallRecord(status, code, cause, start, None, end)


class ScriptedFarEnd:
    """Callees that behave as scripted; ``default`` for numbers without a script."""

    def __init__(self, scripts: Mapping[str, Sequence[str]] | None = None, *,
                 default: str = "answer:1", talk: float = 0.02,
                 log: str | Path | None = None, by_attempt: bool = False,
                 spans: str | Path | None = None) -> None:
        self.scripts = {k: list(v) for k, v in (scripts or {}).items()}
        self.default = default
        self.talk = talk
        self.log = Path(log) if log else None
        self.calls: dict[str, int] = defaultdict(int)
        self.placed: list[CallRequest] = []
        self.active = 0
        self.max_active = 0
        # several processes (--workers): step by the attempt number, not by this
        # process's own count, and log each call's start and end for a concurrency count
        self.by_attempt = by_attempt
        self.spans = Path(spans) if spans else None

    def _write(self, line: str, to: Path | None = None, *, span: bool = False) -> None:
        path = to if span else self.log
        if path is None:
            return
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    async def place(self, request: CallRequest) -> CallRecord:
        self._write(f"DIAL {request.attempt_id} {request.contact_id} {request.attempt_no} "
                    f"{request.number}")
        self.placed.append(request)
        n = request.attempt_no - 1 if self.by_attempt else self.calls[request.number]
        self.calls[request.number] += 1
        script = self.scripts.get(request.number, [])
        step = script[n] if n < len(script) else (script[-1] if script else self.default)
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        start = datetime.now(UTC)
        self._write(f"+ {time.time():.6f} {request.attempt_id}", self.spans, span=True)
        try:
            await asyncio.sleep(self.talk)
        finally:
            self.active -= 1
            self._write(f"- {time.time():.6f} {request.attempt_id}", self.spans, span=True)
        return _result(step, start, self.talk)


def answer_all(settings: object) -> ScriptedFarEnd:
    """``--placer farend:answer_all`` for CLI tests: every callee answers and presses 1."""
    return ScriptedFarEnd(talk=0.01)


FAREND_ENV = "AUTOCALL_TEST_FAREND"


def from_env(settings: object) -> ScriptedFarEnd:
    """``--placer farend:from_env`` for ``campaign run --workers N`` tests: every worker
    process builds the same far end from JSON in ``AUTOCALL_TEST_FAREND`` (``scripts``,
    ``talk``, ``log``, ``spans``), stepping each number's script by attempt number."""
    conf = json.loads(os.environ[FAREND_ENV])
    return ScriptedFarEnd(conf.get("scripts", {}), talk=float(conf.get("talk", 0.02)),
                          log=conf.get("log"), spans=conf.get("spans"), by_attempt=True)


def max_concurrent(spans: Path) -> int:
    """The most calls up at once, from a ``spans`` log (every process's calls)."""
    events = []
    for line in spans.read_text().splitlines():
        sign, at, _ = line.split()
        events.append((float(at), 1 if sign == "+" else -1))
    # an end before a start at the same instant: a channel freed and reused is not two
    events.sort(key=lambda e: (e[0], e[1]))
    most = up = 0
    for _, step in events:
        up += step
        most = max(most, up)
    return most
