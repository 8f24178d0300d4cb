"""POST /v1/calls over real HTTP: validation as problem+json, the queued row, reading
it back, and the Idempotency-Key: the same POST three times (one of them twice at once)
makes exactly one call request, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from sqlalchemy import func, insert, select, update

from autocall.campaign.store import call_requests
from autocall.web.accounts import Role
from autocall.web.api.calls import CallCreate
from autocall.web.idempotency import fingerprint, idempotency
from tests.web.api_fixtures import Live, assert_problem, live_server  # noqa: F401


def _rows(live: Live) -> int:
    with live.store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(call_requests)).scalar_one())


def test_a_call_is_queued_and_read_back(live: Live) -> None:
    crm = live.client(Role.MARKETER, "crm")
    got = crm.post("/v1/calls", json={"to": "+1 212 200 0001", "say": "Your parcel is here",
                                      "confirm": "1", "variables": {"order": 42}})
    assert got.status_code == 201, got.text
    body = got.json()
    assert body["status"] == "queued" and body["id"].startswith("CA") and len(body["id"]) == 34
    one = crm.get(f"/v1/calls/{body['id']}").json()
    assert one["state"] == "queued" and one["record"] is None
    assert one["request"]["to"] == "+12122000001" and one["created_by"] == "token:crm"
    # a dialer finishes it: the record shows, with its status
    record = {"status": "completed", "sip_code": 200, "digits": "1"}
    with live.store.engine.begin() as conn:
        conn.execute(update(call_requests).where(call_requests.c.id == body["id"])
                     .values(state="done", record=json.dumps(record)))
    done = crm.get(f"/v1/calls/{body['id']}").json()
    assert done["status"] == "completed" and done["record"]["digits"] == "1"
    tree_call = crm.post("/v1/calls", json={"to": "+12122000002", "tree": "hold"})
    assert tree_call.status_code == 201
    queued = crm.get("/v1/calls", params={"state": "queued"}).json()["items"]
    assert [c["id"] for c in queued] == [tree_call.json()["id"]]
    assert len(crm.get("/v1/calls").json()["items"]) == 2
    first = crm.get("/v1/calls", params={"limit": 1}).json()
    assert first["items"][0]["id"] == body["id"] and first["next"] == body["id"]
    second = crm.get("/v1/calls", params={"limit": 1, "after": first["next"]}).json()
    assert second["items"][0]["id"] == tree_call.json()["id"]
    by_status = crm.get("/v1/calls", params={"status": "completed"}).json()["items"]
    assert [c["id"] for c in by_status] == [body["id"]]
    assert crm.get("/v1/calls", params={"status": "busy"}).json()["items"] == []
    assert [c["id"] for c in crm.get("/v1/calls", params={"status": "queued"}).json()[
        "items"]] == [tree_call.json()["id"]]
    assert_problem(crm.get("/v1/calls", params={"status": "exploded"}), 422)
    later = crm.get("/v1/calls", params={"since": datetime.now(UTC).isoformat()}).json()
    assert later["items"] == []
    assert_problem(crm.get("/v1/calls/CA" + "0" * 32), 404)
    assert_problem(crm.get("/v1/calls/../../etc/passwd"), 404)


def test_bad_calls_are_problems_naming_the_field(live: Live) -> None:
    crm = live.client(Role.MARKETER)
    cases = [
        ({"to": "+12122000001"}, ["body"]),  # neither say nor tree
        ({"to": "+12122000001", "say": "hi", "tree": "hold"}, ["body"]),
        ({"to": "12", "say": "hi"}, ["body", "to"]),
        ({"to": "+12122000001", "tree": "../../etc/passwd"}, ["body", "tree"]),
        ({"to": "+12122000001", "tree": "missing"}, ["body", "tree"]),
        ({"to": "+12122000001", "say": "hi", "confirm": "12"}, ["body", "confirm"]),
        ({"to": "+12122000001", "say": "hi", "ring_timeout": 0}, ["body", "ring_timeout"]),
        ({"to": "+12122000001", "say": "hi", "status_callback": "file:///etc/x"},
         ["body", "status_callback"]),
        ({"to": "+12122000001", "say": "hi", "variables": {"a b": "x"}},
         ["body", "variables"]),
        ({"to": "+12122000001", "say": "hi", "play": "/etc/passwd"}, ["body", "play"]),
    ]
    for payload, loc in cases:
        problem = assert_problem(crm.post("/v1/calls", json=payload), 422)
        locs = [e["loc"] for e in problem["errors"]]  # type: ignore[attr-defined]
        assert loc in locs, (payload, locs)
    bad_json = crm.post("/v1/calls", content=b"{not json",
                        headers={"content-type": "application/json"})
    assert_problem(bad_json, 422)
    assert _rows(live) == 0


def test_roles_on_calls(live: Live) -> None:
    payload = {"to": "+12122000001", "say": "hi"}
    assert_problem(live.client(None).post("/v1/calls", json=payload), 401)
    assert_problem(live.client(Role.VIEWER).post("/v1/calls", json=payload), 403)
    assert_problem(live.client(Role.DESIGNER).get("/v1/calls"), 403)
    assert live.client(Role.VIEWER).get("/v1/calls").status_code == 200
    assert live.client(Role.ADMIN).post("/v1/calls", json=payload).status_code == 201


def test_the_same_post_three_times_makes_one_call(live: Live) -> None:
    crm = live.client(Role.MARKETER, "crm")
    key = str(uuid.uuid4())
    payload = {"to": "+12122000001", "say": "Your parcel is here"}
    headers = {"Idempotency-Key": key}
    first = crm.post("/v1/calls", json=payload, headers=headers)
    assert first.status_code == 201 and "idempotent-replayed" not in first.headers
    with ThreadPoolExecutor(2) as pool:  # two retries at the same moment
        again = list(pool.map(lambda _: crm.post("/v1/calls", json=payload, headers=headers),
                              range(2)))
    for retry in again:
        assert retry.status_code == 201, retry.text
        assert retry.json() == first.json()
        assert retry.headers["idempotent-replayed"] == "true"
    assert _rows(live) == 1
    # the same key with another body: refused, still one row
    other = crm.post("/v1/calls", json={**payload, "say": "Another text"}, headers=headers)
    assert_problem(other, 422)
    # another principal's key space is its own
    assert live.client(Role.MARKETER, "other-crm").post(
        "/v1/calls", json=payload, headers=headers).status_code == 201
    assert _rows(live) == 2
    assert_problem(crm.post("/v1/calls", json=payload,
                            headers={"Idempotency-Key": "bad key\twith tab"}), 400)


def test_first_posts_in_parallel_make_one_call(live: Live) -> None:
    """No first request at all before: six identical POSTs race for the key."""
    crm = live.client(Role.MARKETER, "crm")
    headers = {"Idempotency-Key": "order-7781"}
    payload = {"to": "+12122000009", "say": "Hello"}
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: crm.post("/v1/calls", json=payload, headers=headers),
                                range(6)))
    assert {a.status_code for a in answers} == {201}, [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    assert sum(a.headers.get("idempotent-replayed") == "true" for a in answers) == 5
    assert _rows(live) == 1


def test_a_key_still_in_progress_is_409(live: Live) -> None:
    crm = live.client(Role.MARKETER, "crm")
    payload = {"to": "+12122000001", "say": "hi"}
    # the first request with this key is being done: its row has no answer yet
    request = fingerprint("POST", "/v1/calls", CallCreate(**payload).model_dump_json())
    with live.store.engine.begin() as conn:
        conn.execute(insert(idempotency).values(
            principal="token:crm", key="busy-key", request=request, status=None,
            created_at=datetime.now(UTC).replace(tzinfo=None)))
    got = crm.post("/v1/calls", json=payload, headers={"Idempotency-Key": "busy-key"})
    problem = assert_problem(got, 409)
    assert "in progress" in str(problem["detail"]) and got.headers["retry-after"] == "1"
    assert _rows(live) == 0


def test_status_filter_pages_across_batches(live: Live) -> None:
    crm = live.client(Role.MARKETER)
    ids = [crm.post("/v1/calls", json={"to": f"+1212200{i:04d}", "say": "hi"}).json()["id"]
           for i in range(7)]
    busy = ids[1::2]  # 3 of them end busy; the others stay queued
    with live.store.engine.begin() as conn:
        for call_id in busy:
            conn.execute(update(call_requests).where(call_requests.c.id == call_id).values(
                state="done", record=json.dumps({"status": "busy", "sip_code": 486})))
    first = crm.get("/v1/calls", params={"status": "busy", "limit": 2}).json()
    assert [c["id"] for c in first["items"]] == busy[:2] and first["next"] == busy[1]
    rest = crm.get("/v1/calls", params={"status": "busy", "limit": 2,
                                        "after": first["next"]}).json()
    assert [c["id"] for c in rest["items"]] == busy[2:] and rest["next"] is None
    queued = crm.get("/v1/calls", params={"status": "queued", "limit": 10}).json()["items"]
    assert [c["id"] for c in queued] == [i for i in ids if i not in busy]
