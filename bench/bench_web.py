"""The console beside a running campaign: does a browser watching it cost the calls
anything, and how fast does the API answer meanwhile?

    python bench/bench_web.py                  # 200 calls a phase, 20 calls/s, 3 s each
    python bench/bench_web.py --calls 100 --rounds 1

Real processes, as deployed: ``autocall web --no-dialer`` (the console and API) and
``autocall campaign run`` (the dialer) on one SQLite store, calling SIPp
(``tests/sip/scenarios/uas_bench.xml``), whose SDP points our RTP at a measuring sink in
a process of its own (kernel receive time stamps; ``bench_calls``'s sink and
statistics). Each call plays a 3 s prompt, so each stream is 150 packets.

Phases, same run, same web process (first the API alone, then ``--rounds`` times the
three campaign phases, each on an identical campaign of its own):

- ``idle``: the API load with no campaign running: the latency baseline.
- ``no console``: a campaign dials; nobody looks at the web node. The RTP baseline.
- ``console open``: a console is open on the campaign: an SSE client on its live
  counters, and its page fetched every 3 s (as htmx polls the attempts table).
- ``console + API``: the same, and an API client sends ``--rate`` requests/s (the
  campaign, its attempts page, the campaign list, a DNC check, in turn). Requests leave
  on a fixed schedule from a pool of threads, and a request's latency counts from its
  scheduled time, so a stall shows as latency rather than as fewer requests.

Printed: per phase the streams, packets/s, pooled p99 inter-arrival gap and the calls
within 0.1 % of 50 packets/s with a p99 gap of 22 ms or less; per kind of phase the
median p99 over the rounds, its spread (the noise) and its ratio to no console; the
API's p50/p99/max idle and during the campaigns, and their ratio; the load average (2
cores shared with other work: read the ratios and the spread, not absolute figures).
Ports 19400-19429 on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import wave
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_calls import SCENARIO, StreamStats, _sink, stream_stats  # noqa: E402

from autocall.audio import g711  # noqa: E402
from autocall.campaign.contacts import import_campaign  # noqa: E402
from autocall.campaign.control import Verb, steer  # noqa: E402
from autocall.campaign.model import load_campaign  # noqa: E402
from autocall.campaign.store import Store  # noqa: E402
from autocall.web import accounts  # noqa: E402
from autocall.web.accounts import Role  # noqa: E402

SIPP_PORT, SINK_PORT, SIPP_MEDIA, UA_PORT, WEB_PORT = 19400, 19402, 19404, 19410, 19420
CLI = [sys.executable, "-c", "from autocall.cli import main; main()"]
HOLD = 3.0

TREE = "name: bench-web\noutcomes: [done]\nstart: talk\nnodes:\n" \
       "  talk: {play: audio/tone.wav, next: bye}\n  bye: {hangup: done}\n"


def _tone(path: Path, seconds: float) -> None:
    """A 440 Hz tone, 8 kHz mono 16-bit: what each call plays (its RTP is measured)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(8000 * seconds)) / 8000
    pcm = (0.3 * 32767 * np.sin(2 * np.pi * 440 * t)).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(pcm.tobytes())


def _campaign_yaml(folder: Path, name: str, first: int, n: int, rate: float) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = "".join(f"+1212{4000000 + first + i:07d}\n" for i in range(n))
    (folder / "contacts.csv").write_text("phone\n" + rows, encoding="utf-8")
    path = folder / f"{name}.yaml"
    path.write_text(
        f"name: {name}\ntree: {folder / 'tree.yaml'}\ncontacts: [contacts.csv]\n"
        "caller_ids: ['+12025550100']\n"
        "window: {days: [mon, tue, wed, thu, fri, sat, sun], start: '00:00', "
        "end: '23:59:59.999999', override_legal_hours: true}\n"
        f"channels: {int(rate * (HOLD + 2)) + 10}\ncalls_per_second: {rate}\n"
        "ring_timeout: 10\nretry: {max_attempts: 1}\n", encoding="utf-8")
    return path


@contextlib.contextmanager
def _process(args: list[str], log: Path, env: dict[str, str], cwd: Path
             ) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class ApiLoad:
    """``rate`` GETs a second on a fixed schedule; latency from the scheduled time."""

    def __init__(self, base: str, token: str, paths: list[str], rate: float) -> None:
        self.base, self.paths, self.rate = base, paths, rate
        self.headers = {"Authorization": f"Bearer {token}"}
        self.latencies: list[float] = []
        self.by_path: dict[str, list[float]] = {}
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._local = threading.local()
        self._thread: threading.Thread | None = None

    def _client(self) -> httpx.Client:
        client: httpx.Client | None = getattr(self._local, "client", None)
        if client is None:
            client = httpx.Client(base_url=self.base, headers=self.headers, timeout=10)
            self._local.client = client
        return client

    def _one(self, due: float, path: str) -> None:
        try:
            answer = self._client().get(path)
            if answer.status_code != 200:
                self.failures.append(f"{path}: {answer.status_code}")
        except httpx.HTTPError as exc:
            self.failures.append(f"{path}: {exc!r}")
        took = time.perf_counter() - due
        self.latencies.append(took)
        self.by_path.setdefault(path.split("?")[0].replace(self.paths[0], "{name}"),
                                []).append(took)

    def _run(self) -> None:
        with ThreadPoolExecutor(max_workers=16) as pool:
            start = time.perf_counter()
            k = 0
            while not self._stop.is_set():
                due = start + k / self.rate
                wait = due - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                pool.submit(self._one, due, self.paths[k % len(self.paths)])
                k += 1

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)


class Console:
    """What an open campaign page costs the web node: the SSE stream of counters, and
    the page itself every 3 s (htmx's poll of the attempts table)."""

    def __init__(self, base: str, token: str, name: str) -> None:
        self.base, self.name = base, name
        self.headers = {"Authorization": f"Bearer {token}"}
        self.events = 0
        self.pages = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _sse(self) -> None:
        with httpx.Client(base_url=self.base, headers=self.headers, timeout=None) as client, \
                client.stream("GET", f"/campaigns/{self.name}/events") as stream:
            for line in stream.iter_lines():
                if line.startswith("event: counters"):
                    self.events += 1
                if self._stop.is_set():
                    return

    def _page(self) -> None:
        with httpx.Client(base_url=self.base, headers=self.headers, timeout=30) as client:
            while not self._stop.wait(3.0):
                if client.get(f"/campaigns/{self.name}").status_code == 200:
                    self.pages += 1

    def start(self) -> None:
        self._threads = [threading.Thread(target=self._sse, daemon=True),
                         threading.Thread(target=self._page, daemon=True)]
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        self._threads[1].join(10)  # the SSE thread ends at its next event (1 s)
        self._threads[0].join(5)


def _percentiles(values: list[float]) -> tuple[float, float, float]:
    a = np.array(values) * 1000
    return float(np.percentile(a, 50)), float(np.percentile(a, 99)), float(a.max())


def _dial(store: Store, db: str, name: str, n: int, env: dict[str, str], work: Path
          ) -> tuple[StreamStats, float]:
    """Start ``name``, run a dialer until every contact is done; a fresh sink's
    statistics over the phase and its length in seconds."""
    sink_proc, sink = _sink_process()
    try:
        return _measured(store, db, name, n, env, work, sink)
    finally:
        sink_proc.join(10)
        if sink_proc.is_alive():
            sink_proc.kill()


def _measured(store: Store, db: str, name: str, n: int, env: dict[str, str], work: Path,
              sink: Connection) -> tuple[StreamStats, float]:
    steer(store, name, Verb.START, "bench_web")
    sink.send("start")
    t0 = time.perf_counter()
    dialer_env = {**env, "AUTOCALL_MEDIA_PRIORITY": env["BENCH_DIALER_PRIORITY"]}
    with _process([*CLI, "campaign", "run", name, "--db", db, "--node", f"bench-{name}"],
                  work / f"dialer-{name}.log", dialer_env, work) as dialer:
        deadline = time.monotonic() + n / 2 + 120
        while dialer.poll() is None:
            if time.monotonic() > deadline:
                raise SystemExit(f"the dialer did not finish {name}: see {work}")
            time.sleep(0.5)
    seconds = time.perf_counter() - t0
    sink.send("stop")
    stats = stream_stats(sink.recv())
    if dialer.returncode != 0:
        raise SystemExit(f"the dialer failed ({dialer.returncode}): "
                         f"{(work / f'dialer-{name}.log').read_text()[-2000:]}")
    return stats, seconds


def _sink_process() -> tuple[mp.Process, Connection]:
    silence = bytes([0x80, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0x5E, 0xED]) + \
        g711.ulaw_encode(np.zeros(160, dtype=np.int16))
    parent, child = mp.Pipe()
    proc = mp.Process(target=_sink, args=(SINK_PORT, child, [silence]), daemon=True)
    proc.start()
    if not parent.poll(10) or parent.recv() != "ready":
        raise SystemExit("the RTP sink did not start")
    return proc, parent


PHASES = (("no console", False, False), ("console open", True, False),
          ("console + API", True, True))
"""(label, an open console on the campaign, the API load during it)."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200, help="calls per phase")
    parser.add_argument("--cps", type=float, default=20.0, help="campaign calls/s")
    parser.add_argument("--rate", type=float, default=50.0, help="API requests/s")
    parser.add_argument("--idle", type=float, default=8.0, help="seconds of the idle API phase")
    parser.add_argument("--priority", choices=("normal", "high", "realtime"),
                        default="normal", help="the dialer's media priority "
                        "(AUTOCALL_MEDIA_PRIORITY; the web node stays normal)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="times the three campaign phases run (the spread is the noise)")
    args = parser.parse_args()
    sipp = shutil.which("sipp")
    if sipp is None:
        raise SystemExit("sipp is not installed (apt-get install sip-tester)")

    work = Path(tempfile.mkdtemp(prefix="bench-web-"))
    db = f"sqlite:///{work / 'bench.db'}"
    (work / "c").mkdir()
    (work / "c" / "tree.yaml").write_text(TREE, encoding="utf-8")
    _tone(work / "c" / "audio" / "tone.wav", HOLD)
    store = Store(db)
    names = [f"p{p}-r{r}" for r in range(args.rounds) for p in range(len(PHASES))]
    for i, name in enumerate(names):
        import_campaign(store, load_campaign(_campaign_yaml(
            work / "c", name, i * args.calls, args.calls, args.cps)))
    token = accounts.create_token(store.engine, "bench", Role.MARKETER)
    env = {**os.environ, "AUTOCALL_SIP_HOST": "127.0.0.1", "AUTOCALL_SIP_PORT": str(SIPP_PORT),
           "AUTOCALL_BIND_PORT": str(UA_PORT), "AUTOCALL_TTS_CACHE": str(work / "tts"),
           "AUTOCALL_RECORDINGS": str(work / "rec"), "AUTOCALL_WEB_SECRET": "bench",
           "AUTOCALL_PROMPTS": str(work / "c"), "BENCH_DIALER_PRIORITY": args.priority}
    base = f"http://127.0.0.1:{WEB_PORT}"

    def paths(name: str) -> list[str]:
        return [f"/v1/campaigns/{name}", f"/v1/campaigns/{name}/attempts?limit=50",
                "/v1/campaigns", "/v1/dnc/+12124000001"]

    results: list[tuple[str, StreamStats, float, int]] = []
    loads: list[ApiLoad] = []
    with contextlib.ExitStack() as stack:
        stack.callback(store.close)
        stack.enter_context(_process(
            [sipp, "-sf", str(SCENARIO), "-i", "127.0.0.1", "-p", str(SIPP_PORT),
             "-mi", "127.0.0.1", "-mp", str(SIPP_MEDIA), "-key", "sink_port", str(SINK_PORT),
             "-m", str(len(names) * args.calls + 2), "-nostdin", "-timeout", "900s",
             "-max_socket", "4096"], work / "sipp.log", env, work))
        web = stack.enter_context(_process(
            [*CLI, "web", "--no-dialer", "--port", str(WEB_PORT), "--db", db],
            work / "web.log", env, work))
        deadline = time.monotonic() + 30
        while True:
            if web.poll() is not None:
                raise SystemExit((work / "web.log").read_text()[-2000:])
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise SystemExit("autocall web did not answer /healthz in 30 s")
            time.sleep(0.2)

        warm = ApiLoad(base, token, paths(names[0]), args.rate)  # first queries, clients
        warm.start()
        time.sleep(2)
        warm.stop()
        idle = ApiLoad(base, token, paths(names[0]), args.rate)
        idle.start()
        time.sleep(args.idle)
        idle.stop()

        for i, name in enumerate(names):
            label, watched, api = PHASES[i % len(PHASES)]
            console = Console(base, token, name) if watched else None
            load = ApiLoad(base, token, paths(name), args.rate) if api else None
            for part in (console, load):
                if part is not None:
                    part.start()
            stats, seconds = _dial(store, db, name, args.calls, env, work)
            if load is not None:
                load.stop()
                loads.append(load)
            events = 0
            if console is not None:
                console.stop()
                events = console.events
            results.append((label, stats, seconds, events))
        average = os.getloadavg()

    print(f"bench_web: {args.calls} calls a phase at {args.cps:g} calls/s, {HOLD:g} s of "
          f"RTP each, {args.rounds} round(s), dialer priority {args.priority}; "
          f"API {args.rate:g} requests/s; files in {work}")
    print(f"load average {average[0]:.2f} {average[1]:.2f} {average[2]:.2f} "
          f"({os.cpu_count()} cores shared with other work)")
    print()
    print(f"{'RTP at the sink':<18}{'round':>6}{'streams':>8}{'pkt/s':>8}{'p99 gap ms':>12}"
          f"{'healthy':>9}{'phase s':>9}{'SSE events':>12}")
    for i, (label, st, secs, events) in enumerate(results):
        print(f"{label:<18}{i // len(PHASES) + 1:>6}{st.streams:>8}{st.pps_mean:>8.2f}"
              f"{st.p99_ms:>12.2f}{st.healthy:>9}{secs:>9.1f}{events:>12}")
    by_phase = {label: [r[1].p99_ms for r in results if r[0] == label] for label, _, _ in PHASES}
    base_p99 = float(np.median(by_phase["no console"]))
    for label, _, _ in PHASES:
        values = by_phase[label]
        print(f"p99 gap {label:<16} median {np.median(values):6.2f} ms "
              f"(rounds {min(values):.2f}..{max(values):.2f})  ratio vs no console "
              f"{np.median(values) / base_p99:.3f}")
    print()
    print(f"{'API latency ms':<22}{'requests':>9}{'p50':>8}{'p99':>8}{'max':>8}{'failed':>8}")
    busy = ApiLoad(base, token, [], args.rate)
    for run in loads:
        busy.latencies += run.latencies
        busy.failures += run.failures
    for label, run in (("idle", idle), ("during the campaigns", busy)):
        p50, p99, top = _percentiles(run.latencies)
        print(f"{label:<22}{len(run.latencies):>9}{p50:>8.1f}{p99:>8.1f}{top:>8.1f}"
              f"{len(run.failures):>8}")
    ratio = _percentiles(busy.latencies)[1] / _percentiles(idle.latencies)[1]
    print(f"ratio API p99 during the campaigns / idle: {ratio:.2f}")
    for path, took in sorted(idle.by_path.items()):
        p50, p99, _ = _percentiles(took)
        print(f"  idle {path:<40} p50 {p50:7.1f}  p99 {p99:7.1f}")
    failures = idle.failures + busy.failures
    if failures:
        print(f"first failures: {failures[:5]}")
    return 0 if not failures and all(r[1].streams for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
