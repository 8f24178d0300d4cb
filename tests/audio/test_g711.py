"""G.711 must be bit-exact with the reference coder on every input."""

from __future__ import annotations

import sys
import warnings

import numpy as np

from autocall.audio import g711

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    if sys.version_info >= (3, 13):
        import audioop  # audioop-lts, from the test extra
    else:
        import audioop

ALL_PCM = np.arange(-32768, 32768, dtype=np.int16)
ALL_BYTES = bytes(range(256))


def test_ulaw_encode_all_inputs() -> None:
    assert g711.ulaw_encode(ALL_PCM) == audioop.lin2ulaw(ALL_PCM.tobytes(), 2)


def test_alaw_encode_all_inputs() -> None:
    assert g711.alaw_encode(ALL_PCM) == audioop.lin2alaw(ALL_PCM.tobytes(), 2)


def test_ulaw_decode_all_codes() -> None:
    assert g711.ulaw_decode(ALL_BYTES).tobytes() == audioop.ulaw2lin(ALL_BYTES, 2)


def test_alaw_decode_all_codes() -> None:
    assert g711.alaw_decode(ALL_BYTES).tobytes() == audioop.alaw2lin(ALL_BYTES, 2)


def test_silence_codes_decode_to_near_zero() -> None:
    assert abs(int(g711.ulaw_decode(bytes([g711.ULAW_SILENCE]))[0])) == 0
    assert abs(int(g711.alaw_decode(bytes([g711.ALAW_SILENCE]))[0])) <= 8
