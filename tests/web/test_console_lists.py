"""The console's recordings and do-not-call pages over real HTTP on a real store (SQLite
and PostgreSQL): who sees and who may change, recordings played from the API, deleted
one by one and by the retention setting (never a file outside the recordings folder),
and the DNC list added to, checked, uploaded and removed from, audited like the API."""

from __future__ import annotations

import json
import wave
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from consoletest import Console, Served
from sqlalchemy import select

from autocall.campaign.model import Dial, Outcome
from autocall.campaign.store import Store
from autocall.config import Settings
from autocall.telephony.record import CallRecord, CallStatus
from autocall.web import dnc as dnc_list
from autocall.web.accounts import Role, audit_log

Login = Callable[[str, str, str], Console]


def _wav(path: Path, seconds: float = 1.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x10\x00" * int(8000 * seconds))
    return path


def _recorded(store: Store, campaign: str, paths: list[Path], started: list[datetime]
              ) -> list[int]:
    """Attempts of ``campaign`` finished with these recordings, started at these times."""
    claims = store.claim(campaign, "node-a", datetime.now(UTC), len(paths),
                         lambda c: Dial(c.id, "+12025550100"))
    assert len(claims) == len(paths)
    for claim, path, at in zip(claims, paths, started, strict=True):
        store.finish(claim.attempt_id, CallRecord(
            CallStatus.COMPLETED, 200, started_at=at, answered_at=at, ended_at=at,
            recording=str(path), outcome=Outcome.COMPLETED.value), None)
    return [c.attempt_id for c in claims]


def _audit(store: Store, action: str) -> list[tuple[str, str | None, dict[str, object]]]:
    with store.engine.connect() as conn:
        rows = conn.execute(select(audit_log).where(audit_log.c.action == action)
                            .order_by(audit_log.c.id)).all()
    return [(r.actor, r.subject, json.loads(r.detail)) for r in rows]


def test_recordings_play_delete_and_retention(
        store: Store, serve: Callable[..., Served], tmp_path: Path,
        make_user: Callable[..., tuple[str, str]], login: Login,
        make_campaign: Callable[..., str]) -> None:
    folder = tmp_path / "recordings"
    settings = Settings(recordings_dir=folder, recording_retention_days=30)
    web = serve(store, settings=settings)
    name = make_campaign(store, n=4)
    now = datetime.now(UTC)
    fresh = _wav(folder / name / "fresh.wav", 1.5)
    old = _wav(folder / name / "old.wav")
    outside = _wav(tmp_path / "elsewhere" / "old-outside.wav")  # also old: must survive
    kept = _wav(folder / name / "kept.wav")
    ids = _recorded(store, name, [fresh, old, outside, kept],
                    [now, now - timedelta(days=40), now - timedelta(days=41),
                     now - timedelta(days=2)])

    viewer = login(web.url, *make_user(Role.VIEWER))
    page = viewer.get("/recordings")
    assert page.status_code == 200, page.text
    for i in (ids[0], ids[1], ids[3]):
        assert f'src="/v1/recordings/attempt-{i}/audio"' in page.text
        assert f'download="attempt-{i}.wav"' in page.text
    assert f"/v1/recordings/attempt-{ids[2]}/audio" not in page.text  # outside: no file
    assert 'id="expired-count">1<' in page.text  # only the old one inside the folder
    assert "/delete" not in page.text and "btn-expire" not in page.text  # a viewer's page
    audio = viewer.get(f"/v1/recordings/attempt-{ids[0]}/audio")  # the page's <audio>
    assert audio.status_code == 200 and audio.content == fresh.read_bytes()
    refused = viewer.post(f"/recordings/attempt-{ids[0]}/delete")
    assert refused.status_code == 403 and fresh.exists()
    assert viewer.post("/recordings/expire").status_code == 403 and old.exists()

    designer = login(web.url, *make_user(Role.DESIGNER))
    assert designer.get("/recordings").status_code == 403
    assert designer.get(f"/v1/recordings/attempt-{ids[0]}/audio").status_code == 403

    marketer = login(web.url, *make_user(Role.MARKETER, "mara"))
    stale = Console(marketer.client, "not-the-token")
    assert stale.post(f"/recordings/attempt-{ids[0]}/delete").status_code == 403
    assert fresh.exists()
    done = marketer.post(f"/recordings/attempt-{ids[0]}/delete")
    assert done.status_code == 303, done.text
    assert not fresh.exists()
    after = marketer.get(done.headers["location"])
    assert f"recording attempt-{ids[0]} deleted" in after.text
    assert f"/v1/recordings/attempt-{ids[0]}/audio" not in after.text
    assert "file gone" in after.text
    assert marketer.get(f"/v1/recordings/attempt-{ids[0]}/audio").status_code == 404
    again = marketer.post(f"/recordings/attempt-{ids[0]}/delete")
    assert "had no file to delete" in marketer.get(again.headers["location"]).text
    assert marketer.post("/recordings/attempt-999999/delete").status_code == 404
    assert marketer.post("/recordings/..%2F..%2Fetc/delete").status_code == 404

    expire = marketer.post("/recordings/expire")
    assert expire.status_code == 303
    assert "1 recording(s) older than 30 days deleted" in marketer.get(
        expire.headers["location"]).text
    assert not old.exists()
    assert outside.exists() and kept.exists()
    assert [(a, s) for a, s, _ in _audit(store, "recording.delete")] == [
        ("user:mara", f"attempt-{ids[0]}"), ("user:mara", f"attempt-{ids[1]}")]
    assert _audit(store, "recording.delete")[1][2]["reason"] == "older than 30 days"


def test_expire_without_a_retention_setting_deletes_nothing(
        store: Store, serve: Callable[..., Served], tmp_path: Path,
        make_user: Callable[..., tuple[str, str]], login: Login,
        make_campaign: Callable[..., str]) -> None:
    folder = tmp_path / "recordings"
    web = serve(store, settings=Settings(recordings_dir=folder))
    name = make_campaign(store, n=1)
    old = _wav(folder / name / "old.wav")
    _recorded(store, name, [old], [datetime.now(UTC) - timedelta(days=4000)])
    admin = login(web.url, *make_user(Role.ADMIN))
    assert "No retention setting" in admin.get("/recordings").text
    refused = admin.post("/recordings/expire")
    assert refused.status_code == 409
    assert "AUTOCALL_RECORDING_RETENTION_DAYS" in refused.text
    assert old.exists()


def test_api_deletes_a_recording(store: Store, serve: Callable[..., Served], tmp_path: Path,
                                 make_token: Callable[..., str],
                                 make_campaign: Callable[..., str]) -> None:
    folder = tmp_path / "recordings"
    web = serve(store, settings=Settings(recordings_dir=folder))
    name = make_campaign(store, n=1)
    path = _wav(folder / name / "a.wav")
    (rid,) = _recorded(store, name, [path], [datetime.now(UTC)])
    viewer = {"Authorization": f"Bearer {make_token(Role.VIEWER, 'v')}"}
    crm = {"Authorization": f"Bearer {make_token(Role.MARKETER, 'crm')}"}
    url = f"{web.url}/v1/recordings/attempt-{rid}"
    assert httpx.delete(url, headers=viewer).status_code == 403
    gone = httpx.delete(url, headers=crm)
    assert gone.status_code == 200, gone.text
    assert gone.json()["available"] is False and not path.exists()
    twice = httpx.delete(url, headers=crm)
    assert twice.status_code == 404
    assert twice.headers["content-type"].startswith("application/problem+json")
    assert [s for _, s, _ in _audit(store, "recording.delete")] == [f"attempt-{rid}"]


def test_settings_refuse_a_bad_retention(monkeypatch: pytest.MonkeyPatch) -> None:
    for bad in ("0", "-3", "90d", "ninety"):
        monkeypatch.setenv("AUTOCALL_RECORDING_RETENTION_DAYS", bad)
        with pytest.raises(ValueError, match="AUTOCALL_RECORDING_RETENTION_DAYS"):
            Settings.from_env()
    monkeypatch.setenv("AUTOCALL_RECORDING_RETENTION_DAYS", "90")
    assert Settings.from_env().recording_retention_days == 90
    monkeypatch.delenv("AUTOCALL_RECORDING_RETENTION_DAYS")
    assert Settings.from_env().recording_retention_days is None


def test_dnc_page_add_check_upload_remove(
        store: Store, served: Served, make_user: Callable[..., tuple[str, str]],
        login: Login) -> None:
    viewer = login(served.url, *make_user(Role.VIEWER))
    empty = viewer.get("/dnc")
    assert empty.status_code == 200 and "The list is empty." in empty.text
    assert 'action="/dnc/add"' not in empty.text  # a viewer only reads
    assert viewer.post("/dnc/add", {"number": "+12125550100"}).status_code == 403
    assert dnc_list.entry(store.engine, "+12125550100") is None

    mara = login(served.url, *make_user(Role.MARKETER, "mara"))
    added = mara.post("/dnc/add", {"number": "(212) 555-0100", "region": "US"})
    assert added.status_code == 303, added.text
    shown = mara.get(added.headers["location"])
    assert "+12125550100 added" in shown.text
    assert 'id="check-result"' in shown.text and "on the list" in shown.text
    assert dnc_list.entry(store.engine, "+12125550100") is not None
    again = mara.get(mara.post("/dnc/add", {"number": "+1 212 555 0100"}
                               ).headers["location"])
    assert "already on the list" in again.text
    bad = mara.post("/dnc/add", {"number": "12"})
    assert bad.status_code == 422 and "is not a valid phone number" in bad.text

    upload = mara.client.post("/dnc/upload", data={"csrf_token": mara.csrf, "region": "GB"},
                              files={"file": ("optouts.csv", (
                                  "phone,name\n+12125550101,Ann\n020 7946 0018,Bo\n"
                                  "+12125550100,Cy\nnot a number,Di\n").encode("latin-1"),
                                  "text/csv")})
    assert upload.status_code == 200, upload.text
    assert ("optouts.csv: 3 number(s) read, 2 added, 1 already listed, 1 line(s) rejected"
            in upload.text)
    assert "optouts.csv:5:" in upload.text and "not a number" in upload.text
    assert dnc_list.entry(store.engine, "+442079460018") is not None  # GB, national form
    listed = viewer.get("/dnc")
    for n in ("+12125550100", "+12125550101", "+442079460018"):
        assert f'data-number="{n}"' in listed.text
    checked = viewer.get("/dnc", params={"number": "+1 212 555 0199"})
    assert "+12125550199</b> is <b class=\"ok\">not on the list" in checked.text
    nonsense = viewer.get("/dnc", params={"number": "hello"})
    assert nonsense.status_code == 200 and "is not a valid phone number" in nonsense.text

    removed = mara.post("/dnc/remove", {"number": "+12125550101"})
    assert removed.status_code == 303
    assert dnc_list.entry(store.engine, "+12125550101") is None
    assert "+12125550101 removed" in mara.get(removed.headers["location"]).text
    missing = mara.post("/dnc/remove", {"number": "+12125550101"})
    assert missing.status_code == 404 and "is not on the do-not-call list" in missing.text

    designer = login(served.url, *make_user(Role.DESIGNER))
    assert designer.get("/dnc").status_code == 403
    assert [(a, s) for a, s, _ in _audit(store, "dnc.add")] == [("user:mara", "+12125550100")]
    assert [(a, s, d["added"]) for a, s, d in _audit(store, "dnc.upload")] == [
        ("user:mara", "optouts.csv", 2)]
    assert [s for _, s, _ in _audit(store, "dnc.remove")] == ["+12125550101"]


def test_dnc_upload_refuses_what_is_not_text(
        store: Store, served: Served, make_user: Callable[..., tuple[str, str]],
        login: Login) -> None:
    mara = login(served.url, *make_user(Role.MARKETER))
    binary = mara.client.post("/dnc/upload", data={"csrf_token": mara.csrf},
                              files={"file": ("list.xlsx", b"PK\x03\x04\x00\x00" * 50,
                                              "application/octet-stream")})
    assert binary.status_code == 422, binary.text
    assert 'id="error"' in binary.text
    empty = mara.client.post("/dnc/upload", data={"csrf_token": mara.csrf},
                             files={"file": ("none.txt", b"", "text/plain")})
    assert empty.status_code == 422 and "is empty" in empty.text
    no_token = mara.client.post("/dnc/upload", files={"file": ("a.txt", b"+12125550100\n",
                                                               "text/plain")})
    assert no_token.status_code == 403
    assert dnc_list.page(store.engine, None, 10)[1] == 0


def test_ids_beyond_the_column_are_not_found(
        store: Store, serve: Callable[..., Served], tmp_path: Path,
        make_token: Callable[..., str], make_user: Callable[..., tuple[str, str]],
        login: Login) -> None:
    """An id past INTEGER's range is a 404 (PostgreSQL would refuse the query: a 500)."""
    web = serve(store, settings=Settings(recordings_dir=tmp_path))
    crm = {"Authorization": f"Bearer {make_token(Role.MARKETER, 'crm')}"}
    huge = "attempt-999999999999999999"
    for method in ("GET", "DELETE"):
        answer = httpx.request(method, f"{web.url}/v1/recordings/{huge}", headers=crm)
        assert answer.status_code == 404, answer.text
    listed = httpx.get(f"{web.url}/v1/recordings", params={"after": 10**15}, headers=crm)
    assert listed.status_code == 200 and listed.json()["items"] == []
    admin = login(web.url, *make_user(Role.ADMIN))
    assert admin.post(f"/recordings/{huge}/delete").status_code == 404
    assert admin.get("/recordings", params={"before": 10**15}).status_code == 422
