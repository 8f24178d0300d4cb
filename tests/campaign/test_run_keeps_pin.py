"""A campaign pinned to a tree version keeps it when its YAML file is run or imported
again (issue 17: "changing a tree never changes a running campaign until someone moves
it"). The terminal says which version runs and how to move it; ``--tree-from-file``
is the explicit way back to the file's tree. Against real stores and a real SIPp peer."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from clirun import TREE_TALK, CliProcess, sip_env
from conftest import write_campaign

from autocall.campaign.contacts import import_campaign
from autocall.campaign.model import Outcome, load_campaign
from autocall.campaign.store import Store
from autocall.campaign.trees import TreeLibrary
from tests.peers import SCENARIOS, Sipp

STORED = """\
name: stored
outcomes: [done]
start: hello
nodes:
  hello: {pause: 0.3, next: bye}
  bye: {hangup: done}
"""
PORT = 36100
RUNS = itertools.count()


def _cli(tmp_path: Path, *args: str, env: dict[str, str] | None = None,
         timeout: float = 60) -> CliProcess:
    run = CliProcess(list(args), cwd=tmp_path, env=env or {}, tag=f"pin-{next(RUNS)}")
    run.wait(timeout)
    return run


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_importing_the_file_again_keeps_the_pin(tmp_path: Path, kind: str,
                                               request: pytest.FixtureRequest) -> None:
    url = (f"sqlite:///{tmp_path / 'keep.db'}" if kind == "sqlite"
           else request.getfixturevalue("pg_schema_url"))
    (tmp_path / "tree.yaml").write_text(TREE_TALK.format(talk=0.3), encoding="utf-8")
    file = write_campaign(tmp_path, 2)
    store = Store(url)
    try:
        campaign = load_campaign(file)
        assert import_campaign(store, campaign).kept_tree is None  # nothing pinned yet
        library = TreeLibrary(store.engine)
        library.save("stored", STORED, "user:dana")
        library.publish("stored", 1, "user:dana")
        store.set_tree("test-campaign", "store:stored@1")

        again = import_campaign(store, load_campaign(file))
        assert again.kept_tree == "store:stored@1"
        assert store.tree_of("test-campaign") == "store:stored@1"
        # the rest of the definition still comes from the file
        changed = load_campaign(write_campaign(tmp_path, 2, channels=3))
        assert import_campaign(store, changed).kept_tree == "store:stored@1"
        assert store.campaign("test-campaign")[0].channels == 3
        assert store.tree_of("test-campaign") == "store:stored@1"

        back = import_campaign(store, load_campaign(file), tree_from_file=True)
        assert back.kept_tree is None
        assert store.tree_of("test-campaign") == str(tmp_path / "tree.yaml")
        # a file tree is no pin: the file's (other) tree replaces it as before
        (tmp_path / "other.yaml").write_text(TREE_TALK.format(talk=0.3), encoding="utf-8")
        other = load_campaign(write_campaign(tmp_path, 2, tree="other.yaml"))
        assert import_campaign(store, other).kept_tree is None
        assert store.tree_of("test-campaign") == str(tmp_path / "other.yaml")
    finally:
        store.close()


@pytest.mark.peers
def test_running_the_file_again_runs_the_pinned_version(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'run.db'}"
    (tmp_path / "tree.yaml").write_text(TREE_TALK.format(talk=0.3), encoding="utf-8")
    file = write_campaign(tmp_path, 3, channels=3, retry={"max_attempts": 1})
    store = Store(url)
    library = TreeLibrary(store.engine)
    library.save("stored", STORED, "user:dana")
    library.publish("stored", 1, "user:dana")
    env = sip_env(PORT, PORT + 10, tmp_path)
    try:
        imported = _cli(tmp_path, "campaign", "import", str(file), "--db", url, env=env)
        assert imported.proc.returncode == 0, imported.stderr()
        pinned = _cli(tmp_path, "campaign", "pin", "test-campaign", "stored@1", "--db", url)
        assert pinned.proc.returncode == 0, pinned.stderr()

        again = _cli(tmp_path, "campaign", "import", str(file), "--db", url, env=env)
        assert again.proc.returncode == 0, again.stderr()
        assert store.tree_of("test-campaign") == "store:stored@1"
        told = " ".join(again.stderr().split())
        assert "runs store:stored@1" in told, told
        assert "autocall campaign pin test-campaign TREE@N" in told, told
        assert "--tree-from-file" in told, told

        sipp = Sipp(SCENARIOS / "uas_answer.xml", port=PORT, media_port=PORT + 2, calls=100,
                    timeout=90, cwd=tmp_path).start()
        try:
            run = _cli(tmp_path, "campaign", "run", str(file), "--db", url, "--json",
                       env=env, timeout=90)
            assert run.proc.returncode == 0, run.stderr()[-3000:]
        finally:
            sipp.stop()
        told = " ".join(run.stderr().split())
        assert "runs store:stored@1" in told and "--tree-from-file" in told, told
        assert "Traceback" not in run.stderr()
        attempts = store.attempts("test-campaign")
        assert len(attempts) == 3 and all(a.outcome is Outcome.COMPLETED for a in attempts)
        assert all(a.path == ["hello", "bye"] for a in attempts), [a.path for a in attempts]
        assert store.tree_of("test-campaign") == "store:stored@1"

        back = _cli(tmp_path, "campaign", "import", str(file), "--tree-from-file", "--db", url,
                    env=env)
        assert back.proc.returncode == 0, back.stderr()
        assert "runs store:" not in back.stderr()
        assert store.tree_of("test-campaign") == str(tmp_path / "tree.yaml")
    finally:
        store.close()
