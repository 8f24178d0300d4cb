"""ITU-T G.711 μ-law and A-law companding with numpy lookup tables.

Bit-exact with the classic Sun reference coder that CPython's ``audioop`` used
(audioop is gone in Python 3.13, so we carry our own). Encoding is one table
lookup per sample over all 65,536 int16 values; decoding is one lookup per byte.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = [
    "alaw_decode",
    "alaw_encode",
    "ulaw_decode",
    "ulaw_encode",
    "ULAW_SILENCE",
    "ALAW_SILENCE",
]

# G.711 segment end points (Table 1a/2a): μ-law works on 14-bit, A-law on 13-bit magnitudes.
_SEG_UEND = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF], dtype=np.int32)
_SEG_AEND = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF], dtype=np.int32)
_Bytes = bytes | bytearray | memoryview | npt.NDArray[np.uint8]
_ULAW_BIAS = 0x84
_ULAW_CLIP = 8159

ULAW_SILENCE = 0xFF
ALAW_SILENCE = 0xD5


def _build_ulaw_encode() -> npt.NDArray[np.uint8]:
    pcm = np.arange(-32768, 32768, dtype=np.int32) >> 2
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    mag = np.minimum(np.abs(pcm), _ULAW_CLIP) + (_ULAW_BIAS >> 2)
    seg = np.searchsorted(_SEG_UEND, mag, side="left")
    uval = (np.minimum(seg, 7) << 4) | ((mag >> (np.minimum(seg, 7) + 1)) & 0xF)
    out = np.where(seg >= 8, 0x7F ^ mask, uval ^ mask)
    return out.astype(np.uint8)


def _build_alaw_encode() -> npt.NDArray[np.uint8]:
    pcm = np.arange(-32768, 32768, dtype=np.int32) >> 3
    mask = np.where(pcm >= 0, 0xD5, 0x55)
    mag = np.where(pcm >= 0, pcm, -pcm - 1)
    seg = np.searchsorted(_SEG_AEND, mag, side="left")
    s = np.minimum(seg, 7)
    quant = np.where(s < 2, mag >> 1, mag >> s) & 0xF
    aval = (s << 4) | quant
    out = np.where(seg >= 8, 0x7F ^ mask, aval ^ mask)
    return out.astype(np.uint8)


def _build_ulaw_decode() -> npt.NDArray[np.int16]:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    t = (((u & 0x0F) << 3) + _ULAW_BIAS) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, _ULAW_BIAS - t, t - _ULAW_BIAS).astype(np.int16)


def _build_alaw_decode() -> npt.NDArray[np.int16]:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    t = np.where(seg == 0, t + 8, t + 0x108)
    t = np.where(seg > 1, t << np.maximum(seg - 1, 0), t)
    return np.where(a & 0x80, t, -t).astype(np.int16)


_ULAW_ENC = _build_ulaw_encode()
_ALAW_ENC = _build_alaw_encode()
_ULAW_DEC = _build_ulaw_decode()
_ALAW_DEC = _build_alaw_decode()


def _as_index(pcm: npt.ArrayLike) -> npt.NDArray[np.intp]:
    return np.asarray(pcm, dtype=np.int16).astype(np.intp) + 32768


def ulaw_encode(pcm: npt.ArrayLike) -> bytes:
    """int16 samples → μ-law bytes."""
    return _ULAW_ENC[_as_index(pcm)].tobytes()


def alaw_encode(pcm: npt.ArrayLike) -> bytes:
    """int16 samples → A-law bytes."""
    return _ALAW_ENC[_as_index(pcm)].tobytes()


def ulaw_decode(data: _Bytes) -> npt.NDArray[np.int16]:
    """μ-law bytes → int16 samples."""
    return _ULAW_DEC[np.frombuffer(data, dtype=np.uint8)]


def alaw_decode(data: _Bytes) -> npt.NDArray[np.int16]:
    """A-law bytes → int16 samples."""
    return _ALAW_DEC[np.frombuffer(data, dtype=np.uint8)]
