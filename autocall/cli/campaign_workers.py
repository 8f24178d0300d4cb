"""``autocall campaign run --workers N``: one campaign dialed by N worker processes.

Python runs one thread of bytecode at a time, so one dialer process uses one core
however many calls it carries. With ``--workers N`` the process that was started is a
*supervisor*: it dials nothing itself, it starts N workers and follows them. Each worker
is a whole dialer of its own (event loop, SIP user agent, the RTP and detectors of its
calls) and claims attempts from the store like any other node; the store's claims are
exactly-once across processes (SQLite: WAL and ``BEGIN IMMEDIATE``; PostgreSQL:
``FOR UPDATE SKIP LOCKED``), so nobody is dialed twice whichever worker wins.

- **Limits hold for the campaign, not per worker.** Worker k gets an even share of the
  campaign's channels and calls/second (:class:`autocall.campaign.dialer.Share`), so
  together they never carry more than ``channels`` calls nor start more than
  ``calls_per_second``. There are never more workers than channels.
- **Own SIP port each.** Responses to a UDP request come back to the port it left from,
  and the kernel spreads ``SO_REUSEPORT`` datagrams by source address, not by dialog:
  a shared port would hand a worker the responses of another's calls. So worker k binds
  ``AUTOCALL_BIND_PORT + k`` (and names ``AUTOCALL_ADVERTISED_PORT + k``); with port 0
  each takes a free port. An RTP port range (``AUTOCALL_RTP_PORTS``) is split between
  the workers likewise (:func:`rtp_slice`).
- **Signals** (Ctrl-C, SIGTERM) reach the supervisor, which passes each one on as an
  order on the worker's stdin (:func:`follow_orders`): the first stops new calls and
  lets calls in flight end, a second hangs them up. Not as a signal: a signal sent to
  the whole group as well (a terminal's Ctrl-C, systemd's default ``KillMode``) would
  then reach a worker twice, and a second signal means "hang up now". A worker's own
  signals count as they do in one process.
- **Workers end with the supervisor**, even when it is killed with SIGKILL: the
  kernel's parent-death signal or a poll of its pid (:mod:`autocall.lifeline`) stops
  their new calls, and calls still up after :data:`ORPHAN_GRACE` are hung up.
- **A worker that dies** (SIGKILL, out of memory) leaves its calls as a killed dialer
  does: attempts in flight, its heartbeat stops, and the other workers resolve them as
  interrupted by the campaign's ``on_restart`` policy (within seconds: a local node
  whose process is gone, :func:`autocall.campaign.dialer.node_process_gone`). The
  others go on dialing; the supervisor says which worker died and exits 1 at the end.
- **One summary.** The supervisor's progress line and final summary are read from the
  store: they count every worker's calls.

The worker is ``python -m autocall.cli.campaign_worker`` (an internal entry point:
``campaign run`` builds its arguments).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from autocall.campaign.dialer import Progress, idle_reason, progress_of
from autocall.campaign.store import Store, StoreError, Summary, transient
from autocall.signals import StopSignals

__all__ = [
    "ORPHAN_GRACE",
    "WorkerExit",
    "follow_orders",
    "rtp_slice",
    "supervise",
    "usable_cores",
    "worker_count",
    "worker_env",
]

log = logging.getLogger(__name__)

ORPHAN_GRACE = 60.0
"""Seconds a worker whose supervisor died lets its calls in flight run before hanging
them up (as ``autocall web``'s dialer worker does)."""
POLL = 0.5  # seconds between the supervisor's looks at the store (its progress line)


def usable_cores() -> int:
    """The cores this process may run on (a cpuset or ``taskset`` may allow fewer than
    the machine has), else ``os.cpu_count()``."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def worker_count(asked: int | None, channels: int, cores: int | None = None) -> int:
    """How many workers dial a campaign: ``asked``, or one per core; never more than
    the campaign's channels (each worker needs one at least)."""
    wanted = asked if asked is not None else (cores or usable_cores())
    return max(1, min(wanted, channels))


def worker_env(env: dict[str, str], index: int, count: int = 1) -> dict[str, str]:
    """The environment of worker ``index`` of ``count``: its own SIP port, and its own
    slice of ``AUTOCALL_RTP_PORTS`` (see the module notes)."""
    out = dict(env)
    for key in ("AUTOCALL_BIND_PORT", "AUTOCALL_ADVERTISED_PORT"):
        raw = (env.get(key) or "").strip()
        if raw.isdigit() and int(raw) > 0:
            out[key] = str(int(raw) + index)
    part = rtp_slice(env.get("AUTOCALL_RTP_PORTS", ""), index, count)
    if part is not None:
        out["AUTOCALL_RTP_PORTS"] = part
    return out


def rtp_slice(spec: str, index: int, count: int) -> str | None:
    """Worker ``index``'s part of an RTP port range ``LOW-HIGH``, or None to leave the
    range as it is (not a range: the worker says what is wrong; too small to split).

    A freed port rests (``AUTOCALL_RTP_QUARANTINE``) only in the process that freed
    it; a worker handed the same range could take it at once and receive the previous
    call's tail. So each gets its own even ports (RFC 3550 §11: RTP even, RTCP the
    next odd one), the last also the remainder."""
    lo, sep, hi = spec.strip().partition("-")
    if count <= 1 or not sep or not lo.strip().isdigit() or not hi.strip().isdigit():
        return None
    low, high = int(lo), int(hi)
    first = low + low % 2
    evens = (high - first) // 2 + 1 if high >= first else 0
    per = evens // count
    if per < 1:
        return None
    start = first + 2 * per * index
    last = first + 2 * (evens - 1) if index == count - 1 else start + 2 * (per - 1)
    return f"{start}-{min(last + 1, high)}"


@dataclass(frozen=True)
class WorkerExit:
    """How one worker ended: ``code`` as ``Popen.returncode`` (negative: a signal)."""

    index: int
    pid: int
    code: int

    def died(self, forced: bool) -> bool:
        """True unless it ended as told: 0, or cut by a second signal passed on."""
        return not (self.code == 0 or (forced and self.code == 128 + signal.SIGTERM))

    def how(self) -> str:
        if self.code < 0:
            try:
                return f"killed by {signal.Signals(-self.code).name}"
            except ValueError:
                return f"killed by signal {-self.code}"
        return f"exit status {self.code}"


async def supervise(
    name: str,
    url: str,
    *,
    workers: int,
    placer: str,
    node: str | None,
    wait: bool,
    show: Callable[[Progress], None],
    say: Callable[[str], None],
) -> tuple[Progress, int]:
    """Run ``workers`` worker processes on campaign ``name`` until they have all ended;
    returns the campaign's final progress and the exit code: 1 if a worker died or
    failed, else 128 + the signal when the calls were cut by a second signal, else 0."""

    def told(sig: signal.Signals) -> None:
        if len(signals.received) == 1:
            say(
                f"{sig.name}: no new calls; letting calls in flight end "
                "(send it again to hang them up now)"
            )
        order = STOP if len(signals.received) == 1 else FORCE
        for proc in procs:
            if proc.returncode is None and proc.stdin is not None:
                with contextlib.suppress(ConnectionError):
                    proc.stdin.write(order)

    signals = StopSignals(told)
    procs: list[asyncio.subprocess.Process] = []
    store = Store(url)
    ended: list[WorkerExit] = []
    last: Progress | None = None
    try:
        for index in range(workers):
            procs.append(await _spawn(name, url, index, workers, placer, node, wait))
        waits = {asyncio.ensure_future(p.wait()): i for i, p in enumerate(procs)}
        pending = set(waits)
        while pending:
            done, pending = await asyncio.wait(pending, timeout=POLL)
            for fut in done:
                i = waits[fut]
                gone = WorkerExit(i, procs[i].pid, fut.result())
                ended.append(gone)
                if gone.died(signals.force.is_set()):
                    say(
                        f"worker {i + 1}/{workers} (pid {gone.pid}) ended: {gone.how()}; "
                        "its calls in flight are resolved as interrupted by the other "
                        "workers (or the next run)"
                    )
            try:
                last = await _progress(store, name)
            except Exception as exc:
                if not transient(exc):
                    raise
                continue  # the store is away: the workers say so and wait for it
            show(last)
        try:
            summary = await asyncio.to_thread(store.summary, name, datetime.now(UTC))
            final = progress_of(summary, idle_reason(summary, datetime.now(UTC), 0, 1))
        except Exception as exc:
            if not transient(exc):
                raise
            if last is None:
                raise StoreError(f"store unreachable ({_first_line(exc)})") from exc
            say(f"store unreachable ({_first_line(exc)}): the counts shown are the last read")
            final = last
    finally:
        signals.close()
        for proc in procs:  # leaving on an error of our own: the workers go too
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(ORPHAN_GRACE):
                        await proc.wait()
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
        store.close()
    # A worker that died or failed (its own error said on stderr) makes it 1, as a
    # dialer leaving on an error does, even after a forced stop.
    died = any(e.died(signals.force.is_set()) for e in ended)
    return final, 1 if died else signals.exit_code


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


STOP = b"stop\n"
FORCE = b"force\n"


async def follow_orders(stop: asyncio.Event, force: asyncio.Event) -> None:
    """A worker's side of the supervisor's orders on stdin: ``stop`` sets ``stop`` (no
    new calls), ``force`` sets both (hang up). Idempotent, unlike signals: an order and a
    signal that came by another way (systemd signals the whole group) are one stop.
    Returns at end of file (the supervisor is gone: :func:`autocall.lifeline.follow_parent`
    deals with that)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        if line == STOP:
            stop.set()
        elif line == FORCE:
            stop.set()
            force.set()


async def _progress(store: Store, name: str) -> Progress:
    summary: Summary = await asyncio.to_thread(store.summary, name, datetime.now(UTC))
    return progress_of(summary)


async def _spawn(
    name: str, url: str, index: int, workers: int, placer: str, node: str | None, wait: bool
) -> asyncio.subprocess.Process:
    args = [
        sys.executable,
        "-m",
        "autocall.cli.campaign_worker",
        name,
        "--db",
        url,
        "--placer",
        placer,
        "--share",
        f"{index}/{workers}",
        "--parent",
        str(os.getpid()),
        "--sys-path",
        json.dumps([p for p in sys.path if p]),
    ]
    if node is not None:
        args += ["--node", f"{node}/{index + 1}"]
    if wait:
        args.append("--wait")
    # A process group of its own: a terminal's Ctrl-C goes to the supervisor only, which
    # passes it on once (twice would hang the calls up).
    return await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.PIPE,  # orders (see follow_orders); EOF: we are gone
        stdout=asyncio.subprocess.DEVNULL,
        env=worker_env(dict(os.environ), index, workers),
        process_group=0,
    )
