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


# Decoding reads two bytes at a time through a 65,536-entry pair table; these pin
# every pair, odd lengths, unaligned and array inputs, and fresh output arrays.
ALL_PAIRS = np.arange(65536, dtype=np.uint16).view(np.uint8).tobytes()
DECODERS = [(g711.ulaw_decode, audioop.ulaw2lin), (g711.alaw_decode, audioop.alaw2lin)]


def test_decode_every_byte_pair_in_order() -> None:
    for ours, ref in DECODERS:
        assert ours(ALL_PAIRS).tobytes() == ref(ALL_PAIRS, 2)


def test_decode_odd_lengths_and_empty() -> None:
    for ours, ref in DECODERS:
        for n in (0, 1, 3, 159, 161, 257):
            data = ALL_BYTES[::-1][:n] if n <= 256 else ALL_BYTES + ALL_BYTES[:1]
            out = ours(data)
            assert out.dtype == np.int16 and out.shape == (n,)
            assert out.tobytes() == ref(data, 2)


def test_decode_accepts_unaligned_memoryview_bytearray_and_uint8_array() -> None:
    buf = b"\x00" + ALL_PAIRS[:161]
    for ours, ref in DECODERS:
        want = ref(buf[1:], 2)
        assert ours(memoryview(buf)[1:]).tobytes() == want
        assert ours(bytearray(buf[1:])).tobytes() == want
        assert ours(np.frombuffer(buf, np.uint8)[1:]).tobytes() == want
        assert ours(memoryview(buf)[1:161]).tobytes() == ref(buf[1:161], 2)


def test_decode_returns_fresh_writable_int16_arrays() -> None:
    # The jitter buffer keeps every decoded frame: outputs must never share memory.
    frame = ALL_PAIRS[:160]
    for ours, _ in DECODERS:
        a, b = ours(frame), ours(frame)
        assert a.dtype == np.int16 and a.shape == (160,) and a.flags.writeable
        assert not np.shares_memory(a, b)
        a[:] = 0
        assert np.array_equal(ours(frame), b)
