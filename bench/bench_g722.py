"""What wideband costs: G.722 per 20 ms frame against G.711, and RTP pacing of N calls in
G.722 against the same calls in PCMU, in the same run.

    python bench/bench_g722.py                       # 100 calls, 6 s each
    python bench/bench_g722.py --calls 100,200 --seconds 5 --json

Per frame (one process, best of 7 × 5 000 frames of noise at -20 dBFS): what each side
of a call does with one 20 ms frame. G.711 (the baseline): μ-law encode of 160 samples
plus decode of 160 bytes (``autocall.audio.g711``). G.722: encode of 320 samples plus
decode of 160 bytes (``autocall.audio.g722``, libg722), and the decimator that brings the
decoded 16 kHz audio to the 8 kHz DTMF detector. Ratios are to G.711 encode+decode.

Pacing (each run in a fresh process): N calls = 2N `MediaSession`s on one `MediaEngine`,
paired like the two legs of a call; each sends a prompt (50 packets/s) and receives,
de-jitters and runs in-band DTMF detection on what it gets: once in PCMU at 8 kHz, once
in G.722 at 16 kHz. Per run: packets/s per stream (mean, worst), p99 inter-departure and
CPU per call; then the G.722 / PCMU ratios. The machine is shared: the load average is
printed before and after.
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
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))
from _harness import WARMUP, paced_pairs, stamp_sends  # noqa: E402

FRAMES = 5_000


def _best_us(fn: Callable[[], object], runs: int = 7) -> float:
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        for _ in range(FRAMES):
            fn()
        best = min(best, time.perf_counter() - t0)
    return best / FRAMES * 1e6


def per_frame() -> dict[str, float]:
    import numpy as np

    from autocall.audio import g711, g722

    rng = np.random.default_rng(7)
    wide = (rng.standard_normal(320) * 3277).clip(-32768, 32767).astype(np.int16)
    narrow = wide[::2].copy()
    ulaw = g711.ulaw_encode(narrow)
    enc, dec, down = g722.Encoder(), g722.Decoder(), g722.Decimator()
    payload = enc.encode(wide)
    out = {
        "g711_encode_us": _best_us(lambda: g711.ulaw_encode(narrow)),
        "g711_decode_us": _best_us(lambda: g711.ulaw_decode(ulaw)),
        "g722_encode_us": _best_us(lambda: enc.encode(wide)),
        "g722_decode_us": _best_us(lambda: dec.decode(payload)),
        "decimate_us": _best_us(lambda: down.process(wide)),
    }
    out["g711_us"] = out["g711_encode_us"] + out["g711_decode_us"]
    out["g722_us"] = out["g722_encode_us"] + out["g722_decode_us"]
    return out


async def pacing(calls: int, seconds: float, wideband: bool) -> dict[str, Any]:
    from autocall.audio.tones import beep
    from autocall.media import MediaEngine, MediaSession

    engine = MediaEngine()
    sessions = [await MediaSession.open(engine) for _ in range(2 * calls)]
    times = stamp_sends(sessions)
    pt = 9 if wideband else 0
    for i, s in enumerate(sessions):
        s.start(("127.0.0.1", sessions[i ^ 1].local_port), pt, 101)
    rate = sessions[0].rate
    prompt = beep(440, (seconds + WARMUP + 2) * 1000, -16, rate=rate)
    out, _ = await paced_pairs(engine, sessions, times, calls, seconds, prompt)
    out.update(rate=rate)
    return out


def _run(what: str, calls: int, seconds: float) -> dict[str, Any] | None:
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", what, str(calls), str(seconds)],
        capture_output=True,
        text=True,
        timeout=seconds + 120,
    )
    if proc.returncode != 0:
        print(f"{what} N={calls} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--calls", default="100", help="comma-separated numbers of calls")
    ap.add_argument("--seconds", type=float, default=6.0, help="measured seconds per run")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        what, calls, seconds = args.worker[0], int(args.worker[1]), float(args.worker[2])
        if what == "frame":
            print(json.dumps(per_frame()))
        else:
            print(json.dumps(asyncio.run(pacing(calls, seconds, what == "g722"))))
        return 0
    load0 = os.getloadavg()[0]
    print(f"load average before: {load0:.2f} (cores: {os.cpu_count()})", flush=True)
    report: dict[str, Any] = {"load_before": load0, "pacing": []}
    frame = _run("frame", 0, 0)
    if frame is not None:
        report["per_frame"] = frame
        if not args.json:
            base = frame["g711_us"]
            print(
                f"per 20 ms frame: G.711 enc+dec {base:.2f} µs (baseline: enc "
                f"{frame['g711_encode_us']:.2f} dec {frame['g711_decode_us']:.2f}) | G.722 "
                f"enc+dec {frame['g722_us']:.2f} µs x{frame['g722_us'] / base:.1f} (enc "
                f"{frame['g722_encode_us']:.2f} dec {frame['g722_decode_us']:.2f}) | "
                f"decimate to 8 kHz {frame['decimate_us']:.2f} µs",
                flush=True,
            )
    for calls in [int(c) for c in args.calls.split(",") if c.strip()]:
        runs = {w: _run(w, calls, args.seconds) for w in ("pcmu", "g722")}
        for what, r in runs.items():
            if r is None:
                continue
            r.update(calls=calls, codec=what)
            report["pacing"].append(r)
            if not args.json:
                print(
                    f"{what:>5} N={calls} ({r['rate']} Hz): pps mean {r['pps_mean']:6.2f} "
                    f"worst {r['pps_worst']:6.2f} | p99 {r['gap_p99_ms']:.1f} max "
                    f"{r['gap_max_ms']:.1f} ms | CPU {r['cpu_pct_per_call']:.3f}%/call "
                    f"({r['cpu_pct_total']:.0f}% total)",
                    flush=True,
                )
        plain, wide = runs["pcmu"], runs["g722"]
        if plain and wide and not args.json:
            print(
                f"G.722 vs PCMU, N={calls}: CPU per call "
                f"x{wide['cpu_pct_per_call'] / plain['cpu_pct_per_call']:.2f}, p99 gap "
                f"x{wide['gap_p99_ms'] / plain['gap_p99_ms']:.2f}",
                flush=True,
            )
    load1 = os.getloadavg()[0]
    report["load_after"] = load1
    print(json.dumps(report, indent=2) if args.json else f"load average after: {load1:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
