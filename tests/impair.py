"""A seeded network impairment for RTP, in user space (this kernel has no netem).

Two layers, as DESIGN §3 asks:

- :class:`Impairer` is sans-I/O: ``push(packet, now)`` decides each packet's fate (dropped,
  held, delayed, duplicated) and queues it with a release time; ``due(now)`` hands back the
  packets whose time has come, in release order. Every decision comes from one
  ``random.Random(seed)``, so the same packets at the same times give the same output.
- :class:`MediaRelay` is the thin asyncio driver: a UDP socket that a peer sends RTP to,
  forwarding through an :class:`Impairer` to the real receiver (and, unimpaired, whatever
  the receiver sends back to the peer). :class:`RelayLoop` runs relays on a thread of
  their own, for tests and benchmarks whose peers are child processes.

The profiles (:data:`PROFILES`) are the ones issue 22 names: delay spikes of 80 and 150 ms
(every ~3 s, the held packets released at once: nothing lost, nothing reordered), uniform
jitter of 0-40 ms (which reorders), 1 % random loss, bursty loss, 2 % duplicates, a stray
second stream from the same source address (another SSRC, sequence and timestamp space,
as when a previous call's tail reaches a reused port; ``tail``: that stream is there
before the caller's first packet), and a carrier-like mix. Profiles join with ``+``.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import random
import socket
import struct
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field, fields, replace
from typing import Literal, TypeVar, cast

__all__ = [
    "PROFILES",
    "profile",
    "LOSSLESS",
    "Profile",
    "Impairer",
    "ImpairStats",
    "MediaRelay",
    "RelayLoop",
    "Verdict",
    "judge",
]

T = TypeVar("T")

Verdict = Literal["exact", "short", "wrong"]

RTP_HEADER = 12  # RFC 3550 §5.1: the fixed header without CSRCs
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)  # Linux asm-generic/socket.h
PACKET_MS = 20  # the stray stream's packet time (RFC 3551 §4.5: G.711 default ptime)


@dataclass(frozen=True)
class Profile:
    """What happens to one direction of a media stream. Times in ms, rates in [0, 1]."""

    name: str
    spike_ms: float = 0.0  # hold every packet for this long ...
    spike_every_s: float = 3.0  # ... about this often (±20 %, seeded)
    # when the first hold starts, seconds after the first packet: uniform in this range
    # (None: within the first interval); tests aim it at the moment that matters
    first_spike_s: tuple[float, float] | None = None
    jitter_ms: float = 0.0  # extra delay, uniform in [0, jitter_ms], per packet
    loss: float = 0.0  # independent random loss
    burst_enter: float = 0.0  # Gilbert model: P(good -> bad) per packet
    burst_leave: float = 1.0  # P(bad -> good) per packet; every packet in "bad" is lost
    duplicate: float = 0.0  # P(a packet is delivered twice)
    stray: bool = False  # a second stream from the same address, one packet per packet
    # stray packets that come before the caller's first (a previous call's tail on the port)
    stray_lead: int = 0

    @property
    def lossless(self) -> bool:
        return self.loss == 0.0 and self.burst_enter == 0.0


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in [
        Profile("clean"),
        Profile("spike80", spike_ms=80),
        Profile("spike150", spike_ms=150),
        Profile("jitter", jitter_ms=40),
        Profile("loss1", loss=0.01),
        # mean burst 1/0.3 = 3.3 packets; long-run loss 0.005/(0.005+0.3) = 1.6 %
        Profile("burst", burst_enter=0.005, burst_leave=0.3),
        Profile("dup2", duplicate=0.02),
        Profile("stray", stray=True),
        Profile("tail", stray=True, stray_lead=5),  # the stray stream is there first
        Profile(
            "carrier", spike_ms=100, spike_every_s=4.0, jitter_ms=20, loss=0.003, duplicate=0.005
        ),
    ]
}
LOSSLESS = [name for name, p in PROFILES.items() if p.lossless]


def profile(spec: str) -> Profile:
    """A profile by name, or several joined by ``+`` (``stray+jitter``): each part sets
    the fields it changes from the defaults; a later part wins where two set one field."""
    out = Profile(spec)
    default = Profile("")
    for part in spec.split("+"):
        if part not in PROFILES:
            raise KeyError(f"unknown profile {part!r}: use {', '.join(PROFILES)}, joined by +")
        p = PROFILES[part]
        changed = {
            f.name: getattr(p, f.name)
            for f in fields(Profile)
            if f.name != "name" and getattr(p, f.name) != getattr(default, f.name)
        }
        out = replace(out, **changed)
    return out


@dataclass
class ImpairStats:
    received: int = 0
    dropped: int = 0
    duplicated: int = 0
    held: int = 0  # packets that waited for the end of a delay spike
    stray: int = 0
    forwarded: int = 0  # released by due(), duplicates and stray packets included
    # how late the driver released a packet after its time (ms): the tool's own jitter,
    # which a benchmark must keep far below what the profile asks for
    max_lag_ms: float = 0.0


@dataclass
class Impairer:
    """The fate of each packet of one direction, decided from a seed (sans-I/O).

    ``now`` is any monotonic clock in seconds; the first ``push`` is the origin of the
    spike schedule (the first spike comes within one interval, at a seeded phase).
    """

    profile: Profile
    seed: int = 0
    stats: ImpairStats = field(default_factory=ImpairStats)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._queue: list[tuple[float, int, bytes]] = []
        self._order = 0
        self._bad = False
        self._spike_at: float | None = None
        self._last_release = float("-inf")
        self._stray_seq = self._rng.randrange(1 << 16)
        self._stray_ts = self._rng.randrange(1 << 32)
        self._stray_ssrc = self._rng.randrange(1 << 32)

    def _interval(self) -> float:
        return self.profile.spike_every_s * self._rng.uniform(0.8, 1.2)

    def _spike_release(self, now: float) -> float:
        """When a packet arriving ``now`` may leave because of spikes (``now`` if none)."""
        p = self.profile
        if p.spike_ms <= 0:
            return now
        if self._spike_at is None:
            first = p.first_spike_s or (0.0, p.spike_every_s)
            self._spike_at = now + self._rng.uniform(*first)
        while now >= self._spike_at + p.spike_ms / 1000:
            self._spike_at += self._interval()
        if now >= self._spike_at:  # inside a hold: out with the others when it ends
            self.stats.held += 1
            return self._spike_at + p.spike_ms / 1000
        return now

    def _lost(self) -> bool:
        p = self.profile
        if p.burst_enter > 0:
            if self._bad:
                self._bad = self._rng.random() >= p.burst_leave
            else:
                self._bad = self._rng.random() < p.burst_enter
            if self._bad:
                return True
        return p.loss > 0 and self._rng.random() < p.loss

    def _queue_at(self, when: float, data: bytes) -> None:
        heapq.heappush(self._queue, (when, self._order, data))
        self._order += 1

    def push(self, data: bytes, now: float) -> None:
        """A packet arrived at ``now``: drop it or queue it (and maybe a copy, a stray)."""
        self.stats.received += 1
        if self.stats.received == 1:
            for _ in range(self.profile.stray_lead):
                self._queue_at(now, self._stray_packet())
                self.stats.stray += 1
        self._pass(data, now)
        if self.profile.stray:  # right behind the caller's packet
            self._queue_at(now, self._stray_packet())
            self.stats.stray += 1

    def _pass(self, data: bytes, now: float) -> None:
        p = self.profile
        if self._lost():
            self.stats.dropped += 1
            return
        release = self._spike_release(now)
        if p.jitter_ms > 0:
            release += self._rng.uniform(0.0, p.jitter_ms) / 1000
        else:  # a spike holds, it does not reorder: nothing overtakes what is held
            release = max(release, self._last_release)
        self._last_release = max(self._last_release, release)
        self._queue_at(release, data)
        if p.duplicate > 0 and self._rng.random() < p.duplicate:
            self.stats.duplicated += 1
            self._queue_at(release + self._rng.uniform(0.0, PACKET_MS) / 1000, data)

    def _stray_packet(self) -> bytes:
        """The next packet of the foreign stream: PCMU (PT 0), quiet noise, 20 ms."""
        header = struct.pack("!BBHII", 0x80, 0, self._stray_seq, self._stray_ts, self._stray_ssrc)
        self._stray_seq = (self._stray_seq + 1) & 0xFFFF
        self._stray_ts = (self._stray_ts + 8 * PACKET_MS) & 0xFFFFFFFF
        # μ-law codes 0xF0-0xFF are the 16 smallest positive levels (G.711 table 2a)
        payload = bytes(self._rng.randrange(0xF0, 0x100) for _ in range(8 * PACKET_MS))
        return header + payload

    def next_due(self) -> float | None:
        return self._queue[0][0] if self._queue else None

    def due(self, now: float) -> list[bytes]:
        """The packets whose release time is ``now`` or earlier, in release order."""
        out = []
        while self._queue and self._queue[0][0] <= now:
            when, _, data = heapq.heappop(self._queue)
            out.append(data)
            if now != float("inf"):
                self.stats.max_lag_ms = max(self.stats.max_lag_ms, 1000 * (now - when))
        self.stats.forwarded += len(out)
        return out

    def drain(self) -> list[bytes]:
        """Everything still queued, in release order (the end of a test stream)."""
        return self.due(float("inf"))


def judge(sent: str, stored: str) -> Verdict:
    """Compare a stored code with what was sent.

    ``short``: some digits missing, the rest in order (a subsequence); ``wrong``: anything
    else, such as a doubled or a foreign digit.
    """
    if stored == sent:
        return "exact"
    it = iter(sent)
    if len(stored) < len(sent) and all(ch in it for ch in stored):
        return "short"
    return "wrong"


class MediaRelay(asyncio.DatagramProtocol):
    """One UDP port in the media path: the peer's RTP goes in here, out impaired to
    ``target`` from this same port; what ``target`` sends back reaches the peer as is."""

    def __init__(self, target: tuple[str, int], impairer: Impairer) -> None:
        self.target = target
        self.impairer = impairer
        self.peer: tuple[str, int] | None = None
        self.transport: asyncio.DatagramTransport | None = None
        self.last_packet = 0.0
        self._timer: asyncio.TimerHandle | None = None

    @classmethod
    async def open(
        cls, host: str, port: int, target: tuple[str, int], impairer: Impairer
    ) -> MediaRelay:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((host, port))
            with contextlib.suppress(OSError):  # root may pass net.core.rmem_max: no drops
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 4 << 20)
            _, relay = await loop.create_datagram_endpoint(lambda: cls(target, impairer), sock=sock)
        except BaseException:
            sock.close()
            raise
        return relay

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Python 3.11's selector datagram transport does not subclass DatagramTransport
        self.transport = cast(asyncio.DatagramTransport, transport)

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def datagram_received(self, data: bytes, addr: tuple[str | int, int]) -> None:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        self.last_packet = loop.time()
        if (addr[0], addr[1]) == self.target:  # the receiver's own media, back to the peer
            if self.peer is not None:
                self.transport.sendto(data, self.peer)
            return
        self.peer = (str(addr[0]), addr[1])
        if len(data) < RTP_HEADER:
            return
        self.impairer.push(data, loop.time())
        self._release()

    def _release(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        loop = asyncio.get_running_loop()
        for data in self.impairer.due(loop.time()):
            self.transport.sendto(data, self.target)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        when = self.impairer.next_due()
        if when is not None:
            self._timer = loop.call_at(when, self._release)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP port unreachable after the receiver closed: nothing to do

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self.transport is not None:
            self.transport.close()


class RelayLoop:
    """An asyncio loop on a daemon thread; ``call`` runs a coroutine there and waits."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, daemon=True, name="impair-relay"
        )

    def call(self, make: Callable[[], Coroutine[object, object, T]], timeout: float = 10.0) -> T:
        return asyncio.run_coroutine_threadsafe(make(), self.loop).result(timeout)

    @contextlib.contextmanager
    def running(self) -> Iterator[RelayLoop]:
        self._thread.start()
        try:
            yield self
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)
            self.loop.close()
