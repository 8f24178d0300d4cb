"""`AmdBank.feed` per loud call-frame after a machine decision: an older amd.py and this one.

    python bench/bench_amd_feed.py OLD_AMD_PY [--calls 250] [--frames 150] [--rounds 7]

``OLD_AMD_PY`` is a copy of the module to compare with (``git show main:autocall/audio/amd.py
> /tmp/amd_old.py``), imported under another name as ``bench/check_amd_bank.py`` does.

The load is that of ``bench/bench_calls.py --far-end echo --amd``, the worst case for AMD:
every call hears a speech-like prompt (band-limited noise with a syllable envelope, through
G.711 A-law), so almost every frame is loud enough to need its spectrum, and every call's
detector has decided ``machine`` (long greeting) and follows the greeting looking for a
beep (``follow_ms``: 30 s, longer than the bench). Each call starts at its own place in the
prompt. Both banks are brought to that state untimed, then fed one frame per call per
feed, all calls in one feed (what `AmdPool.run` does once per 20 ms). The rounds alternate
old and new (which one goes first alternates too), so a swing of the shared host's load
hits both alike; each round compares the events of the two banks (none are expected).

Prints CPU time (``process_time``) per call-frame in µs for each round, the median of
each, their ratio, and the load average before and after.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
from _old import load_old  # this folder: the scripts run from it

from autocall.audio import amd as new
from autocall.audio.g711 import alaw_decode, alaw_encode

FRAME = new.FRAME
RATE = new.AMD_RATE
Pcm = npt.NDArray[np.int16]


def _prompt(seconds: float) -> Pcm:
    """bench_calls.py's speech-like prompt, as the far end echoes it (A-law both ways)."""
    rng = np.random.default_rng(7)
    n = int(seconds * RATE)
    noise = np.convolve(rng.standard_normal(n), np.ones(4) / 4, mode="same")
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * np.arange(n) / RATE)
    pcm = (noise * env * 3000).astype(np.int16)
    return np.asarray(alaw_decode(alaw_encode(pcm)), dtype=np.int16)


def _audio(calls: int, frames: int) -> Pcm:
    """``frames`` frames for each call, each call from its own offset in a looped prompt."""
    prompt = _prompt(20.0)
    n = frames * FRAME
    reps = n // prompt.size + 2
    looped = np.tile(prompt, reps)
    step = prompt.size // max(1, calls)
    return np.stack([looped[c * step : c * step + n] for c in range(calls)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("old", type=Path)
    ap.add_argument("--calls", type=int, default=250)
    ap.add_argument("--frames", type=int, default=150, help="feeds (20 ms frames) per round")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=200, help="untimed frames: to the decision")
    args = ap.parse_args()
    old = load_old(args.old, "amd_old")
    total = args.warmup + args.rounds * args.frames
    if total * FRAME / RATE * 1000 >= new.AmdConfig().follow_ms:
        raise SystemExit("warmup + rounds * frames must stay within follow_ms (30 s)")
    audio = _audio(args.calls, total)
    banks = {"old": old.AmdBank(args.calls), "new": new.AmdBank(args.calls)}
    warm: dict[str, list[object]] = {}
    for name, bank in banks.items():
        events: list[object] = []
        for j in range(args.warmup):
            events += bank.feed(audio[:, j * FRAME : (j + 1) * FRAME])
        warm[name] = events
    if repr(warm["old"]) != repr(warm["new"]):
        raise SystemExit("old and new banks differ in the warm-up")
    machines = sum(1 for _, ev in warm["new"] if getattr(ev, "answered_by", None) == "machine")
    if machines != args.calls or len(warm["new"]) != args.calls:
        raise SystemExit(f"warm-up: {machines} machine decisions of {args.calls} calls")
    load0 = os.getloadavg()
    us: dict[str, list[float]] = {"old": [], "new": []}
    for r in range(args.rounds):
        first = args.warmup + r * args.frames
        got: dict[str, list[object]] = {}
        for name in ("old", "new") if r % 2 == 0 else ("new", "old"):
            bank = banks[name]
            out: list[object] = []
            t0 = time.process_time()
            for j in range(first, first + args.frames):
                out += bank.feed(audio[:, j * FRAME : (j + 1) * FRAME])
            us[name].append(1e6 * (time.process_time() - t0) / (args.frames * args.calls))
            got[name] = out
        if repr(got["old"]) != repr(got["new"]):
            raise SystemExit(f"round {r}: old and new banks report different events")
    load1 = os.getloadavg()
    for name in ("old", "new"):
        runs = ", ".join(f"{u:.2f}" for u in us[name])
        print(f"{name}: {statistics.median(us[name]):6.2f} µs per call-frame (median; {runs})")
    ratio = statistics.median(us["new"]) / statistics.median(us["old"])
    print(f"new / old: {ratio:.3f}; {args.calls} calls, {args.frames} feeds x {args.rounds} rounds")
    print(f"load average before {load0[0]:.2f} {load0[1]:.2f}, after {load1[0]:.2f} {load1[1]:.2f}")


if __name__ == "__main__":
    main()
