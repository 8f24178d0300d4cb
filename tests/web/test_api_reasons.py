"""The designer's simulator over real HTTP says why the tree branched (issue 17): the
office tree on Christmas Day is "closed: holiday 2026-12-25", a silent caller gets
"retry 1 of 3: no input after 5 s"; the page's ``wait`` and ``say:`` tokens work."""

from __future__ import annotations

from pathlib import Path

from autocall.web.accounts import Role
from tests.web.api_fixtures import Live
from tests.web.api_fixtures import live_server as live_server  # noqa: F401

PROMPTS = Path(__file__).resolve().parents[2] / "prompts"
MENU = """\
start: m
outcomes: [ok, gave-up]
nodes:
  m:
    menu:
      prompt: "Press 1 or say yes."
      items: {1: {next: ok, say: ["yes"]}}
      timeout: 5
      retries: 3
      speech: true
    on_failure: bye
  ok: {hangup: ok}
  bye: {hangup: gave-up}
"""


def _why(got: dict[str, object]) -> list[tuple[str, str]]:
    steps = got["transcript"]
    assert isinstance(steps, list)
    return [(s["node"], s["text"]) for s in steps if s["kind"] == "why"]


def test_the_simulator_says_why_it_branched(live: Live) -> None:
    viewer = live.client(Role.VIEWER)
    office = (PROMPTS / "office.yaml").read_text()
    christmas = viewer.post("/v1/trees/simulate", json={
        "yaml": office, "at": "2026-12-25T10:00:00Z"}).json()
    assert _why(christmas)[0] == ("hours", "closed: holiday 2026-12-25 → after_hours")
    tuesday = viewer.post("/v1/trees/simulate", json={
        "yaml": office, "at": "2026-12-22T09:00:00Z", "inputs": ["wait"]}).json()
    assert _why(tuesday) == [
        ("hours", "open: Tue 2026-12-22 10:00 Europe/Berlin is in mon-fri "
                  "09:00-12:30, 13:30-17:00 → welcome"),
        ("welcome", "no input after 5 s → default support")]
    menu = viewer.post("/v1/trees/simulate", json={
        "yaml": MENU, "inputs": ["wait", "say:yes"]}).json()
    assert _why(menu) == [("m", "retry 1 of 3: no input after 5 s")]
    assert menu["path"] == ["m", "ok"] and menu["outcome"] == "ok"


def test_played_files_are_named_as_the_tree_names_them(live: Live) -> None:
    """Not by the server's path (the prompts folder is the server's business)."""
    office = (PROMPTS / "office.yaml").read_text()
    got = live.client(Role.VIEWER).post("/v1/trees/simulate", json={
        "yaml": office, "at": "2026-12-22T09:00:00Z", "inputs": ["1"]})
    plays = [s["text"] for s in got.json()["transcript"] if s["kind"] == "play"]
    assert plays == ["audio/chime.wav"]
    assert str(live.prompts) not in got.text
    outside = office.replace("audio/chime.wav", "/srv/elsewhere/chime.wav")
    got = live.client(Role.VIEWER).post("/v1/trees/simulate", json={
        "yaml": outside, "at": "2026-12-22T09:00:00Z", "inputs": ["1"]})
    assert [s["text"] for s in got.json()["transcript"] if s["kind"] == "play"] == [
        "chime.wav"]
