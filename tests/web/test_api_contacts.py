"""POST /v1/campaigns/{name}/contacts over real HTTP: the import's rules (encoding,
delimiter, E.164, dedupe) and its reject report by row, column and field; the dry run
that stores nothing; the size limit; a retried upload that imports once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import func, insert, select

from autocall.web.accounts import Role, audit_log
from autocall.web.api.common import MAX_UPLOAD
from autocall.web.idempotency import STALE, fingerprint, idempotency, purge
from tests.web.api_fixtures import (  # noqa: F401
    Live,
    assert_problem,
    campaign_body,
    live_server,
    us_number,
)

# Semicolons and Latin-1, as a European spreadsheet exports: row 3 has no valid
# number, row 4 repeats row 2, row 5 has a field too many.
LATIN1 = ("phone;first_name\n"
          f"{us_number(1)};Zoë\n"
          "12;Bad\n"
          f"{us_number(1)};Again\n"
          f"{us_number(2)};Two;extra\n"
          f"{us_number(3)};Jérôme\n").encode("latin-1")


def _campaign(live: Live) -> httpx.Client:
    crm = live.client(Role.MARKETER, "crm")
    assert crm.post("/v1/campaigns", json=campaign_body()).status_code == 201
    return crm


def test_upload_reports_rejected_rows_and_dry_run_stores_nothing(live: Live) -> None:
    crm = _campaign(live)
    files = {"file": ("crm export.csv", LATIN1, "text/csv")}
    preview = crm.post("/v1/campaigns/spring/contacts", params={"dry_run": "true"},
                       files=files)
    assert preview.status_code == 200, preview.text
    got = preview.json()
    assert got["dry_run"] and got["encoding"] in ("cp1252", "latin-1")
    assert got["delimiter"] == ";" and got["header"] == ["phone", "first_name"]
    assert got["added"] == 2 and got["duplicates"] == 1 and got["rows"] == 5
    assert [(r["row"], r["column"], r["field"]) for r in got["rejected"]] == [
        (3, 1, "phone"), (5, 0, None)]
    assert "not a valid number" in got["rejected"][0]["reason"] or \
        "not a number" in got["rejected"][0]["reason"]
    assert [(r["row"], r["field"]) for r in got["duplicate_rows"]] == [(4, "phone")]
    assert "row 2" in got["duplicate_rows"][0]["reason"] or \
        ":2" in got["duplicate_rows"][0]["reason"]
    assert crm.get("/v1/campaigns/spring/contacts").json()["items"] == []

    with live.store.engine.connect() as conn:
        assert conn.execute(select(audit_log.c.action)).scalars().all() == ["campaign.create"]
    done = crm.post("/v1/campaigns/spring/contacts", files=files).json()
    assert not done["dry_run"] and done["added"] == 2 and done["duplicates"] == 1
    with live.store.engine.connect() as conn:
        line = conn.execute(select(audit_log).where(
            audit_log.c.action == "contacts.import")).one()
    assert line.actor == "token:crm" and line.subject == "spring"
    assert '"added": 2' in line.detail and '"source": "crm export.csv"' in line.detail
    stored = crm.get("/v1/campaigns/spring/contacts").json()["items"]
    assert [(c["number"], c["fields"]["first_name"]) for c in stored] == [
        (us_number(1), "Zoë"), (us_number(3), "Jérôme")]
    # importing again adds nothing; a preview now says both are stored already
    again = crm.post("/v1/campaigns/spring/contacts", params={"dry_run": True},
                     files=files).json()
    assert again["added"] == 0 and again["duplicates"] == 3
    # a text/csv body works as well, and pages come by id
    body = "phone\n" + "".join(f"{us_number(i)}\n" for i in range(10, 15))
    assert crm.post("/v1/campaigns/spring/contacts", content=body.encode(),
                    headers={"content-type": "text/csv"}).json()["added"] == 5
    page = crm.get("/v1/campaigns/spring/contacts", params={"limit": 4}).json()
    assert len(page["items"]) == 4
    rest = crm.get("/v1/campaigns/spring/contacts",
                   params={"limit": 4, "after": page["next"]}).json()
    assert len(rest["items"]) == 3 and rest["next"] is None


def test_unreadable_files_are_problems_with_their_row(live: Live) -> None:
    crm = _campaign(live)
    post = crm.post
    no_phone = assert_problem(post("/v1/campaigns/spring/contacts", content=b"tel,name\n1,2\n",
                                   headers={"content-type": "text/csv"}), 422)
    assert no_phone["errors"][0]["row"] == 1 and "phone" in str(no_phone["detail"])  # type: ignore[index]
    binary = assert_problem(post("/v1/campaigns/spring/contacts",
                                 content=b"phone\n+12122000001\n\x00\x01\x02PK",
                                 headers={"content-type": "text/csv"}), 422)
    assert binary["errors"][0]["row"] == 3  # type: ignore[index]
    assert_problem(post("/v1/campaigns/spring/contacts", content=b"",
                        headers={"content-type": "text/csv"}), 422)
    assert_problem(post("/v1/campaigns/spring/contacts", json={"phone": "x"}), 415)
    assert_problem(post("/v1/campaigns/spring/contacts", files={"other": ("a", b"x")}), 422)
    assert_problem(post("/v1/campaigns/nope/contacts", content=b"phone\n",
                        headers={"content-type": "text/csv"}), 404)
    big = b"phone\n" + b"+12122000001\n" * (MAX_UPLOAD // 13 + 10)
    assert_problem(post("/v1/campaigns/spring/contacts", content=big,
                        headers={"content-type": "text/csv"}), 413)

    def chunks() -> object:  # no Content-Length: the stream is cut at the limit
        for _ in range(MAX_UPLOAD // 65536 + 4):
            yield b"x" * 65536

    assert_problem(post("/v1/campaigns/spring/contacts", content=chunks(),
                        headers={"content-type": "text/csv"}), 413)
    assert crm.get("/v1/campaigns/spring").json()["summary"]["total"] == 0


def test_a_retried_upload_imports_once(live: Live) -> None:
    crm = _campaign(live)
    headers = {"Idempotency-Key": "import-2026-12-06"}
    files = {"file": ("list.csv", LATIN1, "text/csv")}
    first = crm.post("/v1/campaigns/spring/contacts", files=files, headers=headers)
    assert first.status_code == 200 and first.json()["added"] == 2
    with live.store.engine.begin() as conn:  # someone deletes a contact meanwhile
        from sqlalchemy import delete

        from autocall.campaign.store import contacts
        conn.execute(delete(contacts).where(contacts.c.number == us_number(1)))
    # a new multipart boundary, the same file: the same request, replayed, not re-done
    with ThreadPoolExecutor(2) as pool:
        retries = list(pool.map(lambda _: crm.post("/v1/campaigns/spring/contacts",
                                                   files=files, headers=headers), range(2)))
    for retry in retries:
        assert retry.status_code == 200 and retry.json() == first.json()
        assert retry.headers["idempotent-replayed"] == "true"
    assert crm.get("/v1/campaigns/spring").json()["summary"]["total"] == 1
    other = crm.post("/v1/campaigns/spring/contacts", headers=headers,
                     files={"file": ("list.csv", b"phone\n+12122000077\n", "text/csv")})
    assert_problem(other, 422)


def test_the_wizard_maps_other_headers(live: Live) -> None:
    crm = _campaign(live)
    german = f"Telefon;Vorname\n{us_number(5)};Jürgen\n".encode("cp1252")
    plain = crm.post("/v1/campaigns/spring/contacts", params={"dry_run": True},
                     content=german, headers={"content-type": "text/csv"})
    assert_problem(plain, 422)  # the campaign's mapping wants a 'phone' column
    mapped = crm.post("/v1/campaigns/spring/contacts",
                      params={"columns": '{"phone": "Telefon", "first_name": "Vorname"}'},
                      content=german, headers={"content-type": "text/csv"})
    assert mapped.status_code == 200 and mapped.json()["added"] == 1
    (stored,) = crm.get("/v1/campaigns/spring/contacts").json()["items"]
    assert stored["fields"]["first_name"] == "Jürgen"
    bad = assert_problem(crm.post("/v1/campaigns/spring/contacts",
                                  params={"columns": '{"phone": "x", "bad name": "y"}'},
                                  content=german, headers={"content-type": "text/csv"}), 422)
    assert bad["errors"][0]["loc"][:2] == ["query", "columns"]  # type: ignore[index]


def test_a_key_left_in_progress_by_a_dead_process(live: Live) -> None:
    """A fresh in-progress key is 409; one left for longer than STALE is taken over."""
    crm = _campaign(live)
    data = f"phone\n{us_number(8)}\n".encode()
    request = fingerprint("POST", "/v1/campaigns/spring/contacts", "spring",
                          campaign_columns_json(), data)
    now = datetime.now(UTC).replace(tzinfo=None)
    with live.store.engine.begin() as conn:
        for key, at in (("fresh", now), ("stale", now - STALE - timedelta(seconds=5))):
            conn.execute(insert(idempotency).values(principal="token:crm", key=key,
                                                    request=request, created_at=at))
    post = crm.post
    headers = {"content-type": "text/csv"}
    assert_problem(post("/v1/campaigns/spring/contacts", content=data,
                        headers={**headers, "Idempotency-Key": "fresh"}), 409)
    assert crm.get("/v1/campaigns/spring").json()["summary"]["total"] == 0
    took = post("/v1/campaigns/spring/contacts", content=data,
                headers={**headers, "Idempotency-Key": "stale"})
    assert took.status_code == 200 and took.json()["added"] == 1
    again = post("/v1/campaigns/spring/contacts", content=data,
                 headers={**headers, "Idempotency-Key": "stale"})
    assert again.headers["idempotent-replayed"] == "true"
    assert purge(live.store.engine, timedelta(0)) == 2
    with live.store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(idempotency)).scalar_one() == 0


def campaign_columns_json() -> str:
    from autocall.campaign.model import ContactColumns

    return ContactColumns().model_dump_json()
