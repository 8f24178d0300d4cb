"""The single-channel fast path (`_Plan`) against the general analysis it replaces.

`DtmfDetector` analyses a steady stream's buffers with a `_Plan`: preallocated arrays,
other layouts, tests folded into bytes. It must give exactly what `_Analyzer.analyze`
gives, value for value, or the conformance results could drift apart from the bank's.
"""

from __future__ import annotations

import conditions
import numpy as np
import numpy.typing as npt
import pytest

from autocall.audio import dtmf

TONES = conditions.tone_conditions()


def _signal(rate: int) -> npt.NDArray[np.int16]:
    """Every tone condition at `rate` back to back: keys, twist, noise, talk-off, music."""
    return np.concatenate([c.signal for c in TONES if c.rate == rate])


@pytest.mark.parametrize(
    ("rate", "length", "kept"),
    [(8000, 880, 80), (8000, 240, 80), (8000, 1003, 43), (16000, 1760, 160)],
)
def test_plan_gives_what_analyze_gives(rate: int, length: int, kept: int) -> None:
    an = dtmf._Analyzer(rate)
    plan = dtmf._Plan(an, length)
    nb = an.blocks(length)
    x = _signal(rate)
    passed = 0
    for s in range(0, x.size - length, (nb - 1) * an.hop):
        head = x[s : s + kept].astype(np.float32)
        got = plan.run(head, [x[s + kept : s + length]])
        buf = np.concatenate([head, x[s + kept : s + length]], dtype=np.float32)
        assert np.array_equal(plan.kept, buf[(nb - 1) * an.hop :])
        codes, dev = an.analyze(buf[None, :], nb)
        if codes is an.nothing(1, nb)[0] or float(buf.dot(buf)) < an.quiet:
            assert got is None, s
            continue
        assert got is not None, s
        keys, miss, pairs, lo, hi, share = got
        assert [-1 if m or p else k for k, m, p in zip(keys, miss, pairs, strict=True)] == (
            codes[0].tolist()
        ), s
        mine = np.array([lo, hi, share], dtype=np.float32).T
        assert np.array_equal(mine.view(np.uint32), dev[0].view(np.uint32)), s
        passed += 1
    assert passed > 50  # the comparison reached the full analysis, not only the first look


@pytest.mark.parametrize("batch_ms", [0.0, 100.0])
def test_detector_with_and_without_plans(batch_ms: float, monkeypatch: pytest.MonkeyPatch) -> None:
    conds = [c for c in TONES if c.group in ("keys", "twist", "noise", "combined", "16k")]
    with_plans = [_events(c, batch_ms) for c in conds]
    det = dtmf.DtmfDetector(batch_ms=batch_ms)
    for _ in range(20):
        det.feed(np.zeros(160, dtype=np.int16))
    assert list(det._plans) == [880 if batch_ms else 240]  # steady feeding: the fast path
    monkeypatch.setattr(dtmf, "_Plan", lambda an, length: None)
    assert [_events(c, batch_ms) for c in conds] == with_plans


def _events(cond: conditions.Condition, batch_ms: float) -> list[list[dtmf.DtmfEvent]]:
    """Events of 20 ms frames, and of 20 and 40 ms frames mixed (plans for two lengths)."""
    rate, frame = cond.rate, cond.rate // 50
    steady = dtmf.detect(cond.signal, rate, frame=frame, batch_ms=batch_ms)
    det = dtmf.DtmfDetector(rate, batch_ms=batch_ms)
    sizes = np.random.default_rng(3).choice([frame, 2 * frame], size=cond.signal.size // frame)
    ends = np.cumsum(sizes)
    jitter: list[dtmf.DtmfEvent] = []
    for start, end in zip(ends - sizes, ends, strict=True):
        jitter += det.feed(cond.signal[start:end])
    jitter += det.flush()
    return [steady, jitter]
