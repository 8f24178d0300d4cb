"""Property: whatever the callees do, the retry policy's invariants hold in the store."""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict
from pathlib import Path

import pytest
from conftest import us_number, write_campaign
from farend import ScriptedFarEnd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autocall.campaign.contacts import import_campaign
from autocall.campaign.dialer import run_campaign
from autocall.campaign.model import NEVER_RETRY, ContactState, Outcome, load_campaign
from autocall.campaign.store import Store

STEPS = ["answer:1", "busy", "noanswer", "decline", "invalid", "unreachable", "fail", "early"]
OUTCOME = {"answer:1": Outcome.COMPLETED, "busy": Outcome.BUSY, "noanswer": Outcome.NO_ANSWER,
           "decline": Outcome.DECLINED, "invalid": Outcome.INVALID,
           "unreachable": Outcome.UNREACHABLE, "fail": Outcome.FAILED,
           "early": Outcome.HUNG_UP_EARLY}
_runs = itertools.count()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("retry-property")


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scripts=st.lists(st.lists(st.sampled_from(STEPS), min_size=1, max_size=4),
                        min_size=1, max_size=5),
       max_attempts=st.integers(1, 3))
def test_retry_invariants(workdir: Path, scripts: list[list[str]], max_attempts: int) -> None:
    run = workdir / f"run{next(_runs)}"
    run.mkdir()
    delays = {k: 0 for k in ("busy", "no-answer", "failed", "unreachable", "hung-up-early")}
    campaign = load_campaign(write_campaign(
        run, len(scripts), retry={"max_attempts": max_attempts, "delays": delays}))
    store = Store(f"sqlite:///{run / 'db.sqlite'}")
    import_campaign(store, campaign)
    far = ScriptedFarEnd({us_number(i): s for i, s in enumerate(scripts)}, talk=0.001)
    asyncio.run(run_campaign(campaign.name, store, far, poll=0.02))

    rows = store.attempts(campaign.name)
    per_contact: dict[int, list[Outcome | None]] = defaultdict(list)
    for a in sorted(rows, key=lambda a: a.attempt_no):
        per_contact[a.contact_id].append(a.outcome)
    for i, c in enumerate(store.contacts(campaign.name)):
        got = per_contact[c.id]
        # What the policy says should have happened, from the script alone.
        expected: list[Outcome] = []
        for step in itertools.chain(scripts[i], itertools.repeat(scripts[i][-1])):
            expected.append(OUTCOME[step])
            if OUTCOME[step] in NEVER_RETRY or len(expected) == max_attempts:
                break
        assert got == expected, (scripts[i], got)
        assert c.state is ContactState.DONE and c.attempts == len(got)
        assert c.last_outcome is expected[-1]
    store.close()
