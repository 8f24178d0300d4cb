"""The simulator's sample contact in a real headless Chromium (issue 17): a designer
who types {first_name} and {plan} into a prompt of a new tree gets a line for each in
the contact variables (designers type sample values: they never see real contacts), a
value typed there is kept as the tree changes, and the simulated prompt says it.
Server: the real `autocall web --no-dialer`; screenshot tests/artifacts/designer-sample.png."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Browser, expect
from test_browser import add_user, browser, csp_watch, log_in, shot, start_web  # noqa: F401


def test_the_sample_contact_follows_the_tree(tmp_path: Path,
                                             browser: Browser) -> None:  # noqa: F811
    db = f"sqlite:///{tmp_path / 'sample.db'}"
    add_user(db, tmp_path, "dana", "designer", "dana-password-1")
    with start_web(db, tmp_path) as web:
        page = browser.new_page(viewport={"width": 1400, "height": 1200})
        errors = csp_watch(page)
        log_in(page, web.url, "dana", "dana-password-1")
        page.goto(f"{web.url}/trees/new")
        expect(page.locator("#findings")).to_have_text(re.compile(r"^valid · "),
                                                       timeout=15_000)
        sample = page.locator("#sim-vars")
        expect(page.locator("#status")).to_have_text("a new tree: name it and save a version")
        expect(sample).to_have_value("")
        page.locator(".cm-line", has_text="Hello, this is a test call.").click()
        page.keyboard.press("End")
        for _ in range(len('this is a test call."')):
            page.keyboard.press("Backspace")
        page.keyboard.type('{first_name}, about your {plan} plan."')
        expect(sample).to_have_value("first_name=\nplan=", timeout=10_000)
        sample.fill("first_name=Carla\nplan=")
        page.locator(".cm-line", has_text="about your").click()
        page.keyboard.press("End")
        page.keyboard.press("Backspace")
        page.keyboard.type(' {first_name}."')  # the tree changes: the typed value stays
        expect(page.locator("#findings")).to_have_text(re.compile(r"^valid · "))
        sample.fill("first_name=Carla\nplan=Gold")
        page.click("#reset-btn")
        expect(page.locator("#transcript li.say").first).to_contain_text(
            "Hello, Carla, about your Gold plan. Carla.")
        expect(sample).to_have_value("first_name=Carla\nplan=Gold")
        shot(page, "designer-sample.png")
        assert errors == [], errors
