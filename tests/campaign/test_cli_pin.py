"""`autocall campaign pin` (issue 17): the terminal's way to move a campaign to a
published version of a stored tree, the same rules and audit line as the console and
the API (a draft is refused, an unknown tree, version or campaign is told)."""

from __future__ import annotations

import itertools
from pathlib import Path

from clirun import TREE_TALK, CliProcess
from conftest import write_campaign

from autocall.campaign.contacts import import_campaign
from autocall.campaign.model import load_campaign
from autocall.campaign.store import Store
from autocall.campaign.trees import TreeLibrary
from autocall.web.accounts import audit_lines

TREE = TREE_TALK.format(talk=0.5)
RUNS = itertools.count()


def _pin(tmp_path: Path, url: str, *args: str) -> CliProcess:
    run = CliProcess(["campaign", "pin", *args, "--db", url], cwd=tmp_path, env={},
                     tag=f"pin-{next(RUNS)}")
    run.wait(60)
    return run


def test_pin_a_published_version_from_the_terminal(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'pin.db'}"
    (tmp_path / "tree.yaml").write_text(TREE, encoding="utf-8")
    store = Store(url)
    import_campaign(store, load_campaign(write_campaign(tmp_path, 2)))
    library = TreeLibrary(store.engine)
    library.save("held", TREE, "user:dana")
    library.save("held", TREE.replace("next: bye", "next: byee"), "user:dana")
    library.publish("held", 1, "user:dana")

    done = _pin(tmp_path, url, "test-campaign", "held@1")
    assert done.proc.returncode == 0, done.stderr()
    assert done.stdout().strip() == (f"test-campaign: {tmp_path / 'tree.yaml'} -> "
                                     "store:held@1")
    assert store.tree_of("test-campaign") == "store:held@1"
    (line,) = [a for a in audit_lines(store.engine) if a.action == "campaign.tree"]
    assert (line.actor, line.subject, line.detail) == (
        "cli", "test-campaign", {"tree": "store:held@1",
                                 "previous": str(tmp_path / "tree.yaml")})

    for args, code, words in ((("test-campaign", "held@2"), 1, "not published"),
                              (("test-campaign", "held@9"), 1, "has no version 9"),
                              (("test-campaign", "nope@1"), 1, "has no version 1"),
                              (("ghost", "held@1"), 2, "no campaign 'ghost'"),
                              (("test-campaign", "held"), 2, "give TREE@N"),
                              (("test-campaign", "../x@1"), 2, "give TREE@N")):
        refused = _pin(tmp_path, url, *args)
        assert refused.proc.returncode == code, (args, refused.stderr())
        assert words in refused.stderr() and "Traceback" not in refused.stderr(), args
    assert store.tree_of("test-campaign") == "store:held@1"
    helped = CliProcess(["campaign", "pin", "--help"], cwd=tmp_path, env={}, tag="help")
    assert helped.wait(60) == 0
    assert "Example: autocall campaign pin spring-survey reminder@2" in helped.stdout()
    store.close()


def test_tree_from_file_moving_off_a_pin_is_audited(tmp_path: Path) -> None:
    """--tree-from-file takes a campaign off its pinned version: that move is in the
    audit log like a pin (who, from which version, to which file), and an import that
    keeps the pin, or moves nothing, writes no line."""
    url = f"sqlite:///{tmp_path / 'unpin.db'}"
    (tmp_path / "tree.yaml").write_text(TREE, encoding="utf-8")
    file = write_campaign(tmp_path, 2)
    store = Store(url)
    import_campaign(store, load_campaign(file))
    TreeLibrary(store.engine).save("held", TREE, "user:dana")
    TreeLibrary(store.engine).publish("held", 1, "user:dana")
    assert _pin(tmp_path, url, "test-campaign", "held@1").proc.returncode == 0

    def imported(*flags: str) -> None:
        run = CliProcess(["campaign", "import", str(file), "--db", url, *flags],
                         cwd=tmp_path, env={}, tag=f"import-{next(RUNS)}")
        assert run.wait(60) == 0, run.stderr()

    imported()  # keeps the pin: nothing moved, nothing audited
    assert store.tree_of("test-campaign") == "store:held@1"
    imported("--tree-from-file")
    assert store.tree_of("test-campaign") == str(tmp_path / "tree.yaml")
    imported("--tree-from-file")  # no pin left to move off
    lines = [a for a in audit_lines(store.engine) if a.action == "campaign.tree"]
    assert [(a.actor, a.subject, a.detail) for a in reversed(lines)] == [
        ("cli", "test-campaign", {"tree": "store:held@1",
                                  "previous": str(tmp_path / "tree.yaml")}),
        ("cli", "test-campaign", {"tree": str(tmp_path / "tree.yaml"),
                                  "previous": "store:held@1", "via": "--tree-from-file"}),
    ]
    store.close()
