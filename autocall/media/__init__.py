"""autocall.media: RTP (RFC 3550), RFC 4733 events, one pacing clock, jitter buffer, recorder.

`MediaEngine` is the process-wide pacing clock; `MediaSession` is one call's RTP endpoint
(its module docstring is the API reference).
"""

from autocall.media.clock import MediaEngine, PacingClock
from autocall.media.rtp import RtpPacket
from autocall.media.session import Digit, DigitSource, MediaSession
from autocall.media.stats import MediaStats

__all__ = [
    "Digit",
    "DigitSource",
    "MediaEngine",
    "MediaSession",
    "MediaStats",
    "PacingClock",
    "RtpPacket",
]
