"""The console's contact import wizard over real HTTP (uvicorn on 127.0.0.1, ports
18900-18949) against a real store (SQLite and PostgreSQL): upload a semicolon-separated
Latin-1 list, see the delimiter, encoding, rejected rows, duplicates and DNC hits
before anything is stored, map columns, confirm; the confirmation imports exactly what
was previewed (409 otherwise) and only once; roles and CSRF."""

from __future__ import annotations

import html
import re
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta

import httpx
import pytest
import uvicorn
from consoletest import Console, Served, csrf_of, number
from sqlalchemy import update

from autocall.campaign.contacts import read_upload
from autocall.campaign.model import ContactColumns, NewContact
from autocall.campaign.store import Store
from autocall.web import accounts, imports
from autocall.web.app import create_app

PORTS = range(18900, 18950)  # this file's; the browser test has 18950-18999


def _socket() -> socket.socket:
    for port in PORTS:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            sock.close()
            continue
        return sock
    raise AssertionError(f"no free port in {PORTS}")


@pytest.fixture
def web(store: Store) -> Iterator[Served]:
    """The console on ``store`` on a port of this file's range."""
    sock = _socket()
    server = uvicorn.Server(uvicorn.Config(create_app(store, secret_key="import-test"),
                                           log_level="warning", lifespan="off",
                                           timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive(), "uvicorn did not start"
        thread.join(0.01)
    served = Served(f"http://127.0.0.1:{sock.getsockname()[1]}", server, thread)
    yield served
    served.stop()
    sock.close()


# What a European spreadsheet exports: semicolons, Latin-1 (é, ô, ü), a header of its
# own. Rows (file lines): 2 new, 3 not a number, 4 repeats 2, 5 already stored,
# 6 on the DNC list (added, never dialed), 7 empty phone, 8 new.
def latin1_list() -> bytes:
    lines = ["Telefon;Vorname;Stadt",
             f"{number(10)};Jérôme;Köln",
             "12ab;Anaïs;Paris",
             f"{number(10)};Jérôme;Köln",
             f"{number(1)};Zoë;Bonn",
             f"{number(11)};Jürgen;München",
             ";Noé;Nîmes",
             f"{number(12)};Ørjan;Genève"]
    return ("\r\n".join(lines) + "\r\n").encode("latin-1")


COUNT = re.compile(r'data-count="(\w+)">(\d+)<')


def counts(page: str) -> dict[str, int]:
    return {k: int(v) for k, v in COUNT.findall(page)}


def table_rows(page: str, section: str) -> list[list[str]]:
    """The cells of the table in ``<section id=section>``, as text."""
    found = re.search(rf'<section class="import-table" id="{section}">(.*?)</section>', page,
                      re.S)
    assert found, f"no section {section}"
    rows = re.findall(r"<tr>(.*?)</tr>", found.group(1), re.S)
    return [[html.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", r, re.S)]
            for r in rows if "<td" in r]


def confirm_form(page: str) -> dict[str, str]:
    form = re.search(r'<form method="post" action="[^"]+" class="confirm"[^>]*>(.*?)</form>',
                     page, re.S)
    assert form, "no confirmation form"
    fields = {k: html.unescape(v) for k, v in
              re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', form.group(1))}
    assert fields.pop("csrf_token")  # Console.post sends the session's own
    return fields


def upload(console: Console, name: str, data: bytes, filename: str = "kunden.csv"
           ) -> httpx.Response:
    return console.post(f"/campaigns/{name}/import",
                        files={"file": (filename, data, "text/csv")})


def stored(store: Store, name: str) -> dict[str, dict[str, str]]:
    return {c.number: dict(c.fields) for c in store.contacts(name)}


def import_lines(store: Store) -> list[accounts.AuditLine]:
    return [a for a in accounts.audit_lines(store.engine) if a.action == "contacts.import"]


@pytest.fixture
def marketer(web: Served, make_user: Callable[..., tuple[str, str]],
             login: Callable[[str, str, str], Console]) -> Console:
    return login(web.url, *make_user("marketer"))


def test_preview_shows_everything_before_anything_is_stored_then_imports_once(
        web: Served, store: Store, marketer: Console, make_campaign: Callable[..., str]
) -> None:
    name = make_campaign(store, n=5)
    store.add_dnc(number(11), "test", "test")
    before = stored(store, name)
    form = marketer.get(f"/campaigns/{name}/import")
    assert form.status_code == 200 and 'type="file"' in form.text
    answer = upload(marketer, name, latin1_list())
    assert answer.status_code == 303, answer.text
    wizard = answer.headers["location"]
    assert re.fullmatch(rf"/campaigns/{name}/import/[\w-]+", wizard)

    page = marketer.get(wizard)
    assert page.status_code == 200, page.text
    text = page.text
    assert "semicolon" in text and "Windows-1252 (Latin-1)" in text
    assert '<option value="Telefon" selected>' in text  # the phone column, guessed
    assert counts(text) == {"rows": 7, "new": 3, "rejected": 2, "duplicate_rows": 1,
                            "stored": 1, "dnc": 1}
    rejected = table_rows(text, "rejected")
    assert [(r[0], r[1]) for r in rejected] == [("3", "Telefon"), ("7", "Telefon")]
    assert "'12ab' is not a number" in rejected[0][2] and "empty 'Telefon'" in rejected[1][2]
    assert table_rows(text, "duplicates")[0][:2] == ["4", "Telefon"]
    assert "duplicate of " + number(10) in table_rows(text, "duplicates")[0][2]
    assert table_rows(text, "stored") == [["5", "Telefon", number(1)]]
    assert table_rows(text, "dnc") == [["6", "Telefon", number(11)]]
    assert stored(store, name) == before and not import_lines(store)  # nothing stored yet

    # Map Vorname to {first_name}: the preview shows the Latin-1 names decoded.
    mapped = marketer.get(wizard, params={"phone": "Telefon", "timezone": "", "country": "",
                                          "field": ["first_name", ""],
                                          "header": ["Vorname", ""]})
    assert mapped.status_code == 200, mapped.text
    assert [r[3] for r in table_rows(mapped.text, "sample")] == ["Jérôme", "Jürgen", "Ørjan"]
    sent = confirm_form(mapped.text)
    assert sent["sha256"] and sent["digest"] and '"first_name":"Vorname"' in sent["columns"]
    assert stored(store, name) == before

    done = marketer.post(wizard, sent)
    assert done.status_code == 303 and done.headers["location"] == wizard
    after = stored(store, name)
    assert set(after) - set(before) == {number(10), number(11), number(12)}
    assert after[number(10)]["first_name"] == "Jérôme"
    assert after[number(12)]["Stadt"] == "Genève"
    again = marketer.post(wizard, sent)  # a double click, a reload, a retry
    assert again.status_code == 303
    assert stored(store, name) == after
    lines = import_lines(store)
    assert len(lines) == 1 and lines[0].subject == name
    assert lines[0].detail["added"] == 3 and lines[0].detail["rejected"] == 2
    result = marketer.get(wizard)
    assert result.status_code == 200 and 'id="import-done"' in result.text
    assert counts(result.text) == {"added": 3, "rejected": 2, "duplicate_rows": 1,
                                   "already": 1, "dnc": 1}
    assert [r[0] for r in table_rows(result.text, "rejected")] == ["3", "7"]


def test_the_confirmation_imports_only_what_was_previewed(
        web: Served, store: Store, marketer: Console, make_campaign: Callable[..., str]
) -> None:
    name = make_campaign(store, n=2)
    wizard = upload(marketer, name, latin1_list()).headers["location"]
    sent = confirm_form(marketer.get(wizard).text)
    before = stored(store, name)

    other = marketer.post(wizard, {**sent, "sha256": "0" * 64})
    assert other.status_code == 409 and "SHA-256 differs" in other.text
    forged = marketer.post(wizard, {**sent, "digest": "f" * 64})
    assert forged.status_code == 409 and "changed since the preview" in forged.text
    assert stored(store, name) == before

    # Someone adds a previewed number meanwhile: the old preview is no longer true.
    store.add_contacts(name, [c for c in _read(store, name) if c.number == number(12)])
    moved = marketer.post(wizard, sent)
    assert moved.status_code == 409, moved.text
    assert "changed since the preview" in moved.text
    assert counts(moved.text)["new"] == 2 and counts(moved.text)["stored"] == 2
    assert set(stored(store, name)) == set(before) | {number(12)}
    fresh = confirm_form(moved.text)
    assert fresh["digest"] != sent["digest"]
    assert marketer.post(wizard, fresh).status_code == 303
    assert set(stored(store, name)) == set(before) | {number(10), number(11), number(12)}
    assert len(import_lines(store)) == 1


def _read(store: Store, name: str) -> list[NewContact]:
    campaign, _, _ = store.campaign(name)
    return read_upload(latin1_list(), "elsewhere.csv", campaign,
                       ContactColumns(phone="Telefon")).contacts


def test_two_confirmations_at_once_import_once(
        web: Served, store: Store, marketer: Console, make_campaign: Callable[..., str]
) -> None:
    name = make_campaign(store, n=2)
    wizard = upload(marketer, name, latin1_list()).headers["location"]
    sent = confirm_form(marketer.get(wizard).text)
    answers: list[int] = []

    def go() -> None:
        with httpx.Client(base_url=web.url, cookies=marketer.client.cookies,
                          timeout=20) as c:
            answers.append(c.post(wizard, data={"csrf_token": marketer.csrf, **sent}
                                  ).status_code)

    threads = [threading.Thread(target=go) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert answers == [303] * 4
    assert len(store.contacts(name)) == 2 + 3
    lines = import_lines(store)
    assert len(lines) == 1 and lines[0].detail["added"] == 3


def test_who_may_import(web: Served, store: Store, make_user: Callable[..., tuple[str, str]],
                        login: Callable[[str, str, str], Console], marketer: Console,
                        make_campaign: Callable[..., str]) -> None:
    name = make_campaign(store, n=1)
    page = marketer.get(f"/campaigns/{name}").text
    assert f'href="/campaigns/{name}/import"' in page
    wizard = upload(marketer, name, latin1_list()).headers["location"]
    sent = confirm_form(marketer.get(wizard).text)
    for role in ("viewer", "designer"):
        other = login(web.url, *make_user(role))
        assert f"/campaigns/{name}/import" not in other.get(f"/campaigns/{name}").text
        assert other.get(f"/campaigns/{name}/import").status_code == 403
        assert upload(other, name, latin1_list()).status_code == 403
        assert other.get(wizard).status_code == 403
        assert other.post(wizard, sent).status_code == 403
    with httpx.Client(base_url=web.url, follow_redirects=False) as anonymous:
        gone = anonymous.get(f"/campaigns/{name}/import")
        assert gone.status_code == 303 and gone.headers["location"].startswith("/login")
    # The session's cookie without the form's token: refused, nothing staged or stored.
    no_token = marketer.client.post(wizard, data=sent)
    assert no_token.status_code == 403
    staged = marketer.client.post(f"/campaigns/{name}/import",
                                  files={"file": ("x.csv", latin1_list(), "text/csv")})
    assert staged.status_code == 403
    assert len(store.contacts(name)) == 1
    admin = login(web.url, *make_user("admin"))
    assert admin.post(wizard, sent).status_code == 303
    assert len(store.contacts(name)) == 1 + 4  # numbers 10, 1, 11 (on DNC), 12


def test_hostile_uploads_get_clear_answers(
        web: Served, store: Store, marketer: Console, make_campaign: Callable[..., str]
) -> None:
    name = make_campaign(store, n=1)
    binary = upload(marketer, name, b"phone\n+12125550100\n\x00\x01PK\x03\x04", "x.xlsx")
    assert binary.status_code == 422 and "x.xlsx:3:1" in binary.text
    assert "not text" in binary.text
    empty = upload(marketer, name, b"")
    assert empty.status_code == 422 and "choose a CSV file" in empty.text
    blank = upload(marketer, name, b"\n\n  \n")
    assert blank.status_code == 422 and "empty file" in blank.text
    huge = raw_post(web, marketer, f"/campaigns/{name}/import", 21 * 2**20)
    assert huge.startswith(b"HTTP/1.1 413 ") and b"over 20 MiB" in huge
    assert marketer.get(f"/campaigns/{name}/import/nope").status_code == 404
    assert marketer.get(f"/campaigns/{name}/import/..%2F..%2Fetc").status_code == 404
    assert marketer.get("/campaigns/nope/import").status_code == 404

    # No column looks like a phone column: the page asks for one, nothing to confirm.
    wizard = upload(marketer, name, b"a,b\n1,2\n").headers["location"]
    unmapped = marketer.get(wizard)
    assert unmapped.status_code == 422
    assert "choose the column that holds the phone numbers" in unmapped.text
    assert 'id="confirm-form"' not in unmapped.text
    missing = marketer.get(wizard, params={"phone": "nope"})
    assert missing.status_code == 422 and "no column &#39;nope&#39;" in missing.text
    badname = marketer.get(wizard, params={"phone": "a", "field": "first name",
                                           "header": "b"})
    assert badname.status_code == 422 and "letters, digits and _ only" in badname.text
    hijack = marketer.get(wizard, params={"phone": "a", "field": "phone", "header": "b"})
    assert hijack.status_code == 422 and "&#39;phone&#39; is chosen above" in hijack.text
    good = marketer.get(wizard, params={"phone": "a"})
    assert good.status_code == 200 and counts(good.text)["rejected"] == 1
    sent = confirm_form(upload_and_preview(marketer, name))
    assert marketer.post(f"/campaigns/{name}/import/nope", sent).status_code == 404
    assert marketer.post(wizard, {**sent, "columns": "{not json"}).status_code == 422
    assert len(store.contacts(name)) == 1
    assert csrf_of(marketer.get(f"/campaigns/{name}/import").text)


def upload_and_preview(console: Console, name: str) -> str:
    wizard = upload(console, name, latin1_list()).headers["location"]
    return console.get(wizard).text


def raw_post(web: Served, console: Console, path: str, declared: int) -> bytes:
    """A POST that declares ``declared`` bytes and sends a few: the answer must come
    from the Content-Length alone (the body is never read)."""
    host, port = web.url.removeprefix("http://").split(":")
    cookie = "; ".join(f"{k}={v}" for k, v in console.client.cookies.items())
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\n"
            "Content-Type: multipart/form-data; boundary=b\r\n"
            f"Content-Length: {declared}\r\n\r\n--b\r\n")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head.encode())
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"</html>"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    return answer


def test_an_upload_left_unconfirmed_expires(
        web: Served, store: Store, marketer: Console, make_campaign: Callable[..., str]
) -> None:
    name = make_campaign(store, n=1)
    old = upload(marketer, name, latin1_list()).headers["location"]
    sent = confirm_form(marketer.get(old).text)
    with store.engine.begin() as conn:  # a day and a bit later
        conn.execute(update(imports.imports).values(
            created_at=imports.imports.c.created_at - imports.KEEP - timedelta(minutes=1)))
    fresh = upload(marketer, name, latin1_list()).headers["location"]  # purges the old
    gone = marketer.get(old)
    assert gone.status_code == 404 and "upload the file again" in gone.text
    assert marketer.post(old, sent).status_code == 404
    assert len(store.contacts(name)) == 1
    assert marketer.get(fresh).status_code == 200


def test_the_mapping_is_guessed_from_the_campaign_and_common_names() -> None:
    plain = ContactColumns()
    assert imports.guess_columns(plain, ["Name", "Phone Number"]).phone == "Phone Number"
    assert imports.guess_columns(plain, ["Nom", "Numéro", "Ville"]).phone == "Numéro"
    assert imports.guess_columns(plain, ["a", "b"]).phone == "phone"  # not there: ask
    own = ContactColumns.model_validate({"phone": "Tel", "timezone": "TZ",
                                         "first_name": "Vorname"})
    assert imports.guess_columns(own, ["Tel", "Vorname", "TZ"]) == own
    partial = imports.guess_columns(own, ["Telefon", "Vorname"])
    assert partial.phone == "Telefon" and partial.timezone is None
    assert partial.field_map() == {"first_name": "Vorname"}
