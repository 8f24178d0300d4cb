"""Walk a tree without a phone: the same engine, driven by typed or scripted input.

The simulator is a driver like the telephony runner: it plays nothing, it writes a
transcript, with the engine's reason for every branch it took (``why`` steps:
"closed: holiday 2026-12-25", "retry 2 of 3: no input after 5 s"). Its clock is
virtual (a prompt "lasts" about as long as it would take to say it), so timeouts cost
no waiting and a run is deterministic.

Input tokens: ``1``, ``#``, ``1234#`` (keys, one Digit each), ``t``/``timeout``/``wait``
(no input), ``h``/``hangup``, ``say:WORDS`` (what the caller says, even when the words
look like keys or a command); anything else is what the caller says too (a speech
result). The designer's keypad and cases recorded there use ``wait`` and ``say:``. When a
scripted run has no more input and the tree waits for the caller, the caller hangs up.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from autocall.audio.amd import AnsweredBy
from autocall.dialogue.engine import (
    Action,
    CallerHangup,
    Collect,
    Digit,
    Engine,
    Event,
    Hangup,
    Play,
    PromptFinished,
    Record,
    RecordingFinished,
    Say,
    SpeechResult,
    StartTimer,
    Timeout,
    Transfer,
    TransferResult,
    Waiting,
    Webhook,
    WebhookResult,
)
from autocall.dialogue.schema import Tree, resolve_headers

SECONDS_PER_CHAR = 0.06
KEY_GAP = 0.3


@dataclass(frozen=True)
class Step:
    """One transcript line; ``at`` is seconds since the call started."""

    at: float
    kind: str
    text: str
    node: str | None = None
    action: Action | None = field(default=None, compare=False, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {"at": round(self.at, 3), "kind": self.kind, "text": self.text, "node": self.node}


@dataclass(frozen=True)
class WebhookCall:
    node: str | None
    url: str
    payload: dict[str, Any]
    status: int
    body: Any


@dataclass(frozen=True)
class WebhookStub:
    """A canned webhook answer for tests (status 0 = no answer)."""

    status: int = 200
    body: Any = None


@dataclass
class SimulationResult:
    path: list[str]
    outcome: str | None
    variables: dict[str, str]
    digits: str
    transcript: list[Step] = field(default_factory=list)
    webhooks: list[WebhookCall] = field(default_factory=list)
    error: str | None = None
    unused_input: list[str] = field(default_factory=list)

    @property
    def said(self) -> list[str]:
        return [s.text for s in self.transcript if s.kind == "say"]

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "outcome": self.outcome,
            "variables": self.variables,
            "digits": self.digits,
            "error": self.error,
            "unused_input": self.unused_input,
            "webhooks": [
                {"node": w.node, "url": w.url, "payload": w.payload, "status": w.status}
                for w in self.webhooks
            ],
            "transcript": [s.as_dict() for s in self.transcript],
        }


def parse_inputs(text: str) -> list[str]:
    """``"1,2,#,timeout"`` → tokens (commas separate, blanks around them ignored)."""
    return [t.strip() for t in text.split(",") if t.strip()]


InputSource = Callable[[], "str | None"]


class Simulator:
    """Drives an :class:`Engine` over a virtual clock and records what happens."""

    def __init__(
        self,
        tree: Tree,
        variables: Mapping[str, str] | None = None,
        *,
        start_time: float = 0.0,
        webhooks: Mapping[str, WebhookStub] | None = None,
        live_webhooks: bool = False,
        transfer_ok: bool = True,
        recording_seconds: float = 8.0,
        on_step: Callable[[Step], None] | None = None,
        max_events: int = 10_000,
        answered_by: AnsweredBy | None = None,
    ) -> None:
        self.tree = tree
        # answered_by: as answering-machine detection would tell the engine ("machine":
        # the greeting has ended, the tree's machine: node starts).
        self.engine = Engine(tree, dict(variables or {}), answered_by=answered_by)
        self.now = start_time
        self.start_time = start_time
        self.webhook_stubs = dict(webhooks or {})
        self.live_webhooks = live_webhooks
        self.transfer_ok = transfer_ok
        self.recording_seconds = recording_seconds
        self.on_step = on_step
        self.max_events = max_events
        self.transcript: list[Step] = []
        self.webhooks: list[WebhookCall] = []
        self._prompt_lengths: deque[float] = deque()
        self._replies: deque[Event] = deque()
        self._reasons_seen = 0

    # --- runs ------------------------------------------------------------------------

    def run(self, inputs: Iterable[str]) -> SimulationResult:
        """Scripted run: tokens are used whenever the tree listens."""
        tokens = deque(str(t) for t in inputs)
        result = self.drive(lambda: tokens.popleft() if tokens else None)
        result.unused_input = list(tokens)
        return result

    def drive(self, next_input: InputSource) -> SimulationResult:
        """Run to the end, asking ``next_input`` whenever the tree waits for the caller."""
        engine = self.engine
        if engine.answered_by is not None:
            self._log("answered", _ANSWERED[engine.answered_by])
        self._apply(self._explained(engine.start(self.now)))
        events = 0
        while not engine.finished:
            events += 1
            if events > self.max_events:
                engine.error = f"simulation stopped after {self.max_events} events"
                break
            waiting = engine.waiting_for
            if self._replies:
                self._feed(self._replies.popleft())
            elif waiting is Waiting.PROMPTS:
                self.now += self._prompt_lengths.popleft() if self._prompt_lengths else 0.5
                self._feed(PromptFinished())
            elif waiting in (Waiting.INPUT, Waiting.PAUSE):
                if waiting is Waiting.PAUSE:
                    self._sleep_until_deadline()
                    continue
                token = next_input()
                if token is None:
                    self._log("hangup", "caller hangs up (no more input)")
                    self._feed(CallerHangup())
                else:
                    self._caller(token)
            else:
                engine.error = f"engine waits for {waiting!r}, which the simulator cannot give"
                break
        return SimulationResult(
            path=list(engine.path),
            outcome=engine.outcome,
            variables=dict(engine.variables),
            digits=engine.digits,
            transcript=list(self.transcript),
            webhooks=list(self.webhooks),
            error=engine.error,
        )

    # --- events in -------------------------------------------------------------------

    def _caller(self, token: str) -> None:
        word = token.strip()
        lowered = word.lower()
        if lowered.startswith("say:"):
            self._speak(word[4:].strip())
        elif lowered in ("t", "timeout", "wait"):
            self._log("input", "(no key: timeout)")
            self._sleep_until_deadline()
        elif lowered in ("h", "hangup"):
            self._log("input", "(caller hangs up)")
            self._feed(CallerHangup())
        elif word and (all(ch in "0123456789*#" for ch in word) or word in ("A", "B", "C", "D")):
            for key in word:
                self.now += KEY_GAP
                ignored = self.engine.keys_ignored
                self._log("input", f"key {key}" + (" (ignored: this message cannot be skipped)"
                                                   if ignored else ""))
                self._feed(Digit(key))
                if self.engine.finished:
                    break
        else:
            self._speak(word)

    def _speak(self, word: str) -> None:
        self._log("input", f'says "{word}"')
        if not self.engine.accepts_speech:
            self._log("listen", "(speech ignored: this node listens for keys only)")
        self.now += max(0.5, len(word) * SECONDS_PER_CHAR)
        self._feed(SpeechResult(word, 1.0))

    def _sleep_until_deadline(self) -> None:
        deadline = self.engine.next_deadline()
        if deadline is not None:
            self.now = max(self.now, deadline)
        self._feed(Timeout())

    def _feed(self, event: Event) -> None:
        if isinstance(event, Digit | SpeechResult) and self.engine.interruptible:
            self._prompt_lengths.clear()  # barge-in: the driver flushes what was queued
        self._apply(self._explained(self.engine.handle(event, self.now)))

    def _explained(self, actions: list[Action]) -> list[Action]:
        """Log the engine's new reasons (why it went where it went) before the actions
        they led to."""
        for reason in self.engine.reasons[self._reasons_seen:]:
            self._log("why", reason.text, node=reason.node)
        self._reasons_seen = len(self.engine.reasons)
        return actions

    # --- actions out -----------------------------------------------------------------

    def _apply(self, actions: list[Action]) -> None:
        # Collect comes before its prompts (the driver listens during them); a reader
        # expects "listening" after the question, so it is shown last.
        listens = [a for a in actions if isinstance(a, Collect)]
        for action in [*(a for a in actions if not isinstance(a, Collect)), *listens]:
            if isinstance(action, Say):
                self._prompt_lengths.append(max(0.5, len(action.text) * SECONDS_PER_CHAR))
                self._log("say", action.text, action)
            elif isinstance(action, Play):
                self._prompt_lengths.append(_audio_seconds(action.path))
                self._log("play", action.path, action)
            elif isinstance(action, Collect):
                self._log("listen", _describe_collect(action))
            elif isinstance(action, StartTimer):
                pass
            elif isinstance(action, Webhook):
                self._replies.append(self._webhook(action))
            elif isinstance(action, Record):
                self._log("record", f"recording up to {action.max_seconds:g} s")
                seconds = min(self.recording_seconds, action.max_seconds)
                self.now += seconds
                node = self.engine.node or "recording"
                path = f"recordings/{node}-{int(self.now)}.wav"
                self._replies.append(RecordingFinished(path, seconds, "silence"))
            elif isinstance(action, Transfer):
                how = "attended" if action.mode == "attended" else "blind"
                state = "answers" if self.transfer_ok else f"no answer after {action.timeout:g} s"
                self._log("transfer", f"{how} transfer to {action.target}: {state}")
                if not self.transfer_ok:
                    self.now += action.timeout
                self._replies.append(TransferResult(self.transfer_ok))
            elif isinstance(action, Hangup):
                self._log("hangup", f"hang up: {action.outcome}")

    def _webhook(self, action: Webhook) -> WebhookResult:
        node = self.engine.node
        stub = self.webhook_stubs.get(node or "") or self.webhook_stubs.get(action.url)
        if stub is not None:
            status, body = stub.status, stub.body
        elif self.live_webhooks:
            status, body = _post(action)
        else:
            status, body = 0, None
        self.webhooks.append(WebhookCall(node, action.url, action.payload, status, body))
        answer = status or "no answer"
        self._log("webhook", f"POST {action.url} {json.dumps(action.payload)} → {answer}")
        return WebhookResult(status, body)

    def _log(self, kind: str, text: str, action: Action | None = None, *,
             node: str | None = None) -> None:
        step = Step(self.now - self.start_time, kind, text, node or self.engine.node, action)
        self.transcript.append(step)
        if self.on_step is not None:
            self.on_step(step)


_ANSWERED: dict[AnsweredBy, str] = {
    "human": "answered by a person",
    "unknown": "answered, nobody spoke (AMD: unknown); the tree runs as for a person",
    "machine": "answered by a machine; its greeting has ended (after the beep)",
    "fax": "answered by a fax machine",
}


def _describe_collect(action: Collect) -> str:
    parts = [f"up to {action.max_digits} key{'s' if action.max_digits > 1 else ''}"]
    if action.terminator:
        parts.append(f"end with {action.terminator}")
    if action.speech:
        parts.append("or speech")
    return "listening: " + ", ".join(parts)


def _audio_seconds(path: str) -> float:
    try:
        import soundfile

        info = soundfile.info(path)
        return float(info.frames) / float(info.samplerate)
    except Exception:  # noqa: BLE001 - a missing or odd file only changes the virtual clock
        return 1.0


def _post(action: Webhook) -> tuple[int, Any]:
    """A real POST with the action's timeout and retries; status 0 when none answered."""
    import httpx

    try:
        headers = resolve_headers(action.headers)
    except KeyError:
        return 0, None  # an ${ENV:NAME} not set here: not sent, as in a call
    for _ in range(action.retries + 1):
        try:
            response = httpx.post(action.url, json=action.payload, timeout=action.timeout,
                                  headers=headers)
        except httpx.HTTPError:
            continue
        try:
            body: Any = response.json()
        except ValueError:
            body = response.text
        if response.status_code < 500:
            return response.status_code, body
    return 0, None
