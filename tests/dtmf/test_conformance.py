"""Conformance with ITU-T Q.24 receiver requirements: exact digits, zero false digits.

Each condition is a generated signal (tests/dtmf/conditions.py) fed in 20 ms frames;
the receiver must report exactly the expected keys. The benchmark runs the same
conditions through spandsp for comparison.
"""

from __future__ import annotations

import conditions
import numpy as np
import pytest

from autocall.audio.dtmf import DtmfDetectorBank, DtmfEvent, detect, digits

TONES = conditions.tone_conditions()
VOICE_NAMES = [v for v, _ in conditions.VOICES]


def _check(cond: conditions.Condition) -> None:
    got = digits(detect(cond.signal, cond.rate, frame=cond.rate // 50))
    assert got == cond.expected, f"{cond.id}: reported {got!r}, expected {cond.expected!r}"


def test_every_group_of_the_issue_is_covered() -> None:
    groups = {c.group for c in TONES}
    assert groups >= {
        "keys", "level", "freq-accept", "freq-reject", "twist", "duration", "pause",
        "dropout", "noise", "combined", "16k", "non-digit", "music", "noise-talkoff",
    }  # fmt: skip
    assert len(TONES) > 100


@pytest.mark.parametrize("cond", TONES, ids=[c.id for c in TONES])
def test_tone_condition(cond: conditions.Condition) -> None:
    _check(cond)


@pytest.mark.parametrize("voice", VOICE_NAMES)
def test_talk_off_speech(voice: str, speech: dict[str, np.ndarray]) -> None:
    conds = [c for c in conditions.speech_conditions(speech) if c.name.startswith(voice + " ")]
    assert len(conds) == len(conditions.SPEECH_LEVELS) + 1
    for cond in conds:
        _check(cond)


def test_barge_in_over_speech(speech: dict[str, np.ndarray]) -> None:
    conds = conditions.barge_in_conditions(speech)
    assert len(conds) >= 5
    for cond in conds:
        _check(cond)


def test_event_times_follow_the_tones() -> None:
    x = conditions.keyed("159#", on_ms=80.0, off_ms=70.0, level=-20.0, seed=5)
    events = detect(x)
    assert digits(events) == "159#"
    lead = conditions.LEAD_MS / 1000
    for i, e in enumerate(events):
        assert e.start == pytest.approx(lead + 0.15 * i, abs=0.006)
        assert e.end == pytest.approx(lead + 0.15 * i + 0.08, abs=0.006)


def _bank_run(conds: list[conditions.Condition], rate: int) -> list[list[DtmfEvent]]:
    n = max(c.signal.size for c in conds)
    frame = rate // 50
    n += -n % frame
    frames = np.zeros((len(conds), n), dtype=np.int16)
    for i, c in enumerate(conds):
        frames[i, : c.signal.size] = c.signal
    bank = DtmfDetectorBank(len(conds), rate)
    got: list[list[DtmfEvent]] = [[] for _ in conds]
    for i in range(0, n, frame):
        for ch, e in bank.feed(frames[:, i : i + frame]):
            got[ch].append(e)
    for ch in range(len(conds)):
        got[ch].extend(bank.flush(ch))
    single = [detect(frames[i], rate, frame=frame) for i in range(len(conds))]
    assert got == single
    return got


def test_bank_equals_single_channel(speech: dict[str, np.ndarray]) -> None:
    conds = [c for c in TONES if c.rate == 8000] + conditions.barge_in_conditions(speech)
    got = _bank_run(conds, 8000)
    assert [digits(g) for g in got] == [c.expected for c in conds]


def test_bank_equals_single_channel_16k() -> None:
    conds = [
        conditions.Condition("keys", "16k", conditions.keyed("*0#", rate=16000), "*0#", 16000),
        conditions.Condition(
            "keys",
            "16k 40ms",
            conditions.keyed("123", on_ms=40, off_ms=40, rate=16000),
            "123",
            16000,
        ),
    ]
    got = _bank_run(conds, 16000)
    assert [digits(g) for g in got] == ["*0#", "123"]
