"""`autocall campaign run --workers N` (issue 20): N dialer processes, one campaign.

The workers are real processes started by a real ``campaign run``; the far end is the
scripted one (``--placer farend:from_env``), which logs every dial and every call's start
and end from whichever worker placed it. What must hold with several workers: the
campaign's channels and calls/second are the limits of all of them together, nobody is
dialed twice, and a worker killed with SIGKILL leaves its calls as a killed dialer does
(resolved as interrupted, the contacts dialed again by policy).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from clirun import CliProcess, wait_until
from conftest import us_number, write_campaign
from farend import FAREND_ENV, max_concurrent
from procs import read_dials

from autocall.campaign.contacts import import_campaign
from autocall.campaign.dialer import Pacer, Share
from autocall.campaign.model import CampaignState, ContactState, Outcome, load_campaign
from autocall.campaign.store import Store
from autocall.cli.campaign_workers import (
    WorkerExit,
    rtp_slice,
    usable_cores,
    worker_count,
    worker_env,
)

TREE = "name: t\noutcomes: [done]\nstart: bye\nnodes:\n  bye: {hangup: done}\n"


# --- the pure parts ------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 2, 3, 7, 10, 999])
@pytest.mark.parametrize("of", [1, 2, 3, 4])
def test_shares_add_up_to_the_campaign(channels: int, of: int) -> None:
    if of > channels:
        return  # never more workers than channels (worker_count)
    shares = [Share(i, of) for i in range(of)]
    parts = [s.channels(channels) for s in shares]
    assert sum(parts) == channels and max(parts) - min(parts) <= 1 and min(parts) >= 1
    assert sum(s.rate(30.0) for s in shares) == pytest.approx(30.0)
    assert sum(s.burst() for s in shares) <= max(2, of)  # 2 at once, or one each
    offsets = [s.offset(30.0) for s in shares]
    assert offsets == sorted(offsets) and offsets[0] == 0 and offsets[-1] < of / 30.0


def test_share_rejects_an_index_outside_the_count() -> None:
    with pytest.raises(ValueError, match="0..1"):
        Share(2, 2)


def test_worker_count_defaults_to_cores_and_never_exceeds_channels() -> None:
    assert worker_count(None, channels=10, cores=4) == 4
    assert worker_count(None, channels=3, cores=8) == 3
    assert worker_count(6, channels=2, cores=1) == 2
    assert worker_count(1, channels=50, cores=8) == 1
    assert worker_count(None, channels=1, cores=2) == 1
    assert worker_count(None, channels=512) == min(512, usable_cores())
    assert 1 <= usable_cores() <= (os.cpu_count() or 1)


def test_each_worker_binds_its_own_sip_port() -> None:
    env = {"AUTOCALL_BIND_PORT": "5070", "AUTOCALL_ADVERTISED_PORT": "15070", "X": "y"}
    assert worker_env(env, 0) == env
    assert worker_env(env, 2)["AUTOCALL_BIND_PORT"] == "5072"
    assert worker_env(env, 2)["AUTOCALL_ADVERTISED_PORT"] == "15072"
    assert worker_env({"AUTOCALL_BIND_PORT": "0"}, 3) == {"AUTOCALL_BIND_PORT": "0"}


def test_each_worker_takes_its_own_slice_of_the_rtp_ports() -> None:
    """A port rests after its call only in the worker that freed it: the workers must
    not share one (issue 22's late tails)."""
    parts = [rtp_slice("20000-20999", k, 3) for k in range(3)]
    assert parts == ["20000-20331", "20332-20663", "20664-20999"]
    ranges = [tuple(map(int, p.split("-"))) for p in parts if p]
    evens = [set(range(a, b + 1, 2)) for a, b in ranges]
    assert not (evens[0] & evens[1]) and not (evens[1] & evens[2])
    assert set().union(*evens) == set(range(20000, 21000, 2))
    assert rtp_slice("20001-20010", 1, 2) == "20006-20010"  # odd low: even ports only
    assert rtp_slice("20000-20002", 0, 3) is None  # too small to split: as it is
    assert rtp_slice("nonsense", 0, 2) is None  # the worker's own check says why
    assert rtp_slice("20000-20999", 0, 1) is None
    env = worker_env({"AUTOCALL_RTP_PORTS": "20000-20999"}, 1, 2)
    assert env["AUTOCALL_RTP_PORTS"] == "20500-20999"


def test_a_worker_cut_by_a_passed_on_second_signal_did_not_die() -> None:
    assert not WorkerExit(0, 1, 143).died(forced=True)
    assert WorkerExit(0, 1, 143).died(forced=False)
    assert WorkerExit(0, 1, -9).died(forced=True)
    assert WorkerExit(0, 1, -9).how() == "killed by SIGKILL"
    assert WorkerExit(0, 1, 1).died(forced=True)


def test_the_first_slot_of_a_later_worker_waits_its_offset_once() -> None:
    pacer = Pacer(5.0, first=0.1)
    assert pacer.due(10.0) == pytest.approx(10.1)
    assert pacer.due(10.05) == pytest.approx(10.1)  # fixed when first asked
    assert pacer.slot(10.1) == pytest.approx(10.1)
    assert pacer.due(10.1) == pytest.approx(10.3)  # then the grid at rate 5/s


# --- real processes ------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    """Pids whose parent is ``pid`` (the supervisor's workers), from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if ppid == pid:
            found.append(int(entry.name))
    return found


def _run(tmp: Path, url: str, farend: dict[str, object], *extra: str, tag: str = "run"
         ) -> CliProcess:
    env = {FAREND_ENV: json.dumps(farend), "PYTHONPATH": _pythonpath()}
    proc = CliProcess(["campaign", "run", "test-campaign", "--db", url,
                       "--placer", "farend:from_env", "--json", *extra],
                      cwd=tmp, env=env, tag=tag)
    return proc


def _pythonpath() -> str:
    here = str(Path(__file__).parent)  # farend.py
    return os.pathsep.join([here, *filter(None, [os.environ.get("PYTHONPATH")])])


@pytest.fixture
def reap() -> Iterator[list[int]]:
    """Kill (by pid) the workers a test's supervisors left, whatever happened."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        for child in _children(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)


def _campaign(tmp: Path, url: str, n: int, **overrides: object) -> Store:
    (tmp / "tree.yaml").write_text(TREE)
    campaign = load_campaign(write_campaign(tmp, n, **overrides))
    store = Store(url)
    import_campaign(store, campaign)
    return store


def test_two_workers_hold_the_campaigns_channels_together(
        tmp_path: Path, sqlite_url: str, reap: list[int]) -> None:
    """3 channels over 2 workers: never 4 (or 6) calls up; both workers dial; every
    attempt dialed once; the supervisor's summary counts both workers' calls."""
    n = 30
    store = _campaign(tmp_path, sqlite_url, n, channels=3, calls_per_second=100)
    spans, log = tmp_path / "spans.log", tmp_path / "dials.log"
    run = _run(tmp_path, sqlite_url, {"talk": 0.4, "spans": str(spans), "log": str(log)},
               "--workers", "2")
    reap.append(run.proc.pid)
    assert run.wait(120) == 0, run.stderr()[-3000:]
    assert max_concurrent(spans) == 3  # the limit, reached, never passed
    dials = read_dials(log)
    assert len(dials) == n
    assert max(Counter((contact, no) for _, contact, no, _ in dials).values()) == 1
    rows = store.attempts("test-campaign")
    assert len({a.node for a in rows}) == 2  # two processes dialed
    assert all(a.outcome is Outcome.COMPLETED for a in rows)
    final = json.loads(run.stdout())
    assert (final["state"], final["dialed"], final["done"]) == ("completed", n, n)
    store.close()


def test_two_workers_hold_the_campaigns_calls_per_second_together(
        tmp_path: Path, sqlite_url: str, reap: list[int]) -> None:
    """4 calls/second over 2 workers: 21 calls take 5 s from first to last start (each
    worker at the full rate would take half that)."""
    n = 21
    store = _campaign(tmp_path, sqlite_url, n, channels=20, calls_per_second=4)
    spans = tmp_path / "spans.log"
    run = _run(tmp_path, sqlite_url, {"talk": 0.05, "spans": str(spans)}, "--workers", "2")
    reap.append(run.proc.pid)
    assert run.wait(120) == 0, run.stderr()[-3000:]
    starts = sorted(float(line.split()[1]) for line in spans.read_text().splitlines()
                    if line.startswith("+"))
    assert len(starts) == n
    # (n - 1) / rate = 5 s on the grid; the pacers' catch-up may pull a few calls early
    # after a stall (Pacer: at most rate * CATCH_UP per worker), never to half
    assert starts[-1] - starts[0] >= 4.0, starts
    assert len({a.node for a in store.attempts("test-campaign")}) == 2
    store.close()


def _audit(store: Store, log: Path, committed: dict[int, Outcome], open_at_kill: set[int],
           n: int) -> None:
    """What test_crash.py checks after a killed dialer: nothing dialed twice for one
    attempt, nothing committed changed, the calls cut resolved as interrupted, every
    contact done with attempts numbered 1..k."""
    rows = store.attempts("test-campaign")
    by_id = {a.id: a for a in rows}
    dials = read_dials(log)
    assert max(Counter((contact, no) for _, contact, no, _ in dials).values()) == 1
    for attempt_id, contact_id, attempt_no, number in dials:
        a = by_id[attempt_id]
        assert (a.contact_id, a.attempt_no, a.number) == (contact_id, attempt_no, number)
    for attempt_id, outcome in committed.items():
        assert by_id[attempt_id].outcome is outcome
    for attempt_id in open_at_kill:
        assert by_id[attempt_id].outcome is Outcome.INTERRUPTED
    assert all(a.ended_at is not None for a in rows)
    per_contact: dict[int, list[int]] = defaultdict(list)
    for a in rows:
        per_contact[a.contact_id].append(a.attempt_no)
    contacts = store.contacts("test-campaign")
    assert len(contacts) == n
    for c in contacts:
        assert sorted(per_contact[c.id]) == list(range(1, c.attempts + 1))
        assert c.state is ContactState.DONE
    assert store.state("test-campaign")[0] is CampaignState.COMPLETED


def _kill_when_calls_are_up(store: Store, pids: list[int], done_first: int
                            ) -> tuple[dict[int, Outcome], set[int]]:
    """SIGKILL ``pids`` once ``done_first`` records are in and a call of theirs is up;
    returns the records committed before the kill and the attempts it left open."""
    def ready() -> bool:
        rows = store.attempts("test-campaign")
        return (sum(a.ended_at is not None for a in rows) >= done_first
                and any(a.ended_at is None and _pid(a.node) in pids for a in rows))

    wait_until(ready, 60, "records committed and calls up")
    committed = {a.id: a.outcome for a in store.attempts("test-campaign")
                 if a.ended_at is not None and a.outcome is not None}
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    open_at_kill = {a.id for a in store.attempts("test-campaign")
                    if a.ended_at is None and _pid(a.node) in pids}
    return committed, open_at_kill


def _pid(node: str | None) -> int:
    """The pid in a default node name (host:pid:random)."""
    parts = (node or "").rsplit(":", 2)
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else -1


def test_sigkill_of_one_worker_the_other_recovers_its_calls_and_finishes(
        tmp_path: Path, sqlite_url: str, reap: list[int]) -> None:
    """A worker killed -9 mid-campaign: the other goes on, resolves the dead one's calls
    as interrupted (its process is gone), dials those contacts again, and the
    supervisor reports the death (exit 1) with one summary of the whole campaign."""
    n = 40
    store = _campaign(tmp_path, sqlite_url, n, channels=4, calls_per_second=100)
    scripts = {us_number(i): ["busy", "answer:1"] for i in range(0, n, 4)}
    log = tmp_path / "dials.log"
    run = _run(tmp_path, sqlite_url, {"scripts": scripts, "talk": 0.3, "log": str(log)},
               "--workers", "2")
    reap.append(run.proc.pid)
    wait_until(lambda: len(_children(run.proc.pid)) == 2, 30, "two workers started")
    victim = _children(run.proc.pid)[0]
    committed, open_at_kill = _kill_when_calls_are_up(store, [victim], 8)
    assert open_at_kill, "the kill should catch calls in flight"
    assert run.wait(120) == 1, run.stderr()[-3000:]
    assert f"(pid {victim}) ended: killed by SIGKILL" in run.stderr()
    assert "Traceback" not in run.stderr()
    _audit(store, log, committed, open_at_kill, n)
    final = json.loads(run.stdout())
    assert (final["state"], final["done"], final["total"]) == ("completed", n, n)
    store.close()


def test_sigkill_of_all_then_a_restart_with_two_workers_loses_nothing(
        tmp_path: Path, sqlite_url: str, reap: list[int]) -> None:
    """Supervisor and workers killed -9 together (the machine lost power, say), then
    ``campaign run --workers 2`` again: the first run's calls are resolved as
    interrupted, nothing committed changes, no attempt is dialed twice."""
    n = 40
    store = _campaign(tmp_path, sqlite_url, n, channels=4, calls_per_second=100)
    scripts = {us_number(i): ["busy", "answer:1"] for i in range(0, n, 4)}
    log = tmp_path / "dials.log"
    conf = {"scripts": scripts, "talk": 0.3, "log": str(log)}
    first = _run(tmp_path, sqlite_url, conf, "--workers", "2", tag="first")
    reap.append(first.proc.pid)
    wait_until(lambda: len(_children(first.proc.pid)) == 2, 30, "two workers started")
    workers = _children(first.proc.pid)
    committed, open_at_kill = _kill_when_calls_are_up(store, workers, 12)
    os.kill(first.proc.pid, signal.SIGKILL)
    first.proc.wait(10)
    assert open_at_kill, "the kill should catch calls in flight"
    assert len(read_dials(log)) < n
    time.sleep(0.2)
    second = _run(tmp_path, sqlite_url, {**conf, "talk": 0.02}, "--workers", "2",
                  tag="second")
    reap.append(second.proc.pid)
    assert second.wait(120) == 0, second.stderr()[-3000:]
    _audit(store, log, committed, open_at_kill, n)
    store.close()


def test_sigterm_to_the_whole_group_drains_and_does_not_hang_up(
        tmp_path: Path, sqlite_url: str, reap: list[int]) -> None:
    """systemd's default stop signals every process of the service: supervisor and
    workers each get one SIGTERM. That is one stop (the supervisor's order and a
    worker's own signal are the same stop), not a second signal: calls end their
    dialogue, none is cut, exit 0."""
    n = 30
    store = _campaign(tmp_path, sqlite_url, n, channels=4, calls_per_second=100)
    run = _run(tmp_path, sqlite_url, {"talk": 2.0}, "--workers", "2")
    reap.append(run.proc.pid)
    wait_until(lambda: len(_children(run.proc.pid)) == 2, 30, "two workers started")
    workers = _children(run.proc.pid)
    wait_until(lambda: {_pid(a.node) for a in store.attempts("test-campaign")
                        if a.ended_at is None} >= set(workers), 60, "both workers' calls up")
    os.kill(run.proc.pid, signal.SIGTERM)  # its order reaches the workers first,
    wait_until(lambda: "no new calls" in run.stderr(), 30, "the supervisor's stop")
    time.sleep(0.3)
    for pid in workers:  # then the group's signal
        os.kill(pid, signal.SIGTERM)
    assert run.wait(60) == 0, run.stderr()[-3000:]
    rows = store.attempts("test-campaign")
    assert 0 < len(rows) < n  # dialing stopped
    assert all(a.outcome is Outcome.COMPLETED for a in rows), [a.outcome for a in rows]
    assert "Traceback" not in run.stderr()
    store.close()
