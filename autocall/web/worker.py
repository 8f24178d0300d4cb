"""The dialer worker `autocall web` starts in its own process (media never shares the
web server's process or event loop): it dials what the store says.

- Campaigns that are running or scheduled get a dialer (``run_campaign``) each, on one
  shared user agent; pause, resume and stop reach them through the store as they reach
  ``autocall campaign run``.
- Calls asked for by ``POST /v1/calls`` are claimed (queued → dialing, one winner per
  row even with several workers) and placed by :class:`OutboundCall`; the record is
  written at answer, as digits come and at the end, into ``autocall_calls`` and the
  request's row. A request whose worker died mid-call is closed as failed, never dialed
  again: nobody is dialed twice for one request.

``python -m autocall.web.worker --db URL [--parent PID]``; SIGTERM drains (calls in
flight end), a second SIGTERM hangs up. With ``--parent`` (``autocall web`` passes its
own pid) the worker ends with that process even if it is killed with SIGKILL: the
kernel's parent-death signal (Linux; SIGHUP) or, everywhere, a poll of the parent's pid
starts the drain, and calls still in flight after :data:`ORPHAN_STOP_SECONDS` are hung up (what
``autocall web`` itself would do with a worker slow to stop).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import re
import signal
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from autocall import lifeline
from autocall.campaign import outbox
from autocall.campaign.db import reading
from autocall.campaign.dialer import default_node, node_process_gone, run_campaign
from autocall.campaign.model import CampaignState
from autocall.campaign.placer import SipPlacer, from_settings, load_tree
from autocall.campaign.store import Store, call_requests
from autocall.campaign.trees import TreeLibrary
from autocall.config import Settings
from autocall.dialogue.schema import Tree
from autocall.signals import StopSignals, cancelled
from autocall.telephony.answer import AmdOptions
from autocall.telephony.outbound import Dial, OutboundCall, Services, informer_tree
from autocall.telephony.record import CallRecord, CallStatus, build
from autocall.telephony.webhooks import StatusCallbacks
from autocall.web.api.calls import CallCreate

log = logging.getLogger(__name__)

DIALED_STATES = (CampaignState.RUNNING, CampaignState.SCHEDULED)
TREE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
POLL = 1.0
PARENT_POLL = 0.5  # seconds between looks at the parent's pid
ORPHAN_STOP_SECONDS = 60.0  # as autocall web's own WORKER_STOP_SECONDS, then hang up


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Worker:
    """Dials the store's running campaigns and queued API calls until ``stop`` is set."""

    def __init__(self, store: Store, placer: SipPlacer, settings: Settings, *,
                 node: str | None = None, prompts_dir: Path | None = None) -> None:
        self.store, self.placer, self.settings = store, placer, settings
        self.node = node or default_node()
        self.prompts_dir = prompts_dir or settings.prompts_dir
        self.stopping = asyncio.Event()
        self.force = asyncio.Event()
        self.campaigns: dict[str, asyncio.Task[object]] = {}
        self.calls: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        self.close_orphans()
        while not self.stopping.is_set():
            self.start_campaigns()
            for request_id, definition in self.claim_calls():
                task = asyncio.ensure_future(self.place(request_id, definition))
                self.calls.add(task)
                task.add_done_callback(self.calls.discard)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), POLL)
        await asyncio.gather(*self.campaigns.values(), *self.calls, return_exceptions=True)

    # --- campaigns ----------------------------------------------------------------

    def start_campaigns(self) -> None:
        for name in self.store.campaign_names():
            task = self.campaigns.get(name)
            if task is not None and not task.done():
                continue
            state, _ = self.store.state(name)
            if state in DIALED_STATES:
                self.campaigns[name] = asyncio.ensure_future(run_campaign(
                    name, self.store, self.placer, node=self.node, start=False,
                    stop=self.stopping.is_set, force=self.force))

    # --- API calls ----------------------------------------------------------------

    def claim_calls(self) -> list[tuple[str, str]]:
        """Queued requests this worker won (a conditional update: one winner per row)."""
        with reading(self.store.engine) as conn:
            rows = conn.execute(select(call_requests.c.id, call_requests.c.definition)
                                .where(call_requests.c.state == "queued")
                                .order_by(call_requests.c.created_at).limit(50)).all()
        won = []
        for row in rows:
            with self.store.engine.begin() as conn:
                taken = conn.execute(update(call_requests).where(
                    call_requests.c.id == row.id, call_requests.c.state == "queued").values(
                    state="dialing", node=self.node, claimed_at=_now())).rowcount
            if taken:
                won.append((row.id, row.definition))
        return won

    def close_orphans(self) -> None:
        """Requests a dead worker of this host was dialing: failed, not dialed again;
        their calls' records (written at answer) are closed too, and a request with a
        status callback gets its ``call.completed`` (failed) in the same transaction:
        the CRM heard ``initiated`` (and maybe ``answered``) and must hear the end."""
        self.store.close_unfinished_calls("outbound", node_process_gone)
        with self.store.engine.begin() as conn:
            rows = conn.execute(select(call_requests.c.id, call_requests.c.node,
                                       call_requests.c.call_id, call_requests.c.definition)
                                .where(call_requests.c.state == "dialing")).all()
            for row in rows:
                if row.node and node_process_gone(row.node):
                    error = "the dialer stopped while placing the call"
                    record = build(None, None, started=datetime.now(UTC), error=error)
                    self._finish(conn, row.id, replace(record, call_id=row.call_id))
                    self._orphan_callback(conn, row.id, row.definition, error)

    @staticmethod
    def _orphan_callback(conn: Connection, request_id: str, definition: str, error: str
                         ) -> None:
        try:
            url = CallCreate.model_validate_json(definition).status_callback
        except ValueError:  # stored by an older version in another shape: no callback
            return
        if url is None:
            return
        # the shape StatusCallbacks.send gives a call.completed
        payload = {"call_id": request_id, "status": "completed",
                   "timestamp": datetime.now(UTC).timestamp(),
                   "call_status": CallStatus.FAILED.value, "error": error}
        outbox.enqueue(conn, [outbox.callback_target(url)], "call.completed",
                       f"call:{request_id}", payload)

    def dial_of(self, request: CallCreate) -> Dial:
        tree: Tree
        if request.tree is not None:
            if not TREE_NAME.match(request.tree):
                raise ValueError(f"tree {request.tree!r}: a name, not a path")
            stored = TreeLibrary(self.store.engine, self.prompts_dir).newest_published(
                request.tree)  # a tree kept in the store wins over a file of that name
            tree = stored or load_tree(self.prompts_dir / f"{request.tree}.yaml")
        else:
            tree = informer_tree(say=request.say, lang=request.lang, play=None,
                                 repeat=request.repeat, confirm=request.confirm,
                                 confirm_timeout=request.confirm_timeout)
        amd = AmdOptions(on_machine=request.on_machine) if request.amd else None
        trunk = self.settings.trunk
        uri = request.to if request.to.startswith(("sip:", "sips:")) else (
            f"sip:{request.to}@{trunk.hostport}")
        variables = {k: str(v) for k, v in request.variables.items()}
        return Dial(uri, tree, request.to, variables,
                    caller_id=request.caller_id, ring_timeout=request.ring_timeout, amd=amd)

    async def place(self, request_id: str, definition: str) -> None:
        started = datetime.now(UTC)
        try:
            request = CallCreate.model_validate_json(definition)
            dial = replace(self.dial_of(request), key=request_id)
        except (ValueError, OSError) as exc:  # validated at POST; a tree may have gone since
            self.finish(request_id, replace(build(None, None, started=started), error=str(exc)))
            return
        # the request's status callbacks go through the outbox: signed, retried, kept
        sink = None if request.status_callback is None else outbox.Sink(
            self.store.engine, [outbox.callback_target(request.status_callback)])
        services = Services(self.placer.services.audio, self.placer.services.recordings_dir,
                            callbacks=StatusCallbacks(request.status_callback, sink=sink))
        outbound = OutboundCall(self.placer.ua, dial, services,
                                on_progress=lambda r: self.write(r, request_id))
        try:
            record = await outbound.place()
        except asyncio.CancelledError:
            await outbound.hang_up(4.0)
            record = outbound.record(error="the dialer was stopped during the call")
        except Exception as exc:  # noqa: BLE001 - any failure is a failed call, recorded
            log.exception("call request %s failed", request_id)
            record = outbound.record(error=f"{type(exc).__name__}: {exc}")
        finally:
            await services.callbacks.drain(3.0)
        self.write(record, request_id)
        self.finish(request_id, record)

    def write(self, record: CallRecord, request_id: str) -> None:
        """The call's record in ``autocall_calls`` (at answer, as it goes, at the end),
        and its Call-ID on the request, so a crash leaves the two linked."""
        if not record.call_id:
            return
        self.store.add_call(replace(record, node=self.node))
        with self.store.engine.begin() as conn:
            conn.execute(update(call_requests).where(
                call_requests.c.id == request_id, call_requests.c.call_id.is_(None))
                .values(call_id=record.call_id))

    def finish(self, request_id: str, record: CallRecord) -> None:
        with self.store.engine.begin() as conn:
            self._finish(conn, request_id, record)

    @staticmethod
    def _finish(conn: Connection, request_id: str, record: CallRecord) -> None:
        if record.status is CallStatus.IN_PROGRESS:
            record = replace(record, status=CallStatus.FAILED)
        conn.execute(update(call_requests).where(call_requests.c.id == request_id).values(
            state="done", finished_at=_now(), call_id=record.call_id,
            record=json.dumps(record.as_json(), default=str)))


async def work(url: str, settings: Settings, *, parent: int | None = None) -> None:
    """Dial until SIGTERM/SIGINT (the first drains, a second hangs up), or until the
    process ``parent`` is gone."""
    with Store(url) as store:
        async with from_settings(settings) as placer:
            worker = Worker(store, placer, settings)

            def told(sig: signal.Signals) -> None:
                if len(signals.received) == 1:
                    log.warning("%s: no new calls; calls in flight end (a second signal "
                                "hangs them up)", sig.name)
                else:
                    log.warning("%s again: hanging up the calls in flight", sig.name)

            signals = StopSignals(told)
            worker.stopping, worker.force = signals.stop, signals.force
            watch = None if parent is None else asyncio.create_task(
                lifeline.follow_parent(parent, signals.stop, signals.force,
                                       who="the web process", grace=ORPHAN_STOP_SECONDS,
                                       poll=PARENT_POLL))
            try:  # webhooks (campaigns' and calls') leave from here too
                await outbox.alongside(store.engine, worker.node, worker.run(), grace=5.0)
            finally:
                signals.close()
                await cancelled(watch)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m autocall.web.worker",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="store URL (default: AUTOCALL_DATABASE_URL)")
    parser.add_argument("--parent", type=int, metavar="PID",
                        help="end with this process (autocall web passes its own pid)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s worker %(message)s")
    if args.parent is not None:
        # first thing: a SIGHUP when the parent dies, even by SIGKILL, which makes
        # follow_parent look at once (until its handler is set, SIGHUP just ends us:
        # nothing is dialed yet); a parent already gone by now is seen at its first look
        lifeline.ask_parent_death_signal(signal.SIGHUP)
    if (problem := outbox.secret_problem(outbox.STATUS_SECRET_ENV)) is not None:
        parser.exit(2, f"error: {problem}\n")
    settings = Settings.from_env()
    asyncio.run(work(args.db or settings.database_url, settings, parent=args.parent))


if __name__ == "__main__":
    main()
