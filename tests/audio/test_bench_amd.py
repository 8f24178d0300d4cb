"""bench/bench_amd.py drives AmdPool through the tap a MediaSession offers: when that tap
changes, the bench must change with it (it broke once, unnoticed, when AMD moved from
the playout to the RTP-ordered signal)."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_amd.py"


def test_the_pool_tick_bench_feeds_the_pool_every_tick() -> None:
    spec = importlib.util.spec_from_file_location("bench_amd", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    costs = asyncio.run(bench._pool_ticks(3, 0.1))
    assert len(costs) == 5 and all(c > 0 for c in costs)
