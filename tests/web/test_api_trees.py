"""The designer's API over real HTTP (issue 17): validate at line and column with the
fix, draw, simulate, run cases, versions, publish rules and pinning, on a real uvicorn
server and a real store (SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from autocall.campaign.trees import TreeLibrary
from autocall.web.accounts import Role
from tests.web.api_fixtures import Live, live_server  # noqa: F401

PROMPTS = Path(__file__).resolve().parents[2] / "prompts"
TYPO = (PROMPTS / "reminder.yaml").read_text().replace("next: report", "next: reprot", 1)


def test_validate_finds_the_typo_at_its_line_with_the_fix(live: Live) -> None:
    designer = live.client(Role.DESIGNER)
    line = TYPO.splitlines().index("    next: reprot") + 1
    got = designer.post("/v1/trees/validate", json={"yaml": TYPO, "name": "reminder"}).json()
    assert not got["valid"] and got["errors"] == 1
    (finding,) = [f for f in got["findings"] if f["severity"] == "error"]
    assert (finding["line"], finding["column"]) == (line, 11)
    assert finding["fix"] == "report" and finding["replaces"] == "reprot"
    clean = designer.post("/v1/trees/validate",
                          json={"yaml": TYPO.replace("reprot", "report")}).json()
    assert clean["valid"] and clean["errors"] == 0
    broken = designer.post("/v1/trees/validate", json={"yaml": "nodes: [\n"}).json()
    assert not broken["valid"] and broken["findings"][0]["line"] >= 1
    assert not broken["loads"] and clean["loads"] and got["loads"]  # a typo'd next: loads


def test_simulate_step_by_step_and_run_the_cases(live: Live) -> None:
    designer = live.client(Role.DESIGNER)
    tree = (PROMPTS / "reminder.yaml").read_text()
    variables = {"first_name": "Carla", "amount": "42.50", "due_date": "Monday"}
    first = designer.post("/v1/trees/simulate", json={
        "yaml": tree, "inputs": [], "variables": variables}).json()
    assert first["path"][0] == "intro"
    assert any("Carla" in s["text"] for s in first["transcript"] if s["kind"] == "say")
    pressed = designer.post("/v1/trees/simulate", json={
        "yaml": tree, "inputs": ["1"], "variables": variables}).json()
    assert pressed["path"][:2] == ["intro", "ask_date"]
    cases = (PROMPTS / "reminder.cases.yaml").read_text()
    results = designer.post("/v1/trees/cases", json={"yaml": tree, "cases": cases}).json()
    assert results and all(r["passed"] for r in results), results
    wrong = cases.replace("outcome: promised-payment", "outcome: no-promise", 1)
    results = designer.post("/v1/trees/cases", json={"yaml": tree, "cases": wrong}).json()
    assert [r["passed"] for r in results].count(False) == 1
    bad = designer.post("/v1/trees/simulate", json={"yaml": TYPO})
    assert bad.status_code == 200  # a dangling next: loads; the run says where it ends
    unloadable = designer.post("/v1/trees/simulate", json={"yaml": "start: [x"})
    assert unloadable.status_code == 422
    assert unloadable.headers["content-type"] == "application/problem+json"


def test_the_graph_is_svg(live: Live) -> None:
    got = live.client(Role.VIEWER).post(
        "/v1/trees/graph", json={"yaml": (PROMPTS / "reminder.yaml").read_text()})
    assert got.status_code == 200 and got.headers["content-type"] == "image/svg+xml"
    assert b"<svg" in got.content and b"ask_date" in got.content


def test_versions_drafts_publish_restore_diff_and_roles(live: Live) -> None:
    designer, viewer = live.client(Role.DESIGNER), live.client(Role.VIEWER)
    marketer = live.client(Role.MARKETER)
    draft = designer.post("/v1/trees/reminder/versions",
                          json={"yaml": TYPO, "comment": "first try"})
    assert draft.status_code == 201 and draft.json()["errors"] == 1
    refused = designer.post("/v1/trees/reminder/versions/1/publish")
    assert refused.status_code == 409 and "error" in refused.json()["detail"]
    fixed = TYPO.replace("reprot", "report")
    assert designer.post("/v1/trees/reminder/versions", json={"yaml": fixed}).json()[
        "version"] == 2
    published = designer.post("/v1/trees/reminder/versions/2/publish").json()
    assert published["published_at"] and published["pin"] == "store:reminder@2"
    exported = viewer.get("/v1/trees/reminder/versions/2", params={"format": "yaml"})
    assert exported.text == fixed  # byte for byte, comments kept
    assert "# Payment reminder" in exported.text
    diff = viewer.get("/v1/trees/reminder/diff", params={"from": 1, "to": 2}).text
    assert "-    next: reprot" in diff and "+    next: report" in diff
    restored = designer.post("/v1/trees/reminder/versions/1/restore").json()
    assert restored["version"] == 3 and restored["errors"] == 1
    assert [t["latest"] for t in viewer.get("/v1/trees").json()] == [3]
    assert viewer.get("/v1/trees").json()[0]["published"] == 2
    # who may do what: viewers and marketers read, only designers (and admins) write
    assert viewer.post("/v1/trees/reminder/versions", json={"yaml": fixed}).status_code == 403
    assert marketer.post("/v1/trees/reminder/versions/3/publish").status_code == 403
    assert httpx.get(f"http://127.0.0.1:{live.port}/v1/trees").status_code == 401
    missing = viewer.get("/v1/trees/nope/versions")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert designer.post("/v1/trees/..%2Fetc/versions", json={"yaml": fixed}).status_code in (
        404, 422)
    # the library runs only published versions
    library = TreeLibrary(live.store.engine, live.prompts)
    assert library.load("store:reminder@2").name == "payment-reminder"
    with pytest.raises(ValueError, match="not published"):
        library.load("store:reminder@3")


def test_a_stored_tree_plays_only_audio_inside_the_prompts_folder(live: Live) -> None:
    designer = live.client(Role.DESIGNER)
    office = (PROMPTS / "office.yaml").read_text()
    assert "audio/chime.wav" in office
    (live.prompts / "audio").mkdir()
    (live.prompts / "audio" / "chime.wav").write_bytes((PROMPTS / "audio/chime.wav").read_bytes())
    assert designer.post("/v1/trees/validate", json={"yaml": office}).json()["valid"]
    for outside in ("/etc/passwd", "../../etc/passwd"):
        got = designer.post("/v1/trees/validate", json={
            "yaml": office.replace("audio/chime.wav", outside)}).json()
        assert not got["valid"]
        assert any("inside the prompts folder" in f["message"] for f in got["findings"])


def test_audio_upload_converts_what_it_can_and_refuses_what_is_not_audio(
        live: Live, tmp_path: Path) -> None:
    import io

    import numpy as np
    import soundfile

    designer, viewer = live.client(Role.DESIGNER), live.client(Role.VIEWER)
    t = np.arange(44100 * 31) / 44100
    tone = 0.3 * np.sin(2 * np.pi * 440 * t)
    wav = io.BytesIO()
    soundfile.write(wav, np.stack([tone, tone], axis=1), 44100, format="WAV",
                    subtype="PCM_16")
    assert wav.getbuffer().nbytes > 5_400_000  # over the PBX's 5 MB rule: taken anyway
    got = designer.post("/v1/trees/audio",
                        files={"file": ("../../Welcome Message.wav", wav.getvalue())})
    assert got.status_code == 201, got.text
    stored = got.json()
    assert stored["path"] == "audio/Welcome-Message.wav"  # a name, never a path
    assert abs(stored["duration_s"] - 31.0) < 0.01
    on_disk = tmp_path / "prompts" / "audio" / "Welcome-Message.wav"
    info = soundfile.info(str(on_disk))
    assert (info.samplerate, info.channels) == (8000, 1)
    assert [f["path"] for f in viewer.get("/v1/trees/audio").json()] == [stored["path"]]
    heard = viewer.get("/v1/trees/audio/Welcome-Message.wav")
    assert heard.status_code == 200 and heard.content == on_disk.read_bytes()
    assert viewer.get("/v1/trees/audio/..%2F..%2Fetc%2Fpasswd").status_code in (404, 422)
    refused = designer.post("/v1/trees/audio", files={"file": ("notes.wav", b"not audio")})
    assert refused.status_code == 422
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["errors"][0]["type"] == "not-audio"  # no sound format at all
    assert viewer.post("/v1/trees/audio",
                       files={"file": ("x.wav", wav.getvalue())}).status_code == 403


def test_a_campaign_created_over_the_api_pins_a_published_version(live: Live) -> None:
    designer, marketer = live.client(Role.DESIGNER), live.client(Role.MARKETER)
    from tests.web.api_fixtures import campaign_body

    hold = (live.prompts / "hold.yaml").read_text()
    assert designer.post("/v1/trees/held/versions", json={"yaml": hold}).status_code == 201
    draft = marketer.post("/v1/campaigns", json=campaign_body("pinned", tree="store:held@1"))
    assert draft.status_code == 422 and "not published" in draft.text
    assert designer.post("/v1/trees/held/versions/1/publish").status_code == 200
    made = marketer.post("/v1/campaigns", json=campaign_body("pinned", tree="store:held@1"))
    assert made.status_code == 201, made.text
    assert made.json()["definition"]["tree"] == "store:held@1"
    assert marketer.post("/v1/campaigns", json=campaign_body(
        "ghost", tree="store:held@9")).status_code == 422
