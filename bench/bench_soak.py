"""Soak: SIPp callers into `autocall serve` for minutes, every code checked (issue 22).

Each call presses RFC 4733 "1234" (SIPp's pcaps) then in-band "5678" (streamed) into a
tree that gathers 8 digits; serve hangs up once it has them. The bench prints, per run:
calls completed (SIPp's count and serve's records), stored codes exact / short / wrong,
serve's memory (RSS) and open files at the start, at the plateau (minute 2, or half-way
through a run shorter than 4 minutes) and at the end, its CPU time per call, and the
load average. Runs:

- the main soak, ``--calls`` at ``--rate`` (default 12,000 at 20/s: 10 minutes, about
  70-90 calls at once), straight from SIPp to serve;
- with ``--busy``, the same with a busy program pinned to one core (the last one this
  process may use), and the idle run first as the named baseline (``--no-baseline`` to
  skip it);
- with ``--profiles`` (``all`` or names from ``tests/impair.py``), ``--profile-calls``
  each (default 1,200) through the seeded impairing relay, ``clean`` (the relay, no
  impairment) first as the baseline;
- with ``--campaign N``, an ``autocall campaign run`` of N contacts against SIPp
  callees that press the same code, its RTP through the relay (``--campaign-profile``).

The relay is Python in this process: at 20 calls/s it forwards about 4,000 packets/s
(twice that with ``stray``) and takes CPU from serve on a 2-core machine; its ``clean``
baseline in the same run shows what it costs, and each run prints how late it released
packets (its own jitter).

Needs root (SIPp's pcap play uses a raw socket), sipp, and the test tree of this repo
(``tests/impair.py``, ``tests/telephony/impaired.py``). Ports 41200-41232 and relays on
41700-41989. A short check: ``--calls 200 --rate 20``.

    python bench/bench_soak.py                                   # 12,000 calls, 10 min
    python bench/bench_soak.py --busy                            # idle baseline, then busy
    python bench/bench_soak.py --calls 0 --profiles all          # 9 x 1,200 calls
    python bench/bench_soak.py --calls 0 --campaign 1200 --campaign-profile carrier
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as dt
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.impair import PROFILES, ImpairStats  # noqa: E402
from tests.impair import profile as parse_profile  # noqa: E402
from tests.peers import port_bound  # noqa: E402
from tests.telephony.impaired import (  # noqa: E402
    CODE_TREE,
    Tally,
    aimed,
    callees,
    callers,
    campaign_run,
    campaign_tally,
    impaired_front,
    tally,
    write_campaign,
)
from tests.telephony.serving import records  # noqa: E402

SERVE_PORT, PROXY_PORT, SIPP_PORT, SIPP_MEDIA = 41200, 41201, 41202, 41204
CAMPAIGN_PROXY, CALLEE_PORT, CALLEE_MEDIA, DIALER_PORT = 41220, 41222, 41224, 41232
RELAY_PORTS = range(41700, 41990)
PLATEAU_S = 120.0


def use_ports(base: int) -> None:
    """Move every port the run binds to ``base`` .. ``base + 799`` (a helper's range)."""
    global SERVE_PORT, PROXY_PORT, SIPP_PORT, SIPP_MEDIA
    global CAMPAIGN_PROXY, CALLEE_PORT, CALLEE_MEDIA, DIALER_PORT, RELAY_PORTS
    SERVE_PORT, PROXY_PORT, SIPP_PORT, SIPP_MEDIA = base, base + 1, base + 2, base + 4
    CAMPAIGN_PROXY, CALLEE_PORT, CALLEE_MEDIA = base + 20, base + 22, base + 24
    DIALER_PORT = base + 32
    RELAY_PORTS = range(base + 500, base + 790)

KEEP = False  # --keep: leave each run's directory (logs, records, SIPp's errors) behind


@contextlib.contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    if KEEP:
        path = Path(tempfile.mkdtemp(prefix=prefix))
        print(f"  (work directory {path})")
        yield path
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as d:
        yield Path(d)


# ---- sampling a process: RSS, open files, CPU -------------------------------------------
@dataclass(frozen=True)
class Sample:
    t: float
    rss_kib: int
    fds: int
    cpu_s: float


def sample(pid: int) -> Sample | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        rss = next(int(line.split()[1]) for line in status.splitlines()
                   if line.startswith("VmRSS:"))
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        cpu = (int(stat[11]) + int(stat[12])) / ticks  # utime, stime: proc(5) fields 14, 15
    except (OSError, StopIteration, ValueError, IndexError):
        return None
    return Sample(time.monotonic(), rss, fds, cpu)


@dataclass
class Sampler:
    """Samples ``pid`` once a second on a thread while the run is going."""

    pid: int
    samples: list[Sample] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            s = sample(self.pid)
            if s is not None:
                self.samples.append(s)

    @contextlib.contextmanager
    def running(self) -> Iterator[Sampler]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(5)


@dataclass
class Run:
    label: str
    calls: int
    rate: float
    busy: bool
    profile: str | None
    sipp_ok: int = 0
    sipp_failed: int = 0
    records: int = 0
    codes: Tally = field(default_factory=Tally)
    start: Sample | None = None
    plateau: Sample | None = None
    plateau_label: str = ""
    end: Sample | None = None
    cpu_per_call_ms: float = 0.0
    load_start: float = 0.0
    load_end: float = 0.0
    relay: ImpairStats | None = None
    seconds: float = 0.0
    rss_after_plateau: tuple[int, int] = (0, 0)  # (min, max) KiB from the plateau on


def after_plateau(samples: list[Sample], plateau: Sample | None) -> tuple[int, int]:
    rss = [s.rss_kib for s in samples if plateau is not None and s.t >= plateau.t]
    return (min(rss), max(rss)) if rss else (0, 0)


def plateau_of(samples: list[Sample], t0: float, t1: float) -> tuple[Sample | None, str]:
    """The sample at minute 2 (half-way through runs shorter than 4 minutes)."""
    if not samples:
        return None, "-"
    at, label = (t0 + PLATEAU_S, "min 2") if t1 - t0 >= 2 * PLATEAU_S else \
        ((t0 + t1) / 2, f"mid, {(t1 - t0) / 2:.0f} s")
    return min(samples, key=lambda s: abs(s.t - at)), label


# ---- the pieces: serve, a busy core, SIPp stats -----------------------------------------
@contextlib.contextmanager
def serve(work: Path, max_calls: int) -> Iterator[subprocess.Popen[bytes]]:
    (work / "tree.yaml").write_text(CODE_TREE)
    log = (work / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-c", "from autocall.cli import main; main()", "serve",
         "--tree", str(work / "tree.yaml"), "--bind", f"127.0.0.1:{SERVE_PORT}",
         "--records", str(work / "calls.jsonl"), "--max-calls", str(max_calls)],
        cwd=work, stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "AUTOCALL_TTS_CACHE": str(work / "tts"), "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 60
        while not port_bound("127.0.0.1", SERVE_PORT):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("serve did not start: " + (work / "serve.log").read_text())
            time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


@contextlib.contextmanager
def busy_core(on: bool) -> Iterator[int | None]:
    """A program spinning on one core (the last this process may use) while the run goes."""
    if not on:
        yield None
        return
    core = max(os.sched_getaffinity(0))
    proc = subprocess.Popen(
        [sys.executable, "-c", f"import os\nos.sched_setaffinity(0, {{{core}}})\n"
         "x = 0\nwhile True:\n    x = (x * 31 + 7) % 1000003\n"],
        start_new_session=True)
    try:
        yield core
    finally:
        proc.kill()  # our own child, by its handle
        proc.wait()


def sipp_counts(work: Path) -> tuple[int, int]:
    """(successful, failed) calls from SIPp's statistics file (-trace_stat)."""
    files = sorted(work.glob("*_.csv")) or sorted(work.glob("*.csv"))
    for path in files:
        rows = list(csv.reader(path.open(), delimiter=";"))
        if len(rows) >= 2:
            head, last = rows[0], rows[-1]
            try:
                return (int(last[head.index("SuccessfulCall(C)")]),
                        int(last[head.index("FailedCall(C)")]))
            except (ValueError, IndexError):
                continue
    return 0, 0


# ---- one inbound run --------------------------------------------------------------------
def inbound(label: str, calls: int, rate: float, *, busy: bool, profile: str | None,
            seed: int, limit: int) -> Run:
    run = Run(label, calls, rate, busy, profile)
    with workdir("soak-") as work:
        with serve(work, max_calls=limit) as proc, busy_core(busy):
            front = impaired_front(("127.0.0.1", PROXY_PORT), ("127.0.0.1", SERVE_PORT),
                                   aimed(profile), seed, RELAY_PORTS) if profile else None
            with front or contextlib.nullcontext() as proxy:
                time.sleep(1.0)
                run.start = sample(proc.pid)
                run.load_start = os.getloadavg()[0]
                target = PROXY_PORT if profile else SERVE_PORT
                caller = callers(work, proxy_port=target, port=SIPP_PORT,
                                 media_port=SIPP_MEDIA, calls=calls, rate=rate, limit=limit,
                                 timeout=calls / rate + 120)
                caller.cmd += ["-trace_stat", "-stf", "stats_.csv", "-fd", "5"]
                t0 = time.monotonic()
                with Sampler(proc.pid).running() as sampler, caller:
                    caller.wait(calls / rate + 180)
                t1 = time.monotonic()
                time.sleep(3.0)  # the last hang-ups are written
                run.end = sample(proc.pid)
                run.load_end = os.getloadavg()[0]
                run.seconds = t1 - t0
                run.plateau, run.plateau_label = plateau_of(sampler.samples, t0, t1)
                run.rss_after_plateau = after_plateau(sampler.samples, run.plateau)
                run.sipp_ok, run.sipp_failed = sipp_counts(caller.workdir)
            if proxy is not None:
                run.relay = proxy.stats
        rows = records(work)
        run.records = len(rows)
        run.codes = tally(rows)
        if run.start and run.end:
            run.cpu_per_call_ms = 1000 * (run.end.cpu_s - run.start.cpu_s) / max(1, run.records)
    return run


# ---- a campaign against SIPp callees ----------------------------------------------------
def campaign(calls: int, rate: float, *, profile: str, seed: int, busy: bool) -> Run:
    run = Run(f"campaign ({profile})", calls, rate, busy, profile)
    name = f"soak-{dt.datetime.now(dt.UTC):%Y%m%d-%H%M%S}"
    with workdir("soak-campaign-") as work:
        path = write_campaign(work, name, calls, rate)
        db = f"sqlite:///{work / 'campaign.db'}"
        callee = callees(work, port=CALLEE_PORT, media_port=CALLEE_MEDIA, calls=calls,
                         timeout=calls / rate + 180,
                         extra=("-trace_stat", "-stf", "stats_.csv", "-fd", "5"))
        with callee, busy_core(busy), impaired_front(
                ("127.0.0.1", CAMPAIGN_PROXY), ("127.0.0.1", CALLEE_PORT), aimed(profile),
                seed, RELAY_PORTS, rewrite="requests") as proxy:
            run.load_start = os.getloadavg()[0]
            t0 = time.monotonic()
            proc = campaign_run(work, path, db, proxy_port=CAMPAIGN_PROXY,
                                bind_port=DIALER_PORT)
            time.sleep(1.0)
            run.start = sample(proc.pid)
            with Sampler(proc.pid).running() as sampler:
                try:
                    proc.wait(calls / rate + 300)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            t1 = time.monotonic()
            run.end = sampler.samples[-1] if sampler.samples else None
            run.load_end = os.getloadavg()[0]
            run.seconds = t1 - t0
            run.plateau, run.plateau_label = plateau_of(sampler.samples, t0, t1)
            run.rss_after_plateau = after_plateau(sampler.samples, run.plateau)
            callee.stop()
            run.sipp_ok, run.sipp_failed = sipp_counts(work)
            run.relay = proxy.stats
        if proc.returncode != 0:
            print((work / "campaign.log").read_text()[-2000:])
        run.records, run.codes = campaign_tally(db, name)
        if run.start and run.end:
            run.cpu_per_call_ms = 1000 * (run.end.cpu_s - run.start.cpu_s) / max(1, run.records)
    return run


# ---- report -----------------------------------------------------------------------------
def _mem(s: Sample | None) -> str:
    return f"{s.rss_kib / 1024:.1f} MiB" if s else "-"


def _fds(s: Sample | None) -> str:
    return str(s.fds) if s else "-"


def report(run: Run) -> None:
    c = run.codes
    busy = ", busy core" if run.busy else ""
    print(f"\n== {run.label}: {run.calls} calls at {run.rate:g}/s{busy}, "
          f"{run.seconds:.0f} s")
    print(f"  completed: SIPp {run.sipp_ok} ok / {run.sipp_failed} failed; "
          f"{run.records} records, {c.calls} answered")
    print(f"  codes: {c.exact} exact, {c.short} short, {c.wrong} wrong"
          + (f" (e.g. {', '.join(repr(x) for x in c.examples)})" if c.examples else ""))
    drift = ""
    if run.plateau and run.end and run.plateau.rss_kib:
        drift = f" ({100 * (run.end.rss_kib - run.plateau.rss_kib) / run.plateau.rss_kib:+.1f} %" \
                " plateau to end)"
    print(f"  memory: start {_mem(run.start)}, plateau [{run.plateau_label}] "
          f"{_mem(run.plateau)}, end {_mem(run.end)}{drift}")
    low, high = run.rss_after_plateau
    if run.plateau and high:
        spread = 100 * max(high - run.plateau.rss_kib, run.plateau.rss_kib - low) / \
            run.plateau.rss_kib
        verdict = "flat" if spread <= 3.0 else "NOT flat"
        print(f"  memory from the plateau on: {low / 1024:.1f}-{high / 1024:.1f} MiB, "
              f"within {spread:.1f} % of the plateau: {verdict} (issue 22 asks ±3 %)")
    back = "" if not (run.start and run.end) else \
        (" (back to the start)" if run.end.fds <= run.start.fds else " (NOT back to the start)")
    print(f"  open files: start {_fds(run.start)}, plateau {_fds(run.plateau)}, "
          f"end {_fds(run.end)}{back}")
    print(f"  CPU per call: {run.cpu_per_call_ms:.1f} ms; load average (1 min) "
          f"{run.load_start:.2f} at start, {run.load_end:.2f} at end")
    if run.relay is not None:
        r = run.relay
        print(f"  relay: {r.received} packets in, {r.dropped} dropped, {r.held} held, "
              f"{r.duplicated} duplicated, {r.stray} stray added; released up to "
              f"{r.max_lag_ms:.0f} ms late (the relay's own jitter)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=12_000, help="main soak calls (0: skip)")
    ap.add_argument("--rate", type=float, default=20.0, help="new calls per second")
    ap.add_argument("--busy", action="store_true", help="a busy program on one core")
    ap.add_argument("--no-baseline", action="store_true",
                    help="with --busy: skip the idle run first")
    ap.add_argument("--profiles", default="",
                    help=f"'all' or a comma list of {', '.join(PROFILES)}; join two "
                    "with + (stray+jitter)")
    ap.add_argument("--profile-calls", type=int, default=1200)
    ap.add_argument("--campaign", type=int, default=0, help="campaign contacts (0: skip)")
    ap.add_argument("--campaign-profile", default="clean",
                    help="a profile, or several joined by + (stray+jitter)")
    ap.add_argument("--seed", type=int, default=22)
    ap.add_argument("--limit", type=int, default=400, help="calls at once, at most")
    ap.add_argument("--keep", action="store_true", help="keep each run's work directory")
    ap.add_argument("--port-base", type=int, default=41200,
                    help="first of the 800 ports (SIP, SIPp media, relays) the run uses")
    args = ap.parse_args()
    global KEEP
    KEEP = args.keep
    use_ports(args.port_base)
    if os.geteuid() != 0:
        print("bench_soak needs root: SIPp plays the RFC 4733 pcaps through a raw socket")
        return 2
    names = list(PROFILES) if args.profiles == "all" else \
        [p for p in args.profiles.split(",") if p]
    for spec in [*names, args.campaign_profile]:
        try:
            parse_profile(spec)
        except KeyError as e:
            print(e.args[0])
            return 2
    if names and names[0] != "clean":
        names = ["clean", *[n for n in names if n != "clean"]]  # the baseline first
    runs: list[Run] = []
    if args.calls:
        if args.busy and not args.no_baseline:
            runs.append(inbound("baseline: no busy program", args.calls, args.rate, busy=False,
                                profile=None, seed=args.seed, limit=args.limit))
            report(runs[-1])
        runs.append(inbound("soak" + (" with a busy core" if args.busy else ""), args.calls,
                            args.rate, busy=args.busy, profile=None, seed=args.seed,
                            limit=args.limit))
        report(runs[-1])
    for name in names:
        label = "baseline: relay, no impairment" if name == "clean" else f"profile {name}"
        runs.append(inbound(label, args.profile_calls, args.rate, busy=args.busy,
                            profile=name, seed=args.seed, limit=args.limit))
        report(runs[-1])
    if args.campaign:
        runs.append(campaign(args.campaign, args.rate, profile=args.campaign_profile,
                             seed=args.seed, busy=args.busy))
        report(runs[-1])
    print("\nsummary (exact / short / wrong of answered):")
    for r in runs:
        print(f"  {r.label:<38} {r.codes.exact:>6} / {r.codes.short:>4} / {r.codes.wrong:>4}"
              f"  of {r.codes.calls}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
