"""Importing a tree file over real HTTP (issue 17): `POST /v1/trees/{name}/import` keeps
the file byte for byte (comments, CRLF, a BOM, non-ASCII; the export gives the same
bytes back), saves a tree that does not validate as a draft with its findings, refuses
what is not UTF-8, not YAML or not a tree (422, with line and column), what is too big
(413) and who may not (403); an Idempotency-Key makes a retried import one version.
Real uvicorn, real store (SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from autocall.web.accounts import Role, audit_lines
from tests.web.api_fixtures import Live, assert_problem
from tests.web.api_fixtures import live_server as live_server  # noqa: F401

PROMPTS = Path(__file__).resolve().parents[2] / "prompts"
REMINDER = (PROMPTS / "reminder.yaml").read_bytes()
TYPO = REMINDER.replace(b"next: report", b"next: reprot", 1)


def _import(client: httpx.Client, name: str, data: bytes, filename: str = "tree.yaml",
            **kw: object) -> httpx.Response:
    return client.post(f"/v1/trees/{name}/import", files={"file": (filename, data)}, **kw)


def _export(client: httpx.Client, name: str, version: int) -> bytes:
    got = client.get(f"/v1/trees/{name}/versions/{version}", params={"format": "yaml"})
    assert got.status_code == 200, got.text
    return got.content


def test_a_file_from_prompts_imports_as_version_1_and_exports_byte_for_byte(
        live: Live) -> None:
    designer, viewer = live.client(Role.DESIGNER, "dana"), live.client(Role.VIEWER)
    got = _import(designer, "reminder", REMINDER, "reminder.yaml")
    assert got.status_code == 201, got.text
    body = got.json()
    assert (body["version"], body["valid"], body["errors"]) == (1, True, 0)
    assert body["author"] == "token:dana" and body["comment"] == "imported from reminder.yaml"
    assert [f for f in body["findings"] if f["severity"] == "error"] == []
    assert _export(viewer, "reminder", 1) == REMINDER
    assert designer.post("/v1/trees/reminder/versions/1/publish").status_code == 200
    lines = [(a.actor, a.action, a.subject, a.detail) for a in audit_lines(live.store.engine)
             if a.action == "tree.import"]
    assert lines == [("token:dana", "tree.import", "store:reminder@1",
                      {"errors": 0, "file": "reminder.yaml"})]


def test_the_bytes_are_kept_crlf_bom_comments_and_accents(live: Live) -> None:
    designer = live.client(Role.DESIGNER)
    text = ("\ufeff# Rappel de paiement — café du coin\r\nname: rappel\r\noutcomes: [done]\r\n"
            "start: bonjour\r\nnodes:\r\n  bonjour:   # the first words\r\n"
            "    say: \"Bonjour {first_name}, ça va ?\"\r\n    next: fin\r\n"
            "  fin: {hangup: done}\r\n").encode("utf-8")
    got = designer.post("/v1/trees/rappel/import", content=text,
                        headers={"content-type": "application/yaml"},
                        params={"comment": "from the Paris office"})
    assert got.status_code == 201, got.text
    assert got.json()["valid"] and got.json()["comment"] == "from the Paris office"
    assert _export(designer, "rappel", 1) == text
    again = _import(designer, "rappel", text, "rappel.yaml")
    assert again.json()["version"] == 2  # every import is a version of its own


def test_a_tree_that_does_not_validate_is_a_draft_with_its_findings(live: Live) -> None:
    designer = live.client(Role.DESIGNER)
    got = _import(designer, "reminder", TYPO, "reminder.yaml")
    assert got.status_code == 201, got.text
    body = got.json()
    assert not body["valid"] and body["errors"] == 1 and body["published_at"] is None
    (error,) = [f for f in body["findings"] if f["severity"] == "error"]
    line = TYPO.decode().splitlines().index("    next: reprot") + 1
    assert (error["line"], error["column"], error["fix"]) == (line, 11, "report")
    assert _export(designer, "reminder", 1) == TYPO  # the draft is kept as it came
    refused = assert_problem(designer.post("/v1/trees/reminder/versions/1/publish"), 409)
    assert "error" in str(refused["detail"])


@pytest.mark.parametrize(("data", "title", "where", "words"), [
    (b"name: caf\xe9\nstart: a\n", "Not UTF-8 text", (1, 10), "not UTF-8"),
    ("name: x\n".encode("utf-16"), "Not UTF-8 text", (1, 1), "UTF-16"),
    (b"name: x\nnodes: [\n", "Not YAML", (3, 1), "never closed"),
    (b"name: x\x00\n", "Not YAML", (1, 8), "not allowed"),
    (b"phone,first_name\n+12125550100,Ann\n", "Not a prompt tree", (1, 1), "a YAML str"),
    (b"- start\n- nodes\n", "Not a prompt tree", (1, 1), "a YAML list"),
    (b"", "Not a prompt tree", (1, 1), "empty"),
    (b"# only a comment\n", "Not a prompt tree", (1, 1), "empty"),
])
def test_what_is_not_a_tree_file_is_refused_with_line_and_column(
        live: Live, data: bytes, title: str, where: tuple[int, int], words: str) -> None:
    designer = live.client(Role.DESIGNER)
    body = assert_problem(_import(designer, "bad", data, "bad.yaml"), 422)
    assert body["title"] == title
    (error,) = body["errors"]  # type: ignore[misc]
    assert error["loc"] == ["file", *where], error
    assert words in error["msg"] and words in str(body["detail"]), body
    assert_problem(designer.get("/v1/trees/bad/versions"), 404)  # nothing was stored


def test_size_roles_names_and_media_types(live: Live) -> None:
    designer = live.client(Role.DESIGNER)
    padded = REMINDER + b"#" * (1_000_001 - len(REMINDER))
    assert_problem(_import(designer, "big", padded), 413)
    assert_problem(designer.post("/v1/trees/big/import", content=padded,
                                 headers={"content-type": "application/yaml"}), 413)
    at_limit = REMINDER + b"#" * (1_000_000 - len(REMINDER))
    assert _import(designer, "big", at_limit).status_code == 201
    for role in (Role.VIEWER, Role.MARKETER):
        refused = assert_problem(_import(live.client(role), "reminder", REMINDER), 403)
        assert role.value in str(refused["detail"])
    anonymous = httpx.post(f"{live.base}/v1/trees/reminder/import",
                           files={"file": ("r.yaml", REMINDER)}, timeout=10)
    assert anonymous.status_code == 401
    for bad_name in ("..%2Fetc", "a%20b", "-x", "x" * 101):
        got = _import(designer, bad_name, REMINDER)
        assert got.status_code in (404, 422), (bad_name, got.status_code)
    assert_problem(designer.post("/v1/trees/reminder/import", json={"yaml": "x"}), 415)
    missing = assert_problem(designer.post("/v1/trees/reminder/import",
                                           files={"other": ("r.yaml", REMINDER)}), 422)
    assert "'file'" in str(missing["detail"])
    assert_problem(designer.get("/v1/trees/reminder/versions"), 404)


def test_an_idempotency_key_makes_a_retried_import_one_version(live: Live) -> None:
    designer = live.client(Role.DESIGNER)
    key = {"Idempotency-Key": "import-7f3a"}
    first = _import(designer, "reminder", REMINDER, headers=key)
    again = _import(designer, "reminder", REMINDER, headers=key)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers.get("Idempotent-Replayed") == "true"
    assert [v["version"] for v in designer.get("/v1/trees/reminder/versions").json()] == [1]
    other = assert_problem(_import(designer, "reminder", TYPO, headers=key), 422)
    assert "different request" in str(other["detail"])
    assert _import(designer, "reminder", TYPO, headers={
        "Idempotency-Key": "import-8b1c"}).json()["version"] == 2
