"""Prompt rendering: gTTS through a local stand-in of Google's endpoint, espeak-ng for real."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from autocall.audio.convert import TARGET_LEVEL_DBFS, speech_level_dbfs
from autocall.speech import tts
from autocall.speech.tts import (
    EspeakEngine,
    GttsEngine,
    PromptText,
    RenderOutcome,
    TtsError,
    cache_entries,
    default_engines,
    render_prompt,
    render_prompts,
)

REPO = Path(__file__).resolve().parents[2]
Start = Callable[..., Any]  # the gtts_standin fixture (tests/speech/conftest.py)
Url = Callable[[], str]
HELLO = PromptText("Hello, thank you for calling. Press one to confirm.")


def engines(url: str, *, timeout: float = 1.0, cooldown_s: float = 300.0) -> list[tts.TtsEngine]:
    return [
        GttsEngine(base_url=url, timeout=(timeout, timeout), cooldown_s=cooldown_s),
        EspeakEngine(),
    ]


def level_of(path: Path) -> float:
    x, rate = sf.read(path, dtype="float64")
    info = sf.info(path)
    assert (rate, info.channels, info.subtype, info.format) == (8000, 1, "PCM_16", "WAV")
    level = speech_level_dbfs(np.asarray(x), rate)
    assert level is not None
    return level


def wavs(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.glob("*.wav"))


def test_gtts_renders_through_the_stand_in(gtts_standin: Start, tmp_path: Path) -> None:
    server = gtts_standin()
    (outcome,) = render_prompts([HELLO], tmp_path, engines=engines(server.url))
    assert (outcome.status, outcome.engine, outcome.error) == ("rendered", "gtts", None)
    assert outcome.path is not None and outcome.path.parent == tmp_path
    assert abs(level_of(outcome.path) - TARGET_LEVEL_DBFS) < 0.3
    (request,) = server.requests
    assert request["text"] == HELLO.text and request["lang"] == "en"
    assert str(request["content_type"]).startswith("application/x-www-form-urlencoded")


def test_long_text_goes_in_parts_and_comes_back_whole(gtts_standin: Start, tmp_path: Path) -> None:
    server = gtts_standin()
    sentence = "Your appointment with the dental clinic is tomorrow at nine in the morning."
    text = " ".join([sentence] * 4)
    path = render_prompt(PromptText(text), tmp_path, engines=engines(server.url))
    parts = [str(r["text"]) for r in server.requests]
    assert len(parts) >= 3 and all(len(p) <= 100 for p in parts)  # gTTS's request size
    assert " ".join(parts).replace(".", "").split() == text.replace(".", "").split()
    one = render_prompt(PromptText(sentence), tmp_path, engines=engines(server.url))
    assert sf.info(path).duration > 3.5 * sf.info(one).duration


def test_cache_hit_skips_the_engine(gtts_standin: Start, tmp_path: Path) -> None:
    server = gtts_standin()
    first = render_prompts([HELLO], tmp_path, engines=engines(server.url))[0]
    again = PromptText("  Hello,  thank you for calling.\nPress one to confirm. ")
    (second,) = render_prompts([again], tmp_path, engines=engines(server.url))
    assert (second.status, second.engine, second.path) == ("cached", "gtts", first.path)
    assert len(server.requests) == 1
    other = render_prompts(
        [PromptText(HELLO.text, "fr"), PromptText(HELLO.text, "en", "co.uk")],
        tmp_path,
        engines=engines(server.url),
    )
    assert [o.status for o in other] == ["rendered", "rendered"]
    assert len({first.path, other[0].path, other[1].path}) == 3


def test_refused_port_fails_fast_and_espeak_renders(
    tmp_path: Path, stopwatch: Callable[[], float], refused_url: Url
) -> None:
    url = refused_url()
    outcomes = render_prompts(
        [HELLO, PromptText("Goodbye.")], tmp_path, engines=engines(url, timeout=5.0)
    )
    assert stopwatch() < 3.0
    assert [(o.status, o.engine) for o in outcomes] == [("rendered", "espeak-ng")] * 2
    assert all(o.path and abs(level_of(o.path) - TARGET_LEVEL_DBFS) < 0.3 for o in outcomes)


def test_stalled_server_times_out_then_cools_down(
    gtts_standin: Start, tmp_path: Path, stopwatch: Callable[[], float]
) -> None:
    server = gtts_standin("stall")
    prompts = [PromptText(f"Option {n}.") for n in range(3)]
    outcomes = render_prompts(prompts, tmp_path, engines=engines(server.url, timeout=0.5))
    elapsed = stopwatch()
    assert [(o.status, o.engine) for o in outcomes] == [("rendered", "espeak-ng")] * 3
    assert len(server.requests) == 1  # one timeout, then the cool-down skips gTTS
    assert 0.5 <= elapsed < 4.0
    assert not any("gtts" in name for name in wavs(tmp_path))


def test_trickling_server_cannot_hold_a_render(
    gtts_standin: Start, tmp_path: Path, stopwatch: Callable[[], float]
) -> None:
    server = gtts_standin("dribble")  # every read gets bytes: the read timeout never fires
    gtts = GttsEngine(base_url=server.url, timeout=(1.0, 1.0), deadline_s=1.0)
    (outcome,) = render_prompts([HELLO], tmp_path, engines=[gtts, EspeakEngine()])
    assert (outcome.status, outcome.engine) == ("rendered", "espeak-ng")
    assert server.sending.is_set() and 1.0 <= stopwatch() < 3.0
    assert not gtts.available()
    assert cache_entries(tmp_path, HELLO) == [outcome.path]


def test_offline_default_engines_fall_back(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    stopwatch: Callable[[], float],
    refused_url: Url,
) -> None:
    monkeypatch.setenv(tts.GTTS_URL_ENV, refused_url())
    monkeypatch.delenv("AUTOCALL_TTS", raising=False)
    chosen = default_engines()
    assert [e.name for e in chosen] == ["gtts", "piper", "espeak-ng"]
    assert isinstance(chosen[0], GttsEngine) and chosen[0].base_url is not None
    path = render_prompt(HELLO, tmp_path)  # piper: the natural offline voice
    assert ".piper." in path.name and stopwatch() < 5.0
    monkeypatch.setenv("AUTOCALL_TTS", "gtts,espeak")  # the order is a setting
    assert [e.name for e in default_engines()] == ["gtts", "espeak-ng"]
    path = render_prompt(PromptText("Hello again."), tmp_path)
    assert ".espeak-ng." in path.name


def test_better_engine_replaces_the_fallback_render(
    gtts_standin: Start, tmp_path: Path, refused_url: Url
) -> None:
    url = refused_url()
    port = int(url.rsplit(":", 1)[1])
    chosen = engines(url, cooldown_s=0.0)
    (offline,) = render_prompts([HELLO], tmp_path, engines=chosen)
    assert (offline.status, offline.engine) == ("rendered", "espeak-ng")
    server = gtts_standin(port=port)
    (online,) = render_prompts([HELLO], tmp_path, engines=chosen)
    assert (online.status, online.engine) == ("rendered", "gtts")
    assert cache_entries(tmp_path, HELLO) == [online.path]
    (later,) = render_prompts([HELLO], tmp_path, engines=chosen)
    assert (later.status, later.path) == ("cached", online.path)
    assert len(server.requests) == 1


def test_call_time_lookup_takes_any_render_without_the_network(
    gtts_standin: Start, tmp_path: Path
) -> None:
    fallback = render_prompt(HELLO, tmp_path, engines=[EspeakEngine()])
    server = gtts_standin()
    assert render_prompt(HELLO, tmp_path, engines=engines(server.url)) == fallback
    assert server.requests == []
    better = render_prompt(HELLO, tmp_path, engines=engines(server.url), upgrade=True)
    assert ".gtts." in better.name and not fallback.exists()


def test_an_engine_upgrade_renders_again(tmp_path: Path) -> None:
    espeak = EspeakEngine()
    first = render_prompt(HELLO, tmp_path, engines=[espeak])
    stale = first.with_name(".".join([*first.name.split(".")[:2], "00000000", "wav"]))
    first.rename(stale)
    (outcome,) = render_prompts([HELLO], tmp_path, engines=[espeak])
    assert (outcome.status, outcome.path) == ("rendered", first)
    assert not stale.exists()


def test_temp_files_of_dead_renders_are_swept(tmp_path: Path) -> None:
    dead = tmp_path / ".abc.espeak-ng.1234.wav.x1y2.tmp"
    live = tmp_path / ".def.espeak-ng.1234.wav.z3w4.tmp"
    dead.write_bytes(b"half a render")
    live.write_bytes(b"being written right now")
    an_hour_ago = time.time() - 3600
    os.utime(dead, (an_hour_ago, an_hour_ago))
    render_prompts([HELLO], tmp_path, engines=[EspeakEngine()])
    assert not dead.exists() and live.exists()


def test_a_stale_render_beats_no_prompt(tmp_path: Path) -> None:
    first = render_prompt(HELLO, tmp_path, engines=[EspeakEngine()])
    missing = EspeakEngine(executable="espeak-ng-not-installed")
    (outcome,) = render_prompts([HELLO], tmp_path, engines=[missing])
    assert (outcome.status, outcome.engine, outcome.path) == ("cached", "espeak-ng", first)


@pytest.mark.parametrize("mode", ["noaudio", "error"])
def test_broken_answers_leave_no_file(gtts_standin: Start, tmp_path: Path, mode: str) -> None:
    server = gtts_standin(mode)
    gtts = GttsEngine(base_url=server.url, timeout=(1.0, 1.0))
    (outcome,) = render_prompts([HELLO], tmp_path, engines=[gtts])
    assert outcome.status == "failed" and outcome.path is None
    assert outcome.error is not None and outcome.error.startswith("gtts:")
    assert list(tmp_path.iterdir()) == []
    assert not gtts.available()
    (fallback,) = render_prompts([HELLO], tmp_path, engines=[gtts, EspeakEngine()])
    assert fallback.engine == "espeak-ng" and len(server.requests) == 1


def test_unknown_language_fails_with_every_reason(tmp_path: Path, refused_url: Url) -> None:
    url = refused_url()
    (outcome,) = render_prompts([PromptText("Hello", "xx-YY")], tmp_path, engines=engines(url))
    assert outcome.status == "failed"
    assert outcome.error is not None
    assert "gtts: language 'xx-YY'" in outcome.error and "espeak-ng: language" in outcome.error
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(TtsError, match="xx-YY"):
        render_prompt(PromptText("Hello", "xx-YY"), tmp_path, engines=engines(url))


def test_engines_say_which_languages_they_speak() -> None:
    gtts, espeak = GttsEngine(), EspeakEngine()
    for tag in ("en", "en-US", "ko", "fr_FR", "zh-CN"):
        assert gtts.supports(tag) and espeak.supports(tag), tag
    assert not gtts.supports("xx-YY") and not espeak.supports("xx-YY")
    assert espeak.supports("chr-US-Qaaa-x-west") and not gtts.supports("chr")


def test_espeak_languages_and_progress(tmp_path: Path) -> None:
    seen: list[RenderOutcome] = []
    prompts = [PromptText("Bonjour", "fr-FR"), PromptText("안녕하세요", "ko"), HELLO]
    outcomes = render_prompts(prompts, tmp_path, engines=[EspeakEngine()], on_progress=seen.append)
    assert seen == outcomes and [o.prompt for o in outcomes] == prompts
    assert all(o.status == "rendered" for o in outcomes)
    assert "ko" in EspeakEngine().languages() and "en" in EspeakEngine().languages()


def test_engines_come_out_equally_loud(gtts_standin: Start, tmp_path: Path) -> None:
    quiet = gtts_standin(gain_db=-30.0)  # Google's level is not ours to choose
    loud = gtts_standin(gain_db=-1.0)
    paths = [
        render_prompt(HELLO, tmp_path / "quiet", engines=[GttsEngine(base_url=quiet.url)]),
        render_prompt(HELLO, tmp_path / "loud", engines=[GttsEngine(base_url=loud.url)]),
        render_prompt(HELLO, tmp_path / "espeak", engines=[EspeakEngine()]),
        render_prompt(
            PromptText("안녕하세요, 전화 주셔서 감사합니다", "ko"),
            tmp_path,
            engines=[EspeakEngine()],
        ),
    ]
    levels = [level_of(p) for p in paths]
    assert max(levels) - min(levels) < 0.5
    assert all(abs(level - TARGET_LEVEL_DBFS) < 0.3 for level in levels)


_KILLED_RENDER = """
import sys
from pathlib import Path
from autocall.speech.tts import GttsEngine, PromptText, render_prompt
engine = GttsEngine(base_url=sys.argv[1], timeout=(5.0, 5.0))
render_prompt(PromptText(sys.argv[3]), Path(sys.argv[2]), engines=[engine])
"""


def test_render_killed_mid_download_leaves_no_entry(gtts_standin: Start, tmp_path: Path) -> None:
    server = gtts_standin("dribble")
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_RENDER, server.url, str(tmp_path), HELLO.text],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert server.sending.wait(20), "the render never reached the stand-in"
        time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert wavs(tmp_path) == []
    assert cache_entries(tmp_path, HELLO) == []
    server.mode = "ok"
    (outcome,) = render_prompts([HELLO], tmp_path, engines=engines(server.url))
    assert (outcome.status, outcome.engine) == ("rendered", "gtts")


def _espeak_synth_children() -> list[int]:
    """espeak-ng processes this test process started to speak (not --version/--voices)."""
    me = str(os.getpid())
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            ppid = (proc / "stat").read_text().rsplit(")", 1)[1].split()[1]
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError):
            continue
        if ppid == me and argv[0].endswith(b"espeak-ng") and b"--stdout" in argv:
            found.append(int(proc.name))
    return found


def test_killed_espeak_leaves_no_entry(tmp_path: Path) -> None:
    long_text = " ".join(["The quick brown fox jumps over the lazy dog."] * 400)
    outcomes: list[RenderOutcome] = []
    worker = threading.Thread(
        target=lambda: outcomes.extend(
            render_prompts([PromptText(long_text)], tmp_path, engines=[EspeakEngine()])
        )
    )
    worker.start()
    deadline = time.monotonic() + 10
    children: list[int] = []
    while not children and time.monotonic() < deadline:
        children = _espeak_synth_children()
        time.sleep(0.002)
    assert children, "espeak-ng never started"
    os.kill(children[0], signal.SIGKILL)
    worker.join(30)
    (outcome,) = outcomes
    assert outcome.status == "failed" and outcome.error is not None
    assert "exit status -9" in outcome.error
    assert wavs(tmp_path) == []
