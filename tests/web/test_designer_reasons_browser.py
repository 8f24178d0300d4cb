"""The designer's simulator in a real headless Chromium shows the reason for every branch
(issue 17): the office tree with the clock set to Christmas Day says "closed: holiday
2026-12-25"; on a Tuesday morning it is open, and "Wait (no input)" at the menu says
"no input after 5 s → default support". The server is the real `autocall web
--no-dialer` process; the screenshot is tests/artifacts/designer-reasons.png."""

from __future__ import annotations

import os
import re
from pathlib import Path

from playwright.sync_api import Browser, expect
from test_browser import add_user, browser, csp_watch, log_in, shot, start_web  # noqa: F401

from autocall.campaign.store import Store
from autocall.campaign.trees import TreeLibrary

PROMPTS = Path(__file__).resolve().parents[2] / "prompts"


def test_the_simulator_says_why_it_branched(tmp_path: Path,
                                            browser: Browser) -> None:  # noqa: F811
    db = f"sqlite:///{tmp_path / 'reasons.db'}"
    prompts = tmp_path / "prompts"
    (prompts / "audio").mkdir(parents=True)
    (prompts / "audio" / "chime.wav").write_bytes((PROMPTS / "audio" / "chime.wav").read_bytes())
    os.environ["AUTOCALL_PROMPTS"] = str(prompts)  # inherited by autocall web
    try:
        store = Store(db)
        TreeLibrary(store.engine, prompts).save(
            "office", (PROMPTS / "office.yaml").read_text(), "user:test", "from prompts/")
        store.close()
        add_user(db, tmp_path, "dana", "designer", "dana-password-1")
        with start_web(db, tmp_path) as web:
            context = browser.new_context(viewport={"width": 1400, "height": 1300},
                                          timezone_id="Europe/Berlin")
            page = context.new_page()
            errors = csp_watch(page)
            log_in(page, web.url, "dana", "dana-password-1")
            page.goto(f"{web.url}/trees/office")
            expect(page.locator("#findings")).to_have_text(re.compile(r"^valid · "),
                                                           timeout=15_000)
            page.fill("#sim-clock", "2026-12-25T10:00")
            page.click("#reset-btn")
            why = page.locator("#transcript li.why")
            expect(why.first).to_contain_text("closed: holiday 2026-12-25 → after_hours")
            expect(page.locator("#sim-path")).to_contain_text("hours → after_hours")

            page.fill("#sim-clock", "2026-12-22T10:00")  # a Tuesday, in Berlin
            page.click("#reset-btn")
            expect(why.first).to_contain_text(
                "open: Tue 2026-12-22 10:00 Europe/Berlin is in mon-fri")
            page.click("#wait-btn")
            expect(why.nth(1)).to_contain_text("no input after 5 s → default support")
            expect(page.locator("#sim-path")).to_contain_text("hours → welcome → support")
            shot(page, "designer-reasons.png")
            assert errors == [], errors
    finally:
        os.environ.pop("AUTOCALL_PROMPTS", None)
