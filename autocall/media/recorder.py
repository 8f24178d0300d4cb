"""Call recording: both directions in one stereo WAV, left = received, right = sent.

One file keeps the two sides aligned sample for sample (both are pulled by the same
pacing tick) so a listener hears the conversation as it happened and a test can find
our prompt on one channel and the callee's answer on the other. 8 kHz, 16-bit PCM,
written through soundfile in one-second blocks to keep writes few with many calls.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soundfile as sf

from autocall.files import private_file

__all__ = ["Recorder"]

Samples = npt.NDArray[np.int16]

# Calls answered in the same instant would all write their blocks in the same tick (250
# writes in one 20 ms frame hold up the pacing of every call): each new recorder's first
# block is shorter by a different number of frames, so the writes spread over the period.
_stagger = itertools.count()


class Recorder:
    """Appends (received, sent) frame pairs to a stereo WAV file."""

    def __init__(self, path: str | Path, rate: int = 8000, block_frames: int = 50) -> None:
        self.path = Path(path)
        try:
            private_file(self.path)  # 0600 in a 0700 folder: people's voices are personal data
            self._file = sf.SoundFile(
                str(self.path), "w", samplerate=rate, channels=2, subtype="PCM_16", format="WAV"
            )
        except (sf.LibsndfileError, OSError) as exc:
            raise OSError(
                f"cannot record to {self.path}: {exc}; check the folder is writable"
            ) from exc
        self._block = block_frames
        self._due = block_frames - next(_stagger) % block_frames
        self._buf = np.empty((0, 2), dtype=np.int16)  # the block, allocated once
        self._fill = 0  # samples in the block
        self._count = 0  # frames in the block
        self.frames = 0

    def write(self, received: Samples, sent: Samples) -> None:
        """Add one frame per side (equal lengths)."""
        n = len(received)
        end = self._fill + n
        if end > len(self._buf):  # the first frame, or longer frames than before
            self.flush()
            self._buf = np.empty((n * self._block, 2), dtype=np.int16)
            end = n
        self._buf[self._fill : end, 0] = received
        self._buf[self._fill : end, 1] = sent
        self._fill = end
        self._count += 1
        self.frames += 1
        if self._count >= self._due:
            self.flush()

    def flush(self) -> None:
        if not self._fill:
            return
        if not self._file.closed:
            self._file.write(self._buf[: self._fill])
        self._fill = self._count = 0
        self._due = self._block

    def close(self) -> None:
        if not self._file.closed:
            self.flush()
            self._file.close()

    @property
    def closed(self) -> bool:
        return self._file.closed
