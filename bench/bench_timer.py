"""How precisely this machine wakes a process: the floor under every pacing figure.

A packet can leave no more precisely than the process wakes up. This measures, on an
otherwise idle process, how late a 20 ms periodic wake-up lands when asked of asyncio
(`loop.call_at`, what `autocall.media.MediaEngine` uses), of ``time.sleep``, and how
often a process that never sleeps (a spin loop, the named baseline: no wake-up at all)
still loses the CPU for more than 1 ms — on a virtual machine that is the host taking
the virtual CPU away, which no pacing code can undo.

    python bench/bench_timer.py             # 10 s each
    python bench/bench_timer.py --seconds 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

import numpy as np

PERIOD = 0.020


def _asyncio_lateness(seconds: float) -> np.ndarray:
    async def run() -> list[float]:
        loop = asyncio.get_running_loop()
        late: list[float] = []
        done = loop.create_future()
        t0 = loop.time() + PERIOD
        n = int(seconds / PERIOD)

        def tick(k: int) -> None:
            late.append(loop.time() - (t0 + k * PERIOD))
            if k + 1 < n:
                loop.call_at(t0 + (k + 1) * PERIOD, tick, k + 1)
            else:
                done.set_result(None)

        loop.call_at(t0, tick, 0)
        await done
        return late

    return np.asarray(asyncio.run(run())) * 1e3


def _sleep_lateness(seconds: float) -> np.ndarray:
    late = []
    due = time.monotonic()
    for _ in range(int(seconds / PERIOD)):
        due += PERIOD
        time.sleep(max(0.0, due - time.monotonic()))
        late.append(time.monotonic() - due)
    return np.asarray(late) * 1e3


def _spin_interruptions(seconds: float) -> np.ndarray:
    """Gaps over 0.1 ms between two clock reads of a loop that never sleeps."""
    gaps = []
    last = time.monotonic()
    end = last + seconds
    while last < end:
        now = time.monotonic()
        if now - last > 1e-4:
            gaps.append(now - last)
        last = now
    return np.asarray(gaps) * 1e3


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    s = args.seconds
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    spin = _spin_interruptions(s)
    over1 = float((spin > 1).sum()) / s
    print(f"spin loop (baseline, never sleeps): {len(spin) / s:.0f} interruptions/s over 0.1 ms, "
          f"{over1:.1f}/s over 1 ms, longest {spin.max() if len(spin) else 0:.2f} ms")
    rows = {"asyncio call_at": _asyncio_lateness(s), "time.sleep": _sleep_lateness(s)}
    for name, late in rows.items():
        p50, p99, worst = np.percentile(late, [50, 99, 100])
        # a stream paced by these wake-ups: gap = period + lateness difference
        gaps = PERIOD * 1e3 + np.diff(late)
        print(f"{name:>16}: wake-up lateness p50 {p50:.2f} p99 {p99:.2f} max {worst:.2f} ms; "
              f"one stream's gaps p99 {np.percentile(gaps, 99):.2f} ms; "
              f"share of wake-ups over 2 ms late {float((late > 2).mean()) * 100:.2f} %")
    base = float((spin > 2).sum()) / s * PERIOD * 100
    print(f"ratio: wake-ups over 2 ms late vs the spin loop losing the CPU over 2 ms per 20 ms "
          f"window: asyncio {float((rows['asyncio call_at'] > 2).mean()) * 100:.2f} % vs "
          f"{base:.2f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
