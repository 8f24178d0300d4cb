"""The campaign pages over real HTTP against a real uvicorn and a real store (SQLite and
PostgreSQL): who may see and do what, steering as the CLI does (audited), SSE counters
(several dialer nodes, shared reads), charts, a contact's timeline, tokens, /metrics."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from consoletest import Console, Served, csrf_of, number
from farend import ScriptedFarEnd
from sqlalchemy import column, insert, select, table

from autocall.campaign.dialer import run_campaign
from autocall.campaign.model import CampaignState
from autocall.campaign.store import Store
from autocall.web import accounts


def _client(served: Served) -> httpx.Client:
    return httpx.Client(base_url=served.url, follow_redirects=False, timeout=10)


def _login_form(client: httpx.Client, name: str, password: str) -> httpx.Response:
    token = csrf_of(client.get("/login").text)
    return client.post("/login", data={"username": name, "password": password,
                                       "csrf_token": token})


def test_roles_on_the_campaign_page(served: Served, store: Store,
                                    make_user: Callable[..., tuple[str, str]],
                                    make_campaign: Callable[..., str],
                                    login: Callable[[str, str, str], Console]) -> None:
    name = make_campaign(store)
    contact = f"/campaigns/{name}/contact?number={number(1).replace('+', '%2B')}"
    viewer = login(served.url, *make_user("viewer"))
    page = viewer.get(f"/campaigns/{name}").text
    assert 'id="btn-start"' not in page and "data-verb" not in page
    assert 'id="attempts"' in page
    assert viewer.post(f"/campaigns/{name}/start").status_code == 403
    assert viewer.get(contact).status_code == 200
    designer = login(served.url, *make_user("designer"))
    page = designer.get(f"/campaigns/{name}").text
    assert 'id="attempts"' not in page and 'data-counter="dialed"' in page
    assert designer.get(contact).status_code == 403
    assert designer.post(f"/campaigns/{name}/start").status_code == 403
    assert designer.get("/admin/accounts").status_code == 403
    assert store.state(name)[0] is CampaignState.DRAFT
    marketer = login(served.url, *make_user("marketer"))
    page = marketer.get(f"/campaigns/{name}").text
    assert 'id="btn-start"' in page and 'id="attempts"' in page
    assert "/admin/accounts" not in page  # the nav shows what the role may open


def test_steering_is_the_clis_and_is_audited(served: Served, store: Store,
                                             make_user: Callable[..., tuple[str, str]],
                                             make_campaign: Callable[..., str],
                                             login: Callable[[str, str, str], Console]
                                             ) -> None:
    name = make_campaign(store)
    user, password = make_user("marketer")
    console = login(served.url, user, password)
    steps = [("start", CampaignState.RUNNING), ("pause", CampaignState.PAUSED),
             ("resume", CampaignState.RUNNING), ("stop", CampaignState.STOPPED)]
    for verb, state in steps:
        answer = console.post(f"/campaigns/{name}/{verb}")
        assert answer.status_code == 303 and answer.headers["location"] == f"/campaigns/{name}"
        assert store.state(name)[0] is state
    refused = console.post(f"/campaigns/{name}/resume")  # stopped is for good
    assert refused.status_code == 409 and "cannot resume" in refused.text
    assert console.post(f"/campaigns/{name}/explode").status_code == 422
    assert console.post("/campaigns/nope/pause").status_code == 404
    lines = [(a.actor, a.action, a.subject) for a in accounts.audit_lines(store.engine)]
    assert [line for line in reversed(lines) if line[1].startswith("campaign.")] == [
        (f"user:{user}", f"campaign.{verb}", name) for verb, _ in steps]


def _events(served: Served, path: str, cookies: httpx.Cookies, n: int) -> list[dict[str, object]]:
    found: list[dict[str, object]] = []
    with httpx.Client(base_url=served.url, cookies=cookies, timeout=10) as client, \
            client.stream("GET", path) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        event = None
        for line in stream.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "counters":
                found.append(json.loads(line[6:]))
                if len(found) >= n:
                    break
    return found


def test_live_counters_follow_the_store(served: Served, store: Store,
                                        make_user: Callable[..., tuple[str, str]],
                                        make_campaign: Callable[..., str],
                                        login: Callable[[str, str, str], Console]) -> None:
    name = make_campaign(store, n=4)
    console = login(served.url, *make_user("viewer"))
    first = _events(served, f"/campaigns/{name}/events", console.client.cookies, 1)[0]
    assert first["state"] == "draft" and first["contacts"] == 4 and first["dialed"] == 0
    assert first["verbs"] == ["start", "stop"]
    store.set_state(name, CampaignState.RUNNING, "test")
    far = ScriptedFarEnd({number(0): ["busy"]}, talk=0.01)
    asyncio.run(run_campaign(name, store, far, poll=0.05))
    later = _events(served, f"/campaigns/{name}/events", console.client.cookies, 1)[0]
    assert later["state"] == "completed" and later["dialed"] == 4 and later["done"] == 4
    assert later["answered"] == 3 and later["progress"] == 100.0
    assert later["outcomes"] == {"busy": 1, "completed": 3}
    assert later["calls_per_second"] == pytest.approx(0.4)
    assert later["verbs"] == []
    with _client(served) as client:
        client.cookies = console.client.cookies
        assert client.get("/campaigns/nope/events").status_code == 404


def test_report_charts_are_png(served: Served, store: Store,
                               make_user: Callable[..., tuple[str, str]],
                               make_campaign: Callable[..., str],
                               login: Callable[[str, str, str], Console]) -> None:
    name = make_campaign(store)
    console = login(served.url, *make_user("designer"))
    for slug in ("outcomes", "per-hour"):
        answer = console.get(f"/campaigns/{name}/charts/{slug}.png")
        assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
        assert answer.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert console.get(f"/campaigns/{name}/charts/..%2F..%2Fetc%2Fpasswd.png"
                       ).status_code == 404
    assert console.get(f"/campaigns/{name}/charts/nope.png").status_code == 404


def test_contact_timeline_and_explain(served: Served, store: Store,
                                      make_user: Callable[..., tuple[str, str]],
                                      make_campaign: Callable[..., str],
                                      login: Callable[[str, str, str], Console]) -> None:
    name = make_campaign(store, n=2)
    store.set_state(name, CampaignState.RUNNING, "test")
    asyncio.run(run_campaign(name, store, ScriptedFarEnd({number(0): ["busy"]}, talk=0.01),
                             poll=0.05))
    console = login(served.url, *make_user("marketer"))
    page = console.get(f"/campaigns/{name}/contact", params={"number": "(212) 300-0000"})
    assert page.status_code == 200
    assert number(0) in page.text and "try 1" in page.text and "busy" in page.text
    assert "not dialed now" in page.text
    unknown = console.get(f"/campaigns/{name}/contact", params={"number": "+12125550000"})
    assert unknown.status_code == 200 and "not a contact of this campaign" in unknown.text
    assert console.get(f"/campaigns/{name}/contact", params={"number": "x" * 41}
                       ).status_code == 422
    table_page = console.get(f"/campaigns/{name}").text
    assert table_page.count("<tr>") >= 3 and "busy" in table_page  # the attempts table


def test_tokens_made_and_revoked_in_the_console(served: Served, store: Store,
                                                make_user: Callable[..., tuple[str, str]],
                                                login: Callable[[str, str, str], Console]
                                                ) -> None:
    admin = login(served.url, *make_user("admin"))
    made = admin.post("/admin/tokens", data={"name": "crm", "role": "viewer"})
    assert made.status_code == 200 and made.headers["cache-control"] == "no-store"
    token = made.text.split('<code id="new-token">')[1].split("<")[0]
    assert token.startswith("ac_")
    assert token not in admin.get("/admin/accounts").text  # shown once
    with _client(served) as client:
        bearer = {"Authorization": f"Bearer {token}"}
        assert client.get("/metrics", headers=bearer).status_code == 200
        assert admin.post("/admin/tokens/revoke", data={"name": "crm"}).status_code == 303
        assert client.get("/metrics", headers=bearer).status_code == 401
    assert admin.post("/admin/users", data={"name": "bob", "role": "viewer",
                                            "password": "short"}).status_code == 422
    assert admin.post("/admin/users", data={"name": "bob", "role": "viewer",
                                            "password": "long-enough"}).status_code == 303
    audit = admin.get("/admin/audit").text
    assert "token.create" in audit and "token.revoke" in audit and "user.add" in audit


OUTBOX = table("autocall_outbox", column("event_id"), column("type"), column("subject"),
               column("url"), column("payload"), column("created_at"), column("next_at"),
               column("delivered_at"))


def test_metrics_from_the_store(served: Served, store: Store,
                                make_token: Callable[..., str],
                                make_campaign: Callable[..., str]) -> None:
    name = make_campaign(store, n=5)
    store.set_state(name, CampaignState.RUNNING, "test")
    asyncio.run(run_campaign(name, store, ScriptedFarEnd({number(0): ["busy"],
                                                          number(1): ["optout"]}, talk=0.01),
                             poll=0.05))
    now = datetime.now(UTC).replace(tzinfo=None)
    with store.engine.begin() as conn:
        for i, delivered in enumerate((None, None, now)):
            conn.execute(insert(OUTBOX).values(
                event_id=f"evt_{i}", type="call.completed", subject="call-1",
                url="http://127.0.0.1:9/", payload="{}", created_at=now, next_at=now,
                delivered_at=delivered))
        assert conn.execute(select(OUTBOX.c.event_id)).all()
    headers = {"Authorization": f"Bearer {make_token('viewer')}"}
    with _client(served) as client:
        answer = client.get("/metrics", headers=headers)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    lines = set(answer.text.splitlines())
    label = f'campaign="{name}"'
    assert f"autocall_attempts_total{{{label}}} 5.0" in lines
    assert f'autocall_answers_total{{{label},outcome="completed"}} 3.0' in lines
    assert f'autocall_answers_total{{{label},outcome="opt-out"}} 1.0' in lines
    assert f'autocall_attempt_outcomes_total{{{label},outcome="busy"}} 1.0' in lines
    assert f"autocall_calls_active{{{label}}} 0.0" in lines
    assert 'autocall_calls_active{campaign=""} 0.0' in lines
    assert f'autocall_campaign_state{{{label},state="completed"}} 1.0' in lines
    assert f"autocall_calls_per_second{{{label}}} {5 / 60}" in lines
    assert "autocall_webhook_backlog 2.0" in lines


def test_counters_add_up_several_dialer_nodes(served: Served, store: Store,
                                               make_token: Callable[..., str],
                                               make_campaign: Callable[..., str]) -> None:
    """Two live dialers (their heartbeats in the store) count together; a silent one and
    one that has exited do not."""
    name = make_campaign(store, n=3, channels=4)
    now = datetime.now(UTC)
    store.heartbeat(name, "node-a", now, 3, "dialing")
    store.heartbeat(name, "node-b", now, 2, "dialing")
    store.heartbeat(name, "node-gone", now - timedelta(seconds=120), 4, "dialing")
    store.heartbeat(name, "node-done", now, 0, "exited")
    with httpx.Client(base_url=served.url, timeout=10,
                      headers={"Authorization": f"Bearer {make_token('viewer')}"}) as client, \
            client.stream("GET", f"/campaigns/{name}/events") as stream:
        assert stream.status_code == 200
        data = next(json.loads(line[6:]) for line in stream.iter_lines()
                    if line.startswith("data: "))
    assert data["dialers"] == 2 and data["channels_busy"] == 5 and data["channels"] == 8


def test_open_pages_share_one_store_read(serve: Callable[..., Served], sqlite_store: Store,
                                         make_campaign: Callable[..., str]) -> None:
    """Three pages on one campaign for ~3 s: about 3 reads of the store, not 9."""
    from concurrent.futures import ThreadPoolExecutor

    from sqlalchemy import event

    served = serve(sqlite_store)
    name = make_campaign(sqlite_store, n=2)
    reads: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        if "autocall_nodes" in statement:  # one per counters() (Store.summary)
            reads.append(statement)

    token = accounts.create_token(sqlite_store.engine, "t", accounts.Role.VIEWER)
    headers = {"Authorization": f"Bearer {token}"}

    def watch(_: int) -> int:
        with httpx.Client(base_url=served.url, timeout=10, headers=headers) as client, \
                client.stream("GET", f"/campaigns/{name}/events") as stream:
            seen = 0
            for line in stream.iter_lines():
                seen += line.startswith("data: ")
                if seen == 3:
                    return seen
        return seen

    event.listen(sqlite_store.engine, "before_cursor_execute", count)
    try:
        with ThreadPoolExecutor(3) as pool:
            assert list(pool.map(watch, range(3))) == [3, 3, 3]
    finally:
        event.remove(sqlite_store.engine, "before_cursor_execute", count)
    assert 2 <= len(reads) <= 5, len(reads)
