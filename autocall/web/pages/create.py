"""A new campaign from the browser: the YAML's fields in a form, validated by the same
model (:class:`autocall.campaign.model.Campaign`) and the same checks as
``POST /v1/campaigns``, each error shown at its field.

``GET  /new-campaign``   the form (the trees in the prompts folder and the published
                         stored versions to choose from)
``POST /new-campaign``   create it as draft and go to its page (contacts come next,
                         through the import wizard)

(Not under ``/campaigns/``: ``new`` is a valid campaign name.) Admins and marketers only.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from starlette.datastructures import FormData

from autocall.campaign.model import WEEKDAYS, Campaign
from autocall.campaign.trees import TreeLibrary
from autocall.web import session
from autocall.web.accounts import Principal
from autocall.web.api.campaigns import TREE_NAME, checked_campaign, insert_campaign
from autocall.web.auth import settings_of, store_of
from autocall.web.pages.render import render
from autocall.web.pages.routes import STEER_ROLES, Who, _may
from autocall.web.problems import Problem

router = APIRouter(include_in_schema=False, dependencies=[Depends(session.csrf_protect)])

FIELDS = ("name", "tree", "caller_ids", "default_region", "default_timezone", "window.days",
          "window.start", "window.end", "window.override_legal_hours", "window", "channels",
          "calls_per_second", "ring_timeout", "retry.max_attempts", "recording")
"""The form's fields, named by their place in the YAML (``window.start``); an error
whose location is one of them is shown beside it (``window``: the hours as a whole)."""

DEFAULTS = {"default_region": "US", "default_timezone": "UTC", "window.days": list(WEEKDAYS[:5]),
            "window.start": "09:00", "window.end": "20:00", "channels": "10",
            "calls_per_second": "5", "ring_timeout": "30", "retry.max_attempts": "3",
            "caller_ids": "", "name": "", "tree": ""}


@dataclass
class Form:
    values: dict[str, Any] = field(default_factory=lambda: dict(DEFAULTS))
    errors: dict[str, list[str]] = field(default_factory=dict)
    general: list[str] = field(default_factory=list)

    def add(self, loc: list[str | int] | tuple[str | int, ...], message: str) -> None:
        parts = [str(p) for p in loc if isinstance(p, str) and p != "body"]
        for size in (2, 1):  # the deepest field the form has
            key = ".".join(parts[:size])
            if len(parts) >= size and key in FIELDS:
                self.errors.setdefault(key, []).append(message)
                return
        self.general.append(f"{'.'.join(parts)}: {message}" if parts else message)


def _text(form: FormData, key: str, limit: int = 200) -> str:
    value = form.get(key)
    return value.strip()[:limit] if isinstance(value, str) else ""


def read(form: FormData) -> tuple[Form, dict[str, Any]]:
    """The form as typed (to show it again) and as the YAML's mapping (to validate)."""
    shown = Form()
    for key in FIELDS:
        if key in ("window.days", "window", "window.override_legal_hours", "recording"):
            continue
        shown.values[key] = _text(form, key, 2000 if key == "caller_ids" else 200)
    days = [d for d in form.getlist("window.days") if isinstance(d, str)][:7]
    shown.values["window.days"] = days
    override = form.get("window.override_legal_hours") == "on"
    recording = form.get("recording") == "on"
    shown.values["window.override_legal_hours"] = override
    shown.values["recording"] = recording
    v = shown.values
    data: dict[str, Any] = {
        "name": v["name"], "tree": v["tree"],
        "caller_ids": [line.strip() for line in v["caller_ids"].replace(",", "\n").splitlines()
                       if line.strip()],
        "default_region": v["default_region"], "default_timezone": v["default_timezone"],
        "window": {"days": days, "start": v["window.start"], "end": v["window.end"],
                   "override_legal_hours": override},
        "channels": v["channels"], "calls_per_second": v["calls_per_second"],
        "ring_timeout": v["ring_timeout"], "retry": {"max_attempts": v["retry.max_attempts"]},
        "recording": recording}
    return shown, data


def _trees(request: Request) -> tuple[list[str], list[tuple[str, str]]]:
    """Tree files in the prompts folder, and published stored versions (pin, label)."""
    settings = settings_of(request)
    root = settings.prompts_dir
    files = sorted({p.stem for pattern in ("*.yaml", "*.yml") for p in root.glob(pattern)
                    if p.is_file() and TREE_NAME.match(p.stem)}) if root.is_dir() else []
    stored = [(v.pin, f"{v.tree} version {v.version} (published)") for v in
              TreeLibrary(store_of(request).engine, settings.prompts_dir).published()]
    return files, stored


async def _page(request: Request, who: Principal, form: Form, status: int = 200) -> Response:
    files, stored = await asyncio.to_thread(_trees, request)
    return render(request, "new_campaign.html", {
        "f": form.values, "errors": form.errors, "general": form.general,
        "weekdays": WEEKDAYS, "files": files, "stored": stored}, status=status, who=who)


@router.get("/new-campaign", response_class=HTMLResponse)
async def new_campaign_form(request: Request, who: Who) -> Response:
    _may(who, STEER_ROLES, "create campaigns")
    return await _page(request, who, Form())


@router.post("/new-campaign", response_class=HTMLResponse)
async def create_campaign(request: Request, who: Who) -> Response:
    _may(who, STEER_ROLES, "create campaigns")
    shown, data = read(await request.form())
    try:
        body = Campaign.model_validate(data)
    except ValidationError as exc:
        for detail in exc.errors():
            shown.add(detail["loc"], str(detail["msg"]).removeprefix("Value error, "))
        return await _page(request, who, shown, 422)
    store = store_of(request)

    def create() -> None:
        campaign = checked_campaign(body, settings_of(request), store)
        with store.engine.begin() as conn:
            insert_campaign(conn, campaign, who)

    try:
        await asyncio.to_thread(create)
    except Problem as problem:
        for error in problem.errors:
            where: object = error.get("loc") or []
            line = f" (line {error['line']})" if error.get("line") else ""
            shown.add(where if isinstance(where, list) else [], f"{error.get('msg')}{line}")
        if not problem.errors:
            shown.general.append(problem.detail or problem.title)
        return await _page(request, who, shown, problem.status)
    return RedirectResponse(f"/campaigns/{quote(body.name)}", status_code=303)
