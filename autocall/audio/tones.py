"""Tone generation: DTMF, beeps, silence and comfort noise as int16 arrays.

Levels are in dBm0 (see `autocall.audio.levels`) so test conditions and prompts
can be written in the units of ITU-T Q.23/Q.24. Everything is clipped to int16:
two tones at 0 dBm0 each do clip, as they would on a real 16-bit or G.711 path.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from autocall.audio.levels import dbm0_to_amplitude

__all__ = [
    "DTMF_HIGH",
    "DTMF_KEYS",
    "DTMF_LOW",
    "beep",
    "comfort_noise",
    "dtmf",
    "dtmf_pair",
    "dual_tone",
    "silence",
]

# ITU-T Q.23 frequency allocation: low (row) and high (column) groups, in Hz.
DTMF_LOW: tuple[float, ...] = (697.0, 770.0, 852.0, 941.0)
DTMF_HIGH: tuple[float, ...] = (1209.0, 1336.0, 1477.0, 1633.0)
# ITU-T Q.23 keypad layout, row by row.
DTMF_KEYS = "123A456B789C*0#D"


def dtmf_pair(digit: str) -> tuple[float, float]:
    """Nominal (low, high) frequencies of a DTMF key such as "5" or "#"."""
    i = DTMF_KEYS.find(digit.upper()) if len(digit) == 1 else -1
    if i < 0:
        raise ValueError(f"{digit!r} is not a DTMF key: use one of {DTMF_KEYS}")
    return DTMF_LOW[i // 4], DTMF_HIGH[i % 4]


def _samples(ms: float, rate: int) -> int:
    if ms < 0:
        raise ValueError(f"duration must be >= 0 ms, got {ms}")
    return int(round(ms * rate / 1000.0))


def _to_int16(x: npt.NDArray[np.float64]) -> npt.NDArray[np.int16]:
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def _sine(
    f: float, n: int, level_dbm0: float, rate: int, phase: float = 0.0
) -> npt.NDArray[np.float64]:
    t = np.arange(n, dtype=np.float64)
    return dbm0_to_amplitude(level_dbm0) * np.sin(2.0 * np.pi * f * t / rate + phase)


def silence(ms: float, rate: int = 8000) -> npt.NDArray[np.int16]:
    """Digital silence."""
    return np.zeros(_samples(ms, rate), dtype=np.int16)


def dual_tone(
    f_low: float,
    f_high: float,
    ms: float,
    level_low_dbm0: float,
    level_high_dbm0: float,
    rate: int = 8000,
    *,
    phase_low: float = 0.0,
    phase_high: float = 0.0,
) -> npt.NDArray[np.int16]:
    """Two simultaneous sines, each at its own level (dBm0)."""
    n = _samples(ms, rate)
    x = _sine(f_low, n, level_low_dbm0, rate, phase_low) + _sine(
        f_high, n, level_high_dbm0, rate, phase_high
    )
    return _to_int16(x)


def beep(
    freq: float = 1000.0, ms: float = 200.0, level_dbm0: float = -10.0, rate: int = 8000
) -> npt.NDArray[np.int16]:
    """A single sine, e.g. the record-after-the-tone beep."""
    return _to_int16(_sine(freq, _samples(ms, rate), level_dbm0, rate))


def dtmf(
    digits: str,
    on_ms: float = 100.0,
    off_ms: float = 100.0,
    level_dbm0: float = -10.0,
    twist_db: float = 0.0,
    rate: int = 8000,
) -> npt.NDArray[np.int16]:
    """Key presses as in-band DTMF: each digit `on_ms` of tone then `off_ms` of silence.

    Twist is level(high tone) − level(low tone). The stronger tone is at
    `level_dbm0` and the weaker one `abs(twist_db)` below it, so a twisted
    digit never gets louder than the untwisted one.
    """
    low_level = level_dbm0 - max(twist_db, 0.0)
    high_level = level_dbm0 + min(twist_db, 0.0)
    parts: list[npt.NDArray[np.int16]] = []
    gap = silence(off_ms, rate)
    for d in digits:
        f_low, f_high = dtmf_pair(d)
        parts.append(dual_tone(f_low, f_high, on_ms, low_level, high_level, rate))
        parts.append(gap)
    if not parts:
        return np.zeros(0, dtype=np.int16)
    return np.concatenate(parts)


def comfort_noise(
    ms: float, level_dbm0: float = -60.0, rate: int = 8000, seed: int = 0
) -> npt.NDArray[np.int16]:
    """White Gaussian noise at `level_dbm0` (RMS), seeded so tests repeat exactly."""
    n = _samples(ms, rate)
    rng = np.random.default_rng(seed)
    sigma = dbm0_to_amplitude(level_dbm0) / np.sqrt(2.0)
    return _to_int16(rng.standard_normal(n) * sigma)
