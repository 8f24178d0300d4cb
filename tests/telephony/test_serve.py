"""`autocall serve` as a process, called by SIPp: path by keys, 503 past the limit,
403 off the allow-list, graceful shutdown, and one call record per call."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from autocall.campaign.store import Store
from autocall.dialogue.schema import Tree
from autocall.telephony.inbound import AllowList, GuardedCall, TransferRefused
from tests.peers import SCENARIOS, Sipp
from tests.telephony.serving import hold_or_refused, records, serve

pytestmark = pytest.mark.peers

def test_caller_keys_take_the_path_and_sigterm_lets_the_call_finish(tmp_path: Path) -> None:
    with serve(tmp_path, 30400) as proc:
        caller = Sipp(SCENARIOS / "uac_call.xml", port=30401, media_port=30402,
                      remote="127.0.0.1:30400", service="frontdesk", timeout=20)
        with caller:
            time.sleep(0.6)  # the call is up: a graceful stop must let it finish
            proc.send_signal(signal.SIGTERM)
            assert caller.wait(15) == 0, caller.errors()
        assert proc.wait(15) == 0
    log = (tmp_path / "serve.log").read_text()
    assert "served 1 call(s)" in log
    (record,) = records(tmp_path)
    assert record["path"] == ["welcome", "sales", "confirmed"]
    assert record["digits"] == "79"  # 7 as RFC 4733, 9 as SIP INFO
    assert record["status"] == "completed" and record["answered_at"]
    assert record["number"] == "sipp"
    store = Store(f"sqlite:///{tmp_path / 'autocall.db'}")  # serve's default store, in its cwd
    (stored,) = store.calls("inbound")
    store.close()
    assert stored.call_id == record["call_id"] and stored.path == record["path"]
    assert stored.digits == "79" and stored.status == "completed"
    assert stored.answered_at is not None and stored.billable == record["billable"]


def test_calls_past_the_limit_get_503(tmp_path: Path) -> None:
    with serve(tmp_path, 30410, "--max-calls", "3"):
        caller = Sipp(hold_or_refused(tmp_path, 2500), port=30411, media_port=30412,
                      remote="127.0.0.1:30410", service="frontdesk", calls=8, rate=40,
                      timeout=25)
        with caller:
            assert caller.wait(20) == 0, caller.errors()
        time.sleep(0.5)
    rows = records(tmp_path)
    assert len(rows) == 8
    answered = [r for r in rows if r["answered_at"]]
    refused = [r for r in rows if r["sip_code"] == 503]
    assert len(answered) == 3 and len(refused) == 5
    assert all("lines busy" in r["error"] for r in refused)


def test_sources_off_the_allow_list_get_403(tmp_path: Path) -> None:
    with serve(tmp_path, 30420, "--allow", "10.0.0.0/8"):
        caller = Sipp(hold_or_refused(tmp_path, 100), port=30421, media_port=30422,
                      remote="127.0.0.1:30420", service="frontdesk", timeout=15)
        with caller:
            assert caller.wait(10) == 0, caller.errors()
        time.sleep(0.3)
    (row,) = records(tmp_path)
    assert row["sip_code"] == 403 and row["answered_at"] is None
    assert "allow-list" in row["error"]


def test_allow_list_parses_networks_and_refuses_junk() -> None:
    allow = AllowList(["10.0.0.0/8", "192.0.2.7"])
    assert allow.permits("10.1.2.3") and allow.permits("192.0.2.7")
    assert not allow.permits("192.0.2.8") and not allow.permits(None)
    assert AllowList().permits("203.0.113.5")
    with pytest.raises(ValueError, match="not an address"):
        AllowList(["10.0.0.0/33"])


async def test_transfer_guard_refuses_targets_outside_the_tree() -> None:
    class Line:
        transferred: list[str] = []

        async def transfer(self, target: str, timeout: float = 30.0) -> int:
            self.transferred.append(target)
            return 200

    tree = Tree.model_validate({"start": "a", "transfer_targets": ["101", "#102#"],
                                "nodes": {"a": {"hangup": "done"}}})
    from autocall.dialogue.schema import allowed_transfer_targets

    line = Line()
    guarded = GuardedCall(line, allowed_transfer_targets(tree))
    assert await guarded.transfer("102") == 200
    with pytest.raises(TransferRefused):
        await guarded.transfer("+19005550123")
    assert line.transferred == ["102"] and guarded.refused == ["+19005550123"]


@pytest.mark.timeout(150)
def test_200_concurrent_calls_are_served_and_the_rest_get_503(tmp_path: Path) -> None:
    with serve(tmp_path, 30430, "--max-calls", "200"):
        caller = Sipp(hold_or_refused(tmp_path, 6000), port=30431, media_port=30432,
                      remote="127.0.0.1:30430", service="frontdesk", calls=230, rate=100,
                      timeout=100, extra=["-l", "230"])
        with caller:
            assert caller.wait(110) == 0, caller.errors()
        time.sleep(1.0)
    rows = records(tmp_path)
    assert len(rows) == 230
    answered = [r for r in rows if r["answered_at"]]
    assert len(answered) == 200 and all(r["error"] is None for r in answered)
    assert all(r["path"] == ["welcome"] and r["outcome"] == "caller-hangup" for r in answered)
    assert sum(1 for r in rows if r["sip_code"] == 503) == 30
