"""RTP packets (RFC 3550 §5.1) and the small amount of sequence arithmetic around them.

`RtpPacket.parse` never trusts its input: anything that is not a well-formed version-2
packet raises ``ValueError`` with the reason, so a receive loop can count and drop it.
`RtpSender` is the sans-I/O state of one outgoing stream (SSRC, next sequence number,
random timestamp base) so that a re-INVITE can keep the same stream going.
"""

from __future__ import annotations

import secrets
import struct
from dataclasses import dataclass, field

__all__ = [
    "RtpExtension",
    "RtpPacket",
    "RtpSender",
    "Unwrapper",
    "seq_diff",
]

_HEADER = struct.Struct("!BBHII")
_pack_header = _HEADER.pack
_EXT_HEADER = struct.Struct("!HH")
SEQ_MOD = 1 << 16  # RFC 3550 §5.1: 16-bit sequence number
TS_MOD = 1 << 32  # RFC 3550 §5.1: 32-bit timestamp


@dataclass(frozen=True, slots=True)
class RtpExtension:
    """Header extension (RFC 3550 §5.3.1): a profile-defined 16-bit id and 32-bit words."""

    profile: int
    data: bytes = b""


@dataclass(slots=True)
class RtpPacket:
    """One RTP packet; ``padding`` is the number of padding bytes (0 = P bit clear)."""

    payload_type: int
    sequence_number: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrc: tuple[int, ...] = ()
    extension: RtpExtension | None = None
    padding: int = 0

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview) -> RtpPacket:
        """Decode one datagram; raise ``ValueError`` naming what is wrong."""
        data = bytes(data)
        if len(data) < _HEADER.size:
            raise ValueError(f"RTP packet too short: {len(data)} bytes, header needs 12")
        b0, b1, seq, ts, ssrc = _HEADER.unpack_from(data)
        version = b0 >> 6
        if version != 2:
            raise ValueError(f"RTP version {version}, expected 2")
        cc = b0 & 0x0F
        pos = _HEADER.size + 4 * cc
        if len(data) < pos:
            raise ValueError(f"RTP packet truncated: {cc} CSRCs need {pos} bytes, got {len(data)}")
        csrc = struct.unpack_from(f"!{cc}I", data, _HEADER.size) if cc else ()
        end = len(data)
        padding = 0
        if b0 & 0x20:
            padding = data[-1]
            if padding == 0:
                raise ValueError("RTP padding bit set but padding count is 0")
            if padding > end - pos:
                raise ValueError(
                    f"RTP padding count {padding} exceeds the {end - pos} bytes after the header"
                )
            end -= padding
        extension = None
        if b0 & 0x10:
            if end - pos < _EXT_HEADER.size:
                raise ValueError("RTP extension bit set but no room for the extension header")
            profile, words = _EXT_HEADER.unpack_from(data, pos)
            pos += _EXT_HEADER.size
            if end - pos < 4 * words:
                raise ValueError(
                    f"RTP extension of {words} words overruns the packet ({end - pos} bytes left)"
                )
            extension = RtpExtension(profile, data[pos : pos + 4 * words])
            pos += 4 * words
        return cls(
            payload_type=b1 & 0x7F,
            sequence_number=seq,
            timestamp=ts,
            ssrc=ssrc,
            payload=data[pos:end],
            marker=bool(b1 & 0x80),
            csrc=tuple(csrc),
            extension=extension,
            padding=padding,
        )

    def __bytes__(self) -> bytes:
        if not 0 <= self.payload_type < 128:
            raise ValueError(f"payload_type {self.payload_type} not in 0..127")
        if not 0 <= self.sequence_number < SEQ_MOD:
            raise ValueError(f"sequence_number {self.sequence_number} not in 0..65535")
        if not 0 <= self.timestamp < TS_MOD or not 0 <= self.ssrc < TS_MOD:
            raise ValueError("timestamp and ssrc must fit in 32 bits")
        if len(self.csrc) > 15:
            raise ValueError(f"{len(self.csrc)} CSRCs, at most 15 fit (RFC 3550 §5.1 CC)")
        if not 0 <= self.padding < 256:
            raise ValueError(f"padding {self.padding} not in 0..255")
        b0 = 0x80 | len(self.csrc)
        if self.padding:
            b0 |= 0x20
        parts = [
            _HEADER.pack(
                b0 | (0x10 if self.extension else 0),
                (0x80 if self.marker else 0) | self.payload_type,
                self.sequence_number,
                self.timestamp,
                self.ssrc,
            )
        ]
        if self.csrc:
            parts.append(struct.pack(f"!{len(self.csrc)}I", *self.csrc))
        if self.extension is not None:
            ext = self.extension
            if len(ext.data) % 4:
                raise ValueError(
                    f"extension data is {len(ext.data)} bytes, must be whole 32-bit words"
                )
            parts.append(_EXT_HEADER.pack(ext.profile, len(ext.data) // 4))
            parts.append(ext.data)
        parts.append(self.payload)
        if self.padding:
            parts.append(bytes(self.padding - 1) + bytes([self.padding]))
        return b"".join(parts)


def seq_diff(a: int, b: int) -> int:
    """Signed distance ``a - b`` of two 16-bit sequence numbers across the wrap."""
    d = (a - b) % SEQ_MOD
    return d - SEQ_MOD if d >= SEQ_MOD // 2 else d


class Unwrapper:
    """Extends wrapping counters (sequence numbers, timestamps) to unbounded integers.

    Each value is placed nearest to the previous one (RFC 3550 Appendix A.1 keeps a
    cycle count the same way), so reordering across the wrap still sorts correctly.
    """

    __slots__ = ("_half", "_last", "_mod")

    def __init__(self, bits: int) -> None:
        self._mod = 1 << bits
        self._half = self._mod >> 1
        self._last: int | None = None

    def __call__(self, value: int) -> int:
        if self._last is None:
            self._last = value
            return value
        d = (value - self._last) % self._mod
        if d >= self._half:
            d -= self._mod
        ext = self._last + d
        if d > 0:
            self._last = ext
        return ext

    def reset(self) -> None:
        self._last = None


@dataclass(slots=True)
class RtpSender:
    """Outgoing stream state: SSRC, next sequence number and timestamp base.

    RFC 3550 §5.1 asks for random initial sequence number and timestamp; they come
    from ``secrets`` so an off-path attacker cannot guess them.
    """

    ssrc: int = field(default_factory=lambda: secrets.randbits(32))
    sequence_number: int = field(default_factory=lambda: secrets.randbits(16))
    timestamp_base: int = field(default_factory=lambda: secrets.randbits(32))
    packets_sent: int = 0
    octets_sent: int = 0

    def packet(
        self, payload: bytes, payload_type: int, timestamp: int, marker: bool = False
    ) -> bytes:
        """Serialise the next packet; ``timestamp`` is relative to the random base."""
        seq = self.sequence_number
        header = _pack_header(
            0x80,
            (0x80 if marker else 0) | payload_type,
            seq,
            (self.timestamp_base + timestamp) & 0xFFFFFFFF,  # mod TS_MOD
            self.ssrc,
        )
        self.sequence_number = (seq + 1) & 0xFFFF  # mod SEQ_MOD
        self.packets_sent += 1
        self.octets_sent += len(payload)
        return header + payload
