"""Upload rules: every kind of bad prompt file gets a clear, specific refusal."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autocall.audio.convert import FORMATS, AudioFileError, convert, probe, read_audio
from autocall.audio.upload import MAX_UPLOAD_BYTES, check_upload, mpeg_frames


def tone(rate: int = 16000, seconds: float = 1.0, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return amp * np.sin(2 * np.pi * 440 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))


def wav_bytes(x: np.ndarray, rate: int = 16000, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, rate, format="WAV", subtype=subtype)
    return buf.getvalue()


def mp3_bytes(x: np.ndarray, rate: int = 16000) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, rate, format="MP3")
    return buf.getvalue()


def refused(path: Path) -> AudioFileError:
    """The error a PBX-style upload of *path* gets, checked to name the file and a remedy."""
    with pytest.raises(AudioFileError) as caught:
        read_audio(path)
    err = caught.value
    assert err.path == path
    assert str(path) in str(err)
    assert err.hint and err.hint[0].isupper()
    return err


def test_good_wav_and_mp3_pass(tmp_path: Path) -> None:
    (tmp_path / "a.wav").write_bytes(wav_bytes(tone()))
    (tmp_path / "b.MP3").write_bytes(mp3_bytes(tone()))
    assert check_upload(tmp_path / "a.wav")[0] == "WAV"
    assert check_upload(tmp_path / "b.MP3")[0] == "MP3"


def test_mp3_with_id3_tags_passes(tmp_path: Path) -> None:
    body = mp3_bytes(tone())
    id3v2 = b"ID3\x04\x00\x00" + bytes([0, 0, 0, 20]) + b"\x00" * 20
    id3v1 = b"TAG" + b"\x00" * 125
    path = tmp_path / "tagged.mp3"
    path.write_bytes(id3v2 + body + id3v1)
    x, rate = read_audio(path)
    assert rate == 16000 and x.size > 15000


def test_wav_with_extra_chunks_passes(tmp_path: Path) -> None:
    data = wav_bytes(tone())
    name = b"INAM" + struct.pack("<I", 6) + b"Hello\x00"
    info = b"LIST" + struct.pack("<I", 4 + len(name)) + b"INFO" + name
    riff = data[:36] + info + data[36:]  # after the 16-byte 'fmt ' chunk
    riff = riff[:4] + struct.pack("<I", len(riff) - 8) + riff[8:]
    path = tmp_path / "list.wav"
    path.write_bytes(riff)
    assert read_audio(path)[0].size == 16000


def test_missing(tmp_path: Path) -> None:
    assert refused(tmp_path / "nope.wav").reason == "missing"


def test_empty(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    err = refused(path)
    assert err.reason == "empty" and "0 bytes" in str(err)


def test_header_without_samples_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "nothing.wav"
    path.write_bytes(wav_bytes(np.zeros(0)))
    assert refused(path).reason == "empty"


def test_too_big(tmp_path: Path) -> None:
    path = tmp_path / "long.wav"
    seconds = MAX_UPLOAD_BYTES / (2 * 44100) + 1
    path.write_bytes(wav_bytes(tone(44100, seconds), 44100))
    err = refused(path)
    assert err.reason == "too-big" and "limit is 5 MiB" in str(err)  # 5 * 2**20 bytes


def test_just_under_the_limit_passes(tmp_path: Path) -> None:
    path = tmp_path / "fits.wav"
    path.write_bytes(wav_bytes(tone(44100, (MAX_UPLOAD_BYTES - 100) / (2 * 44100)), 44100))
    assert path.stat().st_size <= MAX_UPLOAD_BYTES
    assert read_audio(path)[1] == 44100


def test_wrong_extension_for_the_data(tmp_path: Path) -> None:
    path = tmp_path / "greeting.wav"
    path.write_bytes(mp3_bytes(tone()))
    err = refused(path)
    assert err.reason == "wrong-extension" and "greeting.mp3" in err.hint


def test_extension_not_accepted(tmp_path: Path) -> None:
    path = tmp_path / "greeting.txt"
    path.write_bytes(wav_bytes(tone()))
    err = refused(path)
    assert err.reason == "wrong-extension" and "greeting.wav" in err.hint


@pytest.mark.parametrize(("fmt", "name"), [("FLAC", "FLAC"), ("OGG", "Ogg")])
def test_other_audio_formats_are_named(tmp_path: Path, fmt: str, name: str) -> None:
    buf = io.BytesIO()
    sf.write(buf, tone(), 16000, format=fmt)
    path = tmp_path / "greeting.wav"
    path.write_bytes(buf.getvalue())
    err = refused(path)
    assert err.reason == "unsupported-format" and name in str(err)


def test_not_audio(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp3"
    path.write_text("Please call us back tomorrow.\n" * 50)
    assert refused(path).reason == "not-audio"


def test_truncated_wav(tmp_path: Path) -> None:
    data = wav_bytes(tone())
    path = tmp_path / "cut.wav"
    path.write_bytes(data[: len(data) // 2])
    err = refused(path)
    assert err.reason == "truncated" and "announces 32000 bytes" in str(err)


def test_truncated_mp3(tmp_path: Path) -> None:
    data = mp3_bytes(tone(seconds=2.0))
    path = tmp_path / "cut.mp3"
    path.write_bytes(data[: len(data) // 2 + 7])
    assert refused(path).reason == "truncated"


def test_mp3_cut_at_a_frame_boundary_is_truncated(tmp_path: Path) -> None:
    data = mp3_bytes(tone(seconds=2.0))
    frames, _ = mpeg_frames(data)
    keep = sum(f.length for f in frames[: len(frames) // 2])
    path = tmp_path / "cut.mp3"
    path.write_bytes(data[:keep])
    err = refused(path)
    assert err.reason == "truncated" and "announces" in str(err)


def test_corrupt_wav_header(tmp_path: Path) -> None:
    data = bytearray(wav_bytes(tone()))
    data[20:36] = b"\xff" * 16  # the 'fmt ' chunk body
    path = tmp_path / "bad.wav"
    path.write_bytes(bytes(data))
    err = refused(path)
    assert err.reason == "corrupt" and "cannot be decoded" in str(err)


def test_corrupt_mp3_stream(tmp_path: Path) -> None:
    data = bytearray(mp3_bytes(tone(seconds=2.0)))
    mid = len(data) // 2
    data[mid : mid + 400] = np.random.default_rng(3).integers(0, 256, 400, dtype=np.uint8).tobytes()
    path = tmp_path / "bad.mp3"
    path.write_bytes(bytes(data))
    assert refused(path).reason == "corrupt"


@pytest.mark.parametrize("peak_dbfs", [None, -65.0])
def test_silent(tmp_path: Path, peak_dbfs: float | None) -> None:
    amp = 0.0 if peak_dbfs is None else 10 ** (peak_dbfs / 20) / 1.5  # tone() peaks at 1.5·amp
    path = tmp_path / "quiet.wav"
    path.write_bytes(wav_bytes(tone(amp=amp), subtype="FLOAT"))
    err = refused(path)
    assert err.reason == "silent" and "silent" in str(err)


def test_nothing_in_the_telephone_band_is_silent(tmp_path: Path) -> None:
    t = np.arange(44100) / 44100
    ramp = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.05)  # 50 ms fades: no clicks
    path = tmp_path / "whistle.wav"
    path.write_bytes(wav_bytes(0.5 * ramp * np.sin(2 * np.pi * 12000 * t), 44100))
    read_audio(path)  # loud at 44.1 kHz…
    with pytest.raises(AudioFileError) as caught:
        convert(path, tmp_path / "out.wav", FORMATS["pcm16-8k"])
    assert caught.value.reason == "silent" and "below 4000 Hz" in str(caught.value)
    assert not (tmp_path / "out.wav").exists()


def test_quiet_but_audible_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "soft.wav"
    path.write_bytes(wav_bytes(tone(amp=10 ** (-45 / 20))))
    assert read_audio(path)[0].size == 16000


def test_refused_convert_leaves_the_old_output_alone(tmp_path: Path) -> None:
    src = tmp_path / "cut.wav"
    data = wav_bytes(tone())
    src.write_bytes(data[: len(data) - 1000])
    dst = tmp_path / "prompt.wav"
    dst.write_bytes(b"previous prompt")
    with pytest.raises(AudioFileError):
        convert(src, dst, FORMATS["ulaw-8k"])
    assert dst.read_bytes() == b"previous prompt"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.wav", "prompt.wav"]


def test_probe_reports_refusals_without_raising(tmp_path: Path) -> None:
    path = tmp_path / "greeting.wav"
    path.write_bytes(mp3_bytes(tone()))
    found = probe(path)
    assert found.container == "MP3" and found.bitrate_kbps is not None
    assert not found.upload_ok and found.upload_problem and "greeting.mp3" in found.upload_problem


_GOOD = {".wav": wav_bytes(tone(seconds=0.2)), ".mp3": mp3_bytes(tone(seconds=0.2))}


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    suffix=st.sampled_from([".wav", ".mp3"]),
    cut=st.integers(0, 10_000),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=8),
)
def test_mangled_files_get_a_refusal_or_audio_never_a_crash(
    tmp_path: Path, suffix: str, cut: int, flips: list[tuple[int, int]]
) -> None:
    data = bytearray(_GOOD[suffix][: max(1, len(_GOOD[suffix]) - cut)])
    for where, value in flips:
        data[where % len(data)] = value
    path = tmp_path / f"upload{suffix}"
    path.write_bytes(bytes(data))
    try:
        x, rate = read_audio(path)
    except AudioFileError as err:
        assert err.path == path and err.reason
    else:
        assert x.size > 0 and rate > 0 and np.all(np.isfinite(x))
