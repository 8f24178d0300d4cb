"""Pinning a campaign to a tree version over real HTTP (issue 17): a marketer moves a
campaign to a published version (`POST /v1/campaigns/{name}/tree`), audited; a draft is
409, an unknown campaign, tree or version 404, a bad body 422, designers and viewers
403; and a campaign pinned to a stored tree passes the start preflight. Real uvicorn,
real store (SQLite and PostgreSQL)."""

from __future__ import annotations

import httpx

from autocall.campaign.model import CampaignState
from autocall.web.accounts import Role, audit_lines
from tests.web.api_fixtures import TREE, Live, assert_problem, campaign_body, us_number
from tests.web.api_fixtures import live_server as live_server  # noqa: F401

BROKEN = TREE.replace("next: bye", "next: byee")
OTHER = TREE.replace("pause: 1.2", "pause: 0.5")


def _trees(live: Live) -> None:
    """held: version 1 published, 2 a draft with an error, 3 published."""
    designer = live.client(Role.DESIGNER)
    for text in (TREE, BROKEN, OTHER):
        assert designer.post("/v1/trees/held/versions", json={"yaml": text}).status_code == 201
    for number in (1, 3):
        assert designer.post(f"/v1/trees/held/versions/{number}/publish").status_code == 200


def test_a_marketer_moves_a_campaign_to_a_published_version(live: Live) -> None:
    _trees(live)
    marketer = live.client(Role.MARKETER, "mara")
    assert marketer.post("/v1/campaigns", json=campaign_body("spring")).status_code == 201
    assert marketer.get("/v1/campaigns/spring").json()["definition"]["tree"] == "hold"

    moved = marketer.post("/v1/campaigns/spring/tree", json={"tree": "held", "version": 1})
    assert moved.status_code == 200, moved.text
    assert moved.json() == {"name": "spring", "previous": "hold", "tree": "store:held@1"}
    assert marketer.get("/v1/campaigns/spring").json()["definition"]["tree"] == "store:held@1"
    assert live.store.tree_of("spring") == "store:held@1"
    again = marketer.post("/v1/campaigns/spring/tree", json={"tree": "held", "version": 3})
    assert again.json() == {"name": "spring", "previous": "store:held@1",
                            "tree": "store:held@3"}

    lines = [a for a in audit_lines(live.store.engine) if a.action == "campaign.tree"]
    assert [(a.actor, a.subject, a.detail) for a in lines] == [  # newest first
        ("token:mara", "spring", {"tree": "store:held@3", "previous": "store:held@1"}),
        ("token:mara", "spring", {"tree": "store:held@1", "previous": "hold"})]

    # the start preflight reads the stored tree (it said "give the store" before)
    started = marketer.post("/v1/campaigns/spring/start")
    assert started.status_code == 200, started.text
    assert live.store.state("spring")[0] is CampaignState.RUNNING
    # a running campaign may be moved too: its dialer follows (see the browser test)
    assert marketer.post("/v1/campaigns/spring/tree",
                         json={"tree": "held", "version": 1}).status_code == 200


def test_a_draft_unknown_names_and_bad_bodies_are_refused(live: Live) -> None:
    _trees(live)
    marketer = live.client(Role.MARKETER, "mara")
    assert marketer.post("/v1/campaigns", json=campaign_body("spring")).status_code == 201

    draft = assert_problem(marketer.post("/v1/campaigns/spring/tree",
                                         json={"tree": "held", "version": 2}), 409)
    assert "not published" in str(draft["detail"])
    for body, what in (({"tree": "held", "version": 9}, "no version 9"),
                       ({"tree": "nope", "version": 1}, "no version 1")):
        missing = assert_problem(marketer.post("/v1/campaigns/spring/tree", json=body), 404)
        assert what in str(missing["detail"]), missing
    ghost = assert_problem(marketer.post("/v1/campaigns/ghost/tree",
                                         json={"tree": "held", "version": 1}), 404)
    assert "ghost" in str(ghost["detail"])

    for body in ({}, {"tree": "held"}, {"version": 1}, {"tree": "held", "version": 0},
                 {"tree": "held", "version": "two"}, {"tree": "../etc/passwd", "version": 1},
                 {"tree": "held\x00", "version": 1}, {"tree": "held", "version": 1, "x": 1},
                 {"tree": "h" * 101, "version": 1}, {"tree": "held", "version": 10**12},
                 ["held", 1], "store:held@1"):
        bad = assert_problem(marketer.post("/v1/campaigns/spring/tree", json=body), 422)
        assert bad["errors"], body
    not_json = marketer.post("/v1/campaigns/spring/tree", content=b"tree=held&version=1",
                             headers={"content-type": "application/json"})
    assert_problem(not_json, 422)
    # nothing of it changed the campaign or reached the audit log
    assert live.store.tree_of("spring").endswith("hold.yaml")
    assert not [a for a in audit_lines(live.store.engine) if a.action == "campaign.tree"]


def test_only_marketers_and_admins_pick_a_version(live: Live) -> None:
    _trees(live)
    marketer = live.client(Role.MARKETER)
    assert marketer.post("/v1/campaigns", json=campaign_body("spring")).status_code == 201
    body = {"tree": "held", "version": 1}
    for role in (Role.DESIGNER, Role.VIEWER):
        refused = assert_problem(live.client(role).post("/v1/campaigns/spring/tree",
                                                        json=body), 403)
        assert role.value in str(refused["detail"])
    anonymous = httpx.post(f"{live.base}/v1/campaigns/spring/tree", json=body, timeout=10)
    assert anonymous.status_code == 401
    assert live.store.tree_of("spring").endswith("hold.yaml")
    assert live.client(Role.ADMIN).post("/v1/campaigns/spring/tree",
                                        json=body).status_code == 200
    assert live.store.tree_of("spring") == "store:held@1"


def test_a_version_that_needs_fields_the_contacts_lack_is_refused(live: Live) -> None:
    designer, marketer = live.client(Role.DESIGNER), live.client(Role.MARKETER)
    needs = TREE.replace("start: talk", "contact_fields: [first_name, due_date]\n"
                         "start: talk")
    for name, text in (("needy", needs), ("named", needs.replace(", due_date", ""))):
        assert designer.post(f"/v1/trees/{name}/versions", json={"yaml": text}).json()[
            "errors"] == 0
        assert designer.post(f"/v1/trees/{name}/versions/1/publish").status_code == 200
    assert marketer.post("/v1/campaigns", json=campaign_body("spring")).status_code == 201
    # no contacts yet: nothing to check against
    assert marketer.post("/v1/campaigns/spring/tree",
                         json={"tree": "needy", "version": 1}).status_code == 200
    csv = "phone,first_name\n" + "".join(f"{us_number(i)},Ann{i}\n" for i in range(3))
    assert marketer.post("/v1/campaigns/spring/contacts", content=csv,
                         headers={"content-type": "text/csv"}).status_code == 200
    refused = assert_problem(marketer.post("/v1/campaigns/spring/tree",
                                           json={"tree": "needy", "version": 1}), 422)
    assert "due_date" in str(refused["detail"]) and "phone, first_name" in str(
        refused["detail"])
    assert marketer.post("/v1/campaigns/spring/tree",
                         json={"tree": "named", "version": 1}).status_code == 200
    assert live.store.tree_of("spring") == "store:named@1"
