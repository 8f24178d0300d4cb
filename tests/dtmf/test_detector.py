"""The detector's streaming API: events, times, any frame length, flush, bank channels."""

from __future__ import annotations

import numpy as np
import pytest

from autocall.audio import tones
from autocall.audio.dtmf import DtmfDetector, DtmfDetectorBank, DtmfEvent, detect, digits

ALL = tones.DTMF_KEYS


@pytest.mark.parametrize("rate", [8000, 16000])
def test_times_of_each_key_press(rate: int) -> None:
    x = np.concatenate([tones.silence(50.0, rate), tones.dtmf(ALL, 60.0, 90.0, -10.0, rate=rate)])
    events = detect(x, rate, frame=rate // 50)
    assert digits(events) == ALL
    for i, e in enumerate(events):
        assert e.start == pytest.approx(0.05 + 0.15 * i, abs=0.006)
        assert e.end == pytest.approx(0.11 + 0.15 * i, abs=0.006)


@pytest.mark.parametrize("frame", [1, 7, 80, 160, 333, 4000])
@pytest.mark.parametrize("batch_ms", [0.0, 100.0])
def test_frame_length_and_batching_do_not_change_results(frame: int, batch_ms: float) -> None:
    x = tones.dtmf("1A#0", 50.0, 45.0, -20.0)
    reference = detect(x, frame=160, batch_ms=0.0)
    assert digits(reference) == "1A#0"
    assert detect(x, frame=frame, batch_ms=batch_ms) == reference


def test_event_comes_after_release_and_once() -> None:
    det = DtmfDetector(batch_ms=0.0)
    x = np.concatenate([tones.dtmf("7", 200.0, 0.0), tones.silence(100.0)])
    seen: list[tuple[int, DtmfEvent]] = []
    for i in range(0, x.size, 80):
        seen.extend((i + 80, e) for e in det.feed(x[i : i + 80]))
    assert det.flush() == []
    assert [e.digit for _, e in seen] == ["7"]
    released_at = seen[0][0] / 8000
    assert 0.2 < released_at <= 0.2 + 0.05


def test_flush_reports_a_key_still_sounding() -> None:
    det = DtmfDetector()
    assert det.feed(tones.dtmf("9", 300.0, 0.0)) == []
    (event,) = det.flush()
    assert event.digit == "9" and event.end == pytest.approx(0.3, abs=0.006)
    assert det.flush() == []


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="8000 or 16000"):
        DtmfDetector(44100)
    with pytest.raises(ValueError, match="one-dimensional"):
        DtmfDetector().feed(np.zeros((2, 160), dtype=np.int16))
    with pytest.raises(ValueError, match=r"shape \(3, n\)"):
        DtmfDetectorBank(3).feed(np.zeros((2, 160), dtype=np.int16))


def test_bank_reset_restarts_a_channels_clock_and_state() -> None:
    bank = DtmfDetectorBank(2)
    first = tones.dtmf("3", 100.0, 0.0)
    frames = np.stack([first, first])
    bank.feed(frames[:, :400])
    bank.reset(1)  # the call on slot 1 hung up mid-digit; a new call starts
    rest = np.stack([first[400:], np.zeros(400, np.int16)])
    tail = np.zeros((2, 1200), dtype=np.int16)
    tail[1, 200:600] = tones.dtmf("8", 50.0, 0.0)
    got = bank.feed(rest) + bank.feed(tail)
    assert [(ch, e.digit) for ch, e in got] == [(0, "3"), (1, "8")]
    (ev8,) = [e for ch, e in got if ch == 1]
    assert ev8.start == pytest.approx((400 + 200) / 8000, abs=0.006)
    with pytest.raises(IndexError):
        bank.reset(2)


def test_pressed_reports_a_held_key_before_its_event() -> None:
    det = DtmfDetector(batch_ms=0.0)
    bank = DtmfDetectorBank(2)
    x = np.concatenate([tones.silence(40.0), tones.dtmf("B", 300.0, 0.0), tones.silence(100.0)])
    seen: list[tuple[int, str | None, str | None]] = []
    events: list[DtmfEvent] = []
    for i in range(0, x.size, 160):
        frame = x[i : i + 160]
        events += det.feed(frame)
        bank.feed(np.stack([frame, np.zeros_like(frame)]))
        seen.append((i + 160, det.pressed, bank.pressed(0)))
        assert bank.pressed(1) is None
    held = [t for t, single, banked in seen if single == "B"]
    assert [t for t, _, banked in seen if banked == "B"] == held
    # Confirmed within 40 ms of the tone's start, and held until its release is confirmed.
    assert held[0] / 8000 <= 0.04 + 0.04
    assert 0.34 <= held[-1] / 8000 <= 0.34 + 0.05
    assert digits(events) == "B"
    assert det.pressed is None


def test_quiet_audio_shortcut_changes_nothing() -> None:
    # Keys at the lowest operating level between stretches of quiet comfort noise: the
    # detector skips analysing the quiet batches, and must still find every key.
    quiet = tones.comfort_noise(400.0, -62.0, seed=3)
    x = np.concatenate([quiet, tones.dtmf("8*", 60.0, 60.0, -38.0), quiet])
    assert digits(detect(x)) == "8*"
    assert detect(x, batch_ms=100.0) == detect(x, batch_ms=0.0)


def test_feeding_ragged_lengths_keeps_caches_bounded() -> None:
    det = DtmfDetector(batch_ms=0.0)
    x = tones.dtmf("69" * 50, 60.0, 60.0, -15.0)  # about 60 feeds of as many lengths
    rng = np.random.default_rng(9)
    got: list[DtmfEvent] = []
    i = 0
    while i < x.size:
        n = int(rng.integers(81, 3000))
        got += det.feed(x[i : i + n])
        i += n
    got += det.flush()
    assert digits(got) == "69" * 50
    analyzer = det._an
    assert len(analyzer._rows) <= 16 and len(analyzer._empty) <= 16
    assert len(det._plans) <= 4
