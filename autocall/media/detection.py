"""In-band DTMF detection for every call of a `MediaEngine` at once (DESIGN.md §3, batches).

`autocall.audio.dtmf.DtmfDetectorBank` analyses many channels with one set of numpy
calls; at 500 calls that costs about a fourteenth of a detector per call. A bank needs
the same number of samples from every channel per feed. A session pushes its received
audio in RTP order as it becomes available (`autocall.media.reorder`): nothing while
its sender pauses, several frames at once when held packets arrive in a burst, and
silence once its stream has been idle for a while, which keeps the channels of a bank
roughly in step. The pool feeds a bank when all its calls hold a 100 ms batch. A bank
holds `_CAPACITY` batches per call, so bursts are kept, not dropped; a call that has
fallen `_PAD_AFTER` batches behind the leader is padded with silence rather than
holding the others up any longer, and a call that joins is padded to where the
others are. A call that is padded is told how much (``on_pad``): that silence lands in
the middle of what it was receiving (often a tone whose next packet was lost and is
being waited for), and the call must not take it for a pause between two presses.
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
PadCallback = Callable[[int], None]
_CAPACITY = 8  # batches held per call: a burst of 800 ms of held packets fits
_PAD_AFTER = 4  # batches: a pause longer than the signal's idle time (0.25 s) plus a batch


class _Bank:
    def __init__(self, size: int, batch: int, rate: int) -> None:
        self.det = DtmfDetectorBank(size, rate)
        self.batch = batch
        self.buf = np.zeros((size, _CAPACITY * batch), dtype=np.int16)
        self.fill = np.zeros(size, dtype=np.int64)
        self.active = np.zeros(size, dtype=bool)
        self.owners: list[EventCallback | None] = [None] * size
        self.pad_owners: list[PadCallback | None] = [None] * size
        self.padded = 0  # samples of silence padded in for calls far behind
        self.dropped = 0
        self.calls = 0
        self._pushes = 0  # since the last look at the fill levels

    def attach(self, ch: int, on_event: EventCallback, on_pad: PadCallback | None) -> None:
        others = self.fill[self.active]
        self.det.reset(ch)
        # A row is zero beyond its fill (pushes write at the fill, `_feed` shifts zeros
        # in): clearing up to the highest fill clears it without touching idle pages.
        self.buf[ch, : int(self.fill.max())] = 0
        self.fill[ch] = int(others.min()) if others.size else 0
        self.active[ch] = True
        self.owners[ch] = on_event
        self.pad_owners[ch] = on_pad
        self.calls += 1

    def detach(self, ch: int) -> None:
        self.calls -= int(self.active[ch])
        self.active[ch] = False
        self.owners[ch] = None
        self.pad_owners[ch] = None
        self.buf[ch, : int(self.fill[ch])] = 0
        self.fill[ch] = 0

    def push(self, ch: int, frame: npt.NDArray[np.int16]) -> None:
        self._pushes += 1
        f = int(self.fill[ch])
        n = len(frame)
        if f + n > self.buf.shape[1]:
            self.dropped += 1
            return
        self.buf[ch, f : f + n] = frame
        self.fill[ch] = f + n

    def run(self, behind_only: bool = False) -> bool:
        """Analyse one batch if every call holds one (or one is far ahead); True if done.

        With ``behind_only``, only when the calls already hold a second batch.
        """
        # Every call pushes once a tick, and a batch is several ticks: looking at the
        # fill levels once per round of pushes (not after every wake-up) is enough.
        if self._pushes < self.calls or not self.calls:
            return False
        fill = self.fill[self.active]
        low = int(fill.min())
        if low >= (2 if behind_only else 1) * self.batch or fill.max() >= _PAD_AFTER * self.batch:
            self._feed()
            return True  # _pushes kept: a second batch may be ready, look again next time
        if low < self.batch:
            self._pushes = 0  # nothing to do before another round of pushes
        return False

    def _feed(self) -> None:
        b = self.batch
        events = self.det.feed(self.buf[:, :b])
        # Beyond each call's fill the buffer is zero, so only the part up to the highest
        # fill moves: the copy is what the calls hold, not the whole capacity, and pages
        # past the high-water mark are never touched (the buffer is 8 batches a call
        # for bursts; resident memory follows what bursts really needed).
        high = max(int(self.fill.max()), b)
        self.buf[:, : high - b] = self.buf[:, b:high]
        self.buf[:, high - b : high] = 0
        short = np.flatnonzero(self.active & (self.fill < b))
        pads = [(int(ch), b - int(self.fill[ch])) for ch in short]
        np.maximum(self.fill - b, 0, out=self.fill)
        for ch, ev in events:
            cb = self.owners[ch]
            if cb is not None:
                cb(ev)
        for ch, n in pads:
            self.padded += n
            pad_cb = self.pad_owners[ch]
            if pad_cb is not None:
                pad_cb(n)


class DetectorPool:
    """Slots in DTMF detector banks of ``bank_size`` calls, fed in ``batch``-sample steps."""

    def __init__(self, bank_size: int = 64, batch: int = 800, rate: int = 8000) -> None:
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
    def dropped(self) -> int:
        """Pushes refused because their call held `_CAPACITY` batches already."""
        return sum(b.dropped for b in self._banks)

    @property
    def padded(self) -> int:
        """Samples of silence padded in for calls far behind the others of their bank."""
        return sum(b.padded for b in self._banks)

    def attach(self, on_event: EventCallback, on_pad: PadCallback | None = None) -> Slot:
        """A call's slot; ``on_event`` gets each key press detected in its audio,
        ``on_pad`` the samples of silence padded in after what it pushed so far."""
        if not self._free:
            k = len(self._banks)
            self._banks.append(_Bank(self.bank_size, self.batch, self.rate))
            self._free = [(k, ch) for ch in reversed(range(self.bank_size))]
        slot = self._free.pop()
        self._banks[slot[0]].attach(slot[1], on_event, on_pad)
        return slot

    def detach(self, slot: Slot) -> None:
        self._banks[slot[0]].detach(slot[1])
        self._free.append(slot)

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
