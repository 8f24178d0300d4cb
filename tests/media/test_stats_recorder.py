"""Reception statistics (RFC 3550 A.3/A.8) and the stereo recorder's file and errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from autocall.media.recorder import Recorder
from autocall.media.stats import ReceptionStats


def test_loss_counts_gaps_across_the_sequence_wrap() -> None:
    st = ReceptionStats()
    seqs = [65530 + i for i in range(12) if i not in (3, 7, 8)]
    for k, s in enumerate(seqs):
        st.update(s % 65536, 160 * k, 0.02 * k)
    assert st.expected == 12  # 65530 … 65541 (= 5 after the wrap)
    assert (st.received, st.lost) == (9, 3)
    st.update(1, 0, 1.0)  # 65537 arrives late: one fewer lost
    assert (st.expected, st.lost) == (12, 2)
    for _ in range(5):
        st.update(1, 0, 1.0)  # duplicates never make the loss negative
    assert st.lost == 0


def test_jitter_is_zero_for_perfect_pacing_and_grows_with_delay_noise() -> None:
    steady, noisy = ReceptionStats(), ReceptionStats()
    rng = np.random.default_rng(3)
    for k in range(500):
        steady.update(k, 160 * k, 10 + 0.02 * k)
        noisy.update(k, 160 * k, 10 + 0.02 * k + rng.uniform(0, 0.01))
    assert steady.jitter == pytest.approx(0, abs=1e-9)
    # uniform 0–10 ms delay noise: mean |D| is 3.3 ms, which J converges to
    assert noisy.jitter == pytest.approx(0.0033, rel=0.3)


def test_recorder_writes_stereo_received_left_sent_right(tmp_path: Path) -> None:
    rec = Recorder(tmp_path / "r.wav", block_frames=3)
    for k in range(7):
        rec.write(np.full(160, k, np.int16), np.full(160, -k, np.int16))
    rec.close()
    assert rec.closed
    data, rate = sf.read(tmp_path / "r.wav", dtype="int16")
    assert rate == 8000 and data.shape == (7 * 160, 2)
    assert list(data[::160, 0]) == list(range(7)) and list(data[::160, 1]) == [-k for k in range(7)]


def test_recorder_names_the_path_it_cannot_write(tmp_path: Path) -> None:
    (tmp_path / "plain-file").write_text("")  # missing folders are made; a file is no folder
    with pytest.raises(OSError, match="cannot record to .*r.wav"):
        Recorder(tmp_path / "plain-file" / "r.wav")


def test_recorders_started_together_write_their_blocks_in_different_frames(
    tmp_path: Path,
) -> None:
    """Calls answered in one instant must not all write to disk in the same tick."""
    recorders = [Recorder(tmp_path / f"{i}.wav", block_frames=10) for i in range(10)]
    empty = recorders[0].path.stat().st_size  # the WAV header
    first_write: list[int] = []
    for rec in recorders:
        for k in range(1, 11):
            rec.write(np.zeros(160, np.int16), np.zeros(160, np.int16))
            if rec.path.stat().st_size > empty:  # the block went to the file
                first_write.append(k)
                break
    assert sorted(first_write) == list(range(1, 11))  # one recorder per frame of the block
    for rec in recorders:
        for _ in range(25):
            rec.write(np.ones(160, np.int16), np.ones(160, np.int16))
        rec.close()
        data, _ = sf.read(rec.path, dtype="int16")
        assert data.shape == ((first_write[recorders.index(rec)] + 25) * 160, 2)
