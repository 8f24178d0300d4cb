"""``/metrics`` for Prometheus, read from the store at each scrape.

The figures are the store's (all dialer nodes together), not this process's: a
collector runs the queries when Prometheus asks, so several web nodes report the same
truth. Rates are left to Prometheus (``rate(autocall_attempts_total[1m])``); the
``calls_per_second`` gauge is there for a glance without PromQL. Like every route but
``/healthz`` and the login page, it needs a login or a token.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import column, func, select, table

from autocall.campaign.db import reading
from autocall.campaign.store import Store, attempts, calls, campaigns
from autocall.web.accounts import Principal
from autocall.web.auth import principal

RATE_WINDOW = 60.0  # seconds over which the calls_per_second gauge counts attempts

# The outbox's own module owns the full table; a backlog count needs two columns.
_outbox = table("autocall_outbox", column("delivered_at"), column("given_up_at"))


class StoreCollector(Collector):
    """Campaign and call figures from the store, computed when scraped."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        now = datetime.now(UTC).replace(tzinfo=None)
        open_attempt = attempts.c.ended_at.is_(None)
        with reading(self.store.engine) as conn:
            states = conn.execute(select(campaigns.c.name, campaigns.c.state)).all()
            active = conn.execute(select(attempts.c.campaign, func.count())
                                  .where(open_attempt).group_by(attempts.c.campaign)).all()
            other_active = conn.execute(select(func.count()).select_from(calls)
                                        .where(calls.c.ended_at.is_(None))).scalar_one()
            totals = conn.execute(select(attempts.c.campaign, func.count())
                                  .group_by(attempts.c.campaign)).all()
            recent = conn.execute(
                select(attempts.c.campaign, func.count())
                .where(attempts.c.created_at >= now - timedelta(seconds=RATE_WINDOW))
                .group_by(attempts.c.campaign)).all()
            outcomes = conn.execute(
                select(attempts.c.campaign, attempts.c.outcome, func.count())
                .where(attempts.c.outcome.is_not(None))
                .group_by(attempts.c.campaign, attempts.c.outcome)).all()
            answers = conn.execute(
                select(attempts.c.campaign, attempts.c.outcome, func.count())
                .where(attempts.c.answered_at.is_not(None), attempts.c.outcome.is_not(None))
                .group_by(attempts.c.campaign, attempts.c.outcome)).all()
            backlog = conn.execute(select(func.count()).select_from(_outbox).where(
                _outbox.c.delivered_at.is_(None), _outbox.c.given_up_at.is_(None))
            ).scalar_one()

        state = GaugeMetricFamily("autocall_campaign_state",
                                  "1 for the state each campaign is in",
                                  labels=["campaign", "state"])
        for name, value in states:
            state.add_metric([name, value], 1)
        yield state
        gauge = GaugeMetricFamily("autocall_calls_active",
                                  "Calls placed and not ended (campaign \"\": calls outside "
                                  "campaigns)", labels=["campaign"])
        names = [name for name, _ in states]
        by_name: dict[str, int] = {n: c for n, c in active}
        for name in names:  # 0, not absent, for a campaign with no call up
            gauge.add_metric([name], by_name.get(name, 0))
        gauge.add_metric([""], other_active)
        yield gauge
        counter = CounterMetricFamily("autocall_attempts", "Attempts made (calls dialed)",
                                      labels=["campaign"])
        by_name = {n: c for n, c in totals}
        for name in names:
            counter.add_metric([name], by_name.get(name, 0))
        yield counter
        rate = GaugeMetricFamily("autocall_calls_per_second",
                                 f"Attempts made per second over the last {RATE_WINDOW:g} s",
                                 labels=["campaign"])
        by_name = {n: c for n, c in recent}
        for name in names:
            rate.add_metric([name], by_name.get(name, 0) / RATE_WINDOW)
        yield rate
        ended = CounterMetricFamily("autocall_attempt_outcomes",
                                    "Finished attempts by outcome",
                                    labels=["campaign", "outcome"])
        for name, outcome, count in outcomes:
            ended.add_metric([name, outcome], count)
        yield ended
        answered = CounterMetricFamily("autocall_answers", "Answered attempts by outcome",
                                       labels=["campaign", "outcome"])
        for name, outcome, count in answers:
            answered.add_metric([name, outcome], count)
        yield answered
        yield GaugeMetricFamily("autocall_webhook_backlog",
                                "Webhook events not delivered yet (and not given up)",
                                value=backlog)


def registry_for(store: Store) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store))
    return registry


router = APIRouter(include_in_schema=False)


@router.get("/metrics")
async def metrics(request: Request, who: Annotated[Principal, Depends(principal)]) -> Response:
    registry: CollectorRegistry = request.app.state.metrics
    body = await asyncio.to_thread(generate_latest, registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)

