"""Answering-machine detection (AMD), sans-I/O: 20 ms frames in, a decision and a beep out.

The detector listens to what the called party sends from the moment of answer (8 kHz
linear audio, after G.711 decoding) and decides, causally, who answered:

- ``human``: a short utterance ("Hello?") followed by silence: a person waiting for
  us to speak. Decided ``after_short_silence_ms`` after a short utterance ends (the
  person must not wait), or ``after_greeting_silence_ms`` after a longer one (the
  pause between two sentences of a recorded greeting is shorter than that).
- ``machine``: sound that goes on for ``greeting_ms`` without such a pause (a recorded
  greeting, a carrier announcement, music), a beep after speech, or ``total_analysis_ms``
  without a human pause. For machines the detector then follows the greeting to its end
  and reports the beep (a pure single or dual tone of ``beep_min_hz``–``beep_max_hz``
  lasting ``beep_min_ms`` or more; a second beep within ``beep_gap_ms`` is waited for)
  or the ``end_silence_ms`` of silence that ends a greeting without one, and says when
  a message may start.
- ``fax``: a calling tone (CNG, 1,100 Hz ± 38 Hz, ITU-T T.30 §5.2.1: 0.5 s on, 3 s off)
  or an answer tone (CED / ANSam, 2,100 Hz ± 15 Hz, ITU-T T.30 §5.2.2 and V.8 / V.25).
- ``unknown``: nothing but line noise for ``initial_silence_ms`` (dead air).

Frames are analysed in numpy over many frames and many calls at once (`AmdBank`, the way
the DTMF banks batch): level in dBm0 against a tracked noise floor and the speaker's own
level (so line noise and background babble do not count as talk), and the share of
the frame's power in its strongest two spectral peaks over a 40 ms Hann window (what
tells a beep or a fax tone from speech and music; only frames loud enough to be a tone
get the FFT, so pauses and dead air cost a level and no more, and only those whose share
a cheap bound cannot rule out get it worked out exactly). The per-call decision
logic is a small state machine (`_Channel.step`) for each 20 ms frame; the bank keeps
its fields in arrays and works out the frames where nothing but levels and runs move
for all calls in one numpy pass, leaving `_Channel.step` the few where a tone starts
or ends or a stage changes. A call whose detector is done is not analysed at all.

Times are seconds since the first sample fed (the answer). `classify` runs a whole
signal through the streaming detector in 20 ms frames and returns an `AmdResult`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Literal

import numpy as np
import numpy.typing as npt

from autocall.audio.levels import power_to_dbm0

__all__ = [
    "AMD_RATE",
    "AmdBank",
    "AmdBeep",
    "AmdConfig",
    "AmdDecision",
    "AmdDetector",
    "AmdEvent",
    "AmdMessageReady",
    "AmdResult",
    "AnsweredBy",
    "classify",
    "result_of",
]

AMD_RATE = 8000
FRAME = 160  # 20 ms at 8 kHz: the RTP packet of G.711 (RFC 3551 §4.5 default packetization)
_FRAME_S = FRAME / AMD_RATE
# Frames analysed together, in arrays the bank keeps (`_Scratch`, 13 kB a frame). A
# 500-call batch at once costs more per frame (its arrays overflow the caches); of 128,
# 256 and 512, 256 cost least at 250 and at 500 calls of loud frames (8-12 % below 128,
# bench/bench_amd_feed.py's load). Allocated afresh for each block, as they once were,
# anything above 128 cost twice as much (page faults).
_BLOCK = 256
_NFFT = 512  # 40 ms window zero-padded: 15.6 Hz bins, peak frequency to a few Hz
_BIN_HZ = AMD_RATE / _NFFT
_LOBE = 4  # Hann main lobe over 320 samples is ±50 Hz = ±3.2 bins: ±4 bins hold a sine
_BAND = (int(150 / _BIN_HZ), int(3600 / _BIN_HZ) + 1)  # the telephone band (G.712)
_PEAK_BAND = (int(250 / _BIN_HZ), int(2300 / _BIN_HZ) + 1)  # where beeps and fax tones live
# Below this a frame is digital silence, not line noise: a frame of G.711's smallest
# non-zero codes is about -66 dBm0, and a call's media sends zeros until RTP arrives.
_NO_SIGNAL_DBM0 = -85.0

AnsweredBy = Literal["human", "machine", "fax", "unknown"]
MessageCause = Literal["beep", "silence", "timeout"]


@dataclass(frozen=True)
class AmdConfig:
    """Detector parameters; times in milliseconds, levels in dBm0, frequencies in Hz.

    The defaults are the ones `bench/bench_amd.py` measures (fixed across corpus seeds).
    """

    initial_silence_ms: int = 4000
    """Nothing heard for this long after answer: ``unknown`` (dead air)."""
    greeting_ms: int = 3100
    """This much sound without a human pause: ``machine`` (a person says less, then waits)."""
    short_greeting_ms: int = 1000
    """An utterance up to this long counts as short ("Hello?", "Yes, Maria speaking")."""
    after_short_silence_ms: int = 520
    """Silence after a short utterance that decides ``human``: the person is waiting."""
    after_greeting_silence_ms: int = 840
    """Silence after a longer utterance that decides ``human`` (longer than the pauses
    between a recorded greeting's sentences)."""
    total_analysis_ms: int = 6000
    """Undecided this long after answer while sound goes on: ``machine``."""
    end_silence_ms: int = 1500
    """A machine's greeting followed by this much silence and no beep: leave the message."""
    follow_ms: int = 30000
    """A machine's greeting still going this long after answer: leave the message anyway."""
    beep_min_ms: int = 100
    """Shortest tone taken for a beep (usual beeps are 150–1,200 ms)."""
    beep_min_hz: float = 350.0
    beep_max_hz: float = 1700.0
    beep_gap_ms: int = 300
    """After a beep ends, wait this long for a second beep before the message starts."""
    beep_watch_ms: int = 600
    """After deciding ``human``, a beep starting within this long still makes it ``machine``
    (a short greeting such as "Leave a message." then the beep): a second decision."""
    fax_cng_ms: int = 400
    """Calling tone held this long: ``fax`` (T.30 CNG is 0.5 s on)."""
    fax_ced_ms: int = 400
    """Answer tone held this long: ``fax`` (T.30 CED lasts 2.6–4 s)."""
    onset_ms: int = 60
    """Sound must last this long to start an utterance (clicks do not)."""
    margin_db: float = 9.0
    """A frame is sound when this far above the tracked noise floor …"""
    min_level_dbm0: float = -50.0
    """… and above this absolute level …"""
    speaker_range_db: float = 14.0
    """… and no more than this below the loudest recent talk (babble behind a person)."""
    speaker_decay_db_per_s: float = 1.0
    """How fast the loudest-talk level is forgotten."""
    burst_ms: int = 60
    """Sound must last this long to break a silence (babble crests and clicks do not)."""
    resume_after_ms: int = 200
    resume_range_db: float = 10.0
    """After ``resume_after_ms`` of silence, sound must come within this of the speaker's
    peak level to end the silence (the person or the recording talking again)."""
    floor_rise_db_per_s: float = 3.0
    tone_purity: float = 0.96
    """Share of a frame's power in its two strongest peaks for it to count as a tone."""

    def __post_init__(self) -> None:
        for name in (
            "initial_silence_ms",
            "greeting_ms",
            "short_greeting_ms",
            "after_short_silence_ms",
            "after_greeting_silence_ms",
            "total_analysis_ms",
            "end_silence_ms",
            "follow_ms",
            "beep_min_ms",
            "beep_gap_ms",
            "beep_watch_ms",
            "fax_cng_ms",
            "fax_ced_ms",
            "onset_ms",
            "burst_ms",
            "resume_after_ms",
        ):
            value = getattr(self, name)
            if value < 20:
                raise ValueError(
                    f"AmdConfig.{name} must be at least 20 ms (one frame), got {value}"
                )
        if not 0.5 <= self.tone_purity < 1.0:
            raise ValueError(f"AmdConfig.tone_purity must be in [0.5, 1), got {self.tone_purity}")
        if not 0 < self.beep_min_hz < self.beep_max_hz <= 3400:
            raise ValueError("AmdConfig: need 0 < beep_min_hz < beep_max_hz <= 3400")


@dataclass(frozen=True, slots=True)
class AmdDecision:
    """Who answered, decided at ``at`` s; ``cause`` says which rule fired."""

    answered_by: AnsweredBy
    at: float
    cause: str


@dataclass(frozen=True, slots=True)
class AmdBeep:
    """A machine's beep from ``start`` to ``end`` s (the last frame with the tone)."""

    start: float
    end: float
    freq_hz: float


@dataclass(frozen=True, slots=True)
class AmdMessageReady:
    """A machine's greeting is over: a message may start at ``at`` s."""

    at: float
    cause: MessageCause


AmdEvent = AmdDecision | AmdBeep | AmdMessageReady


@dataclass(frozen=True, slots=True)
class AmdResult:
    """The outcome for a whole signal (the fields of ``autocall audio amd --json``)."""

    answered_by: AnsweredBy
    decided_at: float
    cause: str
    beep_at: float | None = None
    message_at: float | None = None

    def to_json(self) -> dict[str, str | float | None]:
        return {
            "answered_by": self.answered_by,
            "decided_at": round(self.decided_at, 3),
            "cause": self.cause,
            "beep_at": None if self.beep_at is None else round(self.beep_at, 3),
            "message_at": None if self.message_at is None else round(self.message_at, 3),
        }


# --- batched frame analysis ---------------------------------------------------------

_WINDOW = np.hanning(2 * FRAME + 2)[1:-1].astype(np.float64)
# 0 dBm0 as mean-square int16 units (levels.py convention, G.711 A-law).
_LOG_P0 = -power_to_dbm0(1.0)


def _level(cur: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """dBm0 of frames ``cur`` (rows of 160 int16 samples as float64).

    The squares of int16 samples are integers below 2**30 and a frame's sum of them is
    below 2**38, so every partial sum is exact in float64 and any order of summation
    gives the same sum: ``einsum`` is ``np.mean(cur * cur, axis=1)`` to the bit, without
    the array of squares.
    """
    ms = np.einsum("ij,ij->i", cur, cur) / FRAME
    return np.asarray(10.0 * np.log10(ms + 1e-12) - _LOG_P0, dtype=np.float64)


_F64 = npt.NDArray[np.float64]
_C128 = npt.NDArray[np.complex128]


class _Scratch:
    """The arrays `_spectral` works in, kept by a bank from one block to the next.

    A block's window and spectrum take 4 kB a frame each: allocated afresh for every
    block, they come from the kernel's zeroed pages once malloc stops reusing them (at
    250 calls a block, before these were kept, a frame cost 2.4 times as much as at
    128), and kept they stay in cache. The window's zero padding is written once.
    """

    def __init__(self) -> None:
        self._alloc(0)

    def _alloc(self, rows: int) -> None:
        self.rows = rows
        self.win = np.zeros((rows, _NFFT))
        self.spectrum = np.zeros((rows, _NFFT // 2 + 1), dtype=np.complex128)
        self.power = np.zeros((rows, _BAND[1] - _BAND[0]))
        self.square = np.zeros_like(self.power)
        self.masked = np.zeros((rows, _PEAK_BAND[1] - _PEAK_BAND[0]))

    def take(self, n: int) -> tuple[_F64, _C128, _F64, _F64, _F64]:
        """The arrays for ``n`` frames: window, spectrum, power, its scratch, masked band."""
        if n > self.rows:
            self._alloc(n)
        return self.win[:n], self.spectrum[:n], self.power[:n], self.square[:n], self.masked[:n]


def _spectral(
    prev: npt.NDArray[np.int16] | npt.NDArray[np.float64],
    cur: npt.NDArray[np.float64],
    need: npt.NDArray[np.float64],
    work: _Scratch,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Purity (the share of the 40 ms window's power in its two peaks), strongest and
    second peak (Hz; 0 when it is weak) of frames ``cur`` with ``prev`` before them.

    Each row is worked out on its own (no sum or peak mixes rows), so a row's features
    do not depend on which other rows are analysed with it: `AmdBank.feed` analyses only
    the frames loud enough to be a tone.

    Nothing reads more of a frame's purity than whether it reaches its call's
    ``tone_purity`` (``need``), and nothing reads the peaks of a frame whose purity does
    not (`_Channel.step` and `AmdBank._step` use them only for a tone). So the exact
    purity (by prefix sums, as the detector was tuned) is worked out only where a direct
    sum, equal to it up to rounding, reaches ``need`` less that rounding (a tone; in
    speech and noise almost never); elsewhere that sum stands in, and the peaks are 0.0
    but where the purity reaches ``need``.
    """
    n = cur.shape[0]
    win, spectrum, power, square, masked = work.take(n)
    # The 40 ms window, zero-padded: rfft pads a shorter row with zeros the same way.
    np.multiply(prev, _WINDOW[:FRAME], out=win[:, :FRAME])
    np.multiply(cur, _WINDOW[FRAME:], out=win[:, FRAME : 2 * FRAME])
    spec = np.fft.rfft(win, axis=1, out=spectrum)[:, _BAND[0] : _BAND[1]]
    # |X|² in the telephone band only (nothing else is read): re² + im², as `**2` does.
    np.square(spec.real, out=power)
    np.add(power, np.square(spec.imag, out=square), out=power)
    total = np.sum(power, axis=1) + 1e-9
    band = power[:, _PEAK_BAND[0] - _BAND[0] : _PEAK_BAND[1] - _BAND[0]]
    width = band.shape[1]
    rows = np.arange(n)
    k1 = np.argmax(band, axis=1)
    np.copyto(masked, band)
    cleared = masked.ravel()
    base = (rows * width)[:, None]
    # Clear the first lobe before looking for a second tone (a dual-tone beep). Columns
    # cut to the edge are inside the lobe anyway (summed twice in e1, it only grows).
    at = np.clip(k1[:, None] + _LOBE_COLS, 0, width - 1) + base
    e1 = np.sum(cleared[at], axis=1)
    cleared[at] = 0.0
    k2 = np.argmax(masked, axis=1)
    # The purity summed directly, an upper bound up to rounding (see _SHARE_SLACK): the
    # first lobe, plus the second (or, for two tones closer than three lobes, the span
    # between them) in the cleared band, which holds there just the bins the first
    # lobe does not. Where it misses ``need``, the frame is no tone and its share by
    # prefix sums (`_share`) is not worked out.
    close = np.abs(k2 - k1) <= 3 * _LOBE
    lo = np.maximum(np.where(close, np.minimum(k1, k2), k2) - _LOBE, 0)
    hi = np.minimum(np.where(close, np.maximum(k1, k2), k2) + _LOBE + 1, width)
    cols = lo[:, None] + _SPAN_COLS
    rest = np.where(cols < hi[:, None], cleared[np.minimum(cols, width - 1) + base], 0.0)
    bound = (e1 + np.sum(rest, axis=1)) / total
    purity = bound
    f1 = np.zeros(n)
    f2 = np.zeros(n)
    can = np.flatnonzero(bound >= need - _SHARE_SLACK)
    if can.size:
        share, e2 = _share(band[can], k1[can], k2[can], total[can])
        purity[can] = share
        hit = share >= need[can]
        tone = can[hit]
        if tone.size:
            f1[tone] = (k1[tone] + _PEAK_BAND[0] + _interp(band, k1[tone], tone)) * _BIN_HZ
            two = tone[e2[hit] > 0.1 * total[tone]]
            f2[two] = (k2[two] + _PEAK_BAND[0] + _interp(band, k2[two], two)) * _BIN_HZ
    return purity, f1, f2


def _share(
    band: npt.NDArray[np.float64],
    k1: npt.NDArray[np.intp],
    k2: npt.NDArray[np.intp],
    total: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The share of ``total`` in the lobes of peaks ``k1`` and ``k2`` of ``band``'s rows,
    and the second lobe's power (prefix sums: the arithmetic the detector was tuned on)."""
    n, width = band.shape
    cums = np.zeros((n, width + 1))
    np.cumsum(band, axis=1, out=cums[:, 1:])
    # Row r's prefix sums start at r * (width + 1) of the flat array: one gather each.
    at = cums.ravel()
    start = np.arange(n) * (width + 1)
    lo1 = start + np.maximum(k1 - _LOBE, 0)
    hi1 = start + np.minimum(k1 + _LOBE + 1, width)
    e1 = at[hi1] - at[lo1]
    lo2 = start + np.maximum(k2 - _LOBE, 0)
    hi2 = start + np.minimum(k2 + _LOBE + 1, width)
    e2 = at[hi2] - at[lo2]
    # Two tones closer than three lobes: count the whole span between them once.
    close = np.abs(k2 - k1) <= 3 * _LOBE
    span = at[np.maximum(hi1, hi2)] - at[np.minimum(lo1, lo2)]
    return np.minimum(np.where(close, span, e1 + e2) / total, 1.0), e2


_LOBE_COLS = np.arange(-_LOBE, _LOBE + 1)[None, :]
_SPAN_COLS = np.arange(5 * _LOBE + 1)[None, :]  # the widest span: two lobes 3 lobes apart
# How far `_spectral`'s bound may fall short of the share `_share` works out, by rounding.
# In exact arithmetic the bound is at least the share. The share's lobe sums are
# differences of prefix sums of up to 132 bins, each within 132 * 2**-53 of the band's
# power (at most ``total``) of the exact sum: the share is within 1e-13 of the exact one.
# The bound sums at most 30 bins directly (relative error below 1e-14). A margin of 1e-9
# is a proof, not a guess: a frame whose bound is below ``need - _SHARE_SLACK`` is no tone.
_SHARE_SLACK = 1e-9


def _interp(
    band: npt.NDArray[np.float64], k: npt.NDArray[np.intp], rows: npt.NDArray[np.intp]
) -> npt.NDArray[np.float64]:
    """Parabolic interpolation of a peak on log power: offset in bins from ``k``."""
    width = band.shape[1]
    a = np.log(band[rows, np.clip(k - 1, 0, width - 1)] + 1e-12)
    b = np.log(band[rows, k] + 1e-12)
    c = np.log(band[rows, np.clip(k + 1, 0, width - 1)] + 1e-12)
    den = a - 2.0 * b + c
    off = np.where(np.abs(den) > 1e-12, 0.5 * (a - c) / np.where(den == 0, 1.0, den), 0.0)
    return np.asarray(np.clip(off, -0.5, 0.5), dtype=np.float64)


# --- per-call decision logic ----------------------------------------------------------


class _Stage(Enum):
    LISTEN = "listen"  # nothing heard yet
    GREETING = "greeting"  # someone or something is talking; not decided
    WATCH = "watch"  # human decided: a beep now would still make it a machine
    FOLLOW = "follow"  # machine decided: following its greeting to the beep
    DONE = "done"


@dataclass(slots=True)
class _Tone:
    """A run of tonal frames whose main frequency holds still."""

    start: int = -1
    frames: int = 0
    f1: float = 0.0
    f2: float = 0.0
    sum_f: float = 0.0

    def step(self, i: int, tonal: bool, f1: float, f2: float) -> bool:
        """Advance by frame ``i``; True when a run just ended (its fields still hold it)."""
        if tonal and self.frames and (_near(f1, self.f1) or _near(f1, self.f2)):
            self.frames += 1
            self.sum_f += f1 if _near(f1, self.f1) else self.f1
            return False
        ended = self.frames > 0
        if ended:
            return True
        if tonal:
            self._begin(i, f1, f2)
        return False

    def restart(self, i: int, tonal: bool, f1: float, f2: float) -> None:
        self.frames = 0
        if tonal:
            self._begin(i, f1, f2)

    def _begin(self, i: int, f1: float, f2: float) -> None:
        self.start, self.frames, self.f1, self.f2, self.sum_f = i, 1, f1, f2, f1

    @property
    def freq(self) -> float:
        return self.sum_f / self.frames if self.frames else 0.0


def _near(a: float, b: float) -> bool:
    return b > 0 and abs(a - b) <= 25.0


def _frames(ms: int) -> int:
    return max(1, round(ms / 1000 / _FRAME_S))


@dataclass(frozen=True, slots=True)
class _Limits:
    """A config's times in frames, worked out once per config (`_Channel.step` runs for
    every call every 20 ms)."""

    resume_after: int
    burst: int
    onset: int
    greeting: int
    short_greeting: int
    after_short: int
    after_greeting: int
    beep_watch: int
    beep_gap: int
    end_silence: int
    floor_rise: float  # dB per frame
    speaker_decay: float  # dB per frame
    tone_min: float  # dBm0: quieter frames are no tone (their spectrum is not looked at)
    initial_silence_at: int  # the first frame whose end reaches initial_silence_ms
    total_analysis_at: int  # ... total_analysis_ms
    follow_at: int  # ... follow_ms


@functools.cache
def _limits(cfg: AmdConfig) -> _Limits:
    return _Limits(
        resume_after=_frames(cfg.resume_after_ms),
        burst=_frames(cfg.burst_ms),
        onset=_frames(cfg.onset_ms),
        greeting=_frames(cfg.greeting_ms),
        short_greeting=_frames(cfg.short_greeting_ms),
        after_short=_frames(cfg.after_short_silence_ms),
        after_greeting=_frames(cfg.after_greeting_silence_ms),
        beep_watch=_frames(cfg.beep_watch_ms),
        beep_gap=_frames(cfg.beep_gap_ms),
        end_silence=_frames(cfg.end_silence_ms),
        floor_rise=cfg.floor_rise_db_per_s * _FRAME_S,
        speaker_decay=cfg.speaker_decay_db_per_s * _FRAME_S,
        tone_min=cfg.min_level_dbm0 + 5.0,
        initial_silence_at=_first_frame_at(cfg.initial_silence_ms),
        total_analysis_at=_first_frame_at(cfg.total_analysis_ms),
        follow_at=_first_frame_at(cfg.follow_ms),
    )


def _first_frame_at(ms: int) -> int:
    """The first frame whose end time, worked out as `_Channel.step` does, reaches ``ms``
    (what `AmdBank` compares frame counts with instead)."""
    frame = max(1, ms // 20 - 2)
    while not frame * _FRAME_S * 1000 >= ms:
        frame += 1
    return frame


@dataclass(slots=True)
class _Channel:
    cfg: AmdConfig
    lim: _Limits = field(init=False)
    frame: int = 0
    stage: _Stage = _Stage.LISTEN
    floor: float | None = None
    speaker: float = -200.0
    run_sound: int = 0  # consecutive sound frames (for the onset)
    run_peak: float = -200.0  # loudest frame of that run
    quiet: int = 0  # consecutive quiet frames
    last_sound_end: int = 0
    greeting_start: int = -1
    watch_until: int = -1  # a human decided: frames during which a beep still means machine
    tone: _Tone = field(default_factory=_Tone)
    beep_end: int = -1  # frame after the last beep, while waiting for a second one

    def __post_init__(self) -> None:
        self.lim = _limits(self.cfg)

    def step(self, level: float, purity: float, f1: float, f2: float) -> list[AmdEvent]:
        # Runs for every call every 20 ms: the common path (no tone) reads each field once.
        cfg = self.cfg
        lim = self.lim
        i = self.frame
        self.frame = i + 1
        end_t = self.frame * _FRAME_S
        floor = self.floor
        if level > _NO_SIGNAL_DBM0:
            # Digital silence (before the first RTP packet, or a gap in it) says nothing
            # about the line's noise: the floor learns from real frames only.
            floor = self.floor = level if floor is None else min(level, floor + lim.floor_rise)
        if floor is None:
            floor = level
        speaker = self.speaker = max(level, self.speaker - lim.speaker_decay)
        loud = level >= max(floor + cfg.margin_db, cfg.min_level_dbm0)
        sound = loud and level >= speaker - cfg.speaker_range_db
        tonal = loud and level >= lim.tone_min and purity >= cfg.tone_purity
        out: list[AmdEvent] = []
        tone = self.tone
        if (tonal or tone.frames) and tone.step(i, tonal, f1, f2):
            out += self._tone_ended(i)
            tone.restart(i, tonal, f1, f2)
        stage = self.stage
        if stage is _Stage.DONE:
            return out
        if tone.frames and stage is not _Stage.FOLLOW:
            tone_ms = tone.frames * _FRAME_S * 1000
            f = tone.freq
            # Fax tones decide at once. ITU-T T.30 §5.2.1 CNG 1,100 Hz ± 38 Hz (a calling
            # fax: before anyone spoke); §5.2.2 CED 2,100 Hz ± 15 Hz (we allow ± 30 Hz).
            if stage is _Stage.LISTEN and abs(f - 1100.0) <= 38.0 and tone_ms >= cfg.fax_cng_ms:
                return out + self._decide("fax", end_t, "cng")
            if abs(f - 2100.0) <= 30.0 and tone_ms >= cfg.fax_ced_ms:
                return out + self._decide("fax", end_t, "ced")
            # A beep after someone spoke: a machine whose greeting just ended (also just
            # after we took a short greeting for a person: "Leave a message." + beep).
            beep_band = cfg.beep_min_hz <= f <= cfg.beep_max_hz
            if stage is _Stage.WATCH and beep_band and tone_ms >= cfg.beep_min_ms:
                return out + self._machine(end_t, "late-beep")
            if stage is _Stage.GREETING and beep_band and tone_ms >= cfg.beep_min_ms:
                return out + self._machine(end_t, "beep")
        if sound:
            # Before anyone spoke, a pure tone (a fax's or the network's) starts no greeting.
            self.run_sound = 0 if tonal and stage is _Stage.LISTEN else self.run_sound + 1
            self.run_peak = max(self.run_peak, level) if self.run_sound > 1 else level
        else:
            self.run_sound = 0
        self.quiet += 1
        # Talk, not a crest of the babble behind a person: syllables last ``burst_ms``, and
        # talk that resumes after a pause comes back near the speaker's own level.
        resumed = (
            self.quiet < lim.resume_after or self.run_peak >= self.speaker - cfg.resume_range_db
        )
        if self.run_sound >= lim.burst and resumed:
            self.quiet = 0
            self.last_sound_end = self.frame
        elif tonal:
            self.quiet = 0  # a beep, however soft, is no silence after the greeting
        if stage is _Stage.LISTEN:
            if self.run_sound >= lim.onset:
                self.stage = _Stage.GREETING
                self.greeting_start = i + 1 - self.run_sound
            elif end_t * 1000 >= cfg.initial_silence_ms:
                return out + self._decide("unknown", end_t, "initial-silence")
            return out
        if stage is _Stage.GREETING:
            span = self.last_sound_end - self.greeting_start
            if span >= lim.greeting:
                return out + self._machine(end_t, "long-greeting")
            short = span <= lim.short_greeting
            if self.quiet >= (lim.after_short if short else lim.after_greeting):
                self.stage = _Stage.WATCH
                self.watch_until = self.frame + lim.beep_watch
                cause = "short-greeting" if short else "greeting"
                return out + [AmdDecision("human", end_t, cause)]
            if end_t * 1000 >= cfg.total_analysis_ms:
                return out + self._machine(end_t, "too-long")
            return out
        if stage is _Stage.WATCH:
            if self.frame >= self.watch_until:
                self.stage = _Stage.DONE
            return out
        # FOLLOW: a machine; wait for its beep or the silence after its greeting.
        if self.beep_end >= 0:
            if self.tone.frames:
                return out  # a second beep is sounding
            if sound and not tonal:
                # Talk or music after the tone: it was part of the greeting, not its end.
                self.beep_end = -1
                return out
            if self.frame - self.beep_end >= lim.beep_gap:
                return out + self._message(end_t, "beep")
            return out
        if self.quiet >= lim.end_silence:
            return out + self._message(end_t, "silence")
        if end_t * 1000 >= cfg.follow_ms:
            return out + self._message(end_t, "timeout")
        return out

    def _tone_ended(self, i: int) -> list[AmdEvent]:
        """A tone run ended before frame ``i``: was it a machine's beep?"""
        cfg = self.cfg
        tone = self.tone
        ms = tone.frames * _FRAME_S * 1000
        f = tone.freq
        is_beep = ms >= cfg.beep_min_ms and cfg.beep_min_hz <= f <= cfg.beep_max_hz
        if not is_beep or self.stage is not _Stage.FOLLOW:
            return []
        # The window of frame i - 1 spans frames i - 2 and i - 1: the tone ended by frame i - 1.
        self.beep_end = i
        return [AmdBeep(tone.start * _FRAME_S, i * _FRAME_S, round(f, 1))]

    def _machine(self, at: float, cause: str) -> list[AmdEvent]:
        self.stage = _Stage.FOLLOW
        self.quiet = 0
        return [AmdDecision("machine", at, cause)]

    def _decide(self, who: AnsweredBy, at: float, cause: str) -> list[AmdEvent]:
        self.stage = _Stage.DONE
        return [AmdDecision(who, at, cause)]

    def _message(self, at: float, cause: MessageCause) -> list[AmdEvent]:
        self.stage = _Stage.DONE
        return [AmdMessageReady(at, cause)]


_STAGES = list(_Stage)  # a stage's code in `AmdBank`'s arrays is its index here
_STAGE_CODE = {stage: code for code, stage in enumerate(_STAGES)}
_LISTEN, _GREETING, _WATCH, _FOLLOW, _DONE = range(len(_STAGES))
_NEVER = 1 << 62  # a threshold no count reaches

# Below this many calls in a feed, stepping each call's `_Channel` in Python costs less
# than the fixed cost of the numpy pass (a lone `AmdDetector`, `classify`; measured: the
# two cost the same at about 40 calls).
_VECTOR_MIN = 40

# Columns of `AmdBank._par`: a call's parameters the vectorised step reads (a call may
# have its own config), in the order `_params` lists them and `AmdBank._step` unpacks them.
_TONE_MIN = 5
_TONE_PURITY = 6
_TONE_TESTS = 10  # the first of `_tone_decides`' columns, fax_cng_ms to beep_max_hz


def _params(cfg: AmdConfig) -> list[float]:
    lim = _limits(cfg)
    return [
        lim.floor_rise,
        lim.speaker_decay,
        cfg.margin_db,
        cfg.min_level_dbm0,
        cfg.speaker_range_db,
        lim.tone_min,
        cfg.tone_purity,
        lim.resume_after,
        cfg.resume_range_db,
        lim.burst,
        cfg.fax_cng_ms,
        cfg.fax_ced_ms,
        cfg.beep_min_ms,
        cfg.beep_min_hz,
        cfg.beep_max_hz,
    ]


# Columns of `AmdBank._f` (float64) and `AmdBank._i` (int64): the fields of `_Channel`
# (and its `_Tone`) that change in frames where nothing else happens, and the thresholds
# at which `_Channel.step` must take over, which change only when it runs.
_F_FLOOR, _F_SPEAKER, _F_RUN_PEAK, _F_TONE_F1, _F_TONE_F2, _F_TONE_SUM = range(6)
(
    _I_FRAME,
    _I_STAGE,
    _I_RUN_SOUND,
    _I_QUIET,
    _I_LAST_SOUND_END,
    _I_GREETING_START,
    _I_TONE_FRAMES,
    _I_DEADLINE,  # frame: a timeout of the stage (silence, analysis, watch, beep gap)
    _I_ONSET_AT,  # run_sound: an utterance starts (LISTEN)
    _I_SPAN_AT,  # span of the greeting: long enough for a machine (GREETING)
    _I_QUIET_AT,  # quiet: long enough to decide (GREETING) or to end the greeting (FOLLOW)
    _I_SHORT_SPAN,  # a greeting this long or shorter is short (GREETING) ...
    _I_QUIET_SHORT_AT,  # ... and this much quiet after it decides
    _I_AFTER_BEEP,  # 1: FOLLOW after a beep, where sound ends the wait for a second one
) = range(14)


class AmdBank:
    """AMD for many calls at once: one numpy analysis per batch of frames over all calls.

    ``feed(frames)`` takes one 20 ms frame (160 int16 samples) per channel, shaped
    ``(channels, 160)`` or ``(channels, k * 160)`` for ``k`` frames each, and returns
    ``(channel, event)`` pairs. ``reset(ch)`` starts a channel afresh (a new call).

    The per-call state machine's changing fields (noise floor, speaker level, sound and
    quiet runs, the tone run, frame count, stage) live here as arrays with a row per
    channel, not in the `_Channel` objects: stepping 500 calls' Python state machines
    every 20 ms cost about a third of a core, and the media pacing loop shares that core.
    In almost every frame of almost every call nothing happens but the same few updates
    (the levels move, a run of sound, quiet or tone grows or breaks), and those are
    worked out for all calls in one numpy pass per frame. A call for which more can
    happen in a frame (a tone starts or ends, a stage's condition is met: onset, a
    timeout, a pause long enough, a beep or fax tone long enough) is stepped by
    `_Channel.step` itself, its fields loaded from the arrays and stored back, so every
    decision is the Python state machine's, bit for bit.

    A feed of only a few calls (a lone `AmdDetector`) steps their `_Channel` objects
    without the numpy pass; such a call's fields then live in its object (``_owned``)
    until the numpy pass next takes it, and only its stage is kept in the arrays.
    """

    def __init__(self, channels: int, config: AmdConfig | None = None) -> None:
        self.config = config or AmdConfig()
        self._ch: list[_Channel] = []
        self._prev = np.zeros((0, FRAME), dtype=np.int16)  # each channel's last frame
        self._par = np.zeros((0, len(_params(self.config))), dtype=np.float64)
        self._f = np.zeros((0, 6), dtype=np.float64)
        self._i = np.zeros((0, _I_AFTER_BEEP + 1), dtype=np.int64)
        self._owned = np.zeros(0, dtype=bool)  # the `_Channel` holds the fields, not the arrays
        self._work = _Scratch()
        # Each channel's stage is DONE, as a list: `done` runs for every call every 20 ms
        # (`AmdListener`, `AmdPool`), and a list index costs a fifth of a numpy scalar's.
        self._done: list[bool] = []
        self.grow(channels)

    @property
    def channels(self) -> int:
        return len(self._ch)

    def reset(self, channel: int, config: AmdConfig | None = None) -> None:
        """Start ``channel`` afresh (a new call), with its own parameters if given."""
        ch = self._ch[channel] = _Channel(config or self.config)
        self._prev[channel] = 0
        self._par[channel] = _params(ch.cfg)
        self._store(channel, ch)
        self._owned[channel] = False

    def done(self, channel: int) -> bool:
        return self._done[channel]

    def grow(self, channels: int) -> None:
        """Add ``channels`` fresh channels at the end (a pool that ran out of them)."""
        first = len(self._ch)
        self._ch += [_Channel(self.config) for _ in range(channels)]
        self._prev = np.concatenate([self._prev, np.zeros((channels, FRAME), np.int16)])
        self._par = np.concatenate([self._par, np.tile(_params(self.config), (channels, 1))])
        self._f = np.concatenate([self._f, np.zeros((channels, self._f.shape[1]))])
        self._i = np.concatenate([self._i, np.zeros((channels, self._i.shape[1]), np.int64)])
        self._owned = np.concatenate([self._owned, np.zeros(channels, dtype=bool)])
        self._done += [False] * channels
        for c in range(first, len(self._ch)):
            self._store(c, self._ch[c])

    def _load(self, c: int) -> _Channel:
        """Channel ``c``'s `_Channel` with the fields kept in the arrays filled in."""
        ch = self._ch[c]
        floor, ch.speaker, ch.run_peak, f1, f2, sum_f = self._f[c].tolist()
        ch.floor = None if floor == np.inf else floor
        frame, stage, ch.run_sound, ch.quiet, ch.last_sound_end, ch.greeting_start, frames = (
            self._i[c, : _I_TONE_FRAMES + 1].tolist()
        )
        ch.frame = frame
        ch.stage = _STAGES[stage]
        tone = ch.tone
        tone.frames, tone.f1, tone.f2, tone.sum_f = frames, f1, f2, sum_f
        return ch

    def _store(self, c: int, ch: _Channel) -> None:
        """Put `_Channel` ``ch``'s fields back into channel ``c``'s rows of the arrays,
        with the thresholds of its stage."""
        tone = ch.tone
        floor = np.inf if ch.floor is None else ch.floor
        self._f[c] = (floor, ch.speaker, ch.run_peak, tone.f1, tone.f2, tone.sum_f)
        lim = ch.lim
        stage = ch.stage
        deadline = onset_at = span_at = quiet_at = quiet_short_at = _NEVER
        short_span = -_NEVER
        after_beep = 0
        if stage is _Stage.LISTEN:
            deadline, onset_at = lim.initial_silence_at, lim.onset
        elif stage is _Stage.GREETING:
            deadline, span_at = lim.total_analysis_at, lim.greeting
            short_span, quiet_short_at, quiet_at = (
                lim.short_greeting,
                lim.after_short,
                lim.after_greeting,
            )
        elif stage is _Stage.WATCH:
            deadline = ch.watch_until
        elif stage is _Stage.FOLLOW and ch.beep_end >= 0:
            deadline, after_beep = ch.beep_end + lim.beep_gap, 1
        elif stage is _Stage.FOLLOW:
            deadline, quiet_at = lim.follow_at, lim.end_silence
        self._done[c] = stage is _Stage.DONE
        self._i[c] = (
            ch.frame,
            _STAGE_CODE[stage],
            ch.run_sound,
            ch.quiet,
            ch.last_sound_end,
            ch.greeting_start,
            tone.frames,
            deadline,
            onset_at,
            span_at,
            quiet_at,
            short_span,
            quiet_short_at,
            after_beep,
        )

    def feed(
        self, frames: npt.ArrayLike, channels: Sequence[int] | None = None
    ) -> list[tuple[int, AmdEvent]]:
        """Analyse one or more frames per channel; ``channels`` names the rows given
        (default: every channel, in order)."""
        x = np.asarray(frames)
        if x.dtype != np.int16:
            raise ValueError(f"AMD expects int16 samples, got {x.dtype}")
        rows = list(range(len(self._ch))) if channels is None else list(channels)
        if x.ndim != 2 or x.shape[0] != len(rows) or x.shape[1] % FRAME or not x.shape[1]:
            raise ValueError(
                f"AMD bank fed {len(rows)} channels expects shape ({len(rows)}, k*{FRAME}),"
                f" got {x.shape}"
            )
        if len(set(rows)) < len(rows):
            raise ValueError(f"AMD bank fed the same channel twice in one call: {rows}")
        idx = np.asarray(rows, dtype=np.intp)
        live = self._i[idx, _I_STAGE] != _DONE
        if not live.all():  # a done detector is not analysed any more
            idx = idx[live]
            x = x[live]
            rows = idx.tolist()
        m = len(rows)
        k = x.shape[1] // FRAME
        level = np.empty((m, k))
        purity = np.zeros((m, k))
        f1 = np.zeros((m, k))
        f2 = np.zeros((m, k))
        per = max(1, _BLOCK // k)
        for s in range(0, m, per):  # blocks whose temporaries stay in cache
            b = slice(s, s + per)
            self._analyse(x[b], idx[b], k, level[b], purity[b], f1[b], f2[b])
        if m < _VECTOR_MIN:
            return self._step_each(rows, level, purity, f1, f2)
        owned = self._owned[idx]
        if owned.any():  # calls stepped on their own until now: their fields to the arrays
            for c in idx[owned].tolist():
                self._store(c, self._ch[c])
            self._owned[idx] = False
        out: list[tuple[int, int, AmdEvent]] = []
        pos = np.arange(m)
        self._step(pos, idx, level[:, 0], purity[:, 0], f1[:, 0], f2[:, 0], out)
        for j in range(1, k):
            pos = pos[self._i[idx[pos], _I_STAGE] != _DONE]
            self._step(pos, idx[pos], level[pos, j], purity[pos, j], f1[pos, j], f2[pos, j], out)
        if k > 1:
            out.sort(key=lambda e: e[0])  # stable: each call's events in frame order, as fed
        return [(c, ev) for _, c, ev in out]

    def _analyse(
        self,
        x: npt.NDArray[np.int16],
        idx: npt.NDArray[np.intp],
        k: int,
        level: npt.NDArray[np.float64],
        purity: npt.NDArray[np.float64],
        f1: npt.NDArray[np.float64],
        f2: npt.NDArray[np.float64],
    ) -> None:
        """Features of ``k`` frames of channels ``idx`` into ``level`` ... ``f2`` (m, k)."""
        m = len(idx)
        prev = self._prev[idx]
        if k > 1:
            frames = x.reshape(m, k, FRAME)
            prev = np.concatenate([prev[:, None, :], frames[:, :-1, :]], axis=1)
        self._prev[idx] = x[:, -FRAME:]
        flat = x.reshape(m * k, FRAME).astype(np.float64)
        levels = _level(flat)
        level[:] = levels.reshape(m, k)
        par = self._par[idx]
        tone_min, need = par[:, _TONE_MIN], par[:, _TONE_PURITY]
        if k > 1:
            tone_min, need = np.repeat(tone_min, k), np.repeat(need, k)
        # Only a frame loud enough to be a tone needs its spectrum (`_Channel.step` reads
        # purity and peaks of no other): speech pauses and dead air skip the FFT.
        toned = levels >= tone_min
        prev = prev.reshape(m * k, FRAME)
        if toned.all():  # a loud moment of every call: no rows to pick
            p, a, b = _spectral(prev, flat, need, self._work)
            purity[:] = p.reshape(m, k)
            f1[:] = a.reshape(m, k)
            f2[:] = b.reshape(m, k)
        elif toned.any():
            pick = np.flatnonzero(toned)
            p, a, b = _spectral(prev[pick], flat[pick], need[pick], self._work)
            purity.reshape(-1)[pick] = p
            f1.reshape(-1)[pick] = a
            f2.reshape(-1)[pick] = b

    def _step_each(
        self,
        rows: list[int],
        level: npt.NDArray[np.float64],
        purity: npt.NDArray[np.float64],
        f1: npt.NDArray[np.float64],
        f2: npt.NDArray[np.float64],
    ) -> list[tuple[int, AmdEvent]]:
        """A few calls: each `_Channel` stepped through its frames in Python."""
        out: list[tuple[int, AmdEvent]] = []
        lv, pu, a, b = level.tolist(), purity.tolist(), f1.tolist(), f2.tolist()
        for r, c in enumerate(rows):
            ch = self._ch[c] if self._owned[c] else self._load(c)
            for j in range(len(lv[r])):
                if ch.stage is _Stage.DONE:
                    break
                for ev in ch.step(lv[r][j], pu[r][j], a[r][j], b[r][j]):
                    out.append((c, ev))
            self._owned[c] = True
            self._i[c, _I_STAGE] = _STAGE_CODE[ch.stage]  # what `feed` reads
            self._done[c] = ch.stage is _Stage.DONE
        return out

    def _step(
        self,
        pos: npt.NDArray[np.intp],
        idx: npt.NDArray[np.intp],
        level: npt.NDArray[np.float64],
        purity: npt.NDArray[np.float64],
        f1: npt.NDArray[np.float64],
        f2: npt.NDArray[np.float64],
        out: list[tuple[int, int, AmdEvent]],
    ) -> None:
        """One frame of calls ``idx`` (none done; ``pos`` their rows in the feed): what
        `_Channel.step` does when nothing but the levels and runs move, for all of them
        at once, and `_Channel.step` itself for those where more can happen.

        Each line stands for the one of `_Channel.step` it is named after, with the same
        float64 operations in the same order, so the arrays hold what the fields would.
        """
        (
            floor_rise,
            speaker_decay,
            margin,
            min_level,
            speaker_range,
            tone_min,
            tone_purity,
            resume_after,
            resume_range,
            burst,
        ) = self._par[idx, :_TONE_TESTS].T
        f = self._f[idx]  # copies: written back below
        i = self._i[idx]
        frame = i[:, _I_FRAME] + 1
        # The floor learns from real frames only; no floor yet (+inf): this frame's level.
        floor = np.where(
            level > _NO_SIGNAL_DBM0, np.minimum(level, f[:, _F_FLOOR] + floor_rise), f[:, _F_FLOOR]
        )
        speaker = np.maximum(level, f[:, _F_SPEAKER] - speaker_decay)
        known = np.where(floor == np.inf, level, floor)
        loud = level >= np.maximum(known + margin, min_level)
        sound = loud & (level >= speaker - speaker_range)
        tonal = loud & (level >= tone_min) & (purity >= tone_purity)
        run_sound = i[:, _I_RUN_SOUND] + 1
        frames = i[:, _I_TONE_FRAMES]
        toning = frames > 0
        slow = frame >= i[:, _I_DEADLINE]
        if tonal.any() or toning.any():
            stage = i[:, _I_STAGE]
            # _Tone.step: a tone goes on while its main frequency holds; a tone that
            # starts or ends, or one long enough to decide on, is `_Channel.step`'s.
            tf1 = f[:, _F_TONE_F1]
            tf2 = f[:, _F_TONE_F2]
            near1 = (tf1 > 0) & (np.abs(f1 - tf1) <= 25.0)
            near2 = (tf2 > 0) & (np.abs(f1 - tf2) <= 25.0)
            on = tonal & toning & (near1 | near2)
            slow |= (tonal | toning) & ~on
            frames = np.where(on, frames + 1, frames)
            i[:, _I_TONE_FRAMES] = frames
            sum_f = f[:, _F_TONE_SUM] = np.where(
                on, f[:, _F_TONE_SUM] + np.where(near1, f1, tf1), f[:, _F_TONE_SUM]
            )
            check = np.flatnonzero(on & (stage != _FOLLOW))
            if check.size:
                slow[check] |= self._tone_decides(
                    stage[check], frames[check], sum_f[check], self._par[idx[check], _TONE_TESTS:]
                )
            # Before anyone spoke, a pure tone starts no greeting.
            run_sound = np.where(tonal & (stage == _LISTEN), 0, run_sound)
            # A beep, however soft, is no silence; a second beep holds the wait for it.
            quiet_breaks = tonal
            held = on & (i[:, _I_AFTER_BEEP] == 1)
            slow &= ~held
        else:  # no tone anywhere: nothing breaks the quiet or holds a wait
            quiet_breaks = held = tonal
        run_sound = np.where(sound, run_sound, 0)
        run_peak = np.where(
            sound,
            np.where(run_sound > 1, np.maximum(f[:, _F_RUN_PEAK], level), level),
            f[:, _F_RUN_PEAK],
        )
        quiet = i[:, _I_QUIET] + 1
        resumed = (quiet < resume_after) | (run_peak >= speaker - resume_range)
        talk = (run_sound >= burst) & resumed
        quiet = np.where(talk | quiet_breaks, 0, quiet)
        last_sound_end = np.where(talk, frame, i[:, _I_LAST_SOUND_END])
        # The stage's own conditions (see `_store`): a greeting starts, is long enough for
        # a machine or followed by quiet long enough for a human, a machine's greeting
        # ends in silence, sound after a beep.
        span = last_sound_end - i[:, _I_GREETING_START]
        short = span <= i[:, _I_SHORT_SPAN]
        slow |= (
            (run_sound >= i[:, _I_ONSET_AT])
            | (span >= i[:, _I_SPAN_AT])
            | (quiet >= np.where(short, i[:, _I_QUIET_SHORT_AT], i[:, _I_QUIET_AT]))
            | (sound & (i[:, _I_AFTER_BEEP] == 1) & ~held)
        )
        python = np.flatnonzero(slow).tolist()
        chans = [self._load(int(idx[s])) for s in python]  # before the arrays move on
        f[:, _F_FLOOR] = floor
        f[:, _F_SPEAKER] = speaker
        f[:, _F_RUN_PEAK] = run_peak
        i[:, _I_FRAME] = frame
        i[:, _I_RUN_SOUND] = run_sound
        i[:, _I_QUIET] = quiet
        i[:, _I_LAST_SOUND_END] = last_sound_end
        self._f[idx] = f
        self._i[idx] = i
        for s, ch in zip(python, chans, strict=True):
            c = int(idx[s])
            events = ch.step(float(level[s]), float(purity[s]), float(f1[s]), float(f2[s]))
            self._store(c, ch)
            p = int(pos[s])
            out += [(p, c, ev) for ev in events]

    @staticmethod
    def _tone_decides(
        stage: npt.NDArray[np.int64],
        frames: npt.NDArray[np.int64],
        sum_f: npt.NDArray[np.float64],
        par: npt.NDArray[np.float64],
    ) -> npt.NDArray[np.bool_]:
        """Where `_Channel.step` decides on a tone that goes on (fax, beep): its tests, on
        ``par``, the calls' `_params` rows from `_TONE_TESTS` on."""
        fax_cng_ms, fax_ced_ms, beep_min_ms, beep_min_hz, beep_max_hz = par.T
        tone_ms = frames * _FRAME_S * 1000
        freq = sum_f / frames
        cng = (stage == _LISTEN) & (np.abs(freq - 1100.0) <= 38.0) & (tone_ms >= fax_cng_ms)
        ced = (np.abs(freq - 2100.0) <= 30.0) & (tone_ms >= fax_ced_ms)
        beep_band = (beep_min_hz <= freq) & (freq <= beep_max_hz)
        beep = ((stage == _WATCH) | (stage == _GREETING)) & beep_band & (tone_ms >= beep_min_ms)
        return np.asarray(cng | ced | beep)


class AmdDetector:
    """Streaming AMD for one call: ``feed`` int16 samples of any length, get events.

    Keeps a partial frame for the next call. ``done`` is true once nothing more will
    be reported (a human, fax or unknown decision, or a machine's message time).
    """

    def __init__(self, config: AmdConfig | None = None) -> None:
        self._bank = AmdBank(1, config)
        self._pending: npt.NDArray[np.int16] = np.zeros(0, dtype=np.int16)

    @property
    def done(self) -> bool:
        return self._bank.done(0)

    def feed(self, samples: npt.ArrayLike) -> list[AmdEvent]:
        x = np.asarray(samples)
        if x.dtype != np.int16:
            raise ValueError(f"AMD expects int16 samples, got {x.dtype}")
        buf = np.concatenate([self._pending, x.ravel()]) if self._pending.size else x.ravel()
        n = buf.size // FRAME
        self._pending = buf[n * FRAME :].copy()
        if n == 0 or self.done:
            return []
        return [ev for _, ev in self._bank.feed(buf[: n * FRAME].reshape(1, -1))]


def classify(
    samples: npt.ArrayLike, rate: int = AMD_RATE, config: AmdConfig | None = None
) -> AmdResult:
    """Run a whole signal (int16, answer at sample 0) through the detector in 20 ms frames.

    A signal that ends before the detector decides is judged as if silence followed:
    the decision a live call would reach had the line gone quiet.
    """
    if rate != AMD_RATE:
        raise ValueError(f"AMD runs at {AMD_RATE} Hz, not {rate}: resample first")
    x = np.asarray(samples)
    if x.dtype != np.int16:
        raise ValueError(f"AMD expects int16 samples, got {x.dtype}")
    cfg = config or AmdConfig()
    det = AmdDetector(cfg)
    events: list[AmdEvent] = []
    x = x.ravel()
    step = FRAME * 50
    for i in range(0, x.size, step):
        events += det.feed(x[i : i + step])
        if det.done:
            break
    tail = FRAME * 50
    fed = x.size
    limit = int(cfg.follow_ms / 1000 * AMD_RATE) + tail
    while not det.done and fed < limit:
        events += det.feed(np.zeros(tail, dtype=np.int16))
        fed += tail
    return result_of(events)


def result_of(events: Sequence[AmdEvent]) -> AmdResult:
    """The `AmdResult` that a detector's events add up to (the last decision counts)."""
    decision: AmdDecision | None = None
    beep: AmdBeep | None = None
    message: AmdMessageReady | None = None
    for ev in events:
        if isinstance(ev, AmdDecision):
            decision = ev  # the last one: a late beep turns a human into a machine
        elif isinstance(ev, AmdBeep):
            beep = beep or ev
        elif isinstance(ev, AmdMessageReady):
            message = ev
    if decision is None:
        return AmdResult("unknown", 0.0, "no-audio")
    beep_at = beep.start if beep is not None and decision.answered_by == "machine" else None
    if decision.answered_by == "human":
        message_at: float | None = decision.at
    elif decision.answered_by == "machine" and message is not None:
        message_at = message.at
    else:
        message_at = None
    return AmdResult(decision.answered_by, decision.at, decision.cause, beep_at, message_at)
