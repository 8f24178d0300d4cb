"""Answering-machine detection on live calls: who answered, and when to start talking.

`AmdPool` runs one `autocall.audio.amd.AmdBank` for every call of the process. Each call's
media session hands over the received audio in RTP order in its pacing tick
(``MediaSession.on_signal``, cut here into 20 ms frames), and the frames of all calls are
analysed together once per frame period (DESIGN.md §3, batch signal processing): AMD on
500 calls costs one analysis per 20 ms, not 500. The pacing clock spreads the calls'
ticks over the phase slots of a frame (``PacingClock(phases=8)``), so a pass per tick
would serve only an eighth of the calls and cost eight times the per-pass overhead;
instead the pool waits until every call it is still analysing has handed over a frame
(the last phase slot of the period: the pass runs right after that tick,
``loop.call_soon``), or until one frame period after the first frame waiting, whichever
comes first (a call whose RTP paused, or that ended, holds no one up). A frame therefore
waits at most one frame period (20 ms) for its analysis: that is all the latency this
adds. Decision, beep and message times are unchanged by it: they are in the detector's
own sample clock (frames counted from the answer), not in the loop's.

A call that hands over several frames before a pass gets them queued and analysed in RTP
order in that pass; a call whose detector is done (decided, and for a machine the
message time found) costs nothing more. ``AmdPool(per_tick=True)`` keeps the old
schedule, a pass after every tick that handed over a frame (for comparison in
``bench/bench_amd_pool.py``).

The signal, not the playout (``on_audio``), because the detector's clock must be the far
end's: playout adds the jitter buffer's delay, which grows on a busy host, and silence
for every late packet, so a beep measured there ends later than it did. On the signal
the message follows the beep by the detector's own wait and one tick.

`run_answered` is the driver for one answered call: it listens from the answer and

- human (or dead air, ``unknown``): runs the dialogue at once. If a beep starts within
  ``AmdConfig.beep_watch_ms`` of that decision (a short "Leave a message." greeting), the
  dialogue is stopped and the call is treated as the machine it is;
- machine, ``on_machine="message"``: waits for the beep or the silence that ends the
  greeting, then runs the dialogue (the message: a tree's ``machine:`` node, else its
  start) — outcome ``left-message``;
- machine, ``on_machine="hangup"``: outcome ``machine``, no dialogue (a tree's
  ``machine:`` overrides the campaign's or the CLI's choice: ``AmdOptions.for_tree``);
- fax: outcome ``fax``, no dialogue (never retried).

The result carries ``answered_by`` for the call record (DESIGN.md §4) and the times of
the decision, the beep and the message, in seconds from the answer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Generic, Literal, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from autocall.audio.amd import (
    AMD_RATE,
    FRAME,
    AmdBank,
    AmdConfig,
    AmdDecision,
    AmdEvent,
    AmdMessageReady,
    AmdResult,
    AnsweredBy,
    result_of,
)
from autocall.dialogue.schema import Tree, machine_action

__all__ = [
    "AMD_OUTCOMES",
    "AmdCall",
    "AmdListener",
    "AmdOptions",
    "AmdPool",
    "Answered",
    "OnMachine",
    "run_answered",
]

Pcm = npt.NDArray[np.int16]
_INT16 = np.dtype(np.int16)
_ONE_FRAME = (FRAME,)
R = TypeVar("R")
OnMachine = Literal["message", "hangup"]
# Dialogue outcomes AMD adds (DESIGN.md §4 spelling): retry a machine later, never a fax.
AMD_OUTCOMES = ("machine", "left-message", "fax")


@dataclass(frozen=True)
class AmdOptions:
    """What a call does with AMD: leave the message on a machine, or hang up."""

    on_machine: OnMachine = "message"
    config: AmdConfig = field(default_factory=AmdConfig)

    def __post_init__(self) -> None:
        if self.on_machine not in ("message", "hangup"):
            raise ValueError(f"on_machine {self.on_machine!r}: use message or hangup")

    def for_tree(self, tree: Tree) -> AmdOptions:
        """These options for ``tree``: its ``machine:`` wins (a message node: message; a
        hangup node: hangup, see ``dialogue.schema.machine_action``); a tree without
        ``machine:`` leaves ``on_machine`` as the campaign or the CLI set it."""
        says = machine_action(tree)
        if says is None or says == self.on_machine:
            return self
        return replace(self, on_machine=says)


class AudioTap(Protocol):
    """The media session's subscribers to the received signal (``MediaSession.on_signal``)."""

    on_signal: list[Callable[[Pcm], None]]


class AmdListener:
    """One call's seat in the pool: events arrive in ``events`` as the bank reports them."""

    def __init__(self, pool: AmdPool, channel: int, media: AudioTap) -> None:
        self.pool = pool
        self.channel = channel
        self.media = media
        self.events: list[AmdEvent] = []
        self._changed = asyncio.Event()
        self._active = True
        self._leaving = False
        self._rest = np.zeros(0, dtype=np.int16)  # less than a frame, waiting for more
        media.on_signal.append(self._on_signal)

    def _on_signal(self, chunk: Pcm) -> None:
        if self.pool.decided(self.channel):
            # Decided and followed to its end: stop costing the pacing tick anything.
            # Not now: the session is going through its subscribers.
            if not self._leaving:
                self._leaving = True
                asyncio.get_running_loop().call_soon(self.close)
            return
        # The usual 20 ms packet goes as it is. (``is``: an int16 array has numpy's own
        # int16 dtype; an equal one that is not takes the general path below, as safely.)
        if chunk.dtype is _INT16 and chunk.shape == _ONE_FRAME and not self._rest.size:
            self.pool.queue(self.channel, chunk)
            return
        x = np.asarray(chunk, dtype=np.int16).reshape(-1)
        if self._rest.size:
            x = np.concatenate([self._rest, x])
        whole = x.size - x.size % FRAME
        for k in range(0, whole, FRAME):  # 30 ms packets, or silence of any length
            self.pool.queue(self.channel, x[k : k + FRAME])
        self._rest = x[whole:]

    def deliver(self, event: AmdEvent) -> None:
        self.events.append(event)
        self._changed.set()

    async def wait_for(self, want: Callable[[list[AmdEvent]], bool], timeout: float | None) -> bool:
        """Wait until ``want(events)`` holds; False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not want(self.events):
            self._changed.clear()
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                return False
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                return want(self.events)
        return True

    @property
    def result(self) -> AmdResult:
        return result_of(self.events)

    def close(self) -> None:
        """Stop listening and give the pool's channel back."""
        if not self._active:
            return
        self._active = False
        self.media.on_signal.remove(self._on_signal)
        self.pool.release(self.channel)


class AmdPool:
    """One detector bank for all calls of the process, analysed once per frame period
    (or once per pacing tick with ``per_tick``; see the module docstring)."""

    def __init__(
        self, config: AmdConfig | None = None, size: int = 64, *, per_tick: bool = False
    ) -> None:
        self.config = config or AmdConfig()
        self.per_tick = per_tick
        self._bank = AmdBank(size, self.config)
        self._free = list(range(size - 1, -1, -1))
        self._owners: dict[int, AmdListener] = {}
        self._live: set[int] = set()  # listening and not done: whose frames a pass waits for
        self._pending: dict[int, list[Pcm]] = {}
        self._scheduled = False  # a pass is queued with call_soon
        self._timer: asyncio.TimerHandle | None = None  # the pass one period after a frame
        self._loop: asyncio.AbstractEventLoop | None = None
        self.batches = 0  # analyses run (for tests and the bench: calls per analysis)
        self.frames = 0

    @property
    def calls(self) -> int:
        return len(self._owners)

    def listen(self, media: AudioTap, config: AmdConfig | None = None) -> AmdListener:
        """Start detecting on ``media`` from its next frame (call this at the answer);
        ``config`` overrides the pool's parameters for this call."""
        if not self._free:
            grown = self._bank.channels
            self._bank.grow(grown)
            self._free = list(range(2 * grown - 1, grown - 1, -1))
        ch = self._free.pop()
        self._bank.reset(ch, config)
        listener = AmdListener(self, ch, media)
        self._owners[ch] = listener
        self._live.add(ch)
        return listener

    def release(self, channel: int) -> None:
        self._pending.pop(channel, None)
        self._live.discard(channel)
        if self._owners.pop(channel, None) is not None:
            self._free.append(channel)

    def decided(self, channel: int) -> bool:
        """The call's detector has nothing more to say (its decision, beep and message
        time are out)."""
        return self._bank.done(channel)

    def push(self, channel: int, frame: Pcm) -> None:
        """Queue one 20 ms frame of ``channel`` for the next pass. A call that hands over
        several before it (a burst after a delivery hold, a late pass) queues them all:
        forcing a pass per extra frame would make a late loop later still."""
        if self._bank.done(channel):
            return  # decided and followed: nothing more to analyse for this call
        x = np.asarray(frame, dtype=np.int16).reshape(-1)
        if x.size != FRAME:  # not 20 ms at 8 kHz: pad or cut (AMD works on 8 kHz frames)
            x = np.resize(np.concatenate([x, np.zeros(FRAME, dtype=np.int16)]), FRAME)
        self.queue(channel, x)

    def queue(self, channel: int, x: Pcm) -> None:
        """`push` for a frame known to be 160 int16 samples of a channel that is not done
        (what `AmdListener` hands over: it checked both, and this runs for every call
        every 20 ms)."""
        queued = self._pending.get(channel)
        if queued is None:
            self._pending[channel] = [x]
        else:
            queued.append(x)
        loop = self._loop
        # Asking for the running loop costs as much as the rest of this: while the loop
        # of the last pass runs, it is the one (the pool serves one thread).
        if loop is None or not loop.is_running():
            loop = asyncio.get_running_loop()
            if loop is not self._loop:  # a pass or timer of a closed loop never ran
                self._loop = loop
                self._scheduled = False
                self._timer = None
        if self._scheduled:
            return
        if self.per_tick or len(self._pending) >= len(self._live):
            # Every call still analysed has a frame waiting: the period's last tick.
            self._scheduled = True
            loop.call_soon(self.run)
        elif self._timer is None:
            self._timer = loop.call_later(FRAME / AMD_RATE, self.run)

    def run(self) -> None:
        """Analyse the pending frames of all calls in one pass and deliver the events:
        one bank analysis per number of frames queued (almost always one)."""
        self._scheduled = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        by_count: dict[int, list[int]] = {}
        for ch, queued in pending.items():
            by_count.setdefault(len(queued), []).append(ch)
        done = self._bank.done
        for count, rows in by_count.items():
            # One concatenation, not np.stack (a third of its cost for 250 calls).
            frames = np.concatenate([x for c in rows for x in pending[c]])
            frames = frames.reshape(len(rows), count * FRAME)
            self.batches += 1
            self.frames += count * len(rows)
            for ch, event in self._bank.feed(frames, rows):
                owner = self._owners.get(ch)
                if owner is not None:
                    owner.deliver(event)
            # The next pass waits for a call whose detector is done no more.
            self._live.difference_update([c for c in rows if done(c)])


class AmdCall(Protocol):
    """What `run_answered` needs from a call (``telephony.call.Call`` provides it)."""

    @property
    def media(self) -> AudioTap: ...

    def flush(self) -> None: ...

    def wait_ended(self, timeout: float | None = None) -> Awaitable[object]: ...


@dataclass
class Answered(Generic[R]):
    """The outcome of an answered call under AMD."""

    result: AmdResult
    run: R | None = None  # the dialogue's result, when one ran
    outcome: str | None = None  # an AMD_OUTCOMES value, or None: the dialogue's own
    hung_up: bool = False  # the callee hung up before we knew who answered


def _decided(events: list[AmdEvent]) -> bool:
    return any(isinstance(e, AmdDecision) for e in events)


def _message_ready(events: list[AmdEvent]) -> bool:
    return any(isinstance(e, AmdMessageReady) for e in events)


def _machine(events: list[AmdEvent]) -> bool:
    return any(isinstance(e, AmdDecision) and e.answered_by == "machine" for e in events)


async def run_answered(
    call: AmdCall,
    pool: AmdPool,
    options: AmdOptions,
    dialogue: Callable[[AnsweredBy], Awaitable[R]],
) -> Answered[R]:
    """Detect who answered ``call`` and run ``dialogue`` (a fresh run per call) accordingly.

    ``dialogue(answered_by)`` is told who it talks to ("machine": after the beep), so a
    tree can see ``answered_by`` among its variables.
    """
    cfg = options.config
    listener = pool.listen(call.media, cfg)
    ended = asyncio.ensure_future(call.wait_ended())

    async def until(want: Callable[[list[AmdEvent]], bool], timeout: float) -> bool:
        """Wait for ``want``; False at once if the call ends first (no more frames come)."""
        waiting = asyncio.ensure_future(listener.wait_for(want, timeout))
        await asyncio.wait({waiting, ended}, return_when=asyncio.FIRST_COMPLETED)
        if not waiting.done():
            waiting.cancel()
            return want(listener.events)
        return waiting.result()

    try:
        # Every path of the detector decides within initial_silence or total_analysis.
        limit = max(cfg.initial_silence_ms, cfg.total_analysis_ms) / 1000 + 1.0
        if not await until(_decided, limit) and ended.done():
            return Answered(listener.result, hung_up=True)
        result = listener.result
        if result.answered_by == "fax":
            return Answered(result, outcome="fax")
        if result.answered_by in ("human", "unknown"):
            talk = asyncio.ensure_future(dialogue(result.answered_by))
            watch = asyncio.ensure_future(
                listener.wait_for(_machine, cfg.beep_watch_ms / 1000 + 0.1)
            )
            done, _ = await asyncio.wait({talk, watch}, return_when=asyncio.FIRST_COMPLETED)
            if talk in done or not watch.result():
                watch.cancel()
                return Answered(listener.result, run=await talk)
            talk.cancel()  # "Leave a message." + beep: a machine after all
            with contextlib.suppress(asyncio.CancelledError):
                await talk
            call.flush()
        if options.on_machine == "hangup":
            return Answered(listener.result, outcome="machine")
        if not await until(_message_ready, cfg.follow_ms / 1000 + 1.0) and ended.done():
            return Answered(listener.result, outcome="machine", hung_up=True)
        run = await dialogue("machine")
        return Answered(listener.result, run=run, outcome="left-message")
    finally:
        ended.cancel()
        listener.close()


_shared: AmdPool | None = None


def shared_pool() -> AmdPool:
    """The process's pool (one bank for all calls placed by this process)."""
    global _shared
    if _shared is None:
        _shared = AmdPool()
    return _shared
