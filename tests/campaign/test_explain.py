"""`explain`: why a contact is or is not being dialed, from its row and a `now`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from autocall.campaign.dialer import explain
from autocall.campaign.model import (
    Campaign,
    CampaignState,
    Contact,
    ContactState,
    Outcome,
)

CAMPAIGN = Campaign(name="c", tree="t.yaml", caller_ids=["+12025550100"])
TUESDAY_NOON_NY = datetime(2026, 6, 2, 16, 0, tzinfo=UTC)


def contact(**kw: object) -> Contact:
    base: dict[str, object] = dict(
        id=1, campaign="c", number="+12125550187", timezones=("America/New_York",), fields={},
        state=ContactState.PENDING, attempts=0, next_at=None, last_outcome=None)
    base.update(kw)
    return Contact(**base)  # type: ignore[arg-type]


def test_due_contact_is_dialed() -> None:
    ok, lines = explain(CAMPAIGN, CampaignState.RUNNING, contact(), TUESDAY_NOON_NY, set())
    assert ok and "due now" in lines[-1]


def test_reasons_not_to_dial() -> None:
    night = TUESDAY_NOON_NY + timedelta(hours=10)  # 22:00 in New York
    ok, lines = explain(CAMPAIGN, CampaignState.RUNNING, contact(), night, set())
    assert not ok and "calling window closed" in lines[-1] and "22:00" in lines[-1]

    ok, lines = explain(CAMPAIGN, CampaignState.PAUSED, contact(), TUESDAY_NOON_NY, set())
    assert not ok and any("paused" in x for x in lines)

    ok, lines = explain(CAMPAIGN, CampaignState.RUNNING, contact(), TUESDAY_NOON_NY,
                        {"+12125550187"})
    assert not ok and "do-not-call" in lines[-1]

    later = contact(attempts=1, last_outcome=Outcome.BUSY,
                    next_at=TUESDAY_NOON_NY + timedelta(minutes=10), wait_reason="retry after busy")
    ok, lines = explain(CAMPAIGN, CampaignState.RUNNING, later, TUESDAY_NOON_NY, set())
    assert not ok and any("retry after busy" in x for x in lines)

    done = contact(state=ContactState.DONE, attempts=1, last_outcome=Outcome.DECLINED)
    ok, lines = explain(CAMPAIGN, CampaignState.RUNNING, done, TUESDAY_NOON_NY, set())
    assert not ok and "declined (never retried)" in lines[-1]

    ok, lines = explain(CAMPAIGN, CampaignState.RUNNING, None, TUESDAY_NOON_NY, set())
    assert not ok and "not a contact" in lines[0]
