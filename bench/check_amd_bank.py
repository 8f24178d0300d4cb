"""Check that `AmdBank` reports what an older `autocall/audio/amd.py` reports, bit for bit.

    python bench/check_amd_bank.py OLD_AMD_PY [--seeds 11 12 13 21 22] [--per-family 40]

``OLD_AMD_PY`` is a copy of the module to compare with (``git show main:autocall/audio/amd.py
> /tmp/amd_old.py``), imported under another name. For each seed's corpus clips it
compares, by ``repr`` (so every float to the last bit, and its type):

1. `classify` and the streamed events of `AmdDetector` per clip;
2. one bank over all clips at once, fed one 20 ms frame per call at a time;
3. the same with uneven feeds: each feed gives a random subset of the calls in random
   order, each with its next 1 to 50 frames, and some calls restarted with their own
   config (what `AmdPool` does with a campaign's parameters);
4. every call-frame of the vectorised step against `_Channel.step` run beside it on a
   copy of the call's state: all fields, after every frame (not only the events).

Exits non-zero at the first difference, naming it.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Protocol

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "audio"))

import amd_corpus  # noqa: E402
from _old import load_old  # noqa: E402  (this folder: the scripts run from it)

from autocall.audio import amd as new  # noqa: E402

FRAME = new.FRAME
Pcm = npt.NDArray[np.int16]


def _same(what: str, a: object, b: object) -> None:
    if repr(a) != repr(b):
        raise SystemExit(f"DIFFERENT {what}:\n old {a!r}\n new {b!r}")


def _stream(mod: ModuleType, x: Pcm) -> list[object]:
    det = mod.AmdDetector()
    out: list[object] = []
    for i in range(0, x.size, 7 * FRAME + 13):
        out += det.feed(x[i : i + 7 * FRAME + 13])
    return out


def _padded(clips: list[Pcm]) -> Pcm:
    """All clips as rows, followed by enough silence for every detector to finish."""
    n = (max(c.size for c in clips) // FRAME + 1600) * FRAME
    audio = np.zeros((len(clips), n), dtype=np.int16)
    for i, c in enumerate(clips):
        audio[i, : c.size] = c
    return audio


def _bank_even(mod: ModuleType, audio: Pcm) -> list[object]:
    bank = mod.AmdBank(audio.shape[0])
    out: list[object] = []
    for s in range(0, audio.shape[1], FRAME):
        out.append(bank.feed(audio[:, s : s + FRAME]))
        if all(bank.done(c) for c in range(audio.shape[0])):
            break
    return out


class _Bank(Protocol):
    def feed(self, frames: Pcm, channels: list[int]) -> Sequence[object]: ...

    def done(self, channel: int) -> bool: ...


def _restarted(mod: ModuleType, bank: new.AmdBank) -> new.AmdBank:
    """``bank`` with every fifth call restarted with its own parameters (as `AmdPool`
    does for a campaign's), ``mod`` the module whose `AmdConfig` it takes."""
    other = mod.AmdConfig(
        greeting_ms=2500, end_silence_ms=1000, tone_purity=0.9, initial_silence_ms=3000
    )
    for c in range(0, bank.channels, 5):
        bank.reset(c, other)
    return bank


def _bank_uneven(bank: _Bank, audio: Pcm, seed: int) -> list[object]:
    """Uneven feeds through ``bank``."""
    rng = np.random.default_rng(seed)
    n = audio.shape[0]
    cursor = [0] * n
    out: list[object] = []
    while True:
        todo = [c for c in range(n) if cursor[c] < audio.shape[1] and not bank.done(c)]
        if not todo:
            return out
        k = int(rng.choice([1, 1, 2, 3, 7, 13, 50]))
        pick = [c for c in rng.permutation(todo).tolist() if rng.random() < 0.8]
        pick = [c for c in pick if cursor[c] + k * FRAME <= audio.shape[1]] or todo[:1]
        if cursor[pick[0]] + k * FRAME > audio.shape[1]:
            k = 1
        frames = np.stack([audio[c, cursor[c] : cursor[c] + k * FRAME] for c in pick])
        for c in pick:
            cursor[c] += k * FRAME
        out.append(bank.feed(frames, pick))


class _Shadow(new.AmdBank):
    """A bank whose every vectorised frame is checked against `_Channel.step`."""

    checked = 0

    def _step(
        self,
        pos: npt.NDArray[np.intp],
        idx: npt.NDArray[np.intp],
        level: npt.NDArray[np.float64],
        purity: npt.NDArray[np.float64],
        f1: npt.NDArray[np.float64],
        f2: npt.NDArray[np.float64],
        out: list[tuple[int, int, new.AmdEvent]],
    ) -> None:
        before = [copy.deepcopy(self._load(int(c))) for c in idx]
        had = len(out)
        super()._step(pos, idx, level, purity, f1, f2, out)
        got: dict[int, list[new.AmdEvent]] = {}
        for _, c, ev in out[had:]:
            got.setdefault(c, []).append(ev)
        for s, c in enumerate(idx.tolist()):
            ref = before[s]
            events = ref.step(float(level[s]), float(purity[s]), float(f1[s]), float(f2[s]))
            _same(f"channel {c} frame {ref.frame} state", _fields(ref), _fields(self._load(c)))
            _same(f"channel {c} frame {ref.frame} events", events, got.get(c, []))
            _Shadow.checked += 1


def _fields(ch: new._Channel) -> tuple[object, ...]:
    return (
        ch.frame,
        ch.stage,
        ch.floor,
        ch.speaker,
        ch.run_sound,
        ch.run_peak,
        ch.quiet,
        ch.last_sound_end,
        ch.greeting_start,
        ch.watch_until,
        ch.beep_end,
        ch.tone,
    )


def _shadow(audio: Pcm, seed: int) -> int:
    """Mode 4: the uneven feeds through `_Shadow`, vectorised however few calls."""
    keep = new._VECTOR_MIN
    new._VECTOR_MIN = 0
    try:
        _Shadow.checked = 0
        _bank_uneven(_restarted(new, _Shadow(audio.shape[0])), audio, seed)
        return _Shadow.checked
    finally:
        new._VECTOR_MIN = keep


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("old", type=Path)
    ap.add_argument("--seeds", type=int, nargs="+", default=[11, 12, 13, 21, 22])
    ap.add_argument("--per-family", type=int, default=40)
    args = ap.parse_args()
    old = load_old(args.old, "amd_old")
    total = 0
    for seed in args.seeds:
        t0 = time.perf_counter()
        clips = [c.samples for c in amd_corpus.corpus(seed, args.per_family)]
        for i, x in enumerate(clips):
            _same(f"seed {seed} clip {i} classify", old.classify(x), new.classify(x))
            _same(f"seed {seed} clip {i} stream", _stream(old, x), _stream(new, x))
        audio = _padded(clips)
        _same(f"seed {seed} bank, one frame a feed", _bank_even(old, audio), _bank_even(new, audio))
        n = audio.shape[0]
        a = _bank_uneven(_restarted(old, old.AmdBank(n)), audio, seed)
        b = _bank_uneven(_restarted(new, new.AmdBank(n)), audio, seed)
        _same(f"seed {seed} bank, uneven feeds", a, b)
        events = sum(len(f) for f in b if isinstance(f, list))
        checked = _shadow(audio, seed)
        total += len(clips)
        print(
            f"seed {seed}: {len(clips)} clips identical (classify, stream, bank even and"
            f" uneven: {len(b)} feeds, {events} events; {checked} call-frames' state checked)"
            f" in {time.perf_counter() - t0:.0f} s",
            flush=True,
        )
    print(f"all {total} clips identical")


if __name__ == "__main__":
    main()
