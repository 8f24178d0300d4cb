"""Calls outside campaigns (inbound, informer) in the store: one row per call, kept."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from autocall.campaign.store import Store
from autocall.telephony.record import CallRecord, CallStatus


def _record(call_id: str) -> CallRecord:
    return CallRecord(
        direction="inbound", call_id=call_id, number="alice",
        caller_id="sip:alice@127.0.0.1", source="127.0.0.1", tree="office",
        started_at=datetime(2026, 11, 22, 6, 0, tzinfo=UTC),
        answered_at=datetime(2026, 11, 22, 6, 0, 1, tzinfo=UTC),
        ended_at=datetime(2026, 11, 22, 6, 0, 31, tzinfo=UTC),
        status=CallStatus.COMPLETED, sip_code=200, q850=None, dialogue_outcome="transferred",
        digits="1", path=("welcome", "sales"), variables={"choice": "1"},
        recording=None, error=None,
    )


def test_a_call_record_survives_reopening_and_is_stored_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'calls.db'}"
    store = Store(url)
    assert store.add_call(_record("c1")) is True
    assert store.add_call(_record("c1")) is False  # a record written twice is stored once
    assert store.add_call(_record("c2")) is True
    store.close()
    store = Store(url)
    rows = store.calls("inbound")
    store.close()
    assert [r.call_id for r in rows] == ["c1", "c2"]
    first = rows[0]
    assert first.caller_id == "sip:alice@127.0.0.1"
    assert first.path == ["welcome", "sales"] and first.variables == {"choice": "1"}
    assert first.answered_at == datetime(2026, 11, 22, 6, 0, 1, tzinfo=UTC)
    assert first.billable == 30.0 and first.dialogue_outcome == "transferred"


def test_a_version_1_database_is_migrated_to_hold_calls(tmp_path: Path) -> None:
    from legacy_schema import make_legacy

    url = f"sqlite:///{tmp_path / 'old.db'}"
    make_legacy(url, 1, contacts_n=0)  # the schema as version 1 left it
    store = Store(url)
    assert store.add_call(_record("c9")) is True
    assert [r.call_id for r in store.calls()] == ["c9"]
    store.close()
