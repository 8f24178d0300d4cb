"""RTP source validation (RFC 3550 §6.2.1 and appendix A.1), sans-I/O.

One receive stream latches one synchronisation source. A source is *valid* once
``min_sequential`` packets with consecutive sequence numbers have arrived (A.1's
probation; the packets held meanwhile are released with the one that completes it).
After that:

- packets of another SSRC are counted in ``ignored`` and dropped, however steady; such a
  *challenger* takes the stream over only when it has passed probation AND the latched
  source has been silent for ``stale`` seconds (a PBX that changes SSRC without a
  re-INVITE, a sender restart). Two interleaved streams (a previous call's tail on a
  reused port, a stray second stream from the caller's address) therefore never take
  turns: the first valid one keeps the stream.
- packets of the latched SSRC from a foreign sequence or timestamp space (A.1's
  ``MAX_DROPOUT`` / ``MAX_MISORDER`` rules, and a timestamp jump beyond ``max_ts_jump``)
  are ignored, unless two of them in a row are consecutive: then the source restarted
  and its new space is adopted (A.1's ``bad_seq``). Unlike A.1 a good packet in between
  forgets the candidate, so an interleaved foreign space never takes over.
- `touch` keeps the latched source alive without a packet to check: RFC 4733 event
  packets (on the audio SSRC or on their own) are the caller pressing a key while its
  audio may pause for the whole event; they must count as the source being alive, or a
  stray stream would take the stream over in the middle of a digit.

``check`` answers with what to deliver (`Admit`): the packets to pass on, in arrival
order, and whether they start a new source (the caller then restarts its per-source
state: statistics, jitter and reorder buffers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["Admit", "SourceValidator"]

T = TypeVar("T")

_SEQ_MOD = 1 << 16
_TS_MOD = 1 << 32
# RFC 3550 A.1: "MIN_SEQUENTIAL = 2", "MAX_DROPOUT = 3000", "MAX_MISORDER = 100".
MIN_SEQUENTIAL = 2
MAX_DROPOUT = 3000
MAX_MISORDER = 100
_HELD = 8  # packets kept per source on probation


@dataclass(frozen=True, slots=True)
class Admit(Generic[T]):
    """What `SourceValidator.check` lets through: ``items`` in order; ``new_source`` when
    they are the first of a newly latched source (reset per-source state first);
    ``contested`` for a packet of a steady challenger, ignored while the latched source
    lives (a caller may look at it all the same, see `MediaSession`): ``items`` are then
    that challenger's packets not shown before (the ones held on probation, this one)."""

    items: tuple[T, ...] = ()
    new_source: bool = False
    contested: bool = False


@dataclass(slots=True)
class _Probe(Generic[T]):
    """A source on probation: its last sequence number and the packets held meanwhile."""

    seq: int
    ts: int
    seen: float
    run: int = 1
    held: list[T] = field(default_factory=list)
    steady: bool = False  # passed probation once; stays so while it keeps to its space


def _seq_delta(a: int, b: int) -> int:
    """``a - b`` in 16-bit sequence space, in ``-2**15 .. 2**15 - 1``."""
    d = (a - b) % _SEQ_MOD
    return d - _SEQ_MOD if d >= _SEQ_MOD // 2 else d


def _ts_delta(a: int, b: int) -> int:
    d = (a - b) % _TS_MOD
    return d - _TS_MOD if d >= _TS_MOD // 2 else d


class SourceValidator(Generic[T]):
    """Latch one SSRC with probation; ignore and count every other source (see module)."""

    def __init__(
        self,
        *,
        min_sequential: int = MIN_SEQUENTIAL,
        stale: float = 0.25,
        max_ts_jump: int = 8000 * 60,
        max_challengers: int = 4,
    ) -> None:
        self.min_sequential = min_sequential
        self.stale = stale
        self.max_ts_jump = max_ts_jump
        self.max_challengers = max_challengers
        self.ssrc: int | None = None
        self.ignored = 0  # packets of other sources, or of a foreign seq/ts space
        self.switches = 0  # times a new source took the stream over after the first
        self._max_seq = 0
        self._ts = 0
        self._alive = 0.0  # when the latched source last showed a sign of life
        self._bad: _Probe[T] | None = None  # a restart candidate of the latched SSRC
        self._probes: dict[int, _Probe[T]] = {}

    def reset(self) -> None:
        """Forget the latched source (a re-INVITE named a new party); counters stay."""
        self.ssrc = None
        self._bad = None
        self._probes.clear()

    def competing(self, ssrc: int) -> bool:
        """True if ``ssrc`` sent audio that was checked and not latched (a stray stream)."""
        return ssrc in self._probes

    def touch(self, now: float) -> None:
        """The latched source is alive though no packet was checked (an RFC 4733 event)."""
        if self.ssrc is not None:
            self._alive = max(self._alive, now)

    def next_in_line(self, ssrc: int, seq: int, ts: int, now: float) -> bool:
        """Fast path: True (and noted) if this is the latched source's next packet or one
        a little ahead of it, in its timestamp space. Otherwise call `check`."""
        if ssrc != self.ssrc or not 0 < (seq - self._max_seq) % _SEQ_MOD < MAX_DROPOUT:
            return False
        if abs(_ts_delta(ts, self._ts)) > self.max_ts_jump:
            return False
        self._max_seq, self._ts, self._alive, self._bad = seq, ts, now, None
        return True

    def check(self, ssrc: int, seq: int, ts: int, now: float, item: T) -> Admit[T]:
        """One packet's header fields and arrival time; ``item`` is what to pass on."""
        if ssrc == self.ssrc:
            return self._latched(seq, ts, now, item)
        probe = self._probe(ssrc, seq, ts, now, item)
        if probe is None or not probe.steady:
            if self.ssrc is not None:
                self.ignored += 1
            return Admit()
        if self.ssrc is not None:
            if now - self._alive < self.stale:
                self.ignored += 1
                # A contested packet goes on to the caller's look at the challenger
                # (`MediaSession`): with the packets held on probation the first time,
                # so that look misses none of them (issue 22: the caller's stream, made
                # late and reordered by jitter, is the challenger of a stray stream).
                held = tuple(probe.held)
                probe.held.clear()  # only the packets that complete a take-over are passed on
                return Admit(held, contested=True)
            self.switches += 1
            items: tuple[T, ...] = (item,)
        else:
            items = tuple(probe.held)
        del self._probes[ssrc]
        self.ssrc, self._max_seq, self._ts, self._alive = ssrc, seq, ts, now
        self._bad = None
        self._probes.clear()
        return Admit(items, True)

    def _probe(self, ssrc: int, seq: int, ts: int, now: float, item: T) -> _Probe[T] | None:
        probes = self._probes
        probe = probes.get(ssrc)
        if probe is None:
            if len(probes) >= self.max_challengers:
                del probes[min(probes, key=lambda k: probes[k].seen)]
            probe = probes[ssrc] = _Probe(seq, ts, now, 1, [item])
            return probe
        d = _seq_delta(seq, probe.seq)
        if -MAX_MISORDER <= d <= 0:
            # Reordered (or duplicated) on probation: kept for the reorder stage to sort,
            # but the run of consecutive numbers goes on from the newest. The one just
            # before the newest makes a consecutive pair with it, swapped on the way: a
            # stream whose every pair arrives swapped must still pass (issue 22).
            if d == -1:
                probe.run += 1
                probe.steady = probe.steady or probe.run >= self.min_sequential
            probe.held.append(item)
            del probe.held[:-_HELD]
            return probe
        if d == 1:
            probe.run += 1
        elif probe.steady and 0 < d < MAX_DROPOUT:
            # A steady source whose packets were reordered on the way (a later one came
            # first): it stays steady, as a latched source would (A.1's in-order rule
            # with MAX_DROPOUT), and the run goes on from the newest.
            probe.run += 1
        else:
            probe.run = 1  # a gap: the run starts again (what is held stays, bounded)
            probe.steady = False
        probe.steady = probe.steady or probe.run >= self.min_sequential
        probe.seq, probe.ts, probe.seen = seq, ts, now
        probe.held.append(item)
        del probe.held[:-_HELD]
        return probe

    def _latched(self, seq: int, ts: int, now: float, item: T) -> Admit[T]:
        d = _seq_delta(seq, self._max_seq)
        in_space = (0 < d < MAX_DROPOUT or -MAX_MISORDER <= d <= 0) and abs(
            _ts_delta(ts, self._ts)
        ) <= self.max_ts_jump
        if in_space:
            self._bad = None
            if d > 0:
                self._max_seq, self._ts = seq, ts
            self._alive = max(self._alive, now)
            return Admit((item,))
        # A.1: a large jump is a foreign space, unless the next packet follows it (restart).
        bad = self._bad
        if bad is not None and _seq_delta(seq, bad.seq) == 1:
            self._bad = None
            self._max_seq, self._ts, self._alive = seq, ts, now
            return Admit((item,), True)
        self._bad = _Probe(seq, ts, now)
        self.ignored += 1
        return Admit()
