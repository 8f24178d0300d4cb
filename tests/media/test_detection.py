"""Shared DTMF detector banks: calls that join, leave and lag still get their own digits once."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from autocall.audio.dtmf import DtmfEvent
from autocall.audio.tones import dtmf, silence
from autocall.media.detection import DetectorPool


def frames(x: np.ndarray) -> list[np.ndarray]:
    x = np.concatenate([x, np.zeros(-len(x) % 160, np.int16)])
    return [x[i : i + 160] for i in range(0, len(x), 160)]


def test_each_call_gets_its_own_digits_across_banks() -> None:
    pool = DetectorPool(bank_size=4)
    keys = ["1", "2", "35", "#", "", "9", "A*", "0", "7", "4"]  # ten calls: three banks
    got: dict[int, list[str]] = {i: [] for i in range(len(keys))}

    def keeper(i: int) -> Callable[[DtmfEvent], None]:
        return lambda ev: got[i].append(ev.digit)

    slots = [pool.attach(keeper(i)) for i in range(len(keys))]
    audio = [
        frames(np.concatenate([silence(60 * i), dtmf(k), silence(400)])) for i, k in enumerate(keys)
    ]
    for t in range(max(len(a) for a in audio)):
        for slot, a in zip(slots, audio, strict=True):
            pool.push(slot, a[t] if t < len(a) else np.zeros(160, np.int16))
        pool.run()
    assert {i: "".join(v) for i, v in got.items()} == dict(enumerate(keys))
    assert pool.calls == 10 and pool.forced == 0


def test_a_call_joining_late_and_a_reused_slot_start_clean() -> None:
    pool = DetectorPool(bank_size=2)
    seen: list[tuple[str, str]] = []
    a = pool.attach(lambda ev: seen.append(("a", ev.digit)))
    for f in frames(np.concatenate([silence(300), dtmf("5")])):
        pool.push(a, f)
        pool.run()
    b = pool.attach(lambda ev: seen.append(("b", ev.digit)))  # joins mid-batch
    for fa, fb in zip(
        frames(silence(600)), frames(np.concatenate([dtmf("6"), silence(400)])), strict=True
    ):
        pool.push(a, fa)
        pool.push(b, fb)
        pool.run()
    pool.detach(b)
    c = pool.attach(lambda ev: seen.append(("c", ev.digit)))
    assert c == b  # the freed slot is reused, without b's state
    for fa, fc in zip(
        frames(silence(600)), frames(np.concatenate([dtmf("7"), silence(400)])), strict=True
    ):
        pool.push(a, fa)
        pool.push(c, fc)
        pool.run()
    assert seen == [("a", "5"), ("b", "6"), ("c", "7")]


def test_a_stalled_call_does_not_hold_the_others_up() -> None:
    pool = DetectorPool(bank_size=2)
    seen: list[DtmfEvent] = []
    live = pool.attach(seen.append)
    pool.attach(lambda ev: None)  # this call never pushes (its stream stalled)
    for f in frames(np.concatenate([dtmf("8"), silence(600)])):
        pool.push(live, f)
        pool.run()
    assert [e.digit for e in seen] == ["8"]


def _run_banks(phases: int) -> tuple[list[int], dict[int, str], int]:
    """32 calls in eight banks, their frames pushed over ``phases`` wake-ups a frame."""
    pool = DetectorPool(bank_size=4)
    keys = [str(i % 10) for i in range(32)]
    got: dict[int, list[str]] = {i: [] for i in range(len(keys))}
    fed: list[int] = []

    def keeper(i: int) -> Callable[[DtmfEvent], None]:
        return lambda ev: got[i].append(ev.digit)

    slots = [pool.attach(keeper(i)) for i in range(len(keys))]
    for bank in pool._banks:

        def counted(feed: Callable[[], None] = bank._feed) -> None:
            fed.append(1)
            feed()

        bank._feed = counted  # type: ignore[method-assign]
    audio = [frames(np.concatenate([silence(200), dtmf(k), silence(600)])) for k in keys]
    per_wakeup = []
    for t in range(len(audio[0])):
        for phase in range(phases):
            for i, (slot, a) in enumerate(zip(slots, audio, strict=True)):
                if i % phases == phase:
                    pool.push(slot, a[t])
            before = len(fed)
            pool.run()
            per_wakeup.append(len(fed) - before)
    return per_wakeup, {i: "".join(v) for i, v in got.items()}, pool.forced


def test_one_bank_is_analysed_per_wakeup_when_calls_are_spread_over_the_frame() -> None:
    per_wakeup, got, forced = _run_banks(phases=8)
    # All eight banks complete a batch in the same wake-up; they take turns instead of
    # delaying that wake-up's successor by eight analyses.
    assert max(per_wakeup) == 1
    assert got == {i: str(i % 10) for i in range(32)}
    assert forced == 0


def test_banks_that_fall_a_batch_behind_are_analysed_at_once() -> None:
    per_wakeup, got, forced = _run_banks(phases=1)  # one wake-up a frame cannot take turns
    assert max(per_wakeup) > 1
    assert got == {i: str(i % 10) for i in range(32)}
    assert forced == 0


def test_a_call_whose_packets_pause_then_burst_keeps_its_tone_whole() -> None:
    """Issue 22: the signal feed pushes nothing while a sender pauses and the held frames
    at once after; the bank waits for it (up to its pad limit) and keeps the burst."""
    pool = DetectorPool(bank_size=2)
    got: dict[str, list[str]] = {"a": [], "b": []}
    a = pool.attach(lambda ev: got["a"].append(ev.digit))
    b = pool.attach(lambda ev: got["b"].append(ev.digit))
    fa = frames(np.concatenate([silence(200), dtmf("8", on_ms=600, off_ms=0), silence(600)]))
    fb = frames(np.concatenate([silence(200), dtmf("3", on_ms=120, off_ms=0), silence(1080)]))
    held: list[np.ndarray] = []
    for t, (x, y) in enumerate(zip(fa, fb, strict=True)):
        held.append(x)
        if not 20 <= t < 37:  # a's packets are held for 340 ms in the middle of its tone
            for h in held:
                pool.push(a, h)
            held.clear()
        pool.push(b, y)
        pool.run()
    assert got == {"a": ["8"], "b": ["3"]}
    assert pool.forced == 0
