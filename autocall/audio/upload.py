"""Upload rules for prompt audio, applied the way a PBX applies them.

A PBX accepts a prompt only as WAV or MP3 of at most 5 MB. We check the same rules
before decoding so a user learns *why* a file was refused and what to do, instead of
meeting a garbled libsndfile message or a silent prompt on a live call. libsndfile
reads a truncated WAV without complaint (it just returns fewer frames), so the RIFF
chunk sizes and the MPEG frame chain are checked here against the bytes on disk.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = [
    "MAX_UPLOAD_BYTES",
    "AudioFileError",
    "Container",
    "check_container",
    "check_upload",
    "sniff",
]

MAX_UPLOAD_BYTES = 5 * 1024 * 1024
"""The PBX upload limit: 5 MB (5 MiB), about 5 minutes of 8 kHz 16-bit WAV."""

Container = Literal["WAV", "MP3"]
_EXTENSIONS: dict[str, Container] = {".wav": "WAV", ".mp3": "MP3"}

Reason = Literal[
    "missing",
    "empty",
    "too-big",
    "wrong-extension",
    "unsupported-format",
    "not-audio",
    "corrupt",
    "truncated",
    "silent",
]


class AudioFileError(ValueError):
    """An audio file we refuse, naming the file, the reason and what to do."""

    def __init__(self, path: Path | str, reason: Reason, detail: str, hint: str) -> None:
        self.path = Path(path)
        self.reason: Reason = reason
        self.detail = detail
        self.hint = hint
        super().__init__(f"{self.path}: {detail}. {hint}")


# Magic numbers of containers people upload by mistake, so the error can name them.
_OTHER_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"fLaC", "FLAC"),
    (b"OggS", "Ogg"),
    (b"FORM", "AIFF"),
    (b".snd", "AU"),
    (b"RF64", "RF64"),
    (b"#!AMR", "AMR"),
    (b"\x1aE\xdf\xa3", "Matroska/WebM"),
)


def sniff(head: bytes) -> str | None:
    """Name the container from the first bytes: ``WAV``, ``MP3``, another name, or None."""
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "WAV"
    if head[:3] == b"ID3" or _mpeg_header(head, 0) is not None:
        return "MP3"
    if head[4:8] == b"ftyp":
        return "MP4/M4A"
    for magic, name in _OTHER_MAGIC:
        if head.startswith(magic):
            return name
    return None


def check_upload(path: Path, *, max_bytes: int = MAX_UPLOAD_BYTES) -> tuple[Container, bytes]:
    """Apply the PBX rules to *path*; return its container and bytes, or raise AudioFileError.

    Decoding problems (corrupt frames) and silence are found later, by the converter.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioFileError(path, "missing", "no such file", "Check the path and try again.")
    size = path.stat().st_size
    if size == 0:
        raise AudioFileError(
            path, "empty", "the file is empty (0 bytes)", "Upload the recording again."
        )
    if size > max_bytes:
        raise AudioFileError(
            path,
            "too-big",
            f"the file is {size / 1_048_576:.1f} MiB; the limit is {max_bytes / 1_048_576:.0f} MiB",
            "Shorten the prompt or export it as 8 kHz mono WAV or 64 kbps MP3.",
        )
    data = path.read_bytes()
    found = sniff(data[:16])
    expected = _EXTENSIONS.get(path.suffix.lower())
    if found is None:
        raise AudioFileError(
            path,
            "not-audio",
            "the file is not audio (neither WAV nor MP3 data)",
            "Upload a WAV or MP3 recording.",
        )
    if found not in ("WAV", "MP3"):
        raise AudioFileError(
            path,
            "unsupported-format",
            f"the file is {found}; only WAV and MP3 are accepted",
            "Export it as WAV (16-bit PCM) or MP3.",
        )
    if expected is None:
        raise AudioFileError(
            path,
            "wrong-extension",
            f"the name ends in '{path.suffix or '(none)'}' but only .wav and .mp3 are accepted",
            f"Rename it to {path.stem}.{found.lower()}.",
        )
    if expected != found:
        raise AudioFileError(
            path,
            "wrong-extension",
            f"the name ends in '{path.suffix}' but the data is {found}",
            f"Rename it to {path.stem}.{found.lower()}.",
        )
    container: Container = "WAV" if found == "WAV" else "MP3"
    if container == "WAV":
        _check_riff(path, data)
    else:
        _check_mpeg(path, data)
    return container, data


def check_container(data: bytes, name: Path | str) -> None:
    """The container checks of :func:`check_upload` without its size and extension rules:
    a WAV whose chunks or an MP3 whose frame chain end before the data says they do is
    refused as truncated or corrupt (libsndfile would decode what is there and play a
    prompt cut short). Other formats pass: the decoder judges them."""
    found = sniff(data[:16])
    if found == "WAV":
        _check_riff(Path(name), data)
    elif found == "MP3":
        _check_mpeg(Path(name), data)


def _check_riff(path: Path, data: bytes) -> None:
    """Walk the RIFF chunks (Microsoft RIFF/WAVE spec) and compare sizes with the file."""
    declared = struct.unpack_from("<I", data, 4)[0] + 8 if len(data) >= 8 else 0
    pos = 12
    saw_fmt = False
    while pos + 8 <= len(data):
        cid = data[pos : pos + 4]
        (clen,) = struct.unpack_from("<I", data, pos + 4)
        if cid == b"fmt ":
            saw_fmt = True
        if cid == b"data":
            if not saw_fmt:
                break
            have = len(data) - pos - 8
            if clen > have and clen != 0xFFFFFFFF:
                raise AudioFileError(
                    path,
                    "truncated",
                    f"the file is truncated: the WAV header announces {clen} bytes of audio "
                    f"but only {have} are present",
                    "Upload the complete file again (the copy or download was cut short).",
                )
            return
        pos += 8 + clen + (clen & 1)
    if declared > len(data):
        raise AudioFileError(
            path,
            "truncated",
            f"the file is truncated: {len(data)} of {declared} bytes",
            "Upload the complete file again (the copy or download was cut short).",
        )
    raise AudioFileError(
        path,
        "corrupt",
        "the WAV file has no usable 'fmt '/'data' chunks",
        "Re-export the recording as WAV (16-bit PCM) or MP3.",
    )


# ISO/IEC 11172-3 and 13818-3 frame header tables (kbit/s, Hz), Layer III only.
_BITRATES = {
    1: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),  # MPEG-1
    2: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),  # MPEG-2/2.5
}
_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


@dataclass(frozen=True)
class _Frame:
    length: int
    bitrate_kbps: int
    rate: int


def _mpeg_header(data: bytes, pos: int) -> _Frame | None:
    """Parse one MPEG audio Layer III frame header at *pos*, or None if there is none."""
    if pos + 4 > len(data):
        return None
    b1, b2 = data[pos + 1], data[pos + 2]
    if data[pos] != 0xFF or (b1 & 0xE0) != 0xE0:
        return None
    version = (b1 >> 3) & 3  # 3 = MPEG-1, 2 = MPEG-2, 0 = MPEG-2.5, 1 reserved
    layer = (b1 >> 1) & 3  # 1 = Layer III
    br_index = b2 >> 4
    rate_index = (b2 >> 2) & 3
    if version == 1 or layer != 1 or br_index in (0, 15) or rate_index == 3:
        return None
    bitrate = _BITRATES[1 if version == 3 else 2][br_index]
    rate = _RATES[version][rate_index]
    padding = (b2 >> 1) & 1
    per_frame = 144 if version == 3 else 72
    return _Frame(per_frame * bitrate * 1000 // rate + padding, bitrate, rate)


def mpeg_frames(data: bytes) -> tuple[list[_Frame], int]:
    """Follow the frame chain; return the frames and the offset where the chain stopped."""
    pos = 0
    if data[:3] == b"ID3" and len(data) >= 10:
        size = 0
        for byte in data[6:10]:
            size = (size << 7) | (byte & 0x7F)
        pos = 10 + size
    frames: list[_Frame] = []
    while (frame := _mpeg_header(data, pos)) is not None:
        frames.append(frame)
        pos += frame.length
    return frames, pos


def _xing_frames(data: bytes, first: int) -> int | None:
    """Frame count of a Xing/Info header in the first frame (LAME's VBR/CBR tag), if any.

    The tag follows the 4-byte header and the side information, whose size depends on
    version and channel mode (ISO/IEC 11172-3 §2.4.1.7; 13818-3 halves it).
    """
    if first + 4 > len(data):
        return None
    mpeg1 = (data[first + 1] >> 3) & 3 == 3
    mono = data[first + 3] >> 6 == 3
    side = (17 if mono else 32) if mpeg1 else (9 if mono else 17)
    tag = first + 4 + side
    if data[tag : tag + 4] not in (b"Xing", b"Info") or tag + 12 > len(data):
        return None
    flags, count = struct.unpack_from(">II", data, tag + 4)
    return int(count) if flags & 1 else None


def _check_mpeg(path: Path, data: bytes) -> None:
    frames, end = mpeg_frames(data)
    if not frames:
        raise AudioFileError(
            path,
            "corrupt",
            "no MPEG audio frame was found where the MP3 data should start",
            "Re-export the recording as MP3 or WAV.",
        )
    tail = len(data) - end
    if tail < 0:
        raise AudioFileError(
            path,
            "truncated",
            f"the file is truncated: the last MP3 frame is missing {-tail} bytes",
            "Upload the complete file again (the copy or download was cut short).",
        )
    trailer = data[end:]
    if trailer.strip(b"\x00") and not trailer.startswith((b"TAG", b"APETAGEX", b"LYRICS")):
        # A broken frame mid-stream: the decoder would resync and skip audio.
        raise AudioFileError(
            path,
            "corrupt",
            f"the MP3 frame chain breaks at byte {end} of {len(data)} "
            f"after {len(frames)} good frames",
            "Re-export the recording as MP3 or WAV.",
        )
    declared = _xing_frames(data, end - sum(f.length for f in frames))
    if declared is not None and len(frames) - 1 < declared:
        raise AudioFileError(
            path,
            "truncated",
            f"the file is truncated: its MP3 header announces {declared} frames "
            f"but only {len(frames) - 1} are present",
            "Upload the complete file again (the copy or download was cut short).",
        )
