"""A designer who never opened a terminal builds a dental-reminder tree in a real headless
Chromium (issue 17): from the empty "New tree" page, types the tree, sees it validate,
tries it on the keypad, names it, saves version 1 and publishes it; the store then holds
the typed text byte for byte, and the tree's page lists the published version. The
server is the real `autocall web --no-dialer` process; the screenshot is
tests/artifacts/designer-new-tree.png."""

from __future__ import annotations

import os
import re
from pathlib import Path

from playwright.sync_api import Browser, expect
from test_browser import add_user, browser, csp_watch, log_in, shot, start_web  # noqa: F401
from test_designer_versions_browser import settle

from autocall.campaign.store import Store
from autocall.campaign.trees import TreeLibrary

DENTAL = """\
# Dental appointment reminder: confirm, reschedule or cancel.
name: dental-reminder
contact_fields: [first_name, date, time]
outcomes: [confirmed, reschedule, cancelled]
start: remind
nodes:
  remind:
    menu:
      prompt:
        - "Hello {first_name}, this is Smile Dental. Your appointment is on {date} at {time}."
        - "To confirm, press 1. To move it, press 2. To cancel, press 3."
      items:
        1: confirm
        2: move
        3: cancel
      retries: 2
    on_failure: goodbye
  confirm:
    say: "Thank you {first_name}, see you on {date}."
    next: confirmed
  confirmed:
    hangup: confirmed
  move:
    say: "We will call you back to find a new time."
    next: moved
  moved:
    hangup: reschedule
  cancel:
    say: "Your appointment is cancelled."
    next: cancelled
  cancelled:
    hangup: cancelled
  goodbye:
    say: "Sorry, we did not get that. Goodbye."
"""


def test_build_the_dental_reminder_from_an_empty_page(tmp_path: Path,
                                                      browser: Browser) -> None:  # noqa: F811
    db = f"sqlite:///{tmp_path / 'new.db'}"
    (tmp_path / "prompts").mkdir()
    os.environ["AUTOCALL_PROMPTS"] = str(tmp_path / "prompts")  # inherited by autocall web
    try:
        Store(db).close()
        add_user(db, tmp_path, "dana", "designer", "dana-password-1")
        with start_web(db, tmp_path) as web:
            page = browser.new_page(viewport={"width": 1400, "height": 1300})
            errors = csp_watch(page)
            log_in(page, web.url, "dana", "dana-password-1")
            page.goto(f"{web.url}/trees")
            page.click("text=New tree")
            expect(page).to_have_url(f"{web.url}/trees/new")
            editor = page.locator(".cm-content")
            expect(editor).to_be_visible()
            editor.click()
            page.keyboard.press("Control+A")
            page.keyboard.press("Delete")
            page.keyboard.insert_text(DENTAL)
            expect(page.locator("#findings")).to_have_text(re.compile(r"^valid · "),
                                                           timeout=15_000)
            expect(page.locator("#graph svg")).to_have_count(1)
            expect(page.locator("#graph svg")).to_contain_text("remind")

            page.fill("#sim-vars", "first_name=Ana\ndate=Monday\ntime=9:30")
            page.click("#reset-btn")
            expect(page.locator("#transcript")).to_contain_text(
                "Hello Ana, this is Smile Dental. Your appointment is on Monday at 9:30.")
            page.click("#keypad button[data-key='1']")
            expect(page.locator("#sim-path")).to_contain_text("remind → confirm → confirmed")
            expect(page.locator("#sim-outcome")).to_have_text("outcome: confirmed")

            page.fill("#tree-name", "dental-reminder")
            page.fill("#comment", "first version, built in the browser")
            page.click("#save-btn")
            expect(page.locator("#status")).to_have_text("saved version 1")
            page.click("#publish-btn")
            expect(page.locator("#status")).to_contain_text("store:dental-reminder@1")
            shot(page, "designer-new-tree.png")

            settle(page)
            page.goto(f"{web.url}/trees/dental-reminder")
            expect(page.locator("#findings")).to_have_text(re.compile(r"^valid · "),
                                                           timeout=15_000)
            row = page.locator("#version-rows tbody tr")
            expect(row).to_have_count(1)
            expect(row).to_contain_text("published")
            expect(row).to_contain_text("first version, built in the browser")
            assert errors == [], errors
        store = Store(db)
        v1 = TreeLibrary(store.engine, tmp_path / "prompts").version("dental-reminder", 1)
        assert v1.text == DENTAL and v1.errors == 0 and v1.author == "user:dana"
        assert v1.published_at is not None and v1.published_by == "user:dana"
        store.close()
    finally:
        os.environ.pop("AUTOCALL_PROMPTS", None)
