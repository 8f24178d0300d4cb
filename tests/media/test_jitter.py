"""Jitter buffer: reorders, conceals loss, drops late packets, copes with other packet sizes."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from autocall.media.jitter import JitterBuffer


def ramp(start: int, n: int = 160) -> np.ndarray:
    return (np.arange(start, start + n) % 30000).astype(np.int16)


def pop(jb: JitterBuffer) -> np.ndarray:
    frame = jb.pop()
    assert frame is not None
    return frame


def play_all(jb: JitterBuffer, frames: int) -> np.ndarray:
    out = []
    for _ in range(frames):
        f = jb.pop()
        if f is not None:
            out.append(f)
    return np.concatenate(out) if out else np.zeros(0, np.int16)


def test_nothing_plays_until_delay_is_buffered() -> None:
    jb = JitterBuffer(delay=480)
    jb.push(1000, ramp(0))
    jb.push(1160, ramp(160))
    assert jb.pop() is None
    jb.push(1320, ramp(320))
    assert np.array_equal(pop(jb), ramp(0))


def test_reordered_packets_play_in_timestamp_order() -> None:
    jb = JitterBuffer(delay=480)
    order = [0, 2, 1, 4, 3, 6, 5, 7, 9, 8]
    for i in order:
        jb.push(50_000 + 160 * i, ramp(160 * i))
    out = play_all(jb, 10)
    assert np.array_equal(out, ramp(0, 1600))
    assert jb.concealed == 0 and jb.late == 0


def test_timestamps_wrap_at_2_to_the_32() -> None:
    jb = JitterBuffer(delay=320)
    base = 2**32 - 320
    for i in range(6):
        jb.push((base + 160 * i) % 2**32, ramp(160 * i))
    assert np.array_equal(play_all(jb, 6), ramp(0, 960))


def test_lost_packet_is_concealed_by_a_faded_repeat_then_silence() -> None:
    jb = JitterBuffer(delay=320)
    for i in (0, 1, 4, 5, 6):
        jb.push(160 * i, np.full(160, 1000 + i, np.int16))
    frames = [jb.pop() for _ in range(6)]
    assert [int(f[0]) for f in frames if f is not None] == [1000, 1001, 500, 0, 1004, 1005]
    assert jb.concealed == 320


def test_late_packet_is_dropped() -> None:
    jb = JitterBuffer(delay=320)
    for i in (0, 1, 2, 3):
        jb.push(160 * i, ramp(160 * i))
    jb.pop()
    jb.pop()
    jb.push(0, ramp(0))
    assert jb.late == 1


def test_thirty_ms_packets_play_out_as_twenty_ms_frames() -> None:
    jb = JitterBuffer(frame=160, delay=480)
    for i in range(8):
        jb.push(240 * i, ramp(240 * i, 240))
    out = play_all(jb, 12)
    assert np.array_equal(out[:1600], ramp(0, 1600))


def test_overflow_trims_back_to_the_target_delay() -> None:
    jb = JitterBuffer(delay=320, max_delay=800)
    for i in range(3):
        jb.push(160 * i, ramp(160 * i))
    jb.pop()
    for i in range(3, 12):
        jb.push(160 * i, ramp(160 * i))
    assert jb.buffered <= 800
    assert jb.dropped > 0


def test_underrun_rebuffers_and_a_new_source_restarts() -> None:
    jb = JitterBuffer(delay=320)
    for i in range(2):
        jb.push(160 * i, ramp(0))
    assert jb.pop() is not None and jb.pop() is not None
    assert jb.pop() is None  # ran dry: waits for 40 ms again
    jb.push(320, ramp(0))
    assert jb.pop() is None
    jb.push(480, ramp(0))
    assert jb.pop() is not None
    jb.push(10**9, ramp(7))  # a jump far beyond resync: new stream
    jb.push(10**9 + 160, ramp(7))
    assert np.array_equal(pop(jb), ramp(7))


@settings(deadline=None)  # a shared, loaded machine: judge results, not speed
@given(
    delays=st.lists(st.integers(0, 2), min_size=5, max_size=60),
    data=st.data(),
)
def test_any_bounded_reordering_and_loss_plays_every_kept_frame_in_order(
    delays: list[int], data: st.DataObject
) -> None:
    n = len(delays)
    kept = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
    kept[0] = kept[-1] = True  # the ends define the stream's extent
    jb = JitterBuffer(delay=480)  # 60 ms absorbs arrival delays up to 40 ms
    arrivals: dict[int, list[int]] = {}
    for i, d in enumerate(delays):
        if kept[i]:
            arrivals.setdefault(i + d, []).append(i)
    out: list[np.ndarray] = []
    for tick in range(n + 10):
        for i in arrivals.get(tick, []):
            jb.push(7000 + 160 * i, np.full(160, 1000 + i, np.int16))
        frame = jb.pop()
        if frame is not None:
            out.append(frame)
    assert jb.late == 0
    # concealment repeats a frame at half level (< 1000) or is silence
    played = [int(f[0]) - 1000 for f in out if f[0] >= 1000 and f.min() == f.max()]
    expected = [i for i in range(n) if kept[i]]
    assert played == expected
    # a hole is concealed, or absorbed by re-buffering when the buffer ran dry at it
    assert jb.concealed <= 160 * (n - len(expected))
