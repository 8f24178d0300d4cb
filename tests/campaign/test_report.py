"""Reports from a real campaign run: counts, rates, handle time, menu, CSV/JSON, charts, CDR."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from conftest import us_number, write_campaign

from autocall.campaign import report as rep
from autocall.campaign.contacts import import_campaign
from autocall.campaign.dialer import run_campaign
from autocall.campaign.model import load_campaign
from autocall.campaign.store import Store


async def test_report_after_run(tmp_path: Path, sqlite_url: str, farend) -> None:
    campaign = load_campaign(write_campaign(tmp_path, 6))
    store = Store(sqlite_url)
    import_campaign(store, campaign)
    far = farend({us_number(0): ["busy", "answer:2"], us_number(1): ["decline"],
                  us_number(2): ["answer:1"], us_number(3): ["answer:1"],
                  us_number(4): ["noanswer", "noanswer", "noanswer"],
                  us_number(5): ["answer:2"]}, talk=0.05)
    await run_campaign(campaign.name, store, far, poll=0.02)
    r = rep.campaign_report(store, campaign.name)
    assert (r.contacts, r.attempts, r.dialed, r.answered) == (6, 9, 9, 4)
    assert r.answer_rate == 4 / 9
    assert r.completion_rate == 4 / 6
    assert r.by_outcome == {"no-answer": 3, "completed": 4, "busy": 1, "declined": 1}
    assert r.contacts_by_outcome["completed"] == 4
    assert r.digits == {"1": 2, "2": 2}
    assert r.menu_choices["choice-1"] == 2 and r.menu_choices["greeting"] == 4
    assert r.average_handle_time is not None and 0.0 < r.average_handle_time < 1.0
    assert sum(r.per_hour.values()) == 9

    data = json.loads(rep.to_json(r))
    assert data["answered"] == 4
    rows = list(csv.reader(rep.to_csv(r).splitlines()))
    assert ["answer rate", "44.4%"] in rows

    cdr = tmp_path / "cdr.csv"
    assert rep.write_cdr(store, campaign.name, cdr) == 9
    with open(cdr, newline="") as fh:
        records = list(csv.DictReader(fh))
    assert tuple(records[0]) == rep.CDR_FIELDS
    declined = [x for x in records if x["number"] == us_number(1)]
    assert declined[0]["sip_code"] == "603" and declined[0]["outcome"] == "declined"
    answered = [x for x in records if x["answer"]]
    assert all(float(x["billable"]) > 0 and x["path"].startswith("greeting") for x in answered)

    charts = rep.write_charts(r, tmp_path / "charts")
    assert [p.name for p in charts] == ["test-campaign-outcomes.png", "test-campaign-per-hour.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in charts)
