"""/v1/dnc over real HTTP, and the proof that dialers honour it: a campaign made,
filled and started over the API, one of its numbers put on the list over the API, then
the real dialer with the real SIP placer against a SIPp callee: that number is closed
as dnc and never dialed, the other is called once."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autocall.campaign.dialer import CallRequest, run_campaign
from autocall.campaign.model import CampaignState, Outcome
from autocall.campaign.placer import SipPlacer
from autocall.campaign.store import Store
from autocall.cli import app
from autocall.telephony.call import UserAgent
from autocall.web.accounts import Role
from tests.campaign.farend import ScriptedFarEnd
from tests.peers import SCENARIOS, Sipp
from tests.web.api_fixtures import (  # noqa: F401
    Live,
    assert_problem,
    campaign_body,
    live_server,
    us_number,
)


def test_add_check_remove_upload_list(live: Live) -> None:
    crm = live.client(Role.MARKETER, "crm")
    added = crm.post("/v1/dnc", json={"number": "(212) 200-0001"})
    assert added.status_code == 201 and added.json()["number"] == "+12122000001"
    assert added.json()["listed"] and added.json()["added_by"] == "token:crm"
    assert crm.post("/v1/dnc", json={"number": "+1 212 200 0001"}).status_code == 201
    assert crm.get("/v1/dnc/+12122000001").json()["listed"] is True
    assert crm.get("/v1/dnc/2122000001").json()["listed"] is True  # national, region US
    assert crm.get("/v1/dnc/+12122000002").json()["listed"] is False
    gb = crm.post("/v1/dnc", json={"number": "020 7946 0018", "region": "GB"}).json()
    assert gb["number"] == "+442079460018"
    assert ["body", "number"] in [e["loc"] for e in assert_problem(
        crm.post("/v1/dnc", json={"number": "12"}), 422)["errors"]]  # type: ignore[union-attr]
    assert_problem(crm.post("/v1/dnc", json={"number": "+12122000001", "region": "ZZ"}), 422)
    assert_problem(crm.get("/v1/dnc/not-a-number"), 422)

    listing = ("# opt-outs from the CRM\nphone,name\n+1 212 200 0003,A\n"
               "0044 20 7946 0019,B\nnonsense,C\n+12122000001,again\n")
    up = crm.post("/v1/dnc/upload", files={"file": ("optouts.csv", listing.encode())},
                  headers={"Idempotency-Key": "dnc-1"})
    assert up.status_code == 200, up.text
    got = up.json()
    assert (got["numbers"], got["added"], got["already"]) == (3, 2, 1)
    assert [(r["row"], r["column"]) for r in got["rejected"]] == [(5, 1)]
    replay = crm.post("/v1/dnc/upload", files={"file": ("optouts.csv", listing.encode())},
                      headers={"Idempotency-Key": "dnc-1"})
    assert replay.json() == got and replay.headers["idempotent-replayed"] == "true"
    plain = crm.post("/v1/dnc/upload", content=b"2122000005\n",
                     headers={"content-type": "text/plain"})
    assert plain.json()["added"] == 1

    page = crm.get("/v1/dnc", params={"limit": 3}).json()
    assert page["total"] == 5 and len(page["items"]) == 3
    rest = crm.get("/v1/dnc", params={"limit": 3, "after": page["next"]}).json()
    numbers = [e["number"] for e in page["items"] + rest["items"]]
    assert numbers == sorted(numbers) and len(numbers) == 5

    assert crm.delete("/v1/dnc/+12122000001").json()["listed"] is False
    assert crm.get("/v1/dnc/+12122000001").json()["listed"] is False
    assert_problem(crm.delete("/v1/dnc/+12122000001"), 404)
    viewer = live.client(Role.VIEWER)
    assert viewer.get("/v1/dnc/+12122000003").json()["listed"] is True
    assert_problem(viewer.post("/v1/dnc", json={"number": "+12122000009"}), 403)
    assert_problem(viewer.delete("/v1/dnc/+12122000003"), 403)


def test_explain_and_status_in_the_cli_see_the_store_list(live: Live) -> None:
    crm = live.client(Role.MARKETER)
    crm.post("/v1/campaigns", json=campaign_body())
    crm.post("/v1/campaigns/spring/contacts", content=f"phone\n{us_number(0)}\n".encode(),
             headers={"content-type": "text/csv"})
    crm.post("/v1/campaigns/spring/start")
    runner = CliRunner()
    explain = ["campaign", "explain", "spring", us_number(0), "--db", live.url, "--json"]
    before = runner.invoke(app, explain)
    assert before.exit_code == 0 and json.loads(before.stdout)["dial_now"] is True
    crm.post("/v1/dnc", json={"number": us_number(0)})
    after = runner.invoke(app, explain)
    assert after.exit_code == 1, after.output
    assert any("do-not-call" in r for r in json.loads(after.stdout)["reasons"])
    status = runner.invoke(app, ["campaign", "status", "spring", "--db", live.url, "--json"])
    got = json.loads(status.stdout)
    assert (got["due"], got["due_but_dnc"]) == (0, 1)


async def test_an_opt_out_in_an_api_campaign_joins_the_store_list(live: Live) -> None:
    """An API campaign has no DNC file: the callee's opt-out must still stop every
    campaign from calling them (the real dialer; the far end scripted)."""
    crm = live.client(Role.MARKETER)
    for name in ("spring", "autumn"):
        crm.post("/v1/campaigns", json=campaign_body(name=name))
        crm.post(f"/v1/campaigns/{name}/contacts", content=f"phone\n{us_number(3)}\n".encode(),
                 headers={"content-type": "text/csv"})
        crm.post(f"/v1/campaigns/{name}/start")
    store = Store(live.url)
    far = ScriptedFarEnd({us_number(3): ["optout"]})
    await asyncio.wait_for(run_campaign("spring", store, far, poll=0.05), 30)
    listed = crm.get(f"/v1/dnc/{us_number(3)}").json()
    assert listed["listed"] and listed["source"] == "opt-out in spring"
    await asyncio.wait_for(run_campaign("autumn", store, far, poll=0.05), 30)
    assert [r.campaign for r in far.placed] == ["spring"]  # autumn never called them
    closed = store.contact_by_number("autumn", us_number(3))
    assert closed is not None and closed.last_outcome is Outcome.DNC
    store.close()


@pytest.mark.peers
async def test_the_dialer_never_dials_a_number_put_on_the_list(live: Live,
                                                                tmp_path: Path) -> None:
    crm = live.client(Role.MARKETER)
    assert crm.post("/v1/campaigns", json=campaign_body()).status_code == 201
    rows = f"phone\n{us_number(0)}\n{us_number(1)}\n"
    assert crm.post("/v1/campaigns/spring/contacts", content=rows.encode(),
                    headers={"content-type": "text/csv"}).json()["added"] == 2
    assert crm.post("/v1/dnc", json={"number": us_number(0)}).status_code == 201
    assert crm.post("/v1/campaigns/spring/start").json()["state"] == "running"

    callee = Sipp(SCENARIOS / "uas_answer.xml", port=18210, media_port=18212, calls=1,
                  timeout=30, cwd=tmp_path)
    callee.start()
    store = Store(live.url)  # the dialer's own store, as in another process
    ua = await UserAgent.start(bind_host="127.0.0.1", bind_port=18250)
    try:
        def target(request: CallRequest) -> str:
            return "sip:sipp@127.0.0.1:18210"

        placer = SipPlacer(ua, target=target, tts_cache_dir=tmp_path / "tts",
                           recordings_dir=tmp_path / "rec")
        async with asyncio.timeout(60):  # a dial to the listed number would hang here
            final = await run_campaign("spring", store, placer, poll=0.05)
    finally:
        await ua.close()
        try:
            rc, errors = callee.wait(15), callee.errors()
        finally:
            callee.stop()
    assert rc == 0, errors
    assert final.state is CampaignState.COMPLETED
    attempts = store.attempts("spring")
    assert [a.number for a in attempts] == [us_number(1)]  # one INVITE, to the other number
    listed = store.contact_by_number("spring", us_number(0))
    assert listed is not None and listed.last_outcome is Outcome.DNC and listed.attempts == 0
    called = store.contact_by_number("spring", us_number(1))
    assert called is not None and called.last_outcome is Outcome.COMPLETED
    store.close()
