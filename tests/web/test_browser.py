"""The console in a real headless Chromium (Debian's, driven by playwright): log in, see
the campaigns, start a campaign that a real dialer process (`autocall campaign run`)
dials against a SIPp callee, watch the counters move without a reload, pause and see
the dialer obey, resume, stop with a confirmation; a viewer finds no button and is
refused. The web server is the real `autocall web --no-dialer` process.

Screenshots land in tests/artifacts/ (look at them).
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from consoletest import ARTIFACTS, free_socket, write_campaign
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

from autocall.campaign.contacts import import_campaign
from autocall.campaign.model import CampaignState, load_campaign
from autocall.campaign.store import Store
from autocall.web import accounts
from autocall.web.accounts import Role
from tests.peers import SCENARIOS, Sipp

CHROMIUM = "/usr/bin/chromium"
SIPP_PORT = 18150  # this file's ports: 18150-18159 SIPp, 18160 our UA
UA_PORT = 18160
CLI = [sys.executable, "-c", "from autocall.cli import main; main()"]

# The callee answers; the robot holds the line 2 s and hangs up: calls overlap, so
# ringing/in-call counters and channels busy show something.
TREE = ("name: browser-test\noutcomes: [done]\nstart: talk\nnodes:\n"
        "  talk: {pause: 2.0, next: bye}\n  bye: {hangup: done}\n")


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}: not after {timeout} s"
        time.sleep(0.1)


@dataclass
class WebProcess:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path


@pytest.fixture
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield chromium
        chromium.close()


@contextlib.contextmanager
def start_web(db: str, work: Path, env: dict[str, str] | None = None
              ) -> Iterator[WebProcess]:
    """`autocall web --no-dialer` as a user runs it, on a free loopback port (``env``:
    more environment, e.g. the recordings folder the dialer writes to)."""
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    log = work / "web.log"
    env = {**os.environ, "AUTOCALL_WEB_SECRET": "browser-test-secret", **(env or {})}
    with open(log, "wb") as out:
        proc = subprocess.Popen([*CLI, "web", "--no-dialer", "--port", str(port), "--db", db],
                                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=work)
    url = f"http://127.0.0.1:{port}"
    try:
        def up() -> bool:
            assert proc.poll() is None, log.read_text()
            try:
                return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        # Start-up is imports (FastAPI, SQLAlchemy, alembic, numpy: about 3 s quiet),
        # over 20 s on a 2-core machine at load 6; what these tests check comes after.
        wait_until(up, 60, "autocall web answers /healthz")
        yield WebProcess(url, proc, log)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def add_user(db: str, work: Path, name: str, role: str, password: str) -> None:
    """Through the CLI, as an operator would."""
    secret = work / f"{name}.pw"
    secret.write_text(password + "\n", encoding="utf-8")
    done = subprocess.run([*CLI, "users", "add", name, "--role", role, "--password-file",
                           str(secret), "--db", db], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr


def csp_watch(page: Page) -> list[str]:
    """Console errors the page logs (a CSP violation would be one)."""
    errors: list[str] = []

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type == "error":
            errors.append(msg.text)

    page.on("console", on_console)
    return errors


def log_in(page: Page, url: str, name: str, password: str) -> None:
    page.goto(f"{url}/campaigns")
    expect(page).to_have_url(f"{url}/login?next=/campaigns")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{url}/campaigns")


def shot(page: Page, name: str, *, full_page: bool = True) -> None:
    """Save a screenshot to look at. A full-page one makes Chromium re-lay the page out at
    its full height, which sends the mouse a mouseleave: pass ``full_page=False`` while a
    hover tooltip must stay open."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=full_page)


@pytest.mark.peers
def test_run_a_campaign_from_the_browser(tmp_path: Path, browser: Browser) -> None:
    db = f"sqlite:///{tmp_path / 'console.db'}"
    n = 24
    folder = tmp_path / "campaign"
    write_campaign(folder, n, name="spring-survey", channels=2, calls_per_second=2,
                   ring_timeout=5, recording=True)
    (folder / "tree.yaml").write_text(TREE, encoding="utf-8")
    store = Store(db)
    import_campaign(store, load_campaign(folder / "campaign.yaml"))
    add_user(db, tmp_path, "mara", "marketer", "mara-password-1")
    add_user(db, tmp_path, "vic", "viewer", "vic-password-1")
    sipp = Sipp(SCENARIOS / "uas_answer.xml", port=SIPP_PORT, media_port=SIPP_PORT + 2,
                calls=n, timeout=120, cwd=tmp_path)
    dialers: list[subprocess.Popen[bytes]] = []
    recordings = tmp_path / "rec"  # the dialer writes, the web node serves
    with contextlib.ExitStack() as stack:
        web = stack.enter_context(start_web(db, tmp_path,
                                            {"AUTOCALL_RECORDINGS": str(recordings)}))
        stack.callback(store.close)
        stack.callback(sipp.stop)
        stack.callback(_kill, dialers)
        sipp.start()
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors = csp_watch(page)
        page.goto(f"{web.url}/campaigns")
        shot(page, "login.png")
        log_in(page, web.url, "mara", "mara-password-1")
        row = page.locator("table.grid tbody tr", has_text="spring-survey")
        expect(row).to_contain_text("draft")
        shot(page, "campaigns.png")

        row.locator("a").click()
        expect(page.locator("#live")).to_have_text("live")
        with page.expect_navigation():  # a form POST: the page reloads once
            page.click("#btn-start")
        expect(page.locator('[data-counter="state"]')).to_have_text("running")
        expect(page.locator("#live")).to_have_text("live")
        page.evaluate("window.__notReloaded = 42")  # gone if the page reloads from here
        assert store.state("spring-survey")[0] is CampaignState.RUNNING
        expect(page.locator("#btn-start")).to_be_hidden()  # the live update hides it

        env = {**os.environ, "AUTOCALL_SIP_HOST": "127.0.0.1",
               "AUTOCALL_SIP_PORT": str(SIPP_PORT), "AUTOCALL_BIND_PORT": str(UA_PORT),
               "AUTOCALL_TTS_CACHE": str(tmp_path / "tts"),
               "AUTOCALL_RECORDINGS": str(recordings)}
        with open(tmp_path / "dialer.log", "wb") as out:
            # one dialer process: the dialers counter below counts processes
            dialer = subprocess.Popen([*CLI, "campaign", "run", "spring-survey", "--db", db,
                                       "--node", "browser-dialer", "--workers", "1"],
                                      stdout=out, stderr=subprocess.STDOUT, env=env,
                                      cwd=tmp_path)
        dialers.append(dialer)
        dialed = page.locator('[data-counter="dialed"]')
        wait_until(lambda: int(dialed.inner_text()) >= 3, 30,
                   "the dialed counter moves without a reload")
        expect(page.locator('[data-counter="answered"]')).not_to_have_text("0")
        expect(page.locator('[data-counter="dialers"]')).to_have_text("1")
        assert page.evaluate("window.__notReloaded") == 42
        shot(page, "campaign-running.png")

        with page.expect_navigation():
            page.click("#btn-pause")
        expect(page.locator('[data-counter="state"]')).to_have_text("paused")
        assert store.state("spring-survey")[0] is CampaignState.PAUSED

        def settled() -> bool:  # the calls in flight end (2 s each); no new one starts
            s = store.summary("spring-survey", datetime.now(UTC))
            return s.in_flight == 0
        wait_until(settled, 15, "calls in flight end after pause")
        before = store.summary("spring-survey", datetime.now(UTC)).attempts
        time.sleep(3.0)
        after = store.summary("spring-survey", datetime.now(UTC))
        assert after.attempts == before < n, "the dialer kept dialing while paused"
        assert dialer.poll() is None, "a paused campaign keeps its dialer attached"
        expect(page.locator('[data-counter="dialed"]')).to_have_text(str(before))
        expect(page.locator('[data-counter="ringing"]')).to_have_text("0")
        shot(page, "campaign-paused.png")

        with page.expect_navigation():
            page.click("#btn-resume")
        expect(page.locator('[data-counter="state"]')).to_have_text("running")
        wait_until(lambda: int(dialed.inner_text()) > before, 20, "dialing resumes")

        page.once("dialog", lambda dialog: dialog.dismiss())  # "Stop for good?" — no
        page.click("#btn-stop")
        time.sleep(0.5)
        assert store.state("spring-survey")[0] is CampaignState.RUNNING
        page.once("dialog", lambda dialog: dialog.accept())
        with page.expect_navigation():
            page.click("#btn-stop")
        expect(page.locator('[data-counter="state"]')).to_have_text("stopped")
        assert store.state("spring-survey")[0] is CampaignState.STOPPED
        assert dialer.wait(20) == 0, (tmp_path / "dialer.log").read_text()
        for verb in ("start", "pause", "resume", "stop"):
            expect(page.locator(f"#btn-{verb}")).to_be_hidden()
        rows = page.locator("#attempts tbody tr")
        expect(rows).to_have_count(store.summary("spring-survey", datetime.now(UTC)).attempts)
        expect(page.locator("#attempts")).not_to_contain_text("in-progress")  # polled live
        final = store.summary("spring-survey", datetime.now(UTC))
        expect(page.locator("img[data-chart]").first).to_have_attribute(  # redrawn live
            "src", re.compile(rf"\?v={final.attempts}-{final.done}$"), timeout=15_000)
        loaded = ("Array.from(document.querySelectorAll('img[data-chart]'))"
                  ".every(i => i.complete && i.naturalWidth > 0)")
        wait_until(lambda: bool(page.evaluate(loaded)), 10, "the charts load")
        shot(page, "campaign-stopped.png")
        assert page.evaluate("window.__notReloaded") != 42  # each button posts and reloads

        # The calls were recorded: play one in the page, from the API, by its record id.
        page.click("text=Recordings")
        expect(page).to_have_url(f"{web.url}/recordings")
        first = page.locator("#recordings tbody tr").first
        rid = first.get_attribute("data-recording")
        assert rid and rid.startswith("attempt-")
        attempt = store.attempts_page("spring-survey", int(rid.split("-")[1]) - 1, 1)[0]
        assert attempt.recording and Path(attempt.recording).is_relative_to(recordings)
        with wave.open(attempt.recording) as w:
            seconds = w.getnframes() / w.getframerate()
        assert seconds > 1.0, "the robot held the line 2 s: the recording is as long"
        audio = first.locator("audio")
        wait_until(lambda: bool(audio.evaluate("a => a.readyState >= 1 && a.duration > 0")),
                   10, "the audio element loads the recording's metadata")
        duration = float(audio.evaluate("a => a.duration"))
        assert abs(duration - seconds) < 0.1, (duration, seconds)
        box = audio.bounding_box()
        assert box is not None
        page.mouse.click(box["x"] + 16, box["y"] + box["height"] / 2)  # its play button
        wait_until(lambda: float(audio.evaluate("a => a.currentTime")) > 0.3, 10,
                   "the recording plays")
        assert audio.evaluate("a => a.error") is None
        shot(page, "recordings.png")
        assert not errors, errors

        # A viewer sees the campaign but no button, and a POST is refused.
        viewer = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        log_in(viewer, web.url, "vic", "vic-password-1")
        viewer.goto(f"{web.url}/campaigns/spring-survey")
        expect(viewer.locator('[data-counter="state"]')).to_have_text("stopped")
        assert viewer.locator("form[data-verb]").count() == 0
        assert viewer.locator("#btn-start").count() == 0
        token = viewer.locator("input[name=csrf_token]").first.get_attribute("value")
        assert token
        refused = viewer.request.post(f"{web.url}/campaigns/spring-survey/resume",
                                      form={"csrf_token": token}, max_redirects=0)
        assert refused.status == 403, refused.text()
        api_token = accounts.create_token(store.engine, "viewer-token", Role.VIEWER)
        refused = viewer.request.post(f"{web.url}/campaigns/spring-survey/resume",
                                      headers={"Authorization": f"Bearer {api_token}"},
                                      max_redirects=0)
        assert refused.status == 403
        assert store.state("spring-survey")[0] is CampaignState.STOPPED
        shot(viewer, "viewer.png")


def _kill(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_admin_pages_in_the_browser(tmp_path: Path, browser: Browser) -> None:
    """Users and tokens, the audit log and a contact's timeline, as an admin sees them."""
    db = f"sqlite:///{tmp_path / 'admin.db'}"
    store = Store(db)
    folder = tmp_path / "campaign"
    import_campaign(store, load_campaign(write_campaign(folder, 3, name="autumn")))
    accounts.add_user(store.engine, "ada", Role.ADMIN, "ada-password-1")
    with start_web(db, tmp_path) as web:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors = csp_watch(page)
        log_in(page, web.url, "ada", "ada-password-1")
        page.click("text=Users & tokens")
        page.fill("form[action='/admin/tokens'] input[name=name]", "crm")
        page.select_option("form[action='/admin/tokens'] select[name=role]", "marketer")
        page.click("form[action='/admin/tokens'] button")
        token = page.locator("#new-token").inner_text()
        assert token.startswith("ac_")
        shot(page, "accounts.png")
        assert httpx.get(f"{web.url}/metrics", headers={"Authorization": f"Bearer {token}"},
                         timeout=5).status_code == 200

        page.goto(f"{web.url}/campaigns/autumn")
        page.fill("input[name=number]", "(212) 300-0001")
        page.click("text=Timeline and explain")
        expect(page.locator("h1")).to_have_text("+12123000001")
        expect(page.locator(".reasons")).to_contain_text("campaign is draft")
        shot(page, "contact.png")

        page.click("text=Audit log")
        expect(page.locator("table.grid")).to_contain_text("token.create")
        expect(page.locator("table.grid")).to_contain_text("login")
        shot(page, "audit.png")

        page.goto(f"{web.url}/docs")  # Swagger UI, vendored, under the same CSP
        expect(page.locator(".swagger-ui .info .title")).to_contain_text("autocall")
        shot(page, "docs.png")
        assert not errors, errors
    store.close()
