"""Turn uploads and TTS renders into the audio formats the phone network takes.

Pipeline: decode (soundfile: WAV of any rate and sample format, MP3) → mono →
resample (soxr HQ) → loudness-normalise → limit peaks → encode.

Loudness target: every prompt comes out at an **active speech level of −15 dBm0**
(ITU-T G.223's conventional mean active speech level), which is −21.15 dBFS (RMS
relative to a full-scale square wave): a full-scale sine is +3.14 dBm0 (G.711,
A-law) at −3.01 dBFS, so dBm0 = dBFS + 6.15. The active level is
measured after resampling, on the band the callee will actually hear, so a render
from gTTS (24 kHz MP3) and one from espeak-ng (22 kHz WAV) come out equally loud.
Peaks are soft-limited to −1 dBFS so loud material does not clip in G.711.

Files are written atomically: a temporary file in the destination folder, then
``os.replace``. A reader sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import io
import os
import struct
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import soundfile as sf
import soxr

from autocall.audio import g711
from autocall.audio.levels import FULL_SCALE, FULL_SCALE_SINE_DBM0, active_level_dbm0
from autocall.audio.upload import AudioFileError, check_upload, mpeg_frames, sniff

__all__ = [
    "FORMATS",
    "PEAK_CEILING_DBFS",
    "SILENCE_PEAK_DBFS",
    "TARGET_LEVEL_DBFS",
    "TARGET_LEVEL_DBM0",
    "AudioFileError",
    "AudioInfo",
    "Encoding",
    "NetworkFormat",
    "convert",
    "decode",
    "encode",
    "export_all",
    "normalise",
    "prepare",
    "probe",
    "read_any_audio",
    "read_audio",
    "resample",
    "speech_level_dbfs",
    "to_mono",
    "write_atomic",
]

Samples = npt.NDArray[np.float64]
Encoding = Literal["pcm16", "pcm8", "ulaw", "alaw", "mp3", "vorbis", "opus", "flac"]

_CONTAINERS: dict[str, tuple[str, str, str]] = {
    "vorbis": ("OGG", "VORBIS", ".ogg"),
    "opus": ("OGG", "OPUS", ".opus"),
    "flac": ("FLAC", "PCM_16", ".flac"),
}
"""Encodings written by libsndfile into their own container: (format, subtype, suffix)."""

MAX_CONVERT_BYTES = 256 * 1024 * 1024
"""Largest input ``audio convert`` reads (256 MiB: about 25 minutes of 48 kHz stereo WAV).
Converting is its job, so the 5 MiB PBX upload limit does not apply."""

# G.711: a full-scale sine is +3.14 dBm0 and −3.01 dBFS (RMS re full-scale square wave).
_DBM0_OVER_DBFS = FULL_SCALE_SINE_DBM0 + 10 * float(np.log10(2))

TARGET_LEVEL_DBM0 = -15.0
"""Active speech level of every output: ITU-T G.223's conventional mean speech level."""
TARGET_LEVEL_DBFS = round(TARGET_LEVEL_DBM0 - _DBM0_OVER_DBFS, 2)
"""The same target in dBFS: −21.15."""
PEAK_CEILING_DBFS = -1.0
SILENCE_PEAK_DBFS = -60.0
"""A file whose peak stays below this is refused as silent (nothing a caller could hear)."""

_MP3_COMPRESSION_64K = 0.6  # libsndfile maps 0..1 onto the bitrate table; 0.6 → 64 kbit/s CBR.

# RIFF/WAVE format tags (Microsoft mmreg.h): G.711 A-law 0x0006, μ-law 0x0007.
_WAVE_FORMAT_ALAW = 0x0006
_WAVE_FORMAT_MULAW = 0x0007


@dataclass(frozen=True)
class NetworkFormat:
    """An output the network takes: sample rate, encoding, and WAV container or raw bytes."""

    rate: int
    encoding: Encoding
    raw: bool = False

    def __post_init__(self) -> None:
        if self.rate not in (8000, 16000):
            raise ValueError(f"rate must be 8000 or 16000 Hz, not {self.rate}")
        if self.encoding in ("mp3", *_CONTAINERS) and self.raw:
            raise ValueError(f"{self.encoding} has no raw form")
        if self.encoding == "mp3" and self.rate != 16000:
            raise ValueError("mp3 prompts are 16 kHz, 64 kbit/s (LAME gives 8 kHz only 32)")

    @property
    def suffix(self) -> str:
        if self.encoding == "mp3":
            return ".mp3"
        if self.encoding in _CONTAINERS:
            return _CONTAINERS[self.encoding][2]
        if not self.raw:
            return ".wav"
        return {"pcm16": ".sln", "pcm8": ".u8", "ulaw": ".ul", "alaw": ".al"}[self.encoding]

    @property
    def name(self) -> str:
        return f"{self.encoding}-{self.rate // 1000}k" + ("-raw" if self.raw else "")


FORMATS: dict[str, NetworkFormat] = {
    f.name: f
    for f in (
        NetworkFormat(8000, "pcm16"),
        NetworkFormat(16000, "pcm16"),
        NetworkFormat(16000, "pcm8"),
        NetworkFormat(8000, "ulaw"),
        NetworkFormat(8000, "ulaw", raw=True),
        NetworkFormat(8000, "alaw"),
        NetworkFormat(8000, "alaw", raw=True),
        NetworkFormat(16000, "mp3"),
    )
}
"""The network formats a prompt is exported to (see :func:`export_all`)."""


@dataclass(frozen=True)
class AudioInfo:
    """What `autocall audio info` shows about a file."""

    path: str
    container: str
    subtype: str
    rate: int
    channels: int
    frames: int
    duration_s: float
    size_bytes: int
    peak_dbfs: float
    speech_level_dbfs: float | None
    bitrate_kbps: int | None
    upload_ok: bool
    upload_problem: str | None


# ---------------------------------------------------------------- decoding


def decode(data: bytes, *, name: Path | str = "<bytes>") -> tuple[Samples, int]:
    """Decode a WAV/MP3 (or any libsndfile format) to float64 frames × channels."""
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            rate = f.samplerate
            frames = f.read(dtype="float64", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        raise AudioFileError(
            name,
            "corrupt",
            f"the audio data cannot be decoded ({_short(exc)})",
            "Re-export the recording as WAV (16-bit PCM) or MP3.",
        ) from exc
    if frames.shape[0] == 0:
        raise AudioFileError(
            name, "empty", "the file holds no audio samples", "Upload a recording with sound in it."
        )
    if not np.all(np.isfinite(frames)):
        raise AudioFileError(
            name,
            "corrupt",
            "the file holds NaN or infinite samples",
            "Re-export the recording as 16-bit PCM WAV.",
        )
    return frames, rate


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text.split(": ", 1)[-1] if "Error opening" in text else text


def read_any_audio(path: Path, *, max_bytes: int = MAX_CONVERT_BYTES) -> tuple[Samples, int]:
    """Read any audio libsndfile decodes (WAV of any rate, MP3, FLAC, OGG, AIFF…) as mono
    float64; refuses only what is missing, empty, over ``max_bytes`` or not audio."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise AudioFileError(path, "missing", "this is not a file", "Check the path.")
        if size == 0:
            raise AudioFileError(path, "empty", "the file is empty (0 bytes)",
                                 "Export the recording again.")
        if size > max_bytes:
            raise AudioFileError(
                path, "too-big",
                f"the file is {size / 2**20:.1f} MiB; audio convert reads at most "
                f"{max_bytes / 2**20:.0f} MiB", "Cut the recording into shorter prompts.")
        data = path.read_bytes()
    except OSError as exc:
        raise AudioFileError(path, "missing", exc.strerror or str(exc),
                             "Check the path.") from exc
    frames, rate = decode(data, name=path)
    mono = to_mono(frames)
    _refuse_silence(mono, path)
    return mono, rate


def read_audio(path: Path, *, upload_rules: bool = True) -> tuple[Samples, int]:
    """Read *path* as mono float64 samples and its rate.

    With ``upload_rules`` the PBX rules apply first (WAV/MP3, ≤ 5 MB, not truncated);
    any refusal is an :class:`AudioFileError`. A silent file is refused either way.
    """
    path = Path(path)
    if upload_rules:
        _, data = check_upload(path)
    else:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise AudioFileError(path, "missing", str(exc), "Check the path.") from exc
    frames, rate = decode(data, name=path)
    mono = to_mono(frames)
    _refuse_silence(mono, path)
    return mono, rate


def to_mono(frames: Samples) -> Samples:
    """Average the channels (a stereo upload is usually the same voice twice)."""
    if frames.ndim == 1:
        return frames.astype(np.float64, copy=False)
    channels = frames.shape[1]
    if channels == 1:
        return frames[:, 0].copy()
    # A matrix-vector product: numpy's mean(axis=1) over 2 columns is ~10× slower.
    return np.asarray(frames @ np.full(channels, 1.0 / channels), dtype=np.float64)


def _refuse_silence(x: Samples, name: Path | str) -> None:
    peak = _dbfs(float(np.max(np.abs(x))) if x.size else 0.0)
    if peak < SILENCE_PEAK_DBFS:
        raise AudioFileError(
            name,
            "silent",
            f"the recording is silent (peak {peak:.0f} dBFS, below {SILENCE_PEAK_DBFS:.0f} dBFS)",
            "Check the microphone or export settings and record it again.",
        )


def _dbfs(amplitude: float) -> float:
    return 20.0 * np.log10(amplitude) if amplitude > 0 else -np.inf


# ---------------------------------------------------------------- signal


def resample(x: Samples, rate_in: int, rate_out: int) -> Samples:
    """Resample with soxr's HQ filter (≥ 100 dB stop band, alias-free to Nyquist)."""
    if rate_in == rate_out:
        return x
    return np.asarray(soxr.resample(x, rate_in, rate_out, quality="HQ"), dtype=np.float64)


def speech_level_dbfs(x: Samples, rate: int) -> float | None:
    """Active speech level in dBFS (ITU-T P.56 style, see :mod:`autocall.audio.levels`).

    Pauses do not dilute it, so a prompt with long silences is not pumped up. None for
    a signal with no energy at all.
    """
    level = active_level_dbm0(x * FULL_SCALE, rate)
    return level - _DBM0_OVER_DBFS if np.isfinite(level) else None


def normalise(
    x: Samples,
    rate: int,
    *,
    target_dbfs: float = TARGET_LEVEL_DBFS,
    ceiling_dbfs: float = PEAK_CEILING_DBFS,
) -> Samples:
    """Scale to the target active speech level, then soft-limit peaks to the ceiling."""
    level = speech_level_dbfs(x, rate)
    if level is None:
        _refuse_silence(x, "<audio>")
        return x.copy()
    y = x * 10 ** ((target_dbfs - level) / 20)
    ceiling = 10 ** (ceiling_dbfs / 20)
    knee = 0.5 * ceiling
    over = np.abs(y) > knee
    if np.any(over):
        mag = np.abs(y[over])
        y[over] = np.sign(y[over]) * (
            knee + (ceiling - knee) * np.tanh((mag - knee) / (ceiling - knee))
        )
    return y


def prepare(x: Samples, rate_in: int, rate_out: int, *, name: Path | str = "<audio>") -> Samples:
    """Mono samples at any rate → loudness-normalised samples at ``rate_out``.

    Refuses a signal with nothing audible below the new Nyquist frequency: normalising
    it would amplify the resampler's residue by 100 dB or more into noise.
    """
    y = resample(x, rate_in, rate_out)
    peak = _dbfs(float(np.max(np.abs(y))) if y.size else 0.0)
    if peak < SILENCE_PEAK_DBFS:
        raise AudioFileError(
            name,
            "silent",
            f"nothing is left below {rate_out // 2} Hz, the telephone band "
            f"(peak {peak:.0f} dBFS after resampling to {rate_out} Hz)",
            "Record speech, not a high-pitched tone or ultrasound.",
        )
    return normalise(y, rate_out)


# ---------------------------------------------------------------- encoding


def _int16(x: Samples) -> npt.NDArray[np.int16]:
    return np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16)


def _g711_wav(payload: bytes, rate: int, tag: int) -> bytes:
    """A RIFF/WAVE file around G.711 bytes: non-PCM formats carry cbSize and a fact chunk."""
    fmt = struct.pack("<HHIIHHH", tag, 1, rate, rate, 1, 8, 0)
    fact = struct.pack("<I", len(payload))
    pad = b"\x00" if len(payload) & 1 else b""
    body = (
        b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"fact"
        + struct.pack("<I", len(fact))
        + fact
        + b"data"
        + struct.pack("<I", len(payload))
        + payload
        + pad
    )
    return b"RIFF" + struct.pack("<I", len(body)) + body


def encode(x: Samples, fmt: NetworkFormat) -> bytes:
    """Mono float samples already at ``fmt.rate`` → the bytes of the output file."""
    if fmt.encoding == "mp3":
        buf = io.BytesIO()
        sf.write(
            buf,
            np.clip(x, -1.0, 1.0).astype(np.float32),
            fmt.rate,
            format="MP3",
            subtype="MPEG_LAYER_III",
            compression_level=_MP3_COMPRESSION_64K,
            bitrate_mode="CONSTANT",
        )
        return buf.getvalue()
    if fmt.encoding in _CONTAINERS:
        container, codec, _ = _CONTAINERS[fmt.encoding]
        buf = io.BytesIO()
        sf.write(buf, np.clip(x, -1.0, 1.0).astype(np.float32), fmt.rate, format=container,
                 subtype=codec)
        return buf.getvalue()
    pcm = _int16(x)
    if fmt.encoding in ("ulaw", "alaw"):
        payload = g711.ulaw_encode(pcm) if fmt.encoding == "ulaw" else g711.alaw_encode(pcm)
        if fmt.raw:
            return payload
        tag = _WAVE_FORMAT_MULAW if fmt.encoding == "ulaw" else _WAVE_FORMAT_ALAW
        return _g711_wav(payload, fmt.rate, tag)
    if fmt.encoding == "pcm8":
        q8 = np.clip(np.round(x * 128.0), -128, 127).astype(np.int16)
        if fmt.raw:
            return (q8 + 128).astype(np.uint8).tobytes()
        pcm, subtype = (q8 * 256).astype(np.int16), "PCM_U8"
    else:
        if fmt.raw:
            return pcm.astype("<i2").tobytes()
        subtype = "PCM_16"
    buf = io.BytesIO()
    sf.write(buf, pcm, fmt.rate, format="WAV", subtype=subtype)
    return buf.getvalue()


def write_atomic(path: Path, data: bytes) -> None:
    """Write *data* to *path* via a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide prompts from the PBX user
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------- files


def convert(src: Path, dst: Path, fmt: NetworkFormat, *, upload_rules: bool = True) -> Path:
    """Convert one upload to one network format, atomically. Returns *dst*.

    Without ``upload_rules`` any readable audio of up to :data:`MAX_CONVERT_BYTES` is
    taken (the command-line converter: converting a big WAV is the point).
    """
    if upload_rules:
        x, rate = read_audio(src, upload_rules=True)
    else:
        x, rate = read_any_audio(src)
    write_atomic(dst, encode(prepare(x, rate, fmt.rate, name=src), fmt))
    return Path(dst)


def export_all(
    src: Path,
    out_dir: Path,
    formats: Iterable[NetworkFormat] = FORMATS.values(),
    *,
    upload_rules: bool = True,
) -> dict[str, Path]:
    """Decode *src* once and write it in each format as ``<stem>.<format name><suffix>``."""
    src = Path(src)
    x, rate = read_audio(src, upload_rules=upload_rules)
    prepared: dict[int, Samples] = {}
    written: dict[str, Path] = {}
    for fmt in formats:
        if fmt.rate not in prepared:
            prepared[fmt.rate] = prepare(x, rate, fmt.rate, name=src)
        dst = Path(out_dir) / f"{src.stem}.{fmt.name}{fmt.suffix}"
        write_atomic(dst, encode(prepared[fmt.rate], fmt))
        written[fmt.name] = dst
    return written


def probe(path: Path) -> AudioInfo:
    """Describe *path* and say whether a PBX would accept it as a prompt upload."""
    path = Path(path)
    problem: str | None = None
    try:
        check_upload(path)
    except AudioFileError as exc:
        if exc.reason in ("missing", "empty", "not-audio"):
            raise
        problem = str(exc)
    data = path.read_bytes()
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            container, subtype = f.format, f.subtype
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioFileError(
            path,
            "corrupt",
            f"the audio data cannot be decoded ({_short(exc)})",
            "Re-export the recording as WAV (16-bit PCM) or MP3.",
        ) from exc
    frames, rate = decode(data, name=path)
    mono = to_mono(frames)
    peak = _dbfs(float(np.max(np.abs(frames))))
    if problem is None and peak < SILENCE_PEAK_DBFS:
        problem = f"{path}: the recording is silent (peak {peak:.0f} dBFS)"
    bitrate = None
    if sniff(data[:16]) == "MP3":
        mp3_frames, _ = mpeg_frames(data)
        bitrate = mp3_frames[-1].bitrate_kbps if mp3_frames else None
    return AudioInfo(
        path=str(path),
        container=container,
        subtype=subtype,
        rate=rate,
        channels=frames.shape[1],
        frames=frames.shape[0],
        duration_s=frames.shape[0] / rate,
        size_bytes=len(data),
        peak_dbfs=round(float(peak), 2) if np.isfinite(peak) else -999.0,
        speech_level_dbfs=_round(speech_level_dbfs(mono, rate)),
        bitrate_kbps=bitrate,
        upload_ok=problem is None,
        upload_problem=problem,
    )


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 2)
