"""Conversion to network formats: round trips, loudness, resampling, atomic writes."""

from __future__ import annotations

import io
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from autocall.audio import g711
from autocall.audio.convert import (
    FORMATS,
    PEAK_CEILING_DBFS,
    TARGET_LEVEL_DBFS,
    NetworkFormat,
    convert,
    encode,
    export_all,
    normalise,
    prepare,
    resample,
    speech_level_dbfs,
)
from autocall.audio.upload import mpeg_frames

REPO = Path(__file__).resolve().parents[2]


def speechlike(
    rate: int, seconds: float = 2.0, seed: int = 7, *, max_hz: float = 20000.0, noise: float = 0.01
) -> np.ndarray:
    """Voiced harmonics with a moving pitch, three formants, syllables and pauses."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    f0 = 130 + 35 * np.sin(2 * np.pi * 0.6 * t) + 10 * np.sin(2 * np.pi * 2.3 * t)
    # The integral of 2π·f0, exact at any rate, so every rate samples the same waveform.
    phase = 2 * np.pi * 130 * t - (35 / 0.6) * np.cos(2 * np.pi * 0.6 * t)
    phase -= (10 / 2.3) * np.cos(2 * np.pi * 2.3 * t)
    x = np.zeros_like(t)
    for k in range(1, 40):
        fk = k * f0
        weight = sum(
            a * np.exp(-(((fk - fc) / bw) ** 2))
            for fc, bw, a in ((550, 180, 1.0), (1500, 250, 0.5), (2600, 300, 0.25))
        )
        x += np.where(fk < min(rate / 2 - 200, max_hz), weight / k**0.5, 0.0) * np.sin(k * phase)
    syllables = np.clip(np.sin(2 * np.pi * 2.5 * t), 0, None) ** 0.7
    pauses = (np.floor(t / 0.8) % 3 != 2).astype(float)  # every third 0.8 s is a pause
    x = x * syllables * pauses + noise * rng.standard_normal(t.size) * syllables * pauses
    return 0.3 * x / np.max(np.abs(x))


def snr_db(ref: np.ndarray, got: np.ndarray) -> float:
    n = min(ref.size, got.size)
    err = ref[:n] - got[:n]
    return float(10 * np.log10(np.sum(ref[:n] ** 2) / np.sum(err**2)))


def read_output(path: Path, fmt: NetworkFormat) -> np.ndarray:
    """Decode an output the way a PBX would, to float samples."""
    data = path.read_bytes()
    if fmt.raw:
        if fmt.encoding == "ulaw":
            return g711.ulaw_decode(data) / 32768.0
        if fmt.encoding == "alaw":
            return g711.alaw_decode(data) / 32768.0
        if fmt.encoding == "pcm16":
            return np.frombuffer(data, "<i2") / 32768.0
        return (np.frombuffer(data, np.uint8).astype(float) - 128) / 128.0
    y, rate = sf.read(path, dtype="float64")
    assert rate == fmt.rate
    assert y.ndim == 1
    return np.asarray(y)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """A 44.1 kHz stereo 24-bit speech-like upload and its mono float signal."""
    x = speechlike(44100)
    path = tmp_path_factory.mktemp("src") / "greeting.wav"
    sf.write(path, np.stack([x, x], axis=1), 44100, subtype="PCM_24")
    y, _ = sf.read(path, dtype="float64")
    return path, y.mean(axis=1)


# Least SNR of each format against the normalised 8/16 kHz reference. G.711 keeps
# ~37 dB on speech; 8-bit linear ~32 dB at this level; MP3 64k (perceptual) ~25 dB.
_MIN_SNR = {"pcm16": 70.0, "pcm8": 28.0, "ulaw": 35.0, "alaw": 35.0, "mp3": 20.0}


@pytest.mark.parametrize("name", list(FORMATS))
def test_every_format_round_trip(
    name: str, source: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    path, x = source
    fmt = FORMATS[name]
    dst = tmp_path / f"out{fmt.suffix}"
    convert(path, dst, fmt)
    y = read_output(dst, fmt)
    ref = prepare(x, 44100, fmt.rate)
    assert abs(y.size - ref.size) <= (1200 if fmt.encoding == "mp3" else 0)
    if fmt.encoding == "mp3":  # decoder delay: align on the cross-correlation peak
        lag = int(np.argmax(np.correlate(y[:4000], ref[:3000], mode="valid")))
        y = y[lag:]
    assert snr_db(ref, y) >= _MIN_SNR[fmt.encoding]
    level = speech_level_dbfs(y, fmt.rate)
    assert level is not None
    assert abs(level - TARGET_LEVEL_DBFS) <= (1.0 if fmt.encoding in ("mp3", "pcm8") else 0.2)


def test_speechlike_through_8k_ulaw_keeps_35_db(
    source: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    path, x = source
    dst = tmp_path / "g.ul"
    convert(path, dst, NetworkFormat(8000, "ulaw", raw=True))
    ref = prepare(x, 44100, 8000)
    assert snr_db(ref, g711.ulaw_decode(dst.read_bytes()) / 32768.0) >= 35.0


def test_g711_wav_is_well_formed_and_bit_exact(
    source: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    path, x = source
    out = export_all(
        path, tmp_path, [FORMATS["ulaw-8k"], FORMATS["ulaw-8k-raw"], FORMATS["alaw-8k"]]
    )
    wav = out["ulaw-8k"].read_bytes()
    assert wav[:4] == b"RIFF" and wav[8:16] == b"WAVEfmt "
    assert struct.unpack_from("<I", wav, 4)[0] + 8 == len(wav)
    tag, channels, rate, byte_rate, align, bits = struct.unpack_from("<HHIIHH", wav, 20)
    assert (tag, channels, rate, byte_rate, align, bits) == (7, 1, 8000, 8000, 1, 8)
    payload = out["ulaw-8k-raw"].read_bytes()
    assert wav[38:42] == b"fact" and struct.unpack_from("<I", wav, 46)[0] == len(payload)
    assert wav[50:54] == b"data" and wav[58 : 58 + len(payload)] == payload
    pcm = np.clip(np.round(prepare(x, 44100, 8000) * 32768), -32768, 32767).astype(np.int16)
    assert payload == g711.ulaw_encode(pcm)
    info = sf.info(out["alaw-8k"])
    assert (info.format, info.subtype, info.samplerate) == ("WAV", "ALAW", 8000)
    decoded, _ = sf.read(out["ulaw-8k"], dtype="int16")
    assert np.array_equal(decoded, g711.ulaw_decode(payload))


def test_mp3_is_64kbps_mono_16khz(source: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    path, _ = source
    dst = convert(path, tmp_path / "p.mp3", FORMATS["mp3-16k"])
    data = dst.read_bytes()
    frames, end = mpeg_frames(data)
    assert len(frames) > 50
    assert {f.bitrate_kbps for f in frames[1:]} == {64}  # frame 0 may be the Xing/Info frame
    assert {f.rate for f in frames} == {16000}
    assert sf.info(dst).channels == 1
    assert end <= len(data)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-32768, 32767), min_size=1, max_size=400))
def test_int16_samples_pass_every_linear_and_g711_encoder_exactly(values: list[int]) -> None:
    pcm = np.array(values, dtype=np.int16)
    x = pcm / 32768.0
    assert np.array_equal(
        np.frombuffer(encode(x, NetworkFormat(8000, "pcm16", raw=True)), "<i2"), pcm
    )
    assert encode(x, NetworkFormat(8000, "ulaw", raw=True)) == g711.ulaw_encode(pcm)
    assert encode(x, NetworkFormat(8000, "alaw", raw=True)) == g711.alaw_encode(pcm)
    y, _ = sf.read(io.BytesIO(encode(x, NetworkFormat(16000, "pcm16"))), dtype="int16")
    assert np.array_equal(y, pcm)
    u8 = np.frombuffer(encode(x, NetworkFormat(16000, "pcm8", raw=True)), np.uint8)
    nearest = np.clip(np.round(pcm / 256), -128, 127)  # round to nearest, saturate at +127
    assert np.array_equal(u8.astype(int) - 128, nearest)


def test_pcm8_is_unsigned_8_bit_16k(source: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    path, _ = source
    dst = convert(path, tmp_path / "p8.wav", FORMATS["pcm8-16k"])
    info = sf.info(dst)
    assert (info.subtype, info.samplerate, info.channels) == ("PCM_U8", 16000, 1)


@pytest.mark.parametrize(
    ("rate", "subtype", "channels"),
    [
        (8000, "PCM_U8", 1),
        (11025, "PCM_16", 2),
        (16000, "PCM_24", 1),
        (22050, "PCM_32", 2),
        (44100, "FLOAT", 1),
        (48000, "DOUBLE", 2),
        (96000, "PCM_16", 1),
    ],
)
def test_any_wav_upload_becomes_the_same_prompt(
    rate: int, subtype: str, channels: int, tmp_path: Path
) -> None:
    x = speechlike(rate, seconds=1.5, max_hz=3500, noise=0.0)
    src = tmp_path / "in.wav"
    sf.write(src, np.stack([x] * channels, axis=1), rate, subtype=subtype)
    dst = convert(src, tmp_path / "out.wav", FORMATS["pcm16-8k"])
    y, out_rate = sf.read(dst, dtype="float64")
    assert out_rate == 8000 and y.ndim == 1
    assert y.size == round(x.size * 8000 / rate)
    level = speech_level_dbfs(y, 8000)
    assert level is not None and abs(level - TARGET_LEVEL_DBFS) < 0.2
    reference = speechlike(8000, seconds=1.5, max_hz=3500, noise=0.0)
    assert snr_db(normalise(reference, 8000), y) > (20.0 if subtype == "PCM_U8" else 60.0)


def test_mp3_upload_converts(tmp_path: Path) -> None:
    x = speechlike(24000)
    src = tmp_path / "in.mp3"
    sf.write(src, x, 24000, format="MP3")
    y, rate = sf.read(convert(src, tmp_path / "o.wav", FORMATS["pcm16-8k"]))
    level = speech_level_dbfs(np.asarray(y), rate)
    assert rate == 8000 and level is not None and abs(level - TARGET_LEVEL_DBFS) < 0.3


@pytest.mark.parametrize("gain_db", [-45.0, -20.0, -3.0])
def test_loudness_does_not_depend_on_input_gain(gain_db: float) -> None:
    x = speechlike(16000)
    y = prepare(x * 10 ** (gain_db / 20) / np.max(np.abs(x)), 16000, 8000)
    level = speech_level_dbfs(y, 8000)
    assert level is not None and abs(level - TARGET_LEVEL_DBFS) < 0.15


def test_speech_level_ignores_pauses() -> None:
    rate = 8000
    t = np.arange(rate) / rate
    tone = 0.1 * np.sin(2 * np.pi * 440 * t)  # RMS −23.0 dBFS
    with_pauses = np.concatenate([tone, np.zeros(3 * rate), tone])
    level = speech_level_dbfs(with_pauses, rate)
    assert level is not None and abs(level - 20 * np.log10(0.1 / np.sqrt(2))) < 0.1
    assert speech_level_dbfs(np.zeros(rate), rate) is None


def test_limiter_holds_peaks_under_the_ceiling() -> None:
    x = speechlike(8000) * 0.05
    x[4000:4010] = 0.9  # a click 25 dB above the speech
    y = normalise(x, 8000)
    assert np.max(np.abs(y)) <= 10 ** (PEAK_CEILING_DBFS / 20)
    level = speech_level_dbfs(y, 8000)
    assert level is not None and abs(level - TARGET_LEVEL_DBFS) < 0.3


def test_resampler_suppresses_everything_above_4k2() -> None:
    rate = 44100
    t = np.arange(rate) / rate
    passband = resample(0.5 * np.sin(2 * np.pi * 1000 * t), rate, 8000)[800:-800]
    assert abs(np.sqrt(2) * np.std(passband) - 0.5) < 0.5 * 0.012  # ±0.1 dB
    for f in (4200.0, 4500.0, 6000.0, 11025.0, 19000.0):
        y = resample(0.5 * np.sin(2 * np.pi * f * t), rate, 8000)[800:-800]
        suppression = 20 * np.log10(0.5 / (np.sqrt(2) * np.std(y)))
        assert suppression >= 60.0, f"{f} Hz only {suppression:.1f} dB down"


_WRITER = """
import sys
from pathlib import Path
from autocall.audio.convert import write_atomic
data = b"N" * (400 * 1024 * 1024)
print("ready", flush=True)
write_atomic(Path(sys.argv[1]), data)
"""


def test_killed_writer_leaves_the_old_file_whole(tmp_path: Path) -> None:
    dst = tmp_path / "prompt.wav"
    dst.write_bytes(b"old prompt")
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(dst)],
        stdout=subprocess.PIPE,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            temps = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
            if temps and temps[0].stat().st_size > 0:
                break
            time.sleep(0.001)
        else:
            pytest.fail("the writer never started its temporary file")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert dst.read_bytes() == b"old prompt"
