"""The graph shows what a designer checks at a glance (issue 17): a menu's keys with the
phrases a recogniser may hear, its retries and timeout, the failure path dashed with
the retries it waits for; a gather's digits; an hours node's schedule, holidays and
zone. Drawn from the example trees, so a change to their shape shows here."""

from __future__ import annotations

from pathlib import Path

from autocall.dialogue.graph import to_dot, to_mermaid
from autocall.dialogue.loader import load, load_text

PROMPTS = Path(__file__).resolve().parents[2] / "prompts"


def _label(dot: str, node: str) -> str:
    line = next(x for x in dot.splitlines() if x.startswith(f'  "{node}" [label='))
    return line.split('label="', 1)[1].split('", shape=')[0]


def test_menu_keys_phrases_retries_and_the_failure_path() -> None:
    dot = to_dot(load(PROMPTS / "office.yaml"))
    assert _label(dot, "welcome").split("\\n")[2:] == [
        "keys 1 2 3 0 · * repeats", "retries 2 · 5 s · speech"]
    assert '"welcome" -> "support" [label="2 \'support\'/\'help\'"];' in dot
    assert ('"welcome" -> "voicemail" [label="failed after 2 retries", style=dashed, '
            'color="#b03a2e", fontcolor="#b03a2e"];') in dot
    assert '"welcome" -> "support" [label="no key"];' in dot
    assert '"sales" -> "busy" [label="failed", style=dashed' in dot
    mermaid = to_mermaid(load(PROMPTS / "office.yaml"))
    assert "n1 -.->|failed after 2 retries| n7" in mermaid


def test_hours_show_schedule_holidays_and_zone() -> None:
    dot = to_dot(load(PROMPTS / "office.yaml"))
    assert _label(dot, "hours").split("\\n") == [
        "hours", "hours: open or closed", "mon-fri 09:00-12:30, 13:30-17:00",
        "sat 10:00-13:00", "holidays 2026-12-24, 2026-12-25, 2026-12-26", "2027-01-01",
        "Europe/Berlin"]
    many = load_text("""start: h
timezone: America/New_York
nodes:
  h:
    hours:
      schedule: {mon: "09:00-10:00"}
      holidays: [2026-01-01, 2026-01-02, 2026-01-03, 2026-01-04, 2026-01-05, 2026-01-06,
                 2026-01-07, 2026-01-08, 2026-01-09, 2026-01-10, 2026-01-11]
    open: bye
    closed: bye
  bye: {hangup: done}
outcomes: [done]
""")
    lines = _label(to_dot(many), "h").split("\\n")
    assert lines[-5:] == ["holidays 2026-01-01, 2026-01-02, 2026-01-03",
                          "2026-01-04, 2026-01-05, 2026-01-06",
                          "2026-01-07, 2026-01-08, 2026-01-09",
                          "and 2 more holidays", "America/New_York"]


def test_gather_digits_and_retries() -> None:
    dot = to_dot(load(PROMPTS / "reminder.yaml"))
    assert _label(dot, "ask_date").split("\\n")[2:] == ["4 digits · ends #", "retries 2 · 8 s"]
    assert '"ask_date" -> "agent" [label="failed after 2 retries", style=dashed' in dot
