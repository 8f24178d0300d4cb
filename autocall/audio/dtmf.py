"""In-band DTMF detection (ITU-T Q.23/Q.24), sans-I/O: samples in, key presses out.

Why not a textbook Goertzel bank with fixed thresholds: a bin wide enough to pass
±1.5 % off-frequency tones also passes ±3.5 % ones, and a block long enough to
separate them is too long to time 40 ms tones and 10 ms gaps. So each 10 ms block
is analysed at the eight Q.23 frequencies (one matrix product per call, over all
channels), and the *frequency* of each tone is measured from the phase advance
between blocks 5 ms apart, which resolves a few Hz in 5 ms. Levels, twist and
the share of the signal's power in the two tones are checked per block; timing
rules turn block decisions into key presses, and each press is judged on its
mean frequency error and tone share, which is what keeps speech out.

Events are emitted once per key press when the digit has ended (a pause of
`_OFF_BLOCKS` hops confirms the release), with start and end times in seconds
since the stream's first sample (since the last `reset` for a bank channel).
The latency from release to event is about 35 ms (plus the single-channel
detector's batching, see `DtmfDetector`). A key is confirmed about 35 ms after
it starts; `pressed` reports it from then on, for barge-in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from autocall.audio.levels import dbm0_to_power
from autocall.audio.tones import DTMF_HIGH, DTMF_KEYS, DTMF_LOW

__all__ = ["DtmfDetector", "DtmfDetectorBank", "DtmfEvent", "detect", "digits"]

# Analysis grid, in ms so that 8 and 16 kHz behave alike.
_BLOCK_MS = 10.0  # block length: bins ≈ 100 Hz wide, fine for Q.23 group spacing (≥ 73 Hz)
_HOP_MS = 5.0  # hop between blocks; the phase advance over it gives the frequency

# ITU-T Q.24 (its table of receiver parameters by Administration): operate on each
# tone down to about −25…−36 dBm0, never at −55 dBm0 or below. We operate from −40.
_MIN_TONE_DBM0 = -40.0
# Twist = level(high) − level(low). Q.24's table and common receiver practice (AT&T,
# Bellcore): accept normal twist down to −8 dB and reverse twist up to +4 dB; our
# limits sit halfway to the +8/−12 dB that must fail.
_TWIST_REVERSE_DB = 6.0
_TWIST_NORMAL_DB = -10.0
# Q.24 signal-to-noise requirement (and talk-off practice): the two tones must carry most of
# the power. 15 dB SNR against the weaker tone leaves > 95 % in the tones; a chord of
# three equal sines puts at most 67 % into any two, and voiced speech whose harmonics
# happen to sit on a key's frequencies keeps 10–20 % in its other harmonics. Each block
# needs 75 %; the key press on average 85 % (speech under a key only dips single blocks;
# keys over speech 15 dB lower keep ≥ 93 %).
_MIN_BLOCK_SHARE = 0.75
_MIN_DIGIT_SHARE = 0.85
# Level change allowed between the two blocks of one observation: blocks that only
# partly overlap a tone (its edges) fail this, which is what times durations exactly.
_MAX_STEP_DB = 3.0
# Q.24 frequency tolerance: operate within ±1.5 %, never operate at ±3.5 % or
# beyond. A single observation may stray to ±4 % (noise); the mean over the key press
# must be within ±1.8 %. Not halfway (2.5 %): talk-off lives in between. A high voice
# (F0 ≈ 307 Hz) puts its 3rd and 4th harmonics at −2.1 %/+1.6 % of 941/1209 Hz ("*")
# with little else; that needs ±1.85 %. The mean over ≥ 5 observations errs < 0.1 % at
# 15 dB SNR, so 1.8 % still accepts every ±1.5 % tone.
_BLOCK_FREQ_TOL = 0.04
_DIGIT_FREQ_TOL = 0.018
# Q.24 timing: accept tones ≥ 40 ms, reject ≤ 20 ms (23 ms); pauses ≥ 40 ms separate
# digits and an interruption ≤ 10 ms must not split one. In 5 ms hops an observation
# spans 15 ms, so a 40 ms tone yields ≥ 5 observations and a 20 ms one ≤ 3; a 10 ms
# dropout spoils ≤ 5 observations and a 40 ms pause ≥ 8.
_ON_BLOCKS = 5
_OFF_BLOCKS = 7

_FREQS = np.array(DTMF_LOW + DTMF_HIGH, dtype=np.float64)


def _f32(value: float) -> npt.NDArray[np.float32]:
    return np.array(value, dtype=np.float32)


# OpenBLAS hands a product to its thread pool once m·n·k reaches SMP_THRESHOLD_MIN ×
# GEMM_MULTITHREAD_THRESHOLD = 65536 × 4 (its interface/gemm.c); on a busy machine those
# threads spin and wait for cores, which costs far more than the product (issue 20: a
# bank of 100 channels ran at 0.16× spandsp with them, 1.3× without). Products are cut
# into slices of fewer rows than that, so they stay on the calling thread whoever calls.
_BLAS_SINGLE_THREAD = 65536 * 4
# Per-shape constant arrays kept by an analyser; steady feeding uses one or two shapes.
_CACHE_MAX = 16
# Buffer lengths a single-channel detector keeps a `_Plan` for (25 KB each at 8 kHz and
# batch_ms=100, 45 KB at 16 kHz).
_PLANS_MAX = 4

try:  # einsum's C core: the same sums, without the Python dispatch (~2 µs a call)
    from numpy._core.multiarray import c_einsum as _einsum
except ImportError:  # another numpy layout: the public function, same numbers
    _einsum = np.einsum
try:  # the same without its Python wrapper (0.1 µs instead of 0.5)
    from numpy._core.multiarray import count_nonzero as _count_nonzero
except ImportError:
    _count_nonzero = np.count_nonzero

# Observations of one batch for `_Track`: keys, two lists of which one is non-zero where
# the observation failed (its key counts as −1), and its features: frequency error of
# the low and the high tone, tone share (see `_Plan.run`).
_Observations = tuple[list[int], list[int], list[int], list[float], list[float], list[float]]
_Run = Callable[[npt.NDArray[np.float32], list[npt.NDArray[np.int16]]], _Observations | None]


def _matmul(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    m, kn = a.shape[0], b.size
    if m * kn < _BLAS_SINGLE_THREAD:
        return a @ b
    rows = max(1, (_BLAS_SINGLE_THREAD - 1) // kn)
    n = b.shape[1]
    out = np.empty((m, n), dtype=np.float32)
    for i in range(0, m, rows):
        np.matmul(a[i : i + rows], b, out=out[i : i + rows])
    return out


@dataclass(frozen=True)
class DtmfEvent:
    """One key press: which key, and when it sounded (seconds since the stream began)."""

    digit: str
    start: float
    end: float


class _Analyzer:
    """Block analysis shared by the single-channel detector and the bank.

    Few, large numpy operations in float32 (ample for 16-bit audio): the cost of a
    call hardly depends on how many channels or blocks it covers, which is what
    makes batching pay.
    """

    def __init__(self, rate: int) -> None:
        if rate not in (8000, 16000):
            raise ValueError(f"DTMF detection runs at 8000 or 16000 Hz, not {rate}: resample first")
        self.rate = rate
        self.n = int(rate * _BLOCK_MS / 1000)
        self.hop = int(rate * _HOP_MS / 1000)  # = n / 2: block energy is two hop energies
        n = np.arange(self.n, dtype=np.float64)
        w = 0.5 - 0.5 * np.cos(2.0 * np.pi * (n + 0.5) / self.n)  # Hann: low leakage across groups
        arg = 2.0 * np.pi * np.outer(n, _FREQS) / rate
        # Columns interleaved (re, im) per frequency so the product views as complex.
        basis = np.empty((self.n, 16), dtype=np.float64)
        basis[:, 0::2] = w[:, None] * np.cos(arg)
        basis[:, 1::2] = -w[:, None] * np.sin(arg)
        self.basis = basis.astype(np.float32)
        # |Y|² of a sine of power P at a bin centre is P / pnorm; keep powers in |Y|² units.
        pnorm = 2.0 / float(np.sum(w)) ** 2
        # Constants are 0-d arrays: numpy combines those with arrays faster than scalars.
        to_share = 1.0 / (self.n * pnorm)  # block energy → |Y|² units
        self.to_share = _f32(to_share)
        self.share = _f32(_MIN_BLOCK_SHARE * to_share)
        pmin = dbm0_to_power(_MIN_TONE_DBM0) / pnorm
        self.pmin = _f32(pmin)
        self.floor = _f32(pmin * 1e-6)  # keeps log() finite on digital silence
        # A Hann-window tone power estimate is at most 3× the block's mean square
        # (Cauchy-Schwarz), so audio whose whole energy is below this holds no block
        # with a tone ≥ pmin: silence and comfort noise skip the analysis, same result.
        self.quiet = dbm0_to_power(_MIN_TONE_DBM0) * self.n / 3.0
        # A tone exactly at a nominal frequency advances its phase by this much per hop.
        self.unrotate = np.exp(-2j * np.pi * _FREQS * self.hop / rate).astype(np.complex64)
        self.to_rel = (rate / (2.0 * np.pi * self.hop) / _FREQS).astype(np.float32)
        # δ in bins = phase · n / (2π · hop); folded with the 1.2 of the loss formula.
        self.phase_to_loss = _f32(np.sqrt(1.2) * self.n / (2.0 * np.pi * self.hop))
        lo, hi = (np.log(10.0) * db / 10.0 for db in (_TWIST_NORMAL_DB, _TWIST_REVERSE_DB))
        self.twist_mid, self.twist_half = _f32((lo + hi) / 2.0), _f32((hi - lo) / 2.0)
        self.log_step = _f32(np.log(10.0) * _MAX_STEP_DB / 10.0)
        self.freq_tol = _f32(_BLOCK_FREQ_TOL)
        self.one, self.half = _f32(1.0), _f32(0.5)
        self.four, self.none, self.zero = np.array(4), np.array(-1), np.array(0)
        self.group = np.array([0, 4])
        self._rows: dict[int, npt.NDArray[np.intp]] = {}
        self._empty: dict[
            tuple[int, int], tuple[npt.NDArray[np.intp], npt.NDArray[np.float32]]
        ] = {}

    def nothing(self, c: int, nb: int) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float32]]:
        """What `analyze` returns where no key can be.

        The arrays are shared and read-only, so a caller can tell by identity that
        there is nothing to track.
        """
        got = self._empty.get((c, nb))
        if got is None:
            codes = np.full((c, nb - 1), -1, dtype=np.intp)
            dev = np.zeros((c, nb - 1, 3), dtype=np.float32)
            codes.flags.writeable = dev.flags.writeable = False
            if len(self._empty) >= _CACHE_MAX:  # odd feed lengths: keep memory bounded
                self._empty.clear()
            got = self._empty[(c, nb)] = (codes, dev)
        return got

    def blocks(self, length: int) -> int:
        return 0 if length < self.n else (length - self.n) // self.hop + 1

    def analyze(
        self, buf: npt.NDArray[np.float32], nb: int
    ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float32]]:
        """Observations for blocks 1…nb−1 of `buf` (C, L), each against the block before.

        Returns the key index per observation (−1: none), shape (C, nb−1), and the
        observation's features, shape (C, nb−1, 3): the relative frequency error of its
        low and high tone, and the share of the power in the two tones.
        """
        c, hop = buf.shape[0], self.hop
        xb = np.ndarray((c, nb, self.n), np.float32, buf, 0, (buf.strides[0], hop * 4, 4))
        y = _matmul(np.ascontiguousarray(xb).reshape(c * nb, self.n), self.basis).reshape(c, nb, 16)
        sq = y * y
        p = (sq[..., 0::2] + sq[..., 1::2]).reshape(c, nb, 2, 4)
        # Reductions over short trailing axes are slow in numpy; pairwise maxima are not.
        pm = np.maximum(np.maximum(p[..., 0], p[..., 1]), np.maximum(p[..., 2], p[..., 3]))
        plo, phi = pm[..., 0], pm[..., 1]
        seg = buf[:, : (nb + 1) * hop].reshape(c, nb + 1, hop)
        e = _einsum("ijk,ijk->ij", seg, seg)
        # First look (level and share) settles most blocks of speech, music and silence.
        energy = e[:, :-1] + e[:, 1:]
        ok = (np.minimum(plo, phi) >= self.pmin) & (plo + phi > energy * self.share)
        if not np.count_nonzero(ok[:, 1:] & ok[:, :-1]):  # (ndarray.any costs ~2 µs more)
            return self.nothing(c, nb)
        lp = np.log(pm + self.floor)
        ok &= np.abs(lp[..., 1] - lp[..., 0] - self.twist_mid) <= self.twist_half
        idx = p.argmax(-1)
        code = np.where(ok, idx[..., 0] * self.four + idx[..., 1], self.none)
        idx += self.group  # bin numbers 0…7
        cur = code[:, 1:]
        m = c * nb
        rows = self._rows.get(m)
        if rows is None:
            if len(self._rows) >= _CACHE_MAX:
                self._rows.clear()
            rows = self._rows[m] = np.arange(m)[:, None] * 8
        yc = y.view(np.complex64).reshape(-1)[rows + idx.reshape(m, 2)].reshape(c, nb, 2)
        k = idx[:, 1:]
        z = yc[:, 1:] * yc[:, :-1].conj() * self.unrotate[k]
        phase = np.arctan2(z.imag, z.real)  # beyond the nominal advance: the offset
        dev = phase * self.to_rel[k]
        # Share of block k's power in the two tones, the window's loss at the measured
        # offset δ (in bins) made good: Hann |W(δ)|² ≈ 1 − 1.2 δ² for |δ| < 0.5.
        loss = np.square(phase * self.phase_to_loss)
        tone = pm[:, 1:] / np.maximum(self.one - loss, self.half)
        share = (tone[..., 0] + tone[..., 1]) / (energy[:, 1:] * self.to_share + self.floor)
        step = np.abs(lp[:, 1:] - lp[:, :-1])
        err = np.abs(dev)
        good = (
            (cur == code[:, :-1])
            & (cur >= self.zero)
            & (np.maximum(step[..., 0], step[..., 1]) <= self.log_step)
            & (np.maximum(err[..., 0], err[..., 1]) <= self.freq_tol)
        )
        return np.where(good, cur, self.none), np.concatenate([dev, share[..., None]], axis=-1)


class _Plan:
    """`_Analyzer.analyze` for one channel and one buffer length, with every array made once.

    Steady feeding (20 ms frames) analyses buffers of a single length, and for arrays
    this small numpy's cost is the call (0.4-2 µs), not the samples: so this path
    allocates nothing and builds no views per batch, keeps every operand one-dimensional
    (a 2-D strided operand costs 3× as much), calls methods and C functions rather than
    their Python wrappers, writes each test's outcome to a byte that one integer
    comparison reads with the others, and binds its arrays in closures (an attribute
    look-up per operand would add 2 µs a batch). Every float32 value comes from the same
    operation on the same operands as in `analyze` (log, arctan2, einsum and the
    products in the same layouts too), so the results are identical;
    tests/dtmf/test_plan.py checks it.
    """

    def __init__(self, an: _Analyzer, length: int) -> None:
        f32 = np.float32
        nb = an.blocks(length)
        self.nb = nb
        # Two buffers in turn: the samples kept from one batch (a view of its buffer) go
        # to the start of the other.
        bufs = (np.zeros(length, f32), np.zeros(length, f32))
        # Whether the next batch may be quiet, shared by both buffers' closures.
        self._check_quiet = [True]
        self._runs = self._compile(an, bufs, nb, self._check_quiet)
        self._tails = tuple(buf[(nb - 1) * an.hop :] for buf in bufs)
        self._turn = 0
        self.kept = self._tails[0]  # what the next batch starts with (after `run`)

    def run(
        self, kept: npt.NDArray[np.float32], pending: list[npt.NDArray[np.int16]]
    ) -> _Observations | None:
        """`DtmfDetector._run`'s analysis of `kept` then `pending` (`length` samples).

        None where `analyze` returns `nothing` or the audio is too quiet to look at.
        Otherwise per observation: the key of its block whether it passed or not, two
        numbers of which one is non-zero where it did not pass (its key is −1 there),
        and its features (low and high frequency error, tone share) as three lists.
        """
        turn = self._turn = self._turn ^ 1
        self.kept = self._tails[turn]
        return self._runs[turn](kept, pending)

    @staticmethod
    def _compile(
        an: _Analyzer,
        bufs: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]],
        nb: int,
        check_quiet: list[bool],
    ) -> tuple[_Run, _Run]:
        """The analysis of each buffer, as closures over arrays they share."""
        f32, intp = np.float32, np.intp
        n, hop, m = an.n, an.hop, (nb - 1) * 2
        basis, floor, quiet = an.basis, an.floor, an.quiet
        x = np.empty((nb, n), f32)
        y = np.empty((nb, 16), f32)  # (re, im) × 8 frequencies per block
        y_flat = y.reshape(-1)
        sq = np.empty(nb * 16, f32)
        re2, im2 = sq[0::2], sq[1::2]
        p = np.empty(nb * 8, f32)  # |Y|² per block and frequency
        p_rows = p.reshape(nb * 2, 4)  # per block and group
        p_even, p_odd = p[0::2], p[1::2]
        m4 = np.empty(nb * 4, f32)
        m4_even, m4_odd = m4[0::2], m4[1::2]
        # Per block: [low max, low + high, high max, 1] against [pmin⁻, share of the
        # energy, pmin⁻, 0]: one `<=` gives the first look's failures (pmin⁻ is the
        # float32 just below pmin, so `x <= pmin⁻` is `x < pmin`).
        lvl = np.ones(nb * 4, f32)
        pm = lvl[0::2]  # (low, high) per block, as analyze's pm
        pm_next = lvl[4::2]  # the same from block 1 on
        plo, phi, psum = lvl[0::4], lvl[2::4], lvl[1::4]
        lim = np.zeros(nb * 4, f32)
        lim[0::2] = np.nextafter(an.pmin, np.float32(-np.inf))
        need, share = lim[1::4], an.share
        e = np.empty((1, nb + 1), f32)  # hop energies
        e_first, e_last = e[0, :-1], e[0, 1:]
        energy = np.empty(nb, f32)  # block energies
        energy_next = energy[1:]
        # Bytes per block: [low too weak, share too low, high too weak, 0]. A block passes
        # the first look when its 4 are zero; a block and the next when the 8 from the
        # first (read as one uint64) are.
        bad = np.zeros(nb * 4, np.bool_)
        bad_pairs = np.ndarray((nb - 1,), np.uint64, bad, 0, (4,))
        lpin = np.empty(nb * 2, f32)
        lp = np.empty(nb * 2, f32)
        lp_lo, lp_hi, lp_prev, lp_next = lp[0::2], lp[1::2], lp[:-2], lp[2:]
        twist = np.empty(nb, f32)
        twist_mid, twist_prev, twist_next = an.twist_mid, twist[:-1], twist[1:]
        idx = np.empty(nb * 2, intp)  # strongest bin per block and group
        idx_pairs = idx.reshape(nb, 2)
        weights = np.array([4, 1], dtype=intp)
        raw = np.empty(nb, intp)  # key per block, whether or not it passed
        raw_prev, raw_next = raw[:-1], raw[1:]
        # Where the chosen bins are in y viewed as complex (8 per block), and constants
        # per bin laid out alike, so that one `take` fetches each.
        rows = (np.arange(nb * 2, dtype=intp) // 2) * 8 + np.tile(np.array([0, 4], intp), nb)
        flat = np.empty(nb * 2, intp)
        k = flat[2:]
        yc_all = y.view(np.complex64).reshape(nb * 8)
        unrotate, to_rel = np.tile(an.unrotate, nb), np.tile(an.to_rel, nb)
        yc = np.empty(nb * 2, np.complex64)
        yc_prev, yc_next = yc[:-2], yc[2:]
        conj, z1, ur, z = (np.empty(m, np.complex64) for _ in range(4))
        z_re, z_im = z.real, z.imag
        phase, rel, loss, tone = (np.empty(m, f32) for _ in range(4))
        tone_lo, tone_hi = tone[0::2], tone[1::2]
        tsum, den = np.empty(nb - 1, f32), np.empty(nb - 1, f32)
        phase_to_loss, one, half = an.phase_to_loss, an.one, an.half
        to_share = an.to_share
        tone_share = np.empty(nb - 1, f32)
        # Per observation: [level step, frequency error, twist of the block before, 0]
        # for the low tone, then [level step, frequency error, twist of its own block,
        # 0] for the high one, so that one absolute value and one comparison with
        # [log_step, freq_tol, twist_half, ∞] test them all. The bytes they give are
        # zero as a uint64 when the observation passes; the first spare one is set
        # where its key differs from the block before.
        vals = np.zeros(m * 4, f32)
        step, dev = vals[0::4], vals[1::4]  # dev: (low, high) frequency error
        dev_lo, dev_hi = vals[1::8], vals[5::8]
        tw_prev, tw_next = vals[2::8], vals[6::8]
        mags = np.empty(m * 4, f32)
        tol = np.tile(np.array([an.log_step, an.freq_tol, an.twist_half, np.inf], f32), m)
        miss = np.zeros(m * 4, np.bool_)
        miss_key = miss[3::8]
        miss_word = miss.view(np.uint64)
        add, sub, mul, greater = np.add, np.subtract, np.multiply, np.greater
        maximum, less_equal, log, arctan2 = np.maximum, np.less_equal, np.log, np.arctan2
        absolute, divide, square, conjugate = np.absolute, np.divide, np.square, np.conjugate
        not_equal, last = np.not_equal, nb - 1

        def make(buf: npt.NDArray[np.float32]) -> _Run:
            blocks = np.ndarray((nb, n), f32, buf, 0, (hop * 4, 4))
            hops = buf[None, : (nb + 1) * hop].reshape(1, nb + 1, hop)

            def run(
                kept: npt.NDArray[np.float32], pending: list[npt.NDArray[np.int16]]
            ) -> _Observations | None:
                np.concatenate([kept, *pending], out=buf)
                # Quiet audio skips the analysis, which would find nothing in it (see
                # `_Analyzer.quiet`); the test costs a call, so it is made only after a batch
                # that ended quietly: during speech or a key it would only cost.
                if check_quiet[0] and float(buf.dot(buf)) < quiet:
                    return None
                x[...] = blocks
                x.dot(basis, y)
                mul(y_flat, y_flat, sq)
                add(re2, im2, p)
                maximum(p_even, p_odd, out=m4)
                maximum(m4_even, m4_odd, out=pm)
                _einsum("ijk,ijk->ij", hops, hops, out=e)
                add(e_first, e_last, energy)
                check_quiet[0] = energy.item(-1) < quiet
                # First look (analyze's level and share tests, negated).
                add(plo, phi, psum)
                mul(energy, share, need)
                less_equal(lvl, lim, bad)
                if _count_nonzero(bad_pairs) == last:
                    return None
                log(add(pm, floor, lpin), lp)
                sub(lp_hi, lp_lo, twist)
                sub(twist_prev, twist_mid, tw_prev)
                sub(twist_next, twist_mid, tw_next)
                p_rows.argmax(1, idx)
                idx_pairs.dot(weights, raw)
                yc_all.take(add(rows, idx, flat), 0, yc, "clip")
                mul(mul(yc_next, conjugate(yc_prev, conj), z1), unrotate.take(k, 0, ur, "clip"), z)
                arctan2(z_im, z_re, phase)
                mul(phase, to_rel.take(k, 0, rel, "clip"), dev)
                sub(lp_next, lp_prev, step)
                square(mul(phase, phase_to_loss, loss), loss)
                maximum(sub(one, loss, loss), half, out=loss)
                divide(pm_next, loss, tone)
                add(mul(energy_next, to_share, den), floor, den)
                divide(add(tone_lo, tone_hi, tsum), den, tone_share)
                greater(absolute(vals, mags), tol, miss)
                not_equal(raw_next, raw_prev, miss_key)
                return (
                    raw_next.tolist(),
                    miss_word.tolist(),
                    bad_pairs.tolist(),
                    dev_lo.tolist(),
                    dev_hi.tolist(),
                    tone_share.tolist(),
                )

            return run

        return make(bufs[0]), make(bufs[1])


class _Track:
    """Timing rules for one channel: observations → key presses (the single-channel path).

    `f` are an observation's features (frequency errors, tone share); a press keeps
    their sums so its means can be judged when it ends.
    """

    __slots__ = ("code", "start", "end", "n", "f", "gap", "rc", "rn", "rs", "re", "rf")

    def __init__(self) -> None:
        self.code = self.rc = -1
        self.start = self.end = self.n = self.gap = self.rn = self.rs = self.re = 0
        self.f = [0.0, 0.0, 0.0]
        self.rf = [0.0, 0.0, 0.0]

    @property
    def busy(self) -> bool:
        return self.code >= 0 or self.rn > 0

    def step(
        self, c: int, f: list[float], s0: int, s1: int, out: list[tuple[int, int, int]]
    ) -> None:
        """One observation of key `c` (−1: none) spanning samples [s0, s1)."""
        if self.code >= 0:
            if c == self.code:
                self.end = s1
                self.n += 1
                acc = self.f
                acc[0] += f[0]
                acc[1] += f[1]
                acc[2] += f[2]
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
            acc = self.rf
            acc[0] += f[0]
            acc[1] += f[1]
            acc[2] += f[2]
        else:
            self.rc, self.rn, self.rs, self.re, self.rf = c, 1, s0, s1, list(f)
        if self.rn >= _ON_BLOCKS:
            if self.code >= 0:
                self.finish(out)
            self.code, self.start, self.end, self.n = self.rc, self.rs, self.re, self.rn
            self.f, self.rf, self.gap, self.rn = self.rf, [0.0, 0.0, 0.0], 0, 0

    def finish(self, out: list[tuple[int, int, int]]) -> None:
        """The key was released: keep it if its means are within tolerance."""
        if self.code >= 0 and _accept(self.f, self.n):
            out.append((self.code, self.start, self.end))
        self.code = -1
        self.gap = 0


_NO_FEATURES = [0.0, 0.0, 0.0]  # an observation without a key: never read


def _accept(sums: list[float], n: int) -> bool:
    """Whether a key press's mean features pass (Q.24 frequency tolerance, tone share)."""
    return (
        abs(sums[0]) <= _DIGIT_FREQ_TOL * n
        and abs(sums[1]) <= _DIGIT_FREQ_TOL * n
        and sums[2] >= _MIN_DIGIT_SHARE * n
    )


class _Tracks:
    """The same timing rules as `_Track`, as arrays over channels (the bank's path).

    One pass per observation index for all channels instead of a Python loop per
    channel. The digit's fields and the pending run's fields are rows of two arrays
    laid out alike, so promoting a run to a digit is one masked copy.
    """

    # Rows of `d` (the key press being timed) and `r` (the run that may become one).
    CODE, START, END, COUNT, LO, HI, SHARE = range(7)
    IDLE = -2.0  # never equal to an observation's code (−1 … 15)

    def __init__(self, channels: int) -> None:
        self.st = np.zeros((2, 7, channels))
        self.d, self.r = self.st[0], self.st[1]
        self.st[:, self.CODE] = self.IDLE
        self.gap = np.zeros(channels, dtype=np.int64)
        self._mask = np.zeros((2, channels), dtype=bool)  # continues the press / the run
        self._new = np.ones((7, channels))  # row COUNT stays 1
        self._zero, self._on, self._off = np.array(0), np.array(_ON_BLOCKS), np.array(_OFF_BLOCKS)

    def busy(self) -> npt.NDArray[np.bool_]:
        return (self.d[self.CODE] >= self._zero) | (self.r[self.COUNT] > self._zero)

    def save(
        self, mask: npt.NDArray[np.bool_]
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
        """The state of the channels in ``mask`` (for `restore`)."""
        return self.st[:, :, mask].copy(), self.gap[mask].copy()

    def restore(
        self,
        mask: npt.NDArray[np.bool_],
        saved: tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]],
        moved: int,
    ) -> None:
        """Put back what `save` kept; the shared stream moved on ``moved`` samples
        meanwhile, so positions (START, END) move with it."""
        st, gap = saved
        st = st.copy()
        st[:, self.START : self.END + 1] += moved
        self.st[:, :, mask] = st
        self.gap[mask] = gap

    def clear(self, ch: int) -> None:
        self.st[:, :, ch] = 0.0
        self.st[:, self.CODE, ch] = self.IDLE
        self.gap[ch] = 0

    def step(
        self,
        c: npt.NDArray[np.intp],
        dev: npt.NDArray[np.float32],
        s0: int,
        s1: int,
        out: list[tuple[int, int, int, int]],
    ) -> None:
        """One observation per channel: key `c` (−1: none) and its features `dev` (3, C)."""
        st, d, r, gap, m, zero = self.st, self.d, self.r, self.gap, self._mask, self._zero
        cont = np.equal(c, d[0], out=m[0])
        some = c >= zero
        pos = some > cont
        ext = np.logical_and(pos, c == r[0], out=m[1])
        ext &= r[3] > zero
        if np.count_nonzero(m):
            np.copyto(st[:, 2], s1, where=m)
            st[:, 3] += m
            st[:, 4:7] += dev * m[:, None]
            np.copyto(gap, 0, where=cont)
            np.copyto(r[3], 0.0, where=cont)
        other = (d[0] >= zero) > cont
        if np.count_nonzero(other):
            gap += other
            self._finish(other & (gap >= self._off), out)
        np.multiply(r[3], some, out=r[3])
        if not np.count_nonzero(pos):
            return
        new = pos > ext
        if np.count_nonzero(new):
            t = self._new
            t[0] = c
            t[1] = s0
            t[2] = s1
            t[4:7] = dev
            np.copyto(r, t, where=new)
        on = pos & (r[3] >= self._on)
        if np.count_nonzero(on):
            self._finish(on & (d[0] >= zero), out)
            np.copyto(d, r, where=on)
            np.copyto(r[3], 0.0, where=on)
            np.copyto(gap, 0, where=on)

    def finish_one(self, ch: int, out: list[tuple[int, int, int, int]]) -> None:
        mask = np.zeros(self.gap.shape, dtype=bool)
        mask[ch] = True
        self._finish(mask & (self.d[0] >= 0), out)
        self.r[3, ch] = 0.0

    def _finish(self, mask: npt.NDArray[np.bool_], out: list[tuple[int, int, int, int]]) -> None:
        if not np.count_nonzero(mask):
            return
        d = self.d
        for ch in np.flatnonzero(mask).tolist():
            if _accept(d[4:7, ch].tolist(), int(d[3, ch])):
                out.append((ch, int(d[0, ch]), int(d[1, ch]), int(d[2, ch])))
        np.copyto(d[0], self.IDLE, where=mask)
        np.copyto(self.gap, 0, where=mask)


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
        # with; before any audio that block is silence ahead of sample 0. It is one whole
        # block (two hops) from the start, the width it keeps after every feed of a
        # multiple of the hop, so a channel held out of a feed keeps its buffer as it is.
        self._buf = np.zeros((channels, self._an.n), dtype=np.float32)
        self._pos = -self._an.n  # stream index of _buf[:, 0]
        self._origin = np.zeros(channels, dtype=np.int64)
        self._tracks = _Tracks(channels)

    def feed(
        self, frames: npt.ArrayLike, hold: npt.NDArray[np.bool_] | None = None
    ) -> list[tuple[int, DtmfEvent]]:
        """Add n int16 samples per channel, shape (channels, n); return (channel, event) pairs.

        Channels where ``hold`` is True take no part: their rows of ``frames`` are ignored
        and they stay exactly where they were, as if this feed had not happened (their
        times do not move on). A channel with nothing to add is held, never fed silence
        it did not receive: silence inside a tone would split one key press into two.
        Holding needs ``n`` to be a multiple of the 5 ms hop.
        """
        x = np.asarray(frames)
        if x.ndim != 2 or x.shape[0] != self.channels:
            raise ValueError(f"frames must have shape ({self.channels}, n), got {x.shape}")
        held = hold is not None and bool(hold.any())
        if held:
            assert hold is not None
            if x.shape[1] % self._an.hop:
                raise ValueError(
                    f"holding channels needs a multiple of {self._an.hop} samples, got {x.shape[1]}"
                )
            kept = (self._buf[hold].copy(), self._tracks.save(hold))
            pos = self._pos
        buf = np.concatenate([self._buf, x], axis=1, dtype=np.float32)
        nb = self._an.blocks(buf.shape[1])
        raw: list[tuple[int, int, int, int]] = []
        if nb >= 2:
            codes, dev = self._an.analyze(buf, nb)
            hop, n = self._an.hop, self._an.n
            if np.count_nonzero(self._tracks.busy()) or np.count_nonzero(codes >= 0):
                feats = dev.transpose(1, 2, 0)
                for k in range(nb - 1):
                    s0 = self._pos + k * hop
                    self._tracks.step(codes[:, k], feats[k], s0, s0 + hop + n, raw)
            consumed = (nb - 1) * hop
            buf = buf[:, consumed:].copy()  # not a view: it would keep the whole feed alive
            self._pos += consumed
        self._buf = buf
        if held:
            assert hold is not None
            moved = self._pos - pos
            self._buf[hold] = kept[0]  # same width: a multiple of the hop went through
            self._tracks.restore(hold, kept[1], moved)
            self._origin[hold] += moved  # their own clocks did not run
            raw = [r for r in raw if not hold[r[0]]]
        return [(ch, self._event(ch, code, s, e)) for ch, code, s, e in raw]

    def _event(self, ch: int, code: int, start: int, end: int) -> DtmfEvent:
        o = int(self._origin[ch])
        return DtmfEvent(DTMF_KEYS[code], max(start - o, 0) / self.rate, (end - o) / self.rate)

    def pressed(self, channel: int) -> str | None:
        """The key confirmed as held down on `channel` now (not yet released), if any."""
        code = int(self._tracks.d[_Tracks.CODE, channel])
        return DTMF_KEYS[code] if code >= 0 else None

    def quiet(self, channel: int, pending: npt.NDArray[np.int16]) -> bool:
        """True if no key press can come out of ``channel`` for what it has been fed and
        ``pending`` (its audio not fed yet): no press nor run of one under way, and less
        energy than one block of the faintest tone we operate on (the single-channel
        detector's shortcut for silence)."""
        if self._tracks.d[_Tracks.CODE, channel] >= 0 or self._tracks.r[_Tracks.COUNT, channel] > 0:
            return False
        kept = self._buf[channel]
        rest = pending.astype(np.float32)
        return float(np.dot(kept, kept)) + float(np.dot(rest, rest)) < self._an.quiet

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
        self._buf = np.zeros(self._an.hop, dtype=np.float32)
        self._pos = -self._an.hop
        self._pending: list[npt.NDArray[np.int16]] = []
        self._npending = 0
        self._track = _Track()
        self._plans: dict[int, _Plan] = {}
        self._last = 0

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

    @property
    def pressed(self) -> str | None:
        """The key confirmed as held down now (not yet released), as of the last analysis.

        Lets a caller stop a prompt as soon as a key is sure, before its event arrives.
        """
        code = self._track.code
        return DTMF_KEYS[code] if code >= 0 else None

    @property
    def quiet(self) -> bool:
        """True if no key press can come out of what was fed so far (see
        `DtmfDetectorBank.quiet`)."""
        if self._track.busy:
            return False
        e = float(np.dot(self._buf, self._buf))
        for x in self._pending:
            y = x.astype(np.float32)
            e += float(np.dot(y, y))
        return e < self._an.quiet

    @property
    def fed(self) -> int:
        """Samples fed so far; event times count from the first of them."""
        return self.analysed + self._npending

    @property
    def analysed(self) -> int:
        """Samples analysed so far (the rest wait for the batch to fill)."""
        return self._pos + int(self._buf.size)

    def flush(self) -> list[DtmfEvent]:
        """End of stream: analyse what is buffered and report a key still sounding."""
        out = self._run()
        raw: list[tuple[int, int, int]] = []
        self._track.finish(raw)
        self._track.rn = 0
        return out + [self._event(*r) for r in raw]

    def _run(self) -> list[DtmfEvent]:
        length = self._buf.size + self._npending
        plan = self._plans.get(length)
        if plan is not None:  # steady feeding
            got = plan.run(self._buf, self._pending)
            self._buf, nb = plan.kept, plan.nb
        else:
            got, nb = self._analyse(length)
        self._pending.clear()
        self._npending = 0
        if nb < 2:
            return []
        hop = self._an.hop
        pos = self._pos
        self._pos = pos + (nb - 1) * hop
        tr = self._track
        if got is None:
            if tr.code < 0 and tr.rn == 0:
                return []
            none = [0] * (nb - 1)
            got = [-1] * (nb - 1), none, none, [], [], []
        raw: list[tuple[int, int, int]] = []
        span = hop + self._an.n
        codes, miss, pairs, lo, hi, share = got
        for k, c in enumerate(codes):
            if miss[k] or pairs[k]:
                c = -1
            if c >= 0:
                s0 = pos + k * hop
                tr.step(c, [lo[k], hi[k], share[k]], s0, s0 + span, raw)
            elif tr.code >= 0 or tr.rn > 0:  # tr.busy, inlined: this loop is hot
                s0 = pos + k * hop
                tr.step(c, _NO_FEATURES, s0, s0 + span, raw)
        return [self._event(*r) for r in raw] if raw else []

    def _analyse(self, length: int) -> tuple[_Observations | None, int]:
        """A batch no plan fits, through `_Analyzer.analyze`: its observations (None:
        nothing to track) and its block count. Two batches in a row of one length make a
        plan for it: ragged feeding does not pay for plans (~170 µs each) it would use
        once, and jitter between a few lengths does not remake them."""
        buf = np.concatenate([self._buf, *self._pending], dtype=np.float32)
        nb = self._an.blocks(length)
        if length == self._last and nb >= 2:
            if len(self._plans) >= _PLANS_MAX:  # odd feed lengths: keep memory bounded
                self._plans.clear()
            self._plans[length] = _Plan(self._an, length)
        self._last = length
        if nb < 2:
            self._buf = buf
            return None, nb
        got: _Observations | None = None
        if float(buf.dot(buf)) >= self._an.quiet:
            keys, dev = self._an.analyze(buf[None, :], nb)
            if keys is not self._an.nothing(1, nb)[0]:
                none = [0] * (nb - 1)
                lo, hi, share = dev[0].T.tolist()
                got = keys[0].tolist(), none, none, lo, hi, share
        self._buf = buf[(nb - 1) * self._an.hop :]
        return got, nb

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
