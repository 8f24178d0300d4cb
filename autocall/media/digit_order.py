"""Key presses from RTP in the order the far end pressed them (sans-I/O).

A gateway may send one key as audio tones and the next as an RFC 4733 telephone-event.
The two arrive at different delays: an event is complete when its end packet arrives,
while the in-band detector (`autocall.audio.dtmf`, in the shared banks of
`autocall.media.detection`) reports a tone only once its 100 ms batch has been analysed
and the release confirmed. Reported as they came, an event pressed 40-60 ms after a
tone came out first ('21' for '12').

Both kinds carry where they start on the stream's RTP clock: an event its timestamp (RFC
4733 §2.5.1: every packet of an event carries its start), a tone the detector's start
time, which `DigitOrder` maps back to the RTP timestamp of the audio it was heard in. So
an event is *held* until the detector has analysed the audio up to its timestamp plus
`SETTLE` (the release confirmation of a tone that ended just before it): every tone
pressed before the event has been reported by then, and goes first. A tone reported
meanwhile lets the held events that started before it go first. The hold is bounded: an
event goes after `MAX_HOLD` seconds whatever the detector did (a stream whose audio
stopped, a bank running late), so a call that sends only events waits at most about one
detector batch. An event also goes as soon as nothing can come from the detector before
it: the audio received up to its timestamp is complete (its sequence numbers say so) and
none of it waiting for analysis is loud enough for a tone, with no press under way (the
usual case: a caller who presses keys is silent meanwhile). Timestamps that do not
belong to the audio's timeline (another timestamp space, no audio yet) cannot be
ordered: those events go at once.

Positions on the detector's side are sample counts of the 8 kHz signal fed to it since
it was attached (``fed``); `fed` notes where a run of real audio lay on the RTP clock.
Silence fed for an arrival pause has no RTP time and is left out.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass
from typing import Literal

__all__ = ["MAX_HOLD", "SETTLE", "DigitOrder", "Press"]

# ITU-T Q.24 / `autocall.audio.dtmf`: a tone's release is confirmed after 7 hops of 5 ms
# without it (35 ms), one more hop for where its last observation ends: 40 ms at 8 kHz.
SETTLE = 320
# One detector batch (100 ms) and a 20 ms frame: the longest an event waits for the
# detector (the pacing tick polls, so the hold ends on the frame after this).
MAX_HOLD = 0.12
# An event further than this (RTP units, 8 kHz: 10 s) from the audio's timeline is not
# on its clock (a sender whose event timestamps are not its audio's), so not ordered.
MAX_SKEW = 80_000
_TS_MOD = 1 << 32
_SEGMENTS = 64  # runs of real audio remembered (contiguous runs merge: seconds of audio)


@dataclass(frozen=True, slots=True)
class Press:
    """A key press ready to be reported."""

    digit: str
    source: Literal["rfc4733", "inband"]
    duration_ms: float


@dataclass(frozen=True, slots=True)
class _Held:
    ts: int  # extended RTP timestamp of the event's start
    deadline: float
    press: Press


class DigitOrder:
    """Orders RFC 4733 events and in-band tones of one stream by where they start."""

    def __init__(
        self, settle: int = SETTLE, max_hold: float = MAX_HOLD, max_skew: int = MAX_SKEW
    ) -> None:
        self.settle = settle
        self.max_hold = max_hold
        self.max_skew = max_skew
        # Runs of real audio fed to the detector: (first sample, end sample, extended RTP
        # timestamp just after the run's last sample). The last run is kept apart in
        # `_start`, `_end`, `_ts_end` (None: no run yet): every frame of a call extends
        # it, and that must cost next to nothing.
        self._segments: deque[tuple[int, int, int]] = deque(maxlen=_SEGMENTS - 1)
        self._start = self._end = 0
        self._ts_end: int | None = None
        self._held: list[_Held] = []  # sorted by ts
        self._analysed = 0  # detector samples analysed so far
        self.held_events = 0  # events that had to wait for the detector
        self.released_by_bound = 0  # events that went after MAX_HOLD
        self.released_quiet = 0  # events that went because the audio before them was quiet

    @property
    def holding(self) -> bool:
        return bool(self._held)

    def fed(self, start: int, end: int, ts_end: int) -> None:
        """Detector samples [``start``, ``end``) are received audio whose last sample
        ends at extended RTP timestamp ``ts_end``."""
        last = self._ts_end
        if start == self._end and last is not None and ts_end - last == end - start:
            self._end, self._ts_end = end, ts_end  # follows on: the same run
            return
        if end <= start:
            return
        if last is not None:
            self._segments.append((self._start, self._end, last))
        self._start, self._end, self._ts_end = start, end, ts_end

    def new_timeline(self) -> list[Press]:
        """Another timestamp space begins (a new source): what is held goes now."""
        self._segments.clear()
        self._start = self._end = 0
        self._ts_end = None
        return self.flush()

    def event(self, press: Press, timestamp: int, now: float) -> list[Press]:
        """An RFC 4733 key with its 32-bit RTP ``timestamp``: what may be reported now."""
        ref = self._ts_end
        if ref is None:
            return [*self.flush(), press]  # no audio to order against
        d = (timestamp - ref) % _TS_MOD
        if d >= _TS_MOD // 2:
            d -= _TS_MOD
        if abs(d) > self.max_skew:
            return [*self.flush(), press]  # not on the audio's clock
        held = _Held(ref + d, now + self.max_hold, press)
        bisect.insort(self._held, held, key=lambda h: h.ts)
        out = self._release(self._analysed)
        if any(h is held for h in self._held):
            self.held_events += 1
        return out

    def inband(self, press: Press, start: int, now: float) -> list[Press]:
        """A tone the detector heard from sample ``start`` on: the events held that
        started before it go first, and so do those held past `max_hold` (the bound
        holds even when the tick that polls it comes late)."""
        ts = self._ts_at(start)
        if ts is None:
            return [*self.flush(), press]
        out = self.poll(now)
        k = 0
        while k < len(self._held) and self._held[k].ts < ts:
            k += 1
        out += [h.press for h in self._held[:k]]
        del self._held[:k]
        out.append(press)
        return out

    def analysed(self, upto: int) -> list[Press]:
        """The detector has analysed its first ``upto`` samples: the held events whose
        start it has passed by `settle` go."""
        self._analysed = max(self._analysed, upto)
        return self._release(self._analysed) if self._held else []

    def quiet(self, complete_ts: int) -> list[Press]:
        """The detector can report no press from the audio received so far (none under
        way, nothing loud enough for a tone waits for analysis), and the stream is
        complete up to extended RTP timestamp ``complete_ts``: the events held that
        start there or before go, since no tone can start before them any more."""
        k = 0
        while k < len(self._held) and self._held[k].ts <= complete_ts:
            k += 1
        out = [h.press for h in self._held[:k]]
        del self._held[:k]
        self.released_quiet += k
        return out

    def poll(self, now: float) -> list[Press]:
        """Events held for `max_hold` go, with every event that started before them."""
        expired = [h.ts for h in self._held if h.deadline <= now]
        if not expired:
            return []
        last = max(expired)
        k = bisect.bisect_right(self._held, last, key=lambda h: h.ts)
        out = [h.press for h in self._held[:k]]
        del self._held[:k]
        self.released_by_bound += len(expired)
        return out

    def flush(self) -> list[Press]:
        """Everything held, in order (detection stops, the session closes)."""
        out = [h.press for h in self._held]
        self._held.clear()
        return out

    def _release(self, upto: int) -> list[Press]:
        if not self._held or self._ts_end is None:
            return []
        if upto >= self._end + self.settle:
            return self.flush()  # past all the audio received (only pause silence after)
        ts = self._ts_at(upto)
        assert ts is not None
        k = 0
        while k < len(self._held) and self._held[k].ts + self.settle <= ts:
            k += 1
        out = [h.press for h in self._held[:k]]
        del self._held[:k]
        return out

    def _ts_at(self, idx: int) -> int | None:
        """The RTP timestamp of detector sample ``idx``: inside a run of audio, its own;
        in pause silence between runs, the start of the next run; after the last run,
        counted on from its end."""
        if self._ts_end is None:
            return None
        segs = [*self._segments, (self._start, self._end, self._ts_end)]
        after: tuple[int, int, int] | None = None
        for seg in reversed(segs):
            s, e, te = seg
            if idx >= e:
                if after is None:
                    return te + (idx - e)
                return after[2] - (after[1] - after[0])
            if idx >= s:
                return te - (e - idx)
            after = seg
        s, e, te = segs[0]
        return te - (e - s)
