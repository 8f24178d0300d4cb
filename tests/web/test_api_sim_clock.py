"""The simulator's clock is the tree's wall clock (issue 17): a time without an offset is
read in the tree's timezone:, as its hours nodes read the time, whatever zone the
designer's browser is in; a time with an offset is that instant. Real HTTP."""

from __future__ import annotations

from pathlib import Path

from autocall.web.accounts import Role
from tests.web.api_fixtures import Live
from tests.web.api_fixtures import live_server as live_server  # noqa: F401

PROMPTS = Path(__file__).resolve().parents[2] / "prompts"


def _first_why(got: dict[str, object]) -> str:
    steps = got["transcript"]
    assert isinstance(steps, list), got
    return next(s["text"] for s in steps if s["kind"] == "why")


def test_a_clock_without_offset_is_the_trees_own_time(live: Live) -> None:
    viewer = live.client(Role.VIEWER)
    office = (PROMPTS / "office.yaml").read_text()  # Europe/Berlin, opens 09:00
    early = viewer.post("/v1/trees/simulate", json={"yaml": office,
                                                     "at": "2026-12-22T08:30:00"}).json()
    assert _first_why(early).startswith(
        "closed: Tue 2026-12-22 08:30 Europe/Berlin is outside the opening hours"), early
    utc = viewer.post("/v1/trees/simulate", json={"yaml": office,
                                                   "at": "2026-12-22T08:30:00Z"}).json()
    assert _first_why(utc).startswith("open: Tue 2026-12-22 09:30 Europe/Berlin"), utc
    tokyo = office.replace("timezone: Europe/Berlin", "timezone: Asia/Tokyo")
    there = viewer.post("/v1/trees/simulate", json={"yaml": tokyo,
                                                     "at": "2026-12-22T09:30:00"}).json()
    assert _first_why(there).startswith("open: Tue 2026-12-22 09:30 Asia/Tokyo"), there


def test_validate_names_the_fields_a_sample_contact_fills(live: Live) -> None:
    viewer = live.client(Role.VIEWER)
    reminder = (PROMPTS / "reminder.yaml").read_text()
    got = viewer.post("/v1/trees/validate", json={"yaml": reminder}).json()
    assert got["contact_fields"] == ["first_name", "amount", "due_date"]
    undeclared = """start: hi
nodes:
  hi:
    say: "Hello {first_name}, call {caller_id} back about {plan}."
    next: ask
  ask:
    gather: {prompt: "Code?", variable: code, max_digits: 4}
    next: bye
  bye:
    say: "Code {code} noted for {first_name}."
    next: end
  end: {hangup: done}
outcomes: [done]
"""
    got = viewer.post("/v1/trees/validate", json={"yaml": undeclared}).json()
    assert got["contact_fields"] == ["first_name", "plan"]  # not caller_id, not code
    assert viewer.post("/v1/trees/validate", json={"yaml": "start: ["}).json()[
        "contact_fields"] == []
