"""A baseline: the Asterisk ``AMD()`` algorithm as documented, with its default parameters.

Written from Asterisk's documentation of ``AMD()`` and its ``amd.conf.sample``
(parameters and their meaning, the AMDSTATUS / AMDCAUSE results); no Asterisk code.

Per 20 ms frame, a frame is *silence* when its mean absolute amplitude is below
``silence_threshold`` (256 on a 0–32767 scale), otherwise *voice*:

- silence accumulates; a run of voice resets it. Before any word: silence reaching
  ``initial_silence`` → MACHINE (INITIALSILENCE). After a greeting has begun: silence
  reaching ``after_greeting_silence`` → HUMAN (HUMAN).
- voice accumulates per utterance; after ``between_words_silence`` of silence the next
  voice of at least ``min_word_length`` counts as a new word. More than
  ``maximum_number_of_words`` words → MACHINE (MAXWORDS); one utterance reaching
  ``maximum_word_length`` → MACHINE (MAXWORDLENGTH); total voice in the greeting reaching
  ``greeting`` → MACHINE (LONGGREETING).
- no decision within ``total_analysis_time`` → NOTSURE (TOOLONG).

AMD() knows no fax tones and no beeps: a dialplan plays its message when AMD() returns.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FRAME = 160


@dataclass(frozen=True)
class AsteriskAmdConfig:
    initial_silence: int = 2500
    greeting: int = 1500
    after_greeting_silence: int = 800
    total_analysis_time: int = 5000
    min_word_length: int = 100
    between_words_silence: int = 50
    maximum_number_of_words: int = 2
    silence_threshold: int = 256
    maximum_word_length: int = 5000


@dataclass(frozen=True)
class AsteriskAmdResult:
    status: str  # MACHINE, HUMAN, NOTSURE
    cause: str
    at: float

    @property
    def answered_by(self) -> str:
        return {"MACHINE": "machine", "HUMAN": "human"}.get(self.status, "unknown")


def asterisk_amd(
    samples: npt.NDArray[np.int16], config: AsteriskAmdConfig | None = None
) -> AsteriskAmdResult:
    cfg = config or AsteriskAmdConfig()
    ms = 20
    silence = voice_total = voice_run = words = 0
    in_initial = True
    in_greeting = False
    in_silence = True
    n = samples.size // FRAME
    frames = samples[: n * FRAME].reshape(n, FRAME).astype(np.int64)
    mean_abs = np.mean(np.abs(frames), axis=1)
    t = 0
    for i in range(max(n, cfg.total_analysis_time // ms)):
        t += ms
        level = float(mean_abs[i]) if i < n else 0.0
        if level < cfg.silence_threshold:
            silence += ms
            if silence >= cfg.between_words_silence:
                in_silence = True
                voice_run = 0
            if in_initial and silence >= cfg.initial_silence:
                return AsteriskAmdResult("MACHINE", "INITIALSILENCE", t / 1000)
            if in_greeting and silence >= cfg.after_greeting_silence:
                return AsteriskAmdResult("HUMAN", "HUMAN", t / 1000)
        else:
            silence = 0
            voice_run += ms
            voice_total += ms
            if voice_run >= cfg.min_word_length and in_silence:
                words += 1
                in_silence = False
                in_initial = False
                in_greeting = True
            if words > cfg.maximum_number_of_words:
                return AsteriskAmdResult("MACHINE", "MAXWORDS", t / 1000)
            if voice_run >= cfg.maximum_word_length:
                return AsteriskAmdResult("MACHINE", "MAXWORDLENGTH", t / 1000)
            if in_greeting and voice_total >= cfg.greeting:
                return AsteriskAmdResult("MACHINE", "LONGGREETING", t / 1000)
        if t >= cfg.total_analysis_time:
            break
    return AsteriskAmdResult("NOTSURE", "TOOLONG", t / 1000)
