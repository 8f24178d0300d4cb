"""The campaign store: the one truth about contacts, attempts and campaign state.

SQLAlchemy Core over a SQLite file (one node) or PostgreSQL (several nodes). Every
attempt row is committed before its INVITE can leave, together with the contact's
attempt counter, so a crash can leave an attempt unfinished but never dial the same
attempt twice (``UNIQUE(contact_id, attempt_no)`` guards it). Nodes claim contacts with
``SELECT … FOR UPDATE SKIP LOCKED``; SQLite serialises writers with ``BEGIN IMMEDIATE``.
Times are stored as naive UTC.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Container, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import stamina
from sqlalchemy import (
    and_,
    bindparam,
    create_engine,
    event,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.schema import Column, ForeignKey, Index, Table, UniqueConstraint
from sqlalchemy.types import DateTime, Float, Integer, String, Text

from autocall.campaign import migrations, outbox
from autocall.campaign.db import guard_reads, is_reading, metadata, reading
from autocall.campaign.model import (
    Attempt,
    CallStatus,
    Campaign,
    CampaignState,
    Close,
    Contact,
    ContactState,
    Defer,
    Dial,
    NewContact,
    Outcome,
    Plan,
)
from autocall.files import private_file
from autocall.telephony.record import CallRecord, StoredRecord

# The tables as the newest migration (autocall/campaign/migrations) leaves them; the
# queries are built on these, the schema itself is made by the migrations only.

campaigns = Table(
    "autocall_campaigns",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("state_reason", Text),
    Column("definition", Text, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
)

contacts = Table(
    "autocall_contacts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("campaign", String(100), ForeignKey("autocall_campaigns.name"), nullable=False),
    Column("number", String(20), nullable=False),
    Column("timezones", String(200), nullable=False),
    Column("fields", Text, nullable=False),
    Column("state", String(12), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_at", DateTime),
    Column("wait_kind", String(12)),
    Column("wait_reason", Text),
    Column("last_outcome", String(20)),
    Column("source", Text),
    Column("network_faults", Integer, nullable=False, default=0, server_default="0"),
    UniqueConstraint("campaign", "number", name="uq_autocall_contacts_number"),
    Index("ix_autocall_contacts_due", "campaign", "state", "next_at"),
)

def _outcome_columns() -> list[Column[Any]]:
    """The DESIGN.md §4 record fields an attempt and a call both end with (fresh objects:
    a Column belongs to one table)."""
    return [
        Column("started_at", DateTime),
        Column("answered_at", DateTime),
        Column("ended_at", DateTime),
        Column("duration", Float),
        Column("billable", Float),
        Column("digits", String(200), nullable=False, default=""),
        Column("path", Text, nullable=False, default="[]"),
        Column("variables", Text, nullable=False, default="{}"),
        Column("recording", Text),
        Column("error", Text),
        Column("dialogue_outcome", String(40)),
        Column("answered_by", String(16)),
    ]


attempts = Table(
    "autocall_attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("campaign", String(100), nullable=False),
    Column("contact_id", Integer, ForeignKey("autocall_contacts.id"), nullable=False),
    Column("attempt_no", Integer, nullable=False),
    Column("number", String(20), nullable=False),
    Column("caller_id", String(40), nullable=False),
    Column("node", String(100), nullable=False),
    Column("status", String(16), nullable=False),
    Column("outcome", String(20)),
    Column("sip_code", Integer),
    Column("q850", Integer),
    Column("created_at", DateTime, nullable=False),
    *_outcome_columns(),
    UniqueConstraint("contact_id", "attempt_no", name="uq_autocall_attempt_once"),
    Index("ix_autocall_attempts_open", "campaign", "ended_at"),
)

nodes = Table(
    "autocall_nodes",
    metadata,
    Column("node", String(100), primary_key=True),
    Column("campaign", String(100), nullable=False),
    Column("heartbeat", DateTime, nullable=False),
    Column("in_flight", Integer, nullable=False, default=0),
    Column("status", Text),
)

# Calls outside campaigns (inbound, informer): the same DESIGN.md §4 record fields.
# One row per SIP Call-ID and direction, so a record written twice is stored once.
calls = Table(
    "autocall_calls",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("direction", String(10), nullable=False),
    Column("call_id", String(200), nullable=False),
    Column("number", String(100)),
    Column("caller", Text),
    Column("source", String(100)),
    Column("tree", String(100)),
    Column("node", String(100)),
    Column("status", String(16)),
    Column("sip_code", Integer),
    Column("q850", Integer),
    *_outcome_columns(),
    UniqueConstraint("call_id", "direction", name="uq_autocall_calls_once"),
)

# Do-not-call numbers managed from the API and console (migration 0003); the campaign's
# own DNC files still apply. ``claim`` closes a listed contact as dnc in its own query.
dnc = Table(
    "autocall_dnc",
    metadata,
    Column("number", String(20), primary_key=True),
    Column("added_at", DateTime, nullable=False),
    Column("added_by", String(120)),
    Column("source", String(200)),
)

# Calls asked for over the API (``POST /v1/calls``, migration 0003): the web process
# stores them queued, a dialer claims and places them and writes ``record``.
call_requests = Table(
    "autocall_call_requests",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("created_at", DateTime, nullable=False),
    Column("created_by", String(120)),
    Column("definition", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("node", String(100)),
    Column("claimed_at", DateTime),
    Column("finished_at", DateTime),
    Column("call_id", String(200)),
    Column("record", Text),
)

_ON_DNC = (select(dnc.c.number).where(dnc.c.number == contacts.c.number)
           .exists().label("on_dnc"))


def _naive(dt: datetime | None) -> datetime | None:
    if dt is None or dt.tzinfo is None:
        return dt
    return dt.astimezone(UTC).replace(tzinfo=None)


def _aware(dt: datetime | None) -> datetime | None:
    return None if dt is None else dt.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Claim:
    """A contact claimed for one attempt; its attempt row is already committed."""

    attempt_id: int
    attempt_no: int
    contact: Contact
    caller_id: str


@dataclass(frozen=True)
class Summary:
    """Counts the dialer and ``status`` need to say what is going on."""

    state: CampaignState
    state_reason: str | None
    total: int
    pending: int
    due: int
    in_flight: int
    done: int
    waiting: dict[str, int]
    next_due: datetime | None
    outcomes: dict[str, int]
    attempts: int
    answered: int
    nodes: list[dict[str, Any]]


# Statements built once: the dial cycle runs them thousands of times (executemany).
_START_CONTACT = (
    update(contacts).where(contacts.c.id == bindparam("cid"))
    .values(state=ContactState.IN_FLIGHT.value, attempts=bindparam("b_attempts"),
            wait_kind=None, wait_reason=None)
)
_MOVE_CONTACT = (
    update(contacts).where(contacts.c.id == bindparam("cid"))
    .values(state=bindparam("b_state"), next_at=bindparam("b_next_at"),
            wait_kind=bindparam("b_wait_kind"), wait_reason=bindparam("b_wait_reason"),
            last_outcome=bindparam("b_last_outcome"),
            network_faults=contacts.c.network_faults + bindparam("b_fault"))
)
_FINISH_ATTEMPT = (
    update(attempts).where(attempts.c.id == bindparam("aid"), attempts.c.ended_at.is_(None))
    .values({c: bindparam(f"b_{c}") for c in (
        "status", "outcome", "sip_code", "q850", *(col.name for col in _outcome_columns()))})
)


# What is known of a call still going: written at answer and as digits come, so a crash
# leaves it (unfinished: no ended_at) for recover() to close.
_PROGRESS = ("status", "started_at", "answered_at", "digits", "path", "variables",
             "dialogue_outcome", "answered_by")
_PROGRESS_ATTEMPT = (
    update(attempts).where(attempts.c.id == bindparam("aid"), attempts.c.ended_at.is_(None))
    .values({c: bindparam(f"b_{c}") for c in _PROGRESS})
)


def _value(outcome: Outcome | None) -> str | None:
    return None if outcome is None else outcome.value


def _move_params(contact_id: int, outcome: Outcome, next_at: datetime | None) -> dict[str, Any]:
    fault = int(outcome is Outcome.NETWORK_FAULT)
    if next_at is None:
        return {"cid": contact_id, "b_state": ContactState.DONE.value, "b_next_at": None,
                "b_wait_kind": None, "b_wait_reason": None, "b_last_outcome": outcome.value,
                "b_fault": fault}
    return {"cid": contact_id, "b_state": ContactState.PENDING.value,
            "b_next_at": _naive(next_at), "b_wait_kind": "retry",
            "b_wait_reason": f"retry after {outcome.value}", "b_last_outcome": outcome.value,
            "b_fault": fault}


def _record_row(record: CallRecord) -> dict[str, Any]:
    """The §4 columns attempts and calls share, from the one record."""
    if record.ended_at is None and not record.unfinished:
        record = replace(record, ended_at=datetime.now(UTC))
    # naive UTC first: a record may mix aware and naive times
    plain = replace(record, started_at=_naive(record.started_at),
                    answered_at=_naive(record.answered_at), ended_at=_naive(record.ended_at))
    return {
        "status": record.status.value, "sip_code": record.sip_code, "q850": record.q850,
        "started_at": plain.started_at, "answered_at": plain.answered_at,
        "ended_at": plain.ended_at, "duration": plain.duration, "billable": plain.billable,
        "digits": record.digits,
        "path": json.dumps(list(record.path)),
        "variables": json.dumps(dict(record.variables), default=str),
        "recording": record.recording, "error": record.error,
        "dialogue_outcome": record.dialogue_outcome, "answered_by": record.answered_by,
    }


def _finish_params(attempt_id: int, record: CallRecord) -> dict[str, Any]:
    params = {f"b_{k}": v for k, v in _record_row(record).items()}
    return {"aid": attempt_id, "b_outcome": _outcome(record).value, **params}


_STATE_EVENTS: dict[CampaignState, outbox.EventType] = {
    CampaignState.RUNNING: "campaign.started", CampaignState.PAUSED: "campaign.paused",
    CampaignState.COMPLETED: "campaign.completed"}


def _subject(campaign: str, attempt_id: int) -> str:
    """A campaign call's outbox subject (its events reach a receiver in order)."""
    return f"call:{campaign}/{attempt_id}"


def _finished_events(conn: Connection, targets: Sequence[outbox.WebhookTarget], name: str,
                     attempt_id: int, record: CallRecord, next_at: datetime | None) -> None:
    """The events of an attempt's end, on the transaction that finishes it."""
    if not targets:
        return
    subject = _subject(name, attempt_id)
    data = {**record.as_json(), "attempt_id": attempt_id, "campaign": name}
    outbox.enqueue(conn, targets, "call.completed", subject, data)
    outbox.enqueue(conn, targets, "attempt.finished", subject, {
        **data, "next_attempt_at": next_at.isoformat() if next_at else None})
    if record.outcome == Outcome.OPTED_OUT.value:
        outbox.enqueue(conn, targets, "opt-out", subject, {
            "campaign": name, "attempt_id": attempt_id, "contact_id": record.contact_id,
            "number": record.number})
    if record.recording:
        outbox.enqueue(conn, targets, "recording.ready", subject, {
            "campaign": name, "attempt_id": attempt_id, "recording": record.recording})


def _outcome(record: CallRecord) -> Outcome:
    """A finished attempt's retry outcome (the dialer resolves it before writing)."""
    if record.outcome is None:
        raise StoreError("an attempt's record needs its retry outcome to be finished")
    return Outcome(record.outcome)


class StoreError(RuntimeError):
    pass


def transient(exc: BaseException) -> bool:
    """True for store errors worth retrying: the connection was lost (a server restart,
    a failover) or the database was busy; False for errors in the statement itself."""
    if isinstance(exc, IntegrityError):
        return False
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, (OperationalError, InterfaceError))


# A record writer called on the event loop (serve's on_record) waits this long for a
# restarting server; long enough for a restart, short enough not to starve live calls.
RECORD_RETRY_SECONDS = 5.0


class Store:
    """All database access for campaigns; one instance per process."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.engine: Engine = create_engine(url, echo=echo, future=True, pool_pre_ping=True)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self.last_scanned = 0  # rows the last claim() looked at (dialed, deferred or closed)
        self._targets: dict[str, tuple[datetime, tuple[outbox.WebhookTarget, ...]]] = {}
        guard_reads(self.engine)
        if self.is_sqlite:
            _private_sqlite_file(self.engine.url.database)
            _sqlite_setup(self.engine)
        self.migrate()

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- calls outside campaigns --------------------------------------------------

    def add_call(self, record: CallRecord) -> bool:
        """Store one inbound/informer call record, or update its unfinished one (written at
        answer); False if that call is already stored finished."""
        row = {**_record_row(record), "direction": record.direction,
               "call_id": record.call_id or "", "number": record.number,
               "caller": record.caller_id, "source": record.source, "tree": record.tree,
               "node": record.node}
        still_open = update(calls).where(
            calls.c.call_id == row["call_id"], calls.c.direction == row["direction"],
            calls.c.ended_at.is_(None)).values(**row)
        # Retried across a server restart: a write whose commit was lost is either
        # stored (then the retry meets the unique Call-ID and returns False) or not.
        for attempt in stamina.retry_context(on=transient, attempts=None,
                                             timeout=RECORD_RETRY_SECONDS, wait_initial=0.05,
                                             wait_max=0.5, wait_jitter=0.05):
            with attempt:
                try:
                    with self.engine.begin() as conn:
                        conn.execute(insert(calls).values(**row))
                except IntegrityError:
                    with self.engine.begin() as conn:
                        return bool(conn.execute(still_open).rowcount)
        return True

    def close_unfinished_calls(self, direction: str, gone: Callable[[str], bool]) -> int:
        """Close the records a killed process left unfinished (its ``node`` is ``gone``):
        failed, with the reason; what they knew (answered at, digits, path) stays."""
        now = _naive(datetime.now(UTC))
        with self.engine.begin() as conn:
            rows = conn.execute(select(calls.c.id, calls.c.node).where(
                calls.c.direction == direction, calls.c.ended_at.is_(None))).all()
            ids = [r.id for r in rows if r.node is None or gone(r.node)]
            if ids:
                conn.execute(update(calls).where(calls.c.id.in_(ids)).values(
                    status=CallStatus.FAILED.value, ended_at=now,
                    error="the server stopped while the call was in progress"))
        return len(ids)

    def calls(self, direction: str | None = None) -> list[StoredRecord]:
        """Stored calls outside campaigns, oldest first."""
        query = select(calls).order_by(calls.c.id)
        if direction is not None:
            query = query.where(calls.c.direction == direction)
        with reading(self.engine) as conn:
            return [StoredRecord(
                **_stored(r), direction=r.direction, call_id=r.call_id, number=r.number,
                caller_id=r.caller, source=r.source, tree=r.tree, node=r.node)
                for r in conn.execute(query)]

    # --- schema -------------------------------------------------------------------

    def migrate(self) -> str:
        """Bring the schema to the newest alembic revision (returned); safe when several
        nodes start at once: they take turns on a lock (PostgreSQL) or the write lock
        (SQLite's BEGIN IMMEDIATE), and the later ones find nothing to do."""
        with self.engine.begin() as conn:
            if not self.is_sqlite:
                conn.execute(text("SELECT pg_advisory_xact_lock(7210001)"))
            try:
                return migrations.upgrade(conn)
            except migrations.MigrationError as exc:
                raise StoreError(str(exc)) from exc

    # --- campaigns ----------------------------------------------------------------

    def save_campaign(self, campaign: Campaign, state: CampaignState = CampaignState.DRAFT,
                      now: datetime | None = None, *, keep_pin: bool = False,
                      unpinned: Callable[[Connection, str], None] | None = None
                      ) -> CampaignState:
        """Insert or update a campaign definition; an existing campaign keeps its state.

        ``keep_pin``: an existing campaign that runs a stored tree version
        (``store:NAME@N``, set by ``autocall campaign pin`` or the console) keeps running
        it whatever ``campaign.tree`` says: a campaign moves to another version only when
        someone moves it (issue 17). :meth:`tree_of` then tells which tree it runs.
        Without it, a pin the definition replaces is passed to ``unpinned(conn, pin)`` in
        the same transaction (the caller's audit line exists iff the move does)."""
        now = _naive(now or datetime.now(UTC))
        definition = campaign.model_dump_json()
        with self.engine.begin() as conn:
            query = select(campaigns.c.state, campaigns.c.definition).where(
                campaigns.c.name == campaign.name)
            if not self.is_sqlite:  # a pin moved meanwhile is seen (see set_tree)
                query = query.with_for_update()
            row = conn.execute(query).first()
            if row is None:
                conn.execute(insert(campaigns).values(
                    name=campaign.name, state=state.value, definition=definition,
                    created_at=now, updated_at=now))
                return state
            stored = Campaign.model_validate_json(row.definition).tree
            if stored.startswith("store:"):  # trees.STORE_PREFIX: a pinned version
                if keep_pin:
                    definition = campaign.model_copy(update={"tree": stored}).model_dump_json()
                elif unpinned is not None and campaign.tree != stored:
                    unpinned(conn, stored)
            conn.execute(update(campaigns).where(campaigns.c.name == campaign.name)
                         .values(definition=definition, updated_at=now))
            return CampaignState(row.state)

    def campaign(self, name: str) -> tuple[Campaign, CampaignState, str | None]:
        with reading(self.engine) as conn:
            row = conn.execute(select(campaigns).where(campaigns.c.name == name)).first()
        if row is None:
            raise StoreError(f"no campaign {name!r} in {self.url_safe}; import it first")
        return (Campaign.model_validate_json(row.definition), CampaignState(row.state),
                row.state_reason)

    def set_tree(self, name: str, tree: str,
                 also: Callable[[Connection, str], None] | None = None) -> str:
        """Point campaign ``name`` at ``tree`` (a pin, ``store:NAME@N``) and return the
        tree it ran before; ``also(conn, before)`` runs in the same transaction (an
        audit line exists iff the change does). A dialer running the campaign reads the
        new tree within a second (:meth:`tree_of`): calls placed after that run it,
        calls in flight end on theirs. Raises :class:`StoreError` when there is no such campaign."""
        with self.engine.begin() as conn:
            query = select(campaigns.c.definition).where(campaigns.c.name == name)
            if not self.is_sqlite:  # SQLite's BEGIN IMMEDIATE already serialises writers
                query = query.with_for_update()
            row = conn.execute(query).first()
            if row is None:
                raise StoreError(f"no campaign {name!r}")
            campaign = Campaign.model_validate_json(row.definition)
            moved = campaign.model_copy(update={"tree": tree})
            conn.execute(update(campaigns).where(campaigns.c.name == name).values(
                definition=moved.model_dump_json(), updated_at=_naive(datetime.now(UTC))))
            if also is not None:
                also(conn, campaign.tree)
        return campaign.tree

    def tree_of(self, name: str) -> str:
        """The tree campaign ``name`` runs now (what a running dialer re-reads)."""
        with reading(self.engine) as conn:
            definition = conn.execute(select(campaigns.c.definition)
                                      .where(campaigns.c.name == name)).scalar()
        if definition is None:
            raise StoreError(f"no campaign {name!r}")
        return Campaign.model_validate_json(definition).tree

    def campaign_names(self) -> list[str]:
        with reading(self.engine) as conn:
            return list(conn.execute(select(campaigns.c.name).order_by(campaigns.c.name))
                        .scalars())

    def state(self, name: str) -> tuple[CampaignState, str | None]:
        with reading(self.engine) as conn:
            row = conn.execute(select(campaigns.c.state, campaigns.c.state_reason)
                               .where(campaigns.c.name == name)).first()
        if row is None:
            raise StoreError(f"no campaign {name!r}")
        return CampaignState(row.state), row.state_reason

    def set_state(self, name: str, state: CampaignState, reason: str | None = None,
                  only_from: Iterable[CampaignState] | None = None,
                  also: Callable[[Connection], None] | None = None) -> bool:
        """Change state (from any terminal/node); False if ``only_from`` did not match.

        ``also`` runs in the same transaction when the state changed (an audit line that
        exists if and only if the change does)."""
        stmt = update(campaigns).where(campaigns.c.name == name)
        if only_from is not None:
            stmt = stmt.where(campaigns.c.state.in_([s.value for s in only_from]))
        with self.engine.begin() as conn:
            result = conn.execute(stmt.values(state=state.value, state_reason=reason,
                                              updated_at=_naive(datetime.now(UTC))))
            event = _STATE_EVENTS.get(state)
            if result.rowcount and event is not None:
                outbox.enqueue(conn, self.webhooks(conn, name), event, f"campaign:{name}",
                               {"campaign": name, "state": state.value, "reason": reason})
            if result.rowcount and also is not None:
                also(conn)
            return bool(result.rowcount)

    def webhooks(self, conn: Connection, name: str) -> tuple[outbox.WebhookTarget, ...]:
        """The campaign's webhook targets, read on ``conn`` (parsed again only when the
        campaign's row changed)."""
        stamp = conn.execute(select(campaigns.c.updated_at)
                             .where(campaigns.c.name == name)).scalar()
        if stamp is None:
            return ()
        cached = self._targets.get(name)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        definition = json.loads(conn.execute(select(campaigns.c.definition).where(
            campaigns.c.name == name)).scalar_one())
        targets = tuple(outbox.WebhookTarget.model_validate(t)
                        for t in definition.get("webhooks") or ())
        self._targets[name] = (stamp, targets)
        return targets

    @property
    def url_safe(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    # --- contacts -----------------------------------------------------------------

    def add_contacts(self, name: str, new: Iterable[NewContact], batch: int = 5000,
                     also: Callable[[Connection, int, int], None] | None = None
                     ) -> tuple[int, int]:
        """Insert contacts, skipping numbers already in the campaign; (added, duplicates).
        ``also(conn, added, duplicates)`` runs in the same transaction (an audit line).

        Rows go straight to the driver's executemany: building 100,000 parameter dicts
        through the SQL layer costs more than the inserts themselves.
        """
        cols = ("campaign", "number", "timezones", "fields", "state", "attempts", "source")
        mark = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        sql = (f"INSERT INTO {contacts.name} ({', '.join(cols)}) "
               f"VALUES ({', '.join([mark] * len(cols))}) "
               "ON CONFLICT (campaign, number) DO NOTHING")
        count = select(func.count()).select_from(contacts).where(contacts.c.campaign == name)
        pending = ContactState.PENDING.value
        dumps = json.dumps
        total = 0
        with self.engine.begin() as conn:
            before = conn.execute(count).scalar_one()
            rows: list[tuple[Any, ...]] = []
            for c in new:
                rows.append((name, c.number, " ".join(c.timezones),
                             dumps(c.fields, ensure_ascii=False), pending, 0,
                             f"{c.source}:{c.row}"))
                if len(rows) >= batch:
                    conn.exec_driver_sql(sql, rows)
                    total += len(rows)
                    rows = []
            if rows:
                conn.exec_driver_sql(sql, rows)
                total += len(rows)
            added = conn.execute(count).scalar_one() - before
            if also is not None:
                also(conn, added, total - added)
        return added, total - added

    def contact_by_number(self, name: str, number: str) -> Contact | None:
        with reading(self.engine) as conn:
            row = conn.execute(select(contacts).where(
                contacts.c.campaign == name, contacts.c.number == number)).first()
        return None if row is None else _contact(row)

    def add_dnc(self, number: str, added_by: str, source: str) -> None:
        """Put an E.164 number on the store's do-not-call list (an opt-out); once."""
        with self.engine.begin() as conn:
            conn.execute(_dialect_insert(self.engine)(dnc).values(
                number=number, added_at=_naive(datetime.now(UTC)), added_by=added_by,
                source=source).on_conflict_do_nothing())

    def on_dnc(self, number: str) -> bool:
        """True if ``number`` (E.164) is on the store's do-not-call list."""
        with reading(self.engine) as conn:
            return conn.execute(select(dnc.c.number).where(dnc.c.number == number)
                                ).first() is not None

    def dnc_numbers(self, numbers: Iterable[str]) -> set[str]:
        """Which of ``numbers`` (E.164) are on the store's do-not-call list (a preview)."""
        wanted = list(numbers)
        found: set[str] = set()
        with reading(self.engine) as conn:
            for i in range(0, len(wanted), 500):
                found.update(conn.execute(select(dnc.c.number).where(
                    dnc.c.number.in_(wanted[i:i + 500]))).scalars())
        return found

    def contacts(self, name: str) -> list[Contact]:
        with reading(self.engine) as conn:
            rows = conn.execute(select(contacts).where(contacts.c.campaign == name)
                                .order_by(contacts.c.id)).all()
        return [_contact(r) for r in rows]

    # --- the dial cycle -----------------------------------------------------------

    def claim(self, name: str, node: str, now: datetime, limit: int,
              plan: Callable[[Contact], Plan], max_dials: int | None = None) -> list[Claim]:
        """Lock up to ``limit`` due contacts, apply ``plan`` to each, commit attempt rows.

        ``plan`` is pure (window, DNC files, attempts); Defer/Close plans are written too,
        so a contact waiting for its window is not looked at again until it opens. A
        number on the store's do-not-call list (``autocall_dnc``, read by the same query)
        is closed as dnc before ``plan`` sees it. At most ``max_dials`` contacts are
        claimed; the other Dial plans stay due.
        """
        nnow = _naive(now)
        max_dials = limit if max_dials is None else max_dials
        stmt = (select(contacts, _ON_DNC)
                .where(contacts.c.campaign == name,
                       contacts.c.state == ContactState.PENDING.value,
                       or_(contacts.c.next_at.is_(None), contacts.c.next_at <= nnow))
                .order_by(contacts.c.next_at, contacts.c.id)
                .limit(limit))
        if not self.is_sqlite:
            stmt = stmt.with_for_update(skip_locked=True)
        dials: list[tuple[Contact, str]] = []
        moves: list[dict[str, Any]] = []
        with self.engine.begin() as conn:
            found = conn.execute(stmt).all()
            self.last_scanned = len(found)
            for row in found:
                contact = _contact(row)
                decision = (Close(contact.id, Outcome.DNC, "number is on the do-not-call list")
                            if row.on_dnc else plan(contact))
                if isinstance(decision, Dial):
                    if len(dials) < max_dials:
                        dials.append((contact, decision.caller_id))
                elif isinstance(decision, Defer):
                    moves.append({"cid": contact.id, "b_state": ContactState.PENDING.value,
                                  "b_next_at": _naive(decision.until),
                                  "b_wait_kind": decision.kind,
                                  "b_wait_reason": decision.reason,
                                  "b_last_outcome": _value(contact.last_outcome),
                                  "b_fault": 0})
                elif isinstance(decision, Close):
                    moves.append({"cid": contact.id, "b_state": ContactState.DONE.value,
                                  "b_next_at": None, "b_wait_kind": None,
                                  "b_wait_reason": decision.reason,
                                  "b_last_outcome": decision.outcome.value,
                                  "b_fault": 0})
            if moves:
                conn.execute(_MOVE_CONTACT, moves)
            if not dials:
                return []
            conn.execute(_START_CONTACT, [
                {"cid": c.id, "b_attempts": c.attempts + 1} for c, _ in dials])
            ids = conn.execute(
                insert(attempts).returning(attempts.c.id, sort_by_parameter_order=True),
                [{"campaign": name, "contact_id": c.id, "attempt_no": c.attempts + 1,
                  "number": c.number, "caller_id": cid, "node": node,
                  "status": CallStatus.QUEUED.value, "created_at": nnow, "digits": "",
                  "path": "[]", "variables": "{}"} for c, cid in dials],
            ).scalars().all()
            targets = self.webhooks(conn, name)
            for aid, (c, cid) in zip(ids, dials, strict=True):
                outbox.enqueue(conn, targets, "call.initiated", _subject(name, aid), {
                    "campaign": name, "attempt_id": aid, "attempt_no": c.attempts + 1,
                    "contact_id": c.id, "number": c.number, "caller_id": cid}, now=now)
        return [Claim(int(i), c.attempts + 1, c, cid) for i, (c, cid) in zip(ids, dials,
                                                                              strict=True)]

    def progress_many(self, items: Sequence[tuple[int, CallRecord]]) -> None:
        """Write what is known of calls still going (unfinished records); an attempt
        already finished is left alone."""
        rows = []
        for attempt_id, record in items:
            row = _record_row(record)
            rows.append({"aid": attempt_id, **{f"b_{c}": row[c] for c in _PROGRESS}})
        if rows:
            answered = [a for a, r in items if r.answered_at is not None]
            with self.engine.begin() as conn:
                news = conn.execute(select(attempts.c.id, attempts.c.campaign).where(
                    attempts.c.id.in_(answered), attempts.c.answered_at.is_(None),
                    attempts.c.ended_at.is_(None))).all() if answered else []
                conn.execute(_PROGRESS_ATTEMPT, rows)
                for aid, name in news:  # first written at answer: the call was answered
                    outbox.enqueue(conn, self.webhooks(conn, name), "call.answered",
                                   _subject(name, aid), {"campaign": name, "attempt_id": aid})

    def ringing(self, attempt_id: int) -> None:
        """Enqueue call.ringing for an attempt neither answered nor finished yet (so it is
        never delivered after call.answered)."""
        with self.engine.begin() as conn:
            name = conn.execute(select(attempts.c.campaign).where(
                attempts.c.id == attempt_id, attempts.c.answered_at.is_(None),
                attempts.c.ended_at.is_(None))).scalar()
            if name is not None:
                outbox.enqueue(conn, self.webhooks(conn, name), "call.ringing",
                               _subject(name, attempt_id),
                               {"campaign": name, "attempt_id": attempt_id})

    def finish(self, attempt_id: int, record: CallRecord, next_at: datetime | None) -> bool:
        """Finish one attempt (see :meth:`finish_many`)."""
        return self.finish_many([(attempt_id, record, next_at)])[0]

    def finish_many(self, items: Sequence[tuple[int, CallRecord, datetime | None]]
                    ) -> list[bool]:
        """Finish attempts and move their contacts on, all in one transaction.

        An attempt already finished (e.g. resolved as interrupted by another node that
        thought this one dead) is left as it is: False at its position.
        """
        if not items:
            return []
        ids = [i for i, _, _ in items]
        with self.engine.begin() as conn:
            open_q = select(attempts.c.id, attempts.c.contact_id, attempts.c.campaign,
                            attempts.c.answered_at).where(
                attempts.c.id.in_(ids), attempts.c.ended_at.is_(None))
            if not self.is_sqlite:
                open_q = open_q.with_for_update()
            found = conn.execute(open_q).all()
            still_open = {r.id: r.contact_id for r in found}
            campaign_of = {r.id: r.campaign for r in found}
            answer_told = {r.id for r in found if r.answered_at is not None}
            rows: list[dict[str, Any]] = []
            moves: list[dict[str, Any]] = []
            for attempt_id, record, next_at in items:
                if attempt_id not in still_open:
                    continue
                rows.append(_finish_params(attempt_id, record))
                moves.append(_move_params(still_open[attempt_id], _outcome(record), next_at))
            if rows:
                conn.execute(_FINISH_ATTEMPT, rows)
                conn.execute(_MOVE_CONTACT, moves)
            for attempt_id, record, next_at in items:
                if attempt_id in still_open:
                    name = campaign_of[attempt_id]
                    targets = self.webhooks(conn, name)
                    if record.answered_at is not None and attempt_id not in answer_told:
                        outbox.enqueue(conn, targets, "call.answered",  # not seen live
                                       _subject(name, attempt_id),
                                       {"campaign": name, "attempt_id": attempt_id})
                    _finished_events(conn, targets, name, attempt_id, record, next_at)
        return [i in still_open for i in ids]

    @staticmethod
    def _move_contact(conn: Connection, contact_id: int, outcome: Outcome,
                      next_at: datetime | None) -> None:
        conn.execute(_MOVE_CONTACT, [_move_params(contact_id, outcome, next_at)])

    def recover(self, name: str, node: str, now: datetime,
                next_try: Callable[[int], datetime | None],
                stale_after: timedelta = timedelta(seconds=60),
                dead: Callable[[str, datetime], bool] | None = None,
                live: Container[int] = ()) -> list[int]:
        """Resolve attempts left in flight by dead nodes, or orphaned by this one.

        A node is dead when its heartbeat is older than ``stale_after``, when ``dead(node,
        heartbeat)`` says so (e.g. its process is gone from this host), or when it never
        wrote a heartbeat. Attempts of a live node are never touched, whatever its name.
        This node's own open attempts are taken unless their ids are in ``live`` (calls
        it is placing now): after a restart under the same ``--node``, or a claim whose
        commit was lost with the connection. Such a call may or may not have reached the
        callee, so the attempt counts; the contact gets ``next_try(attempts_made)``
        (None: done). Returns the attempt ids.
        """
        nnow = _naive(now) or datetime.now(UTC).replace(tzinfo=None)
        resolved: list[int] = []
        with self.engine.begin() as conn:
            holders = (select(attempts.c.node).distinct()
                       .where(attempts.c.campaign == name, attempts.c.ended_at.is_(None)))
            beats = dict(conn.execute(select(nodes.c.node, nodes.c.heartbeat)
                                      .where(nodes.c.node.in_(holders))).all())
            gone = [n for n, beat in beats.items() if n != node and (
                beat < nnow - stale_after or (dead is not None and dead(n, beat)))]
            stmt = (select(attempts.c.id, attempts.c.contact_id, attempts.c.attempt_no)
                    .where(attempts.c.campaign == name, attempts.c.ended_at.is_(None),
                           or_(attempts.c.node == node, attempts.c.node.in_(gone),
                               ~attempts.c.node.in_(select(nodes.c.node)))))
            if not self.is_sqlite:
                stmt = stmt.with_for_update(skip_locked=True)
            for row in conn.execute(stmt).all():
                if row.id in live:
                    continue
                error = "dialer stopped while the call was in flight"
                conn.execute(update(attempts).where(attempts.c.id == row.id).values(
                    status=CallStatus.FAILED.value, outcome=Outcome.INTERRUPTED.value,
                    ended_at=nnow, error=error))
                nxt = next_try(row.attempt_no)
                self._move_contact(conn, row.contact_id, Outcome.INTERRUPTED, nxt)
                _finished_events(conn, self.webhooks(conn, name), name, row.id, CallRecord(
                    CallStatus.FAILED, ended_at=now, outcome=Outcome.INTERRUPTED.value,
                    error=error, campaign=name, contact_id=row.contact_id,
                    attempt_no=row.attempt_no), nxt)
                resolved.append(int(row.id))
        return resolved

    def heartbeat(self, name: str, node: str, now: datetime, in_flight: int, status: str) -> None:
        nnow = _naive(now)
        values = {"campaign": name, "heartbeat": nnow, "in_flight": in_flight, "status": status}
        with self.engine.begin() as conn:
            done = conn.execute(update(nodes).where(nodes.c.node == node).values(**values))
            if not done.rowcount:
                conn.execute(_dialect_insert(self.engine)(nodes).values(node=node, **values)
                             .on_conflict_do_nothing())

    # --- reading ------------------------------------------------------------------

    def summary(self, name: str, now: datetime) -> Summary:
        nnow = _naive(now)
        with reading(self.engine) as conn:
            crow = conn.execute(select(campaigns.c.state, campaigns.c.state_reason)
                                .where(campaigns.c.name == name)).first()
            if crow is None:
                raise StoreError(f"no campaign {name!r}")
            by_state: dict[str, int] = _pairs(conn.execute(
                select(contacts.c.state, func.count()).where(contacts.c.campaign == name)
                .group_by(contacts.c.state)).all())
            pending_due = and_(contacts.c.campaign == name,
                               contacts.c.state == ContactState.PENDING.value)
            due = conn.execute(select(func.count()).where(
                pending_due, or_(contacts.c.next_at.is_(None), contacts.c.next_at <= nnow))
            ).scalar_one()
            waiting: dict[str | None, int] = _pairs(conn.execute(
                select(contacts.c.wait_kind, func.count())
                .where(pending_due, contacts.c.next_at > nnow)
                .group_by(contacts.c.wait_kind)).all())
            next_due = conn.execute(select(func.min(contacts.c.next_at))
                                    .where(pending_due)).scalar()
            outcomes: dict[str | None, int] = _pairs(conn.execute(
                select(contacts.c.last_outcome, func.count())
                .where(contacts.c.campaign == name, contacts.c.state == ContactState.DONE.value)
                .group_by(contacts.c.last_outcome)).all())
            n_attempts, answered = conn.execute(
                select(func.count(), func.count(attempts.c.answered_at))
                .where(attempts.c.campaign == name)).one()
            node_rows = [dict(r._mapping) for r in conn.execute(
                select(nodes).where(nodes.c.campaign == name).order_by(nodes.c.node))]
        for n in node_rows:
            n["heartbeat"] = _aware(n["heartbeat"])
        return Summary(
            state=CampaignState(crow.state), state_reason=crow.state_reason,
            total=sum(by_state.values()),
            pending=by_state.get(ContactState.PENDING.value, 0), due=due,
            in_flight=by_state.get(ContactState.IN_FLIGHT.value, 0),
            done=by_state.get(ContactState.DONE.value, 0),
            waiting={str(k or "other"): v for k, v in waiting.items()},
            next_due=_aware(next_due), outcomes={str(k): v for k, v in outcomes.items()},
            attempts=n_attempts, answered=answered, nodes=node_rows)

    def attempts_page(self, name: str, after: int, limit: int) -> list[Attempt]:
        """Attempts with id > ``after``, by id (keyset paging for the API and console)."""
        stmt = (select(attempts).where(attempts.c.campaign == name, attempts.c.id > after)
                .order_by(attempts.c.id).limit(limit))
        with reading(self.engine) as conn:
            return [_attempt(r) for r in conn.execute(stmt).all()]

    def contacts_page(self, name: str, after: int, limit: int) -> list[Contact]:
        """Contacts with id > ``after``, by id."""
        stmt = (select(contacts).where(contacts.c.campaign == name, contacts.c.id > after)
                .order_by(contacts.c.id).limit(limit))
        with reading(self.engine) as conn:
            return [_contact(r) for r in conn.execute(stmt).all()]

    def stored_numbers(self, name: str, numbers: Iterable[str]) -> set[str]:
        """Which of ``numbers`` are contacts of ``name`` already (an import's preview)."""
        wanted = list(numbers)
        found: set[str] = set()
        with reading(self.engine) as conn:
            for i in range(0, len(wanted), 500):
                found.update(conn.execute(select(contacts.c.number).where(
                    contacts.c.campaign == name,
                    contacts.c.number.in_(wanted[i:i + 500]))).scalars())
        return found

    def attempts(self, name: str, contact_id: int | None = None) -> list[Attempt]:
        stmt = select(attempts).where(attempts.c.campaign == name)
        if contact_id is not None:
            stmt = stmt.where(attempts.c.contact_id == contact_id)
        with reading(self.engine) as conn:
            rows = conn.execute(stmt.order_by(attempts.c.id)).all()
        return [_attempt(r) for r in rows]


def _pairs(rows: Iterable[Any]) -> dict[Any, int]:
    return {r[0]: int(r[1]) for r in rows}


def _contact(row: Any) -> Contact:
    return Contact(
        id=row.id, campaign=row.campaign, number=row.number,
        timezones=tuple(row.timezones.split()), fields=json.loads(row.fields),
        state=ContactState(row.state), attempts=row.attempts, next_at=_aware(row.next_at),
        last_outcome=Outcome(row.last_outcome) if row.last_outcome else None,
        wait_reason=row.wait_reason, network_faults=row.network_faults or 0,
    )


def _stored(row: Any) -> dict[str, Any]:
    """The §4 fields attempts and calls share, as their row holds them."""
    return dict(
        id=row.id, status=CallStatus(row.status), sip_code=row.sip_code, q850=row.q850,
        started_at=_aware(row.started_at), answered_at=_aware(row.answered_at),
        ended_at=_aware(row.ended_at), duration=row.duration, billable=row.billable,
        digits=row.digits or "", path=json.loads(row.path or "[]"),
        variables=json.loads(row.variables or "{}"), recording=row.recording,
        dialogue_outcome=row.dialogue_outcome, answered_by=row.answered_by, error=row.error,
        unfinished=row.ended_at is None)


def _attempt(row: Any) -> Attempt:
    return Attempt(
        **_stored(row), campaign=row.campaign, contact_id=row.contact_id,
        attempt_no=row.attempt_no, number=row.number, caller_id=row.caller_id, node=row.node,
        outcome=Outcome(row.outcome) if row.outcome else None,
        created_at=_aware(row.created_at) or row.created_at)


def _dialect_insert(engine: Engine) -> Any:
    if engine.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    raise StoreError(f"unsupported database {engine.dialect.name}; use SQLite or PostgreSQL")


def _private_sqlite_file(database: str | None) -> None:
    """Create the SQLite file 0600 before SQLite does (it would make it 0644); its
    journal and WAL files copy the file's mode. Numbers and answers are personal data."""
    if database and database != ":memory:" and not database.startswith("file:"):
        private_file(database)


def _sqlite_setup(engine: Engine) -> None:
    """WAL (a SIGKILL loses nothing committed), a long busy wait, BEGIN IMMEDIATE for
    writes and a deferred BEGIN for reads (:func:`~autocall.campaign.db.reading`): a read
    is a WAL snapshot, so the console's pages and counters never queue behind, or hold up,
    the dialer's writes."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        # The busy wait first: switching to WAL takes the file's lock, which a node that
        # is migrating holds (several nodes starting at once failed here after 5 s).
        cur.execute("PRAGMA busy_timeout=30000")
        if cur.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            cur.execute("PRAGMA journal_mode=WAL")  # kept in the file: once is enough
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN" if is_reading(conn) else "BEGIN IMMEDIATE")
