"""Generated tones have the frequencies, levels and durations asked for."""

from __future__ import annotations

import numpy as np
import pytest

from autocall.audio import levels, tones


def _peak_hz(x: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1.0 / rate)[np.argmax(spec)])


def _two_peaks_hz(x: np.ndarray, rate: int) -> list[float]:
    spec = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(x.size)))
    freqs = np.fft.rfftfreq(x.size, 1.0 / rate)
    low = freqs < 1070.0
    return [float(freqs[low][np.argmax(spec[low])]), float(freqs[~low][np.argmax(spec[~low])])]


@pytest.mark.parametrize("rate", [8000, 16000])
def test_every_key_has_its_q23_frequencies(rate: int) -> None:
    for key in tones.DTMF_KEYS:
        x = tones.dtmf(key, on_ms=1000.0, off_ms=0.0, rate=rate)
        f_low, f_high = tones.dtmf_pair(key)
        got = _two_peaks_hz(x, rate)
        assert got == pytest.approx([f_low, f_high], abs=1.5), key


def test_keypad_layout() -> None:
    assert tones.dtmf_pair("1") == (697.0, 1209.0)
    assert tones.dtmf_pair("#") == (941.0, 1477.0)
    assert tones.dtmf_pair("d") == (941.0, 1633.0)


def test_unknown_key_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="not a DTMF key"):
        tones.dtmf("12E")


def test_durations() -> None:
    x = tones.dtmf("123", on_ms=40.0, off_ms=60.0, rate=8000)
    assert x.size == 3 * 800
    assert np.all(x[320:800] == 0)
    assert np.count_nonzero(x[:320]) > 300


@pytest.mark.parametrize("twist", [0.0, 4.0, -8.0])
def test_levels_and_twist(twist: float) -> None:
    x = tones.dtmf("5", on_ms=1000.0, off_ms=0.0, level_dbm0=-10.0, twist_db=twist)
    spec = np.abs(np.fft.rfft(x.astype(np.float64)))
    freqs = np.fft.rfftfreq(x.size, 1 / 8000)
    lo = spec[np.argmin(np.abs(freqs - 770.0))]
    hi = spec[np.argmin(np.abs(freqs - 1336.0))]
    assert 20 * np.log10(hi / lo) == pytest.approx(twist, abs=0.05)
    # The stronger tone is at the nominal level.
    expected_power = levels.dbm0_to_power(-10.0) * (1 + 10 ** (-abs(twist) / 10))
    assert levels.rms_dbm0(x) == pytest.approx(levels.power_to_dbm0(expected_power), abs=0.02)


def test_dual_tone_clips_instead_of_wrapping() -> None:
    x = tones.dual_tone(697.0, 1209.0, 100.0, 0.0, 0.0)
    assert x.dtype == np.int16
    assert x.max() == 32767 and x.min() == -32768


def test_beep_and_silence() -> None:
    b = tones.beep(1000.0, 250.0, -10.0, rate=16000)
    assert b.size == 4000
    assert _peak_hz(b, 16000) == pytest.approx(1000.0, abs=4.0)
    assert levels.rms_dbm0(b) == pytest.approx(-10.0, abs=0.02)
    assert not tones.silence(20.0).any()
    with pytest.raises(ValueError):
        tones.silence(-1.0)


def test_comfort_noise_level_and_seed() -> None:
    a = tones.comfort_noise(2000.0, -50.0, seed=7)
    assert levels.rms_dbm0(a) == pytest.approx(-50.0, abs=0.1)
    assert np.array_equal(a, tones.comfort_noise(2000.0, -50.0, seed=7))
    assert not np.array_equal(a, tones.comfort_noise(2000.0, -50.0, seed=8))
