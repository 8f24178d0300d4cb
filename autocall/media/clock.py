"""One drift-free pacing clock for every media stream of the process.

Frame ``n`` of a stream is due at ``t0 + n * frame`` — computed from the stream's start
time each time, never by adding up sleeps — so a late wake-up delays one frame but never
shifts the ones after it. `PacingClock` is the sans-I/O core (given ``now``: which
frames are due, and when the next one is); `MediaEngine` is the thin asyncio driver that
owns the process's single timer and calls each due stream's callback. 500 calls cost one
``loop.call_at`` per wake-up, not 500 sleeping tasks or threads.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from autocall.media.detection import DetectorPool

__all__ = ["FRAME", "MediaEngine", "PacingClock", "align"]

FRAME = 0.020  # ptime 20 ms: 160 samples at 8 kHz (RFC 3551 §4.5 G.711 default)
log = logging.getLogger(__name__)
_EPSILON = 1e-6


@dataclass(slots=True)
class _Stream:
    t0: float
    n: int
    gen: int


class PacingClock:
    """Deadline scheduler for many fixed-rate streams.

    ``due(now)`` returns ``(key, n)`` for every frame whose deadline has passed, in
    deadline order. A stream that fell more than ``max_burst`` frames behind (the
    process stalled) skips the oldest owed frames instead of bursting them all, so the
    frame index — and with it the RTP timestamp — keeps following the wall clock.
    """

    def __init__(self, frame: float = FRAME, max_burst: int = 5) -> None:
        if frame <= 0 or max_burst < 1:
            raise ValueError("frame must be > 0 and max_burst >= 1")
        self.frame = frame
        self.max_burst = max_burst
        self.skipped = 0
        self._streams: dict[Hashable, _Stream] = {}
        self._heap: list[tuple[float, int, Hashable, int]] = []
        self._gen = itertools.count()

    def __len__(self) -> int:
        return len(self._streams)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._streams

    def add(self, key: Hashable, start: float, first_frame: int = 0) -> None:
        """Start pacing ``key``: frame ``first_frame`` is due at ``start``."""
        if key in self._streams:
            raise ValueError(f"stream {key!r} is already paced")
        gen = next(self._gen)
        t0 = start - first_frame * self.frame
        self._streams[key] = _Stream(t0, first_frame, gen)
        heapq.heappush(self._heap, (start, gen, key, first_frame))

    def remove(self, key: Hashable) -> None:
        self._streams.pop(key, None)

    def deadline(self, key: Hashable) -> float:
        """When the stream's next frame is due."""
        s = self._streams[key]
        return s.t0 + s.n * self.frame

    def next_deadline(self) -> float | None:
        """Earliest deadline of any stream (None when nothing is paced)."""
        heap = self._heap
        while heap:
            when, gen, key, _ = heap[0]
            s = self._streams.get(key)
            if s is not None and s.gen == gen:
                return when
            heapq.heappop(heap)
        return None

    def due(self, now: float) -> list[tuple[Hashable, int]]:
        """Frames due at ``now`` as ``(key, frame_index)``; advances each stream past them."""
        out: list[tuple[Hashable, int]] = []
        heap = self._heap
        frame = self.frame
        now += _EPSILON  # t0 + n·frame in floats: same-phase deadlines differ by ~1e-13 s
        while heap and heap[0][0] <= now:
            _, gen, key, _ = heapq.heappop(heap)
            s = self._streams.get(key)
            if s is None or s.gen != gen:
                continue
            last = math.floor((now - s.t0) / frame)
            # Float division can land one frame off at exact boundaries: trust the deadlines.
            if s.t0 + (last + 1) * frame <= now:
                last += 1
            elif s.t0 + last * frame > now:
                last -= 1
            first = s.n
            if last - first + 1 > self.max_burst:
                first = last - self.max_burst + 1
                self.skipped += first - s.n
            out.extend((key, n) for n in range(first, last + 1))
            s.n = last + 1
            heapq.heappush(heap, (s.t0 + s.n * frame, gen, key, s.n))
        return out


FrameCallback = Callable[[int], None]


def align(now: float, grid: float) -> float:
    """The first point of the ``grid`` at or after ``now`` (no grid when ``grid`` <= 0)."""
    return math.ceil(now / grid) * grid if grid > 0 else now


class MediaEngine:
    """The process's media clock: one asyncio timer that ticks every registered stream.

    A `autocall.media.session.MediaSession` registers a callback with `add_stream`; the
    callback gets the frame index and must not block (it encodes and sends one packet).
    A callback that raises is logged and the other streams go on.
    """

    def __init__(self, frame: float = FRAME, max_burst: int = 5, phase_grid: float = 0.005) -> None:
        self.clock = PacingClock(frame, max_burst)
        self.phase_grid = phase_grid
        self._callbacks: dict[int, FrameCallback] = {}
        self._after: dict[int, FrameCallback] = {}
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = math.inf
        self.wakeups = 0
        self.errors = 0
        self._pool: DetectorPool | None = None

    @property
    def frame(self) -> float:
        return self.clock.frame

    @property
    def streams(self) -> int:
        return len(self._callbacks)

    def time(self) -> float:
        return self._get_loop().time()

    def detector_pool(self) -> DetectorPool:
        """The engine's shared in-band DTMF detector banks (run after every wake-up)."""
        if self._pool is None:
            from autocall.media.detection import DetectorPool

            self._pool = DetectorPool()
        return self._pool

    def add_stream(
        self,
        on_frame: FrameCallback,
        start: float | None = None,
        after: FrameCallback | None = None,
    ) -> int:
        """Pace ``on_frame(n)`` every frame from ``start`` (default: now); returns its id.

        ``after(n)`` runs once every stream due in the same wake-up has sent: receive-side
        work (playout, DTMF detection, recording) then never delays another call's packet.
        A default start is rounded up to the ``phase_grid``: calls that begin at random
        moments then share a few wake-ups per frame instead of one wake-up each.
        """
        loop = self._get_loop()
        sid = next(self._ids)
        self._callbacks[sid] = on_frame
        if after is not None:
            self._after[sid] = after
        if start is None:
            start = align(loop.time(), self.phase_grid)
        self.clock.add(sid, start)
        self._arm()
        return sid

    def remove_stream(self, sid: int) -> None:
        self._callbacks.pop(sid, None)
        self._after.pop(sid, None)
        self.clock.remove(sid)
        if not self._callbacks and self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._timer_when = math.inf

    def close(self) -> None:
        for sid in list(self._callbacks):
            self.remove_stream(sid)

    def _get_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None or self._loop.is_closed():
            self._loop = asyncio.get_running_loop()
            self._timer, self._timer_when = None, math.inf  # a dead loop's timer never fires
        return self._loop

    def _arm(self) -> None:
        when = self.clock.next_deadline()
        if when is None or when >= self._timer_when:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_when = when
        self._timer = self._get_loop().call_at(when, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._timer_when = math.inf
        self.wakeups += 1
        assert self._loop is not None
        due = self.clock.due(self._loop.time())
        for table in (self._callbacks, self._after):
            for sid, n in due:
                cb = table.get(sid)  # type: ignore[call-overload]
                if cb is None:
                    continue
                try:
                    cb(n)
                except Exception:
                    self.errors += 1
                    log.exception("media stream %s failed on frame %d", sid, n)
        if self._pool is not None:
            try:
                self._pool.run()
            except Exception:
                self.errors += 1
                log.exception("in-band DTMF detection failed")
        self._arm()
