"""The contact import wizard in a real headless Chromium (Debian's, driven by
playwright) against the real `autocall web --no-dialer` process (port 18950-18999):
log in, open the wizard from the campaign page, upload a semicolon-separated Latin-1
list, see the detected delimiter and encoding and the rejected rows (row and reason)
before anything is stored, map a column to a template field, confirm, see the result.

Screenshots: tests/artifacts/import-link.png (the campaign page), import-preview.png and
import-done.png (look at them).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
from consoletest import ARTIFACTS, number, write_campaign
from playwright.sync_api import ConsoleMessage, Page, expect, sync_playwright

from autocall.campaign.contacts import import_campaign
from autocall.campaign.model import load_campaign
from autocall.campaign.store import Store
from autocall.web import accounts
from autocall.web.accounts import Role

CHROMIUM = "/usr/bin/chromium"
PORTS = range(18950, 19000)  # this file's; test_console_import.py has 18900-18949
CLI = [sys.executable, "-c", "from autocall.cli import main; main()"]

# Rows (file lines): 2 new, 3 not a number, 4 repeats 2, 5 empty phone, 6 and 7 new.
LIST = "\r\n".join([
    "Telefon;Vorname;Stadt",
    f"{number(20)};Jérôme;Köln",
    "0800-NOPE;Anaïs;Paris",
    f"{number(20)};Jérôme;Köln",
    ";Noé;Nîmes",
    f"{number(21)};Jürgen;München",
    f"{number(22)};Zoë;Genève",
]) + "\r\n"


def free_port() -> int:
    for port in PORTS:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError(f"no free port in {PORTS}")


@contextlib.contextmanager
def web_process(db: str, work: Path) -> Iterator[str]:
    port = free_port()
    log = work / "web.log"
    env = {**os.environ, "AUTOCALL_WEB_SECRET": "import-browser-secret"}
    with open(log, "wb") as out:
        proc = subprocess.Popen([*CLI, "web", "--no-dialer", "--port", str(port), "--db", db],
                                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=work)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):  # about 60 s: start-up is imports, slow on a loaded host
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(0.1)
        else:
            raise AssertionError(f"autocall web did not answer: {log.read_text()}")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def test_import_a_semicolon_latin1_list_through_the_wizard(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'console.db'}"
    folder = tmp_path / "campaign"
    write_campaign(folder, 3, name="autumn-survey")
    store = Store(db)
    import_campaign(store, load_campaign(folder / "campaign.yaml"))
    accounts.add_user(store.engine, "mara", Role.MARKETER, "mara-password-1")
    csv_file = tmp_path / "kunden.csv"
    csv_file.write_bytes(LIST.encode("latin-1"))
    assert "é".encode() not in csv_file.read_bytes() and b"\xe9" in csv_file.read_bytes()

    with web_process(db, tmp_path) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []

            def on_console(msg: ConsoleMessage) -> None:
                if msg.type == "error":
                    errors.append(msg.text)

            page.on("console", on_console)
            page.goto(f"{url}/campaigns/autumn-survey")
            page.fill("input[name=username]", "mara")
            page.fill("input[name=password]", "mara-password-1")
            page.click("button[type=submit]")
            expect(page).to_have_url(f"{url}/campaigns/autumn-survey")
            expect(page.locator("#import-link")).to_have_text("Import contacts")
            shot(page, "import-link.png")
            page.click("#import-link")
            expect(page).to_have_url(f"{url}/campaigns/autumn-survey/import")

            page.set_input_files("input[type=file]", str(csv_file))
            page.click("#upload-form button[type=submit]")
            expect(page.locator("#delimiter")).to_contain_text("semicolon")
            expect(page.locator("#encoding")).to_contain_text("Latin-1")
            expect(page.locator("select[name=phone]")).to_have_value("Telefon")

            # {first_name} from the Vorname column, then preview again.
            page.locator("input[name=field]").first.fill("first_name")
            page.locator("select[name=header]").first.select_option("Vorname")
            page.click("#mapping-form button[type=submit]")
            expect(page.locator('[data-count="new"]')).to_have_text("3")
            rejected = page.locator("#rejected tbody tr")
            expect(rejected).to_have_count(2)
            expect(rejected.nth(0).locator("td")).to_have_text(
                ["3", "Telefon", "'0800-NOPE' is not a valid number in region US"])
            expect(rejected.nth(1).locator("td")).to_have_text(["5", "Telefon",
                                                                "empty 'Telefon'"])
            expect(page.locator("#duplicates tbody tr")).to_have_count(1)
            expect(page.locator("#sample")).to_contain_text("Jérôme")
            expect(page.locator("#sample")).to_contain_text("Zoë")
            expect(page.locator("#confirm")).to_have_text("Import 3 contacts")
            assert len(store.contacts("autumn-survey")) == 3  # nothing stored yet
            shot(page, "import-preview.png")

            page.click("#confirm")
            expect(page.locator("#import-done")).to_contain_text("Imported 3 contacts")
            expect(page.locator('#import-done [data-count="rejected"]')).to_have_text("2")
            shot(page, "import-done.png")
            page.reload()  # a reload shows the result again and imports nothing more
            expect(page.locator("#import-done")).to_be_visible()
            assert errors == []
        finally:
            browser.close()
    found = {c.number: c.fields for c in store.contacts("autumn-survey")}
    store.close()
    assert len(found) == 6
    assert found[number(20)]["first_name"] == "Jérôme"
    assert found[number(22)]["Stadt"] == "Genève"
