"""The outbox's decisions, sans-I/O with a fake clock: when to try again, when to give
up, and what a webhook target may be."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from autocall.campaign.model import Campaign
from autocall.campaign.outbox import (
    Delivered,
    GiveUp,
    Policy,
    Retry,
    WebhookTarget,
    after_try,
    backoff,
)

T0 = datetime(2026, 12, 6, 6, 0, tzinfo=UTC)
POLICY = Policy()


def test_backoff_doubles_from_one_second_to_the_ten_minute_cap() -> None:
    top = [backoff(n, POLICY, rand=lambda: 1.0).total_seconds() for n in range(1, 14)]
    assert top[:6] == [1, 2, 4, 8, 16, 32]
    assert top[-1] == 600 and max(top) == 600
    assert all(a <= b for a, b in zip(top, top[1:], strict=False))


def test_jitter_keeps_each_wait_between_half_and_all_of_it() -> None:
    for n in (1, 5, 20):
        low = backoff(n, POLICY, rand=lambda: 0.0)
        high = backoff(n, POLICY, rand=lambda: 1.0)
        assert low * 2 == high
        mid = backoff(n, POLICY, rand=lambda: 0.5)
        assert low < mid < high


def test_2xx_is_delivered_anything_else_is_retried_later() -> None:
    assert after_try(created_at=T0, tries=1, status=204, error=None, now=T0,
                     policy=POLICY) == Delivered(T0)
    for status, error in ((500, None), (404, None), (None, "ConnectError: refused")):
        d = after_try(created_at=T0, tries=3, status=status, error=error, now=T0,
                      policy=POLICY, rand=lambda: 1.0)
        assert isinstance(d, Retry) and d.at == T0 + timedelta(seconds=4)
        assert (error or str(status)) in d.error


def test_410_gone_gives_up_at_once() -> None:
    d = after_try(created_at=T0, tries=1, status=410, error=None, now=T0, policy=POLICY)
    assert isinstance(d, GiveUp) and "gone" in d.reason


def test_a_receiver_down_for_hours_is_retried_until_the_event_is_a_day_old() -> None:
    """Drive the decisions with a fake clock: a receiver that never answers 2xx."""
    now, tries, waits = T0, 0, []
    while True:
        tries += 1
        d = after_try(created_at=T0, tries=tries, status=503, error=None, now=now,
                      policy=POLICY, rand=lambda: 0.5)
        if isinstance(d, GiveUp):
            break
        assert isinstance(d, Retry)
        waits.append(d.at - now)
        now = d.at
    assert now - T0 <= timedelta(hours=24)
    assert now - T0 > timedelta(hours=23, minutes=45)  # it kept trying for the whole day
    assert max(waits) <= timedelta(minutes=10)
    assert 190 < tries < 210  # capped waits: every 7.5 minutes for a day, after the ramp
    assert "201 tries over 24 h" in d.reason and "503" in d.reason


def test_a_receiver_back_after_an_hour_gets_the_event_within_the_cap() -> None:
    now, tries = T0, 0
    back = T0 + timedelta(hours=1)
    while True:
        tries += 1
        d = after_try(created_at=T0, tries=tries, status=200 if now >= back else 500,
                      error=None, now=now, policy=POLICY, rand=lambda: 1.0)
        if isinstance(d, Delivered):
            break
        assert isinstance(d, Retry)
        now = d.at
    assert back <= now <= back + timedelta(minutes=10)


def test_the_lease_must_outlast_a_post() -> None:
    with pytest.raises(ValueError, match="lease"):
        Policy(timeout=30.0, lease=timedelta(seconds=30))


def test_targets_are_validated_with_the_field_named() -> None:
    ok = WebhookTarget(url="https://crm.example.com/hooks", secret_env="CRM_SECRET",
                       events=("call.completed", "opt-out"))
    assert ok.wants("opt-out") and not ok.wants("call.ringing")
    assert WebhookTarget(url="http://127.0.0.1:9/x").wants("campaign.paused")
    bad = [{"url": "ftp://crm/x"}, {"url": "https://"}, {"url": "javascript:alert(1)"},
           {"url": "https://crm/x y"}, {"url": "https://crm/x", "secret_env": "whsec_abc="},
           {"url": "https://crm/x", "secret": "whsec_abc"},
           {"url": "https://crm/x", "events": ["call.exploded"]}]
    for data in bad:
        with pytest.raises(ValidationError):
            WebhookTarget.model_validate(data)
    with pytest.raises(ValidationError) as info:
        Campaign(name="c", tree="t.yaml", caller_ids=["+12025550100"],
                 webhooks=[{"url": "ftp://crm/x"}])
    assert info.value.errors()[0]["loc"] == ("webhooks", 0, "url")
