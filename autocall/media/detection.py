"""In-band DTMF detection for every call of a `MediaEngine` at once (DESIGN.md §3, batches).

`autocall.audio.dtmf.DtmfDetectorBank` analyses many channels with one set of numpy
calls; at 500 calls that costs about a fourteenth of a detector per call. A session
pushes its received audio in RTP order as it becomes available
(`autocall.media.reorder`): nothing while its sender pauses, several frames at once
when held packets arrive in a burst (or when a loaded machine reads a backlog), and
silence once its stream has been idle for a while, which keeps the channels of a bank
roughly in step. The pool feeds a bank one 100 ms batch when all its calls hold one,
or when one call has got `_LEAD_AFTER` batches ahead of another.

Every call's detector sees exactly the audio its session pushed, in order, nothing
added and nothing left out (issue 22: a wrong digit is worse than a late one):

- a call that holds less than a batch when its bank is fed is *held* out of that feed
  (`DtmfDetectorBank.feed`'s ``hold``): its samples wait for the next feed and its
  detector state does not move. Padding it with silence instead, as this pool once
  did, put a pause in the middle of whatever it was receiving, and a tone cut by a
  pause is two presses of the key ('123456788' for '12345678' in the loaded runs);
- a call whose buffer is full when it pushes gets its bank fed (the others held as
  needed) until the push fits. Refusing the push, as this pool once did, cut audio out
  of the middle of the call: a tone cut out is a key never pressed ('1234678').
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from autocall.audio.dtmf import DtmfDetectorBank, DtmfEvent

__all__ = ["DetectorPool", "Slot"]

Slot = tuple[int, int]
EventCallback = Callable[[DtmfEvent], None]
ProgressCallback = Callable[[int], None]
_CAPACITY = 8  # batches held per call: a burst of 800 ms of held packets fits
_LEAD_AFTER = 4  # batches: a pause longer than the signal's idle time (0.25 s) plus a batch


class _Bank:
    def __init__(self, size: int, batch: int, rate: int) -> None:
        self.det = DtmfDetectorBank(size, rate)
        self.batch = batch
        self.cap = _CAPACITY * batch
        self.buf = np.zeros((size, self.cap), dtype=np.int16)
        # Samples each call holds: a list, as `push` (every call, every tick) reads and
        # writes one entry; `run` and `_feed` take it as an array when they look at all.
        self.fill = [0] * size
        self.rows = list(self.buf)  # each call's row of `buf`, a view: cheaper to slice
        self.active = np.zeros(size, dtype=bool)
        self.owners: list[EventCallback | None] = [None] * size
        self.taken = np.zeros(size, dtype=np.int64)  # samples analysed per call since attach
        self.progress: dict[int, ProgressCallback] = {}  # calls that wait for analysis
        self.held = 0  # times a call behind the others was held out of a feed
        self.forced = 0  # feeds run to make room for a push (the call was a burst ahead)
        self.calls = 0
        self._pushes = 0  # since the last look at the fill levels

    def attach(self, ch: int, on_event: EventCallback) -> None:
        self.det.reset(ch)
        # A row is zero beyond its fill (pushes write at the fill, `_feed` shifts zeros
        # in): clearing up to the highest fill clears it without touching idle pages.
        self.buf[ch, : max(self.fill)] = 0
        self.fill[ch] = 0
        self.taken[ch] = 0
        self.active[ch] = True
        self.owners[ch] = on_event
        self.calls += 1

    def detach(self, ch: int) -> None:
        self.calls -= int(self.active[ch])
        self.active[ch] = False
        self.owners[ch] = None
        self.progress.pop(ch, None)
        self.buf[ch, : self.fill[ch]] = 0
        self.fill[ch] = 0

    def push(self, ch: int, frame: npt.NDArray[np.int16]) -> None:
        self._pushes += 1
        f, n = self.fill[ch], len(frame)
        if f + n <= self.cap:  # the common case: it fits
            self.rows[ch][f : f + n] = frame
            self.fill[ch] = f + n
            return
        cap = self.cap
        done = 0
        while done < n:
            f = self.fill[ch]
            if f == cap:  # a burst beyond what the bank holds: analyse, never drop
                self.forced += 1
                self._feed()
                continue
            k = min(cap - f, n - done)
            self.rows[ch][f : f + k] = frame[done : done + k]
            self.fill[ch] = f + k
            done += k

    def run(self, behind_only: bool = False) -> bool:
        """Analyse one batch if every call holds one (or one is far ahead); True if done.

        With ``behind_only``, only when the calls already hold a second batch.
        """
        # Every call pushes once a tick, and a batch is several ticks: looking at the
        # fill levels once per round of pushes (not after every wake-up) is enough.
        if self._pushes < self.calls or not self.calls:
            return False
        fill = np.array(self.fill)[self.active]
        low = int(fill.min())
        if low >= (2 if behind_only else 1) * self.batch or fill.max() >= _LEAD_AFTER * self.batch:
            self._feed()
            return True  # _pushes kept: a second batch may be ready, look again next time
        if low < self.batch:
            self._pushes = 0  # nothing to do before another round of pushes
        return False

    def _feed(self) -> None:
        """One batch of every call that holds one; the others are held out, untouched."""
        b = self.batch
        fill = np.array(self.fill)
        ready = fill >= b
        hold = ~ready
        self.held += int(np.count_nonzero(hold & self.active))
        events = self.det.feed(self.buf[:, :b], hold=hold)
        rows = np.flatnonzero(ready)
        # Beyond each call's fill the buffer is zero, so only the part up to the highest
        # fill moves: the copy is what the calls hold, not the whole capacity, and pages
        # past the high-water mark are never touched (the buffer is 8 batches a call
        # for bursts; resident memory follows what bursts really needed).
        high = max(int(fill.max()), b)
        self.buf[rows, : high - b] = self.buf[rows, b:high]
        self.buf[rows, high - b : high] = 0
        fill[rows] -= b
        self.fill = fill.tolist()
        self.taken[rows] += b
        for ch, ev in events:
            cb = self.owners[ch]
            if cb is not None:
                cb(ev)
        if self.progress:
            for ch, on_progress in list(self.progress.items()):
                if ready[ch]:
                    on_progress(int(self.taken[ch]))


class DetectorPool:
    """Slots in DTMF detector banks of ``bank_size`` calls, fed in ``batch``-sample steps."""

    def __init__(self, bank_size: int = 64, batch: int = 800, rate: int = 8000) -> None:
        hop = rate // 200  # the detector's 5 ms hop: a call held out of a feed keeps its place
        if batch <= 0 or batch % hop:
            raise ValueError(f"batch {batch} is not a positive multiple of {hop} samples (5 ms)")
        self.bank_size = bank_size
        self.batch = batch
        self.rate = rate
        self._banks: list[_Bank] = []
        self._free: list[Slot] = []
        self._turn = 0

    @property
    def calls(self) -> int:
        return sum(int(b.active.sum()) for b in self._banks)

    @property
    def held(self) -> int:
        """Times a call was held out of its bank's feed (it had less than a batch)."""
        return sum(b.held for b in self._banks)

    @property
    def forced(self) -> int:
        """Feeds run to make room for a push (a call a whole buffer ahead)."""
        return sum(b.forced for b in self._banks)

    def attach(self, on_event: EventCallback) -> Slot:
        """A call's slot; ``on_event`` gets each key press detected in its audio."""
        if not self._free:
            k = len(self._banks)
            self._banks.append(_Bank(self.bank_size, self.batch, self.rate))
            self._free = [(k, ch) for ch in reversed(range(self.bank_size))]
        slot = self._free.pop()
        self._banks[slot[0]].attach(slot[1], on_event)
        return slot

    def detach(self, slot: Slot) -> None:
        self._banks[slot[0]].detach(slot[1])
        self._free.append(slot)

    def analysed(self, slot: Slot) -> int:
        """Samples of the call's audio analysed since it was attached (its detector's
        event times count from the same first sample)."""
        return int(self._banks[slot[0]].taken[slot[1]])

    def quiet(self, slot: Slot) -> bool:
        """True if no key press can come out of the audio this call pushed so far (its
        detector times none and what waits for analysis is too faint for a tone)."""
        bank = self._banks[slot[0]]
        ch = slot[1]
        return bank.det.quiet(ch, bank.buf[ch, : bank.fill[ch]])

    def on_progress(self, slot: Slot, callback: ProgressCallback | None) -> None:
        """Call ``callback(analysed)`` after each feed that analyses this call's audio
        (after its events), until set to None: a call that waits for the detector to
        reach some point learns it in the same wake-up, not on its next tick."""
        bank = self._banks[slot[0]]
        if callback is None:
            bank.progress.pop(slot[1], None)
        else:
            bank.progress[slot[1]] = callback

    def pusher(self, slot: Slot) -> Callable[[npt.NDArray[np.int16]], None]:
        """`push` bound to one slot: the per-frame call of a call's media tick."""
        return functools.partial(self._banks[slot[0]].push, slot[1])

    def push(self, slot: Slot, frame: npt.NDArray[np.int16]) -> None:
        """The call's received audio, any length (RTP order; silence when idle)."""
        self._banks[slot[0]].push(slot[1], frame)

    def run(self, budget: int = 1) -> None:
        """Analyse up to ``budget`` banks whose calls all hold a batch (after each tick).

        One bank's batch costs about half a millisecond at 64 calls; doing all banks in
        the same wake-up would delay the next wake-up's packets by several. A bank
        holds several batches, so waiting a few wake-ups for its turn loses nothing; one
        that has fallen a whole batch behind is analysed at once, whatever the budget.
        """
        banks = self._banks
        n = len(banks)
        start = self._turn
        for i in range(n):
            k = (start + i) % n
            if banks[k].run(behind_only=budget <= 0) and budget > 0:
                budget -= 1
                self._turn = (k + 1) % n
