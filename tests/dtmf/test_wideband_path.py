"""A G.722 call's in-band DTMF goes 16 kHz → `autocall.audio.g722.Decimator` → the same
8 kHz detector as every other call. Every ITU-T Q.24 condition of the conformance suite
must come out of that path exactly as it does at 8 kHz: the 8 kHz conditions brought to
16 kHz first (soxr), the suite's own 16 kHz group as generated, and speech talk-off."""

from __future__ import annotations

import conditions
import numpy as np
import pytest
import soxr

from autocall.audio.dtmf import detect, digits
from autocall.audio.g722 import Decimator

TONES = conditions.tone_conditions()


def _through_the_wideband_path(cond: conditions.Condition) -> np.ndarray:
    x = cond.signal
    if cond.rate == 8000:
        x = np.asarray(soxr.resample(x, 8000, 16000, quality="VHQ"), dtype=np.int16)
    x = np.concatenate((x, np.zeros(-len(x) % 320, dtype=np.int16)))
    down = Decimator()
    return np.concatenate([down.process(x[i : i + 320]) for i in range(0, len(x), 320)])


def _check(cond: conditions.Condition) -> None:
    got = digits(detect(_through_the_wideband_path(cond), 8000, frame=160))
    assert got == cond.expected, f"{cond.id}: reported {got!r}, expected {cond.expected!r}"


@pytest.mark.parametrize("cond", TONES, ids=[c.id for c in TONES])
def test_tone_condition_through_the_decimator(cond: conditions.Condition) -> None:
    _check(cond)


def test_the_16k_group_is_in_the_run() -> None:
    assert sum(c.rate == 16000 for c in TONES) >= 10


def test_talk_off_speech_through_the_decimator(speech: dict[str, np.ndarray]) -> None:
    conds = conditions.speech_conditions(speech) + conditions.barge_in_conditions(speech)
    assert len(conds) > 10
    for cond in conds:
        _check(cond)
