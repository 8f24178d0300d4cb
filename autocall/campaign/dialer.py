"""The dialer: claim due contacts, place calls within channels and calls/second, record.

Two halves. The pure half (:func:`plan_contact`, :func:`outcome_of`, :class:`Pacer`,
:func:`idle_reason`) decides from store rows and a ``now``. The asyncio half
(:func:`run_campaign`) does the I/O: it asks the store, awaits a :class:`CallPlacer`,
and writes results back. Pause/resume/stop arrive through the store's campaign state,
so another terminal or node can steer a running dialer.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import os
import secrets
import socket
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar

import stamina

from autocall.campaign.model import (
    NEVER_RETRY,
    CallStatus,
    Campaign,
    CampaignState,
    Close,
    Contact,
    Defer,
    Dial,
    Outcome,
    Plan,
    start_state,
)
from autocall.campaign.schedule import (
    DncList,
    explain_window,
    make_scheduler,
    next_open,
    schedule_campaign,
)
from autocall.campaign.store import Claim, Store, StoreError, Summary, transient
from autocall.signals import cancelled
from autocall.telephony.answer import AmdOptions
from autocall.telephony.record import CallRecord

if TYPE_CHECKING:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")


# --- what the dialer asks of telephony -------------------------------------------------


@dataclass(frozen=True)
class CallRequest:
    """One outbound call to place. ``variables`` are the contact's fields for templating."""

    campaign: str
    attempt_id: int
    attempt_no: int
    contact_id: int
    number: str
    caller_id: str
    tree: str
    variables: Mapping[str, str]
    ring_timeout: float
    recording: bool = False
    trunk: str | None = None
    amd: AmdOptions | None = None  # answering-machine detection (campaign ``amd:``)
    # what is known while the call goes on (answered, digits so far): written at once,
    # so a crash leaves an unfinished record, not nothing
    on_progress: Callable[[CallRecord], None] | None = None
    on_ringing: Callable[[], None] | None = None  # the far end rings (a 180/183)


class CallPlacer(Protocol):
    """Places one call and returns when it has ended (any exception counts as failed).

    The placer owns ring timeout (``request.ring_timeout``: CANCEL and return
    ``no-answer``), the dialogue, hangup and recording. It must be safe to run
    ``channels`` of these concurrently on one event loop.
    """

    async def place(self, request: CallRequest) -> CallRecord: ...


# --- pure decisions ---------------------------------------------------------------------

# RFC 3261 §21: final responses that say something about the callee.
_INVALID_CODES = frozenset({404, 410, 484, 485, 604})
_UNREACHABLE_CODES = frozenset({408, 480, 502, 503, 504})
_BUSY_CODES = frozenset({486, 600})


def network_fault(result: CallRecord) -> bool:
    """True if the call failed because the trunk could not be reached at all.

    The one place that decides it (adjust here when the user agent's reporting of
    transport failures changes):

    * a 503 our own side produced: RFC 3261 §8.1.3.1 turns a transport error (a TCP
      connection refused, an ICMP unreachable) into 503;
    * a 408 with no response at all: Timer B fired (§17.1.1.2, 64*T1) before even a
      100 Trying came back; today's UA says "no final response" in the reason and
      reports it as the remote side's, the fixed UA as ended by us;
    * the placer raising an OSError (the socket could not be opened or connected).

    An answered call, or one the far end refused with its own final response, is not.
    """
    if result.answered_at is not None or result.status is CallStatus.COMPLETED:
        return False
    if result.sip_code == 503 and result.ended_by == "local":
        return True
    if result.sip_code == 408 and (result.ended_by == "local"
                                   or "no final response" in (result.reason or "")):
        return True
    return result.sip_code is None and (result.error or "").startswith(_TRANSPORT_ERRORS)


_TRANSPORT_ERRORS = ("OSError", "ConnectionRefusedError", "ConnectionResetError",
                     "ConnectionAbortedError", "gaierror")


def outcome_of(result: CallRecord) -> Outcome:
    """The retry-policy outcome of a finished call: the tree's opt-out, the one the call
    decided (hung up early, a machine…), else from its status and SIP code."""
    if result.opted_out:
        return Outcome.OPTED_OUT
    if result.outcome is not None:
        return Outcome(result.outcome)
    if network_fault(result):
        return Outcome.NETWORK_FAULT
    code = result.sip_code
    if code == 603:  # RFC 3261 §21.6.2 Decline
        return Outcome.DECLINED
    if result.status is CallStatus.COMPLETED:
        return Outcome.COMPLETED
    if result.status is CallStatus.BUSY or code in _BUSY_CODES:
        return Outcome.BUSY
    if result.status is CallStatus.NO_ANSWER:
        return Outcome.NO_ANSWER
    if code in _INVALID_CODES:
        return Outcome.INVALID
    if code in _UNREACHABLE_CODES:
        return Outcome.UNREACHABLE
    return Outcome.FAILED


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def caller_id_for(campaign: Campaign, contact: Contact) -> str:
    """Spread contacts over the campaign's caller IDs, stable per contact."""
    return campaign.caller_ids[contact.id % len(campaign.caller_ids)]


def plan_contact(campaign: Campaign, contact: Contact, now: datetime,
                 dnc: Container[str]) -> Plan:
    """Dial, defer or close one due contact (no I/O)."""
    if contact.number in dnc:
        return Close(contact.id, Outcome.DNC, "number is on the do-not-call list")
    if contact.attempts - contact.network_faults >= campaign.retry.max_attempts:
        return Close(contact.id, contact.last_outcome or Outcome.FAILED,
                     f"all {campaign.retry.max_attempts} attempts used")
    opens = next_open(campaign.window, contact.timezones, now)
    if opens is None:
        return Defer(contact.id, now + timedelta(days=1), "window",
                     "calling window never opens for " + " ".join(contact.timezones))
    if opens > now:
        why = explain_window(campaign.window, contact.timezones, now)
        return Defer(contact.id, opens, "window",
                     f"calling window closed ({why}); opens {opens:%Y-%m-%d %H:%M} UTC")
    return Dial(contact.id, caller_id_for(campaign, contact))


def next_attempt_at(campaign: Campaign, attempts_made: int, outcome: Outcome,
                    now: datetime, network_faults: int = 0) -> datetime | None:
    """When the contact is due again after this outcome; None ends the contact.

    ``network_faults`` counts the contact's network faults including this one.
    """
    nxt = campaign.retry.next_try(outcome, attempts_made, now, network_faults)
    if nxt is not None and campaign.end_at is not None:
        end = campaign.end_at if campaign.end_at.tzinfo else campaign.end_at.replace(tzinfo=UTC)
        if nxt >= end:
            return None
    return nxt


# Seconds of lateness a busy dialer catches up on: calls held back by a commit, a burst
# of SIP traffic, a full garbage collection (0.2-0.3 s under SIP load) or the process
# being descheduled keep their slots and go as soon as the loop is back.
CATCH_UP = 0.5


class Pacer:
    """Calls-per-second grid: call ``k`` is due at ``t0 + k / rate``.

    Slots are counted on the grid, never from when the previous call actually started,
    so a loop that runs late does not push later calls back: the calls it owes are due
    at once when it is back (at most ``catch_up`` seconds of them) and the long-run rate
    is ``rate`` exactly. Time with nothing to dial is not owed: after :meth:`idle`, at
    most ``burst`` calls are due at once and the grid goes on from there. No call is due
    before its slot, so one second holds at most ``rate * (1 + catch_up) + 2`` starts,
    and that only right after the loop was frozen. Times are on any monotonic clock
    (seconds); no I/O.
    """

    def __init__(self, rate: float, burst: int = 2, catch_up: float = CATCH_UP,
                 first: float = 0.0) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, not {rate}")
        self.first = max(0.0, first)  # seconds the very first call waits (see Share)
        self._first_at: float | None = None
        self.rate = rate
        self.interval = 1.0 / rate
        self.burst = max(1, burst)
        self.catch_up = max(catch_up, (self.burst - 1) * self.interval)
        self._t0: float | None = None  # the grid's origin, moved when the dialer falls behind
        self._k = 0  # the next slot's index on the grid
        self._idle = False

    def _grid(self) -> float:
        """The next slot on the grid (-inf before the first call)."""
        return -math.inf if self._t0 is None else self._t0 + self._k / self.rate

    def idle(self) -> None:
        """Nothing to dial now (none due, channels full, paused): the slots that pass
        until the next call are not owed, but for ``burst`` due at once then."""
        self._idle = True

    def due(self, now: float) -> float:
        """When the next call is due (at or before ``now``: at once); reserves nothing."""
        if self._t0 is None:  # the first call: at once (or after ``first``), no burst
            if self._first_at is None:
                self._first_at = now + self.first  # fixed when first asked
            return max(now, self._first_at)
        owed = (self.burst - 1) * self.interval if self._idle else self.catch_up
        return max(self._grid(), now - owed)

    def slot(self, now: float) -> float:
        """Reserve the next call's start; a time at or before ``now`` means: at once."""
        start = self.due(now)
        if start > self._grid():  # the first call, or the dialer fell behind: move the grid
            self._t0, self._k = start, 0
        self._k += 1
        self._idle = False
        return start

    def free(self, now: float, horizon: float) -> int:
        """How many calls are due between now and ``now + horizon``."""
        return max(0, math.floor((now + horizon - self.due(now)) * self.rate + 1e-9) + 1)


def idle_reason(s: Summary, now: datetime, local_in_flight: int, channels: int) -> str:
    """Why nothing is being dialed right now, in words a supervisor can act on."""
    if s.state in (CampaignState.PAUSED, CampaignState.DRAFT, CampaignState.SCHEDULED):
        return f"campaign is {s.state.value}" + (f" ({s.state_reason})" if s.state_reason else "")
    if s.state in (CampaignState.STOPPED, CampaignState.COMPLETED):
        return f"campaign is {s.state.value}"
    if local_in_flight >= channels:
        return f"all {channels} channels busy"
    if s.pending == 0 and s.in_flight == 0:
        return "no contacts left to dial"
    if s.pending == 0:
        return f"waiting for {s.in_flight} call(s) in flight to end"
    parts = []
    if s.waiting.get("window"):
        parts.append(f"{s.waiting['window']} wait for their calling window")
    if s.waiting.get("retry"):
        parts.append(f"{s.waiting['retry']} wait for a retry")
    if not parts and s.due:
        parts.append(f"{s.due} due, being claimed")
    when = ""
    if s.next_due and s.next_due > now:
        when = f"; next due {s.next_due:%Y-%m-%d %H:%M:%S} UTC"
    dnc = s.outcomes.get(Outcome.DNC.value, 0)
    tail = f"; {dnc} closed as do-not-call" if dnc else ""
    return "nothing due: " + ", ".join(parts) + when + tail


@dataclass(frozen=True)
class Share:
    """This dialer's part of a campaign dialed by ``of`` worker processes together
    (``autocall campaign run --workers N``): worker ``index`` (0-based) gets an even
    share of the campaign's channels and of its calls/second, so the workers together
    never hold more than ``channels`` calls or start more than ``calls_per_second``.
    No I/O."""

    index: int = 0
    of: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.of:
            raise ValueError(f"worker {self.index} of {self.of}: the index must be in "
                             f"0..{self.of - 1}")

    def channels(self, total: int) -> int:
        """An even split; the first ``total % of`` workers take one more."""
        return total // self.of + (self.index < total % self.of)

    def rate(self, total: float) -> float:
        return total / self.of

    def burst(self, whole: int = 2) -> int:
        """This worker's part of the calls a campaign may start at once after an idle
        spell (:class:`Pacer`'s ``burst``): together no more than one process would."""
        return max(1, whole // self.of)

    def offset(self, total: float) -> float:
        """Seconds this worker's first call waits, so the workers' pacing grids
        interleave (worker k starts k slots of the campaign's rate after worker 0)."""
        return self.index / total


SOLE = Share()
"""The whole campaign: one dialer process (``--workers 1``, or a node of its own)."""


# --- the asyncio driver -----------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """What a progress display shows; ``idle`` says why nothing is dialed, if so."""

    state: CampaignState
    total: int
    dialed: int
    answered: int
    in_progress: int
    waiting: int
    done: int
    failed: int
    idle: str | None = None


def progress_of(s: Summary, idle: str | None = None) -> Progress:
    """What a progress display shows, from the store's summary of the campaign (every
    node's calls: the counts are the campaign's, not one process's)."""
    failed = sum(v for k, v in s.outcomes.items() if k != Outcome.COMPLETED.value)
    return Progress(state=s.state, total=s.total, dialed=s.attempts, answered=s.answered,
                    in_progress=s.in_flight, waiting=s.pending, done=s.done, failed=failed,
                    idle=idle)


@dataclass(frozen=True)
class Finished:
    """Passed to ``on_record`` after an attempt's record is committed."""

    attempt_id: int
    contact_id: int
    attempt_no: int
    number: str
    outcome: Outcome
    result: CallRecord


# How often a dialing node re-reads the campaign state (pause/stop latency).
STATE_CHECK = 0.1
# Contacts are claimed (attempt rows committed, one transaction) for the calls due in the
# next CLAIM_AHEAD seconds: the claim runs before their slots, so its latency does not
# push them back.
CLAIM_AHEAD = 0.25


# Seconds a dialer leaving on an error (a forced stop while the store is down) gives
# its calls to hang up (the placer sends BYE or CANCEL) before it closes.
ABORT_HANGUP = 6.0
# A local node whose process is gone is dead once its heartbeat (every second) is this
# old; sooner could take a live node of another machine with the same host name.
LOCAL_DEAD_AFTER = timedelta(seconds=5)
# How often a running node looks for attempts left open by dead nodes (a node killed
# while others dial: its contacts must not wait for the next restart).
RECOVER_EVERY = 5.0


def begin_run(store: Store, campaign: Campaign, now: datetime) -> None:
    """A run starts: a draft or completed campaign goes to its start state (running, or
    scheduled until ``start_at``); a paused, stopped or running one is left as it is.

    Once per run: ``campaign run --workers N`` does it before starting the workers,
    which leave the state alone (a worker starting late must not reopen the campaign
    the others have just completed)."""
    state, _ = store.state(campaign.name)
    if state in (CampaignState.DRAFT, CampaignState.COMPLETED):
        store.set_state(campaign.name, start_state(campaign, now), "run started", (state,))


def default_node() -> str:
    """This process's identity: ``host:pid:random``, unique per process.

    Two dialers started the same way on one host must never take each other for
    themselves (recovery resolves its own node's open attempts), and a restarted
    process is a new node even if the kernel reuses the pid.
    """
    return f"{socket.gethostname()[:70]}:{os.getpid()}:{secrets.token_hex(4)}"


def node_process_gone(node: str, heartbeat: datetime | None = None) -> bool:
    """True if ``node`` names a process of this host (``host:pid:random``) that is gone.

    Its heartbeat must also be a few seconds old (``LOCAL_DEAD_AFTER``): two machines or
    containers may share a host name but not a process table, and a live node beats
    every second. Other hosts' nodes, and names given with ``--node``, are judged by
    their heartbeat alone (False here).
    """
    host, _, rest = node.rpartition(":")
    host, _, pid = host.rpartition(":")
    if host != socket.gethostname()[:70] or not pid.isdigit() or not rest:
        return False
    if heartbeat is not None:
        beat = heartbeat if heartbeat.tzinfo else heartbeat.replace(tzinfo=UTC)
        if datetime.now(UTC) - beat < LOCAL_DEAD_AFTER:
            return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, owned by another user
    return False


def _utcnow() -> datetime:
    return datetime.now(UTC)


async def run_campaign(
    campaign: Campaign | str,
    store: Store | str,
    placer: CallPlacer,
    *,
    node: str | None = None,
    progress: Callable[[Progress], None] | None = None,
    on_record: Callable[[Finished], None] | None = None,
    stop: Callable[[], bool] | None = None,
    force: asyncio.Event | None = None,
    start: bool = True,
    exit_when_idle: bool = True,
    poll: float = 0.5,
    clock: Callable[[], datetime] = _utcnow,
    scheduler: bool = True,
    share: Share = SOLE,
) -> Progress:
    """Dial a campaign until it completes, is stopped, or ``stop()`` turns true.

    ``campaign`` is a model (saved/updated in the store) or the name of one already
    there; ``store`` a :class:`Store` or URL. ``start=False`` leaves the campaign's
    state alone (a draft waits for ``autocall campaign resume``). Each process is its
    own node (default: :func:`default_node`, ``host:pid:random``); attempts left open
    by nodes that stopped (no heartbeat for a minute, or their process gone from this
    host) are resolved by the campaign's ``on_restart`` policy, at start and while
    dialing; a live node's calls are never touched. ``exit_when_idle`` returns
    once no contact is left to dial (else waits for more). With ``scheduler`` the
    campaign's start_at/end_at are APScheduler jobs kept in the store's database (they
    survive restarts and flip the state for every node); without it this loop checks
    the dates itself. Once ``stop()`` is true no call is started and the calls in
    flight end as their dialogue ends; setting ``force`` then cuts them (the placer
    hangs up) and records them as interrupted. ``share`` is this process's part of the
    campaign's channels and calls/second when several worker processes dial it
    together (:class:`Share`). Returns the last progress.
    """
    own_store = isinstance(store, str)
    db = Store(store) if isinstance(store, str) else store
    try:
        driver = _Driver(campaign, db, placer, node or default_node(), progress, on_record,
                         stop, poll, clock, force, share)
        return await driver.run(start=start, exit_when_idle=exit_when_idle,
                                use_scheduler=scheduler)
    finally:
        if own_store:
            db.close()


class _Driver:
    def __init__(self, campaign: Campaign | str, store: Store, placer: CallPlacer, node: str,
                 progress: Callable[[Progress], None] | None,
                 on_record: Callable[[Finished], None] | None,
                 stop: Callable[[], bool] | None, poll: float,
                 clock: Callable[[], datetime], force: asyncio.Event | None = None,
                 share: Share = SOLE) -> None:
        if isinstance(campaign, Campaign):
            store.save_campaign(campaign)
            name = campaign.name
        else:
            name = campaign
        self.campaign, _, _ = store.campaign(name)
        self.store = store
        self.placer = placer
        self.node = node
        self.progress_cb = progress
        self.on_record = on_record
        self.stop = stop
        self.force = force
        self.poll = poll
        self.clock = clock
        self.dnc = DncList.from_files(self.campaign.dnc, self.campaign.default_region)
        self.share = share
        self.channels = share.channels(self.campaign.channels)  # this process's part
        self.pacer = Pacer(share.rate(self.campaign.calls_per_second), burst=share.burst(),
                           first=share.offset(self.campaign.calls_per_second))
        self.tasks: set[asyncio.Task[None]] = set()
        self._placing: set[asyncio.Task[object]] = set()  # calls not yet ended (cut by force)
        self.live: set[int] = set()  # attempt ids claimed by this process and not yet written
        self._freed = asyncio.Event()  # a call ended: a channel is free
        self._finishing: list[tuple[int, CallRecord, datetime | None, Finished,
                                    asyncio.Future[bool]]] = []
        self._progressing: dict[int, CallRecord] = {}  # unfinished records to write
        self._side: set[asyncio.Future[None]] = set()  # call.ringing events being written
        self._flush_wake = asyncio.Event()
        self.scheduler: AsyncIOScheduler | None = None
        self._scan = 1
        self._logged_idle: str | None = None
        self._logged_at = float("-inf")
        self.loop = asyncio.get_running_loop()
        self._store_down: float | None = None  # loop time the store stopped answering
        self._faults_in_row = 0  # calls in a row that ended as network faults
        self._recheck_state = False  # this node changed the state: read it before dialing
        self._aborting = False  # leaving on an error: calls are cut without a record
        self.last = Progress(CampaignState.DRAFT, 0, 0, 0, 0, 0, 0, 0)

    async def _db(self, fn: Callable[P, T], *args: P.args, **kw: P.kwargs) -> T:
        """Store calls, in a thread: never on the loop that paces the calls' RTP. (SQLite's
        calls ran inline once, as sub-millisecond; with the console open on a busy machine
        they took 1-7 ms, up to 50 ms, each, and the RTP gaps grew with them. A thread hop
        costs some 0.1 ms; sqlite3 lets the loop run while it works.)

        A lost connection (a server restart, a failover) is retried with backoff for as
        long as it takes: meanwhile nothing is dialed (a claim commits its attempt rows
        before any INVITE) and calls in flight go on; their records wait and are written
        when the store is back. Only a forced stop ends the retries (:class:`StoreError`).
        """
        try:
            return await self._db_once(fn, *args, **kw)
        except Exception as exc:
            if not transient(exc):
                raise
            if not self._transient(exc):  # a forced stop
                raise self._gave_up(exc) from exc
        return await self._db_retry(fn, *args, **kw)  # the retry machinery off the hot path

    async def _db_once(self, fn: Callable[P, T], *args: P.args, **kw: P.kwargs) -> T:
        return await asyncio.to_thread(fn, *args, **kw)

    async def _db_retry(self, fn: Callable[P, T], *args: P.args, **kw: P.kwargs) -> T:
        try:
            async for attempt in stamina.retry_context(on=self._transient, attempts=None,
                                                       timeout=None, wait_initial=0.05,
                                                       wait_max=2.0, wait_jitter=0.1):
                with attempt:
                    result = await self._db_once(fn, *args, **kw)
                    if self._store_down is not None:
                        log.warning("%s: store reachable again after %.1f s",
                                    self.campaign.name, self.loop.time() - self._store_down)
                        self._store_down = None
                    return result
        except Exception as exc:
            if not transient(exc):
                raise
            raise self._gave_up(exc) from exc
        raise AssertionError("unreachable: retries without limit")

    def _gave_up(self, exc: Exception) -> StoreError:
        return StoreError(
            f"store unreachable ({_first_line(exc)}); stopped by force with "
            f"{len(self.tasks)} call(s) in flight unrecorded: a dialer started again "
            "resolves them as interrupted")

    def _transient(self, exc: BaseException) -> bool:
        if not transient(exc) or (self.force is not None and self.force.is_set()):
            return False
        if self._store_down is None:
            self._store_down = self.loop.time()
            log.warning("%s: store unreachable (%s); not dialing, %d call(s) in flight kept "
                        "up, retrying", self.campaign.name, _first_line(exc), len(self.tasks))
        return True

    def _next_try(self, attempts_made: int) -> datetime | None:
        if self.campaign.on_restart == "give-up":
            return None
        return next_attempt_at(self.campaign, attempts_made, Outcome.INTERRUPTED, self.clock())

    async def run(self, *, start: bool, exit_when_idle: bool, use_scheduler: bool) -> Progress:
        flusher = asyncio.create_task(self._flush_records())
        if use_scheduler and (self.campaign.start_at or self.campaign.end_at):
            self.scheduler = make_scheduler(self.store.url)
            self.scheduler.start()
            schedule_campaign(self.scheduler, self.store.url, self.campaign)
        try:
            return await self._run(start=start, exit_when_idle=exit_when_idle)
        finally:
            if self.scheduler is not None:
                self.scheduler.shutdown(wait=False)
            if self.tasks:  # leaving on an error: hang the calls up while the UA is alive
                self._aborting = True
                for task in list(self.tasks):
                    task.cancel()
                await asyncio.wait(list(self.tasks), timeout=ABORT_HANGUP)
            await cancelled(flusher)

    async def _run(self, *, start: bool, exit_when_idle: bool) -> Progress:
        name = self.campaign.name
        now = self.clock()
        await self._db(self.store.heartbeat, name, self.node, now, 0, "starting")
        await self._recover(now)
        if start:
            await self._start_state(now)
        idle: str | None = None
        last_beat = last_pub = last_state = float("-inf")
        last_recover = self.loop.time()
        state = CampaignState.DRAFT
        while True:
            now = self.clock()
            mono = self.loop.time()
            if mono - last_recover >= RECOVER_EVERY:
                await self._recover(now)
                last_recover = mono
            if mono - last_pub >= self.poll:
                self._publish(await self._db(self.store.summary, name, now), idle)
                last_pub = mono
            if mono - last_beat >= 1.0:
                await self._db(self.store.heartbeat, name, self.node, now, len(self.tasks),
                               idle or "dialing")
                await self._follow_tree()
                last_beat = mono
            if (mono - last_state >= STATE_CHECK or state is not CampaignState.RUNNING
                    or self._recheck_state):
                self._recheck_state = False
                state, _ = await self._db(self.store.state, name)
                last_state = mono
            if (self.stop is not None and self.stop()) or state in (
                    CampaignState.STOPPED, CampaignState.COMPLETED):
                break
            if (state is CampaignState.SCHEDULED and self.scheduler is None
                    and self._start_due(now)):
                await self._db(self.store.set_state, name, CampaignState.RUNNING,
                               "start_at reached", (CampaignState.SCHEDULED,))
                last_state = float("-inf")
                continue
            if state is not CampaignState.RUNNING:
                summary = await self._db(self.store.summary, name, now)
                idle = idle_reason(summary, now, len(self.tasks), self.channels)
                self.pacer.idle()
                await self._wait(self.poll)
                continue
            if self.scheduler is None and self._ended(now):
                await self._db(self.store.set_state, name, CampaignState.STOPPED,
                               "end_at reached", (CampaignState.RUNNING,))
                last_state = float("-inf")
                continue
            free = self.channels - len(self.tasks)
            if free <= 0:
                idle = f"all {self.channels} channels busy"
                self.pacer.idle()
                await self._wait(self.poll)
                continue
            limit = min(free, self.pacer.free(mono, horizon=CLAIM_AHEAD))
            if limit <= 0:
                await self._wait(self.pacer.due(mono) - CLAIM_AHEAD - mono)
                continue
            if self.dnc.refresh():
                log.info("%s: do-not-call list reloaded (%d numbers)", name,
                         len(self.dnc.numbers))
            scan = max(limit, self._scan)
            claims: list[Claim] = await self._db(
                self.store.claim, name, self.node, now, scan,
                functools.partial(self._plan, now=now), limit)
            scanned_all = self.store.last_scanned == scan
            # Mostly deferred (e.g. a closed window in many zones): look at more rows per
            # transaction next time; mostly dialed: only as many as can be dialed.
            self._scan = min(scan * 4, 2000) if scanned_all and len(claims) < limit else 1
            if claims:
                idle = None
                self.live.update(c.attempt_id for c in claims)
                for claim in claims:
                    await self._sleep_until(self.pacer.slot(self.loop.time()))
                    task = asyncio.create_task(self._call(claim))
                    self.tasks.add(task)
                    task.add_done_callback(self._ended_call)
                continue
            self.pacer.idle()  # nothing to dial now: no calls owed for it
            if scanned_all:
                continue  # a full batch was deferred or closed: more may be due
            summary = await self._db(self.store.summary, name, now)
            if summary.due:
                # Due rows were deferred/closed this round, or another node holds them.
                await self._wait(0.02)
                continue
            if (exit_when_idle and summary.pending == 0 and summary.in_flight == 0
                    and not self.tasks):
                await self._db(self.store.set_state, name, CampaignState.COMPLETED,
                               "every contact is done", (CampaignState.RUNNING,))
                break
            idle = idle_reason(summary, now, len(self.tasks), self.channels)
            wait = self.poll
            if summary.next_due is not None:
                wait = min(wait, max(0.01, (summary.next_due - now).total_seconds()))
            await self._wait(wait)
        await self._drain()
        final = await self._db(self.store.summary, name, self.clock())
        # Said from the final counts: the last loop's reason (a call in flight, say) is
        # history once the calls have ended.
        self._publish(final, idle_reason(final, self.clock(), 0, self.channels))
        await self._db(self.store.heartbeat, name, self.node, self.clock(), 0, "exited")
        return self.last

    async def _drain(self) -> None:
        """Let the calls in flight end; if ``force`` is set meanwhile, cut them short."""
        if not self.tasks:
            return
        calls: asyncio.Future[Any] = asyncio.gather(*list(self.tasks), return_exceptions=True)
        if self.force is not None:
            forced: asyncio.Future[Any] = asyncio.ensure_future(self.force.wait())
            await asyncio.wait({calls, forced}, return_when=asyncio.FIRST_COMPLETED)
            forced.cancel()
            if self.force.is_set() and not calls.done():
                log.warning("%s: forced stop: hanging up %d call(s) in flight",
                            self.campaign.name, len(self.tasks))
                for task in list(self._placing):
                    task.cancel()
        await calls

    async def _recover(self, now: datetime) -> None:
        """Resolve attempts of dead nodes (and this node's orphans) as interrupted."""
        recovered = await self._db(self.store.recover, self.campaign.name, self.node, now,
                                   self._next_try, dead=node_process_gone,
                                   live=frozenset(self.live))
        if recovered:
            log.warning("%s: resolved %d attempt(s) left in flight by a stopped dialer as "
                        "interrupted", self.campaign.name, len(recovered))

    async def _follow_tree(self) -> None:
        """Someone moved the campaign to another tree version (``pin_tree``): the calls
        placed from now on run it; calls in flight end on the one they started with."""
        tree = await self._db(self.store.tree_of, self.campaign.name)
        if tree != self.campaign.tree:
            log.info("%s: now runs %s (was %s)", self.campaign.name, tree, self.campaign.tree)
            self.campaign = self.campaign.model_copy(update={"tree": tree})

    def _plan(self, contact: Contact, *, now: datetime) -> Plan:
        return plan_contact(self.campaign, contact, now, self.dnc)

    async def _start_state(self, now: datetime) -> None:
        await self._db(begin_run, self.store, self.campaign, now)

    def _start_due(self, now: datetime) -> bool:
        s = self.campaign.start_at
        return s is None or now >= (s if s.tzinfo else s.replace(tzinfo=UTC))

    def _ended(self, now: datetime) -> bool:
        e = self.campaign.end_at
        return e is not None and now >= (e if e.tzinfo else e.replace(tzinfo=UTC))

    def _ended_call(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        self._freed.set()

    async def _wait(self, seconds: float) -> None:
        """Sleep, but wake as soon as a call ends (a channel is free).

        One event rather than ``asyncio.wait`` on every task: with hundreds of channels
        that added and removed a callback per call on each wait, time the loop then
        lacked for starting calls on their slots.
        """
        self._freed.clear()
        if not self.tasks:
            await asyncio.sleep(max(0.0, seconds))
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, seconds)):
                await self._freed.wait()

    async def _sleep_until(self, when: float) -> None:
        delay = when - self.loop.time()
        if delay > 0:
            await asyncio.sleep(delay)

    async def _call(self, claim: Claim) -> None:
        try:
            await self._place(claim)
        finally:
            self.live.discard(claim.attempt_id)

    async def _place(self, claim: Claim) -> None:
        c = self.campaign
        contact = claim.contact
        request = CallRequest(
            campaign=c.name, attempt_id=claim.attempt_id, attempt_no=claim.attempt_no,
            contact_id=contact.id, number=contact.number, caller_id=claim.caller_id,
            tree=c.tree, variables=dict(contact.fields), ring_timeout=c.ring_timeout,
            recording=c.recording, trunk=c.trunk, amd=c.amd.options(),
            on_progress=functools.partial(self._progress, claim.attempt_id),
            on_ringing=functools.partial(self._ringing, claim.attempt_id))
        started = self.clock()
        self.dnc.refresh()  # a stat() per file: re-read only when someone changed it
        if contact.number in self.dnc:
            result = CallRecord(CallStatus.CANCELED, outcome=Outcome.DNC, started_at=started,
                                ended_at=started, error="on the do-not-call list at dial time")
        else:
            me = asyncio.current_task()
            if me is not None:
                self._placing.add(me)
            try:
                result = await self.placer.place(request)
            except asyncio.CancelledError:
                if self._aborting or self.force is None or not self.force.is_set():
                    raise
                # A forced stop: the placer hung up; the record still says what happened.
                result = CallRecord(CallStatus.FAILED, started_at=started,
                                    ended_at=self.clock(), outcome=Outcome.INTERRUPTED,
                                    error="call cut short by a forced stop of the dialer")
            except Exception as exc:  # noqa: BLE001 - any placer failure is a failed call
                log.exception("%s: placing %s failed", c.name, contact.number)
                result = CallRecord(CallStatus.FAILED, started_at=started, ended_at=self.clock(),
                                    error=f"{type(exc).__name__}: {exc}")
            finally:
                if me is not None:
                    self._placing.discard(me)
        outcome = outcome_of(result)
        if outcome is Outcome.OPTED_OUT:
            # The store's list first: every campaign and node honours it (a campaign made
            # over the API has no DNC file at all).
            await self._db(self.store.add_dnc, contact.number, f"dialer:{self.node}",
                           f"opt-out in {c.name}")
            if self.dnc.paths:
                await self._db(self.dnc.add, contact.number)
        now = self.clock()
        record = replace(result, outcome=outcome, started_at=result.started_at or started,
                         ended_at=result.ended_at or now, campaign=c.name,
                         contact_id=contact.id, attempt_no=claim.attempt_no,
                         number=contact.number, caller_id=claim.caller_id)
        faults = contact.network_faults + (outcome is Outcome.NETWORK_FAULT)
        nxt = next_attempt_at(c, claim.attempt_no, outcome, now, faults)
        done: asyncio.Future[bool] = self.loop.create_future()
        finished = Finished(claim.attempt_id, contact.id, claim.attempt_no, contact.number,
                            outcome, record)
        self._finishing.append((claim.attempt_id, record, nxt, finished, done))
        self._flush_wake.set()
        await done
        await self._count_network_fault(outcome, result)

    async def _count_network_fault(self, outcome: Outcome, result: CallRecord) -> None:
        """Pause the campaign after ``pause_after_network_faults`` faults in a row."""
        if outcome is not Outcome.NETWORK_FAULT:
            if outcome is not Outcome.DNC:
                self._faults_in_row = 0
            return
        self._faults_in_row += 1
        limit = self.campaign.pause_after_network_faults
        if self._faults_in_row < limit:
            return
        self._faults_in_row = 0
        what = f"SIP {result.sip_code} {result.reason or ''}".strip() if result.sip_code \
            else (result.error or "no response")
        reason = (f"paused by node {self.node}: {limit} calls in a row failed as network-fault "
                  f"(last: {what}); the trunk looks unreachable: check it, then run "
                  f"'autocall campaign resume {self.campaign.name}'")
        if await self._db(self.store.set_state, self.campaign.name, CampaignState.PAUSED,
                          reason, (CampaignState.RUNNING,)):
            log.error("%s: %s", self.campaign.name, reason)
        self._recheck_state = True  # no call may start on the state read before this

    def _ringing(self, attempt_id: int) -> None:
        """The call.ringing webhook event, best effort (never after answered)."""
        task = asyncio.ensure_future(self._db_once(self.store.ringing, attempt_id))
        self._side.add(task)
        task.add_done_callback(self._side_done)

    def _side_done(self, task: asyncio.Future[None]) -> None:
        self._side.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("%s: call.ringing event not written: %s", self.campaign.name,
                        task.exception())

    def _progress(self, attempt_id: int, record: CallRecord) -> None:
        self._progressing[attempt_id] = record  # the newest per call
        self._flush_wake.set()

    async def _flush_records(self) -> None:
        """Write calls in batches: one transaction for all that progressed meanwhile (at
        answer, new digits), one for all that ended."""
        while True:
            await self._flush_wake.wait()
            self._flush_wake.clear()
            progress, self._progressing = self._progressing, {}
            if progress:
                try:
                    await self._db(self.store.progress_many, list(progress.items()))
                except StoreError as exc:  # a forced stop while the store is away
                    log.error("%s: %d unfinished call records not written: %s",
                              self.campaign.name, len(progress), exc)
                except Exception:  # noqa: BLE001 - the end record follows all the same
                    log.exception("%s: writing %d unfinished call records failed",
                                  self.campaign.name, len(progress))
            batch, self._finishing = self._finishing, []
            if not batch:
                continue
            try:
                written = await self._db(self.store.finish_many,
                                         [(a, r, n) for a, r, n, _, _ in batch])
            except Exception as exc:  # noqa: BLE001 - the calls stay open; restart recovers
                if isinstance(exc, StoreError):  # a forced stop while the store is away:
                    log.error("%s: %d call records not written: %s", self.campaign.name,
                              len(batch), exc)  # said, no traceback
                else:
                    log.exception("%s: writing %d call records failed", self.campaign.name,
                                  len(batch))
                for *_, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for (_, _, _, finished, fut), ok in zip(batch, written, strict=True):
                if ok and self.on_record is not None:
                    self.on_record(finished)
                if not fut.done():
                    fut.set_result(ok)

    def _publish(self, s: Summary, idle: str | None) -> None:
        self.last = progress_of(s, idle)
        if self.progress_cb is not None:
            self.progress_cb(self.last)
        # Say why nothing is dialed in the log too (headless nodes), once per change/minute.
        now = self.loop.time()
        if idle and (idle != self._logged_idle or now - self._logged_at >= 60):
            log.info("%s [%s]: %s", self.campaign.name, self.node, idle)
            self._logged_idle, self._logged_at = idle, now

def explain(campaign: Campaign, state: CampaignState, contact: Contact | None, now: datetime,
            dnc: Container[str]) -> tuple[bool, list[str]]:
    """Why a contact is or is not being dialed: (would dial now, reasons). Pure."""
    if contact is None:
        return False, ["the number is not a contact of this campaign (imported? rejected?)"]
    lines = [f"contact {contact.id} {contact.number}, zones {' '.join(contact.timezones)}, "
             f"{contact.attempts - contact.network_faults} of {campaign.retry.max_attempts} "
             "attempts used"]
    if contact.network_faults:
        lines.append(f"{contact.network_faults} of {campaign.retry.max_network_faults} "
                     "network faults (the trunk was unreachable; not counted as attempts)")
    if contact.state.value == "done":
        last = contact.last_outcome.value if contact.last_outcome else "none"
        why = ("never retried" if contact.last_outcome in NEVER_RETRY
               else "no attempts left or no retry for this outcome")
        lines.append(f"done: last outcome {last} ({why})")
        if contact.wait_reason:
            lines.append(contact.wait_reason)
        return False, lines
    if contact.state.value == "in-flight":
        lines.append(f"a call is in progress now (attempt {contact.attempts})")
        return False, lines
    ok = True
    if state is not CampaignState.RUNNING:
        lines.append(f"campaign is {state.value}: nothing is dialed until it runs")
        ok = False
    if contact.next_at is not None and contact.next_at > now:
        lines.append(f"waiting until {contact.next_at:%Y-%m-%d %H:%M:%S} UTC: "
                     f"{contact.wait_reason or 'retry'}")
        ok = False
    plan = plan_contact(campaign, contact, max(now, contact.next_at or now), dnc)
    if isinstance(plan, Close):
        lines.append(f"will be closed at its next turn: {plan.reason}")
        ok = False
    elif isinstance(plan, Defer):
        lines.append(plan.reason)
        ok = False
    elif ok:
        lines.append("due now: dialed as soon as a channel and a calls/second slot are free")
    return ok, lines
