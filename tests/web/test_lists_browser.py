"""The recordings and do-not-call pages in a real headless Chromium, against the real
`autocall web --no-dialer` process: a marketer adds, uploads, checks and removes DNC
numbers and deletes recordings past the retention setting (with a confirmation); a
viewer sees both pages without a button. Screenshots in tests/artifacts/."""

from __future__ import annotations

import wave
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from consoletest import write_campaign
from playwright.sync_api import Browser, expect, sync_playwright

from autocall.campaign.contacts import import_campaign
from autocall.campaign.model import Dial, Outcome, load_campaign
from autocall.campaign.store import Store
from autocall.telephony.record import CallRecord, CallStatus
from autocall.web import dnc as dnc_list
from tests.web.test_browser import (
    CHROMIUM,
    add_user,
    csp_watch,
    log_in,
    shot,
    start_web,
)


@pytest.fixture
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield chromium
        chromium.close()


def _wav(path: Path, seconds: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x08\x00\xf8" * int(4000 * seconds))
    return path


def test_dnc_and_recording_retention_in_the_browser(tmp_path: Path, browser: Browser
                                                    ) -> None:
    db = f"sqlite:///{tmp_path / 'lists.db'}"
    store = Store(db)
    import_campaign(store, load_campaign(write_campaign(tmp_path / "c", 2, name="autumn")))
    folder = tmp_path / "rec"
    now = datetime.now(UTC)
    fresh, old = _wav(folder / "autumn" / "fresh.wav", 1.0), _wav(folder / "autumn" / "old.wav",
                                                                 3.0)
    claims = store.claim("autumn", "n", now, 2, lambda c: Dial(c.id, "+12025550100"))
    for claim, path, at in zip(claims, [fresh, old], [now, now - timedelta(days=100)],
                               strict=True):
        store.finish(claim.attempt_id, CallRecord(
            CallStatus.COMPLETED, 200, started_at=at, answered_at=at, ended_at=at,
            recording=str(path), outcome=Outcome.COMPLETED.value), None)
    add_user(db, tmp_path, "mara", "marketer", "mara-password-1")
    add_user(db, tmp_path, "vic", "viewer", "vic-password-1")
    optouts = tmp_path / "optouts.txt"
    optouts.write_text("# from the CRM\n+12125550101\n(212) 555-0102\nnot a number\n",
                       encoding="utf-8")
    env = {"AUTOCALL_RECORDINGS": str(folder), "AUTOCALL_RECORDING_RETENTION_DAYS": "90"}
    with start_web(db, tmp_path, env) as web:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors = csp_watch(page)
        log_in(page, web.url, "mara", "mara-password-1")

        page.click("text=Do not call")
        page.fill("#dnc-add input[name=number]", "(212) 555-0100")
        page.click("#dnc-add button")
        expect(page.locator("#message")).to_have_text("+12125550100 added")
        expect(page.locator("#check-result")).to_contain_text("on the list")
        page.set_input_files("#dnc-upload input[type=file]", str(optouts))
        page.click("#dnc-upload button")
        expect(page.locator("#message")).to_contain_text(
            "2 number(s) read, 2 added, 0 already listed, 1 line(s) rejected")
        expect(page.locator("#rejected")).to_contain_text("'not a number'")
        expect(page.locator("#dnc-list tbody tr")).to_have_count(3)
        shot(page, "dnc.png")
        row = page.locator('#dnc-list tr[data-number="+12125550101"]')
        page.once("dialog", lambda dialog: dialog.accept())
        row.locator("button").click()
        expect(page.locator("#message")).to_have_text("+12125550101 removed")
        expect(page.locator("#dnc-list tbody tr")).to_have_count(2)
        page.fill("form[action='/dnc'] input[name=number]", "+1 212 555 0101")
        page.click("#btn-check")
        expect(page.locator("#check-result")).to_contain_text("not on the list")
        assert dnc_list.entry(store.engine, "+12125550101") is None
        assert dnc_list.entry(store.engine, "+12125550102") is not None

        page.click("text=Recordings")
        expect(page.locator("#expired-count")).to_have_text("1")
        audio = page.locator("#recordings audio")
        expect(audio).to_have_count(2)
        page.wait_for_function("Array.from(document.querySelectorAll('#recordings audio'))"
                               ".every(a => a.readyState >= 1)")
        durations = sorted(audio.evaluate_all("as => as.map(a => a.duration)"))
        assert [round(d, 2) for d in durations] == [1.0, 3.0]
        shot(page, "recordings-retention.png")
        page.once("dialog", lambda dialog: dialog.dismiss())  # not yet
        page.click("#btn-expire")
        assert old.exists()
        page.once("dialog", lambda dialog: dialog.accept())
        page.click("#btn-expire")
        expect(page.locator("#message")).to_have_text(
            "1 recording(s) older than 90 days deleted")
        expect(page.locator("#recordings audio")).to_have_count(1)
        expect(page.locator("#recordings")).to_contain_text("file gone")
        assert not old.exists() and fresh.exists()
        assert not errors, errors

        viewer = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        log_in(viewer, web.url, "vic", "vic-password-1")
        viewer.click("text=Do not call")
        expect(viewer.locator("#dnc-list tbody tr")).to_have_count(2)
        assert viewer.locator("#dnc-add, #dnc-upload, #dnc-list button").count() == 0
        viewer.click("text=Recordings")
        expect(viewer.locator("#recordings audio")).to_have_count(1)
        assert viewer.locator("#recordings button, #btn-expire").count() == 0
        shot(viewer, "recordings-viewer.png")
    store.close()


def test_new_campaign_form_in_the_browser(tmp_path: Path, browser: Browser) -> None:
    """A marketer creates a campaign from the form: a wrong field is marked where it is,
    the rest kept; corrected, the draft opens on its page."""
    db = f"sqlite:///{tmp_path / 'new.db'}"
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "reminder.yaml").write_text(
        "name: reminder\noutcomes: [done]\nstart: bye\nnodes:\n  bye: {hangup: done}\n",
        encoding="utf-8")
    add_user(db, tmp_path, "mara", "marketer", "mara-password-1")
    with start_web(db, tmp_path, {"AUTOCALL_PROMPTS": str(prompts)}) as web:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors = csp_watch(page)
        log_in(page, web.url, "mara", "mara-password-1")
        page.click("#new-campaign-link")
        page.fill("input[name=name]", "autumn recall")
        page.select_option("select[name=tree]", "reminder")
        page.fill("textarea[name=caller_ids]", "+12025550100")
        page.fill("input[name=channels]", "0")
        page.fill("input[name='window.start']", "07:00")
        page.click("#btn-create")
        expect(page.locator('[data-error-for="name"]')).to_contain_text("pattern")
        expect(page.locator('[data-error-for="channels"]')).to_contain_text(
            "greater than or equal to 1")
        expect(page.locator('[data-error-for="window"]')).to_contain_text("outside the legal")
        expect(page.locator("select[name=tree]")).to_have_value("reminder")
        shot(page, "new-campaign-errors.png")
        # Chromium logs the form's 422 answer itself; anything else (a CSP refusal) fails.
        assert errors == ["Failed to load resource: the server responded with a status of "
                          "422 (Unprocessable Entity)"], errors
        errors.clear()
        page.fill("input[name=name]", "autumn-recall")
        page.fill("input[name=channels]", "3")
        page.fill("input[name='window.start']", "09:00")
        page.click("#btn-create")
        expect(page).to_have_url(f"{web.url}/campaigns/autumn-recall")
        expect(page.locator('[data-counter="state"]')).to_have_text("draft")
        shot(page, "new-campaign-created.png")
        assert not errors, errors
    store = Store(db)
    assert store.campaign("autumn-recall")[0].channels == 3
    store.close()
