"""Call audio for the speech-recognition tests and bench: espeak-ng Korean through G.711.

Shared by ``tests/speech/test_asr.py`` and ``bench/bench_asr.py`` so both measure the same
signal: espeak-ng speaks, soxr resamples to 8 kHz, μ-law encode/decode does what the
telephone line does, and noise generators stand in for line noise and music on hold.
"""

from __future__ import annotations

import io
import shutil
import subprocess

import numpy as np
import numpy.typing as npt
import soundfile as sf
import soxr

from autocall.audio.g711 import ulaw_decode, ulaw_encode

RATE = 8000
FRAME = 160  # 20 ms at 8 kHz, the usual RTP packetisation

Pcm = npt.NDArray[np.int16]


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def synth(
    text: str, voice: str = "ko", speed: int = 175, pitch: int = 50, gain_db: float = -6.0
) -> Pcm:
    """espeak-ng speech at 8 kHz after a μ-law round trip, peak ``gain_db`` below full scale."""
    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", text],
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout
    x, sr = sf.read(io.BytesIO(wav), dtype="float32")
    y = soxr.resample(x, sr, RATE)
    peak = float(np.max(np.abs(y))) or 1.0
    y = y / peak * 10 ** (gain_db / 20)
    return line(y)


def line(y: npt.NDArray[np.floating]) -> Pcm:
    """Float audio in [-1, 1] as it arrives from a G.711 μ-law call."""
    pcm = np.clip(np.round(y * 32767), -32768, 32767).astype(np.int16)
    return ulaw_decode(ulaw_encode(pcm))


def silence(seconds: float) -> Pcm:
    return np.zeros(int(seconds * RATE), dtype=np.int16)


def white_noise(seconds: float, dbfs: float, seed: int = 1) -> npt.NDArray[np.float64]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal(int(seconds * RATE)) * 10 ** (dbfs / 20)


def pink_noise(seconds: float, dbfs: float, seed: int = 2) -> npt.NDArray[np.float64]:
    """1/f noise shaped in the frequency domain, scaled to ``dbfs`` RMS."""
    n = int(seconds * RATE)
    rng = np.random.default_rng(seed)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / RATE)
    spectrum[1:] /= np.sqrt(f[1:])
    spectrum[0] = 0
    x = np.fft.irfft(spectrum, n)
    return x / np.sqrt(np.mean(x * x)) * 10 ** (dbfs / 20)


def music(seconds: float, dbfs: float, seed: int = 3) -> npt.NDArray[np.float64]:
    """Hold-music stand-in: a melody of harmonic notes (no DTMF pairs), 250 ms each."""
    rng = np.random.default_rng(seed)
    note = int(0.25 * RATE)
    t = np.arange(note) / RATE
    envelope = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.02)
    notes = []
    for semitone in rng.integers(-12, 12, size=int(np.ceil(seconds / 0.25))):
        f0 = 220.0 * 2 ** (semitone / 12)
        tone = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in (1, 2, 3))
        notes.append(tone * envelope)
    x = np.concatenate(notes)[: int(seconds * RATE)]
    return x / np.sqrt(np.mean(x * x)) * 10 ** (dbfs / 20)


def mix(speech: Pcm, noise: npt.NDArray[np.float64]) -> Pcm:
    """Speech plus noise (noise as long as speech or longer), back through μ-law."""
    n = max(speech.size, noise.size)
    y = np.zeros(n)
    y[: speech.size] += speech / 32768.0
    y[: noise.size] += noise
    return line(y)


def frames(pcm: Pcm, size: int = FRAME) -> list[Pcm]:
    return [pcm[i : i + size] for i in range(0, pcm.size, size)]
