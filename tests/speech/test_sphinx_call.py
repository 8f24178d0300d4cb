"""A real call: `autocall call` to a SIPp callee who answers "yes" out loud, in English,
with no vosk model anywhere: pocketsphinx hears it and the tree takes the confirm branch.

The callee's answer is rendered by piper (and, in the second case, by espeak-ng), put
through μ-law with line noise, and streamed by SIPp as RTP; our prompt is rendered by
piper into the call's TTS cache. Nothing is mocked between the callee's audio and the
call's outcome.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from autocall.audio.g711 import ulaw_encode
from autocall.audio.tones import comfort_noise
from autocall.cli import app
from autocall.speech import tts
from autocall.speech.piper import PiperEngine
from tests.peers import SCENARIOS, Sipp

pytestmark = pytest.mark.peers

RATE = 8000
TREE = """\
name: confirm
language: en
outcomes: [confirmed, declined]
start: ask
nodes:
  ask:
    menu:
      prompt: "Your appointment is tomorrow. Do you confirm it?"
      speech: true
      timeout: 6
      items:
        "1": {next: yes, say: ["yes"]}
        "2": {next: no, say: ["no"]}
  yes: {hangup: confirmed}
  no: {hangup: declined}
"""


def answer(text: str, engine: tts.TtsEngine) -> np.ndarray:
    """The callee: quiet while our prompt plays, then *text*, then quiet, with line noise."""
    _, x = tts.synthesize_at(tts.PromptText(text, "en-us"), RATE, [engine])
    said = np.round(x * 32767 * 10 ** (-6 / 20)).astype(np.float64)
    line = np.concatenate([np.zeros(int(4.5 * RATE)), said, np.zeros(8 * RATE)])
    noise = comfort_noise(1000 * line.size / RATE, level_dbm0=-55.0, seed=7)
    return np.clip(line + noise, -32768, 32767).astype(np.int16)


def call(tmp_path: Path, audio: np.ndarray, sip_port: int) -> dict[str, object]:
    (tmp_path / "callee.ul").write_bytes(ulaw_encode(audio))
    scenario = (SCENARIOS / "uas_answer_inband.xml").read_text().replace("inband.ul", "callee.ul")
    (tmp_path / "uas_says.xml").write_text(scenario)
    tree = tmp_path / "tree.yaml"
    tree.write_text(TREE)
    with Sipp(
        tmp_path / "uas_says.xml", port=sip_port, media_port=sip_port + 2, timeout=40,
        cwd=tmp_path,
    ) as peer:
        result = CliRunner().invoke(
            app,
            ["call", f"sip:sipp@127.0.0.1:{sip_port}", "--tree", str(tree),
             "--bind", f"127.0.0.1:{sip_port + 5}", "--json"],
        )
        assert peer.wait(20) == 0, peer.errors()
    assert result.exit_code == 0, result.output
    summary: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return summary


@pytest.fixture(autouse=True)
def _offline_english(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOCALL_DATABASE_URL", f"sqlite:///{tmp_path / 'calls.db'}")
    monkeypatch.setenv("AUTOCALL_TTS_CACHE", str(tmp_path / "tts"))
    monkeypatch.setenv("AUTOCALL_TTS", "piper,espeak")
    monkeypatch.delenv("AUTOCALL_VOSK_MODEL", raising=False)  # English needs none


@pytest.mark.parametrize(
    ("voice", "sip_port"),
    [("piper", 44710), ("espeak-ng", 44730)],  # this SIPp range: 44700-44799
)
def test_callee_says_yes_and_the_call_is_confirmed(
    tmp_path: Path, voice: str, sip_port: int
) -> None:
    engine: tts.TtsEngine = (
        PiperEngine(noise_scale=0.0, noise_w_scale=0.0) if voice == "piper" else tts.EspeakEngine()
    )
    summary = call(tmp_path, answer("yes", engine), sip_port)
    assert summary["dialogue_outcome"] == "confirmed", summary
    assert summary["path"] == ["ask", "yes"], summary
    assert list((tmp_path / "tts").glob("*.piper.*.wav"))  # our prompt: spoken by piper


def test_callee_says_no_and_the_call_is_declined(tmp_path: Path) -> None:
    summary = call(tmp_path, answer("no", PiperEngine(noise_scale=0.0, noise_w_scale=0.0)), 44750)
    assert summary["dialogue_outcome"] == "declined", summary
