"""/v1/campaigns over real HTTP on SQLite and PostgreSQL: create (validated by the
campaign YAML's model, errors with their loc), roles, steering with audit lines,
explain, report (JSON, CSV, PNG), attempts by page, and an OpenAPI that lists it all."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

from sqlalchemy import select

from autocall.campaign.model import CampaignState, Dial, Outcome
from autocall.telephony.record import CallRecord, CallStatus
from autocall.web.accounts import Role, audit_log
from tests.web.api_fixtures import (  # noqa: F401
    Live,
    assert_problem,
    campaign_body,
    live_server,
    us_number,
)


def _errors(problem: dict[str, object]) -> list[list[object]]:
    errors = problem["errors"]
    assert isinstance(errors, list)
    return [e["loc"] for e in errors]


def test_create_validates_with_the_campaign_model(live: Live) -> None:
    crm = live.client(Role.MARKETER)
    bad = crm.post("/v1/campaigns", json=campaign_body(
        channels=0, window={"start": "07:00", "end": "22:00"}, caler_ids=["+1"]))
    locs = _errors(assert_problem(bad, 422))
    assert ["body", "channels"] in locs
    assert ["body", "window"] in locs  # outside the legal hours, said at the window
    assert ["body", "caler_ids"] in locs  # an unknown field (a typo) is refused
    assert ["body", "name"] in _errors(assert_problem(
        crm.post("/v1/campaigns", json=campaign_body(name="../x")), 422))
    assert ["body", "tree"] in _errors(assert_problem(
        crm.post("/v1/campaigns", json=campaign_body(tree="/etc/passwd")), 422))
    assert ["body", "contacts"] in _errors(assert_problem(
        crm.post("/v1/campaigns", json=campaign_body(contacts=["/etc/passwd"])), 422))
    assert ["body", "dnc"] in _errors(assert_problem(
        crm.post("/v1/campaigns", json=campaign_body(dnc=["/tmp/x"])), 422))
    (live.prompts / "broken.yaml").write_text("name: broken\nstart: nowhere\nnodes: {}\n")
    assert ["body", "tree"] in _errors(assert_problem(
        crm.post("/v1/campaigns", json=campaign_body(tree="broken")), 422))
    assert crm.get("/v1/campaigns").json()["items"] == []

    made = crm.post("/v1/campaigns", json=campaign_body(), headers={"Idempotency-Key": "c-1"})
    assert made.status_code == 201, made.text
    assert made.json()["state"] == "draft" and made.json()["definition"]["tree"] == "hold"
    again = crm.post("/v1/campaigns", json=campaign_body(), headers={"Idempotency-Key": "c-1"})
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert ["body", "name"] in _errors(assert_problem(
        crm.post("/v1/campaigns", json=campaign_body()), 409))
    one = crm.get("/v1/campaigns/spring").json()
    assert one["summary"]["total"] == 0 and one["state"] == "draft"
    assert [c["name"] for c in crm.get("/v1/campaigns").json()["items"]] == ["spring"]
    assert_problem(crm.get("/v1/campaigns/nope"), 404)


def test_roles(live: Live) -> None:
    admin = live.client(Role.ADMIN)
    assert admin.post("/v1/campaigns", json=campaign_body()).status_code == 201
    nobody, viewer, designer = (live.client(None), live.client(Role.VIEWER),
                                live.client(Role.DESIGNER))
    assert_problem(nobody.get("/v1/campaigns"), 401)
    bad_token = live.client(None)
    bad_token.headers["Authorization"] = "Bearer ac_not-a-token"
    assert_problem(bad_token.get("/v1/campaigns"), 401)
    assert_problem(viewer.post("/v1/campaigns/spring/start"), 403)
    assert_problem(viewer.post("/v1/campaigns", json=campaign_body(name="v")), 403)
    assert viewer.get("/v1/campaigns/spring").status_code == 200
    assert viewer.get("/v1/campaigns/spring/contacts").status_code == 200
    # a designer reads state and report, never contacts, attempts, numbers or recordings
    assert designer.get("/v1/campaigns/spring").status_code == 200
    assert designer.get("/v1/campaigns/spring/report").status_code == 200
    for path in ("/v1/campaigns/spring/contacts", "/v1/campaigns/spring/attempts",
                 f"/v1/campaigns/spring/explain/{us_number(1)}", "/v1/recordings",
                 "/v1/dnc", "/v1/calls"):
        assert_problem(designer.get(path), 403)
    assert_problem(designer.post("/v1/campaigns/spring/contacts", content=b"phone\n",
                                 headers={"content-type": "text/csv"}), 403)


def test_steering_matches_the_cli_and_is_audited(live: Live) -> None:
    crm = live.client(Role.MARKETER, "crm")
    crm.post("/v1/campaigns", json=campaign_body())
    assert_problem(crm.post("/v1/campaigns/spring/pause"), 409)  # a draft does not pause
    started = crm.post("/v1/campaigns/spring/start")
    assert started.json() == {"name": "spring", "previous": "draft", "state": "running"}
    assert live.store.state("spring")[0] is CampaignState.RUNNING
    assert crm.post("/v1/campaigns/spring/pause").json()["state"] == "paused"
    assert crm.post("/v1/campaigns/spring/resume").json()["state"] == "running"
    assert crm.post("/v1/campaigns/spring/stop").json()["state"] == "stopped"
    problem = assert_problem(crm.post("/v1/campaigns/spring/resume"), 409)
    assert "stopped" in str(problem["detail"])
    assert_problem(crm.post("/v1/campaigns/nope/start"), 404)
    later = campaign_body(name="later", start_at="2099-01-01T09:00:00Z")
    assert crm.post("/v1/campaigns", json=later).status_code == 201
    assert crm.post("/v1/campaigns/later/start").json()["state"] == "scheduled"
    with live.store.engine.connect() as conn:
        lines = conn.execute(select(audit_log.c.actor, audit_log.c.action, audit_log.c.subject)
                             .order_by(audit_log.c.id)).all()
    assert [tuple(r) for r in lines] == [
        ("token:crm", "campaign.create", "spring"), ("token:crm", "campaign.start", "spring"),
        ("token:crm", "campaign.pause", "spring"), ("token:crm", "campaign.resume", "spring"),
        ("token:crm", "campaign.stop", "spring"), ("token:crm", "campaign.create", "later"),
        ("token:crm", "campaign.start", "later")]


def _dial_some(live: Live, n: int) -> None:
    """The dialer's own store calls: claim every contact and finish the attempts."""
    now = datetime.now(UTC)
    claims = live.store.claim("spring", "node-a", now, n, lambda c: Dial(c.id, "+12025550100"))
    for i, claim in enumerate(claims):
        status = CallStatus.COMPLETED if i % 2 == 0 else CallStatus.BUSY
        record = CallRecord(status, 200 if i % 2 == 0 else 486, started_at=now,
                            answered_at=now if i % 2 == 0 else None, ended_at=now,
                            digits="1" if i % 2 == 0 else "", path=("greeting", "menu"),
                            outcome=(Outcome.COMPLETED if i % 2 == 0 else Outcome.BUSY).value)
        live.store.finish(claim.attempt_id, record, None)


def test_explain_report_and_attempts(live: Live) -> None:
    crm = live.client(Role.MARKETER)
    crm.post("/v1/campaigns", json=campaign_body())
    rows = "phone,first_name\n" + "".join(f"{us_number(i)},N{i}\n" for i in range(5))
    assert crm.post("/v1/campaigns/spring/contacts", content=rows.encode(),
                    headers={"content-type": "text/csv"}).json()["added"] == 5
    why = crm.get(f"/v1/campaigns/spring/explain/{us_number(0)}").json()
    assert why["dial_now"] is False and any("draft" in r for r in why["reasons"])
    unknown = crm.get("/v1/campaigns/spring/explain/+12125550199").json()
    assert unknown["dial_now"] is False and "not a contact" in unknown["reasons"][0]
    crm.post("/v1/campaigns/spring/start")
    assert crm.get(f"/v1/campaigns/spring/explain/{us_number(0)}").json()["dial_now"] is True
    crm.post("/v1/dnc", json={"number": us_number(0)})
    listed = crm.get(f"/v1/campaigns/spring/explain/{us_number(0)}").json()
    assert listed["dial_now"] is False and any("do-not-call" in r for r in listed["reasons"])

    _dial_some(live, 5)  # contact 0 is closed as dnc by the claim; 4 are dialed
    report = crm.get("/v1/campaigns/spring/report").json()
    assert report["attempts"] == 4 and report["answered"] == 2
    assert report["contacts_by_outcome"]["dnc"] == 1
    table = dict(csv.reader(io.StringIO(crm.get("/v1/campaigns/spring/report",
                                                params={"format": "csv"}).text)))
    assert table["attempts"] == "4" and table["answered"] == "2"
    assert_problem(crm.get("/v1/campaigns/spring/report", params={"format": "xml"}), 422)
    for kind in ("outcomes", "per-hour"):
        png = crm.get(f"/v1/campaigns/spring/report/charts/{kind}.png")
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        assert png.content.startswith(b"\x89PNG\r\n\x1a\n") and len(png.content) > 5000
    assert_problem(crm.get("/v1/campaigns/spring/report/charts/..%2f..%2fetc.png"), 404)

    first = crm.get("/v1/campaigns/spring/attempts", params={"limit": 3}).json()
    assert len(first["items"]) == 3 and first["next"] == first["items"][-1]["id"]
    rest = crm.get("/v1/campaigns/spring/attempts",
                   params={"limit": 3, "after": first["next"]}).json()
    assert len(rest["items"]) == 1 and rest["next"] is None
    ids = [a["id"] for a in first["items"] + rest["items"]]
    assert ids == sorted(ids) and len(set(ids)) == 4
    assert {a["status"] for a in first["items"] + rest["items"]} == {"completed", "busy"}
    assert_problem(crm.get("/v1/campaigns/spring/attempts", params={"limit": 0}), 422)
    assert_problem(crm.get("/v1/campaigns/spring/attempts", params={"after": "x"}), 422)


def test_openapi_lists_every_route(live: Live) -> None:
    assert live.client(None).get("/openapi.json").status_code == 401  # behind a login
    spec = live.client(Role.VIEWER).get("/openapi.json").json()
    routes = {(method.upper(), path) for path, item in spec["paths"].items() for method in item}
    expected = {
        ("POST", "/v1/campaigns"), ("GET", "/v1/campaigns"), ("GET", "/v1/campaigns/{name}"),
        ("POST", "/v1/campaigns/{name}/start"), ("POST", "/v1/campaigns/{name}/pause"),
        ("POST", "/v1/campaigns/{name}/resume"), ("POST", "/v1/campaigns/{name}/stop"),
        ("GET", "/v1/campaigns/{name}/explain/{number}"),
        ("GET", "/v1/campaigns/{name}/report"),
        ("GET", "/v1/campaigns/{name}/report/charts/{kind}.png"),
        ("GET", "/v1/campaigns/{name}/attempts"),
        ("POST", "/v1/campaigns/{name}/contacts"), ("GET", "/v1/campaigns/{name}/contacts"),
        ("POST", "/v1/dnc"), ("GET", "/v1/dnc"), ("POST", "/v1/dnc/upload"),
        ("GET", "/v1/dnc/{number}"), ("DELETE", "/v1/dnc/{number}"),
        ("GET", "/v1/recordings"), ("GET", "/v1/recordings/{rid}"),
        ("GET", "/v1/recordings/{rid}/audio"),
        ("POST", "/v1/calls"), ("GET", "/v1/calls"), ("GET", "/v1/calls/{call_id}"),
    }
    assert expected <= routes, expected - routes
    schemas = spec["components"]["schemas"]
    assert {"CallCreate", "Campaign", "ImportOut", "AttemptPage", "DncEntry"} <= set(schemas)
