"""Audio for play: nodes (issue 17) over real HTTP: the API keeps a different recording
of the same name (published versions may play it) and gives the new one the next free
name, takes what decodes (a 16 kHz FLAC) and refuses a WAV cut short; the tree page's
audio panel uploads by htmx (the panel alone comes back, so the editor keeps its text),
lists each recording with its length and a player, says why a file was refused, and is
read-only for viewers. Real uvicorn, real store, real files."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile
from consoletest import Console

from autocall.campaign.store import Store
from autocall.config import Settings
from autocall.web.accounts import Role, audit_lines
from tests.web.api_fixtures import Live, live_server  # noqa: F401


def _tone(seconds: float, rate: int, hz: float, *, channels: int = 1,
          fmt: str = "WAV", subtype: str = "PCM_16") -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    x = 0.3 * np.sin(2 * np.pi * hz * t)
    out = io.BytesIO()
    soundfile.write(out, np.stack([x] * channels, axis=1), rate, format=fmt, subtype=subtype)
    return out.getvalue()


def test_a_different_recording_never_replaces_one_of_the_same_name(live: Live) -> None:
    designer = live.client(Role.DESIGNER)
    first = _tone(1.0, 8000, 440)
    got = designer.post("/v1/trees/audio", files={"file": ("welcome.wav", first)}).json()
    assert (got["path"], got["kept"]) == ("audio/welcome.wav", None)
    kept = (live.prompts / "audio" / "welcome.wav").read_bytes()

    again = designer.post("/v1/trees/audio", files={"file": ("welcome.wav", first)}).json()
    assert (again["path"], again["kept"]) == ("audio/welcome.wav", None)  # the same one

    other = designer.post("/v1/trees/audio",
                          files={"file": ("welcome.wav", _tone(2.0, 44100, 660, channels=2))})
    assert other.status_code == 201, other.text
    assert other.json()["path"] == "audio/welcome-2.wav"
    assert other.json()["kept"] == "audio/welcome.wav"
    assert abs(other.json()["duration_s"] - 2.0) < 0.01
    assert (live.prompts / "audio" / "welcome.wav").read_bytes() == kept
    info = soundfile.info(str(live.prompts / "audio" / "welcome-2.wav"))
    assert (info.samplerate, info.channels) == (8000, 1)
    listed = [f["path"] for f in designer.get("/v1/trees/audio").json()]
    assert listed == ["audio/welcome-2.wav", "audio/welcome.wav"]
    uploads = [(a.action, a.subject, a.detail["kept"]) for a in audit_lines(live.store.engine)
               if a.action == "tree.audio"]
    assert uploads == [("tree.audio", "audio/welcome-2.wav", "audio/welcome.wav"),
                       ("tree.audio", "audio/welcome.wav", None),
                       ("tree.audio", "audio/welcome.wav", None)]  # newest first


def test_what_decodes_is_taken_and_a_wav_cut_short_is_refused(live: Live) -> None:
    designer = live.client(Role.DESIGNER)
    flac = designer.post("/v1/trees/audio", files={
        "file": ("greeting.flac", _tone(1.5, 16000, 500, fmt="FLAC"))})
    assert flac.status_code == 201, flac.text
    assert flac.json()["path"] == "audio/greeting.wav"
    assert abs(flac.json()["duration_s"] - 1.5) < 0.01

    whole = _tone(3.0, 8000, 440)
    cut = designer.post("/v1/trees/audio", files={"file": ("cut.wav", whole[:20000])})
    assert cut.status_code == 422
    problem = cut.json()
    assert problem["errors"][0]["type"] == "truncated"
    assert "announces 48000 bytes of audio but only" in problem["detail"]
    assert "cut.wav" in problem["detail"] and "Upload the complete file" in problem["detail"]
    silent = designer.post("/v1/trees/audio", files={
        "file": ("hush.wav", _tone(1.0, 8000, 0))})  # sin(0) everywhere: silence
    assert silent.status_code == 422 and silent.json()["errors"][0]["type"] == "silent"
    assert not (live.prompts / "audio" / "cut.wav").exists()
    assert not (live.prompts / "audio" / "hush.wav").exists()


ROW = re.compile(r'<tr data-audio="([^"]+)"')


def test_the_tree_page_uploads_lists_and_plays_audio(
        serve: Callable[..., object], store: Store, tmp_path: Path,
        make_user: Callable[..., tuple[str, str]],
        login: Callable[[str, str, str], Console]) -> None:
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    served = serve(store, settings=Settings(database_url="sqlite://", prompts_dir=prompts))
    url = served.url  # type: ignore[attr-defined]
    designer_name, password = make_user("designer")
    designer = login(url, designer_name, password)
    page = designer.get("/trees/new").text
    assert 'id="audio-form"' in page and "No recordings yet." in page

    stereo = _tone(31.0, 44100, 440, channels=2)
    assert len(stereo) > 5_400_000  # over the PBX's 5 MB rule: converted, not refused
    panel = designer.client.post("/trees/audio", data={
        "csrf_token": designer.csrf, "tree": "dental-reminder"},
        files={"file": ("Reminder Intro.wav", stereo)}, headers={"HX-Request": "true"})
    assert panel.status_code == 200, panel.text
    html = panel.text
    assert html.lstrip().startswith('<section class="pane tree-audio" id="audio">')
    assert "<html" not in html  # the panel alone: the editor around it stays as typed
    assert "Stored <code>audio/Reminder-Intro.wav</code> (31.0 s)" in html
    assert "write <code>play: audio/Reminder-Intro.wav</code>" in html
    assert ROW.findall(html) == ["audio/Reminder-Intro.wav"]
    assert "0:31.0" in html  # its length
    src = re.search(r'<audio controls preload="metadata" src="([^"]+)"', html)
    assert src and src.group(1) == "/v1/trees/audio/Reminder-Intro.wav"
    heard = designer.get(src.group(1))
    assert heard.status_code == 200 and heard.headers["content-type"] == "audio/wav"
    assert soundfile.info(io.BytesIO(heard.content)).samplerate == 8000

    refused = designer.client.post("/trees/audio", data={
        "csrf_token": designer.csrf, "tree": "dental-reminder"},
        files={"file": ("notes.wav", b"these are my notes, not a recording")},
        headers={"HX-Request": "true"})
    assert refused.status_code == 200
    assert 'id="audio-refused"' in refused.text and "not audio" in refused.text
    assert ROW.findall(refused.text) == ["audio/Reminder-Intro.wav"]

    plain = designer.post("/trees/audio", data={"tree": "dental-reminder"},
                          files={"file": ("chime.wav", _tone(0.5, 8000, 880))})
    assert plain.status_code == 303
    assert plain.headers["location"] == "/trees/dental-reminder#audio"
    hostile = designer.post("/trees/audio", data={"tree": "../../admin"},
                            files={"file": ("x.wav", b"RIFF")})
    assert hostile.status_code == 422 and "/trees/new" in hostile.text
    assert sorted(p.name for p in (prompts / "audio").iterdir()) == [
        "Reminder-Intro.wav", "chime.wav"]
    audited = [(a.actor, a.subject, a.detail["file"]) for a in audit_lines(store.engine)
               if a.action == "tree.audio"]
    who = f"user:{designer_name}"
    assert audited == [(who, "audio/chime.wav", "chime.wav"),
                       (who, "audio/Reminder-Intro.wav", "Reminder Intro.wav")]
    no_csrf = designer.client.post("/trees/audio", files={
        "file": ("chime.wav", _tone(0.5, 8000, 880))})
    assert no_csrf.status_code in (400, 403)

    (prompts / "audio" / "odd name.wav").write_bytes(_tone(0.5, 8000, 880))  # put by hand
    viewer = login(url, *make_user("viewer"))
    seen = viewer.get("/trees/new")
    assert seen.status_code == 403  # viewers do not start trees
    store_page = viewer.get("/trees/dental-reminder").text
    # Only names the player can fetch are listed (no row whose audio would not load).
    assert ROW.findall(store_page) == ["audio/Reminder-Intro.wav", "audio/chime.wav"]
    assert 'id="audio-form"' not in store_page
    assert viewer.post("/trees/audio", data={"tree": "dental-reminder"}, files={
        "file": ("y.wav", _tone(0.5, 8000, 880))}).status_code == 403
