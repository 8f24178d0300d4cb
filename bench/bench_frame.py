"""CPU per call-frame of the media path, this tree against a baseline tree, same run.

    python bench/bench_frame.py                        # 200 two-way pairs, vs main
    python bench/bench_frame.py --pairs 250 --frames 300 --rounds 5 --baseline main

A *call-frame* is one pacing tick of one call: it sends one 20 ms G.711 packet (from
a playing prompt) and receives one, which goes through the address lock, source
validation, reception statistics, the jitter buffer, the reorder buffer and the shared
in-band DTMF detector banks: the work of one call of ``bench_calls.py --far-end echo``.
Sessions are paired on loopback UDP (A's remote is B and back), so both directions
are real packets through the kernel, with the engine's own receive loop.

The clock is driven, not waited for: the event loop's time is replaced by a counter
that jumps to the engine's next deadline, and `MediaEngine._fire` runs at once. So the
figure is the CPU the media path needs per call-frame (process CPU time over sessions ×
frames, from the quietest slice of 10 frames), free of sleeping, of the load's
scheduling delays and of other processes' timing (their CPU contention still shows:
compare the rows of one run).

The baseline is the given git revision's ``autocall`` package extracted into a
temporary directory; each variant runs in its own process, rounds alternate between
them and each keeps its best round; the median of the rounds' paired ratios is printed
too (the load drifts less within a pair than across the run). It prints µs per
call-frame and RSS per session (the growth from before the sessions open to after the
measured frames).

Where a call-frame's time went (py-spy 0.4.3, ``bench_calls.py --calls 500 --far-end
echo --skip-baseline --duration 10`` on the 2-core machine, load average 1.0-1.5,
worker process only, before this branch; percentages of its CPU samples):

==========================================  =======  ==========================
step                                        share    what
==========================================  =======  ==========================
sendto (in ``MediaSession._sendto``)         17 %    system call, one per packet
recvmsg + epoll (``MediaEngine._receive``)   17 %    system calls, one per packet
reorder buffer push/pop (detection order)     9 %    Python, per packet
jitter buffer push/pop/adapt                 12 %    Python, per packet
``_on_datagram`` header + lock + source       6 %    Python, per packet
G.711 decode (``ulaw_decode``)                4 %    numpy per packet (160 B)
``_feed_signal`` + bank push                  5 %    Python + numpy slice copy
reception statistics + unwrappers             4 %    Python, per packet
``_send_frame`` + packet + payload slice      5 %    Python, per packet
engine dispatch (``_run``, ``due``)           4 %    Python, per call per tick
DTMF bank analysis (``DetectorPool.run``)     4 %    numpy, batched over 64 calls
SIP, asyncio and the rest                     8 %
==========================================  =======  ==========================

So a third is the two system calls per call-frame (one sendto, one recvmsg: they cannot
be batched across calls, each call has its own socket and port) and the rest is Python
spread thin over about twenty steps; G.711 work is small (a prompt is encoded once,
the decode of 160 bytes is one table lookup), so batching it across calls would save
about 1 µs of the ~16. What this branch changed (issue 20), measured with this bench,
300 sessions, against the branch point in the same run, 2-core machine shared with
other work:

- load 12.7-13.2: median paired ratio 0.89, best rounds 33.4 → 26.5 µs (0.79);
- load 5.1-6.5: median paired ratio 0.94, best rounds 16.0 → 15.5 µs (0.97);
- RSS per session 93-109 → 39-51 KiB (0.38-0.48): the prompt's G.711 encoding is
  shared by every call that plays it, and the DTMF banks' burst room is neither
  copied nor resident until bursts use it.

The cost is not halved: the remaining Python steps each cost a few hundred ns, and
halving needs the per-packet work of all calls as arrays (one pass for every call's
address lock, source validation, statistics and buffers), not per-session objects.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _prompt(seconds: float) -> np.ndarray:
    rng = np.random.default_rng(7)
    n = int(seconds * 8000)
    noise = np.convolve(rng.standard_normal(n), np.ones(4) / 4, mode="same")
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * np.arange(n) / 8000)
    return (noise * env * 3000).astype(np.int16)


async def _measure(pairs: int, frames: int, warmup: int) -> tuple[float, float, float]:
    """(µs CPU per call-frame, KiB RSS per session, wake-ups per frame)."""
    from autocall.media.clock import MediaEngine
    from autocall.media.session import MediaSession

    loop = asyncio.get_running_loop()
    fake = [loop.time()]
    loop.time = lambda: fake[0]  # type: ignore[method-assign]
    engine = MediaEngine()
    rss0 = _rss_kib()
    a = [await MediaSession.open(engine, "127.0.0.1", 0) for _ in range(pairs)]
    b = [await MediaSession.open(engine, "127.0.0.1", 0) for _ in range(pairs)]
    for x, y in zip(a, b, strict=True):
        x.start(y.local_addr, 0, 101)
        y.start(x.local_addr, 0, 101)
    sessions = a + b
    prompt = _prompt((frames + warmup) * 0.02 + 2)  # shared by every session, like a prompt
    players = [asyncio.ensure_future(s.play(prompt)) for s in sessions]
    await asyncio.sleep(0)  # the plays queue their prompt
    if engine._timer is not None:  # driven by hand from here on
        engine._timer.cancel()

    def tick(until: float) -> None:
        while True:
            when = engine.clock.next_deadline()
            assert when is not None
            if when > until:
                return
            fake[0] = when
            engine._fire()
            if engine._timer is not None:
                engine._timer.cancel()

    start = fake[0]
    tick(start + warmup * engine.frame)
    w0 = engine.wakeups
    # Measured in slices of 10 frames, the quietest slice counts: other processes on a
    # shared machine steal cache and cycles in bursts, which the least disturbed slice
    # of a run shows least.
    slices = []
    for k in range(0, frames, 10):
        t0 = time.process_time()
        tick(start + (warmup + min(k + 10, frames)) * engine.frame)
        slices.append((time.process_time() - t0) / (min(k + 10, frames) - k))
    cpu = min(slices) * frames
    wake = (engine.wakeups - w0) / frames
    rss = (_rss_kib() - rss0) / len(sessions)
    got = sum(s.stats().packets_received for s in sessions)
    if got < len(sessions) * frames * 0.9:
        raise SystemExit(f"only {got} packets received for {len(sessions) * frames} sent")
    for p in players:
        p.cancel()
    for s in sessions:
        await s.close()
    return cpu / (len(sessions) * frames) * 1e6, rss, wake


def _worker(pairs: int, frames: int, warmup: int) -> None:
    from autocall.process import freeze_startup_heap

    freeze_startup_heap()
    us, rss, wake = asyncio.run(_measure(pairs, frames, warmup))
    print(f"{us:.3f} {rss:.1f} {wake:.2f}")


def _run(tree: Path, pairs: int, frames: int, warmup: int) -> tuple[float, float, float]:
    env = dict(os.environ, PYTHONPATH=str(tree), PYTHONHASHSEED="0")
    out = subprocess.run(
        [sys.executable, __file__, "--worker", str(pairs), str(frames), str(warmup)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=tree,
    )
    if out.returncode:
        raise SystemExit(f"worker in {tree} failed:\n{out.stderr[-2000:]}")
    us, rss, wake = out.stdout.split()
    return float(us), float(rss), float(wake)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=200, help="session pairs (2 × calls)")
    ap.add_argument("--frames", type=int, default=250, help="measured frames (20 ms each)")
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--baseline",
        default="",
        help="git revision to compare with (default: where this branch left main)",
    )
    ap.add_argument("--worker", nargs=3, type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        _worker(*args.worker)
        return 0
    if not args.baseline:
        args.baseline = subprocess.run(
            ["git", "-C", str(ROOT), "merge-base", "HEAD", "main"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()[:12]
    base = Path(tempfile.mkdtemp(prefix="bench-frame-"))
    try:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", args.baseline, "autocall"],
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
        print(
            f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; "
            f"{2 * args.pairs} sessions, {args.frames} frames, baseline {args.baseline}",
            flush=True,
        )
        best: dict[str, tuple[float, float, float]] = {}
        ratios: list[float] = []
        last = 0.0
        for r in range(args.rounds):
            for name, tree in (("baseline", base), ("this tree", ROOT)):
                got = _run(tree, args.pairs, args.frames, args.warmup)
                print(
                    f"  round {r + 1} {name:<9}: {got[0]:6.2f} µs/call-frame, "
                    f"{got[1]:6.1f} KiB/session, {got[2]:.2f} wake-ups/frame",
                    flush=True,
                )
                if name not in best or got[0] < best[name][0]:
                    best[name] = got
                if name == "this tree":
                    ratios.append(got[0] / last)
                last = got[0]
        b, o = best["baseline"], best["this tree"]
        print(
            f"median of the {len(ratios)} paired rounds' ratios (this tree / baseline): "
            f"{float(np.median(ratios)):.3f}",
            flush=True,
        )
        print(
            f"best: baseline {b[0]:.2f} µs, this tree {o[0]:.2f} µs per call-frame "
            f"(ratio {o[0] / b[0]:.3f}); RSS {b[1]:.1f} → {o[1]:.1f} KiB/session "
            f"(ratio {o[1] / max(b[1], 1e-9):.3f}); "
            f"load average after: {os.getloadavg()[0]:.2f}",
            flush=True,
        )
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
