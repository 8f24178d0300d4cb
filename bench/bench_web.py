"""The console's cost to a running campaign (issue 15): API latency and RTP pacing.

    python bench/bench_web.py                      # 200 calls, 50 channels, 50 req/s
    python bench/bench_web.py --calls 100 --hold 4 --viewers 3

Runs ``autocall web`` as a user starts it (the server and its dialer worker, two
processes) on a SQLite store, against SIPp callees (``tests/sip/scenarios/uas_bench.xml``)
whose SDP sends our RTP to a measuring sink in a process of its own (``bench_calls.py``'s
sink: kernel receive time stamps, gaps per SSRC). Three runs, in one go:

1. idle: API requests at ``--rate``/s, no campaign: the latency baseline;
2. console closed: a campaign of ``--calls`` contacts (each call held ``--hold`` s) and
   no HTTP but its start: the RTP pacing baseline;
3. console open: the same campaign again with API requests at ``--rate``/s and
   ``--viewers`` console viewers (each the campaign page, its live-counter SSE stream,
   and its two charts every 5 s, as the page redraws them).

API requests are sent open-loop on a fixed schedule (a late answer does not slow the
next request) and timed from their scheduled start, so queueing counts; the clients run
at nice 10, as they would run on other machines. Prints API
latency p50/p99 (3 against 1) and the RTP inter-arrival p99 and rate (3 against 2) as
ratios, with the load average before and after each run: the machine's other work moves
these figures, so read the ratios and the load together.

Needs sipp; ports 19095-19101 (``--ports`` moves them).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_calls import SCENARIO, StreamStats, _burst, _sink, stream_stats  # noqa: E402

from autocall.campaign.contacts import import_campaign  # noqa: E402
from autocall.campaign.model import CampaignState, load_campaign  # noqa: E402
from autocall.campaign.store import Store  # noqa: E402
from autocall.web import accounts  # noqa: E402
from autocall.web.accounts import Role  # noqa: E402

PORTS = 19095  # sipp, its media (+4, +6), the sink (+2), our SIP (+3), the web (+4)
CLIENT_NICE = 10
CLI = [sys.executable, "-c", "from autocall.cli import main; main()"]


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f} (5 min {five:.2f}) on {os.cpu_count()} cores"


def write_campaign(folder: Path, name: str, n: int, channels: int, cps: float,
                   hold: float) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tree.yaml").write_text(
        f"name: hold\noutcomes: [done]\nstart: talk\nnodes:\n"
        f"  talk: {{pause: {hold}, next: bye}}\n  bye: {{hangup: done}}\n", encoding="utf-8")
    rows = ["phone,first_name"] + [f"+1212{4000000 + i:07d},P{i}" for i in range(n)]
    (folder / "contacts.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    path = folder / "campaign.yaml"
    path.write_text(
        f"name: {name}\ntree: tree.yaml\ncontacts: [contacts.csv]\n"
        "caller_ids: ['+12025550100']\n"
        "window: {days: [mon, tue, wed, thu, fri, sat, sun], start: '00:00', "
        "end: '23:59:59.999999', override_legal_hours: true}\n"
        f"channels: {channels}\ncalls_per_second: {cps}\nring_timeout: 10\n"
        "retry: {max_attempts: 1}\n", encoding="utf-8")
    return path


@dataclass
class Latency:
    sent: int
    failed: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    late_starts: int  # requests the client itself could not start within 5 ms


async def api_load(base: str, token: str, rate: float, until: asyncio.Event,
                   campaign: str) -> Latency:
    """GETs at ``rate``/s until ``until`` is set: a CRM polling calls and a campaign."""
    paths = [f"/v1/campaigns/{campaign}", f"/v1/campaigns/{campaign}/attempts?limit=50",
             "/v1/calls?limit=20", f"/v1/campaigns/{campaign}/explain/+12124000007",
             "/v1/campaigns"]
    took: list[float] = []
    failed = late = 0
    loop = asyncio.get_running_loop()
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits,
                                 headers={"Authorization": f"Bearer {token}"}) as client:
        async def one(path: str, due: float) -> None:
            nonlocal failed
            try:
                answer = await client.get(path)
                ok = answer.status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok:
                took.append(loop.time() - due)
            else:
                failed += 1

        tasks = []
        start = loop.time()
        i = 0
        while not until.is_set():
            due = start + i / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.005:
                late += 1
            tasks.append(asyncio.create_task(one(paths[i % len(paths)], due)))
            i += 1
        await asyncio.gather(*tasks)
    ms = np.array(took) * 1000 if took else np.array([float("inf")])
    return Latency(i, failed, float(np.percentile(ms, 50)), float(np.percentile(ms, 99)),
                   float(ms.max()), late)


async def viewer(base: str, token: str, campaign: str, until: asyncio.Event) -> int:
    """One console viewer, as console.js behaves on a running campaign's page: the page
    once, its live counters (SSE, reconnecting like EventSource), and both charts
    redrawn every 5 s (its CHART_EVERY while calls end). Returns the SSE events it got."""
    headers = {"Authorization": f"Bearer {token}"}
    got = 0
    async with httpx.AsyncClient(base_url=base, timeout=30, headers=headers) as client:
        async def stream() -> None:
            nonlocal got
            while not until.is_set():
                try:
                    async with client.stream("GET", f"/campaigns/{campaign}/events") as a:
                        async for line in a.aiter_lines():
                            if line.startswith("data:"):
                                got += 1
                except httpx.HTTPError:
                    await asyncio.sleep(1.0)

        sse = asyncio.create_task(stream())
        paths = [f"/campaigns/{campaign}"]
        v = 0
        while not until.is_set():
            for path in paths:
                with contextlib.suppress(httpx.HTTPError):
                    await client.get(path)
            v += 1
            paths = [f"/campaigns/{campaign}/charts/{slug}.png?v={v}"
                     for slug in ("outcomes", "per-hour")]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(until.wait(), 5.0)
        sse.cancel()
        with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
            await sse
    return got


@dataclass
class Run:
    name: str
    latency: Latency | None
    rtp: StreamStats | None
    seconds: float
    sse_events: int
    load_before: str
    load_after: str


async def campaign_run(store: Store, base: str, token: str, name: str, *, rate: float,
                       viewers: int, limit: float) -> tuple[Latency | None, int, float]:
    until = asyncio.Event()
    api = None
    views: list[asyncio.Task[int]] = []
    async with httpx.AsyncClient(base_url=base, timeout=30,
                                 headers={"Authorization": f"Bearer {token}"}) as client:
        began = time.monotonic()
        answer = await client.post(f"/v1/campaigns/{name}/start")
        if answer.status_code != 200:
            raise SystemExit(f"start {name}: {answer.status_code} {answer.text}")
    if rate:
        api = asyncio.create_task(api_load(base, token, rate, until, name))
    views = [asyncio.create_task(viewer(base, token, name, until)) for _ in range(viewers)]
    while store.state(name)[0] is not CampaignState.COMPLETED:
        if time.monotonic() - began > limit:
            until.set()
            raise SystemExit(f"{name} did not complete in {limit:g} s")
        await asyncio.sleep(0.5)
    seconds = time.monotonic() - began
    until.set()
    latency = await api if api is not None else None
    events = sum(await asyncio.gather(*views))
    return latency, events, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--channels", type=int, default=50)
    parser.add_argument("--cps", type=float, default=20.0)
    parser.add_argument("--hold", type=float, default=6.0, help="seconds each call lasts")
    parser.add_argument("--rate", type=float, default=50.0, help="API requests per second")
    parser.add_argument("--viewers", type=int, default=5)
    parser.add_argument("--idle-seconds", type=float, default=15.0)
    parser.add_argument("--ports", type=int, default=PORTS, help="the first of 7 ports")
    args = parser.parse_args()
    SIPP_PORT, SINK_PORT, UA_PORT, WEB_PORT = (  # noqa: N806 - constants for one run
        args.ports, args.ports + 2, args.ports + 3, args.ports + 4)
    sipp_bin = shutil.which("sipp")
    if sipp_bin is None:
        raise SystemExit("sipp is not installed (apt-get install sip-tester)")
    limit = 60 + 3 * args.calls * (args.hold + 1) / args.channels
    work = Path(tempfile.mkdtemp(prefix="bench-web-"))
    db = f"sqlite:///{work / 'web.db'}"
    store = Store(db)
    names = ["closed", "open"]
    for name in names:
        import_campaign(store, load_campaign(write_campaign(
            work / name, name, args.calls, args.channels, args.cps, args.hold)))
    token = accounts.create_token(store.engine, "bench", Role.ADMIN)
    sipp = subprocess.Popen(
        [sipp_bin, "-sf", str(SCENARIO), "-i", "127.0.0.1", "-p", str(SIPP_PORT), "-mi",
         "127.0.0.1", "-mp", str(SIPP_PORT + 4), "-key", "sink_port", str(SINK_PORT), "-m",
         str(2 * args.calls + 2), "-nostdin", "-timeout", f"{int(limit * 3)}s",
         "-max_socket", "4096"], cwd=work, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    parent, child = mp.Pipe()
    sink = mp.Process(target=_sink, args=(SINK_PORT, child, _burst(), False), daemon=True)
    sink.start()
    assert parent.recv() == "ready"
    env = {**os.environ, "AUTOCALL_SIP_HOST": "127.0.0.1", "AUTOCALL_SIP_PORT": str(SIPP_PORT),
           "AUTOCALL_BIND_HOST": "127.0.0.1", "AUTOCALL_BIND_PORT": str(UA_PORT),
           "AUTOCALL_TTS": "espeak", "AUTOCALL_TTS_CACHE": str(work / "tts"),
           "AUTOCALL_WEB_SECRET": "bench"}
    log = open(work / "web.log", "wb")  # noqa: SIM115 - open for the server's life
    web = subprocess.Popen([*CLI, "web", "--port", str(WEB_PORT), "--db", db], stdout=log,
                           stderr=subprocess.STDOUT, env=env, cwd=work)
    base = f"http://127.0.0.1:{WEB_PORT}"
    runs: list[Run] = []
    # From here this process is only the clients (a CRM and browsers, elsewhere in real
    # life): at a lower priority, so on this small machine their own CPU is not what
    # slows the server or the media. (The sink of the next runs is started niced too;
    # it stamps arrivals with the kernel's receive time, so its delays do not count.)
    os.nice(CLIENT_NICE)
    print(f"bench_web: {args.calls} calls x {args.hold:g} s on {args.channels} channels at "
          f"{args.cps:g} calls/s; API {args.rate:g} req/s; {args.viewers} viewers; "
          f"{load()}", flush=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or web.poll() is not None:
                raise SystemExit(f"autocall web did not start: {(work / 'web.log').read_text()}")
            time.sleep(0.2)
        time.sleep(3.0)  # the worker's own start (imports, SIP socket)

        before = load()
        until = asyncio.Event()

        async def idle() -> Latency:
            task = asyncio.create_task(api_load(base, token, args.rate, until, "closed"))
            await asyncio.sleep(args.idle_seconds)
            until.set()
            return await task

        latency = asyncio.run(idle())
        runs.append(Run("idle (no campaign)", latency, None, args.idle_seconds, 0, before,
                        load()))
        for name, rate, viewers in (("closed", 0.0, 0), ("open", args.rate, args.viewers)):
            before = load()
            parent.send("start")
            lat, events, seconds = asyncio.run(campaign_run(
                store, base, token, name, rate=rate, viewers=viewers, limit=limit))
            parent.send("stop")
            stats = stream_stats(parent.recv())
            runs.append(Run(f"campaign, console {name}", lat, stats, seconds, events,
                            before, load()))
            if name == "closed":  # a fresh sink for the next run
                sink.join(5)
                parent, child = mp.Pipe()
                sink = mp.Process(target=_sink, args=(SINK_PORT, child, _burst(), False),
                                  daemon=True)
                sink.start()
                assert parent.recv() == "ready"
    finally:
        web.terminate()
        try:
            web.wait(90)
        except subprocess.TimeoutExpired:
            web.kill()
        sipp.terminate()
        sipp.wait(10)
        if sink.is_alive():
            sink.terminate()
        store.close()
        log.close()

    for r in runs:
        print(f"\n{r.name}: {r.seconds:.1f} s; {r.load_before} -> {r.load_after}")
        if r.latency is not None:
            q = r.latency
            print(f"  API: {q.sent} GETs, {q.failed} failed, p50 {q.p50_ms:.1f} ms, "
                  f"p99 {q.p99_ms:.1f} ms, max {q.max_ms:.1f} ms ({q.late_starts} started "
                  "late by the client)")
        if r.rtp is not None:
            s = r.rtp
            print(f"  RTP: {s.streams} streams, {s.pps_mean:.2f} packets/s "
                  f"({s.pps_min:.2f}-{s.pps_max:.2f}), inter-arrival p99 {s.p99_ms:.1f} ms, "
                  f"{s.healthy} healthy (rate within 0.1 %, p99 <= 22 ms)")
        if r.sse_events:
            print(f"  console: {r.sse_events} live-counter events to the viewers")
    idle_run, closed, opened = runs
    if idle_run.latency and opened.latency:
        print(f"\nAPI latency during the campaign vs idle: p50 x"
              f"{opened.latency.p50_ms / idle_run.latency.p50_ms:.2f}, p99 x"
              f"{opened.latency.p99_ms / idle_run.latency.p99_ms:.2f}")
    if closed.rtp and opened.rtp:
        print(f"RTP p99 with the console open vs closed: x"
              f"{opened.rtp.p99_ms / closed.rtp.p99_ms:.2f} "
              f"({opened.rtp.p99_ms:.1f} vs {closed.rtp.p99_ms:.1f} ms); healthy streams "
              f"{opened.rtp.healthy}/{opened.rtp.streams} vs "
              f"{closed.rtp.healthy}/{closed.rtp.streams}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
