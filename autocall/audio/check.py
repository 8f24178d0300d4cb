"""One check of prompt audio, used the same way at validate time, before dialing and in a call.

A prompt file that is empty, corrupt, text, over the upload limit, silent or silent in the
telephone band would play as silence: the callee hears nothing and the call still looks
completed. ``prompts validate`` reports such a file at its node, ``call --play`` refuses
it before dialing, and the call-time loader raises the same :class:`AudioFileError`, so
the runner ends the call with an error instead of playing nothing. The three agree
because they all call :func:`prompt_pcm`.

The rules are the PBX upload rules of :mod:`autocall.audio.upload` (WAV or MP3, at most
5 MB, not truncated) followed by decoding and the converter's silence checks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from autocall.audio import convert
from autocall.audio.upload import AudioFileError

__all__ = ["AudioFileError", "PROMPT_RATE", "problem", "prompt_pcm"]

PROMPT_RATE = 8000
"""Prompts are played at the G.711 rate (ITU-T G.711: 8000 samples/s)."""


def prompt_pcm(path: str | Path, rate: int = PROMPT_RATE) -> npt.NDArray[np.int16]:
    """``path`` as loudness-normalised int16 mono at ``rate``; AudioFileError if it can't play."""
    path = Path(path)
    samples, rate_in = convert.read_audio(path, upload_rules=True)
    prepared = convert.prepare(samples, rate_in, rate, name=path)
    return np.clip(np.round(prepared * 32768.0), -32768, 32767).astype(np.int16)


def problem(path: str | Path) -> AudioFileError | None:
    """Why ``path`` cannot be played as a prompt, or None if it can."""
    try:
        prompt_pcm(path)
    except AudioFileError as exc:
        return exc
    except OSError as exc:  # unreadable: permissions, a folder, I/O error
        return AudioFileError(path, "missing", f"cannot read the file ({exc.strerror})",
                              "Check the path and its permissions.")
    return None
