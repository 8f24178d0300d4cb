"""The pacing harness the media benchmarks share (bench_media, bench_g722, bench_srtp).

Sessions get their every departure time-stamped at the send call; a prompt plays on each
and, after ``WARMUP``, packets/s per stream (least-squares slope, target 50), pooled
inter-departure gaps and CPU are taken over the measured window.
"""

from __future__ import annotations

import asyncio
import resource
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

RATE_TARGET = 50.0  # packets/s of a 20 ms ptime
WARMUP = 1.0


def cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def summarise(times: Sequence[Sequence[float]], t_from: float, t_to: float) -> dict[str, float]:
    rates, gaps = [], []
    for ts in times:
        arr = np.asarray([t for t in ts if t_from <= t <= t_to])
        if len(arr) < 2:
            rates.append(0.0)
            continue
        # Least-squares slope of packet count over time: edge stalls barely move it.
        rates.append(float(np.polyfit(arr - arr[0], np.arange(len(arr)), 1)[0]))
        gaps.append(np.diff(arr))
    allgaps = np.concatenate(gaps) * 1000 if gaps else np.zeros(1)
    r = np.asarray(rates)
    return {
        "pps_mean": float(r.mean()),
        "pps_worst": float(r[np.argmax(np.abs(r - RATE_TARGET))]),
        "drift_pct": float(abs(r.mean() - RATE_TARGET) / RATE_TARGET * 100),
        "healthy_streams": int((np.abs(r - RATE_TARGET) <= 0.5).sum()),
        "gap_p50_ms": float(np.percentile(allgaps, 50)),
        "gap_p99_ms": float(np.percentile(allgaps, 99)),
        "gap_max_ms": float(allgaps.max()),
    }


def stamp_sends(sessions: Sequence[Any]) -> list[list[float]]:
    """Wrap each session's frame send so it notes its departure time (before ``start``:
    the engine keeps the bound method it is given then); one list per session."""
    times: list[list[float]] = [[] for _ in sessions]
    for s, sent in zip(sessions, times, strict=True):
        orig = s._send_frame
        stamp = sent.append

        def timed(frame: int, orig: Callable[[int], Any] = orig, stamp: Any = stamp) -> Any:
            stamp(time.monotonic())
            return orig(frame)

        s._send_frame = timed
    return times


async def paced_pairs(engine: Any, sessions: Sequence[Any], times: Sequence[Sequence[float]],
                      calls: int, seconds: float, prompt: Any) -> tuple[dict[str, Any], list[Any]]:
    """Play ``prompt`` on every started session, measure ``seconds`` after ``WARMUP``, then
    close them and ``engine``: the pacing summary with CPU per call, and each one's stats."""
    plays = [asyncio.ensure_future(s.play(prompt)) for s in sessions]
    await asyncio.sleep(WARMUP)
    t0, c0 = time.monotonic(), cpu_seconds()
    await asyncio.sleep(seconds)
    t1, c1 = time.monotonic(), cpu_seconds()
    stats = [s.stats() for s in sessions]
    for s in sessions:
        s.flush()
        await s.close()
    await asyncio.gather(*plays)
    engine.close()
    out: dict[str, Any] = summarise(times, t0, t1)
    out.update(cpu_pct_per_call=(c1 - c0) / (t1 - t0) / calls * 100,
               cpu_pct_total=(c1 - c0) / (t1 - t0) * 100,
               received=sum(x.packets_received for x in stats))
    return out, stats
