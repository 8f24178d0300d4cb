"""The tree page's versions panel in a real headless Chromium (issue 17): a designer sees
the versions, compares version 1 with version 2 and sees the changed line, then
restores version 1: a version 3 with its text, back in the editor with its marker;
then imports a YAML file as version 4. The server is the real `autocall web
--no-dialer` process; the screenshot is tests/artifacts/designer-versions.png."""

from __future__ import annotations

import os
import re
from pathlib import Path

from playwright.sync_api import Browser, Page, expect
from test_browser import add_user, browser, csp_watch, log_in, shot, start_web  # noqa: F401

from autocall.campaign.store import Store
from autocall.campaign.trees import TreeLibrary

# Lines (of the first 20 drawn) whose line number does not sit level with the text:
# [number, gutter top, gutter height, line top, line height]; the gutter's hidden
# spacer (no height) is left out.
GUTTER_OFF = """(() => {
  const lines = Array.from(document.querySelectorAll('.cm-content .cm-line')).slice(0, 20);
  const numbers = Array.from(document.querySelectorAll('.cm-lineNumbers .cm-gutterElement'))
    .filter((e) => e.getBoundingClientRect().height > 0);
  if (lines.length < 20 || numbers.length < 20) return [['too few', lines.length, numbers.length]];
  return lines.map((line, i) => {
    const a = numbers[i].getBoundingClientRect(), b = line.getBoundingClientRect();
    return [numbers[i].textContent, a.top, a.height, b.top, b.height];
  }).filter(([n, at, ah, bt, bh], i) => n !== String(i + 1) || Math.abs(at - bt) > 1
                                           || Math.abs(ah - bh) > 1);
})()"""
PROMPTS = Path(__file__).resolve().parents[2] / "prompts"


def settle(page: Page) -> None:
    """Let the transcript's prompts finish loading before the page is left (a load cut by
    the navigation is logged as a console error, which would hide a real one)."""
    page.wait_for_function("() => Array.from(document.querySelectorAll('#transcript audio'))"
                           ".every(a => a.readyState >= 3)", timeout=60_000)


def test_compare_and_restore_versions(tmp_path: Path, browser: Browser) -> None:  # noqa: F811
    db = f"sqlite:///{tmp_path / 'versions.db'}"
    (tmp_path / "prompts").mkdir()
    os.environ["AUTOCALL_PROMPTS"] = str(tmp_path / "prompts")  # inherited by autocall web
    try:
        store = Store(db)
        library = TreeLibrary(store.engine, tmp_path / "prompts")
        fixed = (PROMPTS / "reminder.yaml").read_text()
        typo = fixed.replace("next: report", "next: reprot", 1)
        library.save("reminder", typo, "user:dana", "first try")
        library.save("reminder", fixed, "user:dana", "fixed the typo")
        library.publish("reminder", 2, "user:dana")
        add_user(db, tmp_path, "dana", "designer", "dana-password-1")
        with start_web(db, tmp_path) as web:
            page = browser.new_page(viewport={"width": 1400, "height": 1300})
            errors = csp_watch(page)
            log_in(page, web.url, "dana", "dana-password-1")
            page.goto(f"{web.url}/trees/reminder")
            expect(page.locator("#findings")).to_have_text(re.compile(r"^valid · "),
                                                           timeout=15_000)
            rows = page.locator("#version-rows tbody tr")
            expect(rows).to_have_count(2)
            expect(rows.first).to_contain_text("fixed the typo")
            expect(rows.first).to_contain_text("store:reminder@2")
            expect(rows.nth(1)).to_contain_text("1 error(s)")

            page.select_option("#diff-from", "1")
            page.select_option("#diff-to", "2")
            settle(page)
            with page.expect_navigation():
                page.click("#diff-btn")
            diff = page.locator("#diff")
            expect(diff.locator("span.del")).to_have_text(["-    next: reprot"])
            expect(diff.locator("span.add")).to_have_text(["+    next: report"])
            # The compare lands on #versions, below the editor: CodeMirror measures its
            # lines only once they are in view (until then the gutter uses its 14 px
            # estimate), and the graph arrives after the lint. Look at the top as a reader
            # would, and wait for both before the picture.
            page.evaluate("window.scrollTo(0, 0)")
            expect(page.locator("#graph svg")).to_have_count(1, timeout=15_000)
            expect(page.locator("#graph svg")).to_contain_text("ask_date")
            page.wait_for_function(f"() => {GUTTER_OFF} .length === 0", timeout=10_000)
            assert page.evaluate(GUTTER_OFF) == []
            shot(page, "designer-versions.png")

            settle(page)
            with page.expect_navigation():
                page.click("#restore-1")
            expect(rows).to_have_count(3)
            expect(rows.first).to_contain_text("restored from version 1")
            expect(page.locator("#findings")).to_have_text(re.compile(r"^1 error\(s\) · "),
                                                           timeout=15_000)
            expect(page.locator(".cm-lintRange-error")).to_have_count(1)
            assert "next: reprot" in page.locator(".cm-content").inner_text()
            # a dangling `next:` is an error, yet the tree loads: it is drawn all the same
            expect(page.locator("#graph svg")).to_have_count(1, timeout=15_000)

            # import a file: version 4, in the editor, byte for byte
            upload = tmp_path / "reminder-from-git.yaml"
            upload.write_bytes(fixed.replace("# Payment reminder", "# Imported: payment "
                                             "reminder", 1).encode())
            page.set_input_files("#import-file", str(upload))
            page.fill("#import-form input[name=comment]", "from git")
            settle(page)
            with page.expect_navigation():
                page.click("#import-btn")
            expect(rows).to_have_count(4)
            expect(rows.first).to_contain_text("from git")
            expect(page.locator("#findings")).to_have_text(re.compile(r"^valid · "),
                                                           timeout=15_000)
            assert "# Imported: payment reminder" in page.locator(".cm-content").inner_text()
            expect(page.locator("#graph svg")).to_have_count(1, timeout=15_000)

            # a version saved in the editor joins the list without a reload
            page.evaluate("window.__notReloaded = 17")
            page.fill("#comment", "saved in the editor")
            page.click("#save-btn")
            expect(page.locator("#status")).to_have_text("saved version 5")
            expect(rows).to_have_count(5, timeout=10_000)
            expect(rows.first).to_contain_text("saved in the editor")
            assert page.evaluate("window.__notReloaded") == 17
            assert errors == [], errors
        v3 = library.version("reminder", 3)
        assert v3.text == typo and v3.author == "user:dana" and v3.errors == 1
        assert library.version("reminder", 4).text.encode() == upload.read_bytes()
        store.close()
    finally:
        os.environ.pop("AUTOCALL_PROMPTS", None)
