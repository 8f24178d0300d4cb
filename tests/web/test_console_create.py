"""A new campaign from the console's form over real HTTP on a real store (SQLite and
PostgreSQL): the YAML's model and the API's checks decide, each error is shown at its
field, the form keeps what was typed, and what is stored equals what the API stores
from the same fields."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from pathlib import Path

import httpx
from consoletest import Console, Served
from sqlalchemy import select

from autocall.campaign.model import CampaignState
from autocall.campaign.store import Store
from autocall.config import Settings
from autocall.web.accounts import Role, audit_log

Login = Callable[[str, str, str], Console]

HOLD = ("name: hold\noutcomes: [done]\nstart: talk\nnodes:\n"
        "  talk: {pause: 1.0, next: bye}\n  bye: {hangup: done}\n")
BROKEN = "name: broken\noutcomes: [done]\nstart: talk\nnodes:\n  talk: {goto: nowhere}\n"

GOOD = {"name": "spring", "tree": "hold", "caller_ids": "+12025550100\n+12025550101",
        "default_region": "US", "default_timezone": "America/New_York",
        "window.days": ["mon", "wed", "fri"], "window.start": "09:30", "window.end": "19:00",
        "channels": "4", "calls_per_second": "2.5", "ring_timeout": "25",
        "retry.max_attempts": "2", "recording": "on"}


def _errors(page: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for key, message in re.findall(r'data-error-for="([^"]+)">([^<]*)<', page):
        found.setdefault(key, []).append(html.unescape(message))
    return found


def _server(store: Store, serve: Callable[..., Served], tmp_path: Path) -> Served:
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "hold.yaml").write_text(HOLD, encoding="utf-8")
    (prompts / "broken.yaml").write_text(BROKEN, encoding="utf-8")
    return serve(store, settings=Settings(prompts_dir=prompts,
                                          recordings_dir=tmp_path / "rec"))


def test_create_a_campaign_from_the_form(
        store: Store, serve: Callable[..., Served], tmp_path: Path,
        make_user: Callable[..., tuple[str, str]], make_token: Callable[..., str],
        login: Login) -> None:
    web = _server(store, serve, tmp_path)
    mara = login(web.url, *make_user(Role.MARKETER, "mara"))
    assert 'href="/new-campaign"' in mara.get("/campaigns").text
    form = mara.get("/new-campaign")
    assert form.status_code == 200
    assert '<option value="hold"' in form.text and '<option value="broken"' in form.text

    made = mara.post("/new-campaign", GOOD)  # type: ignore[arg-type]
    assert made.status_code == 303, made.text
    assert made.headers["location"] == "/campaigns/spring"
    campaign, state, _ = store.campaign("spring")
    assert state is CampaignState.DRAFT
    assert Path(campaign.tree) == (tmp_path / "prompts" / "hold.yaml").resolve()
    assert campaign.caller_ids == ["+12025550100", "+12025550101"]
    assert campaign.window.days == ["mon", "wed", "fri"]
    assert str(campaign.window.start) == "09:30:00" and campaign.channels == 4
    assert campaign.calls_per_second == 2.5 and campaign.retry.max_attempts == 2
    assert campaign.recording and campaign.default_timezone == "America/New_York"
    with store.engine.connect() as conn:
        audited = conn.execute(select(audit_log.c.actor, audit_log.c.subject).where(
            audit_log.c.action == "campaign.create")).all()
    assert [tuple(r) for r in audited] == [("user:mara", "spring")]

    # The API, given the same fields, stores the same definition.
    api = httpx.post(f"{web.url}/v1/campaigns", headers={
        "Authorization": f"Bearer {make_token(Role.MARKETER, 'crm')}"}, json={
        "name": "twin", "tree": "hold", "caller_ids": ["+12025550100", "+12025550101"],
        "default_timezone": "America/New_York",
        "window": {"days": ["mon", "wed", "fri"], "start": "09:30", "end": "19:00"},
        "channels": 4, "calls_per_second": 2.5, "ring_timeout": 25,
        "retry": {"max_attempts": 2}, "recording": True})
    assert api.status_code == 201, api.text
    twin = store.campaign("twin")[0]
    assert twin.model_copy(update={"name": "spring"}) == campaign

    again = mara.post("/new-campaign", GOOD)  # type: ignore[arg-type]
    assert again.status_code == 409
    assert _errors(again.text) == {"name": ["name taken"]}


def test_errors_are_shown_at_their_fields(
        store: Store, serve: Callable[..., Served], tmp_path: Path,
        make_user: Callable[..., tuple[str, str]], login: Login) -> None:
    web = _server(store, serve, tmp_path)
    mara = login(web.url, *make_user(Role.MARKETER))
    wrong = {**GOOD, "name": "spring survey", "caller_ids": "  ", "default_region": "XX",
             "default_timezone": "Mars/Olympus", "channels": "0", "calls_per_second": "fast",
             "retry.max_attempts": "99", "window.days": []}
    answer = mara.post("/new-campaign", wrong)  # type: ignore[arg-type]
    assert answer.status_code == 422
    errors = _errors(answer.text)
    assert set(errors) == {"name", "caller_ids", "default_region", "default_timezone",
                           "channels", "calls_per_second", "retry.max_attempts",
                           "window.days"}, errors
    assert "unknown region 'XX'" in errors["default_region"][0]
    assert "at least one day" in errors["window.days"][0]
    assert 'value="spring survey"' in answer.text  # what was typed stays
    assert 'value="Mars/Olympus"' in answer.text
    assert store.campaign_names() == []

    hours = mara.post("/new-campaign", {**GOOD, "window.start": "07:00",  # type: ignore[dict-item]
                                        "window.end": "22:00"})
    assert hours.status_code == 422
    assert "outside the legal" in _errors(hours.text)["window"][0]
    legal = mara.post("/new-campaign", {**GOOD, "window.start": "07:00",  # type: ignore[dict-item]
                                        "window.end": "22:00",
                                        "window.override_legal_hours": "on"})
    assert legal.status_code == 303, legal.text

    broken = mara.post("/new-campaign", {**GOOD, "name": "b", "tree": "broken"})  # type: ignore[dict-item]
    assert broken.status_code == 422
    tree_errors = _errors(broken.text)["tree"]
    assert any("nowhere" in m and "(line 5)" in m for m in tree_errors), tree_errors
    for bad_tree in ("../../etc/passwd", "", "missing"):
        refused = mara.post("/new-campaign", {**GOOD, "name": "c", "tree": bad_tree})  # type: ignore[dict-item]
        assert refused.status_code == 422 and "tree" in _errors(refused.text), bad_tree
    assert store.campaign_names() == ["spring"]


def test_who_may_create(store: Store, serve: Callable[..., Served], tmp_path: Path,
                        make_user: Callable[..., tuple[str, str]], login: Login) -> None:
    web = _server(store, serve, tmp_path)
    for role in (Role.VIEWER, Role.DESIGNER):
        who = login(web.url, *make_user(role))
        assert 'href="/new-campaign"' not in who.get("/campaigns").text
        assert who.get("/new-campaign").status_code == 403
        assert who.post("/new-campaign", GOOD).status_code == 403  # type: ignore[arg-type]
    mara = login(web.url, *make_user(Role.MARKETER))
    assert Console(mara.client, "stale").post(
        "/new-campaign", GOOD).status_code == 403  # type: ignore[arg-type]
    anonymous = httpx.get(f"{web.url}/new-campaign", follow_redirects=False)
    assert anonymous.status_code == 303 and "/login" in anonymous.headers["location"]
    assert store.campaign_names() == []


def test_hostile_fields_are_refused_at_their_place(
        store: Store, serve: Callable[..., Served], tmp_path: Path,
        make_user: Callable[..., tuple[str, str]], login: Login) -> None:
    web = _server(store, serve, tmp_path)
    mara = login(web.url, *make_user(Role.MARKETER))
    cases = {"calls_per_second": ["nan", "inf", "-1", "1e999"],
             "ring_timeout": ["nan", "0", "301"],
             "channels": ["1e3", "5001", "99999999999999999999999"],
             "default_timezone": ["../../etc/passwd", "\x00"],
             "name": ["a\x00b", "x" * 150, "-lead"],
             "window.start": ["25:00", "nine"]}
    for key, values in cases.items():
        for value in values:
            answer = mara.post("/new-campaign", {**GOOD, key: value})  # type: ignore[dict-item]
            assert answer.status_code == 422, (key, value, answer.text[:300])
            assert key in _errors(answer.text), (key, value, _errors(answer.text))
    forged_days = mara.post("/new-campaign", {**GOOD,  # type: ignore[dict-item]
                                              "window.days": ["mon", "caturday"]})
    assert forged_days.status_code == 422
    assert "caturday" in _errors(forged_days.text)["window.days"][0]
    assert store.campaign_names() == []
