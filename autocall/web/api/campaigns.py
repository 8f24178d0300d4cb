"""``/v1/campaigns``: create from the YAML's fields, steer, explain, report, attempts.

A campaign made over the API names its tree (a file in the configured prompts folder)
and gets its contacts by upload (``contacts.py``) and its do-not-call numbers from the
store's list (``dnc.py``): no path from a request reaches the filesystem. Steering uses
the CLI's function (:func:`autocall.campaign.control.steer`), so ``pause`` means the same
from a terminal and from a CRM; a dialer obeys the store within a second.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from autocall.campaign import control
from autocall.campaign import report as rep
from autocall.campaign.check import preflight
from autocall.campaign.control import SteerError, Verb, pin_tree, start_problems, steer
from autocall.campaign.model import Campaign, CampaignState
from autocall.campaign.store import Store, StoreError, Summary, campaigns
from autocall.campaign.trees import NAME as TREE_NAME_RULE
from autocall.campaign.trees import STORE_PREFIX, TreeLibrary, TreesError, pin
from autocall.config import Settings
from autocall.web import accounts, idempotency
from autocall.web.accounts import Principal
from autocall.web.api.common import (
    PERSONAL,
    READ,
    WRITE,
    Name,
    campaign_or_404,
    e164,
    page_limit,
    store_for,
)
from autocall.web.auth import settings_of, store_of
from autocall.web.problems import Problem

router = APIRouter(prefix="/v1/campaigns", tags=["campaigns"])

TREE_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


class CampaignOut(BaseModel):
    name: str
    state: CampaignState
    state_reason: str | None
    definition: Campaign
    summary: Summary | None = None


class CampaignList(BaseModel):
    items: list[CampaignOut]


class Steered(BaseModel):
    name: str
    previous: CampaignState
    state: CampaignState


class Explained(BaseModel):
    number: str
    dial_now: bool
    reasons: list[str]


class AttemptOut(BaseModel):
    """One attempt: the call record (DESIGN.md §4)."""

    id: int
    contact_id: int
    attempt: int
    number: str
    caller_id: str
    node: str
    status: str
    outcome: str | None
    sip_code: int | None
    q850: int | None
    created_at: datetime
    started_at: datetime | None
    answered_at: datetime | None
    ended_at: datetime | None
    duration: float | None
    billable: float | None
    digits: str
    path: list[str]
    variables: dict[str, Any]
    dialogue_outcome: str | None
    answered_by: str | None
    has_recording: bool


class AttemptPage(BaseModel):
    items: list[AttemptOut]
    next: int | None


class PinTree(BaseModel):
    """A published version of a tree kept in the store (``GET /v1/trees``)."""

    model_config = ConfigDict(extra="forbid")
    tree: str = Field(max_length=100, pattern=TREE_NAME_RULE.pattern,
                      description="the stored tree's name")
    version: int = Field(ge=1, le=999_999_999, description="a published version of it")


class PinnedOut(BaseModel):
    name: str
    previous: str = Field(description="the tree it ran before (a pin, or a file's name)")
    tree: str = Field(description="the pin it runs now, store:NAME@N")


def _library(request: Request) -> TreeLibrary:
    return TreeLibrary(store_of(request).engine, settings_of(request).prompts_dir)


def _tree_shown(tree: str) -> str:
    return tree if tree.startswith(STORE_PREFIX) else Path(tree).stem


def tree_path(settings: Settings, name: str, loc: list[str | int]) -> Path:
    """The prompt tree called ``name`` in the prompts folder; a name, never a path."""
    if not TREE_NAME.match(name) or len(name) > 100:
        raise Problem(422, "Invalid request", "a tree is named, not given as a path",
                      errors=[{"loc": loc, "msg": "letters, digits, _ and - only "
                               "(the tree's file name in the prompts folder, without .yaml)"}])
    root = settings.prompts_dir.resolve()
    for suffix in (".yaml", ".yml"):
        found = root / f"{name}{suffix}"
        if found.is_file():
            return found
    raise Problem(422, "Invalid request", f"no prompt tree {name!r}",
                  errors=[{"loc": loc, "msg": f"no tree {name!r} in the prompts folder"}])


def _shown(campaign: Campaign) -> Campaign:
    """The definition as a client sees it: the tree by name (or its store pin), not a
    server path."""
    return campaign.model_copy(update={"tree": _tree_shown(campaign.tree)})


def _summary(store: Store, name: str) -> Summary:
    return store.summary(name, datetime.now(UTC))


def checked_campaign(body: Campaign, settings: Settings, store: Store) -> Campaign:
    """A new campaign's definition with its tree resolved (a name in the prompts folder,
    or a stored version's pin), or a 422 naming each error's field."""
    trees = TreeLibrary(store.engine, settings.prompts_dir)
    campaign = body if body.tree.startswith(STORE_PREFIX) else body.model_copy(update={
        "tree": str(tree_path(settings, body.tree, ["body", "tree"]))})
    errors = [p for p in preflight(campaign, trees=trees) if p.severity == "error"]
    if errors:
        raise Problem(422, "Invalid campaign", f"{len(errors)} error(s) in the campaign or "
                      "its tree", errors=[{"loc": ["body", "tree"] if p.code != "campaign"
                                           else ["body"], "msg": p.message, "line": p.line,
                                           "column": p.column, "code": p.code}
                                          for p in errors])
    return campaign


def insert_campaign(conn: Connection, campaign: Campaign, who: Principal) -> None:
    """Store a new draft campaign, audited in the same transaction; 409 if the name is
    taken (also by a concurrent request)."""
    if conn.execute(select(campaigns.c.name).where(campaigns.c.name == campaign.name)
                    ).first() is not None:
        raise Problem(409, "Conflict", f"a campaign named {campaign.name!r} exists",
                      errors=[{"loc": ["body", "name"], "msg": "name taken"}])
    now = datetime.now(UTC).replace(tzinfo=None)
    try:
        conn.execute(insert(campaigns).values(
            name=campaign.name, state=CampaignState.DRAFT.value,
            definition=campaign.model_dump_json(), created_at=now, updated_at=now))
    except IntegrityError:  # made by a concurrent request since the check above
        raise Problem(409, "Conflict", f"a campaign named {campaign.name!r} exists",
                      errors=[{"loc": ["body", "name"], "msg": "name taken"}]) from None
    accounts.audit(conn, who, "campaign.create", campaign.name)


@router.post("", status_code=201, response_model=CampaignOut,
             responses={422: {"description": "a field is wrong: each error has its loc"},
                        409: {"description": "a campaign of that name exists"}})
def create_campaign(body: Campaign, request: Request, who: Principal = WRITE) -> JSONResponse:
    """Create a campaign from the same fields as its YAML (``tree`` is a tree's name).

    Contacts come by ``POST /v1/campaigns/{name}/contacts``, do-not-call numbers from
    ``/v1/dnc``; the campaign starts as draft. Takes an ``Idempotency-Key``.
    """
    for field, given in (("contacts", body.contacts), ("dnc", body.dnc)):
        if given:
            raise Problem(422, "Invalid request", f"{field}: files are not named over the API",
                          errors=[{"loc": ["body", field], "msg": (
                              "upload contacts with POST /v1/campaigns/{name}/contacts"
                              if field == "contacts" else
                              "add do-not-call numbers with POST /v1/dnc")}])
    store = store_of(request)
    campaign = checked_campaign(body, settings_of(request), store)
    key = idempotency.key_of(request, who, body.model_dump_json())

    def effect(conn: Connection) -> tuple[int, Any]:
        insert_campaign(conn, campaign, who)
        out = CampaignOut(name=campaign.name, state=CampaignState.DRAFT, state_reason=None,
                          definition=_shown(campaign))
        return 201, out.model_dump(mode="json")

    return idempotency.once(store.engine, key, effect)


@router.get("", response_model=CampaignList)
def list_campaigns(request: Request, _: Principal = READ) -> CampaignList:
    """Every campaign with its state and counts."""
    store = store_of(request)
    items = []
    for name in store.campaign_names():
        campaign, state, reason = campaign_or_404(store, name)
        items.append(CampaignOut(name=name, state=state, state_reason=reason,
                                 definition=_shown(campaign), summary=_summary(store, name)))
    return CampaignList(items=items)


@router.get("/{name}", response_model=CampaignOut)
def get_campaign(name: Name, request: Request, _: Principal = READ) -> CampaignOut:
    """A campaign's definition, state and summary counts."""
    store = store_of(request)
    campaign, state, reason = campaign_or_404(store, name)
    return CampaignOut(name=name, state=state, state_reason=reason,
                       definition=_shown(campaign), summary=_summary(store, name))


def _steer_route(verb: Verb) -> Callable[..., Steered]:
    def steer_campaign(name: Name, request: Request, who: Principal = WRITE) -> Steered:
        store = store_of(request)
        campaign, current, _ = campaign_or_404(store, name)
        if verb is Verb.START:
            errors = start_problems(campaign, _library(request))
            if errors:
                raise Problem(422, "Invalid campaign", "the campaign would not dial: "
                              f"{len(errors)} error(s)",
                              errors=[{"loc": [p.code], "msg": str(p)} for p in errors])
        try:
            done = steer(store, name, verb, f"{verb.value} by {who.actor}", also=lambda conn:
                         accounts.audit(conn, who, f"campaign.{verb.value}", name,
                                        previous=current.value))
        except SteerError as exc:
            raise Problem(409, "Conflict", str(exc)) from None
        return Steered(name=name, previous=done.before, state=done.after)

    steer_campaign.__name__ = f"{verb.value}_campaign"
    steer_campaign.__doc__ = {
        "start": "Set a draft campaign running: a dialer picks it up.",
        "pause": "Pause dialing; calls in flight end normally.",
        "resume": "Resume a paused (or draft) campaign.",
        "stop": "Stop for good: no new calls; cannot be resumed (pause can).",
    }[verb.value]
    return steer_campaign


for _verb in Verb:
    router.add_api_route(f"/{{name}}/{_verb.value}", _steer_route(_verb), methods=["POST"],
                         response_model=Steered, name=f"{_verb.value}_campaign",
                         responses={409: {"description": "not allowed from this state"}})


@router.post("/{name}/tree", response_model=PinnedOut,
             responses={404: {"description": "no such campaign, tree or version"},
                        409: {"description": "the version is not published"}})
def pin_campaign_tree(name: Name, body: PinTree, request: Request,
                      who: Principal = WRITE) -> PinnedOut:
    """Move the campaign to a published version of a stored tree (marketers pick;
    designers publish). A running dialer places its next calls on that version within
    a second; calls in flight end on theirs. Audited as ``campaign.tree``."""
    store = store_of(request)
    try:
        done = pin_tree(store, _library(request), name, body.tree, body.version,
                        also=lambda conn, before: accounts.audit(
                            conn, who, "campaign.tree", name,
                            tree=pin(body.tree, body.version), previous=_tree_shown(before)))
    except TreesError as exc:
        title = {409: "Conflict", 404: "Not Found"}.get(exc.status, "Invalid request")
        raise Problem(exc.status, title, str(exc),
                      errors=[{"loc": ["body", "tree"], "msg": str(exc)}]) from None
    except StoreError:
        raise Problem(404, "Not Found", f"no campaign {name!r}") from None
    return PinnedOut(name=name, previous=_tree_shown(done.before), tree=done.after)


@router.get("/{name}/explain/{number}", response_model=Explained)
def explain_contact(name: Name, number: str, request: Request,
                   _: Principal = PERSONAL) -> Explained:
    """Why a contact is or is not being dialed (window, retry, DNC, attempts, state)."""
    store = store_of(request)
    campaign, state, _r = campaign_or_404(store, name)
    number = e164(number, campaign.default_region, ["path", "number"])
    found = control.explain_number(store, name, number, datetime.now(UTC))
    return Explained(number=found.number, dial_now=found.dial_now, reasons=found.reasons)


@router.get("/{name}/report", responses={200: {"content": {"text/csv": {}}}})
def report(name: Name, request: Request, format: Literal["json", "csv"] = "json",
           _: Principal = READ) -> Response:
    """Counts by status and outcome, answer and completion rates, handle time, menu
    choices, per hour: as JSON, or ``?format=csv``."""
    store = store_for(request, name)
    result = rep.campaign_report(store, name)
    if format == "csv":
        return Response(rep.to_csv(result), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition":
                                 f'attachment; filename="{name}-report.csv"'})
    return JSONResponse(asdict(result))


@router.get("/{name}/report/charts/{kind}.png", response_class=Response,
            responses={200: {"content": {"image/png": {}}}})
def chart(name: Name, kind: str, request: Request, _: Principal = READ) -> Response:
    """A report chart drawn in memory: ``outcomes`` or ``per-hour``."""
    if kind not in rep.CHARTS:
        raise Problem(404, "Not Found", f"no chart {kind!r}; use {' or '.join(rep.CHARTS)}")
    store = store_for(request, name)
    png = rep.render_chart(rep.campaign_report(store, name), kind)
    return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})


@router.get("/{name}/attempts", response_model=AttemptPage)
def attempts(name: Name, request: Request, limit: int = Query(100),
             after: int = Query(0, ge=0), _: Principal = PERSONAL) -> AttemptPage:
    """Attempts (call records) by id; pass ``next`` as ``after`` for the next page."""
    store = store_for(request, name)
    rows = store.attempts_page(name, after, page_limit(limit))
    # the record's own fields by name; AttemptOut keeps those it publishes
    items = [AttemptOut.model_validate({
        **asdict(a), "attempt": a.attempt_no, "status": a.status.value,
        "outcome": a.outcome.value if a.outcome else None,
        "has_recording": bool(a.recording)}) for a in rows]
    return AttemptPage(items=items, next=items[-1].id if len(items) == limit else None)
