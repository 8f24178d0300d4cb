"""The campaign page's tree form over real HTTP (issue 17): a marketer picks a published
version of a stored tree from a list (drafts are not offered, and refused if posted),
audited as the API's pin is; designers and viewers see the tree but no form; start
checks the campaign's tree first, stored or a file. Real uvicorn, real store (SQLite
and PostgreSQL)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from consoletest import TREE, Console, Served

from autocall.campaign.model import CampaignState
from autocall.campaign.store import Store
from autocall.campaign.trees import TreeLibrary
from autocall.web import accounts

OPTION = re.compile(r'<option value="([^"]+)"( selected)?>')


def _trees(store: Store) -> None:
    """held: 1 published, 2 a draft with an error, 3 published."""
    library = TreeLibrary(store.engine)
    library.save("held", TREE, "user:dana", "first")
    library.save("held", TREE.replace("next: bye", "next: byee"), "user:dana", "typo")
    library.save("held", TREE.replace("pause: 1.0", "pause: 0.5"), "user:dana", "shorter")
    for number in (1, 3):
        library.publish("held", number, "user:dana")


def _options(html: str) -> list[tuple[str, bool]]:
    return [(value, bool(selected)) for value, selected in OPTION.findall(html)]


def test_a_marketer_picks_a_published_version_on_the_campaign_page(
        served: Served, store: Store, make_user: Callable[..., tuple[str, str]],
        make_campaign: Callable[..., str], login: Callable[[str, str, str], Console]) -> None:
    name = make_campaign(store)
    _trees(store)
    user, password = make_user("marketer")
    console = login(served.url, user, password)
    page = console.get(f"/campaigns/{name}").text
    assert '<code id="campaign-tree">tree</code>' in page  # a file: its name, not a path
    assert str(Path.cwd()) not in page
    assert _options(page) == [("held@3", False), ("held@1", False)]  # no draft offered
    assert "shorter" in page and "published" in page

    moved = console.post(f"/campaigns/{name}/tree", data={"version": "held@3"})
    assert moved.status_code == 303 and moved.headers["location"] == f"/campaigns/{name}"
    assert store.tree_of(name) == "store:held@3"
    page = console.get(f"/campaigns/{name}").text
    assert '<code id="campaign-tree">store:held@3</code>' in page
    assert _options(page) == [("held@3", True), ("held@1", False)]
    assert 'href="/trees/held"' in page
    assert console.post(f"/campaigns/{name}/tree",
                        data={"version": "held@1"}).status_code == 303
    lines = [(a.actor, a.action, a.subject, a.detail)
             for a in accounts.audit_lines(store.engine) if a.action == "campaign.tree"]
    assert lines == [
        (f"user:{user}", "campaign.tree", name, {"tree": "store:held@1",
                                                 "previous": "store:held@3"}),
        (f"user:{user}", "campaign.tree", name, {"tree": "store:held@3", "previous": "tree"})]

    draft = console.post(f"/campaigns/{name}/tree", data={"version": "held@2"})
    assert draft.status_code == 409 and "not published" in draft.text
    for unknown in ("held@9", "nope@1"):
        missing = console.post(f"/campaigns/{name}/tree", data={"version": unknown})
        assert missing.status_code == 404 and "has no version" in missing.text, unknown
    for bad in ("../etc/passwd@1", "held", "held@", "held@-1", "store:held@1", "x" * 150):
        refused = console.post(f"/campaigns/{name}/tree", data={"version": bad})
        assert refused.status_code == 422 and "pick a published version" in refused.text, bad
    assert console.post(f"/campaigns/{name}/tree", data={}).status_code == 422
    assert console.post("/campaigns/ghost/tree", data={"version": "held@1"}).status_code == 404
    no_csrf = console.client.post(f"/campaigns/{name}/tree", data={"version": "held@3"})
    assert no_csrf.status_code == 403
    assert store.tree_of(name) == "store:held@1"

    # start reads the pinned version from the store
    assert console.post(f"/campaigns/{name}/start").status_code == 303
    assert store.state(name)[0] is CampaignState.RUNNING


def test_designers_and_viewers_see_the_tree_but_cannot_move_it(
        served: Served, store: Store, make_user: Callable[..., tuple[str, str]],
        make_campaign: Callable[..., str], login: Callable[[str, str, str], Console]) -> None:
    name = make_campaign(store)
    _trees(store)
    for role in ("designer", "viewer"):
        console = login(served.url, *make_user(role))
        page = console.get(f"/campaigns/{name}").text
        assert '<code id="campaign-tree">tree</code>' in page
        assert 'id="pin-form"' not in page and not _options(page)
        refused = console.post(f"/campaigns/{name}/tree", data={"version": "held@3"})
        assert refused.status_code == 403, role
    assert store.tree_of(name).endswith("tree.yaml")
    assert not [a for a in accounts.audit_lines(store.engine) if a.action == "campaign.tree"]


def test_start_refuses_a_campaign_whose_tree_file_broke_since_import(
        served: Served, store: Store, make_user: Callable[..., tuple[str, str]],
        make_campaign: Callable[..., str], login: Callable[[str, str, str], Console]) -> None:
    name = make_campaign(store)
    tree = Path(store.tree_of(name))
    tree.write_text(TREE.replace("next: bye", "next: byee"), encoding="utf-8")
    console = login(served.url, *make_user("marketer"))
    refused = console.post(f"/campaigns/{name}/start")
    assert refused.status_code == 422
    assert "would not dial" in refused.text and "byee" in refused.text
    assert store.state(name)[0] is CampaignState.DRAFT
    page = console.get(f"/campaigns/{name}").text
    assert "No published tree version yet" in page
