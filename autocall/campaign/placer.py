"""The dialer's real ``CallPlacer``: dial with the SIP user agent, run the tree, report.

``autocall.campaign.dialer`` only knows :class:`CallRequest` → :class:`CallRecord`; this
module is where a request becomes an INVITE, the answered call runs its prompt tree
through :class:`autocall.telephony.runner.CallRunner`, and the call's status, SIP code
and dialogue facts come back as the call record's fields (DESIGN.md §4).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from autocall.audio.amd import AnsweredBy
from autocall.campaign.dialer import CallRequest
from autocall.campaign.model import CallStatus, Outcome
from autocall.config import Settings
from autocall.dialogue import loader
from autocall.dialogue.schema import Tree
from autocall.telephony.answer import Answered, run_answered, shared_pool
from autocall.telephony.call import Call, UserAgent
from autocall.telephony.record import CallFacts, CallRecord, Unfinished, UnfinishedCalls, build
from autocall.telephony.runner import AudioCache, CallRunner, RunResult
from autocall.telephony.webhooks import StatusCallbacks, WebhookClient

__all__ = ["SipPlacer", "TreeCache", "call_result", "dialogue_outcome", "from_settings",
           "report_ringing", "load_tree"]

log = logging.getLogger(__name__)


def load_tree(path: str | Path) -> Tree:
    """A prompt tree from YAML through the safe reader, with file:line:col errors."""
    return loader.load(path)


class TreeCache:
    """Each tree file loaded once per process (trees do not change during a campaign)."""

    def __init__(self) -> None:
        self._trees: dict[str, Tree] = {}

    def get(self, path: str) -> Tree:
        key = str(Path(path).resolve())
        if key not in self._trees:
            self._trees[key] = load_tree(path)
        return self._trees[key]


def report_ringing(call: Call, callbacks: StatusCallbacks, key: str) -> None:
    """Send the "ringing" status callback when the far end first rings (a 180/183).

    It goes out from the call's own ringing event, so it always precedes "answered",
    even when the 200 comes in the same breath as the 180.
    """
    when_ringing(call, lambda: callbacks.send(key, "ringing"))


def when_ringing(call: Call, notify: Callable[[], None]) -> None:
    """Call ``notify`` once, when the far end first rings (now if it already has)."""
    if call.ringing_at is not None:
        notify()
    else:
        call.on_ringing.append(notify)


def dialogue_outcome(run: RunResult) -> Outcome | None:
    """The retry-policy outcome a dialogue implies (None: derive it from the status).

    Hanging up before the tree ends without giving any answer is "hung up early" (worth
    another try), even where the rest of the tree was messages only (an informer cut off
    mid-message did not deliver it); hanging up after answering something (during the
    goodbye, say) is a completed call whose answers are in the record.
    """
    if run.caller_hung_up and run.inputs == 0:
        return Outcome.HUNG_UP_EARLY
    return None


def call_result(call: CallFacts, run: RunResult | None, started: datetime) -> CallRecord:
    """The record of a finished call (and its dialogue, if it was answered)."""
    record = build(call, run, started=started)
    if run is not None and not run.failed:
        record = replace(record, outcome=dialogue_outcome(run))
    return record


def amd_call_result(call: CallFacts, answered: Answered[RunResult], started: datetime
                    ) -> CallRecord:
    """A call under AMD: the dialogue's record (if one ran) with ``answered_by``, AMD's
    details in its variables and the AMD outcome (machine, left-message, fax) as the
    attempt's outcome."""
    amd = answered.result
    base = call_result(call, answered.run, started)
    if answered.run is None:
        base = replace(base, status=CallStatus.COMPLETED, sip_code=base.sip_code or 200,
                       answered_at=base.answered_at or started)
    if answered.outcome:
        outcome: str | None = Outcome(answered.outcome)
    elif answered.hung_up:
        outcome = Outcome.HUNG_UP_EARLY  # gone before we knew who it was: worth another try
    else:
        outcome = base.outcome
    return replace(base, variables={**base.variables, "amd": amd.to_json()},
                   answered_by=amd.answered_by, outcome=outcome)


class SipPlacer:
    """Places each request through ``ua`` (an ``autocall.sip`` UserAgent).

    ``target`` turns a request into a Request-URI, e.g. ``"sip:{number}@pbx:5060"``;
    ``trees`` loads each campaign's tree once; ``audio`` shares rendered prompts across
    calls. Safe for ``channels`` concurrent calls on one loop.
    """

    def __init__(
        self,
        ua: Any,
        *,
        target: str | Callable[[CallRequest], str],
        trees: TreeCache | None = None,
        audio: AudioCache | None = None,
        tts_cache_dir: Path = Path(".autocall/tts-cache"),
        recordings_dir: Path = Path("recordings"),
        webhooks: WebhookClient | None = None,
        status_callbacks: StatusCallbacks | None = None,
        max_call_seconds: float = 600.0,
        speech_model: Any = None,
    ) -> None:
        self.ua = ua
        self.target = target
        self.trees = trees or TreeCache()
        self.audio = audio or AudioCache(tts_cache_dir)
        self.recordings_dir = recordings_dir
        self.webhooks = webhooks or WebhookClient()
        self.callbacks = status_callbacks or StatusCallbacks(None)
        self.max_call_seconds = max_call_seconds
        self.speech_model = speech_model
        self.unfinished = UnfinishedCalls()

    def uri(self, request: CallRequest) -> str:
        if callable(self.target):
            return self.target(request)
        return self.target.format(number=request.number, trunk=request.trunk or "")

    def recording_path(self, request: CallRequest) -> Path:
        """Where a campaign with ``recording: true`` records this attempt (stereo WAV)."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        name = f"{stamp}-{request.attempt_id}-{_safe(request.number)}.wav"
        return self.recordings_dir / _safe(request.campaign) / name

    async def place(self, request: CallRequest) -> CallRecord:
        """Place one call; with ``request.recording`` the whole call (media from the
        answer on, left = callee, right = us) is recorded and its path is the record's."""
        record = self.recording_path(request) if request.recording else None
        result = await self._place(request, record)
        if record is not None and record.exists():  # made when media started
            result = replace(result, recording=str(record))
        return result

    async def _place(self, request: CallRequest, record: Path | None) -> CallRecord:
        started = datetime.now(UTC)
        tree: Tree = await asyncio.to_thread(self.trees.get, request.tree)
        key = f"{request.campaign}/{request.attempt_id}"
        self.callbacks.send(key, "initiated", number=request.number)
        call = await self.ua.call(
            self.uri(request), caller_id=request.caller_id, ring_timeout=request.ring_timeout,
            headers={"X-Autocall-Campaign": request.campaign,
                     "X-Autocall-Attempt": str(request.attempt_id)}, record=record)
        report_ringing(call, self.callbacks, key)
        if request.on_ringing is not None:
            when_ringing(call, request.on_ringing)
        live: Unfinished | None = None
        try:
            status = await call.wait_answer()
            if str(getattr(status, "value", status)) != CallStatus.IN_PROGRESS.value:
                self.callbacks.send(key, "completed", call_status=str(call.status),
                                    sip_code=getattr(call, "sip_code", None))
                return call_result(call, None, started)
            self.callbacks.send(key, "answered", number=request.number)
            if request.on_progress is not None:  # written at answer, then as digits come
                live = self.unfinished.add(Unfinished(
                    lambda: build(call, None, started=started, unfinished=True),
                    request.on_progress))
            facts = {"number": request.number, "callee": request.number,
                     "caller": request.caller_id, "call_id": str(getattr(call, "call_id", key))}
            def dialogue(answered_by: AnsweredBy | None = None) -> Any:
                # the engine sets answered_by for the tree; "machine" starts at machine:
                runner = CallRunner(
                    call, tree, {**request.variables, **facts}, audio=self.audio,
                    recordings_dir=self.recordings_dir, webhooks=self.webhooks,
                    call_facts=facts, max_seconds=self.max_call_seconds,
                    speech_model=self.speech_model, answered_by=answered_by)
                if live is not None:
                    live.dialogue = runner.engine
                return runner.run()
            if request.amd is not None:  # the tree's machine: wins over amd.on_machine
                options = request.amd.for_tree(tree)
                answered = await run_answered(call, shared_pool(), options, dialogue)
                result = amd_call_result(call, answered, started)
                told = answered.outcome or (answered.run.outcome if answered.run else None)
                self.callbacks.send(key, "completed", call_status="completed", outcome=told,
                                    answered_by=answered.result.answered_by)
                return result
            run = await dialogue()
            result = call_result(call, run, started)
            self.callbacks.send(key, "completed", call_status=str(result.status),
                                outcome=run.outcome)
            return result
        finally:
            if live is not None:
                self.unfinished.discard(live)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(call.hangup(), 5.0)


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "+-_" else "_" for c in text)[:60]


def trunk_target(settings: Settings) -> Callable[[CallRequest], str]:
    """Request-URI for a request: its campaign's ``trunk`` (``sip:host:port``) or the default."""
    default = f"{settings.trunk.host}:{settings.trunk.port}"

    def uri(request: CallRequest) -> str:
        trunk = (request.trunk or "").removeprefix("sip:") or default
        return f"sip:{request.number}@{trunk}"

    return uri


@contextlib.asynccontextmanager
async def from_settings(settings: Settings) -> AsyncIterator[SipPlacer]:
    """The placer ``autocall campaign run`` uses: a UserAgent on the configured trunk.

    Trunk, credentials, bind address and caches come from ``AUTOCALL_*`` (see
    :mod:`autocall.config`); the agent REGISTERs first when the trunk asks for it.
    """
    trunk = settings.trunk
    ua = await UserAgent.from_settings(settings)
    try:
        if trunk.register and not await ua.wait_registered(10.0):
            raise RuntimeError(f"REGISTER with {trunk.uri} failed: {ua.sip.register_error}")
        yield SipPlacer(ua, target=trunk_target(settings), tts_cache_dir=settings.tts_cache_dir,
                        recordings_dir=settings.recordings_dir)
    finally:
        await ua.close()
