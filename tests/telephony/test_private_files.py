"""Issue 12 item 5: secrets stay hidden and personal data is private on disk.

The store URL is printed with its password masked (real PostgreSQL, real SIPp callee);
the SQLite store with its WAL files, voicemail WAVs with their sidecars and the folders
made for them are created 0600/0700 even under the usual umask 022.
Ports: 44100-44119.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from autocall.campaign.store import Store
from autocall.cli import app
from autocall.config import hide_password, shown_url
from autocall.dialogue.schema import Tree
from autocall.media.clock import MediaEngine
from autocall.media.session import MediaSession
from autocall.telephony.record import CallRecord, CallStatus
from autocall.telephony.runner import AudioCache, CallRunner
from tests.peers import SCENARIOS, Sipp
from tests.telephony.legs import MediaLeg

SECRET = "hunter2-Secret"


@pytest.fixture(autouse=True)
def _umask_022() -> Iterator[None]:
    """The common default: without our care every file would be 0644, folders 0755."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _missing_db(postgres_url: str) -> str:
    """A URL with a password on the real server naming a database that does not exist."""
    base, _, _ = postgres_url.rpartition("/")
    scheme, _, rest = base.partition("://")
    user, _, host = rest.rpartition("@")
    user = user.split(":")[0] or "postgres"
    return f"{scheme}://{user}:{SECRET}@{host}/h5_no_such_db"


def test_shown_url_masks_the_password() -> None:
    url = f"postgresql+psycopg://dialer:{SECRET}@db.example:5432/autocall"
    assert shown_url(url) == "postgresql+psycopg://dialer:***@db.example:5432/autocall"
    assert shown_url("sqlite:///autocall.db") == "sqlite:///autocall.db"
    assert SECRET not in shown_url(f"not a url://u:{SECRET}@h")
    assert SECRET not in hide_password(f"failed for {url} ({SECRET})", url)


@pytest.mark.parametrize("command", [["status", "any"], ["run", "any"], ["pause", "any"]])
def test_campaign_commands_never_print_the_database_password(
    postgres_url: str, command: list[str]
) -> None:
    url = _missing_db(postgres_url)
    result = CliRunner().invoke(app, ["campaign", *command, "--db", url])
    assert result.exit_code == 2, result.output
    assert "h5_no_such_db" in result.output  # the real server's refusal is shown ...
    assert SECRET not in result.output and ":***@" in result.output  # ... but not the secret


def test_call_never_prints_the_database_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, postgres_url: str
) -> None:
    url = _missing_db(postgres_url)
    monkeypatch.setenv("AUTOCALL_TTS_CACHE", str(tmp_path / "tts"))
    with Sipp(SCENARIOS / "uas_reject_486.xml", port=44100, media_port=44102, timeout=20) as peer:
        result = CliRunner().invoke(
            app,
            [
                "call",
                "sip:sipp@127.0.0.1:44100",
                "--say",
                "Hello.",
                "--bind",
                "127.0.0.1:44105",
                "--db",
                url,
            ],
        )
        peer.wait(10)
    assert result.exit_code == 4, result.output  # busy: the call's result stands
    assert "call record not stored" in result.output
    assert SECRET not in result.output and ":***@" in result.output
    serve = CliRunner().invoke(
        app, ["serve", "--tree", "prompts/informer.yaml", "--db", url, "--bind", "127.0.0.1:44106"]
    )
    assert serve.exit_code == 2 and SECRET not in serve.output, serve.output


def test_sqlite_store_and_its_wal_are_private(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    store = Store(f"sqlite:///{folder / 'autocall.db'}")
    try:
        store.add_call(
            CallRecord(
                CallStatus.COMPLETED, call_id="c1", direction="outbound",
                number="+12025550111", digits="1",
            )
        )
        files = sorted(folder.iterdir())
        assert {f.name for f in files} >= {"autocall.db", "autocall.db-wal"}
        assert {f.name: _mode(f) for f in files} == {f.name: 0o600 for f in files}
    finally:
        store.close()


def test_an_existing_store_keeps_its_mode_and_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "shared.db"
    Store(f"sqlite:///{path}").close()
    path.chmod(0o644)  # an operator widened it (or an older autocall made it)
    with caplog.at_level(logging.WARNING, logger="autocall.files"):
        Store(f"sqlite:///{path}").close()
    assert _mode(path) == 0o644  # not ours to change
    assert "readable by every user" in caplog.text and "chmod 600" in caplog.text


VOICEMAIL = {
    "name": "voicemail",
    "start": "record",
    "nodes": {
        "record": {
            "record": {
                "prompt": "Leave a message after the tone.",
                "max_seconds": 6,
                "end_on_silence": 0.8,
            },
            "next": None,
        },
    },
}


async def test_voicemail_wav_sidecar_and_folder_are_private(tmp_path: Path) -> None:
    engine = MediaEngine()
    robot = await MediaSession.open(engine)
    caller = await MediaSession.open(engine)
    robot.start(caller.local_addr, 0, 101)
    caller.start(robot.local_addr, 0, 101)
    loud: list[float] = []
    caller.on_audio.append(
        lambda f: loud.append(time.monotonic()) if np.abs(f).max() > 500 else None)

    async def speak() -> None:
        while not loud or time.monotonic() - loud[-1] < 0.4:  # prompt and beep, then quiet
            await asyncio.sleep(0.05)
        t = np.arange(12000) / 8000
        await caller.play((np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16))

    speaker = asyncio.create_task(speak())
    folder = tmp_path / "recordings" / "inbound"
    runner = CallRunner(
        MediaLeg(robot),
        Tree.model_validate(VOICEMAIL),
        {},
        audio=AudioCache(tmp_path / "tts"),
        recordings_dir=folder,
        call_facts={"caller": "+12025550111", "call_id": "vm1"},
    )
    try:
        result = await asyncio.wait_for(runner.run(), 30)
        await speaker
    finally:
        speaker.cancel()
        with contextlib.suppress(Exception):
            await caller.close()
    assert result.recording is not None
    wav = Path(result.recording)
    sidecar = wav.with_suffix(".json")
    assert json.loads(sidecar.read_text())["call_id"] == "vm1"
    assert (_mode(wav), _mode(sidecar)) == (0o600, 0o600)
    assert (_mode(folder), _mode(folder.parent)) == (0o700, 0o700)
