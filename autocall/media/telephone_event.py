"""RFC 4733 telephone events (DTMF over RTP): payload, sans-I/O sender and receiver.

The sender is ticked once per 20 ms frame with that frame's RTP timestamp and answers
with the event packets to send *instead of* audio. The receiver takes event payloads with
their RTP timestamp and a ``now``; it reports each key press exactly once, when the end
packet arrives, when a newer event supersedes it, or when packets stop (lost end packets).
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "EVENTS",
    "FLASH",
    "EventPacket",
    "ReceivedEvent",
    "TelephoneEvent",
    "TelephoneEventReceiver",
    "TelephoneEventSender",
    "event_code",
]

FLASH = "!"
# RFC 4733 §3.2 Table 3: events 0–9, * = 10, # = 11, A–D = 12–15, flash = 16.
EVENTS = "0123456789*#ABCD" + FLASH
_PAYLOAD = struct.Struct("!BBH")
_TS_MOD = 1 << 32


def event_code(digit: str) -> int:
    """RFC 4733 event code of a DTMF character (``!`` is hook flash)."""
    code = EVENTS.find(digit.upper()) if len(digit) == 1 else -1
    if code < 0:
        raise ValueError(f"{digit!r} is not a DTMF digit; use one of {EVENTS}")
    return code


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """The 4-byte event payload (RFC 4733 §2.3): event, E bit, volume, duration."""

    event: int
    end: bool = False
    volume: int = 10
    duration: int = 0

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview) -> TelephoneEvent:
        if len(data) < _PAYLOAD.size:
            raise ValueError(f"telephone-event payload is {len(data)} bytes, needs 4")
        event, flags, duration = _PAYLOAD.unpack_from(bytes(data[:4]))
        return cls(event=event, end=bool(flags & 0x80), volume=flags & 0x3F, duration=duration)

    def __bytes__(self) -> bytes:
        if not 0 <= self.event < 256:
            raise ValueError(f"event {self.event} not in 0..255")
        if not 0 <= self.volume < 64:
            raise ValueError(f"volume {self.volume} not in 0..63 (-dBm0)")
        if not 0 <= self.duration < 1 << 16:
            raise ValueError(f"duration {self.duration} not in 0..65535 timestamp units")
        return _PAYLOAD.pack(self.event, (0x80 if self.end else 0) | self.volume, self.duration)

    @property
    def digit(self) -> str | None:
        return EVENTS[self.event] if self.event < len(EVENTS) else None


@dataclass(frozen=True, slots=True)
class EventPacket:
    """What the session puts on the wire for one event packet."""

    payload: bytes
    timestamp: int
    marker: bool


@dataclass(slots=True)
class _Pending:
    code: int
    frames: int
    gap_frames: int


class TelephoneEventSender:
    """Turns queued digits into event packets, one tick per frame.

    Per RFC 4733 §2.5.1: the first packet of an event has the marker bit; every packet
    of the event carries the event's start timestamp; the duration grows with each
    update; the end packet is sent three times (§2.5.1.4) on consecutive ticks with the
    same timestamp and final duration. The gap between digits counts from the first end
    packet.
    """

    END_REPEATS = 3

    def __init__(self, frame_samples: int = 160, clock_rate: int = 8000, volume: int = 10) -> None:
        self._frame = frame_samples
        self._rate = clock_rate
        self._volume = volume
        self._queue: deque[_Pending] = deque()
        self._current: _Pending | None = None
        self._start_ts = 0
        self._sent_frames = 0
        self._end_left = 0
        self._gap_left = 0

    def queue(self, digits: str, duration_ms: int = 100, gap_ms: int = 100) -> None:
        """Add digits to send; raise ValueError on anything that is not a DTMF digit."""
        codes = [event_code(d) for d in digits]
        frame_ms = 1000 * self._frame / self._rate
        frames = max(1, round(duration_ms / frame_ms))
        gap_frames = max(0, round(gap_ms / frame_ms))
        if frames * self._frame >= 1 << 16:
            raise ValueError(f"duration {duration_ms} ms does not fit one event (max ~8 s)")
        self._queue.extend(_Pending(c, frames, gap_frames) for c in codes)

    @property
    def busy(self) -> bool:
        """True while an event, its end packets, a gap, or queued digits remain."""
        return bool(self._queue) or self._current is not None or self._gap_left > 0

    @property
    def sending(self) -> bool:
        """True while the frames belong to an event (audio must not be sent)."""
        return self._current is not None

    def cancel(self) -> None:
        """Drop queued digits; an event already on the wire still gets its end packets."""
        self._queue.clear()
        if self._current is not None and self._end_left == 0:
            self._current.frames = self._sent_frames
        self._gap_left = 0

    def tick(self, timestamp: int) -> list[EventPacket]:
        """Packets for the frame starting at ``timestamp``; empty means send audio."""
        if self._current is None:
            if self._gap_left > 0:
                self._gap_left -= 1
                return []
            if not self._queue:
                return []
            self._current = self._queue.popleft()
            self._start_ts = timestamp
            self._sent_frames = 0
            self._end_left = 0
        cur = self._current
        if self._end_left == 0:
            self._sent_frames += 1
            marker = self._sent_frames == 1
            end = self._sent_frames >= cur.frames
            if end:
                self._end_left = self.END_REPEATS
        else:
            marker = False
            end = True
        duration = self._sent_frames * self._frame
        payload = bytes(TelephoneEvent(cur.code, end, self._volume, duration))
        if end:
            self._end_left -= 1
            if self._end_left == 0:
                self._current = None
                self._gap_left = max(0, cur.gap_frames - (self.END_REPEATS - 1))
        return [EventPacket(payload, self._start_ts, marker)]


@dataclass(frozen=True, slots=True)
class ReceivedEvent:
    """One key press as the receiver saw it (duration in timestamp units)."""

    digit: str
    event: int
    timestamp: int
    duration: int
    ended_by: Literal["end", "timeout", "superseded"]


class TelephoneEventReceiver:
    """Reports each received event once, however many packets carried it.

    An event is identified by its RTP timestamp (RFC 4733 §2.5.2.2). Retransmitted end
    packets and late updates of an event already reported are recognised by that
    timestamp and dropped. If every end packet is lost, the event ends ``timeout``
    seconds after its last packet (call `poll`).
    """

    def __init__(self, timeout: float = 0.25, remember: int = 64) -> None:
        self.timeout = timeout
        self._done: deque[int] = deque(maxlen=remember)
        self._cur: TelephoneEvent | None = None
        self._cur_ts = 0
        self._last_seen = 0.0
        self.duplicates = 0

    def receive(self, payload: bytes, timestamp: int, now: float) -> list[ReceivedEvent]:
        """Feed one event payload; raise ValueError if it is malformed."""
        ev = TelephoneEvent.parse(payload)
        out: list[ReceivedEvent] = []
        if timestamp in self._done:
            self.duplicates += 1
            return out
        if ev.digit is None:
            return out
        if self._cur is not None and timestamp != self._cur_ts:
            if (timestamp - self._cur_ts) % _TS_MOD >= _TS_MOD // 2:
                self.duplicates += 1  # a straggler from before the current event
                return out
            out.append(self._finish("superseded"))
        if self._cur is None or ev.duration >= self._cur.duration:
            self._cur = ev
        self._cur_ts = timestamp
        self._last_seen = now
        if ev.end:
            out.append(self._finish("end"))
        return out

    def poll(self, now: float) -> list[ReceivedEvent]:
        """End an event whose packets stopped arriving (all end packets lost)."""
        if self._cur is not None and now - self._last_seen >= self.timeout:
            return [self._finish("timeout")]
        return []

    def next_deadline(self) -> float | None:
        return self._last_seen + self.timeout if self._cur is not None else None

    @property
    def pending(self) -> bool:
        """True while an event has started and not ended (`poll` has work to do)."""
        return self._cur is not None

    def _finish(self, why: Literal["end", "timeout", "superseded"]) -> ReceivedEvent:
        cur = self._cur
        assert cur is not None and cur.digit is not None
        self._done.append(self._cur_ts)
        self._cur = None
        return ReceivedEvent(cur.digit, cur.event, self._cur_ts, cur.duration, why)
