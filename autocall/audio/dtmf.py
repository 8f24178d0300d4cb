"""In-band DTMF detection (ITU-T Q.23/Q.24), sans-I/O: samples in, key presses out.

Why not a textbook Goertzel bank with fixed thresholds: a bin wide enough to pass
±1.5 % off-frequency tones also passes ±3.5 % ones, and a block long enough to
separate them is too long to time 40 ms tones and 10 ms gaps. So each 10 ms block
is analysed at the eight Q.23 frequencies (one matrix product per call, over all
channels), and the *frequency* of each tone is measured from the phase advance
between blocks 5 ms apart, which resolves a few Hz in 5 ms. Levels, twist and
the share of the signal's power in the two tones are checked per block; timing
rules turn block decisions into key presses.

Events are emitted once per key press when the digit has ended (a pause of
`_OFF_BLOCKS` hops confirms the release), with start and end times in seconds
since the stream's first sample (since the last `reset` for a bank channel).
The latency from release to event is about 35 ms.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from autocall.audio.levels import dbm0_to_power
from autocall.audio.tones import DTMF_HIGH, DTMF_KEYS, DTMF_LOW

__all__ = ["DtmfDetector", "DtmfDetectorBank", "DtmfEvent", "detect", "digits"]

# Analysis grid, in ms so that 8 and 16 kHz behave alike.
_BLOCK_MS = 10.0  # block length: bins ≈ 100 Hz wide, fine for Q.23 group spacing (≥ 73 Hz)
_HOP_MS = 5.0  # hop between blocks; the phase advance over it gives the frequency

# ITU-T Q.24 (Annex A, the administrations' tables): operate on each tone down to
# about −25…−36 dBm0 and never operate at −55 dBm0 or below. We operate from −40.
_MIN_TONE_DBM0 = -40.0
# Twist = level(high) − level(low). Q.24 Annex A / common receiver practice (Bellcore
# LSSGR): accept normal twist down to −8 dB and reverse twist up to +4 dB, with no
# margin required beyond; the limits sit halfway to the +8/−12 dB that must fail.
_TWIST_REVERSE_DB = 6.0
_TWIST_NORMAL_DB = -10.0
# Q.24 §4.3 signal-to-noise (and talk-off) practice: the two tones must carry most of
# the block's power. 15 dB SNR against the weaker tone still leaves > 95 % in the tones,
# while a chord of three equal sines puts at most 67 % into any two of them.
_MIN_TONE_SHARE = 0.8
# Level change allowed between the two blocks of one observation: blocks that only
# partly overlap a tone (its edges) fail this, which is what times durations exactly.
_MAX_STEP_DB = 3.0
# Q.24 §4.1 frequency tolerance: operate within ±1.5 %, never operate at ±3.5 % or
# beyond. A single observation may stray to ±4 % (noise); the mean over the key
# press must be within ±2.5 %, halfway between the two limits.
_BLOCK_FREQ_TOL = 0.04
_DIGIT_FREQ_TOL = 0.025
# Q.24 §4.4 timing: accept tones ≥ 40 ms, reject ≤ 20 ms (23 ms); pauses ≥ 40 ms separate
# digits and an interruption ≤ 10 ms must not split one. In 5 ms hops an observation
# spans 15 ms, so a 40 ms tone yields ≥ 5 observations and a 20 ms one ≤ 3; a 10 ms
# dropout spoils ≤ 5 observations and a 40 ms pause ≥ 8.
_ON_BLOCKS = 5
_OFF_BLOCKS = 7

_FREQS = np.array(DTMF_LOW + DTMF_HIGH, dtype=np.float64)


@dataclass(frozen=True)
class DtmfEvent:
    """One key press: which key, and when it sounded (seconds since the stream began)."""

    digit: str
    start: float
    end: float


class _Analyzer:
    """Block analysis shared by the single-channel detector and the bank.

    Few, large numpy operations: the cost of one call hardly depends on how many
    channels or blocks it covers, which is what makes batching pay.
    """

    def __init__(self, rate: int) -> None:
        if rate not in (8000, 16000):
            raise ValueError(f"DTMF detection runs at 8000 or 16000 Hz, not {rate}: resample first")
        self.rate = rate
        self.n = int(rate * _BLOCK_MS / 1000)
        self.hop = int(rate * _HOP_MS / 1000)
        n = np.arange(self.n, dtype=np.float64)
        w = 0.5 - 0.5 * np.cos(2.0 * np.pi * (n + 0.5) / self.n)  # Hann: low leakage across groups
        arg = 2.0 * np.pi * np.outer(n, _FREQS) / rate
        # Columns interleaved (re, im) per frequency so the product views as complex.
        basis = np.empty((self.n, 16), dtype=np.float64)
        basis[:, 0::2] = w[:, None] * np.cos(arg)
        basis[:, 1::2] = -w[:, None] * np.sin(arg)
        self.basis = basis
        # |Y|² of a sine of power P at a bin centre is P / pnorm; keep powers in |Y|² units.
        pnorm = 2.0 / float(np.sum(w)) ** 2
        self.w2 = (w * w) / float(np.sum(w * w)) / pnorm
        self.log_pmin = float(np.log(dbm0_to_power(_MIN_TONE_DBM0) / pnorm))
        self.tiny = dbm0_to_power(-120.0) / pnorm
        # A tone exactly at a nominal frequency advances its phase by this much per hop.
        self.unrotate = np.exp(-2j * np.pi * _FREQS * self.hop / rate)
        self.to_rel = rate / (2.0 * np.pi * self.hop) / _FREQS
        lo, hi = np.log(10.0) * _TWIST_NORMAL_DB / 10.0, np.log(10.0) * _TWIST_REVERSE_DB / 10.0
        self.twist_mid, self.twist_half = (lo + hi) / 2.0, (hi - lo) / 2.0
        self.log_step = np.log(10.0) * _MAX_STEP_DB / 10.0
        self.group = np.array([0, 4])
        self._rows: dict[int, npt.NDArray[np.intp]] = {}

    def blocks(self, length: int) -> int:
        return 0 if length < self.n else (length - self.n) // self.hop + 1

    def analyze(
        self, buf: npt.NDArray[np.float64], nb: int
    ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float64]]:
        """Observations for blocks 1…nb−1 of `buf` (C, L), each against the block before.

        Returns the key index per observation (−1: none), shape (C, nb−1), and the
        measured relative frequency error of its low and high tone, shape (C, nb−1, 2).
        """
        c = buf.shape[0]
        xb = np.ndarray((c, nb, self.n), np.float64, buf, 0, (buf.strides[0], self.hop * 8, 8))
        y = (xb @ self.basis).view(np.complex128)
        total = (xb * xb) @ self.w2
        p = (y.real * y.real + y.imag * y.imag).reshape(c, nb, 2, 4)
        idx = p.argmax(-1)
        pm = p.max(-1)
        lp = np.log(pm + self.tiny)
        ok = (
            (lp.min(-1) >= self.log_pmin)
            & (np.abs(lp[..., 1] - lp[..., 0] - self.twist_mid) <= self.twist_half)
            & (pm.sum(-1) >= _MIN_TONE_SHARE * total)
        )
        code = np.where(ok, idx[..., 0] * 4 + idx[..., 1], -1)
        cur = code[:, 1:]
        z = y[:, 1:] * y[:, :-1].conj() * self.unrotate
        rel = np.arctan2(z.imag, z.real) * self.to_rel
        m = c * (nb - 1)
        rows = self._rows.get(m)
        if rows is None:
            rows = self._rows[m] = np.arange(m)[:, None] * 8
        dev = rel.reshape(-1)[rows + (idx[:, 1:] + self.group).reshape(m, 2)].reshape(c, nb - 1, 2)
        good = (
            (cur >= 0)
            & (cur == code[:, :-1])
            & (np.abs(lp[:, 1:] - lp[:, :-1]).max(-1) <= self.log_step)
            & (np.abs(dev).max(-1) <= _BLOCK_FREQ_TOL)
        )
        return np.where(good, cur, -1), dev


class _Track:
    """Timing rules for one channel: observations → key presses (the single-channel path)."""

    __slots__ = (
        "code",
        "start",
        "end",
        "n",
        "slo",
        "shi",
        "gap",
        "rc",
        "rn",
        "rs",
        "re",
        "rlo",
        "rhi",
    )

    def __init__(self) -> None:
        self.code = self.rc = -1
        self.start = self.end = self.n = self.gap = self.rn = self.rs = self.re = 0
        self.slo = self.shi = self.rlo = self.rhi = 0.0

    @property
    def busy(self) -> bool:
        return self.code >= 0 or self.rn > 0

    def step(
        self, c: int, dlo: float, dhi: float, s0: int, s1: int, out: list[tuple[int, int, int]]
    ) -> None:
        """One observation of key `c` (−1: none) spanning samples [s0, s1)."""
        if self.code >= 0:
            if c == self.code:
                self.end = s1
                self.n += 1
                self.slo += dlo
                self.shi += dhi
                self.gap = self.rn = 0
                return
            self.gap += 1
            if self.gap >= _OFF_BLOCKS:
                self.finish(out)
        if c < 0:
            self.rn = 0
            return
        if c == self.rc and self.rn > 0:
            self.rn += 1
            self.re = s1
            self.rlo += dlo
            self.rhi += dhi
        else:
            self.rc, self.rn, self.rs, self.re, self.rlo, self.rhi = c, 1, s0, s1, dlo, dhi
        if self.rn >= _ON_BLOCKS:
            if self.code >= 0:
                self.finish(out)
            self.code, self.start, self.end, self.n = self.rc, self.rs, self.re, self.rn
            self.slo, self.shi, self.gap, self.rn = self.rlo, self.rhi, 0, 0

    def finish(self, out: list[tuple[int, int, int]]) -> None:
        """The key was released: keep it if its mean frequencies are within tolerance."""
        if self.code >= 0 and _in_tolerance(self.slo / self.n, self.shi / self.n):
            out.append((self.code, self.start, self.end))
        self.code = -1
        self.gap = 0


def _in_tolerance(mean_lo: float, mean_hi: float) -> bool:
    return abs(mean_lo) <= _DIGIT_FREQ_TOL and abs(mean_hi) <= _DIGIT_FREQ_TOL


class _Tracks:
    """The same timing rules as `_Track`, as arrays over channels (the bank's path).

    One pass per observation index instead of one Python loop per channel.
    """

    def __init__(self, channels: int) -> None:
        z = np.zeros(channels, dtype=np.int64)
        f = np.zeros(channels, dtype=np.float64)
        self.code, self.rc = z - 1, z - 1
        self.start, self.end, self.n, self.gap = z.copy(), z.copy(), z.copy(), z.copy()
        self.rn, self.rs, self.re = z.copy(), z.copy(), z.copy()
        self.slo, self.shi, self.rlo, self.rhi = f.copy(), f.copy(), f.copy(), f.copy()

    def busy(self) -> npt.NDArray[np.bool_]:
        return (self.code >= 0) | (self.rn > 0)

    def clear(self, ch: int) -> None:
        self.code[ch] = self.rc[ch] = -1
        self.n[ch] = self.gap[ch] = self.rn[ch] = 0

    def step(
        self,
        c: npt.NDArray[np.intp],
        dlo: npt.NDArray[np.float64],
        dhi: npt.NDArray[np.float64],
        s0: int,
        s1: int,
        out: list[tuple[int, int, int, int]],
    ) -> None:
        act = self.code >= 0
        cont = act & (c == self.code)
        if cont.any():
            self.end[cont] = s1
            self.n += cont
            self.slo += np.where(cont, dlo, 0.0)
            self.shi += np.where(cont, dhi, 0.0)
            self.gap[cont] = 0
            self.rn[cont] = 0
        other = act & ~cont
        if other.any():
            self.gap += other
            self._finish(other & (self.gap >= _OFF_BLOCKS), out)
        rest = ~cont
        self.rn[rest & (c < 0)] = 0
        pos = rest & (c >= 0)
        if not pos.any():
            return
        ext = pos & (c == self.rc) & (self.rn > 0)
        new = pos & ~ext
        self.rn += ext
        self.re[ext] = s1
        self.rlo += np.where(ext, dlo, 0.0)
        self.rhi += np.where(ext, dhi, 0.0)
        if new.any():
            self.rc[new] = c[new]
            self.rn[new] = 1
            self.rs[new] = s0
            self.re[new] = s1
            self.rlo[new] = dlo[new]
            self.rhi[new] = dhi[new]
        on = pos & (self.rn >= _ON_BLOCKS)
        if on.any():
            self._finish(on & (self.code >= 0), out)
            self.code[on] = self.rc[on]
            self.start[on] = self.rs[on]
            self.end[on] = self.re[on]
            self.n[on] = self.rn[on]
            self.slo[on] = self.rlo[on]
            self.shi[on] = self.rhi[on]
            self.gap[on] = 0
            self.rn[on] = 0

    def finish_one(self, ch: int, out: list[tuple[int, int, int, int]]) -> None:
        mask = np.zeros(self.code.shape, dtype=bool)
        mask[ch] = self.code[ch] >= 0
        self._finish(mask, out)
        self.rn[ch] = 0

    def _finish(self, mask: npt.NDArray[np.bool_], out: list[tuple[int, int, int, int]]) -> None:
        for ch in np.flatnonzero(mask).tolist():
            n = int(self.n[ch])
            if _in_tolerance(float(self.slo[ch]) / n, float(self.shi[ch]) / n):
                out.append((ch, int(self.code[ch]), int(self.start[ch]), int(self.end[ch])))
        self.code[mask] = -1
        self.gap[mask] = 0


class DtmfDetectorBank:
    """DTMF detection for many channels at once: one set of numpy calls per frame.

    Feed every channel's frame together, shape (channels, n). A dialer gives each
    call a slot and calls `reset(slot)` when a new call takes it over. Results are
    identical to a `DtmfDetector` per channel.
    """

    def __init__(self, channels: int, rate: int = 8000) -> None:
        if channels < 1:
            raise ValueError(f"a bank needs at least one channel, got {channels}")
        self._an = _Analyzer(rate)
        self.rate = rate
        self.channels = channels
        # The buffer starts at the last analysed block, which the next one is compared
        # with; before any audio that block is one hop of silence ahead of sample 0.
        self._buf = np.zeros((channels, self._an.hop), dtype=np.float64)
        self._pos = -self._an.hop  # stream index of _buf[:, 0]
        self._origin = np.zeros(channels, dtype=np.int64)
        self._tracks = _Tracks(channels)

    def feed(self, frames: npt.ArrayLike) -> list[tuple[int, DtmfEvent]]:
        """Add n int16 samples per channel, shape (channels, n); return (channel, event) pairs."""
        x = np.asarray(frames)
        if x.ndim != 2 or x.shape[0] != self.channels:
            raise ValueError(f"frames must have shape ({self.channels}, n), got {x.shape}")
        buf = np.concatenate([self._buf, x], axis=1, dtype=np.float64)
        nb = self._an.blocks(buf.shape[1])
        raw: list[tuple[int, int, int, int]] = []
        if nb >= 2:
            codes, dev = self._an.analyze(buf, nb)
            hop, n = self._an.hop, self._an.n
            if self._tracks.busy().any() or (codes >= 0).any():
                dlo, dhi = dev[..., 0], dev[..., 1]
                for k in range(nb - 1):
                    s0 = self._pos + k * hop
                    self._tracks.step(codes[:, k], dlo[:, k], dhi[:, k], s0, s0 + hop + n, raw)
            consumed = (nb - 1) * hop
            buf = buf[:, consumed:]
            self._pos += consumed
        self._buf = np.ascontiguousarray(buf)
        return [(ch, self._event(ch, code, s, e)) for ch, code, s, e in raw]

    def _event(self, ch: int, code: int, start: int, end: int) -> DtmfEvent:
        o = int(self._origin[ch])
        return DtmfEvent(DTMF_KEYS[code], max(start - o, 0) / self.rate, (end - o) / self.rate)

    def flush(self, channel: int) -> list[DtmfEvent]:
        """End of a channel's stream: report a key still sounding."""
        raw: list[tuple[int, int, int, int]] = []
        self._tracks.finish_one(channel, raw)
        return [self._event(ch, code, s, e) for ch, code, s, e in raw]

    def reset(self, channel: int) -> None:
        """A call ended or a new call took the slot: drop its state; its times restart at 0."""
        if not 0 <= channel < self.channels:
            raise IndexError(f"channel {channel} is outside 0…{self.channels - 1}")
        self._tracks.clear(channel)
        self._buf[channel] = 0.0
        self._origin[channel] = self._pos + self._buf.shape[1]


class DtmfDetector:
    """Streaming DTMF detector for one channel: feed frames of any length, get key presses.

    numpy pays per call, not per sample, so audio is analysed once `batch_ms` of it
    has arrived (default 100 ms): key presses are reported up to that much later
    (plus the ~35 ms release confirmation). `batch_ms=0` analyses every feed.
    """

    def __init__(self, rate: int = 8000, *, batch_ms: float = 100.0) -> None:
        self._an = _Analyzer(rate)
        self.rate = rate
        self._batch = int(rate * batch_ms / 1000)
        self._buf = np.zeros((1, self._an.hop), dtype=np.float64)
        self._pos = -self._an.hop
        self._pending: list[npt.NDArray[np.int16]] = []
        self._npending = 0
        self._track = _Track()

    def feed(self, samples: npt.ArrayLike) -> list[DtmfEvent]:
        """Add int16 samples (any length); return the key presses that ended in them."""
        x = np.asarray(samples)
        if x.ndim != 1:
            raise ValueError(f"samples must be one-dimensional, got shape {x.shape}")
        self._pending.append(x)
        self._npending += x.size
        if self._npending < self._batch:
            return []
        return self._run()

    def flush(self) -> list[DtmfEvent]:
        """End of stream: analyse what is buffered and report a key still sounding."""
        out = self._run()
        raw: list[tuple[int, int, int]] = []
        self._track.finish(raw)
        self._track.rn = 0
        return out + [self._event(*r) for r in raw]

    def _run(self) -> list[DtmfEvent]:
        buf = np.concatenate([self._buf[0], *self._pending], dtype=np.float64)[None, :]
        self._pending.clear()
        self._npending = 0
        nb = self._an.blocks(buf.shape[1])
        raw: list[tuple[int, int, int]] = []
        if nb >= 2:
            codes, dev = self._an.analyze(buf, nb)
            tr = self._track
            row = codes[0]
            if tr.busy or (row >= 0).any():
                hop, n = self._an.hop, self._an.n
                dl, dh = dev[0, :, 0].tolist(), dev[0, :, 1].tolist()
                for k, c in enumerate(row.tolist()):
                    s0 = self._pos + k * hop
                    tr.step(c, dl[k], dh[k], s0, s0 + hop + n, raw)
            consumed = (nb - 1) * self._an.hop
            buf = buf[:, consumed:]
            self._pos += consumed
        self._buf = np.ascontiguousarray(buf)
        return [self._event(*r) for r in raw]

    def _event(self, code: int, start: int, end: int) -> DtmfEvent:
        return DtmfEvent(DTMF_KEYS[code], max(start, 0) / self.rate, end / self.rate)


def detect(
    samples: npt.ArrayLike, rate: int = 8000, frame: int = 160, batch_ms: float = 100.0
) -> list[DtmfEvent]:
    """All key presses in a whole signal, fed in `frame`-sample pieces as a call would."""
    det = DtmfDetector(rate, batch_ms=batch_ms)
    x = np.asarray(samples)
    out: list[DtmfEvent] = []
    for i in range(0, x.size, frame):
        out.extend(det.feed(x[i : i + frame]))
    out.extend(det.flush())
    return out


def digits(events: list[DtmfEvent]) -> str:
    """The keys of `events` as one string."""
    return "".join(e.digit for e in events)
