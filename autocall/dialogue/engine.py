"""The dialogue engine: a sans-I/O state machine that walks one prompt tree for one call.

It does no I/O and reads no clock: the driver (the telephony runner, the simulator, a
test) feeds it events with the current time and carries out the actions it returns.

Contract
--------
``engine = Engine(tree, variables, max_steps=None, answered_by=None)``
    ``variables`` are the contact's fields and call facts (``number``, ``caller_id``…);
    they override the tree's ``variables`` defaults. All values are strings.
    ``answered_by`` is what answering-machine detection found (``human``, ``machine``,
    ``fax``, ``unknown``; None: no detection). It is set as the variable ``answered_by``;
    on ``machine`` the walk starts at the tree's ``machine:`` node when it has one (the
    driver starts the engine once the greeting has ended: after the beep), else at
    ``start``; on ``fax`` the engine hangs up at once with outcome ``fax``.
``engine.start(now) -> list[Action]`` once, then ``engine.handle(event, now)`` for each
event. ``now`` is Unix time in seconds (the ``hours`` verb reads the wall clock from it).

Actions, to be carried out in order:
  ``Say(text, language, voice)`` (already templated) / ``Play(path)``
      queue audio. Send one ``PromptFinished`` per Say/Play when it has been heard.
  ``Collect(max_digits, terminator, first_timeout, inter_timeout, speech, grammar)``
      listen from now on: forward every DTMF key as ``Digit`` and, if ``speech``, every
      recogniser result as ``SpeechResult`` (``grammar`` lists the phrases expected).
      A key or a speech result while prompts play is barge-in: flush the queued
      prompts and send no ``PromptFinished`` for them. Keys during the prompt of a
      ``record`` node are not barge-in.
  ``StartTimer(deadline, kind)``
      send ``Timeout()`` at ``deadline`` (kind: ``menu``, ``first-digit``,
      ``inter-digit`` or ``pause``, for logs). There is one timer: a new StartTimer replaces
      the previous one; a Timeout that arrives early or after the engine moved on is
      ignored, so drivers never need to cancel. ``engine.next_deadline()`` tells the
      same thing for drivers that poll.
  ``Record(max_seconds, beep, end_on_silence, end_on_key)`` → ``RecordingFinished``
  ``Webhook(url, payload, timeout, retries, headers)`` → ``WebhookResult(status, body)``;
      the driver does the retries and reports status 0 when no answer came.
  ``Transfer(target, mode, announce, timeout)`` → ``TransferResult(ok)``;
      ``target`` is always one of :func:`allowed_transfer_targets`. Attended mode:
      call the target, play ``announce`` to it, connect; ``ok=False`` after ``timeout``
      s without an answer brings the caller back to the tree.
  ``Hangup(outcome)``: end the call. The engine is finished; ``engine.outcome`` holds
      the label for the call record (``opt-out`` means: add the number to the DNC list).

Events: ``PromptFinished``, ``Digit(digit)``, ``Timeout``, ``SpeechResult(text,
confidence)``, ``WebhookResult(status, body)``, ``RecordingFinished(path, duration,
reason)``, ``TransferResult(ok)``, ``CallerHangup`` (the far end hung up: the engine
finishes and returns no action; the outcome is the one the tree was heading for through
messages alone, e.g. ``opt-out`` during the goodbye after "press 9", else
``caller-hangup``; ``engine.caller_hung_up`` is set). Events the engine is not
waiting for are ignored; a key pressed while no menu listens is kept as type-ahead for
the next menu or gather, and a key during a say/play message skips it (the driver
flushes it) and is kept the same way.

Unskippable messages (``skippable: false``, for legal and recorded-call notices) ignore
keys: no skip, no flush, and the key is not kept for the next menu either, because a
choice counts only once the caller has heard the notice (a key kept would answer the
menu behind it unheard). For the same reason entering one drops keys typed ahead
before it. Such keys are still logged in ``engine.digits``, like every key.

Key and barge-in policy lives here, so drivers ask rather than re-derive it:
``engine.keys_ignored`` (such a message, or the prompt before a recording: do not flush),
``engine.interruptible`` (a key or spoken answer now flushes the prompts: barge-in),
``engine.accepts_keys`` (a key now could change the call: listen for tones only then)
and ``engine.accepts_speech`` (run a recogniser only then).

Why the walk went where it went: ``engine.reasons``, one :class:`Reason` per decision
the tree made on its own (an hours node open or closed and why, the branch case that
held, a retry after no or wrong input, the exit after the last one, a menu's default
on silence), for the simulator's transcript and for logs. Drivers need not read it.

State for the call record: ``engine.path`` (node ids in the order visited),
``engine.variables``, ``engine.digits`` (every key), ``engine.outcome``,
``engine.finished``, ``engine.error``, ``engine.caller_hung_up``; for drivers:
``engine.node`` (current node id) and ``engine.waiting_for`` (a :class:`Waiting`, or
None when finished).

Built-in outcomes: ``completed`` (a node without ``next``, or a bare ``hangup``),
``opt-out`` (the number joins the do-not-call list), ``transferred``,
``transfer-failed``, ``no-input``, ``invalid-input``, ``caller-hangup``, ``error`` (step
limit hit: a loop that never waits for the caller), ``fax`` (``answered_by="fax"``), and
``machine``/``left-message`` for a tree's ``machine:`` path to use (the campaign's record
takes its AMD outcome from detection, not from the tree); :data:`schema.BUILTIN_OUTCOMES`.
A tree's other ``hangup`` labels must be declared in its ``outcomes:`` (validate checks).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from autocall.audio.amd import AnsweredBy
from autocall.dialogue.schema import (
    BranchNode,
    Condition,
    GatherNode,
    GotoNode,
    HangupNode,
    HoursNode,
    MenuNode,
    PauseNode,
    PlayNode,
    PlayPrompt,
    Prompts,
    RecordNode,
    SayNode,
    SayPrompt,
    SetNode,
    TransferNode,
    Tree,
    WebhookNode,
    allowed_transfer_targets,
    edges,
    parse_days,
    parse_ranges,
    prompt_items,
    unskippable,
)
from autocall.dialogue.template import render, render_value

__all__ = [
    "Action",
    "CallerHangup",
    "Collect",
    "Digit",
    "Engine",
    "Event",
    "Hangup",
    "Play",
    "PromptFinished",
    "Reason",
    "Record",
    "RecordingFinished",
    "Say",
    "SpeechResult",
    "StartTimer",
    "Timeout",
    "Transfer",
    "TransferResult",
    "Waiting",
    "Webhook",
    "WebhookResult",
    "allowed_transfer_targets",
]

# --- events ------------------------------------------------------------------------


@dataclass(frozen=True)
class PromptFinished:
    """One Say/Play action has been played to the end."""


@dataclass(frozen=True)
class Digit:
    digit: str


@dataclass(frozen=True)
class Timeout:
    """The deadline of the last StartTimer has passed."""


@dataclass(frozen=True)
class SpeechResult:
    text: str
    confidence: float = 1.0


@dataclass(frozen=True)
class WebhookResult:
    status: int
    body: Any = None


@dataclass(frozen=True)
class RecordingFinished:
    path: str
    duration: float
    reason: str = "silence"


@dataclass(frozen=True)
class TransferResult:
    ok: bool


@dataclass(frozen=True)
class CallerHangup:
    """The far end hung up."""


Event = (
    PromptFinished
    | Digit
    | Timeout
    | SpeechResult
    | WebhookResult
    | RecordingFinished
    | TransferResult
    | CallerHangup
)

# --- actions -----------------------------------------------------------------------


@dataclass(frozen=True)
class Say:
    text: str
    language: str = "en"
    voice: str | None = None
    tts: tuple[str, ...] | None = None  # engine order (item's, node's, tree's); None: settings


@dataclass(frozen=True)
class Play:
    path: str


@dataclass(frozen=True)
class Collect:
    max_digits: int
    terminator: str | None
    first_timeout: float
    inter_timeout: float
    speech: bool = False
    grammar: tuple[str, ...] = ()


@dataclass(frozen=True)
class StartTimer:
    deadline: float
    kind: str


@dataclass(frozen=True)
class Transfer:
    target: str
    mode: str = "blind"
    announce: tuple[Say | Play, ...] = ()
    timeout: float = 25.0


@dataclass(frozen=True)
class Record:
    max_seconds: float
    beep: bool = True
    end_on_silence: float = 5.0
    end_on_key: str | None = "#"


@dataclass(frozen=True)
class Webhook:
    url: str
    payload: dict[str, Any] = field(default_factory=dict)
    timeout: float = 5.0
    retries: int = 1
    headers: dict[str, str] = field(default_factory=dict)  # ${ENV:NAME} still unresolved


@dataclass(frozen=True)
class Hangup:
    outcome: str


Action = Say | Play | Collect | StartTimer | Transfer | Record | Webhook | Hangup

@dataclass(frozen=True)
class Reason:
    """Why the engine left ``node`` the way it did, at ``at`` (Unix seconds), e.g.
    ``closed: holiday 2026-12-25`` or ``retry 2 of 3: no input after 5 s``."""

    at: float
    node: str
    text: str


TYPE_AHEAD_LIMIT = 32
"""Keys kept while nothing listens; a flood of RFC 4733 events must not pile up."""


class Waiting(StrEnum):
    """What the engine waits for: the event that moves it on (``engine.waiting_for``)."""

    PROMPTS = "prompts"  # PromptFinished (or a key or answer that barges in)
    INPUT = "input"  # a key, a spoken answer or the Timeout of a menu or gather
    WEBHOOK = "webhook"
    RECORDING = "recording"
    TRANSFER = "transfer"
    PAUSE = "pause"  # the Timeout of a pause


_WAIT_PROMPTS, _WAIT_INPUT = Waiting.PROMPTS, Waiting.INPUT


class Engine:
    """Walks ``tree`` for one call. See the module docstring for the contract."""

    def __init__(
        self,
        tree: Tree,
        variables: dict[str, str] | None = None,
        *,
        max_steps: int | None = None,
        answered_by: AnsweredBy | None = None,
    ) -> None:
        self.tree = tree
        self.answered_by = answered_by
        self.variables: dict[str, str] = {k: _text(v) for k, v in tree.variables.items()}
        self.variables.update({k: _text(v) for k, v in (variables or {}).items()})
        if answered_by is not None:  # a fact of the call: no contact field overrides it
            self.variables["answered_by"] = answered_by
        self.max_steps = max_steps if max_steps is not None else tree.max_steps
        self.path: list[str] = []
        self.digits = ""
        self.outcome: str | None = None
        self.error: str | None = None
        self.started = False
        self.caller_hung_up = False
        self._node_id: str | None = None
        self._waiting: Waiting | None = None
        self._pending_prompts = 0
        self._after_prompts: Callable[[float], list[Action]] | None = None
        self._deadline: float | None = None
        self._type_ahead: list[str] = []
        self._attempt = 0
        self._collected = ""
        self.reasons: list[Reason] = []
        self._allowed = allowed_transfer_targets(tree)
        self._listen_ahead = _nodes_before_listening(tree)

    # --- public ----------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self.outcome is not None

    @property
    def node(self) -> str | None:
        """Id of the node the engine is in."""
        return self._node_id

    @property
    def waiting_for(self) -> Waiting | None:
        """What moves the engine on now; None when finished."""
        return None if self.finished else self._waiting

    @property
    def keys_ignored(self) -> bool:
        """True while prompts play that a key neither skips nor answers.

        That is an unskippable message or the prompt before a recording; a driver must
        not flush them on a key, and may stop listening for keys meanwhile.
        """
        if self.finished or self._waiting != _WAIT_PROMPTS:
            return False
        node = self._current()
        return isinstance(node, RecordNode) or unskippable(node)

    @property
    def interruptible(self) -> bool:
        """True while prompts play that a key or a spoken answer cuts short: the driver
        flushes them (barge-in) before it hands the event over."""
        return self._waiting == _WAIT_PROMPTS and not self.keys_ignored

    @property
    def accepts_keys(self) -> bool:
        """Whether a key pressed now could change the call (drivers listen only then).

        Menus and gathers take keys while their prompts play and after; a key skips a
        message unless ``keys_ignored``. While recording only the node's ``end_on_key``
        counts (the driver ends the recording on it). During a pause, a webhook or a
        transfer a key waits as type-ahead, which only a menu or gather ahead can use.
        """
        if self.finished or self.keys_ignored:
            return False
        node = self.tree.nodes.get(self._node_id or "")
        if isinstance(node, RecordNode) and self._waiting == Waiting.RECORDING:
            return node.record.end_on_key is not None
        if self._waiting in (Waiting.PAUSE, Waiting.WEBHOOK, Waiting.TRANSFER):
            return self._node_id in self._listen_ahead
        return True

    @property
    def accepts_speech(self) -> bool:
        """Whether a spoken answer now could change the call: a menu or gather that takes
        speech is playing its prompts or listening (the driver runs a recogniser then)."""
        if self.finished or self._waiting not in (_WAIT_PROMPTS, _WAIT_INPUT):
            return False
        node = self._current()
        if isinstance(node, MenuNode):
            return node.menu.speech
        return isinstance(node, GatherNode) and node.gather.speech

    def next_deadline(self) -> float | None:
        return None if self.finished else self._deadline

    def start(self, now: float) -> list[Action]:
        if self.started:
            raise RuntimeError("Engine.start() called twice")
        self.started = True
        if self.answered_by == "fax":  # nothing to say to a fax machine
            return self._finish("fax")
        if self.answered_by == "machine" and self.tree.machine is not None:
            return self._goto(self.tree.machine, now)
        return self._goto(self.tree.start, now)

    def handle(self, event: Event, now: float) -> list[Action]:
        if not self.started:
            raise RuntimeError("call Engine.start() before handle()")
        if self.finished:
            return []
        if isinstance(event, CallerHangup):
            self.caller_hung_up = True
            self._finish(self._outcome_without_input())
            return []
        if isinstance(event, Digit):
            return self._on_digit(event.digit, now)
        if isinstance(event, PromptFinished):
            return self._on_prompt_finished(now)
        if isinstance(event, Timeout):
            if self._deadline is None or now < self._deadline - 1e-6:
                return []
            self._deadline = None
            return self._on_timeout(now)
        if isinstance(event, SpeechResult):
            return self._on_speech(event, now)
        if isinstance(event, WebhookResult) and self._waiting == Waiting.WEBHOOK:
            return self._on_webhook(event, now)
        if isinstance(event, RecordingFinished) and self._waiting == Waiting.RECORDING:
            return self._on_recording(event, now)
        if isinstance(event, TransferResult) and self._waiting == Waiting.TRANSFER:
            return self._on_transfer(event, now)
        return []

    # --- walking ---------------------------------------------------------------------

    def _outcome_without_input(self) -> str:
        """Where the call was going anyway: a hangup reached through messages only.

        A caller who presses 9 and hangs up during "you will not be called again" has
        opted out; one who hangs up during the closing thanks has completed the survey.
        """
        node_id = self._node_id
        seen: set[str] = set()
        while node_id not in seen:
            if node_id is None:
                return "completed"  # the messages were the end of the tree
            seen.add(node_id)
            node = self.tree.nodes.get(node_id)
            if isinstance(node, HangupNode):
                return node.outcome
            if isinstance(node, SayNode | PlayNode | SetNode | PauseNode):
                node_id = node.next
            elif isinstance(node, GotoNode):
                node_id = node.goto
            else:
                break
        return "caller-hangup"

    def _finish(self, outcome: str) -> list[Action]:
        self.outcome = outcome
        self._waiting = None
        self._deadline = None
        return [Hangup(outcome)]

    def _goto(self, node_id: str | None, now: float) -> list[Action]:
        """Enter nodes until one waits for the outside world."""
        actions: list[Action] = []
        while True:
            self._waiting = None
            self._deadline = None
            self._after_prompts = None
            self._pending_prompts = 0
            if node_id is None:
                return actions + self._finish("completed")
            if len(self.path) >= self.max_steps:
                self.error = f"step limit of {self.max_steps} nodes reached at {node_id!r}"
                return actions + self._finish("error")
            node = self.tree.nodes.get(node_id)
            if node is None:
                self.error = f"node {node_id!r} does not exist"
                return actions + self._finish("error")
            self.path.append(node_id)
            self._node_id = node_id
            self._attempt = 0
            self._collected = ""
            step, node_id = self._enter(node, now)
            actions.extend(step)
            if self._waiting is not None or self.finished:
                return actions

    def _enter(self, node: Any, now: float) -> tuple[list[Action], str | None]:
        """Start a node; returns its actions and, if it does not wait, the next node."""
        if isinstance(node, SayNode | PlayNode):
            if isinstance(node, SayNode):
                language = node.language or self.tree.language
                audio = self._render_prompts(node.say, language, node.voice, node.tts)
            else:
                paths = node.play if isinstance(node.play, list) else [node.play]
                audio = self._render_prompts([PlayPrompt(play=p) for p in paths])
            if not audio:
                return [], node.next  # nothing to hear: walk on (in this loop, not deeper)
            if not node.skippable:
                self._type_ahead.clear()  # pressed before the notice was heard
            self._waiting = _WAIT_PROMPTS
            self._pending_prompts = len(audio)
            self._after_prompts = lambda t: self._goto(node.next, t)
            return audio, None
        if isinstance(node, SetNode):
            for name, value in node.set.items():
                self.variables[name] = render(_text(value), self.variables)
            return [], node.next
        if isinstance(node, GotoNode):
            return [], node.goto
        if isinstance(node, BranchNode):
            for case in node.branch:
                if self._holds(case.if_):
                    self._why(now, f"{_condition(case.if_, self.variables)} → {case.next}")
                    return [], case.next
            self._why(now, "no case holds → " + (node.else_ or "end of the call"))
            return [], node.else_
        if isinstance(node, HoursNode):
            is_open, why = self._hours(node, now)
            self._why(now, why)
            return [], node.open if is_open else node.closed
        if isinstance(node, HangupNode):
            return self._finish(node.outcome), None
        if isinstance(node, PauseNode):
            self._waiting = Waiting.PAUSE
            return [self._arm(now + node.pause, "pause")], None
        if isinstance(node, MenuNode):
            return self._menu_listen(node, node.menu.prompt, now), None
        if isinstance(node, GatherNode):
            return self._gather_listen(node, node.gather.prompt, now), None
        if isinstance(node, RecordNode):
            body = node.record
            record = Record(body.max_seconds, body.beep, body.end_on_silence, body.end_on_key)

            def start_recording(_: float) -> list[Action]:
                self._waiting = Waiting.RECORDING
                return [record]

            return self._prompts_then(body.prompt, start_recording, now)
        if isinstance(node, TransferNode):
            return self._start_transfer(node, now), None
        if isinstance(node, WebhookNode):
            hook = node.webhook
            self._waiting = Waiting.WEBHOOK
            payload = render_value(dict(hook.payload), self.variables)
            url = render(hook.url, self.variables)
            return [Webhook(url, payload, hook.timeout, hook.retries, dict(hook.headers))], None
        raise TypeError(f"unknown node type {type(node).__name__}")

    def _current(self) -> Any:
        assert self._node_id is not None
        return self.tree.nodes[self._node_id]

    # --- prompts ---------------------------------------------------------------------

    def _render_prompts(
        self,
        prompts: Prompts | None,
        language: str | None = None,
        voice: str | None = None,
        tts: Sequence[str] | None = None,
    ) -> list[Action]:
        out: list[Action] = []
        for item in prompt_items(prompts):
            if isinstance(item, SayPrompt):
                lang = item.language or language or self.tree.language
                order = item.tts or tts or self.tree.tts
                out.append(
                    Say(
                        render(item.say, self.variables),
                        lang,
                        item.voice or voice or self.tree.voice_for(lang),
                        tuple(order) if order else None,
                    )
                )
            else:
                out.append(Play(str(self.tree.resolve_audio(render(item.play, self.variables)))))
        return out

    def _prompts_then(
        self,
        prompts: Prompts | None,
        then: Callable[[float], list[Action]],
        now: float,
        language: str | None = None,
        voice: str | None = None,
    ) -> tuple[list[Action], str | None]:
        actions = self._render_prompts(prompts, language, voice)
        if not actions:
            # No audio: go on at once, as if an empty prompt had finished.
            return then(now), None
        self._waiting = _WAIT_PROMPTS
        self._pending_prompts = len(actions)
        self._after_prompts = then
        return actions, None

    def _on_prompt_finished(self, now: float) -> list[Action]:
        if self._waiting != _WAIT_PROMPTS or self._pending_prompts <= 0:
            return []
        self._pending_prompts -= 1
        if self._pending_prompts:
            return []
        then = self._after_prompts
        self._after_prompts = None
        self._waiting = None
        return then(now) if then else []

    def _arm(self, deadline: float, kind: str) -> StartTimer:
        self._deadline = deadline
        return StartTimer(deadline, kind)

    # --- menu ------------------------------------------------------------------------

    def _menu_listen(self, node: MenuNode, prompts: Prompts | None, now: float) -> list[Action]:
        menu = node.menu
        phrases: list[str] = []
        for key in menu.items:
            item = menu.item(key)
            if item is not None:
                phrases.extend(item.say)
        if self._type_ahead:
            return self._menu_key(node, self._type_ahead.pop(0), now)
        collect = Collect(1, None, menu.timeout, menu.timeout, menu.speech, tuple(phrases))

        def listen(t: float) -> list[Action]:
            self._waiting = _WAIT_INPUT
            return [self._arm(t + menu.timeout, "menu")]

        actions, _ = self._prompts_then(prompts, listen, now)
        return [collect, *actions]

    def _menu_key(self, node: MenuNode, key: str, now: float) -> list[Action]:
        menu = node.menu
        if menu.repeat_key is not None and key == menu.repeat_key:
            return self._menu_listen(node, menu.prompt, now)
        item = menu.item(key)
        if item is not None:
            return self._choose(node, key, now)
        return self._failed(node, "invalid-input", now, f"key {key} is not a choice")

    def _choose(self, node: MenuNode, key: str, now: float) -> list[Action]:
        item = node.menu.item(key)
        assert item is not None
        if node.menu.variable is not None:
            self.variables[node.menu.variable] = key
        return self._goto(item.next, now)

    def _failed(self, node: MenuNode | GatherNode, why: str, now: float,
                detail: str) -> list[Action]:
        """No or wrong input: say sorry and ask again, or leave after the last retry.
        ``detail`` says what happened, for the reason (``no input after 5 s``)."""
        body = node.menu if isinstance(node, MenuNode) else node.gather
        self._attempt += 1
        if self._attempt > body.retries:
            tries = f"{self._attempt} tr{'ies' if self._attempt > 1 else 'y'}"
            if node.on_failure is not None:
                self._why(now, f"{detail}; {tries}, no retry left → {node.on_failure}")
                return self._goto(node.on_failure, now)
            self._why(now, f"{detail}; {tries}, no retry left → hang up: {why}")
            return self._finish(why)
        self._why(now, f"retry {self._attempt} of {body.retries}: {detail}")
        sorry = body.invalid if why == "invalid-input" else body.no_input
        attempt = self._attempt
        again = [*_as_list(sorry), *_as_list(body.prompt)]
        actions = (self._menu_listen(node, again, now) if isinstance(node, MenuNode)
                   else self._gather_listen(node, again, now))
        self._attempt = attempt
        return actions

    # --- gather ----------------------------------------------------------------------

    def _gather_listen(self, node: GatherNode, prompts: Prompts | None, now: float) -> list[Action]:
        body = node.gather
        self._collected = ""
        collect = Collect(
            body.max_digits,
            body.terminator,
            body.first_timeout,
            body.inter_timeout,
            body.speech,
            tuple(body.grammar),
        )
        actions: list[Action] = [collect]
        if self._type_ahead:
            self._waiting = _WAIT_INPUT
            visited, attempt = len(self.path), self._attempt
            while self._type_ahead and self._waiting == _WAIT_INPUT:
                if len(self.path) != visited or self._attempt != attempt:
                    break
                actions.extend(self._gather_key(node, self._type_ahead.pop(0), now))
            return actions

        def listen(t: float) -> list[Action]:
            self._waiting = _WAIT_INPUT
            return [self._arm(t + body.first_timeout, "first-digit")]

        more, _ = self._prompts_then(prompts, listen, now)
        return actions + more

    def _gather_key(self, node: GatherNode, key: str, now: float) -> list[Action]:
        body = node.gather
        if body.terminator is not None and key == body.terminator:
            if not self._collected and body.min_digits > 0:
                return self._failed(node, "no-input", now, f"nothing entered before {key}")
            return self._gather_done(node, self._collected, now)
        self._collected += key
        if len(self._collected) >= body.max_digits:
            return self._gather_done(node, self._collected, now)
        self._waiting = _WAIT_INPUT
        return [self._arm(now + body.inter_timeout, "inter-digit")]

    def _gather_done(
        self, node: GatherNode, value: str, now: float, *, spoken: bool = False
    ) -> list[Action]:
        body = node.gather
        if not value and body.min_digits > 0:
            return self._failed(node, "no-input", now,
                                f"no input after {body.first_timeout:g} s")
        if not spoken and len(value) < body.min_digits:
            return self._failed(node, "invalid-input", now, f"{value!r} is {len(value)} "
                                f"key(s), at least {body.min_digits} wanted")
        if body.pattern is not None and re.fullmatch(body.pattern, value) is None:
            return self._failed(node, "invalid-input", now,
                                f"{value!r} does not match {body.pattern}")
        self.variables[body.variable] = value
        return self._goto(node.next, now)

    # --- input events ----------------------------------------------------------------

    def _on_digit(self, key: str, now: float) -> list[Action]:
        if len(key) != 1 or key not in "0123456789*#ABCD":
            return []
        self.digits += key
        if self.keys_ignored:
            return []  # no skip, nothing kept: see "Unskippable messages" above
        node = self._current()
        if self._waiting in (_WAIT_PROMPTS, _WAIT_INPUT) and isinstance(node, MenuNode):
            self._barge_in()
            return self._menu_key(node, key, now)
        if self._waiting in (_WAIT_PROMPTS, _WAIT_INPUT) and isinstance(node, GatherNode):
            self._barge_in()
            return self._gather_key(node, key, now)
        if self._waiting == Waiting.RECORDING or isinstance(node, RecordNode):
            return []  # the driver ends the recording on its key; nothing to keep
        if len(self._type_ahead) < TYPE_AHEAD_LIMIT:
            self._type_ahead.append(key)
        if self._waiting == _WAIT_PROMPTS and isinstance(node, SayNode | PlayNode):
            # The driver flushed the message: skip to what follows.
            then = self._after_prompts
            self._barge_in()
            return then(now) if then else []
        return []

    def _barge_in(self) -> None:
        self._pending_prompts = 0
        self._after_prompts = None
        self._waiting = _WAIT_INPUT
        self._deadline = None

    def _on_timeout(self, now: float) -> list[Action]:
        node = self._current()
        if self._waiting == Waiting.PAUSE and isinstance(node, PauseNode):
            return self._goto(node.next, now)
        if self._waiting != _WAIT_INPUT:
            return []
        if isinstance(node, MenuNode):
            silence = f"no input after {node.menu.timeout:g} s"
            if node.menu.default is not None:
                self._why(now, f"{silence} → default {node.menu.default}")
                return self._goto(node.menu.default, now)
            return self._failed(node, "no-input", now, silence)
        if isinstance(node, GatherNode):
            if not self._collected and node.gather.min_digits == 0:
                return self._gather_done(node, "", now)
            return self._gather_done(node, self._collected, now)
        return []

    def _on_speech(self, result: SpeechResult, now: float) -> list[Action]:
        node = self._current()
        if self._waiting not in (_WAIT_PROMPTS, _WAIT_INPUT):
            return []
        if isinstance(node, MenuNode) and node.menu.speech:
            self._barge_in()
            if result.confidence < node.menu.min_confidence:
                return self._failed(node, "invalid-input", now, _unsure(
                    result, node.menu.min_confidence))
            key = _match_phrase(node, result.text)
            if key is None:
                return self._failed(node, "invalid-input", now,
                                    f"{result.text!r} matches no choice")
            return self._choose(node, key, now)
        if isinstance(node, GatherNode) and node.gather.speech:
            self._barge_in()
            if result.confidence < node.gather.min_confidence:
                return self._failed(node, "invalid-input", now, _unsure(
                    result, node.gather.min_confidence))
            return self._gather_done(node, result.text.strip(), now, spoken=True)
        return []

    def _on_webhook(self, result: WebhookResult, now: float) -> list[Action]:
        node = self._current()
        assert isinstance(node, WebhookNode)
        self.variables["webhook_status"] = str(result.status)
        if 200 <= result.status < 300:
            if isinstance(result.body, dict):
                for name, key in node.webhook.save.items():
                    if key in result.body:
                        self.variables[name] = _text(result.body[key])
            return self._goto(node.next, now)
        return self._goto(node.on_failure if node.on_failure is not None else node.next, now)

    def _on_recording(self, result: RecordingFinished, now: float) -> list[Action]:
        node = self._current()
        assert isinstance(node, RecordNode)
        name = node.record.variable
        self.variables[name] = result.path
        self.variables[f"{name}_duration"] = f"{result.duration:.1f}"
        return self._goto(node.next, now)

    def _start_transfer(self, node: TransferNode, now: float) -> list[Action]:
        body = node.transfer
        if body.target not in self._allowed:
            # A tree that skipped validation must not dial an arbitrary number.
            self.error = f"transfer target {body.target!r} is not in transfer_targets"
            return self._finish("error")
        self._waiting = Waiting.TRANSFER
        announce = tuple(
            a for a in self._render_prompts(body.announce) if isinstance(a, Say | Play)
        )
        return [Transfer(body.target, body.mode, announce, body.timeout)]

    def _on_transfer(self, result: TransferResult, now: float) -> list[Action]:
        node = self._current()
        assert isinstance(node, TransferNode)
        if result.ok:
            return self._finish("transferred")
        fallback = node.on_failure if node.on_failure is not None else node.next
        if fallback is None:
            return self._finish("transfer-failed")
        return self._goto(fallback, now)

    # --- conditions ------------------------------------------------------------------

    def _holds(self, cond: Condition) -> bool:
        value = self.variables.get(cond.var, "")
        checks: list[bool] = []
        if cond.eq is not None:
            checks.append(value == _text(cond.eq))
        if cond.ne is not None:
            checks.append(value != _text(cond.ne))
        if cond.in_ is not None:
            checks.append(value in {_text(v) for v in cond.in_})
        if cond.matches is not None:
            checks.append(re.search(cond.matches, value) is not None)
        if cond.empty is not None:
            checks.append((value == "") == cond.empty)
        for bound, test in (
            (cond.gt, lambda a, b: a > b),
            (cond.ge, lambda a, b: a >= b),
            (cond.lt, lambda a, b: a < b),
            (cond.le, lambda a, b: a <= b),
        ):
            if bound is not None:
                try:
                    checks.append(bool(test(float(value), bound)))
                except ValueError:
                    checks.append(False)
        return all(checks) if checks else value != ""

    def _why(self, now: float, text: str) -> None:
        self.reasons.append(Reason(now, self._node_id or "", text))

    def _hours(self, node: HoursNode, now: float) -> tuple[bool, str]:
        """Open or closed at ``now``, and why (the holiday, or the range that is open)."""
        zone = ZoneInfo(node.hours.timezone or self.tree.timezone)
        local = dt.datetime.fromtimestamp(now, zone)
        when = f"{local:%a %Y-%m-%d %H:%M} {zone.key}"
        if local.date() in node.hours.holidays:
            return False, f"closed: holiday {local.date().isoformat()} → {node.closed}"
        minute = local.hour * 60 + local.minute
        today = local.weekday()
        yesterday = (today - 1) % 7
        for days, ranges in node.hours.schedule.items():
            listed = parse_days(days)
            for start, end in parse_ranges(ranges):
                if start < end:
                    if today in listed and start <= minute < end:
                        return True, f"open: {when} is in {days} {ranges} → {node.open}"
                elif (today in listed and minute >= start) or (
                    yesterday in listed and minute < end
                ):
                    # a range past midnight belongs to the day it starts on
                    return True, f"open: {when} is in {days} {ranges} → {node.open}"
        return False, f"closed: {when} is outside the opening hours → {node.closed}"


def _condition(cond: Condition, variables: dict[str, str]) -> str:
    """A branch case that held, as a reader checks it: ``amount > 100 (amount is '150')``."""
    tests = [f"{cond.var} {op} {_shown(value)}" for op, value in (
        ("=", cond.eq), ("≠", cond.ne), ("in", cond.in_), ("matches", cond.matches),
        (">", cond.gt), ("≥", cond.ge), ("<", cond.lt), ("≤", cond.le)) if value is not None]
    if cond.empty is not None:
        tests.append(f"{cond.var} is {'empty' if cond.empty else 'not empty'}")
    shown = " and ".join(tests) or f"{cond.var} is set"
    return f"{shown} ({cond.var} is {variables.get(cond.var, '')!r})"


def _shown(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else repr(value)


def _unsure(result: SpeechResult, wanted: float) -> str:
    return (f"heard {result.text!r} with confidence {result.confidence:.2f}, below "
            f"{wanted:.2f}")


def _nodes_before_listening(tree: Tree) -> frozenset[str]:
    """Ids of the nodes from which some menu or gather can still be reached.

    A key pressed while nothing listens waits as type-ahead for the next menu or gather;
    where none lies ahead it can never be used. An unskippable message with audio drops
    the type-ahead on entry, so a path through one does not count.
    """
    sources: dict[str, set[str]] = {}
    for edge in edges(tree):
        sources.setdefault(edge.target, set()).add(edge.source)
    todo = [nid for nid, node in tree.nodes.items() if isinstance(node, MenuNode | GatherNode)]
    seen: set[str] = set(todo)
    while todo:
        target = todo.pop()
        if _drops_type_ahead(tree.nodes[target]):
            continue
        for source in sources.get(target, ()):
            if source not in seen:
                seen.add(source)
                todo.append(source)
    return frozenset(seen)


def _drops_type_ahead(node: object) -> bool:
    """An unskippable message that plays something (an empty one walks straight on)."""
    if not unskippable(node):
        return False
    if isinstance(node, SayNode):
        return bool(prompt_items(node.say))
    return isinstance(node, PlayNode) and bool(node.play)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _as_list(prompts: Prompts | None) -> list[str | SayPrompt | PlayPrompt]:
    if prompts is None:
        return []
    return list(prompts) if isinstance(prompts, list) else [prompts]


_WORDS = re.compile(r"[^\w]+")


def _normal(text: str) -> str:
    return " ".join(_WORDS.split(text.casefold())).strip()


def _match_phrase(node: MenuNode, text: str) -> str | None:
    """The menu key whose phrase the recogniser heard (whole phrase, or the key's digit)."""
    heard = f" {_normal(text)} "
    best: tuple[int, str] | None = None
    for key in node.menu.items:
        item = node.menu.item(key)
        if item is None:
            continue
        for phrase in item.say:
            wanted = _normal(phrase)
            if wanted and f" {wanted} " in heard and (best is None or len(wanted) > best[0]):
                best = (len(wanted), key)
    if best is not None:
        return best[1]
    spoken_digit = heard.strip()
    return spoken_digit if spoken_digit in node.menu.items else None
