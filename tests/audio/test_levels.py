"""dBm0 conversions follow the G.711 A-law convention: a full-scale sine is +3.14 dBm0."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autocall.audio import levels, tones


def test_full_scale_sine_is_plus_3_14_dbm0() -> None:
    assert levels.amplitude_to_dbm0(32768.0) == pytest.approx(3.14, abs=1e-9)
    assert levels.dbm0_to_amplitude(3.14) == pytest.approx(32768.0)


@pytest.mark.parametrize("dbm0", [3.0, 0.0, -10.0, -30.0, -55.0])
def test_round_trips(dbm0: float) -> None:
    assert levels.power_to_dbm0(levels.dbm0_to_power(dbm0)) == pytest.approx(dbm0)
    assert levels.amplitude_to_dbm0(levels.dbm0_to_amplitude(dbm0)) == pytest.approx(dbm0)


def test_zero_dbm0_sine_amplitude() -> None:
    # 3.14 dB below full scale: 32768 · 10^(−3.14/20).
    assert levels.dbm0_to_amplitude(0.0) == pytest.approx(22827.1, abs=0.5)


def test_rms_of_a_generated_sine_matches_its_level() -> None:
    x = tones.beep(1004.0, 1000.0, -13.0)
    assert levels.rms_dbm0(x) == pytest.approx(-13.0, abs=0.02)


def test_silence_is_minus_infinity() -> None:
    assert levels.rms_dbm0(np.zeros(80, dtype=np.int16)) == -math.inf
    assert levels.rms_dbm0(np.zeros(0, dtype=np.int16)) == -math.inf


def test_active_level_ignores_pauses() -> None:
    talk = tones.beep(500.0, 1000.0, -20.0)
    with_pauses = np.concatenate([talk, tones.silence(3000.0)])
    assert levels.rms_dbm0(with_pauses) == pytest.approx(-26.0, abs=0.1)
    assert levels.active_level_dbm0(with_pauses) == pytest.approx(-20.0, abs=0.1)


def test_scale_to_active_level() -> None:
    x = np.concatenate([tones.beep(300.0, 500.0, -3.0), tones.silence(500.0)])
    y = levels.scale_to_dbm0(x, -25.0)
    assert y.dtype == np.int16
    assert levels.active_level_dbm0(y) == pytest.approx(-25.0, abs=0.05)
    assert levels.rms_dbm0(levels.scale_to_dbm0(x, -25.0, active=False)) == pytest.approx(
        -25.0, abs=0.05
    )


def test_scaling_silence_is_an_error() -> None:
    with pytest.raises(ValueError, match="silent"):
        levels.scale_to_dbm0(np.zeros(160), -10.0)
