"""Receive-side jitter buffer: reorders by RTP timestamp and conceals lost audio (sans-I/O).

It works in samples, not packets, so any packet size the peer chooses (SIPp's
``g711a.pcap`` uses 30 ms) plays out as steady 20 ms frames. Playout is pulled by the
same pacing clock that sends our frames, which keeps received and sent audio aligned
frame for frame (the recorder relies on that).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from autocall.media.rtp import Unwrapper

__all__ = ["JitterBuffer"]

Samples = npt.NDArray[np.int16]


class JitterBuffer:
    """Adaptive-delay buffer in samples: RTP timestamp units times ``scale`` (1 for
    G.711; 2 for G.722, whose 16 kHz audio runs on an 8000 Hz RTP clock).

    Playout starts once ``delay`` samples are buffered ahead of the first packet, or
    ``delay`` after it arrived, whichever comes first.
    When the buffer runs dry it re-buffers ``delay`` samples before playing on,
    which also absorbs a peer whose clock runs slow. A hole is concealed by
    repeating the last good frame at half level once, then silence (a much
    simplified G.711 Appendix I). Packets older than the playout point are late
    and dropped; if the peer sends faster than we play, the buffer is trimmed back
    to ``delay`` once it exceeds ``max_delay``. A timestamp jump beyond ``resync``
    samples (new source, peer restart) restarts the buffer.

    Adaptation (when `push` is given the arrival time ``now``, the approach of
    Asterisk's adaptive buffer and WebRTC's NetEq in miniature): each packet's transit
    (arrival in samples minus RTP timestamp) is compared with the smallest seen; the
    excess is the delay that packet suffered. The target delay follows the peak excess
    plus a frame at once when it rises (a delay spike) and decays by ``shrink_rate``
    ms per second when the network calms, between ``delay`` and ``max_target``. The
    buffer moves toward its target one frame at a time, only on quiet frames: a
    silent frame is dropped to shrink, or a silent frame inserted to grow, never a
    frame of speech or tone. Late packets are those whose time has passed anyway.
    """

    def __init__(
        self,
        frame: int = 160,
        delay: int = 480,
        max_delay: int | None = None,
        resync: int = 8000 * 5,
        *,
        max_target: int = 1280,
        shrink_rate: float = 10.0,
        rate: int = 8000,
        quiet: int = 500,
        scale: int = 1,
    ) -> None:
        self.frame = frame
        self.base_delay = delay
        self.delay = delay  # the target, in samples (adapts when push() gets `now`)
        # The hard trim is a backstop for a peer that sends faster than we play; the
        # adaptive delay itself shrinks on silent frames, well below it.
        self.max_delay = 2 * max_target if max_delay is None else max_delay
        self.max_target = max(max_target, delay)
        self.resync = resync
        self.rate = rate
        self.scale = scale  # samples per RTP timestamp unit (2 for G.722, RFC 3551 §4.5.2)
        self.quiet = quiet
        self._shrink = shrink_rate * rate / 1000  # samples of target per second
        self._min_transit: float | None = None
        self._seen: float | None = None
        self._peak = 0.0
        self._peak_at = 0.0
        self._ticks = 0
        self._chunks: dict[int, Samples] = {}
        self._unwrap = Unwrapper(32)
        self._cursor: int | None = None
        self._first: int | None = None
        self._end = 0
        self._floor: int | None = None
        self._waited = 0
        self._last = np.zeros(frame, dtype=np.int16)
        self._concealed_run = 0
        self.late = 0
        self.concealed = 0
        self.dropped = 0

    def reset(self) -> None:
        self._chunks.clear()
        self._unwrap.reset()
        self._cursor = None
        self._first = None
        self._end = 0
        self._floor = None
        self._waited = 0
        self._concealed_run = 0
        self._min_transit = None  # a new timestamp space

    @property
    def playing(self) -> bool:
        return self._cursor is not None

    @property
    def buffered(self) -> int:
        """Samples between the playout point and the newest received sample."""
        start = self._cursor if self._cursor is not None else self._first
        return 0 if start is None else max(0, self._end - start)

    @property
    def playout_delay(self) -> int:
        """Samples from arrival to playout now: what is buffered, plus the frame playing."""
        return self.buffered + self.frame

    def push(self, timestamp: int, samples: Samples, now: float | None = None) -> None:
        """Add one packet's decoded audio, starting at RTP ``timestamp``, arrived ``now``."""
        if len(samples) == 0:
            return
        ts = self._unwrap(timestamp) * self.scale
        ref = self._cursor if self._cursor is not None else self._first
        if ref is not None and abs(ts - ref) > self.resync:
            self.reset()
            ts = self._unwrap(timestamp) * self.scale
        if now is not None:
            # `_adapt`, inlined: this runs for every packet of every call.
            transit = now * self.rate - ts
            low = self._min_transit
            if low is None or transit < low:
                low = self._min_transit = transit
            elif self._seen is not None:
                # Let the floor creep up (1 ms/s), so a sender whose clock is slower than
                # ours is not taken for a network whose delay keeps growing.
                self._min_transit = min(transit, low + (now - self._seen) * self.rate / 1000)
            self._seen = now
            excess = transit - low
            peak = self._peak - self._shrink * (now - self._peak_at)
            if excess > peak:
                peak = excess
            self._peak, self._peak_at = peak, now
            n = self.frame
            target = (int(peak) // n + 2) * n  # the peak in whole frames, plus one
            self.delay = (
                self.base_delay
                if target <= self.base_delay
                else (target if target < self.max_target else self.max_target)
            )
        floor = self._cursor if self._cursor is not None else self._floor
        if floor is not None and ts + len(samples) <= floor:
            self.late += 1
            return
        if self._first is None or ts < self._first and self._cursor is None:
            self._first = ts
        self._chunks[ts] = samples
        end = ts + len(samples)
        if end > self._end:
            self._end = end
        if self._cursor is not None and self._end - self._cursor > self.max_delay:
            new = self._end - self.delay
            self.dropped += new - self._cursor
            self._cursor = new
            self._gc_before(new)

    def pop(self) -> Samples | None:
        """The next frame of playout, or None before playout has started."""
        n = self.frame
        if self._seen is not None and self._cursor is not None:
            self._ticks += 1
            if self._ticks % 5 == 0:  # a step at most every 5 frames (100 ms)
                adjusted = self._steer()
                if adjusted is not None:
                    return adjusted
        if self._cursor is None:
            if self._first is None:
                return None
            # Start once `delay` is buffered, or once we have waited that long: the
            # last words before the far end stops sending must not stay stuck.
            self._waited += n
            if self._end - self._first < self.delay and self._waited <= self.delay:
                return None
            self._cursor = self._first
            self._waited = 0
        start = self._cursor
        chunk = self._chunks.get(start)
        if chunk is not None and len(chunk) == n:
            # The common case: one 20 ms packet exactly at the playout point.
            del self._chunks[start]
            self._advance(start + n)
            self._last = chunk
            self._concealed_run = 0
            return chunk
        out = np.zeros(n, dtype=np.int16)
        have = np.zeros(n, dtype=bool)
        for ts, chunk in self._chunks.items():
            lo = max(ts, start)
            hi = min(ts + len(chunk), start + n)
            if lo < hi:
                out[lo - start : hi - start] = chunk[lo - ts : hi - ts]
                have[lo - start : hi - start] = True
        self._gc_before(start + n)
        self._advance(start + n)
        if have.all():
            self._last = out
            self._concealed_run = 0
            return out
        missing = ~have
        self.concealed += int(missing.sum())
        if self._concealed_run == 0 and start < self._end:
            out[missing] = self._last[missing] // 2
        self._concealed_run += 1
        if have.any():
            self._concealed_run = 0
        return out

    def _steer(self) -> Samples | None:
        """One step toward the target delay on a quiet frame; the frame to play if so."""
        start = self._cursor
        if start is None:
            return None
        n = self.frame
        ahead = self._end - start
        chunk = self._chunks.get(start)
        if chunk is None or len(chunk) != n:
            return None
        if ahead > self.delay + 2 * n and int(np.abs(chunk).max()) < self.quiet:
            # Too much delay: drop this silent frame and play the next one.
            del self._chunks[start]
            self.dropped += n
            self._cursor = start + n
            nxt = self._chunks.get(start + n)
            if nxt is None or len(nxt) != n:
                return None
            del self._chunks[start + n]
            self._advance(start + 2 * n)
            self._last = nxt
            self._concealed_run = 0
            return nxt
        if ahead + n < self.delay and int(np.abs(chunk).max()) < self.quiet:
            # Too little: play silence here and this frame on the next tick.
            return np.zeros(n, dtype=np.int16)
        return None

    def _advance(self, cursor: int) -> None:
        self._cursor = cursor
        if cursor >= self._end:
            # Underrun: wait for `delay` samples again instead of concealing sample by sample.
            self._floor, self._cursor, self._first = cursor, None, None

    def _gc_before(self, cursor: int) -> None:
        stale = [ts for ts, c in self._chunks.items() if ts + len(c) <= cursor]
        for ts in stale:
            del self._chunks[ts]
