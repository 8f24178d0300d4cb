"""A campaign pinned to a tree version kept in the store (issue 17): `campaign import`
refuses a draft, runs the published version against a real SIPp peer, and a newer
version saved meanwhile does not reach the campaign."""

from __future__ import annotations

from pathlib import Path

import pytest
from clirun import CliProcess, sip_env
from conftest import write_campaign

from autocall.campaign.model import Outcome
from autocall.campaign.store import Store
from autocall.campaign.trees import TreeLibrary
from tests.peers import SCENARIOS, Sipp

pytestmark = pytest.mark.peers

TREE = """\
# kept byte for byte: this comment too
name: stored
outcomes: [done]
start: hello
nodes:
  hello: {pause: 0.5, next: bye}
  bye: {hangup: done}
"""
PORT = 43840
ROOT = Path(__file__).resolve().parents[2]


def test_a_campaign_runs_the_published_version_it_pins(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'trees.db'}"
    store = Store(url)
    library = TreeLibrary(store.engine)
    library.save("stored", TREE, "user:test")
    file = write_campaign(tmp_path, 3, channels=3, tree="store:stored@1")
    env = sip_env(PORT, PORT + 10, tmp_path)

    refused = CliProcess(["campaign", "import", str(file), "--db", url], cwd=tmp_path,
                         env=env, tag="refused")
    assert refused.wait(60) == 1
    assert "store:stored@1 is not published" in refused.stderr()
    library.publish("stored", 1, "user:test")
    imported = CliProcess(["campaign", "import", str(file), "--db", url], cwd=tmp_path,
                          env=env, tag="import")
    assert imported.wait(60) == 0, imported.stderr()[-3000:]
    # a newer version, even published, does not reach a campaign pinned to version 1
    library.publish("stored", library.save("stored", TREE.replace("hello", "hi"),
                                           "user:test").version, "user:test")

    sipp = Sipp(SCENARIOS / "uas_answer.xml", port=PORT, media_port=PORT + 2, calls=100,
                timeout=90, cwd=tmp_path).start()
    try:
        run = CliProcess(["campaign", "run", "test-campaign", "--db", url, "--json"],
                         cwd=tmp_path, env=env, tag="run")
        assert run.wait(90) == 0, run.stderr()[-3000:]
    finally:
        sipp.stop()
    attempts = store.attempts("test-campaign")
    store.close()
    assert len(attempts) == 3 and all(a.outcome is Outcome.COMPLETED for a in attempts)
    assert all(a.path == ["hello", "bye"] for a in attempts)
    assert "Traceback" not in run.stderr()


def test_trees_import_and_export_keep_the_files_byte_for_byte(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'io.db'}"
    env = {"AUTOCALL_PROMPTS": str(ROOT / "prompts")}
    first = CliProcess(["trees", "import", str(ROOT / "prompts"), "--publish", "--db", url],
                       cwd=tmp_path, env=env, tag="import")
    assert first.wait(60) == 0, first.stderr()
    assert "reminder: version 1 (published)" in first.stdout()
    again = CliProcess(["trees", "import", str(ROOT / "prompts"), "--db", url],
                       cwd=tmp_path, env=env, tag="again")
    assert again.wait(60) == 0 and "reminder: unchanged (version 1)" in again.stdout()
    out = tmp_path / "office.yaml"
    export = CliProcess(["trees", "export", "office@1", "-o", str(out), "--db", url],
                        cwd=tmp_path, env=env, tag="export")
    assert export.wait(60) == 0, export.stderr()
    assert out.read_bytes() == (ROOT / "prompts" / "office.yaml").read_bytes()
    store = Store(url)
    library = TreeLibrary(store.engine, ROOT / "prompts")
    office = library.version("office", 1)
    assert office.errors == 0 and office.cases is not None  # office.cases.yaml went along
    store.close()
