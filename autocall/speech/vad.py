"""Voice activity detection: where the caller's speech starts and ends.

The recogniser only decodes audio while someone talks, and the dialogue needs to know
*when* the caller started (barge-in: cut the prompt) and stopped (end of the answer).
This is a plain energy + zero-crossing detector on 10 ms frames with an adaptive noise
floor and a hangover, which is what telephone answer detection has always been: cheap
(numpy over a frame), predictable, and tunable in milliseconds.

- A frame is *loud* when its energy is ``margin_db`` above the tracked noise floor and
  above ``min_level_dbfs``. The floor follows the quietest recent frames (drops at once,
  rises ``floor_rise_db_per_s``), so steady hum, hiss or a held tone stop counting as
  speech after a while.
- Speech *starts* after ``onset_ms`` of loud frames that look voiced on average (mean
  zero-crossing rate at most ``max_onset_zcr``): white noise bursts and clicks do not
  start speech, vowels do, even with line noise on top (which raises single frames).
- Speech *ends* after ``hangover_ms`` without loud frames, so the pauses inside a phrase
  (closures, breaths) do not split it.

Sans-I/O: :meth:`VoiceActivityDetector.feed` takes int16 samples of any length and
returns :class:`VadStart` / :class:`VadEnd` with sample offsets from the first sample fed.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["VadConfig", "VadEnd", "VadStart", "VoiceActivityDetector"]

_FULL_SCALE = 32768.0


@dataclass(frozen=True)
class VadConfig:
    """Detector thresholds; times in milliseconds, levels in dB relative to full scale."""

    frame_ms: int = 10
    margin_db: float = 9.0
    min_level_dbfs: float = -50.0
    max_onset_zcr: float = 0.35
    onset_ms: int = 60
    hangover_ms: int = 600
    floor_rise_db_per_s: float = 4.0

    def __post_init__(self) -> None:
        if self.frame_ms <= 0 or self.onset_ms < self.frame_ms or self.hangover_ms < self.frame_ms:
            raise ValueError("VadConfig: onset_ms and hangover_ms must be >= frame_ms > 0")


@dataclass(frozen=True)
class _Edge:
    sample: int


class VadStart(_Edge):
    """Speech began at ``sample`` (the first loud frame of the onset)."""


class VadEnd(_Edge):
    """Speech ended at ``sample`` (just after the last loud frame), seen ``hangover`` later."""


class VoiceActivityDetector:
    """Energy/zero-crossing VAD over fixed frames; keeps any partial frame for the next call."""

    def __init__(self, sample_rate: int = 8000, config: VadConfig | None = None) -> None:
        self.config = config or VadConfig()
        self.sample_rate = sample_rate
        self._frame = sample_rate * self.config.frame_ms // 1000
        self._onset_frames = self.config.onset_ms // self.config.frame_ms
        self._hangover_frames = self.config.hangover_ms // self.config.frame_ms
        self._rise = self.config.floor_rise_db_per_s * self.config.frame_ms / 1000
        self._pending: npt.NDArray[np.int16] = np.zeros(0, dtype=np.int16)
        self._consumed = 0
        self._floor: float | None = None
        self._in_speech = False
        self._run = 0
        self._run_zcr: deque[float] = deque(maxlen=self._onset_frames)
        self._quiet = 0
        self._last_loud_end = 0

    @property
    def in_speech(self) -> bool:
        return self._in_speech

    def feed(self, samples: npt.ArrayLike) -> list[VadStart | VadEnd]:
        """Analyse more audio; return the starts and ends it completes, in order."""
        x = np.asarray(samples)
        if x.dtype != np.int16:
            raise ValueError(f"VAD expects int16 samples, got {x.dtype}")
        buf = np.concatenate([self._pending, x.reshape(-1)]) if self._pending.size else x.ravel()
        n = buf.size // self._frame
        self._pending = buf[n * self._frame :].copy()
        if n == 0:
            return []
        frames = buf[: n * self._frame].reshape(n, self._frame).astype(np.float64)
        power = np.mean(frames * frames, axis=1) / (_FULL_SCALE * _FULL_SCALE)
        energy = 10.0 * np.log10(power + 1e-12)
        signs = np.signbit(frames)
        zcr = np.count_nonzero(signs[:, 1:] != signs[:, :-1], axis=1) / (self._frame - 1)
        events: list[VadStart | VadEnd] = []
        for e, z in zip(energy.tolist(), zcr.tolist(), strict=True):
            event = self._step(e, z)
            if event is not None:
                events.append(event)
            self._consumed += self._frame
        return events

    def _step(self, energy: float, zcr: float) -> VadStart | VadEnd | None:
        cfg = self.config
        floor = energy if self._floor is None else min(energy, self._floor + self._rise)
        self._floor = floor
        loud = energy >= max(floor + cfg.margin_db, cfg.min_level_dbfs)
        frame_end = self._consumed + self._frame
        if not self._in_speech:
            if loud:
                self._run += 1
                self._run_zcr.append(zcr)
            else:
                self._run = 0
                self._run_zcr.clear()
            voiced = sum(self._run_zcr) <= cfg.max_onset_zcr * self._onset_frames
            if self._run >= self._onset_frames and voiced:
                self._in_speech = True
                self._quiet = 0
                self._last_loud_end = frame_end
                return VadStart(frame_end - self._run * self._frame)
            return None
        if loud:
            self._quiet = 0
            self._last_loud_end = frame_end
            return None
        self._quiet += 1
        if self._quiet >= self._hangover_frames:
            self._in_speech = False
            self._run = 0
            self._run_zcr.clear()
            return VadEnd(self._last_loud_end)
        return None
