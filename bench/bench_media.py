"""RTP pacing under load: N concurrent media streams on loopback, one drift-free clock vs baselines.

    python bench/bench_media.py                         # 100, 200, 500 streams, 10 s each
    python bench/bench_media.py --streams 200 --seconds 5 --impl engine,naive --mode sink
    python bench/bench_media.py --json                  # machine-readable results

Every stream plays a prompt (a μ-law tone). Two loads (``--mode``):

- ``pairs``: streams are paired like the two legs of a call, so each also receives 50
  packets/s, de-jitters them and runs in-band DTMF detection on them (a dialer's work);
- ``sink``: streams only send, to a bound UDP socket nobody reads (pacing alone).

Three pacing strategies send the same traffic (``--impl``):

- ``engine``: autocall's `MediaEngine` — one asyncio timer, frame n at t0 + n·20 ms,
  in-band DTMF detection of all calls in shared detector banks;
- ``naive`` (baseline): the same `MediaSession`s, each paced by its own
  ``while True: send(); await asyncio.sleep(0.02)`` task, the usual asyncio idiom
  (and, having no engine, a DTMF detector per call);
- ``pyvoip`` (baseline): pyVoIP 1.6.8 `RTPClient`s, two threads per stream (it does no
  DTMF detection, so in ``pairs`` it does less work per packet);
- ``engine+amd``: the engine with answering-machine detection on every stream, as a
  campaign with AMD on all its calls runs it (`autocall.telephony.answer.AmdPool`: one
  batched analysis per pacing tick); compare it with ``engine`` of the same run
  (issue 16: AMD on 500 calls must keep every call's pacing). Every stream starts its
  analysis at once: the worst case, a whole campaign answered in the same instant;
- ``engine+amd/R``: the same, but the streams start their analysis R per second, as a
  campaign's calls are answered at its dialer's set-up rate (each stays in analysis
  until the detector decides: the tone they play is no voice, so for the detector's
  whole analysis time). Measure over at least N/R seconds plus that time.

    python bench/bench_media.py --streams 500 --impl engine,engine+amd --mode pairs
    python bench/bench_media.py --streams 500 --impl engine,engine+amd/50 --seconds 16 --mode pairs

Each (mode, impl, N) runs in a fresh process. Departure times are taken at the socket
send call. Per stream: packets/s (least-squares slope of packet count over the window;
target 50.0, drift = the mean's distance from 50) and the worst stream; pooled p50/p99/
max inter-departure; CPU (% of one core) and RSS growth per stream; for the engine, the
frames it skipped after stalls longer than its burst limit. Ratios compare against the
naive baseline of the same mode and N. The machine is shared: run it when it is quiet
and look at the load average it prints.
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
from typing import Any

from _harness import WARMUP, cpu_seconds, stamp_sends, summarise


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _NaiveEngine:
    """Baseline clock: one task per stream sleeping 20 ms after each frame."""

    frame = 0.02

    def __init__(self) -> None:
        from autocall.media.detection import DetectorPool
        from autocall.media.ports import PortPool

        self._tasks: dict[int, asyncio.Task[None]] = {}
        self.ports = PortPool.from_env()  # what MediaSession asks of any engine
        self._pool = DetectorPool()

    def detector_pool(self) -> Any:
        return self._pool

    def add_stream(
        self,
        on_frame: Callable[[int], None],
        start: float | None = None,
        after: Callable[[int], None] | None = None,
    ) -> int:
        async def loop() -> None:
            n = 0
            while True:
                on_frame(n)
                if after is not None:
                    after(n)
                self._pool.run()  # the shared DTMF banks, after each stream's frame
                n += 1
                await asyncio.sleep(0.02)

        sid = len(self._tasks) + 1
        self._tasks[sid] = asyncio.ensure_future(loop())
        return sid

    def remove_stream(self, sid: int) -> None:
        task = self._tasks.pop(sid, None)
        if task is not None:
            task.cancel()

    def watch(self, sock: Any, on_datagram: Callable[[bytes, Any, float], None]) -> None:
        """Baseline receive: the event loop calls back for every datagram (the usual way)."""
        loop = asyncio.get_running_loop()

        def readable() -> None:
            try:
                data, addr = sock.recvfrom(2048)
            except OSError:
                return
            on_datagram(data, addr, loop.time())

        loop.add_reader(sock, readable)

    def unwatch(self, sock: Any) -> None:
        asyncio.get_running_loop().remove_reader(sock)

    def time(self) -> float:
        return asyncio.get_running_loop().time()


def _sink() -> tuple[Any, tuple[str, int]]:
    """A bound UDP socket nobody reads: the kernel drops what overflows, no ICMP errors."""
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock, sock.getsockname()


async def _run_sessions(impl: str, n: int, seconds: float, mode: str) -> dict[str, Any]:
    from autocall.audio.tones import beep
    from autocall.media import MediaEngine, MediaSession

    on_engine = impl.startswith("engine")
    engine: Any = MediaEngine() if on_engine else _NaiveEngine()
    rss0 = _rss_bytes()
    sessions = [await MediaSession.open(engine) for _ in range(n)]
    times = stamp_sends(sessions)
    prompt = beep(440, (seconds + WARMUP + 2) * 1000, -16)
    sink, sink_addr = _sink()
    for i, s in enumerate(sessions):
        peer = sessions[i ^ 1] if i ^ 1 < n else sessions[i]
        to = sink_addr if mode == "sink" else ("127.0.0.1", peer.local_port)
        s.start(to, payload_type=0, dtmf_payload_type=101)
    plays = [asyncio.ensure_future(s.play(prompt)) for s in sessions]
    await asyncio.sleep(WARMUP)
    amd = None
    ramp: asyncio.Task[None] | None = None
    if impl.startswith("engine+amd"):
        from autocall.telephony.answer import AmdPool

        amd = AmdPool()
        rate = float(impl.partition("/")[2] or 0)
        if rate <= 0:
            for s in sessions:
                amd.listen(s)
        else:

            async def answer_at_rate(pool: AmdPool = amd) -> None:
                start = time.monotonic()
                for k, s in enumerate(sessions):
                    await asyncio.sleep(max(0.0, start + k / rate - time.monotonic()))
                    pool.listen(s)

            ramp = asyncio.ensure_future(answer_at_rate())
    skipped = (lambda: engine.clock.skipped) if on_engine else (lambda: -1)
    t0, c0, w0, k0 = time.monotonic(), cpu_seconds(), getattr(engine, "wakeups", 0), skipped()
    f0 = amd.frames if amd else 0
    await asyncio.sleep(seconds)
    t1, c1, w1, k1 = time.monotonic(), cpu_seconds(), getattr(engine, "wakeups", 0), skipped()
    amd_frames = (amd.frames - f0) if amd else 0
    if ramp is not None:
        ramp.cancel()
    rss = _rss_bytes()
    received = sum(s.stats().packets_received for s in sessions)
    for s in sessions:
        s.flush()
        await s.close()
    await asyncio.gather(*plays)
    sink.close()
    out = summarise(times, t0, t1)
    out.update(
        cpu_pct_per_stream=(c1 - c0) / (t1 - t0) / n * 100,
        cpu_pct_total=(c1 - c0) / (t1 - t0) * 100,
        rss_kib_per_stream=(rss - rss0) / n / 1024,
        received_total=received,
        skipped_frames=k1 - k0 if on_engine else -1,
        timer_wakeups_per_s=(w1 - w0) / (t1 - t0) if on_engine else -1,
        amd_frames_per_stream_s=amd_frames / (t1 - t0) / n if amd else -1,
    )
    return out


def _run_pyvoip(n: int, seconds: float, mode: str) -> dict[str, Any]:
    import socket

    from pyVoIP.RTP import PayloadType, RTPClient, TransmitType

    class TimedSocket:
        def __init__(self, sock: socket.socket, stamp: Callable[[float], None]) -> None:
            self._sock, self._stamp = sock, stamp

        def sendto(self, data: bytes, addr: tuple[str, int]) -> int:
            self._stamp(time.monotonic())
            return self._sock.sendto(data, addr)

        def close(self) -> None:
            self._sock.close()

    held = []
    for _ in range(n):  # hold every probe socket until all ports are known: no repeats
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        held.append(s)
    ports = [s.getsockname()[1] for s in held]
    for s in held:
        s.close()
    sink, sink_addr = _sink()
    rss0 = _rss_bytes()
    times: list[list[float]] = [[] for _ in range(n)]
    clients = []
    for i in range(n):
        peer = sink_addr[1] if mode == "sink" else ports[i ^ 1] if i ^ 1 < n else ports[i]
        c = RTPClient(
            {0: PayloadType.PCMU}, "127.0.0.1", ports[i], "127.0.0.1", peer, TransmitType.SENDRECV
        )
        clients.append(c)
    try:
        for i, c in enumerate(clients):
            c.start()
            c.sout = TimedSocket(c.sin, times[i].append)  # type: ignore[assignment]
    except OSError:
        for c in clients:
            c.NSD = False  # its threads are not daemons: stop them or the process hangs
        raise
    time.sleep(WARMUP)
    t0, c0 = time.monotonic(), cpu_seconds()
    time.sleep(seconds)
    t1, c1 = time.monotonic(), cpu_seconds()
    rss = _rss_bytes()
    for c in clients:
        c.NSD = False
    time.sleep(0.1)
    for c in clients:
        c.sin.close()
    sink.close()
    out = summarise(times, t0, t1)
    out.update(
        cpu_pct_per_stream=(c1 - c0) / (t1 - t0) / n * 100,
        cpu_pct_total=(c1 - c0) / (t1 - t0) * 100,
        rss_kib_per_stream=(rss - rss0) / n / 1024,
        received_total=-1,
        skipped_frames=-1,
        timer_wakeups_per_s=-1,
    )
    return out


def _worker(impl: str, n: int, seconds: float, mode: str) -> None:
    if impl == "pyvoip":
        res = _run_pyvoip(n, seconds, mode)
    else:
        res = asyncio.run(_run_sessions(impl, n, seconds, mode))
    print(json.dumps(res))


def _line(r: dict[str, Any]) -> str:
    return (
        f"{r['mode']:>5} {r['impl']:>6} N={r['streams']:<4} pps mean {r['pps_mean']:6.2f} "
        f"worst {r['pps_worst']:6.2f} drift {r['drift_pct']:6.3f}% "
        f"healthy {r['healthy_streams']:>4}/{r['streams']} | inter-departure "
        f"p50 {r['gap_p50_ms']:5.1f} p99 {r['gap_p99_ms']:6.1f} max {r['gap_max_ms']:6.1f} ms | "
        f"CPU {r['cpu_pct_per_stream']:.3f}%/stream ({r['cpu_pct_total']:.0f}% total) "
        f"RSS {r['rss_kib_per_stream']:.0f} KiB/stream"
        + (
            f" | skipped frames {r['skipped_frames']}, timer {r['timer_wakeups_per_s']:.0f}/s"
            if r["skipped_frames"] >= 0
            else ""
        )
        + (
            f" | AMD {r['amd_frames_per_stream_s']:.1f} frames/s per stream"
            if r.get("amd_frames_per_stream_s", -1) >= 0
            else ""
        )
    )


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--streams", default="100,200,500", help="comma-separated N, e.g. 100,200,500")
    ap.add_argument("--seconds", type=float, default=10.0, help="measured seconds per run")
    ap.add_argument("--impl", default="engine,naive,pyvoip", help="engine,naive,pyvoip")
    ap.add_argument(
        "--pyvoip-max",
        type=int,
        default=200,
        help="largest N for pyVoIP (two threads per stream: 500 means ~1000 threads, "
        "which swamps a shared 2-core machine)",
    )
    ap.add_argument("--json", action="store_true", help="print results as JSON")
    ap.add_argument(
        "--mode",
        default="pairs,sink",
        help="pairs: legs send to each other (receive, de-jitter, detect DTMF too); "
        "sink: send only, to a UDP sink",
    )
    ap.add_argument(
        "--worker", nargs=4, metavar=("IMPL", "N", "SECONDS", "MODE"), help=argparse.SUPPRESS
    )
    args = ap.parse_args()
    if args.worker:
        _worker(args.worker[0], int(args.worker[1]), float(args.worker[2]), args.worker[3])
        return 0
    print(f"load average before: {os.getloadavg()[0]:.2f} (cores: {os.cpu_count()})", flush=True)
    impls = [i.strip() for i in args.impl.split(",") if i.strip()]
    results: list[dict[str, Any]] = []
    modes = [m.strip() for m in args.mode.split(",") if m.strip()]
    runs = [
        (m, int(n), i)
        for m in modes
        for n in args.streams.split(",")
        for i in impls
        if i != "pyvoip" or int(n) <= args.pyvoip_max
    ]
    for mode, n, impl in runs:
        try:
            proc = subprocess.run(
                [sys.executable, __file__, "--worker", impl, str(n), str(args.seconds), mode],
                capture_output=True,
                text=True,
                timeout=args.seconds + 120,
            )
        except subprocess.TimeoutExpired:
            print(f"{mode} {impl} N={n}: no result within {args.seconds + 120:.0f} s", flush=True)
            continue
        if proc.returncode != 0:
            print(f"{impl} N={n} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        res.update(impl=impl, streams=n, mode=mode)
        results.append(res)
        if not args.json:
            print(_line(res), flush=True)
    by = {(r["mode"], r["impl"], r["streams"]): r for r in results}
    ratios = []
    for (mode, impl, n), r in by.items():
        base = by.get((mode, "naive", n))
        if impl != "naive" and base:
            ratios.append(
                {
                    "mode": mode,
                    "impl": impl,
                    "streams": n,
                    "p99_gap_vs_naive": r["gap_p99_ms"] / base["gap_p99_ms"],
                    "cpu_vs_naive": r["cpu_pct_per_stream"] / base["cpu_pct_per_stream"],
                    "drift_pct": r["drift_pct"],
                    "naive_drift_pct": base["drift_pct"],
                }
            )
    for (mode, impl, n), r in by.items():
        plain = by.get((mode, "engine", n))
        if impl.startswith("engine+amd") and plain and not args.json:
            print(
                f"{mode}: {impl} (AMD on every stream) vs the engine alone, N={n}: "
                f"p99 gap {r['gap_p99_ms']:.1f} vs {plain['gap_p99_ms']:.1f} ms, "
                f"healthy {r['healthy_streams']} vs {plain['healthy_streams']} of {n}, "
                f"CPU x{r['cpu_pct_per_stream'] / plain['cpu_pct_per_stream']:.2f}, "
                f"{r['amd_frames_per_stream_s'] * n / 50:.0f} streams in analysis on average"
            )
    if args.json:
        print(json.dumps({"results": results, "ratios_vs_naive_baseline": ratios}, indent=2))
    else:
        for q in ratios:
            print(
                f"{q['mode']}: {q['impl']} vs naive baseline, N={q['streams']}: "
                f"p99 gap x{q['p99_gap_vs_naive']:.2f}, CPU x{q['cpu_vs_naive']:.2f}, "
                f"drift {q['drift_pct']:.3f}% vs {q['naive_drift_pct']:.3f}%"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
