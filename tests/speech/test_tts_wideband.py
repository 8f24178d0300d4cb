"""The TTS cache keyed by rate: a G.722 call's prompts are rendered at 16 kHz (espeak-ng
for real), beside the 8 kHz render of the same prompt, never in place of it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from autocall.dialogue import engine as eng
from autocall.speech.tts import EspeakEngine, PromptText, render_prompt, render_prompts
from autocall.telephony.runner import AudioCache, prompt_rates

HELLO = PromptText("Hello, thank you for calling. Press one to confirm.", "en")


def share_above(x: np.ndarray, rate: int, hz: float) -> float:
    spec = np.abs(np.fft.rfft(x.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / rate)
    return float(spec[freqs > hz].sum() / spec.sum())


def test_each_rate_has_its_own_entry(tmp_path: Path) -> None:
    espeak = [EspeakEngine()]
    narrow = render_prompt(HELLO, tmp_path, engines=espeak)
    wide = render_prompt(HELLO, tmp_path, engines=espeak, rate=16000)
    assert narrow != wide and narrow.exists() and wide.exists()
    assert wide.name.split(".")[0] == narrow.name.split(".")[0] + "-16k"
    assert sf.info(str(narrow)).samplerate == 8000
    assert sf.info(str(wide)).samplerate == 16000
    pcm, rate = sf.read(str(wide), dtype="int16")
    assert share_above(pcm, rate, 4100) > 0.001  # fricatives above the G.711 band
    (again,) = render_prompts([HELLO], tmp_path, engines=espeak, upgrade=False, rate=16000)
    assert (again.status, again.path) == ("cached", wide)
    assert narrow.exists()  # the 16 kHz render did not replace the 8 kHz one


def test_an_unknown_rate_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="8000 or 16000 Hz, not 44100"):
        render_prompt(HELLO, tmp_path, engines=[EspeakEngine()], rate=44100)


async def test_the_audio_cache_gives_a_call_its_rate(tmp_path: Path) -> None:
    cache = AudioCache(tmp_path)
    say = eng.Say(HELLO.text, "en", None, ("espeak",))
    assert await cache.warm([say], prompt_rates(("PCMU", "G722"))) == []
    narrow, wide = await cache.say(say), await cache.say(say, 16000)
    assert abs(len(wide) - 2 * len(narrow)) <= 2  # the same words, twice the samples
    tone = tmp_path / "tone.wav"
    t = np.arange(16000) / 16000
    sf.write(str(tone), (0.3 * np.sin(2 * np.pi * 5000 * t)).astype(np.float32), 16000)
    played = await cache.play(eng.Play(str(tone)), 16000)
    assert share_above(played, 16000, 4500) > 0.9  # a 16 kHz file keeps its 5 kHz tone
    assert prompt_rates(("PCMU", "PCMA")) == (8000,)


def test_prompts_render_makes_16khz_entries_when_g722_is_allowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from typer.testing import CliRunner

    from autocall.cli import app

    tree = tmp_path / "t.yaml"
    tree.write_text('start: a\nnodes:\n  a:\n    say: ["Hello there.", "Goodbye."]\n')
    cache = tmp_path / "cache"
    args = ["prompts", "render", "--offline", "--cache-dir", str(cache), "--json", str(tree)]
    monkeypatch.setenv("AUTOCALL_CODECS", "g722,pcmu")
    result = CliRunner().invoke(app, args)
    data = json.loads(result.output)
    assert result.exit_code == 0 and data["counts"]["rendered"] == 4, result.output
    assert sorted(p["rate"] for p in data["prompts"]) == [8000, 8000, 16000, 16000]
    for p in data["prompts"]:
        assert sf.info(p["path"]).samplerate == p["rate"]
    monkeypatch.delenv("AUTOCALL_CODECS")
    result = CliRunner().invoke(app, args)  # G.711 only: the 8 kHz entries, cached
    data = json.loads(result.output)
    assert data["counts"]["cached"] == 2 and data["counts"]["rendered"] == 0, result.output
    result = CliRunner().invoke(app, [*args[:2], "--wideband", *args[2:]])
    assert json.loads(result.output)["counts"]["cached"] == 4
