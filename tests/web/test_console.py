"""The console's front door over real HTTP against a real uvicorn and a real store
(SQLite and PostgreSQL): login, rate limiting, CSRF, cookie flags, security headers, and
the login wall around every page."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from consoletest import Console, Served, csrf_of

from autocall.campaign.model import CampaignState
from autocall.campaign.store import Store
from autocall.web import accounts
from autocall.web.session import LoginLimiter


def _client(served: Served) -> httpx.Client:
    return httpx.Client(base_url=served.url, follow_redirects=False, timeout=10)


def _login_form(client: httpx.Client, name: str, password: str) -> httpx.Response:
    token = csrf_of(client.get("/login").text)
    return client.post("/login", data={"username": name, "password": password,
                                       "csrf_token": token})


def test_login_then_logout(served: Served, make_user: Callable[..., tuple[str, str]]) -> None:
    name, password = make_user("marketer")
    with _client(served) as client:
        assert client.get("/campaigns").status_code == 303
        wrong = _login_form(client, name, password + "x")
        assert wrong.status_code == 401 and "wrong user name or password" in wrong.text
        assert client.get("/campaigns").status_code == 303
        unknown = _login_form(client, "nobody", password)
        assert unknown.status_code == 401
        ok = _login_form(client, name, password)
        assert ok.status_code == 303 and ok.headers["location"] == "/"
        page = client.get("/campaigns")
        assert page.status_code == 200 and name in page.text
        assert client.post("/logout", data={"csrf_token": csrf_of(page.text)}
                           ).status_code == 303
        assert client.get("/campaigns").status_code == 303


def test_login_redirects_only_to_this_site(served: Served,
                                           make_user: Callable[..., tuple[str, str]]) -> None:
    name, password = make_user("viewer")
    with _client(served) as client:
        token = csrf_of(client.get("/login?next=/campaigns").text)
        answer = client.post("/login", data={"username": name, "password": password,
                                             "csrf_token": token,
                                             "next": "//evil.example/phish"})
        assert answer.status_code == 303 and answer.headers["location"] == "/"


def test_wrong_passwords_are_rate_limited(serve: Callable[..., Served], sqlite_store: Store
                                          ) -> None:
    accounts.add_user(sqlite_store.engine, "ann", accounts.Role.ADMIN, "right-password")
    served = serve(sqlite_store, login_limiter=LoginLimiter(per_user=3, per_address=10))
    with _client(served) as client:
        codes = [_login_form(client, "ann", f"wrong-{i}").status_code for i in range(3)]
        assert codes == [401, 401, 429]
        refused = _login_form(client, "ann", "right-password")  # even the right one, now
        assert refused.status_code == 429
        assert 250 <= int(refused.headers["retry-after"]) <= 300
        assert "too many failed logins" in refused.text
        # Per source address too: other names from the same address.
        codes = [_login_form(client, f"user{i}", "x").status_code for i in range(8)]
        assert codes[-1] == 429 and 401 in codes


def test_forms_need_the_csrf_token(served: Served, store: Store,
                                   make_user: Callable[..., tuple[str, str]],
                                   make_campaign: Callable[..., str],
                                   login: Callable[[str, str, str], Console]) -> None:
    name = make_campaign(store)
    console = login(served.url, *make_user("marketer"))
    without = console.client.post(f"/campaigns/{name}/start", data={})
    assert without.status_code == 403 and "CSRF" in without.json()["detail"]
    forged = console.client.post(f"/campaigns/{name}/start", data={"csrf_token": "x" * 43})
    assert forged.status_code == 403
    odd = console.client.post(f"/campaigns/{name}/start", data={"csrf_token": "é" * 43})
    assert odd.status_code == 403
    assert console.client.post(f"/campaigns/{name}/start", headers={
        "X-CSRF-Token": "x", "Authorization": "Basic YTpi"}).status_code == 403
    assert store.state(name)[0] is CampaignState.DRAFT
    with _client(served) as client:  # the login form itself needs the token
        answer = client.post("/login", data={"username": "a", "password": "b"})
        assert answer.status_code == 403
        client.get("/login")
        answer = client.post("/login", data={"username": "a", "password": "b",
                                             "csrf_token": "ü"})
        assert answer.status_code == 403
    assert console.post(f"/campaigns/{name}/start").status_code == 303
    assert store.state(name)[0] is CampaignState.RUNNING


def test_session_cookie_flags(serve: Callable[..., Served], sqlite_store: Store) -> None:
    accounts.add_user(sqlite_store.engine, "ann", accounts.Role.ADMIN, "right-password")
    for https in (False, True):
        served = serve(sqlite_store, https=https)
        with _client(served) as client:
            answer = _login_form(client, "ann", "right-password")
            cookie = answer.headers["set-cookie"].lower()
            assert "autocall_session=" in cookie and "httponly" in cookie
            assert "samesite=lax" in cookie
            assert ("secure" in cookie) is https
            assert ("strict-transport-security" in answer.headers) is https


def test_security_headers_on_pages(served: Served, make_user: Callable[..., tuple[str, str]],
                                   login: Callable[[str, str, str], Console]) -> None:
    console = login(served.url, *make_user("admin"))
    for path in ("/login", "/campaigns", "/admin/accounts", "/healthz", "/nope"):
        answer = console.get(path)
        csp = answer.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "same-origin"
    page = console.get("/campaigns").text
    assert "<script>" not in page and "style=" not in page and " on" + "click" not in page


def test_every_page_needs_a_login(served: Served, store: Store,
                                  make_campaign: Callable[..., str]) -> None:
    name = make_campaign(store)
    pages = ["/", "/campaigns", f"/campaigns/{name}", f"/campaigns/{name}/contact?number=1",
             f"/campaigns/{name}/charts/outcomes.png", "/admin/audit", "/admin/accounts",
             "/docs"]
    api = ["/metrics", "/openapi.json", f"/campaigns/{name}/events"]
    with _client(served) as client:
        for path in pages:
            answer = client.get(path)
            assert answer.status_code == 303, path
            assert answer.headers["location"].startswith("/login?next="), path
        for path in api:
            assert client.get(path).status_code == 401, path
            assert client.get(path, headers={"Authorization": "Bearer ac_nope"}
                              ).status_code == 401, path
        for path in (f"/campaigns/{name}/pause", "/admin/tokens", "/logout"):
            assert client.post(path, data={}).status_code in (401, 403), path
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/login").status_code == 200
    assert store.state(name)[0] is CampaignState.DRAFT
