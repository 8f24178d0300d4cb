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
    """Fixed-delay buffer in RTP timestamp units.

    Playout starts once ``delay`` samples are buffered ahead of the first packet, or
    ``delay`` after it arrived, whichever comes first.
    When the buffer runs dry it re-buffers ``delay`` samples before playing on,
    which also absorbs a peer whose clock runs slow. A hole is concealed by
    repeating the last good frame at half level once, then silence (a much
    simplified G.711 Appendix I). Packets older than the playout point are late
    and dropped; if the peer sends faster than we play, the buffer is trimmed back
    to ``delay`` once it exceeds ``max_delay``. A timestamp jump beyond ``resync``
    samples (new source, peer restart) restarts the buffer.
    """

    def __init__(
        self,
        frame: int = 160,
        delay: int = 480,
        max_delay: int = 1600,
        resync: int = 8000 * 5,
    ) -> None:
        self.frame = frame
        self.delay = delay
        self.max_delay = max_delay
        self.resync = resync
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

    @property
    def playing(self) -> bool:
        return self._cursor is not None

    @property
    def buffered(self) -> int:
        """Samples between the playout point and the newest received sample."""
        start = self._cursor if self._cursor is not None else self._first
        return 0 if start is None else max(0, self._end - start)

    def push(self, timestamp: int, samples: Samples) -> None:
        """Add one packet's decoded audio, starting at RTP ``timestamp``."""
        if len(samples) == 0:
            return
        ts = self._unwrap(timestamp)
        ref = self._cursor if self._cursor is not None else self._first
        if ref is not None and abs(ts - ref) > self.resync:
            self.reset()
            ts = self._unwrap(timestamp)
        floor = self._cursor if self._cursor is not None else self._floor
        if floor is not None and ts + len(samples) <= floor:
            self.late += 1
            return
        if self._first is None or ts < self._first and self._cursor is None:
            self._first = ts
        self._chunks[ts] = samples
        self._end = max(self._end, ts + len(samples))
        if self._cursor is not None and self._end - self._cursor > self.max_delay:
            new = self._end - self.delay
            self.dropped += new - self._cursor
            self._cursor = new
            self._gc_before(new)

    def pop(self) -> Samples | None:
        """The next frame of playout, or None before playout has started."""
        n = self.frame
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

    def _advance(self, cursor: int) -> None:
        self._cursor = cursor
        if cursor >= self._end:
            # Underrun: wait for `delay` samples again instead of concealing sample by sample.
            self._floor, self._cursor, self._first = cursor, None, None

    def _gc_before(self, cursor: int) -> None:
        stale = [ts for ts, c in self._chunks.items() if ts + len(c) <= cursor]
        for ts in stale:
            del self._chunks[ts]
