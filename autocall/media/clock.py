"""One drift-free pacing clock for every media stream of the process.

Frame ``n`` of a stream is due at ``t0 + n * frame`` — computed from the stream's start
time each time, never by adding up sleeps — so a late wake-up delays one frame but never
shifts the ones after it. `PacingClock` is the sans-I/O core (given ``now``: which
frames are due, and when the next one is); `MediaEngine` is the thin asyncio driver that
owns the process's single timer and calls each due stream's callback. 500 calls cost one
``loop.call_at`` per wake-up, not 500 sleeping tasks or threads.

Received RTP is read by the engine too, inside the same wake-up and after every due
packet has left: the sockets are not on the event loop, so 25,000 arriving packets a
second cannot queue in front of the timer and delay a send, and each is read with one
``recvmsg`` instead of a trip through the loop's callback queue. The kernel's arrival
time stamp (``SO_TIMESTAMPNS``) keeps RFC 3550 jitter exact although reading is batched.

A process that carries more calls than its core can pace falls behind without a sound
of its own: the far ends hear it. `LatenessWatch` (sans-I/O) counts the wake-ups that
came late, and the engine logs a warning that says so, with the process's call count.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import itertools
import logging
import math
import select
import socket
import struct
import sys
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from autocall.media.ports import PortPool

if TYPE_CHECKING:
    from autocall.media.detection import DetectorPool

__all__ = ["FRAME", "Behind", "LatenessWatch", "MediaEngine", "PacingClock"]

FRAME = 0.020  # ptime 20 ms: 160 samples at 8 kHz (RFC 3551 §4.5 G.711 default)
log = logging.getLogger(__name__)
_EPSILON = 1e-6


@dataclass(slots=True)
class _Member:
    offset: int  # the stream's frame index minus its group's
    next: int  # the stream's next frame index
    phase: int


@dataclass(slots=True)
class _Group:
    """Streams whose deadlines coincide: one heap entry and one deadline sum for all."""

    t0: float
    g: int
    gen: int
    members: dict[Hashable, _Member]


_PHASE_KEYS = 1_000_000  # deadlines closer than frame/1e6 (20 ns) count as the same


class PacingClock:
    """Deadline scheduler for many fixed-rate streams.

    ``due(now)`` returns ``(key, n)`` for every frame whose deadline has passed, in
    deadline order. A stream that fell more than ``max_burst`` frames behind (the
    process stalled) skips the oldest owed frames instead of bursting them all, so the
    frame index — and with it the RTP timestamp — keeps following the wall clock.

    The frame is divided into ``phases`` equal slots; `quietest_start` places a new
    stream in the slot with the fewest streams, so calls answered in the same instant
    are spread over the frame instead of all falling due in one wake-up. Streams with
    the same deadlines share one group, so a wake-up costs one heap operation per group
    rather than per stream.
    """

    def __init__(self, frame: float = FRAME, max_burst: int = 5, phases: int = 8) -> None:
        if frame <= 0 or max_burst < 1 or phases < 1:
            raise ValueError("frame must be > 0, max_burst >= 1 and phases >= 1")
        self.frame = frame
        self.max_burst = max_burst
        self.phases = phases
        self.skipped = 0
        self.lateness = 0.0  # how long after its deadline the last `due` served the first frame
        self._per_phase = [0] * phases
        self._where: dict[Hashable, int] = {}
        self._groups: dict[int, _Group] = {}
        self._heap: list[tuple[float, int, int]] = []
        self._gen = itertools.count()

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._where

    def add(self, key: Hashable, start: float, first_frame: int = 0) -> None:
        """Start pacing ``key``: frame ``first_frame`` is due at ``start``."""
        if key in self._where:
            raise ValueError(f"stream {key!r} is already paced")
        frame = self.frame
        gkey = round((start % frame) / frame * _PHASE_KEYS) % _PHASE_KEYS
        grp = self._groups.get(gkey)
        if grp is None:
            grp = self._groups[gkey] = _Group(start, 0, next(self._gen), {})
            heapq.heappush(self._heap, (start, grp.gen, gkey))
        at = round((start - grp.t0) / frame)
        phase = self._phase_of(start)
        self._per_phase[phase] += 1
        grp.members[key] = _Member(first_frame - at, first_frame, phase)
        self._where[key] = gkey

    def remove(self, key: Hashable) -> None:
        gkey = self._where.pop(key, None)
        if gkey is None:
            return
        grp = self._groups[gkey]
        member = grp.members.pop(key)
        self._per_phase[member.phase] -= 1
        if not grp.members:
            del self._groups[gkey]  # its heap entry is dropped when it comes up

    def _phase_of(self, t: float) -> int:
        return round((t % self.frame) / self.frame * self.phases) % self.phases

    def quietest_start(self, now: float) -> float:
        """The first moment at or after ``now`` in the phase slot with the fewest streams."""
        width = self.frame / self.phases
        base = math.floor(now / self.frame) * self.frame
        best: tuple[int, float] | None = None
        for phase, count in enumerate(self._per_phase):
            t = base + phase * width
            if t < now - _EPSILON:
                t += self.frame
            if best is None or (count, t) < best:
                best = (count, t)
        assert best is not None
        return best[1]

    def deadline(self, key: Hashable) -> float:
        """When the stream's next frame is due."""
        grp = self._groups[self._where[key]]
        m = grp.members[key]
        return grp.t0 + (m.next - m.offset) * self.frame

    def next_deadline(self) -> float | None:
        """Earliest deadline of any stream (None when nothing is paced)."""
        heap = self._heap
        while heap:
            when, gen, gkey = heap[0]
            grp = self._groups.get(gkey)
            if grp is not None and grp.gen == gen:
                return when
            heapq.heappop(heap)
        return None

    def due(self, now: float) -> list[tuple[Hashable, int]]:
        """Frames due at ``now`` as ``(key, frame_index)``; advances each stream past them."""
        out: list[tuple[Hashable, int]] = []
        append = out.append
        heap = self._heap
        frame = self.frame
        burst = self.max_burst
        self.lateness = 0.0
        earliest = True
        now += _EPSILON  # t0 + n·frame in floats: same-phase deadlines differ by ~1e-13 s
        while heap and heap[0][0] <= now:
            when, gen, gkey = heapq.heappop(heap)
            grp = self._groups.get(gkey)
            if grp is None or grp.gen != gen:
                continue
            if earliest:  # the earliest deadline served: the one waited for longest
                self.lateness = max(0.0, now - _EPSILON - when)
                earliest = False
            t0 = grp.t0
            last = math.floor((now - t0) / frame)
            # Float division can land one frame off at exact boundaries: trust the deadlines.
            if t0 + (last + 1) * frame <= now:
                last += 1
            elif t0 + last * frame > now:
                last -= 1
            for key, m in grp.members.items():
                end = last + m.offset
                first = m.next
                if first == end:
                    append((key, end))
                elif first < end:
                    if end - first + 1 > burst:
                        self.skipped += end - burst + 1 - first
                        first = end - burst + 1
                    out.extend((key, n) for n in range(first, end + 1))
                else:
                    continue  # joined for a later start: nothing owed yet
                m.next = end + 1
            grp.g = last + 1
            heapq.heappush(heap, (t0 + grp.g * frame, gen, gkey))
        return out


@dataclass(frozen=True, slots=True)
class Behind:
    """In the last ``window`` seconds the pacing clock woke ``late`` of ``wakeups`` times
    more than its threshold after a deadline (``worst``: the latest), and skipped
    ``skipped`` frames: the far ends heard gaps and bunched packets."""

    wakeups: int
    late: int
    worst: float
    skipped: int
    window: float


class LatenessWatch:
    """Tells when the pacing clock keeps falling behind (sans-I/O: given each wake-up's
    lateness, the clock's skipped-frame count and ``now``).

    A wake-up is late when it comes more than ``late_after`` after the earliest deadline
    it serves: half a frame by default, when a packet leaves closer to the next one's
    time than to its own. A stray late wake-up (a garbage collection, a page fault) is
    no news; a window of ``window`` seconds in which at least ``share`` of the wake-ups
    were late, or any frame was skipped, is: a process whose core cannot pace its calls.
    `observe` returns a `Behind` at the end of such a window, then stays quiet for
    ``quiet`` seconds so a log is not flooded while the load lasts.
    """

    def __init__(
        self,
        late_after: float = FRAME / 2,
        window: float = 10.0,
        share: float = 0.01,
        quiet: float = 60.0,
    ) -> None:
        if late_after <= 0 or window <= 0 or not 0 < share <= 1 or quiet < 0:
            raise ValueError("late_after and window must be > 0, share in (0, 1], quiet >= 0")
        self.late_after = late_after
        self.window = window
        self.share = share
        self.quiet = quiet
        self._start: float | None = None
        self._last = 0.0
        self._wakeups = 0
        self._late = 0
        self._worst = 0.0
        self._skipped_at_start = 0
        self._silent_until = -math.inf

    def observe(self, lateness: float, skipped: int, now: float) -> Behind | None:
        """One wake-up ``lateness`` seconds after its deadline; ``skipped``: the clock's
        running count of skipped frames."""
        if self._start is None or (
            now - self._last > self.window and lateness <= self.late_after
        ):
            # The first wake-up, or the first after a time without calls (a stall is
            # not that: its wake-up is late, and it counts).
            self._start, self._skipped_at_start = now, skipped
            self._wakeups, self._late, self._worst = 0, 0, 0.0
        self._last = now
        self._wakeups += 1
        if lateness > self.late_after:
            self._late += 1
            self._worst = max(self._worst, lateness)
        if now - self._start < self.window:
            return None
        report = Behind(
            self._wakeups, self._late, self._worst, skipped - self._skipped_at_start,
            now - self._start,
        )
        self._start, self._skipped_at_start = now, skipped
        self._wakeups, self._late, self._worst = 0, 0, 0.0
        if now < self._silent_until:
            return None
        if report.skipped or report.late >= self.share * report.wakeups:
            self._silent_until = now + self.quiet
            return report
        return None


@functools.cache
def _single_threaded_blas() -> None:
    """Keep numpy's BLAS on the calling thread.

    The detectors multiply small matrices every few ticks. OpenBLAS would hand each
    product to worker threads that spin-wait between calls, taking the second core from
    SIPp, the database and the kernel's packet work, and making the event loop wait
    for them: on a 2-core machine 100 calls used 126 % CPU instead of 23 %.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")


FrameCallback = Callable[[int], None]
DatagramCallback = Callable[[bytes, tuple[str, int], float], None]
"""``(data, (host, port), arrival)``: one datagram and when it arrived, in loop time."""

# Linux asm-generic/socket.h; Python's socket module does not export it.
_SO_TIMESTAMPNS = 35 if sys.platform == "linux" else 0
_TIMESPEC = struct.Struct("@qq")
_ANCILLARY = socket.CMSG_SPACE(_TIMESPEC.size) if _SO_TIMESTAMPNS else 0
_MAX_DATAGRAM = 2048  # RTP of 20 ms G.711 is 172 bytes; anything larger is not ours


class MediaEngine:
    """The process's media clock: one asyncio timer that ticks every registered stream.

    A `autocall.media.session.MediaSession` registers a callback with `add_stream`; the
    callback gets the frame index and must not block (it encodes and sends one packet).
    A callback that raises is logged and the other streams go on.
    """

    def __init__(
        self,
        frame: float = FRAME,
        max_burst: int = 5,
        phases: int = 8,
        max_reads: int = 8,
        ports: PortPool | None = None,
        lateness_watch: LatenessWatch | None = None,
    ) -> None:
        self.clock = PacingClock(frame, max_burst, phases)
        self.lateness_watch = (
            LatenessWatch(late_after=frame / 2) if lateness_watch is None else lateness_watch
        )
        # RTP ports for sessions opened with port 0 (AUTOCALL_RTP_PORTS, ..._QUARANTINE).
        self.ports = PortPool.from_env() if ports is None else ports
        self.max_reads = max_reads
        _single_threaded_blas()
        # epoll (Linux) or poll: one call lists the ready sockets, whatever their number.
        self._poller = select.epoll() if hasattr(select, "epoll") else select.poll()
        self._readers: dict[int, tuple[socket.socket, DatagramCallback]] = {}
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
        A default start falls in the least busy of the clock's phase slots: calls share
        a few wake-ups per frame instead of one each, and a burst of calls answered
        together is spread over the frame instead of sending all at once.
        """
        loop = self._get_loop()
        sid = next(self._ids)
        self._callbacks[sid] = on_frame
        if after is not None:
            self._after[sid] = after
        if start is None:
            start = self.clock.quietest_start(loop.time())
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

    def watch(self, sock: socket.socket, on_datagram: DatagramCallback) -> None:
        """Read ``sock`` on every wake-up (after the sends) and hand each datagram over.

        The socket must be non-blocking and stays owned by the caller, who must
        `unwatch` it before closing it.
        """
        if _SO_TIMESTAMPNS:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        fd = sock.fileno()
        if fd in self._readers:
            raise ValueError(f"socket {fd} is already watched")
        self._poller.register(fd, select.POLLIN)
        self._readers[fd] = (sock, on_datagram)

    def unwatch(self, sock: socket.socket) -> None:
        fd = sock.fileno()
        if self._readers.pop(fd, None) is not None:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._poller.unregister(fd)

    def close(self) -> None:
        for sid in list(self._callbacks):
            self.remove_stream(sid)
        for sock, _ in list(self._readers.values()):
            self.unwatch(sock)

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
        now = self._loop.time()
        due = self.clock.due(now)
        behind = self.lateness_watch.observe(self.clock.lateness, self.clock.skipped, now)
        if behind is not None:
            self._warn(behind)
        self._run(self._callbacks, due)
        self._receive(now)
        self._run(self._after, due)
        if self._pool is not None:
            try:
                self._pool.run()
            except Exception:
                self.errors += 1
                log.exception("in-band DTMF detection failed")
        self._arm()

    def _warn(self, behind: Behind) -> None:
        log.warning(
            "media clock behind: %d of %d wake-ups in the last %.1f s came more than %.0f ms "
            "late (the latest %.0f ms) and %d frames were skipped (calls in this process: "
            "%d): their audio reached the far ends in gaps and bursts. If this goes on, carry "
            "fewer calls per process (campaign run --workers N spreads them over N cores, or "
            "lower the campaign's channels), or give the process a quieter core",
            behind.late, behind.wakeups, behind.window, self.lateness_watch.late_after * 1000,
            behind.worst * 1000, behind.skipped, self.streams,
        )

    def _run(self, table: dict[int, FrameCallback], due: list[tuple[Hashable, int]]) -> None:
        for sid, n in due:
            cb = table.get(sid)  # type: ignore[call-overload]
            if cb is None:
                continue
            try:
                cb(n)
            except Exception:
                self.errors += 1
                log.exception("media stream %s failed on frame %d", sid, n)

    def _receive(self, now: float) -> None:
        """Read what arrived on the watched sockets: one datagram per ready socket per round.

        Rounds stop when nothing is ready or after ``max_reads``: a socket flooded by
        someone else costs a bounded amount per wake-up and the kernel drops the rest.
        """
        poll = self._poller.poll
        readers = self._readers
        unpack = _TIMESPEC.unpack_from
        offset = time.time() - now  # kernel stamps are wall-clock; callbacks get loop time
        for _ in range(self.max_reads):
            ready = poll(0)
            if not ready:
                return
            for fd, _events in ready:
                entry = readers.get(fd)
                if entry is None:
                    continue
                sock, on_datagram = entry
                try:
                    data, ancillary, _flags, addr = sock.recvmsg(_MAX_DATAGRAM, _ANCILLARY)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    # e.g. ECONNREFUSED left by an ICMP error: the socket itself is fine.
                    continue
                if ancillary:  # the only control message asked for: SO_TIMESTAMPNS
                    sec, nsec = unpack(ancillary[0][2])
                    when = sec + nsec * 1e-9 - offset
                else:
                    when = now
                try:
                    on_datagram(data, addr, when)
                except Exception:
                    self.errors += 1
                    log.exception("media datagram from %s failed", addr)
