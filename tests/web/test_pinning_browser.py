"""Point a running campaign at version 2 of its tree in a real headless Chromium (issue
17): a marketer starts a campaign pinned to version 1 of a stored tree, a real dialer
process (`autocall campaign run`) calls a SIPp callee, the marketer picks version 2 on
the campaign page, and the calls placed from then on run version 2 (the dialer follows
the pin without a restart) while version 1's calls end on version 1. The web server is
the real `autocall web --no-dialer` process; the screenshot is
tests/artifacts/campaign-pinned.png."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

import pytest
from consoletest import write_campaign
from playwright.sync_api import Browser, expect
from test_browser import (  # noqa: F401
    CLI,
    _kill,
    add_user,
    browser,
    csp_watch,
    log_in,
    shot,
    start_web,
    wait_until,
)

from autocall.campaign.contacts import import_campaign
from autocall.campaign.model import CampaignState, load_campaign
from autocall.campaign.store import Store
from autocall.campaign.trees import TreeLibrary
from tests.peers import SCENARIOS, Sipp

SIPP_PORT = 18800  # this file's ports: 18800-18809 SIPp, 18810 our UA
UA_PORT = 18810


def _tree(version: int) -> str:
    return (f"# version {version}: hold the line, then hang up\n"
            f"name: held\noutcomes: [heard-v{version}]\nstart: v{version}\nnodes:\n"
            f"  v{version}: {{pause: 1.0, next: bye}}\n  bye: {{hangup: heard-v{version}}}\n")


@pytest.mark.peers
def test_point_a_running_campaign_at_version_2(tmp_path: Path,
                                               browser: Browser) -> None:  # noqa: F811
    db = f"sqlite:///{tmp_path / 'pin.db'}"
    n = 8
    store = Store(db)
    library = TreeLibrary(store.engine)
    for version in (1, 2):
        library.save("held", _tree(version), "user:dana", f"version {version}")
        library.publish("held", version, "user:dana")
    folder = tmp_path / "campaign"
    write_campaign(folder, n, name="autumn", tree="store:held@1", channels=1,
                   calls_per_second=1, ring_timeout=5)
    import_campaign(store, load_campaign(folder / "campaign.yaml"))
    add_user(db, tmp_path, "mara", "marketer", "mara-password-1")
    sipp = Sipp(SCENARIOS / "uas_answer.xml", port=SIPP_PORT, media_port=SIPP_PORT + 2,
                calls=n, timeout=120, cwd=tmp_path)
    dialers: list[subprocess.Popen[bytes]] = []
    with contextlib.ExitStack() as stack:
        web = stack.enter_context(start_web(db, tmp_path))
        stack.callback(store.close)
        stack.callback(sipp.stop)
        stack.callback(_kill, dialers)
        sipp.start()
        page = browser.new_page(viewport={"width": 1280, "height": 1100})
        errors = csp_watch(page)
        log_in(page, web.url, "mara", "mara-password-1")
        page.goto(f"{web.url}/campaigns/autumn")
        expect(page.locator("#campaign-tree")).to_have_text("store:held@1")
        expect(page.locator("#pin-version option:checked")).to_have_text(
            "held version 1 (running) · version 1 · published "
            f"{library.version('held', 1).published_at:%Y-%m-%d %H:%M} by user:dana")
        with page.expect_navigation():
            page.click("#btn-start")
        expect(page.locator('[data-counter="state"]')).to_have_text("running")

        env = {**os.environ, "AUTOCALL_SIP_HOST": "127.0.0.1",
               "AUTOCALL_SIP_PORT": str(SIPP_PORT), "AUTOCALL_BIND_PORT": str(UA_PORT),
               "AUTOCALL_TTS_CACHE": str(tmp_path / "tts"),
               "AUTOCALL_RECORDINGS": str(tmp_path / "rec")}
        with open(tmp_path / "dialer.log", "wb") as out:
            dialer = subprocess.Popen([*CLI, "campaign", "run", "autumn", "--db", db,
                                       "--node", "pin-dialer"],
                                      stdout=out, stderr=subprocess.STDOUT, env=env,
                                      cwd=tmp_path)
        dialers.append(dialer)

        def finished_on(outcome: str) -> int:
            return sum(a.dialogue_outcome == outcome for a in store.attempts("autumn"))

        wait_until(lambda: finished_on("heard-v1") >= 2, 60,
                   "two calls ran version 1")
        page.select_option("#pin-version", "held@2")
        with page.expect_navigation():
            page.click("#btn-pin")
        expect(page.locator("#campaign-tree")).to_have_text("store:held@2")
        expect(page.locator("#pin-version option:checked")).to_contain_text(
            "held version 2 (running)")
        assert store.tree_of("autumn") == "store:held@2"

        assert dialer.wait(90) == 0, (tmp_path / "dialer.log").read_text()
        assert store.state("autumn")[0] is CampaignState.COMPLETED
        page.reload()
        expect(page.locator('[data-counter="state"]')).to_have_text("completed")
        expect(page.locator("#attempts tbody tr")).to_have_count(n)
        expect(page.locator("#attempts")).to_contain_text("heard-v2")
        shot(page, "campaign-pinned.png")
        assert not errors, errors

    attempts = sorted(store_attempts(db), key=lambda a: a[0])
    ran = [outcome for _, outcome, _ in attempts]
    assert len(ran) == n and set(ran) == {"heard-v1", "heard-v2"}, ran
    first_v2 = ran.index("heard-v2")
    # version 1 until the pin moved, version 2 for every call placed after it
    assert ran == ["heard-v1"] * first_v2 + ["heard-v2"] * (n - first_v2), ran
    assert first_v2 >= 2 and n - first_v2 >= 3, ran
    assert all(path == (["v1", "bye"] if outcome == "heard-v1" else ["v2", "bye"])
               for _, outcome, path in attempts), attempts
    assert "Traceback" not in (tmp_path / "dialer.log").read_text()


def store_attempts(db: str) -> list[tuple[int, str | None, list[str]]]:
    store = Store(db)
    try:
        return [(a.id, a.dialogue_outcome, list(a.path)) for a in store.attempts("autumn")]
    finally:
        store.close()
