"""Telephone signal levels in dBm0 for 16-bit linear audio.

Telephony states levels in dBm0, not dBFS, so thresholds taken from ITU-T
recommendations can be written down as they are printed. We use the A-law
convention of ITU-T G.711: a full-scale sine (peak 32768) is +3.14 dBm0
(μ-law would be +3.17 dBm0; the 0.03 dB difference is below anything we measure).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

__all__ = [
    "FULL_SCALE",
    "FULL_SCALE_SINE_DBM0",
    "active_level_dbm0",
    "amplitude_to_dbm0",
    "dbm0_to_amplitude",
    "dbm0_to_power",
    "power_to_dbm0",
    "rms_dbm0",
    "scale_to_dbm0",
]

FULL_SCALE = 32768.0
# ITU-T G.711 (A-law): the digital sine at full scale is +3.14 dBm0.
FULL_SCALE_SINE_DBM0 = 3.14
# Mean-square value (int16 units²) of a sine at 0 dBm0.
_P0 = (FULL_SCALE**2 / 2.0) * 10.0 ** (-FULL_SCALE_SINE_DBM0 / 10.0)
# Below this the level is reported as -inf: quieter than int16 quantisation noise.
_FLOOR = 1e-12


def dbm0_to_power(dbm0: float) -> float:
    """Mean-square value (int16 units²) of a signal at `dbm0`."""
    return _P0 * 10.0 ** (dbm0 / 10.0)


def power_to_dbm0(power: float) -> float:
    """Level in dBm0 of a signal whose mean-square value is `power` (int16 units²)."""
    if power <= _FLOOR:
        return -math.inf
    return 10.0 * math.log10(power / _P0)


def dbm0_to_amplitude(dbm0: float) -> float:
    """Peak amplitude (int16 units) of a sine at `dbm0`."""
    return math.sqrt(2.0 * dbm0_to_power(dbm0))


def amplitude_to_dbm0(amplitude: float) -> float:
    """Level in dBm0 of a sine with peak `amplitude` (int16 units)."""
    return power_to_dbm0(amplitude * amplitude / 2.0)


def rms_dbm0(signal: npt.ArrayLike) -> float:
    """Long-term level of a whole signal in dBm0 (silence counts)."""
    x = np.asarray(signal, dtype=np.float64)
    if x.size == 0:
        return -math.inf
    return power_to_dbm0(float(np.mean(x * x)))


def active_level_dbm0(signal: npt.ArrayLike, rate: int = 8000) -> float:
    """Active speech level in dBm0, a simplified ITU-T P.56.

    P.56 averages power only over the time speech is active, which it defines as
    being within 15.9 dB of the active level itself; we apply that margin to 20 ms
    frame powers and iterate to the fixed point, so pauses do not dilute the level.
    """
    x = np.asarray(signal, dtype=np.float64)
    frame = max(1, rate // 50)
    n = x.size // frame
    if n == 0:
        return rms_dbm0(x)
    powers = np.mean(x[: n * frame].reshape(n, frame) ** 2, axis=1)
    level = float(np.mean(powers))
    margin = 10.0 ** (-15.9 / 10.0)  # P.56 Annex B: margin M = 15.9 dB
    for _ in range(20):
        active = powers[powers >= level * margin]
        if active.size == 0:
            break
        new = float(np.mean(active))
        if abs(new - level) <= 1e-9 * max(level, _FLOOR):
            level = new
            break
        level = new
    return power_to_dbm0(level)


def scale_to_dbm0(
    signal: npt.ArrayLike, dbm0: float, *, active: bool = True, rate: int = 8000
) -> npt.NDArray[np.int16]:
    """Return `signal` scaled to `dbm0` (active speech level, or plain RMS), as clipped int16."""
    x = np.asarray(signal, dtype=np.float64)
    current = active_level_dbm0(x, rate) if active else rms_dbm0(x)
    if not math.isfinite(current):
        raise ValueError("cannot scale a silent signal to a level: it has no energy")
    gain = 10.0 ** ((dbm0 - current) / 20.0)
    return np.clip(np.round(x * gain), -32768, 32767).astype(np.int16)
