"""The received signal in RTP order, for detection (sans-I/O).

Playout (`autocall.media.jitter`) answers "what do we hear at this tick"; detection
(in-band DTMF, speech, answering-machine) must answer "what did the far end send".
A packet that arrives after its playout time is lost to playout but not to the signal,
and a sender that pauses and then sends its held packets at once sent a continuous
tone. So `ReorderBuffer` passes on audio in sequence-number order, placed by timestamp:

- the next packet in sequence is released as soon as it is there, however late;
- a hole in the *sequence* (a packet not yet arrived) is waited for up to ``window``
  seconds after the first packet beyond it arrived (or until ``max_packets`` wait);
  then it is skipped: a hole of at most ``bridge`` samples (one lost 20 or 30 ms packet)
  is filled with a continuation of the audio on both sides (`autocall.media.conceal`),
  so a lost packet never splits a tone into two key presses nor leaves a phase jump in
  it, and the signal keeps its length; a longer one becomes silence (so a lost pause
  still keeps two keys apart), and `take_hole` tells the caller how much, for it is no
  pause of the sender's;
- a gap in the *timestamps* between consecutive sequence numbers is what the sender
  meant (silence suppression, the end of a talk spurt): it becomes silence, capped at
  ``max_gap`` samples, and it is what separates two presses of the same key (ITU-T
  Q.24: a pause of 40 ms or more separates digits);
- gaps in *arrival* (a sender pausing, a network holding packets) change nothing.

Duplicates and packets whose place has been passed are counted and dropped.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import numpy.typing as npt

from autocall.media.conceal import conceal
from autocall.media.rtp import Unwrapper

__all__ = ["ReorderBuffer"]

Samples = npt.NDArray[np.int16]
_NOTHING: Samples = np.zeros(0, np.int16)  # held for a packet that carries no audio


class ReorderBuffer:
    """Sequence-ordered, timestamp-placed audio of one source (see module docstring)."""

    def __init__(
        self,
        *,
        window: float = 0.2,
        max_packets: int = 50,
        bridge: int = 240,
        max_gap: int = 1600,
    ) -> None:
        self.window = window
        self.max_packets = max_packets
        self.bridge = bridge
        self.max_gap = max_gap
        self._seq = Unwrapper(16)
        self._ts = Unwrapper(32)
        self._held: dict[int, tuple[int, Samples, float]] = {}
        self._ready: list[Samples] = []  # released by push, not yet popped
        self._next_seq: int | None = None
        self._next_ts = 0
        self._complete = 0  # RTP time up to which every packet was passed on (`skip` too)
        self._last_arrival: float | None = None
        self.late = 0  # arrived after the window gave up waiting for it
        self.duplicates = 0  # a second copy of a packet
        self._gave_up: deque[int] = deque(maxlen=64)  # sequence numbers skipped lately
        self.skipped = 0  # packets never arrived within the window
        self.released = 0  # samples passed on, silence included
        # Set by `mark_idle`: the timestamp gap (samples of silence passed on) before the
        # first audio released after it; None until that audio comes.
        self.resume_gap: int | None = None
        self._watch = False
        self.hole = 0  # silence put in for the last run of lost packets, not yet taken
        self._last: Samples = np.zeros(0, np.int16)  # the audio released last
        self.concealed = 0  # samples filled in for single lost packets

    def reset(self) -> list[Samples]:
        """A new source starts: release what is held (holes filled), then forget."""
        out, self._ready = self._ready, []
        for es in sorted(self._held):
            self._emit(out, es, skipped=True)
        self._held.clear()
        self._seq.reset()
        self._ts.reset()
        self._next_seq = None
        self._next_ts = 0
        self._complete = 0
        self._last_arrival = None
        self._gave_up.clear()
        self._watch = False
        self.hole = 0
        return out

    def mark_idle(self) -> None:
        """The caller fills an arrival pause with silence from now on: note in
        ``resume_gap`` how much silence the *timestamps* put before the audio that comes
        next (0: the sender never paused, whatever the arrival times said).

        Audio released and not yet popped comes next, and it follows on directly (only
        the in-sequence, gap-free case is released at push): the silence goes in
        between the last pop and the packets read after it."""
        self._watch = not self._ready
        self.resume_gap = None if self._watch else 0

    @property
    def next_ts(self) -> int:
        """The extended RTP timestamp just after the last sample released (≡ the 32-bit
        timestamp modulo 2³²): where the audio popped so far ends on the RTP clock."""
        return self._next_ts

    @property
    def complete_ts(self) -> int:
        """Extended RTP timestamp up to which the stream is complete: every packet before
        it was passed on (audio) or skipped in line (`skip`: a packet without audio, such
        as the first of an RFC 4733 event, whose timestamp is its start)."""
        return max(self._next_ts, self._complete)

    def take_hole(self) -> int:
        """Samples of silence put in for the last run of lost packets released since the
        last call (0 if none): not a pause of the sender's, whatever the detector hears."""
        hole, self.hole = self.hole, 0
        return hole

    def push(
        self, seq: int, ts: int, samples: Samples, now: float, read: float | None = None
    ) -> None:
        """One packet's decoded audio with its sequence number, timestamp and arrival
        (``now``), and when it was read (``read``, on the same clock; the arrival if
        None). A receiver that is behind reads packets that arrived long ago: `idle`
        and the wait for a hole count from the reading, so a backlog being worked through is
        never a pause, and a packet still in it is not given up for lost."""
        n = len(samples)
        if n == 0:
            return
        es = self._seq(seq)
        ets = self._ts(ts)
        at = now if read is None or read < now else read
        self._last_arrival = at
        nxt = self._next_seq
        if nxt is not None and es < nxt:
            if es in self._gave_up:
                self.late += 1
            else:
                self.duplicates += 1
            return
        if es == nxt and not self._held and ets == self._next_ts:
            # In sequence, nothing waiting, no gap: ready at once (the common case).
            if self._watch:
                self._watch, self.resume_gap = False, 0
            self._ready.append(samples)
            self._last = samples
            self.released += n
            self._next_seq = es + 1
            self._next_ts = ets + n
            return
        if es in self._held:
            self.duplicates += 1
            return
        self._held[es] = (ets, samples, at)  # a hole is waited for from the reading on

    def skip(self, seq: int, ts: int, now: float, read: float | None = None) -> None:
        """A packet of this stream that carries no audio for the signal (an RFC 4733
        event on the audio's SSRC shares its sequence numbers, RFC 3550 §5.1): its
        sequence number is no hole to wait for. Waiting ``window`` for it held every
        key pressed after an event back by 200 ms; it is no loss either, and the
        timestamps it leaves out become the sender's silence."""
        es = self._seq(seq)
        ets = self._ts(ts)
        nxt = self._next_seq
        if nxt is not None and es < nxt:
            return
        if es == nxt and not self._held:
            self._next_seq = es + 1
            self._complete = max(self._complete, ets)
            return
        at = now if read is None or read < now else read
        self._held.setdefault(es, (ets, _NOTHING, at))

    def idle(self, now: float, after: float) -> bool:
        """Nothing held and nothing arrived (or was read) for ``after`` seconds (or ever)."""
        last = self._last_arrival
        return not self._held and not self._ready and (last is None or now - last >= after)

    def pop(self, now: float) -> list[Samples]:
        """The audio that can be passed on now, in order (silence where the sender was)."""
        held = self._held
        out = self._ready
        if not held:
            if out:
                self._ready = []
            return out
        self._ready = []
        if self._next_seq is None:
            first = min(held)
            run = 0
            while first + run in held:
                run += 1
            waited = now - min(arrival for _, _, arrival in held.values())
            if run < 3 and waited < self.window and len(held) < self.max_packets:
                return out  # the first packets may still arrive out of order
            self._next_seq = first
            self._next_ts = held[first][0]
        while held:
            nxt = self._next_seq
            assert nxt is not None
            if nxt in held:
                self._emit(out, nxt, skipped=False)
                continue
            waited = now - min(arrival for _, _, arrival in held.values())
            if waited < self.window and len(held) < self.max_packets:
                break
            target = min(held)
            self.skipped += target - nxt
            self._gave_up.extend(range(max(nxt, target - 64), target))
            self._emit(out, target, skipped=True)
        return out

    def _emit(self, out: list[Samples], es: int, *, skipped: bool) -> None:
        ets, samples, _ = self._held.pop(es)
        if samples is _NOTHING:  # a packet without audio (`skip`): only its place
            if self._next_seq is None:
                self._next_ts = ets
            self._next_seq = es + 1
            self._complete = max(self._complete, ets)  # what came before it is passed on
            return
        end = ets + len(samples)
        silent = 0
        if self._next_seq is not None:
            gap = ets - self._next_ts
            if gap > 0 and skipped and gap <= self.bridge:
                out.append(conceal(self._last, samples, gap))
                self.released += gap
                self.concealed += gap
            elif gap > 0:
                silent = min(gap, self.max_gap)
                out.append(np.zeros(silent, dtype=np.int16))
                self.released += silent
                if skipped:
                    self.hole = silent
            elif gap < 0:
                samples = samples[-gap:]  # overlaps what was passed on already
        if self._watch:
            self._watch, self.resume_gap = False, silent
        if len(samples):
            out.append(samples)
            self._last = samples
            self.released += len(samples)
        self._next_seq = es + 1
        self._next_ts = max(self._next_ts, end)
