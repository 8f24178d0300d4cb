"""Hostile bodies over real HTTP (issue 15): the body limit applies before anything parses
a body, the CSRF check's form parsing included. A 50 MB multipart POST, with a valid
session or without one, is refused with 413 after at most the route's limit was read (a
declared length over it: before a byte of body is read); a form of thousands of parts is
refused before it is all parsed; the server answers the next request as usual; and the
upload routes still take what they promise."""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
from consoletest import Console, Served

from autocall.campaign.model import CampaignState
from autocall.campaign.store import Store
from autocall.web import limits
from autocall.web.api.common import MAX_UPLOAD

HUGE = 50 * 1024 * 1024
CHUNK = 64 * 1024
BOUNDARY = "hostile-boundary"
SLACK = 16 * 1024 * 1024
"""What loopback socket buffers and uvicorn's own can hold beyond what the app read."""


@dataclass
class Answer:
    status: int
    body: str
    sent: int  # body bytes the server let us send before it answered
    seconds: float


def multipart_stream(total: int) -> Iterator[bytes]:
    """A multipart body of one huge file part (no CSRF field before it)."""
    head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"big.csv\"\r\nContent-Type: text/csv\r\n\r\n").encode()
    yield head
    left = total - len(head)
    block = b"phone\n" * (CHUNK // 6)
    while left > 0:
        yield block[:left]
        left -= len(block[:left])


def raw_post(url: str, path: str, headers: dict[str, str], body: Iterator[bytes], *,
             declared: int | None = None, send_body: bool = True, timeout: float = 60
             ) -> Answer:
    """POST over a plain socket, sending the body only while the server has not
    answered (an HTTP client would insist on sending all of it first)."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80))
    sock.settimeout(timeout)
    lines = [f"POST {path} HTTP/1.1", f"Host: {parts.netloc}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines.append(f"Content-Length: {declared}" if declared is not None
                 else "Transfer-Encoding: chunked")
    started = time.monotonic()
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    sent = 0
    try:
        for chunk in body if send_body else ():
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break  # the server has answered (or closed): stop sending
            framed = chunk if declared is not None else b"%x\r\n%s\r\n" % (len(chunk), chunk)
            sock.sendall(framed)
            sent += len(chunk)
        else:
            if declared is None and send_body:
                sock.sendall(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass  # refused and closed while we were still sending: what we want
    received = b""
    try:
        while True:  # "Connection: close": the answer ends when the server closes
            data = sock.recv(65536)
            if not data:
                break
            received += data
    except (ConnectionResetError, TimeoutError):
        pass
    finally:
        sock.close()
    seconds = time.monotonic() - started
    head, _, text = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 "), f"no answer in {seconds:.1f} s: {received[:200]!r}"
    return Answer(int(head.split()[1]), text.decode(errors="replace"), sent, seconds)


def cookie_of(console: Console) -> str:
    return "; ".join(f"{k}={v}" for k, v in console.client.cookies.items())


def still_serving(served: Served, console: Console) -> None:
    """The next requests are answered as usual."""
    with httpx.Client(base_url=served.url, timeout=20) as client:
        assert client.get("/healthz").status_code == 200
    assert console.get("/campaigns").status_code == 200


def test_a_declared_huge_form_is_refused_before_the_csrf_check_reads_it(
        served: Served, store: Store, make_user: Callable[..., tuple[str, str]],
        make_campaign: Callable[..., str], login: Callable[[str, str, str], Console]
) -> None:
    name = make_campaign(store)
    console = login(served.url, *make_user("marketer"))
    form = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    for who, headers in (("with a session", {**form, "Cookie": cookie_of(console)}),
                         ("without one", form)):
        for path in (f"/campaigns/{name}/start", "/v1/dnc", "/admin/users"):
            # 50 MB declared, not one byte sent: a server that reads before it checks
            # waits for the body here until the timeout.
            answer = raw_post(served.url, path, headers, multipart_stream(HUGE),
                              declared=HUGE, send_body=False, timeout=20)
            assert answer.status == 413, (who, path, answer)
            assert answer.seconds < 10, (who, path, answer.seconds)
            assert "the request body is over 4 MiB" in answer.body, (who, path)
    assert store.state(name)[0] is CampaignState.DRAFT
    still_serving(served, console)
    assert console.post(f"/campaigns/{name}/start").status_code == 303


def test_a_chunked_huge_form_is_cut_off_at_the_limit(
        served: Served, store: Store, make_user: Callable[..., tuple[str, str]],
        make_campaign: Callable[..., str], login: Callable[[str, str, str], Console]
) -> None:
    """No length declared: the body is counted as it arrives, in the CSRF check's form
    parsing too, and the 413 comes once the route's limit is passed."""
    name = make_campaign(store)
    console = login(served.url, *make_user("marketer"))
    form = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    for who, headers in (("with a session", {**form, "Cookie": cookie_of(console)}),
                         ("without one", form)):
        for path in (f"/campaigns/{name}/start", "/v1/campaigns"):
            answer = raw_post(served.url, path, headers, multipart_stream(HUGE))
            assert answer.status == 413, (who, path, answer.status, answer.body[:300])
            assert answer.sent < limits.BODY + SLACK, (who, path, answer.sent)
    # An upload route allows more (20 MiB), and no more than that.
    answer = raw_post(served.url, "/dnc/upload", {**form, "Cookie": cookie_of(console)},
                      multipart_stream(HUGE))
    assert answer.status in (411, 413), answer  # the console's form needs a length
    answer = raw_post(served.url, "/v1/dnc/upload", {**form, "Cookie": cookie_of(console),
                                                    "X-CSRF-Token": console.csrf},
                      multipart_stream(HUGE))
    assert answer.status == 413, answer
    assert answer.sent < MAX_UPLOAD + limits.ENVELOPE + SLACK, answer.sent
    assert store.state(name)[0] is CampaignState.DRAFT
    still_serving(served, console)
    assert console.post(f"/campaigns/{name}/start").status_code == 303


def test_a_form_of_many_parts_is_refused(
        served: Served, store: Store, make_user: Callable[..., tuple[str, str]],
        make_campaign: Callable[..., str], login: Callable[[str, str, str], Console]
) -> None:
    """Small in bytes, thousands of parts: the CSRF check stops counting at the bound."""
    name = make_campaign(store)
    console = login(served.url, *make_user("marketer"))
    fields = "".join(f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"f{i}\"\r\n\r\n"
                     f"x\r\n" for i in range(20_000))
    files = "".join(f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file{i}\"; "
                    f"filename=\"f{i}.csv\"\r\n\r\nphone\r\n" for i in range(200))
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    for body in (fields, files):
        data = (body + f"--{BOUNDARY}\r\nContent-Disposition: form-data; "
                f"name=\"csrf_token\"\r\n\r\n{console.csrf}\r\n--{BOUNDARY}--\r\n").encode()
        assert len(data) < limits.BODY
        started = time.monotonic()
        answer = console.client.post(f"/campaigns/{name}/start", content=data,
                                     headers=headers)
        assert answer.status_code == 400, answer.text
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert "Maximum number of" in answer.json()["detail"], answer.text
        assert time.monotonic() - started < 10
    assert store.state(name)[0] is CampaignState.DRAFT
    # The same form with its token and one field is taken.
    assert console.post(f"/campaigns/{name}/start").status_code == 303
    assert store.state(name)[0] is CampaignState.RUNNING


def test_uploads_still_take_what_they_promise(
        served: Served, store: Store, make_user: Callable[..., tuple[str, str]],
        make_token: Callable[..., str]) -> None:
    """A DNC list over the 4 MiB default and under its route's 20 MiB is taken; one over
    20 MiB is a 413 problem saying what the limits are."""
    token = make_token("marketer")
    numbers = "\n".join(f"+1212{5000000 + i:07d}" for i in range(100))
    lines = numbers + "\n" + ("# exported from the CRM, kept as it came\n" * 120_000)
    assert limits.BODY < len(lines) < MAX_UPLOAD
    with httpx.Client(base_url=served.url, timeout=120,
                      headers={"Authorization": f"Bearer {token}"}) as client:
        answer = client.post("/v1/dnc/upload", files={"file": ("dnc.txt", lines.encode())})
        assert answer.status_code in (200, 201), answer.text[:300]
        assert answer.json()["added"] == 100, answer.text[:300]
        assert client.get("/healthz").status_code == 200
    # Over 20 MiB (and the form around it): refused before a byte of it is read.
    answer = raw_post(served.url, "/v1/dnc/upload", {
        "Authorization": f"Bearer {token}",
        "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
        multipart_stream(HUGE), declared=MAX_UPLOAD + limits.ENVELOPE + 1, send_body=False)
    assert answer.status == 413, answer
    assert "over 20 MiB" in json.loads(answer.body)["detail"], answer.body


def test_the_api_reads_its_csrf_token_from_the_header_only(
        served: Served, store: Store, make_user: Callable[..., tuple[str, str]],
        login: Callable[[str, str, str], Console]) -> None:
    """With the console's cookie, an API upload's token is the X-CSRF-Token header (what
    the console's scripts send): the check reads no body, so the route still reads its
    own stream (a token in the form was a 500: the CSRF check had consumed the body)."""
    console = login(served.url, *make_user("marketer"))
    dnc = {"file": ("dnc.txt", b"+12125550100\n")}
    in_form = console.client.post("/v1/dnc/upload", data={"csrf_token": console.csrf},
                                  files=dnc)
    assert in_form.status_code == 403, in_form.text
    assert "CSRF" in in_form.json()["detail"]
    in_header = console.client.post("/v1/dnc/upload", files=dnc,
                                    headers={"X-CSRF-Token": console.csrf})
    assert in_header.status_code in (200, 201), in_header.text
    assert in_header.json()["added"] == 1


def test_a_browser_is_told_in_the_consoles_own_page(
        served: Served, store: Store, make_user: Callable[..., tuple[str, str]],
        make_campaign: Callable[..., str], login: Callable[[str, str, str], Console]
) -> None:
    """A browser's too-large form gets the console's error page (its frame, the limit,
    a way back to the page the form was on), not a bare line; another site named in
    the Referer is never the way back."""
    name = make_campaign(store)
    console = login(served.url, *make_user("marketer"))
    form = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
            "Cookie": cookie_of(console), "Accept": "text/html,application/xhtml+xml"}
    answer = raw_post(served.url, f"/campaigns/{name}/start",
                      {**form, "Referer": f"{served.url}/campaigns/{name}?tab=contacts"},
                      multipart_stream(HUGE), declared=HUGE, send_body=False, timeout=20)
    assert answer.status == 413, answer
    assert 'href="/static/console.css"' in answer.body, answer.body[:400]
    assert "<h1>Too large</h1>" in answer.body, answer.body[:400]
    assert "the request body is over 4 MiB" in answer.body
    assert f'href="/campaigns/{name}?tab=contacts">Back</a>' in answer.body, answer.body
    answer = raw_post(served.url, f"/campaigns/{name}/start",
                      {**form, "Referer": "https://evil.example//phish"},
                      multipart_stream(HUGE), declared=HUGE, send_body=False, timeout=20)
    assert answer.status == 413, answer
    assert 'href="/">Back</a>' in answer.body, answer.body
    still_serving(served, console)
