"""One G.711 encoding of a prompt for every call that plays it (issue 20, memory)."""

from __future__ import annotations

import gc

import numpy as np

from autocall.audio import g711
from autocall.media import session as media_session


def test_the_same_prompt_is_encoded_once_for_every_call() -> None:
    pcm = (np.sin(np.arange(8000) / 5) * 8000).astype(np.int16)
    first = media_session._encoded(pcm, media_session.PCMU)
    second = media_session._encoded(pcm, media_session.PCMU)
    assert first is second
    assert first == g711.ulaw_encode(pcm)
    assert media_session._encoded(pcm, media_session.PCMA) == g711.alaw_encode(pcm)


def test_a_prompt_changed_in_place_is_encoded_again() -> None:
    pcm = np.zeros(1600, dtype=np.int16)
    before = media_session._encoded(pcm, media_session.PCMU)
    pcm[:] = 12000
    after = media_session._encoded(pcm, media_session.PCMU)
    assert after != before
    assert after == g711.ulaw_encode(pcm)


def test_the_encoding_goes_with_its_prompt() -> None:
    pcm = np.ones(800, dtype=np.int16)
    key = id(pcm)
    media_session._encoded(pcm, media_session.PCMU)
    assert (key, media_session.PCMU) in media_session._shared_encodings
    del pcm
    gc.collect()
    assert (key, media_session.PCMU) not in media_session._shared_encodings
