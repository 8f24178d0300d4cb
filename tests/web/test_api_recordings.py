"""/v1/recordings over real HTTP: listed from the records, the audio by record id with
range requests (206, Content-Range, 416), and only from inside the recordings folder: a
stored path that leads out of it (.., a symlink, an absolute path) is a 404."""

from __future__ import annotations

import os
import wave
from datetime import UTC, datetime
from pathlib import Path

from autocall.campaign.model import Dial, Outcome
from autocall.telephony.record import CallRecord, CallStatus
from autocall.web.accounts import Role
from tests.web.api_fixtures import (  # noqa: F401
    Live,
    assert_problem,
    campaign_body,
    live_server,
    us_number,
)


def _wav(path: Path, seconds: float = 1.0) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(bytes(range(256)) * int(16000 * seconds / 256))
    return path.read_bytes()


def _attempts_with(live: Live, paths: list[str | None]) -> list[int]:
    crm = live.client(Role.MARKETER)
    crm.post("/v1/campaigns", json=campaign_body())
    rows = "phone\n" + "".join(f"{us_number(i)}\n" for i in range(len(paths)))
    crm.post("/v1/campaigns/spring/contacts", content=rows.encode(),
             headers={"content-type": "text/csv"})
    now = datetime.now(UTC)
    claims = live.store.claim("spring", "node-a", now, len(paths),
                              lambda c: Dial(c.id, "+12025550100"))
    for claim, path in zip(claims, paths, strict=True):
        live.store.finish(claim.attempt_id, CallRecord(
            CallStatus.COMPLETED, 200, started_at=now, answered_at=now, ended_at=now,
            recording=path, outcome=Outcome.COMPLETED.value), None)
    return [c.attempt_id for c in claims]


def test_audio_by_id_with_ranges(live: Live, tmp_path: Path) -> None:
    inside = live.recordings / "spring" / "call-1.wav"
    audio = _wav(inside)
    outside = tmp_path / "secret.wav"
    _wav(outside)
    link = live.recordings / "spring" / "link.wav"
    os.symlink(outside, link)
    ids = _attempts_with(live, [str(inside), str(outside), str(link),
                                str(live.recordings / ".." / "secret.wav"),
                                str(live.recordings / "spring" / "gone.wav"), None])
    crm = live.client(Role.VIEWER)
    listed = crm.get("/v1/recordings", params={"campaign": "spring"}).json()["items"]
    assert [r["id"] for r in listed] == [f"attempt-{i}" for i in ids[:5]]
    assert [r["available"] for r in listed] == [True, False, False, False, False]
    meta = crm.get(f"/v1/recordings/attempt-{ids[0]}").json()
    assert meta["size"] == len(audio) and meta["number"] == us_number(0)
    assert meta["audio"] == f"/v1/recordings/attempt-{ids[0]}/audio"

    whole = crm.get(meta["audio"])
    assert whole.status_code == 200 and whole.content == audio
    assert whole.headers["content-type"] == "audio/wav"
    assert whole.headers["accept-ranges"] == "bytes"
    part = crm.get(meta["audio"], headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == audio[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(audio)}"
    tail = crm.get(meta["audio"], headers={"Range": "bytes=-44"})
    assert tail.status_code == 206 and tail.content == audio[-44:]
    beyond = crm.get(meta["audio"], headers={"Range": f"bytes={len(audio) + 10}-"})
    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == f"bytes */{len(audio)}"
    assert crm.get(meta["audio"], headers={"Range": "bytes=9-2"}).status_code in (400, 416)

    for rid in ids[1:5]:  # outside the folder, through a symlink, by .., or gone
        assert_problem(crm.get(f"/v1/recordings/attempt-{rid}/audio"), 404)
    assert_problem(crm.get(f"/v1/recordings/attempt-{ids[5]}"), 404)  # no recording
    for bad in ("attempt-999999", "x-1", "..%2F..%2Fetc%2Fpasswd", "attempt-1%00"):
        assert_problem(crm.get(f"/v1/recordings/{bad}/audio"), 404)
    assert_problem(live.client(Role.DESIGNER).get(meta["audio"]), 403)
    assert_problem(live.client(None).get(meta["audio"]), 401)
    assert crm.get("/v1/recordings", params={"kind": "call"}).json()["items"] == []
    assert_problem(crm.get("/v1/recordings", params={"kind": "file"}), 422)


def test_voicemail_from_inbound_calls(live: Live) -> None:
    message = live.recordings / "inbound" / "vm.wav"
    audio = _wav(message, 0.5)
    now = datetime.now(UTC)
    live.store.add_call(CallRecord(CallStatus.COMPLETED, 200, started_at=now, answered_at=now,
                                   ended_at=now, recording=str(message), direction="inbound",
                                   call_id="vm-1@test", number="+12122000042"))
    crm = live.client(Role.MARKETER)
    (item,) = crm.get("/v1/recordings", params={"kind": "call"}).json()["items"]
    assert item["voicemail"] is True and item["kind"] == "call" and item["available"]
    got = crm.get(item["audio"], headers={"Range": "bytes=0-43"})
    assert got.status_code == 206 and got.content == audio[:44]
