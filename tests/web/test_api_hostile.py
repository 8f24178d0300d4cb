"""Every /v1 route against hostile input over real HTTP: odd path values, bodies that
are not what the route takes, deep and huge JSON. Nothing answers 5xx, every error is a
problem document, and nothing outside the store is read."""

from __future__ import annotations

import httpx

from autocall.web.accounts import Role
from tests.web.api_fixtures import Live, campaign_body, live_server  # noqa: F401

ODD = ["..%2F..%2Fetc%2Fpasswd", "%00", "%F0%9F%98%80" * 20, "a" * 3000, "%2e%2e", "' OR 1=1 --",
       "CA" + "f" * 32, "attempt-0", "+1%20212", "%E2%80%AE", "null"]

BODIES: list[tuple[bytes, str]] = [
    (b"", "application/json"),
    (b"{not json", "application/json"),
    (b"[" * 100_000 + b"]" * 100_000, "application/json"),  # deep nesting
    (b'{"to": ' + b'"1"' * 3 + b"}", "application/json"),
    (b'{"name": {"$gt": ""}, "tree": [], "caller_ids": "x"}', "application/json"),
    (b"\xff\xfe\x00garbage", "text/csv"),
    (b"--x\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nphone\r\n",
     "multipart/form-data; boundary=x"),  # never closed
    (b"phone\n" + b"\"" * 10_000 + b"\n", "text/csv"),
    (b"x" * 1000, "application/xml"),
]


def _check(response: httpx.Response, what: str) -> None:
    assert response.status_code < 500, (what, response.status_code, response.text[:300])
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/problem+json"), what


def test_no_route_answers_5xx(live: Live) -> None:
    admin = live.client(Role.ADMIN)
    assert admin.post("/v1/campaigns", json=campaign_body()).status_code == 201
    spec = admin.get("/openapi.json").json()
    routes = [(m.upper(), p) for p, item in spec["paths"].items() for m in item
              if p.startswith("/v1/")]
    assert len(routes) >= 24
    for method, template in routes:
        for odd in ODD:
            path = template
            for param in ("{name}", "{number}", "{kind}", "{rid}", "{call_id}"):
                path = path.replace(param, odd)
            if path == template and odd != ODD[0]:
                continue
            if method == "GET":
                _check(admin.get(path, params={"limit": odd, "after": odd, "format": odd,
                                               "since": odd, "state": odd}), f"GET {path}")
            elif method == "DELETE":
                _check(admin.delete(path), f"DELETE {path}")
            else:
                for body, kind in BODIES:
                    _check(admin.post(path, content=body, headers={"content-type": kind}),
                           f"POST {path} {kind} {body[:30]!r}")
    # still up and sane afterwards
    assert admin.get("/v1/campaigns/spring").json()["summary"]["total"] == 0


def test_racing_creates_never_fail(live: Live) -> None:
    """Sixteen identical creates without a key at once: one campaign, the rest 409 (on
    PostgreSQL some met the first one's insert as a 500 before), and sixteen adds of one
    DNC number: all fine, one row."""
    from concurrent.futures import ThreadPoolExecutor

    crm = live.client(Role.MARKETER)
    with ThreadPoolExecutor(16) as pool:
        made = list(pool.map(lambda _: crm.post("/v1/campaigns", json=campaign_body()),
                             range(16)))
        listed = list(pool.map(lambda _: crm.post("/v1/dnc", json={"number": "+12122000001"}),
                               range(16)))
    assert sorted(r.status_code for r in made) == [201] + [409] * 15, \
        [r.text for r in made]
    assert {r.status_code for r in listed} == {201}, [r.text for r in listed]
    assert crm.get("/v1/dnc").json()["total"] == 1
