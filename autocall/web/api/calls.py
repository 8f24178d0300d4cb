"""``/v1/calls``: informer calls as ``autocall call`` places them, asked for over HTTP.

The web process never dials (media never shares its process): ``POST /v1/calls``
validates the request, stores it queued in ``autocall_call_requests`` and answers 201
with its id at once; a dialer claims queued rows, places them and writes the final
record (the CDR's shape, DESIGN.md §4) into the row. With an ``Idempotency-Key`` the
row and the key commit in one transaction, so a retried POST never makes a second call.
"""

from __future__ import annotations

import json
import re
import secrets
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import insert, select
from sqlalchemy.engine import Connection

from autocall.campaign.db import reading
from autocall.campaign.schedule import normalize_dnc
from autocall.campaign.store import call_requests
from autocall.campaign.trees import TreeLibrary
from autocall.telephony.record import CallStatus
from autocall.web import accounts, idempotency
from autocall.web.accounts import Principal
from autocall.web.api.campaigns import tree_path
from autocall.web.api.common import PERSONAL, WRITE, page_limit
from autocall.web.auth import settings_of, store_of
from autocall.web.problems import Problem

router = APIRouter(prefix="/v1/calls", tags=["calls"])

_SIP_URI = re.compile(r"^sips?:[A-Za-z0-9+_.!~*'()&=$,;?/%-]+@[A-Za-z0-9.:\[\]-]+$")
_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ID = re.compile(r"^CA[0-9a-f]{32}$")


class CallCreate(BaseModel):
    """What ``autocall call`` takes: a number, and a message (``say``) or a tree."""

    model_config = ConfigDict(extra="forbid")

    to: str = Field(max_length=200, description="E.164 number (+...) or a sip: URI")
    say: str | None = Field(default=None, min_length=1, max_length=2000)
    lang: str = Field(default="en", pattern=r"^[a-z]{2,3}(-[A-Za-z]{2,4})?$")
    tree: str | None = Field(default=None, max_length=100, pattern=r"^[A-Za-z0-9_-]+$",
                             description="a tree's name in the prompts folder, not a path")
    variables: dict[str, str | int | float | bool] = Field(default_factory=dict,
                                                           max_length=100)
    confirm: str | None = Field(default=None, pattern=r"^[0-9*#]$")
    confirm_timeout: float = Field(default=6.0, ge=0.5, le=60)
    repeat: int = Field(default=1, ge=1, le=10)
    caller_id: str | None = Field(default=None, max_length=40, pattern=r"^\+?[0-9]{2,20}$")
    ring_timeout: float = Field(default=30.0, ge=1, le=300)
    status_callback: str | None = Field(
        default=None, max_length=2000, pattern=r"^https?://[^\s]+$",
        description="where the call's status events go (call.initiated, call.ringing, "
        "call.answered, call.completed; data.call_id is this request's id), through the "
        "store's outbox: retried for a day, in order, each with a stable webhook-id, "
        "signed (Standard Webhooks) with the server's AUTOCALL_WEBHOOK_SECRET when set")
    amd: bool = False
    on_machine: Literal["message", "hangup"] = "message"

    @field_validator("to")
    @classmethod
    def _target(cls, value: str) -> str:
        value = value.strip()
        if value.lower().startswith(("sip:", "sips:")):
            if not _SIP_URI.match(value):
                raise ValueError("not a sip: URI of the form sip:user@host")
            return value
        number = normalize_dnc(value, "US")
        if number is None:
            raise ValueError("not a valid phone number; write it as +<country> <number>")
        return number

    @field_validator("variables")
    @classmethod
    def _variables(cls, value: dict[str, str | int | float | bool]
                   ) -> dict[str, str | int | float | bool]:
        for name, item in value.items():
            if not _VAR.match(name) or len(name) > 60:
                raise ValueError(f"variable name {name[:60]!r}: letters, digits and _ only")
            if isinstance(item, str) and len(item) > 1000:
                raise ValueError(f"variable {name}: at most 1000 characters")
        return value

    @model_validator(mode="after")
    def _one_message(self) -> CallCreate:
        if (self.say is None) == (self.tree is None):
            raise ValueError("give exactly one of say or tree")
        if self.confirm is not None and self.tree is not None:
            raise ValueError("confirm goes with say; a tree asks its own questions")
        return self


class CallQueued(BaseModel):
    id: str
    status: str


class CallOut(BaseModel):
    id: str
    state: str
    status: str
    created_at: datetime
    created_by: str | None
    request: CallCreate
    record: dict[str, Any] | None


class CallPage(BaseModel):
    items: list[CallOut]
    next: str | None


def _status(state: str, record: dict[str, Any] | None) -> str:
    if record is not None and isinstance(record.get("status"), str):
        return str(record["status"])
    return "queued" if state == "queued" else "initiated"


def _out(row: Any) -> CallOut:
    record = json.loads(row.record) if row.record else None
    return CallOut(id=row.id, state=row.state, status=_status(row.state, record),
                   created_at=row.created_at.replace(tzinfo=UTC), created_by=row.created_by,
                   request=CallCreate.model_validate_json(row.definition), record=record)


@router.post("", status_code=201, response_model=CallQueued,
             responses={422: {"description": "a field is wrong: each error has its loc"},
                        409: {"description": "the same Idempotency-Key is in progress"}})
def create_call(body: CallCreate, request: Request, who: Principal = WRITE) -> JSONResponse:
    """Place an informer call: answered 201 with its id at once, dialed by a dialer.

    Send an ``Idempotency-Key``: a retry with the same key and body gets the same answer
    (``Idempotent-Replayed: true``) and never a second call.
    """
    settings = settings_of(request)
    if body.tree is not None and TreeLibrary(
            store_of(request).engine, settings.prompts_dir).newest_published(body.tree) is None:
        tree_path(settings, body.tree, ["body", "tree"])  # else a file of that name
    definition = body.model_dump_json()
    key = idempotency.key_of(request, who, definition)

    def effect(conn: Connection) -> tuple[int, Any]:
        call_id = "CA" + secrets.token_hex(16)
        conn.execute(insert(call_requests).values(
            id=call_id, created_at=datetime.now(UTC).replace(tzinfo=None),
            created_by=who.actor, definition=definition, state="queued"))
        accounts.audit(conn, who, "call.create", call_id, to=body.to)
        return 201, CallQueued(id=call_id, status="queued").model_dump()

    return idempotency.once(store_of(request).engine, key, effect)


@router.get("/{call_id}", response_model=CallOut)
def get_call(call_id: str, request: Request, _: Principal = PERSONAL) -> CallOut:
    """A call's state and, once done, its record (the CDR's fields)."""
    if not _ID.match(call_id):
        raise Problem(404, "Not Found", "no such call (ids look like CA + 32 hex digits)")
    with reading(store_of(request).engine) as conn:
        row = conn.execute(select(call_requests).where(call_requests.c.id == call_id)).first()
    if row is None:
        raise Problem(404, "Not Found", f"no call {call_id}")
    return _out(row)


@router.get("", response_model=CallPage)
def list_calls(request: Request,
               status: CallStatus | None = None,
               state: Literal["queued", "dialing", "done"] | None = None,
               since: datetime | None = None, limit: int = Query(100),
               after: str | None = Query(None, pattern=r"^CA[0-9a-f]{32}$"),
               _: Principal = PERSONAL) -> CallPage:
    """Calls asked for over the API, oldest first. ``status`` (the call status, as in
    the record: queued, completed, busy…), ``state`` (the request's: queued, dialing,
    done) and ``since`` (created at or after) filter; pass ``next`` as ``after`` for the
    next page."""
    limit = page_limit(limit)
    c = call_requests.c
    query = select(call_requests).order_by(c.created_at, c.id)
    if state is not None:
        query = query.where(c.state == state)
    if status is CallStatus.QUEUED:
        query = query.where(c.state == "queued")
    elif status is not None and status.final:
        query = query.where(c.state == "done")
    elif status is not None:
        query = query.where(c.state != "queued")
    if since is not None:
        naive = since.astimezone(UTC).replace(tzinfo=None) if since.tzinfo else since
        query = query.where(c.created_at >= naive)
    items: list[CallOut] = []
    with reading(store_of(request).engine) as conn:
        mark: tuple[datetime, str] | None = None
        if after is not None:
            at = conn.execute(select(c.created_at).where(c.id == after)).scalar()
            if at is None:
                raise Problem(422, "Invalid request", "after names no call",
                              errors=[{"loc": ["query", "after"], "msg": "unknown call id"}])
            mark = (at, after)
        # The status of a placed call is in its record: read batches until a page is full.
        while len(items) < limit:
            batch = query.limit(limit)
            if mark is not None:
                batch = batch.where((c.created_at > mark[0])
                                    | ((c.created_at == mark[0]) & (c.id > mark[1])))
            rows = conn.execute(batch).all()
            for row in rows:
                out = _out(row)
                if status is None or out.status == status.value:
                    items.append(out)
                    if len(items) == limit:
                        break
            if len(rows) < limit:
                break
            mark = (rows[-1].created_at, rows[-1].id)
    return CallPage(items=items, next=items[-1].id if len(items) == limit else None)
