"""Engine order per tree, per node and per prompt (`tts: [piper, espeak]`), and a voice per
language (`voices: {en: joe}`): validated, in the schema export, and obeyed by real
renders with piper and espeak-ng into the prompt cache."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from autocall.dialogue.engine import Say
from autocall.dialogue.loader import load_with_document
from autocall.dialogue.schema import json_schema
from autocall.dialogue.validate import check
from autocall.speech import tts
from autocall.telephony.runner import prompts_of

ORDERED = """\
language: en
voices: {{en: en_US-joe-medium, de: {de_voice}}}
tts: [espeak]
start: hello
nodes:
  hello:
    say: Hello from the tree order.
    next: node
  node:
    tts: [piper, espeak]
    say:
      - Hello from the node order.
      - {{say: Hello from the prompt order., tts: [espeak-ng]}}
    next: german
  german:
    language: de
    say: Guten Tag.
    next: bye
  bye: {{hangup: completed}}
"""


def load(tmp_path: Path, text: str, name: str = "tree.yaml"):  # noqa: ANN201 - test helper
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    tree, doc, problems = load_with_document(path)
    return path, tree, doc, problems


def test_orders_and_voices_reach_the_say_actions(tmp_path: Path) -> None:
    _, tree, _, problems = load(tmp_path, ORDERED.format(de_voice="de-de"))
    assert tree is not None, problems
    said = {s.text: s for s in prompts_of(tree)}
    assert said["Hello from the tree order."] == Say(
        "Hello from the tree order.", "en", "en_US-joe-medium", ("espeak",))
    assert said["Hello from the node order."].tts == ("piper", "espeak")
    assert said["Hello from the prompt order."].tts == ("espeak-ng",)
    assert said["Guten Tag."] == Say("Guten Tag.", "de", "de-de", ("espeak",))
    assert tree.voice_for("en-GB") == "en_US-joe-medium" and tree.voice_for("fr") is None


def autocall(*args: str) -> subprocess.CompletedProcess[str]:
    code = "import sys; from autocall.cli import main; sys.argv[0] = 'autocall'; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300
    )


def test_prompts_render_obeys_each_order(tmp_path: Path) -> None:
    path, tree, _, problems = load(tmp_path, ORDERED.format(de_voice="de"))
    assert tree is not None, problems
    cache = tmp_path / "cache"
    done = autocall("prompts", "render", str(path), "--cache-dir", str(cache), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    spoke = {row["text"]: row["engine"] for row in json.loads(done.stdout)["prompts"]}
    assert spoke == {
        "Hello from the tree order.": "espeak-ng",  # the tree's [espeak], not AUTOCALL_TTS
        "Hello from the node order.": "piper",
        "Hello from the prompt order.": "espeak-ng",
        "Guten Tag.": "espeak-ng",
    }


def test_a_cached_render_by_an_engine_the_order_leaves_out_is_not_used(tmp_path: Path) -> None:
    from autocall.speech.piper import PiperEngine

    piper = tts.render_prompt(tts.PromptText("Please hold."), tmp_path, engines=[PiperEngine()])
    assert ".piper." in piper.name
    asked = tts.PromptText("Please hold.", engines=("espeak",))
    spoken = tts.render_prompt(asked, tmp_path)  # the call-time path: no upgrade
    assert ".espeak-ng." in spoken.name and piper.exists()
    again = tts.render_prompt(tts.PromptText("Please hold.", engines=("piper", "espeak")),
                              tmp_path)
    assert again == piper  # the order's first engine has it cached


@pytest.mark.parametrize(
    ("order", "message"),
    [
        ("[festival]", "'gtts', 'piper', 'espeak' or 'espeak-ng'"),
        ("[espeak, espeak-ng]", "tts names 'espeak' twice"),
        ("[]", "at least 1 item"),
        ("piper", "valid list"),
    ],
)
def test_a_bad_order_is_an_error_at_its_line(tmp_path: Path, order: str, message: str) -> None:
    text = f"start: a\nnodes:\n  a:\n    say: Hi.\n    tts: {order}\n    next: b\n" \
           "  b: {hangup: completed}\n"
    path, tree, _, problems = load(tmp_path, text)
    assert tree is None
    (problem,) = [p for p in problems if p.severity == "error"]
    assert message in problem.message, problem
    assert problem.line == 5, problem


def test_an_uninstalled_voice_per_language_fails_validation(tmp_path: Path) -> None:
    _, tree, doc, problems = load(tmp_path, ORDERED.format(de_voice="de_DE-thorsten-high"))
    assert tree is not None and doc is not None, problems
    (found,) = [p for p in check(tree, doc) if p.code == "voice"]
    assert found.severity == "error" and found.line == 2
    assert "de_DE-thorsten-high" in found.message and "AUTOCALL_PIPER_VOICES" in found.message


def test_the_schema_export_knows_the_order_and_the_voices() -> None:
    schema = json_schema()
    tree_tts = schema["properties"]["tts"]["anyOf"][0]
    assert tree_tts["items"]["enum"] == ["gtts", "piper", "espeak", "espeak-ng"]
    assert tree_tts["minItems"] == 1
    assert schema["properties"]["voices"]["additionalProperties"] == {"type": "string"}
    defs = schema["$defs"]
    assert "tts" in defs["SayNode"]["properties"] and "tts" in defs["SayPrompt"]["properties"]
    import jsonschema

    jsonschema.validate({"start": "a", "tts": ["piper", "espeak"], "voices": {"en": "joe"},
                         "nodes": {"a": {"say": "Hi.", "tts": ["espeak"]}}}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"start": "a", "tts": ["festival"],
                             "nodes": {"a": {"say": "Hi."}}}, schema)
