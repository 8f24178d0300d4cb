"""The console's pages: login, campaigns, a campaign's live page, a contact's timeline,
and the admin pages (users and tokens, audit log).

Pages read and write the store only (steering goes through
:func:`autocall.campaign.control.steer`, as the CLI's pause/resume/stop do). A page
asked for without a login redirects to ``/login``; a role that may not see or do
something gets a 403 page. Every POST but the login form's carries the session's CSRF
token (checked by :func:`autocall.web.session.csrf_protect` on the whole router).
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy import func, select

from autocall.campaign import report as rep
from autocall.campaign.check import Problem as Finding
from autocall.campaign.control import (
    SteerError,
    Verb,
    explain_number,
    pin_tree,
    start_problems,
    steer,
)
from autocall.campaign.db import reading
from autocall.campaign.model import Campaign
from autocall.campaign.store import Store, StoreError, attempts
from autocall.campaign.trees import TreeLibrary, TreesError, parse_pin, pin
from autocall.web import accounts, events, session
from autocall.web.accounts import AccountError, Principal, Role
from autocall.web.auth import principal, settings_of, store_of
from autocall.web.pages.render import STATIC, render
from autocall.web.problems import Problem

PAGE_SIZE = 50
STEER_ROLES = frozenset({Role.ADMIN, Role.MARKETER})
CONTACT_ROLES = frozenset({Role.ADMIN, Role.MARKETER, Role.VIEWER})


class Unstartable(Exception):
    """Start asked for while the campaign's tree or DNC files have errors."""

    def __init__(self, problems: list[Finding]) -> None:
        super().__init__(f"{len(problems)} error(s)")
        self.problems = problems


class LoginRequired(Exception):
    """A page was asked for without a (valid) login."""


class Forbidden(Exception):
    """The logged-in role may not see or do this."""

    def __init__(self, who: Principal, what: str) -> None:
        super().__init__(what)
        self.who = who
        self.what = what


async def page_principal(request: Request) -> Principal:
    try:
        return await principal(request)
    except Problem:
        raise LoginRequired from None


Who = Annotated[Principal, Depends(page_principal)]


def _may(who: Principal, roles: frozenset[Role], what: str) -> None:
    if who.role not in roles:
        raise Forbidden(who, what)


def install(app: FastAPI) -> None:
    """Mount the pages, the login routes, the SSE stream and the static files."""
    app.include_router(login_router)
    app.include_router(router, dependencies=[Depends(session.csrf_protect)])
    app.include_router(events.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    async def on_login_required(request: Request, exc: Exception) -> Response:
        if request.headers.get("hx-request"):
            return Response(status_code=401, headers={"HX-Redirect": "/login"})
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target)}", status_code=303)

    async def on_forbidden(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Forbidden)
        return render(request, "error.html", {
            "title": "Not allowed",
            "detail": f"The {exc.who.role.value} role may not {exc.what}."},
            status=403, who=exc.who)

    app.add_exception_handler(LoginRequired, on_login_required)
    app.add_exception_handler(Forbidden, on_forbidden)


# --- login ----------------------------------------------------------------------------

login_router = APIRouter(include_in_schema=False)


@login_router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: Annotated[str, Query(max_length=2000)] = "/"
               ) -> Response:
    return render(request, "login.html", {"next": session.safe_next(next), "error": None})


@login_router.post("/login")
def login(request: Request,
          username: Annotated[str, Form(max_length=100)],
          password: Annotated[str, Form(max_length=1000)],
          csrf_token: Annotated[str, Form(max_length=200)] = "",
          next: Annotated[str, Form(max_length=2000)] = "/") -> Response:
    """A sync route: argon2 runs in FastAPI's thread pool, not on the event loop."""
    done = session.log_in(request, username, password, csrf_token)
    if isinstance(done, session.Refused):
        response = render(request, "login.html", {"next": session.safe_next(next),
                                                  "error": done.reason, "username": username},
                          status=done.status)
        if done.retry_after is not None:
            response.headers["Retry-After"] = str(done.retry_after)
        return response
    return RedirectResponse(session.safe_next(next), status_code=303)


@login_router.post("/logout")
async def logout(request: Request) -> Response:
    await session.csrf_protect(request)
    session.log_out(request)
    return RedirectResponse("/login", status_code=303)


# --- campaigns --------------------------------------------------------------------------

router = APIRouter(include_in_schema=False)


@router.get("/")
def home(who: Who) -> Response:
    return RedirectResponse("/campaigns", status_code=303)


def _campaign_rows(store: Store) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    rows = []
    for name in store.campaign_names():
        s = store.summary(name, now)
        rows.append({"name": name, "state": s.state.value, "contacts": s.total,
                     "done": s.done, "pending": s.pending, "in_flight": s.in_flight,
                     "attempts": s.attempts, "answered": s.answered,
                     "progress": round(100 * s.done / s.total) if s.total else 0})
    return rows


@router.get("/campaigns", response_class=HTMLResponse)
async def campaigns_page(request: Request, who: Who) -> Response:
    rows = await asyncio.to_thread(_campaign_rows, store_of(request))
    return render(request, "campaigns.html", {"rows": rows,
                                              "may_create": who.role in STEER_ROLES}, who=who)


def _attempt_page(store: Store, name: str, page: int) -> tuple[list[dict[str, Any]], int]:
    with reading(store.engine) as conn:
        total = conn.execute(select(func.count()).where(attempts.c.campaign == name)
                             ).scalar_one()
        rows = conn.execute(
            select(attempts.c.id, attempts.c.number, attempts.c.attempt_no,
                   attempts.c.status, attempts.c.outcome, attempts.c.sip_code,
                   attempts.c.created_at, attempts.c.answered_at, attempts.c.duration,
                   attempts.c.digits, attempts.c.dialogue_outcome, attempts.c.node)
            .where(attempts.c.campaign == name).order_by(attempts.c.id.desc())
            .limit(PAGE_SIZE).offset((page - 1) * PAGE_SIZE)).all()
    return [dict(r._mapping) for r in rows], int(total)


def _campaign(store: Store, name: str) -> tuple[Any, events.Counters]:
    campaign, _, _ = store.campaign(name)
    return campaign, events.counters(store, name, datetime.now(UTC))


def _library(request: Request) -> TreeLibrary:
    return TreeLibrary(store_of(request).engine, settings_of(request).prompts_dir)


def _tree_context(request: Request, campaign: Campaign, may_pin: bool) -> dict[str, Any]:
    """What the campaign page says about its tree, and the published versions a
    marketer may point it at."""
    pinned = parse_pin(campaign.tree)
    return {"tree_shown": campaign.tree if pinned else Path(campaign.tree).stem,
            "tree_pinned": pinned,
            "published": _library(request).published() if may_pin else []}


@router.get("/campaigns/{name}", response_class=HTMLResponse)
async def campaign_page(request: Request, name: str, who: Who,
                        page: Annotated[int, Query(ge=1, le=1_000_000)] = 1) -> Response:
    store = store_of(request)
    try:
        campaign, counters = await asyncio.to_thread(_campaign, store, name)
    except StoreError:
        return _not_found(request, who, f"There is no campaign {name!r}.")
    rows: list[dict[str, Any]] = []
    total = 0
    sees_contacts = who.role in CONTACT_ROLES
    if sees_contacts:
        rows, total = await asyncio.to_thread(_attempt_page, store, name, page)
    pages = max(1, -(-total // PAGE_SIZE))
    trees = await asyncio.to_thread(_tree_context, request, campaign,
                                    who.role in STEER_ROLES)
    return render(request, "campaign.html", {**trees,
        "name": name, "campaign": campaign, "c": counters,
        "verbs": [v.value for v in Verb], "allowed": counters.verbs,
        "may_steer": who.role in STEER_ROLES, "sees_contacts": sees_contacts,
        "attempts": rows, "page": page, "pages": pages, "total": total,
        "charts": list(rep.CHARTS.items())}, who=who)


@router.get("/campaigns/{name}/charts/{slug}.png")
async def campaign_chart(request: Request, name: str, slug: str, who: Who) -> Response:
    if slug not in rep.CHARTS:
        raise Problem(404, "Not Found", f"no chart {slug!r}: use {', '.join(rep.CHARTS)}")
    store = store_of(request)
    try:
        report = await asyncio.to_thread(rep.campaign_report, store, name)
    except StoreError:
        raise Problem(404, "Not Found", f"no campaign {name!r}") from None
    png = await asyncio.to_thread(rep.render_chart, report, slug)
    return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})


@router.get("/campaigns/{name}/contact", response_class=HTMLResponse)
async def contact_page(request: Request, name: str, who: Who,
                       number: Annotated[str, Query(min_length=1, max_length=40)]
                       ) -> Response:
    """A contact's timeline (every attempt) and why it is or is not dialed now."""
    _may(who, CONTACT_ROLES, "see contacts")
    store = store_of(request)

    def load() -> tuple[Any, Any, list[Any]]:
        found = explain_number(store, name, number, datetime.now(UTC))
        contact = store.contact_by_number(name, found.number)
        tries = store.attempts(name, contact.id) if contact is not None else []
        return found, contact, tries

    try:
        found, contact, tries = await asyncio.to_thread(load)
    except StoreError:
        return _not_found(request, who, f"There is no campaign {name!r}.")
    return render(request, "contact.html", {"name": name, "found": found,
                                            "contact": contact, "tries": tries}, who=who)


PIN_FIELD = re.compile(r"^(?P<tree>[A-Za-z0-9][A-Za-z0-9_-]{0,99})@(?P<version>[0-9]{1,9})$")


@router.post("/campaigns/{name}/tree")
async def pin_campaign_tree(request: Request, name: str, who: Who,
                            version: Annotated[str, Form(max_length=200)]) -> Response:
    """Point the campaign at a published tree version (``NAME@N``), audited as the API's
    ``POST /v1/campaigns/{name}/tree`` is; a running dialer follows within a second."""
    _may(who, STEER_ROLES, "choose a campaign's tree version (marketers do)")
    back = f"/campaigns/{quote(name)}"
    picked = PIN_FIELD.match(version)
    if picked is None:
        return render(request, "error.html", {
            "title": "Not a tree version", "back": back,
            "detail": f"{version[:100]!r}: pick a published version (NAME@N) from the list"},
            status=422, who=who)
    tree, number = picked["tree"], int(picked["version"])

    def apply() -> None:
        pin_tree(store_of(request), _library(request), name, tree, number,
                 also=lambda conn, before: accounts.audit(
                     conn, who, "campaign.tree", name, tree=pin(tree, number),
                     previous=before if parse_pin(before) else Path(before).stem))

    try:
        await asyncio.to_thread(apply)
    except TreesError as exc:
        return render(request, "error.html", {
            "title": {404: "Not found"}.get(exc.status, "Cannot run that version"),
            "detail": str(exc), "back": back}, status=exc.status, who=who)
    except StoreError:
        return _not_found(request, who, f"There is no campaign {name!r}.")
    return RedirectResponse(back, status_code=303)


@router.post("/campaigns/{name}/{verb}")
async def steer_campaign(request: Request, name: str, verb: Verb, who: Who) -> Response:
    """Start, pause, resume or stop, as the CLI does; audited in the same transaction."""
    _may(who, STEER_ROLES, f"{verb.value} campaigns")
    store = store_of(request)

    def apply() -> None:
        if verb is Verb.START:
            errors = start_problems(store.campaign(name)[0], _library(request))
            if errors:
                raise Unstartable(errors)
        steer(store, name, verb, f"{verb.value} by {who.actor} in the console",
              also=lambda conn: accounts.audit(conn, who, f"campaign.{verb.value}", name))

    try:
        await asyncio.to_thread(apply)
    except Unstartable as exc:
        return render(request, "error.html", {
            "title": "The campaign would not dial",
            "detail": "; ".join(str(p) for p in exc.problems),
            "back": f"/campaigns/{quote(name)}"}, status=422, who=who)
    except SteerError as exc:
        return render(request, "error.html", {"title": "Cannot do that now",
                                              "detail": str(exc),
                                              "back": f"/campaigns/{quote(name)}"},
                      status=409, who=who)
    except StoreError:
        return _not_found(request, who, f"There is no campaign {name!r}.")
    sampler: events.Sampler = request.app.state.sampler
    sampler.forget(name)
    return RedirectResponse(f"/campaigns/{quote(name)}", status_code=303)


def _not_found(request: Request, who: Principal, detail: str) -> Response:
    return render(request, "error.html", {"title": "Not found", "detail": detail,
                                          "back": "/campaigns"}, status=404, who=who)


@router.get("/docs", response_class=HTMLResponse)
def api_docs(request: Request, who: Who) -> Response:
    """Swagger UI (vendored under static/swagger) on ``/openapi.json``."""
    return render(request, "docs.html", {}, who=who)


# --- admin ------------------------------------------------------------------------------

ADMIN = frozenset({Role.ADMIN})


@router.get("/admin/audit", response_class=HTMLResponse)
async def audit_page(request: Request, who: Who,
                     page: Annotated[int, Query(ge=1, le=1_000_000)] = 1) -> Response:
    _may(who, ADMIN, "read the audit log")
    lines = await asyncio.to_thread(accounts.audit_lines, store_of(request).engine,
                                    PAGE_SIZE + 1, (page - 1) * PAGE_SIZE)
    return render(request, "audit.html", {"lines": lines[:PAGE_SIZE], "page": page,
                                          "more": len(lines) > PAGE_SIZE}, who=who)


async def _accounts_page(request: Request, who: Principal, *, new_token: str | None = None,
                         message: str | None = None, error: str | None = None,
                         status: int = 200) -> Response:
    engine = store_of(request).engine
    users = await asyncio.to_thread(accounts.list_users, engine)
    tokens = await asyncio.to_thread(accounts.list_tokens, engine)
    return render(request, "accounts.html", {
        "users": users, "tokens": tokens, "roles": [r.value for r in Role],
        "new_token": new_token, "message": message, "error": error}, status=status, who=who)


@router.get("/admin/accounts", response_class=HTMLResponse)
async def accounts_page(request: Request, who: Who) -> Response:
    _may(who, ADMIN, "manage users and tokens")
    return await _accounts_page(request, who)


@router.post("/admin/tokens", response_class=HTMLResponse)
async def create_token(request: Request, who: Who,
                       name: Annotated[str, Form(min_length=1, max_length=100)],
                       role: Annotated[Role, Form()]) -> Response:
    """The new token is shown in this answer only (the store keeps its hash)."""
    _may(who, ADMIN, "manage users and tokens")
    engine = store_of(request).engine

    def make() -> str:
        token = accounts.create_token(engine, name.strip(), role, created_by=who.actor)
        with engine.begin() as conn:
            accounts.audit(conn, who, "token.create", name.strip(), role=role.value)
        return token

    token = await asyncio.to_thread(make)
    response = await _accounts_page(request, who, new_token=token,
                                    message=f"token {name.strip()!r} created")
    response.headers["Cache-Control"] = "no-store"
    return response


@router.post("/admin/tokens/revoke", response_class=HTMLResponse)
async def revoke_token(request: Request, who: Who,
                       name: Annotated[str, Form(min_length=1, max_length=100)]) -> Response:
    _may(who, ADMIN, "manage users and tokens")
    count = await asyncio.to_thread(accounts.revoke_tokens, store_of(request).engine, name, who)
    if not count:
        return await _accounts_page(request, who, error=f"no live token named {name!r}",
                                    status=404)
    return RedirectResponse("/admin/accounts", status_code=303)


@router.post("/admin/users", response_class=HTMLResponse)
async def add_user(request: Request, who: Who,
                   name: Annotated[str, Form(min_length=1, max_length=100)],
                   role: Annotated[Role, Form()],
                   password: Annotated[str, Form(max_length=1000)]) -> Response:
    _may(who, ADMIN, "manage users and tokens")
    engine = store_of(request).engine

    def make() -> None:  # argon2: off the event loop
        accounts.add_user(engine, name.strip(), role, password)
        with engine.begin() as conn:
            accounts.audit(conn, who, "user.add", name.strip(), role=role.value)

    try:
        await asyncio.to_thread(make)
    except AccountError as exc:
        return await _accounts_page(request, who, error=str(exc), status=422)
    return RedirectResponse("/admin/accounts", status_code=303)
