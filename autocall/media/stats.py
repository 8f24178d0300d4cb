"""Reception statistics of one RTP source: loss and interarrival jitter (RFC 3550 App. A)."""

from __future__ import annotations

from dataclasses import dataclass

from autocall.media.rtp import Unwrapper

__all__ = ["MediaStats", "ReceptionStats"]


class ReceptionStats:
    """Counts what arrived from the peer's SSRC.

    Lost = expected − received with expected from the extended highest sequence number
    (RFC 3550 §6.4.1, App. A.3); duplicates make it negative, so it is clamped at 0.
    Jitter is the running estimate J += (|D| − J)/16 of App. A.8, in timestamp units.
    """

    def __init__(self, clock_rate: int = 8000) -> None:
        self.clock_rate = clock_rate
        self.received = 0
        self.octets = 0
        self._unwrap = Unwrapper(16)
        self._base: int | None = None
        self._max = 0
        self._transit: float | None = None
        self._jitter = 0.0
        self._expected_before = 0

    def update(
        self, sequence_number: int, timestamp: int, arrival: float, payload_len: int = 0
    ) -> None:
        ext = self._unwrap(sequence_number)
        if self._base is None:
            self._base = self._max = ext
        elif ext > self._max:
            self._max = ext
        self.received += 1
        self.octets += payload_len
        transit = arrival * self.clock_rate - timestamp
        if self._transit is not None:
            d = transit - self._transit
            if d < 0:
                d = -d
            # Timestamps wrap at 2**32; a wrapped difference is not jitter.
            if d < 2147483648:  # 1 << 31
                self._jitter += (d - self._jitter) / 16
        self._transit = transit

    @property
    def expected(self) -> int:
        now = 0 if self._base is None else self._max - self._base + 1
        return self._expected_before + now

    @property
    def lost(self) -> int:
        return max(0, self.expected - self.received)

    @property
    def jitter(self) -> float:
        """Interarrival jitter in seconds."""
        return self._jitter / self.clock_rate

    def reset(self) -> None:
        """A new SSRC starts counting from scratch (the packet totals stay)."""
        self._expected_before = self.expected
        self._unwrap.reset()
        self._base = None
        self._transit = None


@dataclass(frozen=True, slots=True)
class MediaStats:
    """Snapshot returned by ``MediaSession.stats()``.

    The playout figures (``late_packets``, ``concealed_ms``, ``playout_delay_ms``,
    ``jitter_target_ms``) count only while something took the playout (``on_audio``, a
    recording): without a listener the jitter buffer does not run."""

    packets_sent: int
    octets_sent: int
    packets_received: int
    octets_received: int
    packets_lost: int
    jitter_ms: float
    late_packets: int  # arrived after their playout time
    concealed_ms: float  # lost audio filled in at playout
    malformed: int
    dtmf_sent: int
    dtmf_received: int
    remote_addr: tuple[str, int] | None
    foreign_packets: int = 0  # from an address the stream is not locked to (dropped)
    ignored_packets: int = 0  # of another SSRC or a foreign seq/ts space (RFC 3550 §6.2.1)
    source_switches: int = 0  # a new SSRC took over after the latched one went silent
    late_signal: int = 0  # too late even for detection (beyond the reorder window)
    playout_delay_ms: float = 0.0  # arrival to playout now (adaptive jitter buffer)
    jitter_target_ms: float = 0.0  # the delay the adaptive jitter buffer aims at
    srtp_suite: str | None = None  # SRTP crypto suite in use (RFC 4568 name); None: plain RTP
    srtp_failures: int = 0  # packets that failed SRTP authentication or replayed (dropped)
