"""The designer's page in a real headless Chromium (issue 17), for what a designer
checks without a terminal: the office tree plays audio/chime.wav, which the prompts
folder lacks, so the validator marks it; a 44.1 kHz stereo WAV uploaded in the audio
panel becomes audio/chime.wav (8 kHz mono) while the text typed in the editor stays,
the player loads it with its length, and the marker goes. The graph shows the hours
node's schedule and holidays and the menu's keys, phrases and retries; clicking the
hours node jumps to its line. The simulator's clock is the tree's time (Europe/Berlin)
though the browser is in New York. Completion offers the keys the schema allows where
the cursor is (a menu's retries, not the tree's timezone), node ids after on_failure:
and the uploaded recording after play:. Server: the real `autocall web --no-dialer`;
screenshots tests/artifacts/designer-audio*.png."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import numpy as np
import soundfile
from playwright.sync_api import Browser, Page, expect
from test_browser import add_user, browser, csp_watch, log_in, shot, start_web  # noqa: F401

from autocall.campaign.store import Store
from autocall.campaign.trees import TreeLibrary

PROMPTS = Path(__file__).resolve().parents[2] / "prompts"


def _stereo_wav(seconds: float) -> bytes:
    t = np.arange(int(44100 * seconds)) / 44100
    x = 0.3 * np.sin(2 * np.pi * 660 * t) * np.exp(-t)
    out = io.BytesIO()
    soundfile.write(out, np.stack([x, x], axis=1), 44100, format="WAV", subtype="PCM_16")
    return out.getvalue()


def _completions(page: Page, among: str) -> list[str]:
    """The options offered, once ``among`` is one of them (an earlier list may still be
    on screen for a moment while the editor asks again)."""
    options = page.locator(".cm-tooltip-autocomplete li .cm-completionLabel")
    expect(options.filter(has_text=re.compile(f"^{re.escape(among)}$"))).to_have_count(
        1, timeout=5_000)
    return options.all_inner_texts()


def _new_line(page: Page, text: str) -> None:
    """A fresh line holding exactly ``text`` (whatever the editor's auto-indent did)."""
    page.keyboard.press("End")
    page.keyboard.press("Enter")
    page.keyboard.press("Shift+Home")
    page.keyboard.type(text)


def test_audio_graph_clock_and_completion_in_the_page(tmp_path: Path,
                                                      browser: Browser) -> None:  # noqa: F811
    db = f"sqlite:///{tmp_path / 'audio.db'}"
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    os.environ["AUTOCALL_PROMPTS"] = str(prompts)  # inherited by autocall web
    wav = tmp_path / "chime.wav"
    wav.write_bytes(_stereo_wav(1.5))
    try:
        store = Store(db)
        TreeLibrary(store.engine, prompts).save(
            "office", (PROMPTS / "office.yaml").read_text(), "user:test", "from prompts/")
        store.close()
        add_user(db, tmp_path, "dana", "designer", "dana-password-1")
        with start_web(db, tmp_path) as web:
            context = browser.new_context(viewport={"width": 1400, "height": 1500},
                                          timezone_id="America/New_York")
            page = context.new_page()
            errors = csp_watch(page)
            log_in(page, web.url, "dana", "dana-password-1")
            page.goto(f"{web.url}/trees/office")
            findings = page.locator("#findings")
            expect(findings).to_have_text(re.compile(r"^1 error"), timeout=15_000)
            expect(page.locator(".cm-lint-marker-error")).to_have_count(1)
            expect(page.locator("#audio-rows")).to_have_text("No recordings yet.")

            # Something typed and not saved, then the upload: the text must stay.
            page.locator(".cm-content").click()
            page.keyboard.press("Control+Home")
            page.keyboard.press("End")
            with page.expect_response("**/v1/trees/validate"):  # its check is done:
                page.keyboard.type("  # greeting recorded by Carla")
            # only the upload itself can now make the validator look again.
            page.set_input_files("#audio-file", str(wav))
            page.click("#audio-btn")
            stored = page.locator("#audio-stored")
            expect(stored).to_contain_text("Stored audio/chime.wav (1.5 s)")
            expect(page.locator(".cm-content")).to_contain_text("# greeting recorded by Carla")
            row = page.locator('#audio-rows tr[data-audio="audio/chime.wav"]')
            expect(row).to_contain_text("0:01.5")
            player = row.locator("audio")
            page.wait_for_function(
                "el => el.readyState >= 1 && Math.abs(el.duration - 1.5) < 0.01",
                arg=player.element_handle(), timeout=10_000)
            info = soundfile.info(str(prompts / "audio" / "chime.wav"))
            assert (info.samplerate, info.channels) == (8000, 1)
            expect(findings).to_have_text(re.compile(r"^valid · "), timeout=15_000)
            expect(page.locator(".cm-lint-marker-error")).to_have_count(0)

            # The graph: schedule, holidays, keys with phrases, retries, failure paths.
            graph = page.locator("#graph svg")
            expect(graph).to_contain_text("mon-fri 09:00-12:30, 13:30-17:00")
            expect(graph).to_contain_text("holidays 2026-12-24, 2026-12-25, 2026-12-26")
            expect(graph).to_contain_text("keys 1 2 3 0 · * repeats")
            expect(graph).to_contain_text("retries 2 · 5 s · speech")
            expect(graph).to_contain_text("2 'support'/'help'")
            expect(graph).to_contain_text("failed after 2 retries")
            page.locator("#graph g.node", has_text="holidays").click()
            line = (PROMPTS / "office.yaml").read_text().splitlines().index("  hours:") + 1
            expect(page.locator("#status")).to_have_text(f"node hours at line {line}")

            # The clock is the tree's: 08:30 in Berlin is before the office opens.
            page.fill("#sim-clock", "2026-12-22T08:30")
            page.click("#reset-btn")
            expect(page.locator("#sim-zone")).to_have_text("Europe/Berlin")
            expect(page.locator("#transcript li.why").first).to_contain_text(
                "closed: Tue 2026-12-22 08:30 Europe/Berlin is outside the opening hours")
            shot(page, "designer-audio.png")

            # Completion by place: a menu's keys, node ids, recordings.
            page.locator(".cm-content").click()
            page.keyboard.press("Control+End")
            _new_line(page, "  ask:")
            _new_line(page, "    menu:")
            _new_line(page, "      re")
            shown = _completions(page, "retries")
            assert "retries" in shown and "repeat_key" in shown, shown
            assert "timezone" not in shown and "recording" not in shown, shown
            page.keyboard.press("Escape")
            _new_line(page, "    on_failure: ")
            page.keyboard.type("voi")
            shown = _completions(page, "voicemail_thanks")
            assert shown[:3] == ["voicemail", "voicemail_end", "voicemail_thanks"], shown
            page.keyboard.press("Escape")
            _new_line(page, "  jingle:")
            _new_line(page, "    play: ")
            page.keyboard.type("aud")
            assert _completions(page, "audio/chime.wav") == ["audio/chime.wav"]
            page.locator(".cm-tooltip-autocomplete li", has_text="audio/chime.wav").click()
            expect(page.locator(".cm-line", has_text="play: audio/chime.wav").last).to_have_text(
                "    play: audio/chime.wav")
            _new_line(page, "ti")
            shown = _completions(page, "timezone")
            assert "timezone" in shown and "retries" not in shown, shown
            shot(page, "designer-audio-completion.png")
            assert errors == [], errors
    finally:
        os.environ.pop("AUTOCALL_PROMPTS", None)
