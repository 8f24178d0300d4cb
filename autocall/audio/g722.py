"""ITU-T G.722 wideband (16 kHz, 64 kbit/s) through the ``G722`` package (libg722).

G.722 is sub-band ADPCM: encoder and decoder carry state from one frame to the next,
so each direction of a call needs its own `Encoder` / `Decoder`, fed in order. A 20 ms
frame is 320 samples at 16 kHz and 160 bytes at 64 kbit/s (ITU-T G.722 codes 16 000
samples/s in 64 kbit/s: one byte per pair of samples). On the wire its RTP clock is
8000 Hz although the audio is 16 kHz: RFC 3551 §4.5.2 keeps the value of an early
error, so timestamps step 160 per frame.

`Decimator` brings 16 kHz audio to 8 kHz for the parts that work in the telephone band
(the DTMF detector bank, answering-machine detection): a linear-phase low-pass FIR with
state, so one stream's packets in order make one continuous 8 kHz signal with exactly
half as many samples, and timestamps that still count in the 8000 Hz RTP clock.
"""

from __future__ import annotations

from array import array
from typing import Protocol

import numpy as np
import numpy.typing as npt

__all__ = ["RATE", "BIT_RATE", "Decimator", "Decoder", "Encoder", "Interpolator"]

RATE = 16000
"""Audio samples per second (ITU-T G.722: 50-7000 Hz audio sampled at 16 kHz)."""
BIT_RATE = 64000
"""Mode 1, the rate RTP payload type 9 carries (RFC 3551 §4.5.2)."""

Samples = npt.NDArray[np.int16]


class _Codec(Protocol):
    """What a ``G722.G722`` object offers (the package ships no type information)."""

    def encode(self, pcm: Samples, /) -> bytes: ...

    def decode(self, data: bytes, /) -> Samples | array[int]: ...


def _codec() -> _Codec:
    try:
        import G722
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise ImportError(
            "G.722 needs the G722 package: pip install 'G722[numpy]' (scripts/setup.sh "
            "installs it), or leave g722 out of AUTOCALL_CODECS"
        ) from exc
    codec: _Codec = G722.G722(RATE, BIT_RATE)
    return codec


class Encoder:
    """16 kHz int16 samples in, G.722 bytes out (half as many bytes as samples)."""

    __slots__ = ("_state",)

    def __init__(self) -> None:
        self._state = _codec()

    def encode(self, pcm: Samples) -> bytes:
        return self._state.encode(np.ascontiguousarray(pcm, dtype=np.int16))


class Decoder:
    """G.722 bytes in, 16 kHz int16 samples out (a new array, two per byte)."""

    __slots__ = ("_state",)

    def __init__(self) -> None:
        self._state = _codec()

    def decode(self, payload: bytes) -> Samples:
        out = self._state.decode(payload)
        # G722-numpy returns an ndarray; the plain build an array('h'): both are buffers.
        return (
            np.frombuffer(out, dtype=np.int16).copy()
            if not isinstance(out, np.ndarray)
            else out.astype(np.int16, copy=False)
        )


def _halfband(taps: int = 65) -> npt.NDArray[np.float64]:
    """Half-band low-pass at 16 kHz (windowed sinc, Blackman window, cut-off 4 kHz): flat
    (±0.001 dB) through the DTMF band (697-1633 Hz, ITU-T Q.23) and to 3 kHz, -6 dB at
    4 kHz, -28 dB at 4.4 kHz, -55 dB at 4.6 kHz, -75 dB at 5 kHz. What folds back at
    8 kHz lands above 3.4 kHz, far from the DTMF band. Every other tap is zero, so the
    decimator computes half of them at half the rate. ``taps`` is 4k+1: the delay, 32
    samples at 16 kHz, is a whole 16 at 8 kHz."""
    n = np.arange(taps) - (taps - 1) / 2
    h = np.sinc(n / 2) * np.blackman(taps)
    return h / h.sum()


_H = _halfband()
_MID = (len(_H) - 1) // 2
_H_ODD = _H[1::2].copy()  # the non-zero taps besides the centre
_HISTORY = len(_H) - 1


class Decimator:
    """16 kHz → 8 kHz for one stream: ``process`` takes an even number of samples and
    returns exactly half as many, continuing the filter state from the previous call."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        # The last _HISTORY input samples, then room for one packet: no allocation per
        # call while the packet size stays the same (a quarter of the cost at 20 ms).
        self._buf: npt.NDArray[np.float64] = np.zeros(_HISTORY + 320, dtype=np.float64)

    def process(self, pcm: Samples) -> Samples:
        n = len(pcm)
        buf = self._buf
        if len(buf) == _HISTORY + n:
            buf[:_HISTORY] = buf[n:]
        else:  # another packet size: a buffer for it, with the history carried over
            grown = np.zeros(_HISTORY + n, dtype=np.float64)
            grown[:_HISTORY] = buf[len(buf) - _HISTORY :]
            buf = self._buf = grown
        buf[_HISTORY:] = pcm
        half = n // 2
        # Output m is input 2m + _HISTORY filtered: the odd taps meet the odd samples,
        # the centre tap the even ones.
        y = np.convolve(buf[1::2], _H_ODD, mode="valid")[:half]
        y += _H[_MID] * buf[_MID : _MID + 2 * half : 2]
        np.rint(y, out=y)
        np.clip(y, -32768, 32767, out=y)
        return y.astype(np.int16)


class Interpolator:
    """8 kHz → 16 kHz for one stream (a G.711 codec on a call that started wideband):
    zeros between the samples, then the same low-pass, so ``process`` returns exactly
    twice as many samples and the 8 kHz band comes out at its level."""

    __slots__ = ("_tail",)

    def __init__(self) -> None:
        self._tail = np.zeros(_HISTORY, dtype=np.float64)

    def process(self, pcm: Samples) -> Samples:
        up = np.zeros(2 * len(pcm), dtype=np.float64)
        up[::2] = pcm
        x = np.concatenate((self._tail, up))
        self._tail = x[len(x) - len(self._tail) :]
        y = 2.0 * np.convolve(x, _H, mode="valid")
        return np.clip(np.round(y), -32768, 32767).astype(np.int16)
