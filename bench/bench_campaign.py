"""Campaign benchmarks: contact import time, and dialer overhead per call.

    python bench/bench_campaign.py [--contacts 100000] [--calls 3000]

1. Import: parse + normalise + time-zone + dedupe a CSV of N contacts and insert them
   into a SQLite file (target: 100,000 in < 10 s). Baseline in the same run: the same
   rows inserted one INSERT + commit per contact (the naive loader).
2. Dialer overhead: every call "answers" at once (a placer that returns immediately), so
   the time per call is pure claim/plan/record cost. Baseline in the same run: a naive
   query-per-contact loop (SELECT one due contact, UPDATE, INSERT attempt, commit, call,
   UPDATE, commit) on the same kind of SQLite file.
3. ``--sip-calls N``: a real campaign against SIPp (our UA, SipPlacer, a tree that holds
   each call ``--hold`` s) at ``--cps`` with ``--channels``: sustained new calls/s.
   Baseline: the same placer driven by a bare semaphore loop at the same rate.
   "Sustained" is the least-squares slope of start time against call number (one late
   first or last call barely moves it; first-to-last is shown too); the busiest second
   shows the bursts; the channel ceiling (channels / mean call seconds) says whether the
   channels, not the pacing, bounded the rate. The defaults are channel-bound: a 10 s
   hold lasts about 10.25 s with setup and teardown, so 500 channels carry at most
   ~48.8 calls/s; test pacing with a short ``--hold`` (e.g. 2).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import random
import sqlite3
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from autocall.campaign.contacts import import_campaign, read_contacts
from autocall.campaign.dialer import CallRequest, run_campaign
from autocall.campaign.model import CallingWindow, CallStatus, Campaign, RetryPolicy
from autocall.campaign.store import Store
from autocall.telephony.record import CallRecord

AREA = ["201", "202", "212", "213", "305", "312", "415", "503", "617", "646", "702", "907"]


def write_csv(path: Path, n: int) -> None:
    rng = random.Random(7)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("phone,first_name,plan\n")
        for i in range(n):
            fh.write(f"({rng.choice(AREA)}) {rng.randint(200, 999)}-{i % 10000:04d},P{i},gold\n")


def campaign(tmp: Path, name: str, contacts: list[str], channels: int, cps: float) -> Campaign:
    return Campaign(
        name=name, tree=str(tmp / "tree.yaml"), contacts=contacts, caller_ids=["+12025550100"],
        window=CallingWindow(days=["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                             start="00:00", end="23:59:59.999999",  # type: ignore[arg-type]
                             override_legal_hours=True),
        channels=channels, calls_per_second=cps, retry=RetryPolicy(max_attempts=1))


def bench_import(tmp: Path, n: int) -> None:
    csv_path = tmp / "contacts.csv"
    write_csv(csv_path, n)
    t0 = time.perf_counter()
    parsed = read_contacts(csv_path)
    t_parse = time.perf_counter() - t0
    store = Store(f"sqlite:///{tmp / 'import.db'}")
    c = campaign(tmp, "import", [str(csv_path)], 1, 1)
    t0 = time.perf_counter()
    report = import_campaign(store, c)
    t_import = time.perf_counter() - t0
    store.save_campaign(c.model_copy(update={"name": "again"}))
    t0 = time.perf_counter()
    store.add_contacts("again", parsed.contacts)
    t_store = time.perf_counter() - t0
    store.close()

    # Baseline: one INSERT and one commit per contact (same rows, plain sqlite3).
    db = sqlite3.connect(tmp / "naive.db")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE c (id INTEGER PRIMARY KEY, number TEXT UNIQUE, tz TEXT, f TEXT)")
    sample = parsed.contacts[: min(5000, len(parsed.contacts))]
    t0 = time.perf_counter()
    for x in sample:
        db.execute("INSERT OR IGNORE INTO c (number, tz, f) VALUES (?, ?, ?)",
                   (x.number, " ".join(x.timezones), repr(x.fields)))
        db.commit()
    t_naive_store = (time.perf_counter() - t0) / len(sample) * len(parsed.contacts)
    db.close()
    print(f"import: {n} rows -> {report.added} added, {report.duplicates} duplicates, "
          f"{len(report.rejected)} rejected")
    print(f"  parse+E.164+tz+dedupe: {t_parse:.2f} s ({n / t_parse:,.0f} rows/s)")
    print(f"  full import (parse + batched insert): {t_import:.2f} s "
          f"(target < 10 s: {'ok' if t_import < 10 else 'MISSED'})")
    print(f"  insert part: {t_store:.2f} s; naive insert+commit per row (extrapolated from "
          f"{len(sample)}): {t_naive_store:.2f} s -> {t_naive_store / max(t_store, 1e-9):.1f}x")


class InstantAnswer:
    async def place(self, request: CallRequest) -> CallRecord:
        now = datetime.now(UTC)
        return CallRecord(CallStatus.COMPLETED, 200, started_at=now, answered_at=now,
                          ended_at=now, digits="1", path=("greeting",))


CPS = 1000  # the model's highest calls/second: both loops pace to it (floor 1 ms/call)


def naive_loop(path: Path, n: int) -> float:
    """The baseline dialer: one contact per query, one commit per step, sequential,
    paced to the same calls/second as ours."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE c (id INTEGER PRIMARY KEY, number TEXT, state TEXT, "
               "attempts INT, next_at TEXT)")
    db.execute("CREATE TABLE a (id INTEGER PRIMARY KEY, cid INT, no INT, status TEXT, "
               "started TEXT, ended TEXT)")
    db.executemany("INSERT INTO c (number, state, attempts) VALUES (?, 'pending', 0)",
                   [(f"+1212{2000000 + i}",) for i in range(n)])
    placer = InstantAnswer()
    loop = asyncio.new_event_loop()
    t0 = time.perf_counter()
    slot = t0
    while True:
        wait = slot - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        slot = max(slot, time.perf_counter()) + 1 / CPS
        row = db.execute("SELECT id, attempts FROM c WHERE state='pending' AND "
                         "(next_at IS NULL OR next_at <= ?) LIMIT 1",
                         (datetime.now(UTC).isoformat(),)).fetchone()
        if row is None:
            break
        db.execute("BEGIN IMMEDIATE")
        db.execute("UPDATE c SET state='in-flight', attempts=? WHERE id=?", (row[1] + 1, row[0]))
        aid = db.execute("INSERT INTO a (cid, no, status) VALUES (?, ?, 'queued')",
                         (row[0], row[1] + 1)).lastrowid
        db.execute("COMMIT")
        result = loop.run_until_complete(placer.place(None))  # type: ignore[arg-type]
        db.execute("BEGIN IMMEDIATE")
        db.execute("UPDATE a SET status=?, started=?, ended=? WHERE id=?",
                   (result.status.value, str(result.started_at), str(result.ended_at), aid))
        db.execute("UPDATE c SET state='done' WHERE id=?", (row[0],))
        db.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    loop.close()
    db.close()
    return elapsed


def bench_dialer(tmp: Path, n: int) -> None:
    from autocall.campaign.model import NewContact

    for channels in (1, 100):
        store = Store(f"sqlite:///{tmp / f'dial-{channels}.db'}")
        c = campaign(tmp, f"dial-{channels}", [], channels, CPS)
        store.save_campaign(c)
        store.add_contacts(c.name, [NewContact(f"+1212{2000000 + i}", ("America/New_York",),
                                               {}, "bench", i) for i in range(n)])
        t0 = time.perf_counter()
        asyncio.run(run_campaign(c.name, store, InstantAnswer(), poll=0.05))
        ours = time.perf_counter() - t0
        store.close()
        print(f"dialer, {channels} channel(s), {CPS} calls/s cap: {n} calls in {ours:.2f} s -> "
              f"{n / ours:,.0f} calls/s, {ours / n * 1e3:.2f} ms overhead per call")
    naive = naive_loop(tmp / "naive-dial.db", n)
    print(f"floor at {CPS}/s: {n / CPS:.2f} s; "
          f"baseline naive query-per-contact loop: {n} calls in {naive:.2f} s -> "
          f"{n / naive:,.0f} calls/s, {naive / n * 1e3:.2f} ms per call "
          f"(ours at 100 channels vs naive: {naive / ours:.2f}x)")


SIPP_PORT = 28400


def sustained_rate(starts: list[float]) -> float:
    """Calls/s as the least-squares slope of start time against call number."""
    t = sorted(starts)
    n = len(t)
    k_mean, t_mean = (n - 1) / 2, sum(t) / n
    cov = sum((k - k_mean) * (x - t_mean) for k, x in enumerate(t))
    var = sum((k - k_mean) ** 2 for k in range(n))
    return var / cov if cov > 0 else float("inf")


def busiest_second(starts: list[float]) -> int:
    t = sorted(starts)
    return max(bisect.bisect_left(t, x + 1.0) - i for i, x in enumerate(t))


async def _sip_run(tmp: Path, n: int, channels: int, cps: float, hold: float,
                   with_campaign: bool) -> tuple[list[float], float, int, int]:
    """(call start times, mean call seconds, answered, failed) for n calls to SIPp."""
    from autocall.campaign.model import NewContact
    from autocall.campaign.placer import SipPlacer
    from autocall.telephony.call import UserAgent

    tree = tmp / "hold.yaml"
    tree.write_text(f"name: hold\nstart: wait\nnodes:\n  wait: {{pause: {hold}, next: bye}}\n"
                    "  bye: {hangup: done}\n")
    ua = await UserAgent.start(bind_host="127.0.0.1", bind_port=SIPP_PORT + 10)
    placer = SipPlacer(ua, target=f"sip:sipp@127.0.0.1:{SIPP_PORT}",
                       tts_cache_dir=tmp / "tts", recordings_dir=tmp / "rec")
    starts: list[float] = []
    try:
        if with_campaign:
            store = Store(f"sqlite:///{tmp / f'sip-{channels}.db'}")
            c = campaign(tmp, "sip", [], channels, cps).model_copy(
                update={"tree": str(tree), "ring_timeout": 10.0})
            store.save_campaign(c)
            store.add_contacts(c.name, [NewContact(f"+1212{3000000 + i}", ("America/New_York",),
                                                   {}, "bench", i) for i in range(n)])
            await run_campaign(c.name, store, placer, poll=0.2)
            rows = store.attempts(c.name)
            store.close()
            t = [(a.started_at or a.created_at).timestamp() for a in rows]
            held = [(a.ended_at - a.started_at).total_seconds() for a in rows
                    if a.started_at and a.ended_at]
            answered = sum(1 for a in rows if a.answered_at is not None)
            return t, sum(held) / max(1, len(held)), answered, len(rows) - answered
        # Baseline: the same placer driven by a bare loop (a semaphore and deadline
        # pacing), no store, no plan, no records.
        sem = asyncio.Semaphore(channels)
        results: list[CallRecord] = []

        async def one(i: int) -> None:
            async with sem:
                starts.append(time.perf_counter())
                results.append(await placer.place(CallRequest(
                    "bare", i, 1, i, f"+1212{3000000 + i}", "+12025550100", str(tree), {},
                    10.0)))

        tasks = []
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for i in range(n):  # deadline pacing: no drift when the loop runs late
            await asyncio.sleep(max(0.0, t0 + i / cps - loop.time()))
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
        answered = sum(1 for r in results if r.answered_at is not None)
        held = [(r.ended_at - r.started_at).total_seconds() for r in results
                if r.started_at and r.ended_at]
        return starts, sum(held) / max(1, len(held)), answered, n - answered
    finally:
        await ua.close()


def bench_sip(tmp: Path, n: int, channels: int, cps: float, hold: float) -> None:
    """Sustained new calls/s of a real campaign against SIPp, and a bare loop baseline."""
    import shutil
    import subprocess

    scenario = Path(__file__).resolve().parents[1] / "tests/sip/scenarios/uas_answer.xml"
    sipp = shutil.which("sipp")
    if sipp is None:
        print("sip: sipp not installed (scripts/setup.sh installs it); skipped")
        return
    for label, with_campaign in (("bare loop (baseline)", False), ("campaign", True)):
        proc = subprocess.Popen(
            [sipp, "-sf", str(scenario), "-i", "127.0.0.1", "-p", str(SIPP_PORT), "-mi",
             "127.0.0.1", "-mp", str(SIPP_PORT + 2), "-m", str(n), "-nostdin",
             "-timeout", f"{int(n / cps + hold + 60)}s", "-key", "dtmf_pt", "101",
             "-max_recv_loops", "1000"], cwd=tmp, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            time.sleep(0.5)
            starts, held, ok, bad = asyncio.run(
                _sip_run(tmp, n, channels, cps, hold, with_campaign))
        finally:
            proc.kill()
            proc.wait()
        span = max(starts) - min(starts)
        ceiling = channels / held if held > 0 else float("inf")
        bound = " (channel-bound)" if ceiling < cps * 1.01 else ""
        print(f"sip {label}: {n} calls, {channels} channels, target {cps}/s, hold {hold}s: "
              f"{sustained_rate(starts):.2f} new calls/s sustained "
              f"(first to last {(n - 1) / span if span > 0 else float('inf'):.2f}), "
              f"busiest second {busiest_second(starts)}, channel ceiling "
              f"{ceiling:.1f}/s{bound}; {ok} answered, {bad} not")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--contacts", type=int, default=100_000)
    ap.add_argument("--calls", type=int, default=3000)
    ap.add_argument("--sip-calls", type=int, default=0,
                    help="also run N real SIP calls against SIPp (e.g. 1500)")
    ap.add_argument("--channels", type=int, default=500)
    ap.add_argument("--cps", type=float, default=50.0)
    ap.add_argument("--hold", type=float, default=10.0, help="seconds each answered call lasts")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        bench_import(Path(d), args.contacts)
        bench_dialer(Path(d), args.calls)
        if args.sip_calls:
            bench_sip(Path(d), args.sip_calls, args.channels, args.cps, args.hold)


if __name__ == "__main__":
    main()
