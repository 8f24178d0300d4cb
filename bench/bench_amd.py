"""Answering-machine detection: autocall.audio.amd against Asterisk's AMD() algorithm.

    python bench/bench_amd.py [--seeds 11 12 13] [--per-family 40] [--channels 500] [--json]

1. Accuracy on a seeded corpus (tests/audio/amd_corpus.py: espeak-ng voices in eight
   languages through G.711 with line noise and babble; humans, voicemail with and
   without beeps and music, short greetings, carrier announcements, fax CNG/CED, dead
   air), per family and as a confusion matrix, for ours and for our re-implementation of
   the documented Asterisk AMD() algorithm with its default parameters
   (tests/audio/amd_asterisk.py), on the same clips in the same run. Parameters are the
   defaults of AmdConfig for every seed.
2. The human's wait: decision time after the end of their greeting (median, p90).
3. Beeped greetings whose message starts after the (last) beep and within 0.5 s of it.
   AMD() reports no beep: its message starts when it returns.
4. Throughput of the batched bank: seconds of audio per CPU second over --channels calls
   fed 20 ms frames together (what a campaign with AMD on every call needs: >= 50 x the
   number of calls, in frames per second, on one core).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "audio"))

import amd_asterisk  # noqa: E402
import amd_corpus  # noqa: E402

from autocall.audio.amd import FRAME, AmdBank, classify  # noqa: E402
from autocall.telephony.answer import AmdPool  # noqa: E402

LABELS = ["human", "machine", "fax", "unknown"]
SCORED = {"human", "machine", "fax"}  # the families of the accuracy target


def evaluate(seeds: list[int], per_family: int) -> dict[str, object]:
    rows: list[dict[str, object]] = []
    for seed in seeds:
        for clip in amd_corpus.corpus(seed, per_family):
            ours = classify(clip.samples)
            ast = amd_asterisk.asterisk_amd(clip.samples)
            rows.append(
                {
                    "seed": seed,
                    "family": clip.family,
                    "truth": clip.truth,
                    "ours": ours.answered_by,
                    "ours_cause": ours.cause,
                    "decided_at": ours.decided_at,
                    "message_at": ours.message_at,
                    "beep_at": ours.beep_at,
                    "asterisk": ast.answered_by,
                    "asterisk_cause": ast.cause,
                    "asterisk_at": ast.at,
                    "speech_end": clip.speech_end,
                    "beep_end": clip.beep_end,
                    "text": clip.text,
                }
            )
    return summarize(rows)


def _pct(hit: int, n: int) -> float:
    return round(100.0 * hit / n, 1) if n else 0.0


def summarize(rows: list[dict[str, object]]) -> dict[str, object]:
    out: dict[str, object] = {"clips": len(rows)}
    for who in ("ours", "asterisk"):
        fam: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        confusion: Counter[tuple[str, str]] = Counter()
        scored = [0, 0]
        for r in rows:
            ok = r[who] == r["truth"]
            fam[str(r["family"])][0] += ok
            fam[str(r["family"])][1] += 1
            confusion[(str(r["truth"]), str(r[who]))] += 1
            if r["truth"] in SCORED:
                scored[0] += ok
                scored[1] += 1
        waits = sorted(
            float(r["decided_at" if who == "ours" else "asterisk_at"]) - float(r["speech_end"])  # type: ignore[arg-type]
            for r in rows
            if r["truth"] == "human" and r[who] == "human"
        )
        beeped = [r for r in rows if r["beep_end"] is not None]
        good = 0
        for r in beeped:
            at = r["message_at"] if who == "ours" else r["asterisk_at"]
            if at is not None and r[who] == "machine":
                lag = float(at) - float(r["beep_end"])  # type: ignore[arg-type]
                good += 0.0 <= lag <= 0.5
        out[who] = {
            "correct_pct": _pct(*scored),
            "per_family": {f: _pct(*v) for f, v in fam.items()},
            "confusion": {f"{t}->{p}": n for (t, p), n in sorted(confusion.items())},
            "human_wait_median_s": round(float(np.median(waits)), 3) if waits else None,
            "human_wait_p90_s": round(float(np.percentile(waits, 90)), 3) if waits else None,
            "after_beep_pct": _pct(good, len(beeped)),
        }
    out["errors"] = [
        {k: r[k] for k in ("seed", "family", "ours", "ours_cause", "decided_at", "text")}
        for r in rows
        if r["ours"] != r["truth"]
    ]
    out["late_or_early"] = [
        {
            "seed": r["seed"],
            "family": r["family"],
            "beep_end": round(float(r["beep_end"]), 2),  # type: ignore[arg-type]
            "beep_at": r["beep_at"],
            "message_at": r["message_at"],
        }
        for r in rows
        if r["beep_end"] is not None
        and r["ours"] == "machine"
        and (
            r["message_at"] is None
            or not 0.0 <= float(r["message_at"]) - float(r["beep_end"]) <= 0.5  # type: ignore[arg-type]
        )
    ]
    return out


def throughput(channels: int, seconds: float = 6.0) -> float:
    """Seconds of audio analysed per CPU second, ``channels`` calls fed 20 ms frames together."""
    clips = [c.samples for c in amd_corpus.corpus(1, 4)]
    n = int(seconds * 8000) // FRAME * FRAME
    audio = np.zeros((channels, n), dtype=np.int16)
    for c in range(channels):
        clip = clips[c % len(clips)]
        audio[c, : min(n, clip.size)] = clip[:n]
    bank = AmdBank(channels)
    start = time.process_time()
    for i in range(0, n, FRAME):
        for ch, _ev in bank.feed(audio[:, i : i + FRAME]):
            bank.reset(ch)  # keep every channel deciding, as a campaign's new calls do
    cpu = time.process_time() - start
    return channels * n / 8000 / cpu


class _Media:
    """What AmdPool taps on a MediaSession: the received signal in RTP order."""

    on_signal: Callable[[npt.NDArray[np.int16]], None] | None = None


async def _pool_ticks(channels: int, seconds: float) -> list[float]:
    clips = [c.samples for c in amd_corpus.corpus(2, 4)]
    pool = AmdPool(size=channels)
    medias = [_Media() for _ in range(channels)]
    for m in medias:
        pool.listen(m)
    costs = []
    for k in range(int(seconds / 0.02)):
        start = time.perf_counter()
        for i, m in enumerate(medias):
            clip = clips[i % len(clips)]
            j = (k * FRAME + 37 * i * FRAME) % max(FRAME, clip.size - FRAME)
            assert m.on_signal is not None
            m.on_signal(clip[j : j + FRAME])  # what each MediaSession does in a pacing tick
        await asyncio.sleep(0)  # the pool's one pass over all calls runs here
        costs.append(time.perf_counter() - start)
    return costs


def pool_tick_ms(channels: int, seconds: float = 6.0) -> tuple[float, float]:
    """Wall time of one pacing tick's AMD work for ``channels`` calls (median, p99), in ms:
    what AMD takes from the 20 ms each tick has (the media engine needs the rest)."""
    costs = asyncio.run(_pool_ticks(channels, seconds))
    return 1000 * float(np.median(costs)), 1000 * float(np.percentile(costs, 99))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[11, 12, 13])
    ap.add_argument("--per-family", type=int, default=40)
    ap.add_argument("--channels", type=int, default=500)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--errors", action="store_true", help="list the clips we got wrong")
    args = ap.parse_args()
    res = evaluate(args.seeds, args.per_family)
    res["seeds"] = args.seeds
    if args.channels:
        res["bank_audio_s_per_cpu_s"] = round(throughput(args.channels), 1)
        res["bank_channels"] = args.channels
        med, p99 = pool_tick_ms(args.channels)
        res["pool_tick_ms_median"], res["pool_tick_ms_p99"] = round(med, 2), round(p99, 2)
    if args.json:
        print(json.dumps(res))
        return
    con = Console()
    ours, ast = res["ours"], res["asterisk"]
    assert isinstance(ours, dict) and isinstance(ast, dict)
    t = Table(title=f"AMD accuracy per family, seeds {args.seeds}, {args.per_family} clips each")
    t.add_column("family")
    t.add_column("truth")
    t.add_column("autocall %", justify="right")
    t.add_column("Asterisk AMD() %", justify="right")
    for fam, truth in amd_corpus.FAMILIES.items():
        t.add_row(fam, truth, str(ours["per_family"][fam]), str(ast["per_family"][fam]))
    t.add_row(
        "[b]human+machine+fax[/b]",
        "",
        f"[b]{ours['correct_pct']}[/b]",
        f"[b]{ast['correct_pct']}[/b]",
    )
    con.print(t)
    for name, r in (("autocall", ours), ("Asterisk AMD()", ast)):
        m = Table(title=f"confusion, {name} (rows: truth, columns: decided)")
        m.add_column("")
        for lab in LABELS:
            m.add_column(lab, justify="right")
        for truth in LABELS:
            m.add_row(truth, *[str(r["confusion"].get(f"{truth}->{p}", 0)) for p in LABELS])
        con.print(m)
    con.print(
        f"human wait after their greeting: autocall median {ours['human_wait_median_s']} s,"
        f" p90 {ours['human_wait_p90_s']} s; Asterisk median {ast['human_wait_median_s']} s,"
        f" p90 {ast['human_wait_p90_s']} s"
    )
    con.print(
        f"message within 0.5 s after the beep: autocall {ours['after_beep_pct']} %,"
        f" Asterisk (message when AMD() returns) {ast['after_beep_pct']} %"
    )
    if args.channels:
        con.print(
            f"bank of {args.channels} calls: {res['bank_audio_s_per_cpu_s']} s of audio per CPU"
            f" second (real time for {float(res['bank_audio_s_per_cpu_s']):.0f} calls on one core)"  # type: ignore[arg-type]
        )
        con.print(
            f"AmdPool, {args.channels} calls: {res['pool_tick_ms_median']} ms per 20 ms pacing"
            f" tick (median), {res['pool_tick_ms_p99']} ms (p99)"
        )
    if args.errors:
        for e in res["errors"]:  # type: ignore[attr-defined]
            con.print(" ".join(str(v) for v in e.values()), highlight=False)
        for e in res["late_or_early"]:  # type: ignore[attr-defined]
            con.print("beep:", " ".join(str(v) for v in e.values()), highlight=False)


if __name__ == "__main__":
    main()
