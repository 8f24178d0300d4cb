"""MediaSession: the RTP endpoint of one call (asyncio driver over the sans-I/O parts).

Public API (stable; `autocall.telephony.call` and `autocall.sip` build on it)::

    engine = MediaEngine()                       # one per UserAgent: the single pacing timer
    media = await MediaSession.open(engine, host="127.0.0.1", port=0)
    media.local_port                             # put it in the SDP offer/answer
    media.start(("192.0.2.7", 4000), payload_type=0, dtmf_payload_type=101)   # 0 PCMU, 8 PCMA,
                                                 # 9 G.722 (the call's audio is then 16 kHz)
    media.rate                                   # 8000, or 16000 from a G.722 start
    media.update(remote_addr=..., payload_type=8, dtmf_payload_type=None, hold=True)  # re-INVITE
    ok = await media.play(pcm_int16)             # at media.rate; True: fully played, False: flushed
    media.flush()                                # barge-in: stop the current and queued prompts
    await media.send_dtmf("123#", duration_ms=100, gap_ms=100, method="rfc4733")  # or "inband"
    async for d in media.digits(): ...           # Digit(digit, source, time, duration_ms)
    media.received_digits                        # every Digit so far, in order
    media.on_digit.append(callback)              # subscribers, called in order (before digits())
    media.on_audio.append(callback)              # every received 20 ms frame (int16), playout-paced
    media.on_signal.append(callback)             # received audio in RTP order (detection, AMD):
                                                 # bursty, silence for timestamp gaps and
                                                 # for every tick after SIGNAL_IDLE without any
    media.inband_detection = False               # save CPU while no digits are expected
    media.report_digit("5", source="info")       # SIP INFO digits join the same stream
    media.record("call.wav"); media.stop_recording()  # stereo WAV: left = received, right = sent
    media.stats()                                # MediaStats: sent/received/lost/jitter/...
    media.start(remote, 0, 101, srtp=SrtpKeys(suite, tx_key, rx_key))  # SRTP (RFC 3711)
    await media.close()

Decisions:

- **Wideband** (ITU-T G.722, payload type 9): the codec ``start`` is given sets the call's
  audio rate, ``rate``: 16 kHz for G.722, else 8 kHz. Prompts (``play``), ``on_audio``,
  playout and recording are at that rate; a re-INVITE that changes the codec keeps the
  rate and converts at the codec (`autocall.audio.g722` filters). G.722 is stateful
  ADPCM, so it is encoded frame by frame in the pacing tick (silence too) and decoded
  per stream in arrival order; G.711 prompts are still encoded whole in ``play``. The
  RTP clock stays 8000 Hz for every codec (RFC 3551 §4.5.2), so timestamps, RFC 4733
  events and statistics do not change. The signal path (in-band DTMF detection,
  ``on_signal``/AMD) stays at 8 kHz: wideband audio is low-pass filtered and decimated
  before it, so the detector and its ITU-T Q.23/Q.24 conformance are the same on every
  call and the shared detector banks keep one rate (DTMF lives below 1.7 kHz).
- **Comfort silence.** From `start` until `close` a packet leaves every 20 ms: the prompt
  when one plays, otherwise G.711 silence. A continuous stream keeps NAT bindings open,
  never trips the peer's RTP inactivity timer, and keeps the peer's jitter buffer primed.
  On hold (``update(hold=True)``) nothing is sent: playback and DTMF sending wait
  where they are until ``update(hold=False)`` (or ``close``, which ends them).
- **Symmetric RTP, locked.** We send to the SDP address until the first valid RTP packet
  with a negotiated payload type arrives, then lock to its source address and port: to
  the SDP address when it comes from there (final until the next offer), else to that
  first source (NAT), which only the SDP address may still take over. Packets from
  any other address are dropped and counted (``MediaStats.foreign_packets``): no
  injected audio or digits, and our audio never goes to them. ``update(remote_addr=...)``
  (a new offer) re-opens the lock, but not for the previous party's address. Packets
  before ``start`` are ignored: start the session as soon as the answer's SDP is known
  (before sending the ACK).
- **One source** (`autocall.media.source`, RFC 3550 §6.2.1): one SSRC is latched with
  probation; other SSRCs and foreign sequence/timestamp spaces are ignored and counted
  (``ignored_packets``) until the latched source has been silent for a while. RFC 4733
  events on an SSRC of their own are accepted from the locked address.
- **Contested streams.** While a second steady SSRC from the locked address competes with
  the latched one, the headers cannot tell which is the caller (a previous call's tail
  may come first or second). Its audio is not played or recorded, but runs through an
  in-band DTMF detector of its own, and its RFC 4733 events count, so the caller's keys
  are heard either way. Only the locked address can get there: this opens nothing to
  other hosts.
- **Two views of what arrived.** ``on_audio`` (and playout, recording) gets one frame per
  pacing tick from the jitter buffer; ``on_signal`` and the in-band DTMF detector get
  the audio in RTP order (`autocall.media.reorder`): a late packet still counts, and a
  pause in arrival never splits a tone; only a gap in timestamps does.
- **Playout on demand.** The jitter buffer runs only while something takes its frames
  (an ``on_audio`` subscriber or a recording); otherwise received audio goes only to
  the signal path, and is not decoded at all when nothing listens there either. The
  buffer's push and pop were a fifth of a worker's time at 1,000 calls that nobody
  heard. A new listener hears the stream from its next packet, after the buffer's delay
  (zeros until then, as at the start of a call), and the playout figures of `stats`
  (late, concealed, delay, target) cover the time something listened.
- **Read in the pacing tick.** The socket is not on the event loop: the engine reads it
  right after each wake-up's sends (`autocall.media.clock`), so receiving never delays
  sending.
- **One stream per call.** ``update`` keeps SSRC, sequence number and timestamp running
  (RFC 3264 §8: a re-INVITE changes the session, not the RTP stream); the RTP timestamp
  is derived from the pacing clock's frame index, so it follows real time even across hold.
- **Digits exactly once.** RFC 4733 events are de-duplicated by timestamp and end by
  timeout if all end packets are lost; in-band digits come from the engine's shared
  `autocall.audio.dtmf.DtmfDetectorBank` (`autocall.media.detection`) over the
  jitter-buffered audio; the same digit from another source within
  `CROSS_SOURCE_WINDOW` seconds is the same key press and is dropped, and so is the
  same in-band digit from the other stream's detector (latched or contested) that has
  not reported that press yet. Silence fed for an arrival pause never makes two presses
  of one tone: when the timestamps say the sender did not pause, the press that resumes
  right after that silence is the one before it.
- **Digits in the order pressed** (`autocall.media.digit_order`). An RFC 4733 key is
  complete when its end packet arrives; a tone only once the detector has analysed its
  batch. So an event key is held until the detector has analysed the audio up to its
  RTP timestamp (plus a tone's release confirmation), until the audio before it is
  complete and silent, or for `autocall.media.digit_order.MAX_HOLD` at most; a tone
  reported meanwhile lets the events that started before it go first. In-band and
  RFC 4733 keys thus come out in the order of their RTP timestamps. SIP INFO digits
  (no RTP time), events on an SSRC of their own or a competing stream's (their
  timestamps are on another clock) and a competing stream's tones are reported as they
  come.
- **SRTP** (`autocall.media.srtp`): with keys, every packet sent is protected as the
  last step before the socket, and every packet received is authenticated first, before
  it may lock the address or latch a source: a forged or replayed packet is dropped
  and counted (``MediaStats.srtp_failures``), whoever sends it. ``update(srtp=...)``
  re-keys on a new offer; the same keys keep the running libsrtp sessions.
- **DTMF sending** pauses the prompt; "rfc4733" falls back to "inband" when no
  telephone-event payload type was negotiated. ``send_dtmf`` returns the method used.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import logging
import socket
import struct
import weakref
import zlib
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from autocall.audio import g711, g722
from autocall.media.clock import MediaEngine
from autocall.media.detection import Slot
from autocall.media.digit_order import DigitOrder, Press
from autocall.media.jitter import JitterBuffer
from autocall.media.recorder import Recorder
from autocall.media.reorder import ReorderBuffer
from autocall.media.rtp import RtpPacket, RtpSender
from autocall.media.source import SourceValidator
from autocall.media.srtp import PROTECT_ERRORS, SrtpError, SrtpKeys, SrtpStream
from autocall.media.stats import MediaStats, ReceptionStats
from autocall.media.telephone_event import (
    FLASH,
    ReceivedEvent,
    TelephoneEventReceiver,
    TelephoneEventSender,
)

if TYPE_CHECKING:
    from autocall.audio.dtmf import DtmfDetector, DtmfEvent

__all__ = ["CROSS_SOURCE_WINDOW", "Digit", "DigitSource", "MediaSession"]

log = logging.getLogger(__name__)

DigitSource = Literal["rfc4733", "inband", "info"]
Samples = npt.NDArray[np.int16]
PCMU, PCMA, G722, CN = 0, 8, 9, 13  # RFC 3551 §6 static payload types; CN from RFC 3389
RATE = 8000
"""The RTP clock of every codec we speak (RFC 3551 §4.5.2: G.722's too), and the rate of
the signal path (detectors, ``on_signal``)."""
CODEC_RATE = {PCMU: 8000, PCMA: 8000, G722: g722.RATE}
"""Audio samples per second of each payload type."""
_AUDIO = frozenset(CODEC_RATE)
CROSS_SOURCE_WINDOW = 0.5
_ENCODERS: dict[int, Callable[[Any], bytes]] = {PCMU: g711.ulaw_encode, PCMA: g711.alaw_encode}
_DECODERS: dict[int, Callable[[Any], Samples]] = {PCMU: g711.ulaw_decode, PCMA: g711.alaw_decode}
_SILENCE_BYTE = {PCMU: g711.ULAW_SILENCE, PCMA: g711.ALAW_SILENCE}
_UNSET: Any = object()
_detector_phase = itertools.count()
_FAST_HEADER = struct.Struct("!BHII")
_DETECTOR_TAIL = 15  # frames: the detector's 100 ms batch plus its release confirmation
# The signal is idle (silence goes to the detector) once nothing arrived for this long.
# Longer than the delivery holds that carriers' networks and busy hosts cause (issue 22:
# 50-150 ms), so a held tone resumes where it stopped instead of being split in two.
SIGNAL_IDLE = 0.25
# ITU-T Q.24 (as in `autocall.media.reorder`): a pause of 40 ms or more separates two
# digits; a shorter gap in the timestamps does not end a tone.
_PAUSE = 320
_SPLIT_TOLERANCE = 0.025  # s: the detector places a tone's edges within two 5 ms hops
_BRIDGE_TTL = 2.0  # s: a split is reported within a few batches of the audio resuming
_Rx = tuple[int, int, int, bytes]  # payload type, sequence number, timestamp, payload


@dataclass(frozen=True, slots=True)
class Digit:
    """A key press the far end made; ``time`` is the event loop time it was reported."""

    digit: str
    source: DigitSource
    time: float
    duration_ms: float = 0.0


@dataclass(slots=True, eq=False)
class _Splits:
    """One detector's guard against a tone split by silence fed for an arrival pause.

    ``fabricated``: samples of such silence since the last audio; ``bridge``: once audio
    resumed with the timestamps saying the sender never paused, that silence (s) and
    until when it may have split a tone; ``last``: the detector's last press (digit, end
    in the detector's seconds).
    """

    fabricated: int = 0
    bridge: tuple[float, float] | None = None
    last: tuple[str, float] | None = None

    def silence(self, signal: ReorderBuffer, samples: int) -> None:
        """``samples`` of silence go to the detector because nothing arrived."""
        if not self.fabricated:
            signal.mark_idle()
        self.fabricated += samples

    def resumed(self, signal: ReorderBuffer, now: float) -> None:
        """Audio comes again. If its timestamps follow on (a gap shorter than a Q.24
        pause), the sender never stopped: a tone the silence cut in two is one press.
        So is one cut by the silence put in for a run of lost packets (bursty loss)."""
        gap = signal.resume_gap
        hole = signal.take_hole()
        if self.fabricated and gap is not None and gap < _PAUSE:
            self.bridge = ((self.fabricated + gap) / RATE, now + _BRIDGE_TTL)
        elif hole:
            self.bridge = ((self.fabricated + hole) / RATE, now + _BRIDGE_TTL)
        self.fabricated = 0

    def same_press(self, digit: str, start: float, end: float, now: float) -> bool:
        """True if this press is the previous one resumed across such silence: the gap
        the detector heard is exactly that silence (the split follows the timestamps)."""
        last, self.last = self.last, (digit, end)
        bridge = self.bridge
        if (
            bridge is None
            or last is None
            or last[0] != digit
            or now >= bridge[1]
            or abs(start - last[1] - bridge[0]) > _SPLIT_TOLERANCE
        ):
            return False
        self.bridge = None
        return True


class _Receive:
    """One received stream's decoding: to the call's rate (playout, recording) and to the
    8 kHz signal path. G.722 decoding and the rate filters keep state, so a new source
    gets a new one."""

    __slots__ = ("rate", "_wide", "_down", "_up")

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._wide: g722.Decoder | None = None
        self._down: g722.Decimator | None = None
        self._up: g722.Interpolator | None = None

    def decode(self, pt: int, payload: bytes, signal: bool) -> tuple[Samples, Samples | None]:
        """(audio at ``rate``, the same at 8 kHz or None when ``signal`` is False and the
        call is wideband: nobody listens to the signal path then)."""
        if pt == G722:
            if self._wide is None:
                self._wide = g722.Decoder()
                self._down = g722.Decimator()
            assert self._down is not None
            wide = self._wide.decode(payload)
            if self.rate == g722.RATE:
                return wide, self._down.process(wide) if signal else None
            narrow = self._down.process(wide)
            return narrow, narrow
        narrow = _DECODERS[pt](payload)
        if self.rate == RATE:
            return narrow, narrow
        if self._up is None:
            self._up = g722.Interpolator()
        return self._up.process(narrow), narrow


class _Transmit:
    """Our stream's encoding where it cannot be done whole in ``play``: G.722 (stateful
    ADPCM) or a codec at another rate than the call's."""

    __slots__ = ("pt", "rate", "_wide", "_down", "_up")

    def __init__(self, pt: int, rate: int) -> None:
        self.pt, self.rate = pt, rate
        self._wide = g722.Encoder() if pt == G722 else None
        self._down = g722.Decimator() if rate > CODEC_RATE[pt] else None
        self._up = g722.Interpolator() if rate < CODEC_RATE[pt] else None

    def encode(self, pcm: Samples) -> bytes:
        if self._down is not None:
            pcm = self._down.process(pcm)
        elif self._up is not None:
            pcm = self._up.process(pcm)
        if self._wide is not None:
            return self._wide.encode(pcm)
        return _ENCODERS[self.pt](pcm)


@dataclass(slots=True, eq=False)
class _Contest:
    """In-band detection on a competing SSRC (see "Contested streams")."""

    ssrc: int
    detector: DtmfDetector
    rx: _Receive
    signal: ReorderBuffer = field(default_factory=ReorderBuffer)
    tail: int = _DETECTOR_TAIL
    splits: _Splits = field(default_factory=_Splits)


# One encoding of a prompt for every call that plays it (issue 20: 500 calls playing the
# same 15 s prompt held 500 copies, 120 KB each). Keyed by the array's identity and the
# payload type; the CRC of its samples catches an array changed in place since, and the
# entry goes when the array does.
_shared_encodings: dict[tuple[int, int], tuple[int, bytes]] = {}


def _forget_encodings(key: int) -> None:
    for pt in _ENCODERS:
        _shared_encodings.pop((key, pt), None)


def _encoded(pcm: Samples, pt: int) -> bytes:
    key = (id(pcm), pt)
    crc = zlib.crc32(pcm.data if pcm.flags.c_contiguous else pcm.tobytes())
    got = _shared_encodings.get(key)
    if got is not None and got[0] == crc:
        return got[1]
    enc = _ENCODERS[pt](pcm)
    if not any((id(pcm), p) in _shared_encodings for p in _ENCODERS):
        weakref.finalize(pcm, _forget_encodings, id(pcm))
    _shared_encodings[key] = (crc, enc)
    return enc


@dataclass(slots=True, eq=False)
class _Playback:
    pcm: Samples
    done: asyncio.Future[bool]
    pos: int = 0
    encoded: dict[int, bytes] = field(default_factory=dict)

    def payload(self, pt: int, frame: int) -> bytes:
        enc = self.encoded.get(pt)
        if enc is None:
            enc = self.encoded[pt] = _encoded(self.pcm, pt)
        chunk = enc[self.pos : self.pos + frame]
        if len(chunk) < frame:
            chunk += bytes([_SILENCE_BYTE[pt]]) * (frame - len(chunk))
        return chunk

    def samples(self, frame: int) -> Samples:
        chunk = self.pcm[self.pos : self.pos + frame]
        if len(chunk) < frame:
            chunk = np.concatenate((chunk, np.zeros(frame - len(chunk), dtype=np.int16)))
        return chunk


class MediaSession:
    """One call's RTP stream: paced sending, receiving, DTMF both ways, recording."""

    def __init__(
        self,
        engine: MediaEngine,
        *,
        jitter_delay_ms: int = 60,
        detect_inband: bool = True,
        event_timeout: float = 0.25,
    ) -> None:
        self.engine = engine
        self.rate = RATE
        """Audio samples per second of this call (16000 once started with G.722)."""
        self.frame_ts = round(RATE * engine.frame)  # RTP timestamp units per frame
        self.frame_samples = self.frame_ts  # audio samples per frame at ``rate``
        self._jitter_delay_ms = jitter_delay_ms
        # Subscriber lists: append to listen, remove to stop (not from inside a callback).
        self.on_digit: list[Callable[[Digit], None]] = []
        self.on_audio: list[Callable[[Samples], None]] = []
        self.on_signal: list[Callable[[Samples], None]] = []
        self.received_digits: list[Digit] = []
        """Every digit received, in order (``digits()`` reads it, ``Call.digits`` shows it)."""
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sender = RtpSender()
        self._stream: int | None = None
        self._remote: tuple[str, int] | None = None
        self._sdp_remote: tuple[str, int] | None = None
        # Address lock (see "Symmetric RTP" above): "open" until the first packet,
        # "first" when locked to a source other than the SDP address (NAT), "sdp" when
        # locked to the SDP address (final until the next offer).
        self._lock: Literal["open", "first", "sdp"] = "open"
        self._retired: set[tuple[str, int]] = set()
        self._pt = PCMU
        self._dtmf_pt: int | None = None
        self._hold = False
        self._marker = True
        self._closed = False
        self._plays: deque[_Playback] = deque()
        self._inband_tx: deque[_Playback] = deque()
        self._events_tx = TelephoneEventSender(self.frame_ts, RATE)
        self._events_busy = False  # mirrors _events_tx.busy, read once a frame
        self._events_done: list[asyncio.Future[None]] = []
        self._events_rx = TelephoneEventReceiver(timeout=event_timeout)
        self._dtmf_lock = asyncio.Lock()
        self._jitter = JitterBuffer(self.frame_samples, delay=jitter_delay_ms * RATE // 1000)
        self._playout = False  # the jitter buffer is played out (see "Playout on demand")
        self._rx_stats = ReceptionStats(RATE)
        self._source: SourceValidator[_Rx] = SourceValidator()
        self._signal = ReorderBuffer()
        self._event_packets = 0  # RFC 4733 packets on an SSRC of their own
        self._contest: _Contest | None = None
        self._pool_port: int | None = None  # handed out by the engine's port pool
        self._inband = detect_inband
        self._detector: DtmfDetector | None = None
        self._slot: Slot | None = None
        self._push_detect: Callable[[Samples], None] | None = None
        self._detector_tail = 0
        self._recorder: Recorder | None = None
        self._digits_read = 0  # how far digits() has read received_digits
        self._digit_arrived = asyncio.Event()
        self._last_digit: Digit | None = None
        # The last in-band press reported: its digit, when, and the feeds that heard it
        # (None: the latched stream's detector; an SSRC: a competing stream's).
        self._heard: tuple[str, float, set[int | None]] | None = None
        self._splits = _Splits()  # the latched stream's detector
        # Keys from RTP in the order they were pressed (see "Digits in the order pressed"),
        # on the latched stream's detector: samples fed to it since it was attached.
        self._order = DigitOrder()
        self._fed = 0
        self._watching = False  # the detector pool tells `_on_progress` how far it got
        self._events_timed = True  # the last event packet came on the latched SSRC
        self._silence: dict[int, bytes] = {
            pt: bytes([b]) * self.frame_samples for pt, b in _SILENCE_BYTE.items()
        }
        self._zeros = np.zeros(self.frame_samples, dtype=np.int16)
        self._signal_zeros = self._zeros  # one frame of the 8 kHz signal path
        self._rx = _Receive(RATE)
        self._tx: _Transmit | None = None  # None: G.711 at the call's rate, encoded in play()
        self._sent: Samples | None = None
        self._malformed = 0
        self._foreign = 0
        self._srtp: SrtpStream | None = None
        self._srtp_failures = 0
        self._dtmf_sent = 0

    # -- setup ---------------------------------------------------------------------------

    @classmethod
    async def open(
        cls, engine: MediaEngine, host: str = "127.0.0.1", port: int = 0, **kwargs: Any
    ) -> MediaSession:
        """Create a session bound to ``host:port`` (port 0 picks a free one)."""
        session = cls(engine, **kwargs)
        await session.bind(host, port)
        return session

    async def bind(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Open the RTP socket; the engine reads it from `start` to `close`."""
        if self._sock is not None:
            raise RuntimeError("MediaSession is already bound")
        self._loop = asyncio.get_running_loop()
        try:  # an address needs no resolver thread (one per call would slow setup)
            infos = socket.getaddrinfo(
                host, port, type=socket.SOCK_DGRAM, flags=socket.AI_NUMERICHOST
            )
        except socket.gaierror:
            infos = await self._loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        family, type_, proto, _, addr = infos[0]

        def bound(p: int) -> socket.socket:
            sock = socket.socket(family, type_, proto)
            try:
                sock.setblocking(False)
                sock.bind((addr[0], p, *addr[2:]))
            except OSError:
                sock.close()
                raise
            return sock

        if port:
            self._sock = bound(port)
            return
        # Port 0: the engine's pool picks, skipping ports resting after a call (see
        # `autocall.media.ports`), so a previous call's tail cannot reach this one.
        pool, now = self.engine.ports, self._loop.time()
        sock = None
        if pool.range is None:
            refused: list[socket.socket] = []
            try:
                for _ in range(64):
                    candidate = bound(0)
                    if pool.usable(candidate.getsockname()[1], now):
                        sock = candidate
                        break
                    refused.append(candidate)  # held open so the system picks another
            finally:
                for r in refused:
                    r.close()
        else:
            for p in pool.candidates(now):
                try:
                    sock = bound(p)
                    break
                except OSError as e:
                    if e.errno not in (errno.EADDRINUSE, errno.EACCES):
                        raise
        if sock is None:
            raise pool.exhausted(now)
        self._pool_port = sock.getsockname()[1]
        pool.taken(self._pool_port)
        self._sock = sock

    @property
    def local_addr(self) -> tuple[str, int]:
        if self._sock is None:
            raise RuntimeError("MediaSession is not bound: use `await MediaSession.open(...)`")
        host, port = self._sock.getsockname()[:2]
        return host, port

    @property
    def local_port(self) -> int:
        return self.local_addr[1]

    @property
    def remote_addr(self) -> tuple[str, int] | None:
        return self._remote

    @property
    def payload_type(self) -> int:
        return self._pt

    @property
    def dtmf_payload_type(self) -> int | None:
        return self._dtmf_pt

    @property
    def on_hold(self) -> bool:
        return self._hold

    @property
    def started(self) -> bool:
        return self._stream is not None

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def playing(self) -> bool:
        return bool(self._plays)

    @property
    def inband_detection(self) -> bool:
        """In-band DTMF detection on received audio (the biggest per-call CPU cost).

        A Call may switch it off while no digits are expected, or when the peer
        negotiated telephone-event and is known not to send tones.
        """
        return self._inband

    @inband_detection.setter
    def inband_detection(self, on: bool) -> None:
        self._inband = on
        if self._stream is not None:
            if on:
                self._attach_detection()
            else:
                self._detach_detection()

    def start(
        self,
        remote_addr: tuple[str, int],
        payload_type: int = PCMU,
        dtmf_payload_type: int | None = None,
        *,
        srtp: SrtpKeys | None = None,
    ) -> None:
        """Begin sending to ``remote_addr`` (from the SDP) and accept its RTP (SRTP with
        ``srtp`` keys)."""
        if self._sock is None:
            raise RuntimeError("bind the MediaSession before start()")
        if self._closed:
            raise RuntimeError("MediaSession is closed")
        if self._stream is not None:
            raise RuntimeError("MediaSession already started; use update() for a re-INVITE")
        self._check_pts(payload_type, dtmf_payload_type)
        if CODEC_RATE[payload_type] != self.rate:
            self._set_rate(CODEC_RATE[payload_type])
        self._remote = self._sdp_remote = (remote_addr[0], remote_addr[1])
        self._pt = payload_type
        self._tx = self._transmit(payload_type)
        self._dtmf_pt = dtmf_payload_type
        self._srtp = SrtpStream(srtp) if srtp is not None else None
        self._discard_queued()
        self.engine.watch(self._sock, self._on_datagram)
        self._stream = self.engine.add_stream(self._send_frame, after=self._after_frame)
        if self._inband:
            self._attach_detection()

    def update(
        self,
        *,
        remote_addr: tuple[str, int] | None = None,
        payload_type: int | None = None,
        dtmf_payload_type: int | None = _UNSET,
        hold: bool | None = None,
        srtp: SrtpKeys | None = _UNSET,
    ) -> None:
        """Apply a re-INVITE's outcome to the running stream (SSRC and sequence go on);
        ``srtp`` new keys (None: plain RTP from now on), the same keys change nothing."""
        pt = self._pt if payload_type is None else payload_type
        dpt = self._dtmf_pt if dtmf_payload_type is _UNSET else dtmf_payload_type
        self._check_pts(pt, dpt)
        if pt != self._pt:
            self._tx = self._transmit(pt)
        self._pt, self._dtmf_pt = pt, dpt
        if srtp is not _UNSET:
            current = self._srtp.keys if self._srtp is not None else None
            if srtp is None:
                self._srtp = None
            elif srtp != current:
                self._srtp = SrtpStream(srtp) if self._srtp is None else self._srtp.rekeyed(srtp)
        if remote_addr is not None:
            new = (remote_addr[0], remote_addr[1])
            # The old party's packets still in flight must not take the new lock.
            for old in (self._remote, self._sdp_remote):
                if old is not None and old != new:
                    self._retired.add(old)
            self._retired.discard(new)
            self._remote = self._sdp_remote = new
            self._lock = "open"
            self._source.reset()
        if hold is not None:
            if self._hold and not hold:
                self._marker = True
            self._hold = hold

    def _set_rate(self, rate: int) -> None:
        """The call's audio rate, from the codec it starts with (before any audio)."""
        self.rate = rate
        self.frame_samples = round(rate * self.engine.frame)
        self._jitter = JitterBuffer(
            self.frame_samples,
            delay=self._jitter_delay_ms * rate // 1000,
            resync=rate * 5,
            rate=rate,
            max_target=1280 * rate // RATE,
            scale=rate // RATE,
        )
        self._zeros = np.zeros(self.frame_samples, dtype=np.int16)
        self._rx = _Receive(rate)
        if self._recorder is not None:  # record() before start(): nothing written yet
            path = self._recorder.path
            self._recorder.close()
            self._recorder = Recorder(path, rate)

    def _transmit(self, pt: int) -> _Transmit | None:
        return None if pt != G722 and CODEC_RATE[pt] == self.rate else _Transmit(pt, self.rate)

    @staticmethod
    def _check_pts(pt: int, dtmf_pt: int | None) -> None:
        if pt not in _AUDIO:
            raise ValueError(
                f"payload type {pt} is not supported: use 0 (PCMU), 8 (PCMA) or 9 (G.722)"
            )
        if dtmf_pt is not None and not 96 <= dtmf_pt <= 127:
            # RFC 3551 §3: dynamic payload types are 96–127, where telephone-event lives.
            raise ValueError(f"telephone-event payload type {dtmf_pt} is not dynamic (96..127)")

    # -- sending -------------------------------------------------------------------------

    async def play(self, pcm: npt.ArrayLike) -> bool:
        """Play int16 mono samples at ``rate`` (8 kHz, 16 kHz on a G.722 call); True when
        all were sent, False if flushed/closed."""
        samples = self._as_pcm(pcm)
        if self._closed:
            return False
        loop = asyncio.get_running_loop()
        pb = _Playback(samples, loop.create_future())
        if len(samples) == 0:
            return True
        if self._tx is None:
            pb.payload(self._pt, 0)  # encode now, not inside a pacing tick shared by all calls
        self._plays.append(pb)
        return await pb.done

    def flush(self) -> None:
        """Barge-in: stop the prompt now and drop queued ones (their play() return False)."""
        while self._plays:
            pb = self._plays.popleft()
            if not pb.done.done():
                pb.done.set_result(False)

    async def send_dtmf(
        self,
        digits: str,
        duration_ms: int = 100,
        gap_ms: int = 100,
        method: Literal["rfc4733", "inband"] = "rfc4733",
    ) -> str:
        """Send key presses; returns the method used ("inband" when no telephone-event)."""
        if method not in ("rfc4733", "inband"):
            raise ValueError(f"method {method!r}: use 'rfc4733' or 'inband'")
        if self._stream is None:
            raise RuntimeError("start() the MediaSession before sending DTMF")
        if method == "rfc4733" and self._dtmf_pt is None:
            method = "inband"
        loop = asyncio.get_running_loop()
        async with self._dtmf_lock:
            if method == "rfc4733":
                self._events_tx.queue(digits, duration_ms, gap_ms)
                self._events_busy = True
                fut: asyncio.Future[Any] = loop.create_future()
                self._events_done.append(fut)
            else:
                if FLASH in digits:
                    raise ValueError("hook flash '!' cannot be sent in-band; use method='rfc4733'")
                from autocall.audio.tones import dtmf

                tones = dtmf(digits, on_ms=duration_ms, off_ms=gap_ms, rate=self.rate)
                pb = _Playback(tones, loop.create_future())
                self._inband_tx.append(pb)
                fut = pb.done
            await fut
            self._dtmf_sent += len(digits)
        return method

    # -- receiving -----------------------------------------------------------------------

    async def digits(self) -> AsyncIterator[Digit]:
        """Received digits not read here yet, in order, each once; ends with the session."""
        while True:
            while self._digits_read < len(self.received_digits):
                self._digits_read += 1
                yield self.received_digits[self._digits_read - 1]
            if self._closed:
                return
            self._digit_arrived.clear()
            await self._digit_arrived.wait()

    def report_digit(
        self, digit: str, source: DigitSource = "info", duration_ms: float = 0.0
    ) -> bool:
        """Add a digit from outside RTP (SIP INFO); False if it duplicates a recent one."""
        now = self._loop.time() if self._loop is not None else 0.0
        d = Digit(digit, source, now, duration_ms)
        last = self._last_digit
        if (
            last is not None
            and last.digit == d.digit
            and last.source != d.source
            and d.time - last.time < CROSS_SOURCE_WINDOW
        ):
            return False
        self._last_digit = d
        self.received_digits.append(d)
        for listener in self.on_digit:
            try:
                listener(d)
            except Exception:
                log.exception("on_digit callback failed")
        self._digit_arrived.set()
        return True

    # -- recording -----------------------------------------------------------------------

    def record(self, path: str | Path) -> None:
        """Record from now on to a stereo WAV (left received, right sent)."""
        self.stop_recording()
        self._recorder = Recorder(path, self.rate)

    def stop_recording(self) -> Path | None:
        rec, self._recorder = self._recorder, None
        if rec is None:
            return None
        rec.close()
        return rec.path

    # -- statistics and teardown ---------------------------------------------------------

    def stats(self) -> MediaStats:
        return MediaStats(
            packets_sent=self._sender.packets_sent,
            octets_sent=self._sender.octets_sent,
            packets_received=self._rx_stats.received + self._event_packets,
            octets_received=self._rx_stats.octets,
            packets_lost=self._rx_stats.lost,
            jitter_ms=self._rx_stats.jitter * 1000,
            late_packets=self._jitter.late,
            concealed_ms=self._jitter.concealed * 1000 / self.rate,
            malformed=self._malformed,
            foreign_packets=self._foreign,
            ignored_packets=self._source.ignored,
            source_switches=self._source.switches,
            late_signal=self._signal.late,
            playout_delay_ms=self._jitter.playout_delay * 1000 / self.rate,
            jitter_target_ms=self._jitter.delay * 1000 / self.rate,
            dtmf_sent=self._dtmf_sent,
            dtmf_received=len(self.received_digits),
            remote_addr=self._remote,
            srtp_suite=self._srtp.keys.suite if self._srtp is not None else None,
            srtp_failures=self._srtp_failures,
        )

    async def close(self) -> None:
        """Stop sending, release the port, end play()/send_dtmf()/digits() waiters."""
        if self._closed:
            return
        self._closed = True
        if self._stream is not None:
            self.engine.remove_stream(self._stream)
            self._stream = None
        self.flush()
        for q in (self._inband_tx,):
            while q:
                pb = q.popleft()
                if not pb.done.done():
                    pb.done.set_result(False)
        self._events_tx.cancel()
        self._resolve_events()
        self._detach_detection()
        self.stop_recording()
        if self._sock is not None:
            self.engine.unwatch(self._sock)
            self._sock.close()
        if self._pool_port is not None and self._loop is not None:
            self.engine.ports.released(self._pool_port, self._loop.time())
            self._pool_port = None
        self._digit_arrived.set()  # digits() ends
        await asyncio.sleep(0)

    # -- driver internals ----------------------------------------------------------------

    @staticmethod
    def _as_pcm(pcm: npt.ArrayLike) -> Samples:
        arr = np.asarray(pcm)
        if arr.ndim != 1:
            raise ValueError(f"play() takes mono samples, got an array of shape {arr.shape}")
        if arr.dtype != np.int16:
            if arr.dtype.kind not in "iu" or (
                arr.size and (arr.min() < -32768 or arr.max() > 32767)
            ):
                raise ValueError(
                    f"play() takes int16 samples at the call's rate, got {arr.dtype}; "
                    "convert with autocall.audio.convert first"
                )
            arr = arr.astype(np.int16)
        return arr

    def _resolve_events(self) -> None:
        for fut in self._events_done:
            if not fut.done():
                fut.set_result(None)
        self._events_done.clear()

    def _after_frame(self, n: int) -> None:
        """Pacing tick, second pass: play out one received frame, detect, record, poll."""
        events_rx = self._events_rx
        if events_rx.pending:
            assert self._loop is not None
            now = self._loop.time()
            for ev in events_rx.poll(now):
                self._received_event(ev, now)
        if self._push_detect is not None or self._detector is not None or self.on_signal:
            assert self._loop is not None
            now = self._loop.time()
            chunks = self._signal.pop(now)
            if chunks:
                self._detector_tail = _DETECTOR_TAIL
                if self._splits.fabricated or self._signal.hole:  # else nothing to note
                    self._splits.resumed(self._signal, now)
                self._feed_signal(chunks, self._signal.next_ts)
            elif self._signal.idle(now, SIGNAL_IDLE) and (
                self._push_detect is not None or self.on_signal or self._detector_tail > 0
            ):
                # Nothing arrived for a while: the far end paused or stopped. Silence
                # keeps a shared detector bank and `on_signal` (AMD times silences) in
                # step, and confirms the release of a key at the very end of the audio
                # (a call's own detector stops after that tail).
                self._detector_tail -= 1
                self._splits.silence(self._signal, len(self._signal_zeros))
                self._feed_signal((self._signal_zeros,))
            if self._contest is not None:
                self._run_contest(now)
            if self._order.holding:
                self._report_presses(self._order.poll(now))
                if self._order.holding:
                    self._release_if_quiet()
        if self.on_audio or self._recorder is not None:
            self._playout = True
            received = self._jitter.pop()
            rx = self._zeros if received is None else received
            for listener in self.on_audio:
                listener(rx)
            if self._recorder is not None:
                self._recorder.write(rx, self._zeros if self._sent is None else self._sent)
        elif self._playout:
            # Nobody listens any more: what is buffered is stale by the next listener.
            self._playout = False
            self._jitter.reset()

    def _send_frame(self, n: int) -> None:
        """Pacing tick, first pass: send frame ``n``'s packet(s), nothing on hold.

        Keeps the audio sent in ``_sent`` for the recorder (None for silence or events).
        """
        self._sent = None
        if self._hold:
            return
        ts = n * self.frame_ts
        if self._events_busy and self._send_events(ts):
            return
        queue = self._inband_tx or self._plays
        pt = self._pt
        tx = self._tx
        if queue:
            pb = queue[0]
            frame = self.frame_samples
            if tx is None:
                payload = pb.payload(pt, frame)
                if self._recorder is not None:
                    self._sent = pb.samples(frame)
            else:
                self._sent = pb.samples(frame)
                payload = tx.encode(self._sent)
            pb.pos += frame
            if pb.pos >= len(pb.pcm):
                queue.popleft()
                if not pb.done.done():
                    pb.done.set_result(True)
        else:
            payload = self._silence[pt] if tx is None else tx.encode(self._zeros)
        sock, remote = self._sock, self._remote
        assert sock is not None and remote is not None
        packet = self._sender.packet(payload, pt, ts, self._marker)
        self._marker = False
        if self._srtp is not None:
            self._sendto(sock, packet, remote)
            return
        # `_sendto` without SRTP, inlined: once per call every 20 ms (contextlib.suppress
        # would cost a context manager per packet).
        try:  # noqa: SIM105
            sock.sendto(packet, remote)
        except OSError:
            pass  # see `_sendto`: RTP is loss tolerant

    def _send_events(self, ts: int) -> bool:
        """Send this frame's RFC 4733 packets; True when they replace the audio frame."""
        packets = self._events_tx.tick(ts)
        sock, remote = self._sock, self._remote
        assert sock is not None and remote is not None
        if self._dtmf_pt is not None:
            for p in packets:
                self._sendto(
                    sock,
                    self._sender.packet(p.payload, self._dtmf_pt, p.timestamp, p.marker),
                    remote,
                )
        if not self._events_tx.busy:
            self._events_busy = False
            self._resolve_events()
        return bool(packets)

    def _sendto(self, sock: socket.socket, packet: bytes, remote: tuple[str, int]) -> None:
        try:
            if self._srtp is not None:  # SRTP: protected as the last step before the socket
                packet = self._srtp.protect(packet)
            sock.sendto(packet, remote)
        except PROTECT_ERRORS:
            pass  # a key past its packet limit (2^48): the packet is dropped
        except OSError:
            # A full send buffer or an ICMP error left on the socket: RTP is loss
            # tolerant, so this packet is dropped and the stream keeps its pace.
            pass

    def _discard_queued(self) -> None:
        """Drop what arrived before `start`: it belongs to no negotiated stream."""
        assert self._sock is not None
        for _ in range(100_000):  # bounded: a flood must not hang start()
            try:
                self._sock.recv(1)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue

    def _on_datagram(self, data: bytes, addr: tuple[Any, ...], now: float) -> None:
        if self._stream is None:
            return
        if self._srtp is not None:
            try:  # authenticated before anything trusts it (the address lock included)
                data = self._srtp.unprotect(data)
            except SrtpError:
                self._srtp_failures += 1
                return
        if len(data) >= 12 and data[0] == 0x80:
            # Plain packet (no padding, extension or CSRC): skip building an RtpPacket.
            b1, seq, ts, ssrc = _FAST_HEADER.unpack_from(data, 1)
            pt = b1 & 0x7F
            payload = data[12:]
        else:
            try:
                pkt = RtpPacket.parse(data)
            except ValueError:
                self._malformed += 1
                return
            pt, seq, ts, ssrc, payload = (
                pkt.payload_type,
                pkt.sequence_number,
                pkt.timestamp,
                pkt.ssrc,
                pkt.payload,
            )
        if pt not in _AUDIO and pt != CN and pt != self._dtmf_pt:
            self._malformed += 1
            return
        if addr != self._remote:
            addr = (addr[0], addr[1])  # IPv6 addresses come with flow info and scope id
        if (addr != self._remote or self._lock == "open") and not self._lock_to(addr):
            self._foreign += 1
            return
        source = self._source
        if pt == self._dtmf_pt and ssrc != source.ssrc and not source.competing(ssrc):
            # RFC 4733 events on an SSRC of their own (SIPp's pcaps do that) are accepted
            # from the locked address; on an SSRC that sent audio they are that source's
            # packets (probation, or ignored with a stray stream). A key press keeps the
            # latched source alive while its audio pauses.
            self._event_packets += 1
            source.touch(now)
            self._receive_events(payload, ts, now, timed=False)
            return
        if source.next_in_line(ssrc, seq, ts, now):  # the common case, kept cheap
            if pt == self._dtmf_pt or pt in (CN, G722) or self.rate != RATE:
                self._receive((pt, seq, ts, payload), now)
                return
            # `_receive` for G.711 on a narrowband call, inlined: every packet of every
            # call comes here.
            self._rx_stats.update(seq, ts, now, len(payload))
            playout = self.on_audio or self._recorder is not None
            signal = self._push_detect is not None or self._detector is not None or self.on_signal
            if playout or signal:
                samples = _DECODERS[pt](payload)
                if playout:
                    self._jitter.push(ts, samples, now)
                if signal:
                    self._signal.push(seq, ts, samples, now, self._read_time())
            return
        admit = source.check(ssrc, seq, ts, now, (pt, seq, ts, payload))
        if admit.contested:
            for cpt, cseq, cts, cpayload in admit.items:
                if cpt == self._dtmf_pt:
                    self._receive_events(cpayload, cts, now, timed=False)
                elif cpt in _AUDIO and (self._slot is not None or self._detector is not None):
                    self._contested(cpt, ssrc, cseq, cts, cpayload, now)
            return
        if admit.new_source:
            self._new_source()
        for item in admit.items:
            self._receive(item, now)

    def _contested(self, pt: int, ssrc: int, seq: int, ts: int, payload: bytes, now: float) -> None:
        """A competing stream's audio, to a detector of its own (one stream at a time)."""
        c = self._contest
        if c is None or (c.ssrc != ssrc and c.signal.idle(now, SIGNAL_IDLE)):
            detector = self._make_detector()
            if detector is None:
                return
            c = self._contest = _Contest(ssrc, detector, _Receive(RATE))
        if c.ssrc == ssrc:
            narrow = c.rx.decode(pt, payload, True)[1]
            assert narrow is not None  # asked for the signal: always there
            c.signal.push(seq, ts, narrow, now, self._read_time())

    def _lock_to(self, addr: tuple[str, int]) -> bool:
        """Address lock (issue 12, item 1): True if packets from ``addr`` may be read.

        Before any packet the SDP address, or the first source that is not a previous
        party (NAT), locks the stream. Once locked to the SDP address it never moves
        without a new offer; locked to another source, only the SDP address may take it
        (a packet from the negotiated address is never an attacker's race).
        """
        sdp = self._sdp_remote
        if self._lock == "sdp":
            return False
        if self._lock == "first" and addr != sdp:
            return False
        if self._lock == "open" and addr != sdp and addr in self._retired:
            return False
        if self._lock == "first":  # the SDP address takes over from the NAT guess
            self._source.reset()
        self._remote = addr
        self._lock = "sdp" if addr == sdp else "first"
        return True

    def _new_source(self) -> None:
        """A new SSRC was latched: per-source state starts again (the signal is flushed)."""
        self._rx_stats.reset()
        self._jitter.reset()
        self._rx = _Receive(self.rate)  # a new source: G.722 and filter state start again
        self._contest = None
        self._splits.fabricated = 0  # another timestamp space: nothing to bridge
        chunks = self._signal.reset()
        if chunks and (self._push_detect or self._detector or self.on_signal):
            self._feed_signal(chunks)
        self._report_presses(self._order.new_timeline())  # another timestamp space

    def _receive(self, item: _Rx, now: float) -> None:
        pt, seq, ts, payload = item
        self._rx_stats.update(seq, ts, now, len(payload))
        if pt == self._dtmf_pt or pt == CN:
            # An event or comfort noise (RFC 3389 §4) takes one of the audio's sequence
            # numbers: its place, not a hole for the detector's audio to wait for.
            if self._push_detect is not None or self._detector is not None or self.on_signal:
                self._signal.skip(seq, ts, now, self._read_time())
            if pt != CN:
                self._receive_events(payload, ts, now)
        else:
            signal = self._push_detect is not None or self._detector is not None or self.on_signal
            playout = self.on_audio or self._recorder is not None
            audio: Samples
            narrow: Samples | None
            if self.rate == RATE and pt != G722:  # G.711 on a narrowband call: the usual case
                if not (playout or signal):
                    return  # nobody hears it: not even decoded
                audio = narrow = _DECODERS[pt](payload)
            else:  # G.722 is stateful: every packet is decoded, in order, heard or not
                audio, narrow = self._rx.decode(pt, payload, bool(signal))
            if playout:
                self._jitter.push(ts, audio, now)
            if signal and narrow is not None:
                self._signal.push(seq, ts, narrow, now, self._read_time())

    def _read_time(self) -> float:
        """When this packet is read (loop time). A loaded process reads a backlog of
        packets that arrived long ago, a few per wake-up (`MediaEngine.max_reads`): the
        signal is not idle while that goes on, whatever their kernel arrival stamps say
        (issue 22: silence fed between two slices of a backlog split a tone in two)."""
        return self._loop.time() if self._loop is not None else 0.0

    def _receive_events(self, payload: bytes, ts: int, now: float, timed: bool = True) -> None:
        """``timed``: the events are on the latched stream's SSRC, so their timestamps are
        on the clock of the audio the detector hears; on an SSRC of their own (SIPp's
        pcaps) or a competing stream's, they are not, and cannot be ordered by them."""
        self._events_timed = timed
        try:
            events = self._events_rx.receive(payload, ts, now)
        except ValueError:
            self._malformed += 1
            return
        for ev in events:
            self._received_event(ev, now)

    def _received_event(self, ev: ReceivedEvent, now: float) -> None:
        """An RFC 4733 key: held by `DigitOrder` while the detector may still report a
        tone pressed before it."""
        press = Press(ev.digit, "rfc4733", ev.duration * 1000 / RATE)
        if (self._slot is None and self._detector is None) or not self._events_timed:
            self.report_digit(press.digit, press.source, press.duration_ms)
            return
        if self._slot is not None:  # the pool tells progress only while keys are held
            analysed = self.engine.detector_pool().analysed(self._slot)
        else:
            analysed = self._detector.analysed if self._detector is not None else 0
        done = self._order.analysed(analysed)
        self._report_presses([*done, *self._order.event(press, ev.timestamp, now)])

    def _report_presses(self, presses: list[Press]) -> None:
        for p in presses:
            self.report_digit(p.digit, p.source, p.duration_ms)
        slot = self._slot
        if slot is not None and self._watching != self._order.holding:
            # Told by the pool how far analysis got only while something waits for it.
            self._watching = self._order.holding
            self.engine.detector_pool().on_progress(
                slot, self._on_progress if self._watching else None
            )

    def _on_progress(self, analysed: int) -> None:
        self._report_presses(self._order.analysed(analysed))

    def _release_if_quiet(self) -> None:
        """Events held while the audio before them is silence need not wait for the
        detector's batch: nothing can come of it. Right after the signal's pop, so
        everything up to its `complete_ts` has been fed to the detector."""
        if self._slot is not None:
            quiet = self.engine.detector_pool().quiet(self._slot)
        else:
            quiet = self._detector is not None and self._detector.quiet
        if quiet:
            self._report_presses(self._order.quiet(self._signal.complete_ts))

    def _run_contest(self, now: float) -> None:
        c = self._contest
        assert c is not None
        chunks = c.signal.pop(now)
        if chunks:
            c.tail = _DETECTOR_TAIL
            c.splits.resumed(c.signal, now)
        elif c.signal.idle(now, SIGNAL_IDLE):
            if c.tail <= 0:
                self._contest = None  # the competing stream stopped
                return
            c.tail -= 1
            c.splits.silence(c.signal, len(self._signal_zeros))
            chunks = [self._signal_zeros]
        for chunk in chunks:
            for ev in c.detector.feed(chunk):
                self._report_inband(ev, c.ssrc, c.splits)

    def _feed_signal(
        self, chunks: list[Samples] | tuple[Samples, ...], ts_end: int | None = None
    ) -> None:
        """Timestamp-ordered received audio to the DTMF detector and `on_signal`;
        ``ts_end``: the extended RTP timestamp where the chunks end (None: silence for a
        pause, or audio of a timeline that ends here)."""
        push, detector, taps = self._push_detect, self._detector, self.on_signal
        if push is not None or detector is not None:
            n = len(chunks[0]) if len(chunks) == 1 else sum(map(len, chunks))
            if ts_end is not None:
                self._order.fed(self._fed, self._fed + n, ts_end)
            self._fed += n
        for chunk in chunks:
            if push is not None:
                push(chunk)
            elif detector is not None:
                for ev in detector.feed(chunk):
                    self._report_inband(ev, None, self._splits)
            for tap in taps:
                tap(chunk)
        if detector is not None and self._order.holding:
            self._report_presses(self._order.analysed(detector.analysed))

    def _attach_detection(self) -> None:
        """Join the engine's shared detector banks, or run a detector of our own."""
        if self._slot is not None or self._detector is not None:
            return
        if not self.on_signal:
            self._signal.reset()  # not fed while detection was off: start from the next packet
        self._splits = _Splits()  # a new detector: its times start again
        self._order = DigitOrder()
        self._watching = False
        try:
            pool = self.engine.detector_pool()
        except ImportError:  # no numpy DTMF banks: a detector of our own, if any
            self._detector = self._make_detector()
            self._fed = self._detector.fed if self._detector is not None else 0
            return
        self._fed = 0
        self._slot = pool.attach(self._on_inband)
        self._push_detect = pool.pusher(self._slot)

    def _detach_detection(self) -> None:
        self._report_presses(self._order.flush())  # nothing left to wait for
        if self._slot is not None:
            self.engine.detector_pool().detach(self._slot)
            self._slot = None
            self._push_detect = None
        self._detector = None
        self._contest = None

    def _on_inband(self, ev: DtmfEvent) -> None:
        self._report_inband(ev, None, self._splits)

    def _report_inband(self, ev: DtmfEvent, feed: int | None, splits: _Splits) -> None:
        """An in-band press from one feed: the latched stream's detector (``None``) or a
        competing stream's (its SSRC). Each detector reports each press it hears once;
        the same digit from a feed that has not reported the last press yet, within
        `CROSS_SOURCE_WINDOW`, is that press heard on the other stream (a stream heard
        twice, or a tone split when the latch moves to its challenger), not a new one.
        A wrong stored code is worse than a missing digit (issue 22)."""
        now = self._loop.time() if self._loop is not None else 0.0
        if splits.same_press(ev.digit, ev.start, ev.end, now):
            return
        heard = self._heard
        if (
            heard is not None
            and heard[0] == ev.digit
            and feed not in heard[2]
            and now - heard[1] < CROSS_SOURCE_WINDOW
        ):
            heard[2].add(feed)
            return
        self._heard = (ev.digit, now, {feed})
        press = Press(ev.digit, "inband", 1000.0 * (ev.end - ev.start))
        if feed is None:  # on the latched stream's timeline: the events before it go first
            self._report_presses(self._order.inband(press, round(ev.start * RATE), now))
        else:
            self.report_digit(press.digit, press.source, press.duration_ms)

    @staticmethod
    def _make_detector() -> DtmfDetector | None:
        try:
            from autocall.audio.dtmf import DtmfDetector
        except ImportError:
            log.warning("autocall.audio.dtmf is missing: in-band DTMF detection is off")
            return None
        detector = DtmfDetector(rate=RATE)
        # The detector analyses in 100 ms batches; start each session at another point of
        # the batch so 500 calls do not all pay for an analysis on the same tick.
        detector.feed(np.zeros(160 * (next(_detector_phase) % 5), dtype=np.int16))
        return detector
