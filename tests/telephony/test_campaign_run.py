"""`autocall campaign run` with the default placer (from_settings) against virtual phones."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autocall.campaign.store import Store
from autocall.cli import app
from autocall.cli.demo import campaign_name, write_demo_files
from autocall.telephony.virtual import VirtualPhones

pytestmark = pytest.mark.peers

PHONES = 30800


@pytest.mark.parametrize("workers", ["1", "2"])
def test_campaign_run_dials_through_the_configured_trunk(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: str) -> None:
    """--workers 2: two processes, each its own UA on AUTOCALL_BIND_PORT + k (issue 20)."""
    now = dt.datetime.now(dt.UTC)
    name = campaign_name(now)
    campaign, cast = write_demo_files(tmp_path, 4, 4, now, name)
    ready, stop = threading.Event(), threading.Event()

    def phones() -> None:
        async def main() -> None:
            async with VirtualPhones({n: p.scripts for n, p in cast.items()}, port=PHONES):
                ready.set()
                while not stop.is_set():
                    await asyncio.sleep(0.05)

        asyncio.run(main())

    thread = threading.Thread(target=phones, daemon=True)
    thread.start()
    assert ready.wait(5)
    monkeypatch.setenv("AUTOCALL_SIP_HOST", "127.0.0.1")
    monkeypatch.setenv("AUTOCALL_SIP_PORT", str(PHONES))
    monkeypatch.setenv("AUTOCALL_BIND_PORT", str(PHONES + 1))
    monkeypatch.setenv("AUTOCALL_TTS_CACHE", str(tmp_path / "tts"))
    db = f"sqlite:///{tmp_path / 'run.db'}"
    try:
        result = CliRunner().invoke(app, ["campaign", "run", str(campaign), "--db", db,
                                           "--workers", workers])
    finally:
        stop.set()
        thread.join(5)
    assert result.exit_code == 0, result.output
    assert "4/4 contacts done" in result.output
    store = Store(db)
    try:
        attempts = store.attempts(name)
    finally:
        store.close()
    assert {a.number for a in attempts} == set(cast)
    assert all(a.outcome is not None and a.outcome.value == "completed" for a in attempts)
    assert sorted(a.digits for a in attempts) == ["1", "1", "1", "27"]
    assert len({a.node for a in attempts}) == int(workers)
