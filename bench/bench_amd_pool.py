"""AmdPool cost per call-frame: one pass per pacing tick against one per frame period.

    python bench/bench_amd_pool.py [--calls 100 500] [--seconds 4] [--json]

Drives `autocall.telephony.answer.AmdPool` the way a `MediaEngine` does: the calls are
spread over the ``--phases`` slots of the pacing clock (``PacingClock(phases=8)``), each
slot's calls hand over one 20 ms frame of received signal in their tick, and the loop
runs between two slots. A call whose detector is done leaves (as a live call's listener
does) and a new call takes its place, so the number of calls analysed stays the same.

Prints, for each number of calls, the CPU time per analysed call-frame (µs) and the
passes per second of audio, for the old schedule (``per_tick``: a pass after every tick,
so eight passes per 20 ms, each over an eighth of the calls) and the new one (one pass
per frame period over all calls), measured in the same run, with the load average (CPU
time, not wall time, but a loaded host still slows both). Both schedules must report
the same events for every call: the bench checks that and fails if they differ.

``--baseline-src DIR`` also times the per-tick schedule of an older checkout (``DIR``
holds its ``autocall`` package, e.g. ``git worktree add /tmp/old main~3``) in a child
process, between the two runs of this one, so all three figures share the same host
load; ``--legacy`` is what that child runs (``AmdPool(size=n)``, the old constructor).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "audio"))

import amd_corpus  # noqa: E402

from autocall.audio.amd import FRAME, AmdEvent  # noqa: E402
from autocall.telephony.answer import AmdListener, AmdPool  # noqa: E402

Pcm = npt.NDArray[np.int16]


class _Media:
    """What AmdPool taps on a MediaSession: the received signal in RTP order."""

    def __init__(self) -> None:
        self.on_signal: list[Callable[[Pcm], None]] = []


async def _drive(
    calls: int, seconds: float, phases: int, per_tick: bool, legacy: bool
) -> tuple[dict[str, float], list[list[AmdEvent]]]:
    clips = [c.samples for c in amd_corpus.corpus(2, 4)]
    pool = AmdPool(size=calls) if legacy else AmdPool(size=calls, per_tick=per_tick)
    medias = [_Media() for _ in range(calls)]
    seats: list[AmdListener] = [pool.listen(m) for m in medias]
    started = [0] * calls  # the period at which each seat's current call was answered
    serial = list(range(calls))  # which clip each seat's current call plays
    finished: list[list[AmdEvent]] = []
    periods = int(seconds / 0.02)
    cpu = 0.0
    for k in range(periods):
        t0 = time.process_time()
        for phase in range(phases):
            for i in range(phase, calls, phases):
                m = medias[i]
                if not m.on_signal:  # done and left: the next call on this seat
                    finished.append(seats[i].events)
                    serial[i] += calls
                    started[i] = k
                    seats[i] = pool.listen(m)
                clip = clips[serial[i] % len(clips)]
                j = (k - started[i]) * FRAME
                frame = clip[j : j + FRAME] if j + FRAME <= clip.size else np.zeros(FRAME, np.int16)
                for tap in m.on_signal:
                    tap(frame)
            await asyncio.sleep(0)  # the loop between two phase slots
        await asyncio.sleep(0)  # the new schedule's pass of the period ran; its close() too
        cpu += time.process_time() - t0
    await asyncio.sleep(0.03)  # a pass still waiting on its timer
    for s in seats:
        finished.append(s.events)
        s.close()
    stats = {
        "us_per_call_frame": round(1e6 * cpu / max(1, pool.frames), 2),
        "passes_per_s": round(pool.batches / seconds, 1),
        "frames": pool.frames,
    }
    return stats, finished


def measure(calls: int, seconds: float, phases: int, legacy: bool) -> dict[str, object]:
    old, old_events = asyncio.run(_drive(calls, seconds, phases, True, legacy))
    new, new_events = asyncio.run(_drive(calls, seconds, phases, False, legacy))
    if old_events != new_events:
        raise SystemExit(f"{calls} calls: the two schedules reported different events")
    return {"calls": calls, "per_tick": old, "per_period": new, "calls_seen": len(new_events)}


def _median(runs: list[dict[str, object]]) -> dict[str, object]:
    """The runs of one number of calls, each schedule's figures the median over runs."""
    out = dict(runs[0])
    for name in ("baseline", "per_tick", "per_period"):
        if name not in out:
            continue
        stats = [r[name] for r in runs]
        first = stats[0]
        assert isinstance(first, dict)
        merged = dict(first)
        merged["us_per_call_frame"] = float(
            np.median([s["us_per_call_frame"] for s in stats if isinstance(s, dict)])
        )
        merged["us_runs"] = [s["us_per_call_frame"] for s in stats if isinstance(s, dict)]
        out[name] = merged
    return out


def _baseline(src: Path, calls: int, seconds: float, phases: int) -> object:
    """The per-tick pool of the checkout at ``src``, timed in a child process."""
    cmd = [sys.executable, __file__, "--legacy", "--json", "--calls", str(calls)]
    cmd += ["--seconds", str(seconds), "--phases", str(phases)]
    env = dict(os.environ, PYTHONPATH=str(src.resolve()))
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"baseline at {src} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout)["rows"][0]["per_tick"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, nargs="+", default=[100, 500])
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--phases", type=int, default=8)
    ap.add_argument(
        "--repeat", type=int, default=3, help="runs of each, interleaved; the median is shown"
    )
    ap.add_argument("--legacy", action="store_true", help="AmdPool without per_tick (old code)")
    ap.add_argument("--baseline-src", type=Path, help="an older checkout to time as well")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.baseline_src is not None and not (args.baseline_src / "autocall").is_dir():
        raise SystemExit(f"--baseline-src {args.baseline_src}: no autocall package there")
    if args.legacy:
        rows = []
        for n in args.calls:
            stats, _ = asyncio.run(_drive(n, args.seconds, args.phases, True, True))
            rows.append({"calls": n, "per_tick": stats})
    else:
        rows = []
        for n in args.calls:
            runs: list[dict[str, object]] = []
            for _ in range(args.repeat):  # interleaved: a load swing hits all three alike
                row = measure(n, args.seconds, args.phases, args.legacy)
                if args.baseline_src is not None:
                    row["baseline"] = _baseline(args.baseline_src, n, args.seconds, args.phases)
                runs.append(row)
            rows.append(_median(runs))
    load = os.getloadavg()
    if args.json:
        print(json.dumps({"rows": rows, "load": load}))
        return
    for r in rows:
        for name in ("baseline", "per_tick", "per_period"):
            if name in r:
                v = r[name]
                assert isinstance(v, dict)
                print(
                    f"{r['calls']:4d} calls {name:10s}: {v['us_per_call_frame']:7.2f} µs per"
                    f" call-frame (median; runs {v.get('us_runs')}),"
                    f" {v['passes_per_s']:6.1f} passes/s, {v['frames']} frames"
                )
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
