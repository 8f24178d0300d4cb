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

``--legacy`` builds ``AmdPool(size=n)`` for the per-tick schedule: run it with
``PYTHONPATH`` pointing at an older checkout to time the code before this change.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
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
) -> dict[str, object]:
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
    return {
        "us_per_call_frame": round(1e6 * cpu / max(1, pool.frames), 2),
        "passes_per_s": round(pool.batches / seconds, 1),
        "frames": pool.frames,
        "events": finished,
    }


def measure(calls: int, seconds: float, phases: int, legacy: bool) -> dict[str, object]:
    old = asyncio.run(_drive(calls, seconds, phases, True, legacy))
    new = asyncio.run(_drive(calls, seconds, phases, False, legacy))
    if old["events"] != new["events"]:
        raise SystemExit(f"{calls} calls: the two schedules reported different events")
    out: dict[str, object] = {"calls": calls}
    for name, r in (("per_tick", old), ("per_period", new)):
        out[name] = {k: v for k, v in r.items() if k != "events"}
    out["calls_decided"] = sum(1 for ev in new["events"] if ev)  # type: ignore[union-attr]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, nargs="+", default=[100, 500])
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--phases", type=int, default=8)
    ap.add_argument("--legacy", action="store_true", help="AmdPool without per_tick (old code)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.legacy:
        rows = []
        for n in args.calls:
            r = asyncio.run(_drive(n, args.seconds, args.phases, True, True))
            rows.append({"calls": n, "per_tick": {k: v for k, v in r.items() if k != "events"}})
    else:
        rows = [measure(n, args.seconds, args.phases, args.legacy) for n in args.calls]
    load = os.getloadavg()
    if args.json:
        print(json.dumps({"rows": rows, "load": load}))
        return
    for r in rows:
        for name in ("per_tick", "per_period"):
            if name in r:
                v = r[name]
                assert isinstance(v, dict)
                print(
                    f"{r['calls']:4d} calls {name:10s}: {v['us_per_call_frame']:7.2f} µs per"
                    f" call-frame, {v['passes_per_s']:6.1f} passes/s, {v['frames']} frames"
                )
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
