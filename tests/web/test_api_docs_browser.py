"""/docs in a real headless Chromium: Swagger UI from the package's own files (no CDN,
no request leaves 127.0.0.1), listing the /v1 operations; a login is needed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import sync_playwright

from autocall.web import accounts
from autocall.web.accounts import Role
from tests.web.api_fixtures import Live

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


@pytest.fixture
def sqlite_live(tmp_path: Path) -> Iterator[Live]:
    server = Live(f"sqlite:///{tmp_path / 'web.db'}", tmp_path)
    yield server
    server.close()


def test_docs_render_offline(sqlite_live: Live) -> None:
    live = sqlite_live
    assert httpx.get(f"{live.base}/docs").status_code == 303  # to the login page
    token = accounts.create_token(live.store.engine, "reader", Role.VIEWER)
    auth = {"Authorization": f"Bearer {token}"}
    page_html = httpx.get(f"{live.base}/docs", headers=auth).text
    assert "<script>" not in page_html and "cdn" not in page_html.lower()
    ARTIFACTS.mkdir(exist_ok=True)
    outside: list[str] = []
    failed: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium")
        try:
            context = browser.new_context(extra_http_headers=auth,
                                          viewport={"width": 1280, "height": 1600})
            page = context.new_page()
            page.on("request", lambda r: outside.append(r.url)
                    if not r.url.startswith(live.base) else None)
            page.on("requestfailed", lambda r: failed.append(r.url))
            page.goto(f"{live.base}/docs")
            page.wait_for_selector(".opblock-summary-path", timeout=20_000)
            assert page.locator(".opblock").count() >= 24
            assert page.get_by_text("/v1/calls/{call_id}").count() >= 1
            page.screenshot(path=str(ARTIFACTS / "api-docs.png"), full_page=False)
        finally:
            browser.close()
    assert outside == [] and failed == []
