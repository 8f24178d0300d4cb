"""The dialogue designer in a real headless Chromium (issue 17): open a tree whose next:
has a typo, see the marker at its line with the suggestion and apply it; press 1 on the
keypad and see the next prompt with an audio element that loads; run the tree's cases
and see them pass; save version 2 and publish it. The server is the real
`autocall web --no-dialer` process; screenshots land in tests/artifacts/."""

from __future__ import annotations

import os
import re
from pathlib import Path

from playwright.sync_api import Browser, expect
from test_browser import add_user, browser, csp_watch, log_in, shot, start_web  # noqa: F401

from autocall.campaign.store import Store
from autocall.campaign.trees import TreeLibrary

PROMPTS = Path(__file__).resolve().parents[2] / "prompts"


def test_design_a_tree_in_the_browser(tmp_path: Path, browser: Browser) -> None:  # noqa: F811
    db = f"sqlite:///{tmp_path / 'designer.db'}"
    (tmp_path / "prompts").mkdir()
    os.environ["AUTOCALL_PROMPTS"] = str(tmp_path / "prompts")  # inherited by autocall web
    try:
        store = Store(db)
        typo = (PROMPTS / "reminder.yaml").read_text().replace("next: report", "next: reprot", 1)
        line = typo.splitlines().index("    next: reprot") + 1
        library = TreeLibrary(store.engine, tmp_path / "prompts")
        library.save("reminder", typo, "user:test", "with a typo")
        add_user(db, tmp_path, "dana", "designer", "dana-password-1")
        with start_web(db, tmp_path) as web:
            page = browser.new_page(viewport={"width": 1400, "height": 1300})
            errors = csp_watch(page)
            log_in(page, web.url, "dana", "dana-password-1")
            page.goto(f"{web.url}/trees")
            expect(page.locator("table.grid")).to_contain_text("reminder")
            page.click("text=reminder")
            expect(page.locator("#findings")).to_have_text(re.compile(r"^1 error\(s\) · "),
                                                           timeout=15_000)
            # the marker sits on the typo's line, with the validator's suggestion
            marker = page.locator(".cm-lintRange-error")
            expect(marker).to_have_count(1)
            expect(page.locator(".cm-activeLine, .cm-line").nth(line - 1)).to_contain_text(
                "next: reprot")
            marker.hover()
            tooltip = page.locator(".cm-tooltip-lint")
            expect(tooltip).to_contain_text("did you mean 'report'")
            shot(page, "designer-typo.png", full_page=False)  # keeps the hover tooltip open
            tooltip.locator("button", has_text="Use 'report'").click()
            expect(page.locator("#findings")).to_have_text(re.compile(r"^valid · "),
                                                           timeout=15_000)
            assert "next: report" in page.locator(".cm-content").inner_text()
            expect(page.locator("#graph svg")).to_have_count(1)

            # the simulator: press 1, hear the next prompt
            page.fill("#sim-vars", "first_name=Carla\namount=42.50\ndue_date=Monday")
            page.click("#reset-btn")
            expect(page.locator("#transcript")).to_contain_text("Hello Carla")
            page.click("#keypad button[data-key='1']")
            expect(page.locator("#sim-path")).to_contain_text("intro → ask_date")
            step = page.locator("#transcript li.say", has_text="day and month")
            expect(step).to_have_count(1)
            audio = step.locator("audio")
            page.wait_for_function(
                "a => a.readyState >= 1 && a.duration > 0", arg=audio.element_handle(),
                timeout=30_000)
            assert audio.evaluate("a => a.duration") > 1.0

            # the cases: all pass
            page.fill("#cases-text", (PROMPTS / "reminder.cases.yaml").read_text())
            page.click("#run-cases")
            expect(page.locator("#case-results li.case.pass")).not_to_have_count(0)
            expect(page.locator("#case-results li.case.fail")).to_have_count(0)
            passed = page.locator("#case-results li.case.pass").count()
            expect(page.locator("#status")).to_have_text(f"all {passed} case(s) pass")

            # save version 2 and publish it
            page.fill("#comment", "fixed the typo")
            page.click("#save-btn")
            expect(page.locator("#status")).to_have_text("saved version 2")
            page.click("#publish-btn")
            expect(page.locator("#status")).to_contain_text("store:reminder@2")
            shot(page, "designer.png")
            assert errors == [], errors
        v2 = library.version("reminder", 2)
        assert v2.published_at is not None and v2.errors == 0 and v2.comment == "fixed the typo"
        assert v2.text == typo.replace("next: reprot", "next: report")
        assert v2.cases is not None and "promises the 15th" in v2.cases
        store.close()
    finally:
        os.environ.pop("AUTOCALL_PROMPTS", None)
