"""The tree page's versions panel over real HTTP (issue 17): the versions newest first
with author, comment and state, an export link per version, the diff of two, and
restore (a new version with the old text, audited) for designers only. Real uvicorn,
real store (SQLite and PostgreSQL)."""

from __future__ import annotations

import re
from collections.abc import Callable

from consoletest import TREE, Console, Served

from autocall.campaign.store import Store
from autocall.campaign.trees import TreeLibrary
from autocall.web import accounts

TYPO = TREE.replace("next: bye", "next: byee")
ROWS = re.compile(r'<tr data-version="(\d+)">')


def _library(store: Store) -> TreeLibrary:
    library = TreeLibrary(store.engine)
    library.save("held", TYPO, "user:dana", "first try")
    library.save("held", TREE, "user:dana", "fixed the typo")
    library.publish("held", 2, "user:dana")
    return library


def test_list_diff_export_and_restore(
        served: Served, store: Store, make_user: Callable[..., tuple[str, str]],
        login: Callable[[str, str, str], Console]) -> None:
    library = _library(store)
    user, password = make_user("designer")
    console = login(served.url, user, password)
    page = console.get("/trees/held").text
    assert ROWS.findall(page) == ["2", "1"]
    assert "fixed the typo" in page and "first try" in page
    assert "store:held@2" in page and "1 error(s)" in page
    assert 'id="restore-1"' in page and 'id="restore-2"' not in page  # 2 is the newest
    assert '<option value="1" selected>' in page  # the diff form: previous → newest

    diff = console.get("/trees/held", params={"from": 1, "to": 2}).text
    assert '<span class="del">-  talk: {pause: 1.0, next: byee}</span>' in diff
    assert '<span class="add">+  talk: {pause: 1.0, next: bye}</span>' in diff
    same = console.get("/trees/held", params={"from": 2, "to": 2}).text
    assert "The two versions have the same text." in same
    ghost = console.get("/trees/held", params={"from": 1, "to": 9})
    assert ghost.status_code == 200 and "has no version 9" in ghost.text
    assert console.get("/trees/held", params={"from": 0, "to": 2}).status_code == 422

    exported = console.get("/v1/trees/held/versions/1", params={"format": "yaml"})
    assert exported.status_code == 200 and exported.text == TYPO

    restored = console.post("/trees/held/versions/1/restore")
    assert restored.status_code == 303
    assert restored.headers["location"] == "/trees/held#versions"
    v3 = library.version("held", 3)
    assert (v3.text, v3.comment, v3.author, v3.errors) == (
        TYPO, "restored from version 1", f"user:{user}", 1)
    assert ROWS.findall(console.get("/trees/held").text) == ["3", "2", "1"]
    lines = [(a.actor, a.action, a.subject) for a in accounts.audit_lines(store.engine)
             if a.action == "tree.restore"]
    assert lines == [(f"user:{user}", "tree.restore", "store:held@3")]

    missing = console.post("/trees/held/versions/9/restore")
    assert missing.status_code == 404 and "has no version 9" in missing.text
    assert console.client.post("/trees/held/versions/1/restore").status_code == 403  # no CSRF
    assert [v.version for v in library.versions("held")] == [1, 2, 3]


def test_viewers_and_marketers_read_the_versions_but_cannot_restore(
        served: Served, store: Store, make_user: Callable[..., tuple[str, str]],
        login: Callable[[str, str, str], Console]) -> None:
    library = _library(store)
    for role in ("viewer", "marketer"):
        console = login(served.url, *make_user(role))
        page = console.get("/trees/held").text
        assert ROWS.findall(page) == ["2", "1"] and "restore-" not in page
        assert "+  talk" in console.get("/trees/held", params={"from": 1, "to": 2}).text
        refused = console.post("/trees/held/versions/1/restore")
        assert refused.status_code == 403, role
    assert [v.version for v in library.versions("held")] == [1, 2]
    assert not [a for a in accounts.audit_lines(store.engine) if a.action == "tree.restore"]


def test_import_a_yaml_file_from_the_tree_page(
        served: Served, store: Store, make_user: Callable[..., tuple[str, str]],
        login: Callable[[str, str, str], Console]) -> None:
    library = _library(store)
    user, password = make_user("designer")
    console = login(served.url, user, password)
    page = console.get("/trees/held").text
    assert 'id="import-form"' in page and '<input type="hidden" name="name" value="held">' in page
    crlf = ("# from the Paris office — café\r\n" + TREE.replace("\n", "\r\n")).encode()
    done = console.post("/trees/import", data={"name": "held", "comment": "from a file"},
                        files={"file": ("held.yaml", crlf)})
    assert done.status_code == 303 and done.headers["location"] == "/trees/held#versions"
    v3 = library.version("held", 3)
    assert v3.text.encode() == crlf and v3.comment == "from a file" and v3.errors == 0
    assert "from a file" in console.get("/trees/held").text

    # from the New tree page: the file's name names the tree; a typo is kept as a draft
    new = console.post("/trees/import", data={"name": ""},
                       files={"file": ("dental-reminder.yaml", TYPO.encode())})
    assert new.status_code == 303 and new.headers["location"] == "/trees/dental-reminder#versions"
    draft = library.version("dental-reminder", 1)
    assert draft.errors == 1 and draft.comment == "imported from dental-reminder.yaml"
    lines = [(a.actor, a.subject, a.detail) for a in accounts.audit_lines(store.engine)
             if a.action == "tree.import"]
    assert lines == [
        (f"user:{user}", "store:dental-reminder@1", {"errors": 1,
                                                     "file": "dental-reminder.yaml"}),
        (f"user:{user}", "store:held@3", {"errors": 0, "file": "held.yaml"})]

    for data, status, words in (
            (b"name: caf\xe9\n", 422, "not UTF-8"),
            (b"phone,name\n+12125550100,Ann\n", 422, "not a prompt tree"),
            (b"nodes: [\n", 422, "never closed"),
            (b"#" * 1_000_001, 413, "over 1,000,000 bytes")):
        refused = console.post("/trees/import", data={"name": "held"},
                               files={"file": ("x.yaml", data)})
        assert refused.status_code == status and words in refused.text, (words, refused.text)
    bad_name = console.post("/trees/import", data={"name": "a b"},
                            files={"file": ("x.yaml", TREE.encode())})
    assert bad_name.status_code == 422 and "Not a tree name" in bad_name.text
    no_csrf = console.client.post("/trees/import", data={"name": "held"},
                                  files={"file": ("x.yaml", TREE.encode())})
    assert no_csrf.status_code == 403
    viewer = login(served.url, *make_user("viewer"))
    assert 'id="import-form"' not in viewer.get("/trees/held").text
    assert viewer.post("/trees/import", data={"name": "held"},
                       files={"file": ("x.yaml", TREE.encode())}).status_code == 403
    assert [v.version for v in library.versions("held")] == [1, 2, 3]
