"""Spoken yes/no answers with the real vosk Korean model and espeak-ng speech over G.711.

The phrase sets below were chosen by measurement (bench/bench_asr.py prints the full
accuracy table): espeak-ng's Korean is far from natural speech and this small model
recognises some of it poorly. A bare "예" from espeak-ng comes out as "있어요" (so it is
only tested after a filler, "어 예", where it is recognised), and the out-of-grammar
"싫어요" ("I don't want to") is taken as "아니오", so it is not listed as a rejection.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from autocall.speech.asr import (
    ModelError,
    NoInput,
    NoMatch,
    SpeechRecognizer,
    SpeechResult,
    SpeechStarted,
    VocabularyError,
    check_model,
    check_phrases,
    find_model,
    intents_from_phrases,
    load_model,
)
from autocall.speech.vad import VadEnd, VadStart, VoiceActivityDetector

sys.path.insert(0, str(Path(__file__).resolve().parent))
import asr_audio as au  # noqa: E402

INTENTS = {"yes": ["네", "예"], "no": ["아니요", "아니오"]}
HANGOVER = 0.6  # VadConfig default


@pytest.fixture(scope="module")
def model() -> object:
    if not au.espeak_available():
        pytest.fail("espeak-ng is not installed: run scripts/setup.sh")
    return load_model(lang="ko")


def listen(
    model: object, pcm: np.ndarray, lead: float = 0.5, tail: float = 2.0, **kw: object
) -> list[tuple[float, object]]:
    """Feed lead silence + pcm + tail silence in 20 ms frames; (time fed, event) pairs."""
    kw.setdefault("prompt_playing", False)
    kw.setdefault("lang", "ko")
    rec = SpeechRecognizer(model, INTENTS, **kw)  # type: ignore[arg-type]
    audio = np.concatenate([au.silence(lead), pcm, au.silence(tail)])
    out: list[tuple[float, object]] = []
    fed = 0
    for frame in au.frames(audio):
        fed += frame.size
        out.extend((fed / au.RATE, ev) for ev in rec.feed(frame))
        if rec.done:
            break
    out.extend((fed / au.RATE, ev) for ev in rec.expire())
    return out


def final(events: list[tuple[float, object]]) -> object:
    finals = [e for _, e in events if not isinstance(e, SpeechStarted)]
    assert len(finals) == 1, events
    return finals[0]


def speech_bounds(pcm: np.ndarray) -> tuple[float, float]:
    """First and last 10 ms frame of a clean recording that is above −40 dBFS."""
    n = pcm.size // 80
    frames = pcm[: n * 80].reshape(n, 80).astype(np.float64) / 32768
    loud = np.flatnonzero(10 * np.log10(np.mean(frames**2, axis=1) + 1e-12) > -40)
    return loud[0] * 0.01, (loud[-1] + 1) * 0.01


# --- intents ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phrase", "intent"),
    [
        ("네", "yes"),
        ("네 네", "yes"),
        ("음 네", "yes"),
        ("어 예", "yes"),
        ("아니요", "no"),
        ("아니오", "no"),
        ("어 아니요", "no"),
    ],
)
def test_answer_is_recognised_as_its_intent(model: object, phrase: str, intent: str) -> None:
    result = final(listen(model, au.synth(phrase)))
    assert isinstance(result, SpeechResult), result
    assert result.intent == intent
    assert 0.5 <= result.confidence <= 1.0
    assert all(w in ("네", "예", "아니요", "아니오", "음", "어") for w in result.text.split())


def test_slow_low_voice_still_recognised(model: object) -> None:
    result = final(listen(model, au.synth("아니요", voice="ko+m3", speed=140, pitch=30)))
    assert isinstance(result, SpeechResult) and result.intent == "no", result


@pytest.mark.parametrize(
    "phrase",
    ["좋아요", "잘 모르겠어요", "그래요", "여보세요", "누구세요", "지금 바빠요", "괜찮습니다"],
)
def test_out_of_grammar_phrase_is_no_match(model: object, phrase: str) -> None:
    result = final(listen(model, au.synth(phrase)))
    assert isinstance(result, NoMatch), result
    assert result.text  # what was heard is kept for the call record


def test_confidence_threshold_turns_result_into_no_match(model: object) -> None:
    # Not a bare "아니요": its two spellings are one answer, so vosk is sure of it (1.0);
    # after a filler some paths read other words (about 0.9).
    pcm = au.synth("어 아니요")
    loose = final(listen(model, pcm, min_confidence=0.3))
    assert isinstance(loose, SpeechResult) and loose.confidence < 0.99
    strict = final(listen(model, pcm, min_confidence=0.99))
    assert isinstance(strict, NoMatch)
    assert strict.text == loose.text
    assert strict.confidence == pytest.approx(loose.confidence, abs=0.05)


def test_region_tagged_language_uses_korean_fillers(model: object) -> None:
    grammar = SpeechRecognizer(model, INTENTS, lang="ko-KR").grammar
    assert {"음", "어", "좋아요"} <= set(grammar)
    result = final(listen(model, au.synth("음 네"), lang="ko-KR"))
    assert isinstance(result, SpeechResult) and result.intent == "yes", result


def test_gather_phrases_are_their_own_intents(model: object) -> None:
    rec = SpeechRecognizer(
        model, intents_from_phrases(["네", "아니요"]), lang="ko", prompt_playing=False
    )
    events = []
    for frame in au.frames(np.concatenate([au.silence(0.3), au.synth("네"), au.silence(1.5)])):
        events += rec.feed(frame)
    result = events[-1]
    assert isinstance(result, SpeechResult) and result.intent == "네"


def test_unknown_word_in_grammar_is_a_clear_error(model: object) -> None:
    with pytest.raises(VocabularyError, match="맞아요"):
        SpeechRecognizer(model, {"yes": ["네", "맞아요"]}, lang="ko")
    with pytest.raises(VocabularyError, match="intent 'no': empty"):
        SpeechRecognizer(model, {"yes": ["네"], "no": [" "]}, lang="ko")
    with pytest.raises(VocabularyError, match="node ask: phrase '맞아요'"):
        check_phrases(model, ["네", "맞아요"], where="node ask: ")
    check_phrases(model, ["네", "아니요", "지금 아니요"])


def test_without_phrases_takes_free_dictation(model: object) -> None:
    rec = SpeechRecognizer(model, {}, lang="ko", prompt_playing=False, min_confidence=0.0)
    events = []
    for frame in au.frames(np.concatenate([au.silence(0.3), au.synth("음 네"), au.silence(1.5)])):
        events += rec.feed(frame)
    result = events[-1]
    # Free recognition of espeak-ng Korean is poor (bench: "네" comes out as "네여"), so
    # only the shape is checked: some words, fillers removed, timed like the speech.
    assert isinstance(result, SpeechResult), events
    assert result.intent and set(result.intent.split()) <= set(result.text.split())
    assert not set(result.intent.split()) & {"음", "어"}
    assert 0.25 <= result.start <= 0.4 and result.end <= 1.0


# --- noise ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "dbfs"),
    [("white", -30), ("white", -15), ("pink", -30), ("pink", -20), ("music", -25)],
)
def test_noise_is_not_an_answer(model: object, kind: str, dbfs: float) -> None:
    noise = {"white": au.white_noise, "pink": au.pink_noise, "music": au.music}[kind](4.0, dbfs)
    events = listen(model, au.line(noise), no_input_timeout=3.0)
    assert not any(isinstance(e, SpeechResult) for _, e in events), events
    assert isinstance(final(events), NoMatch | NoInput)


def test_dtmf_tones_are_not_an_answer(model: object) -> None:
    t = np.arange(int(0.08 * au.RATE)) / au.RATE
    digits = []
    for low, high in ((697, 1209), (770, 1336), (852, 1477), (941, 1336)):  # 1 5 9 0
        digits += [
            0.2 * (np.sin(2 * np.pi * low * t) + np.sin(2 * np.pi * high * t)),
            np.zeros(int(0.08 * au.RATE)),
        ]
    events = listen(model, au.line(np.concatenate(digits)), no_input_timeout=2.0)
    assert not any(isinstance(e, SpeechResult) for _, e in events), events


def test_answer_heard_through_line_noise(model: object) -> None:
    speech = np.concatenate([au.silence(0.5), au.synth("네")])
    pcm = au.mix(speech, au.white_noise(speech.size / au.RATE + 2.0, -45))
    result = final(listen(model, pcm, lead=0.0))
    assert isinstance(result, SpeechResult) and result.intent == "yes", result


# --- timing: barge-in, end of speech, no input -----------------------------------------


def test_speech_start_is_reported_early_for_barge_in(model: object) -> None:
    pcm = au.synth("아니요")
    begin, _ = speech_bounds(pcm)
    events = listen(model, pcm, lead=1.0, prompt_playing=True)
    (fed, started), *rest = events
    assert isinstance(started, SpeechStarted)
    assert abs(started.at - (1.0 + begin)) <= 0.1
    assert fed - (1.0 + begin) <= 0.15  # reported within 150 ms of the first syllable
    assert isinstance(rest[-1][1], SpeechResult)


def test_end_of_speech_detected_after_hangover(model: object) -> None:
    pcm = au.synth("아니오")
    _, end = speech_bounds(pcm)
    events = listen(model, pcm, lead=0.5, tail=3.0)
    fed, result = events[-1]
    assert isinstance(result, SpeechResult)
    assert abs(result.end - (0.5 + end)) <= 0.1
    # The answer is known one hangover after the last syllable, not at the end of the tail.
    assert 0.5 + end + HANGOVER - 0.05 <= fed <= 0.5 + end + HANGOVER + 0.15


def test_filler_alone_keeps_listening_then_answer(model: object) -> None:
    pcm = np.concatenate([au.synth("음"), au.silence(1.2), au.synth("네")])
    events = listen(model, pcm)
    assert sum(isinstance(e, SpeechStarted) for _, e in events) == 2
    result = final(events)
    assert isinstance(result, SpeechResult) and result.intent == "yes"


def test_filler_alone_then_expire_is_no_input(model: object) -> None:
    rec = SpeechRecognizer(model, INTENTS, lang="ko", prompt_playing=False)
    audio = np.concatenate([au.silence(0.3), au.synth("음"), au.silence(1.0)])
    events = [e for f in au.frames(audio) for e in rec.feed(f)]
    assert [type(e) for e in events] == [SpeechStarted] and not rec.done
    assert rec.expire() == [NoInput(audio.size / au.RATE)] and rec.done


def test_no_input_counts_from_end_of_prompt(model: object) -> None:
    rec = SpeechRecognizer(model, INTENTS, lang="ko", no_input_timeout=2.0)
    assert all(rec.feed(f) == [] for f in au.frames(au.silence(4.0)))  # prompt still playing
    rec.prompt_finished()
    events: list[object] = []
    fed = 0
    for frame in au.frames(au.silence(3.0)):
        fed += frame.size
        events += rec.feed(frame)
        if events:
            break
    assert events == [NoInput(6.0)] and fed == 2.0 * au.RATE and rec.done
    assert rec.feed(au.silence(1.0)) == [] and rec.expire() == []


def test_expire_mid_answer_gives_the_result(model: object) -> None:
    rec = SpeechRecognizer(model, INTENTS, lang="ko", prompt_playing=False)
    events = []
    for frame in au.frames(np.concatenate([au.silence(0.3), au.synth("네")])):
        events += rec.feed(frame)
    assert [type(e) for e in events] == [SpeechStarted]
    assert rec.in_speech
    (result,) = rec.expire()
    assert isinstance(result, SpeechResult) and result.intent == "yes"
    assert not rec.in_speech and rec.done
    assert SpeechRecognizer(model, INTENTS, lang="ko").expire() == [NoInput(0.0)]


@pytest.mark.parametrize("chunk", [80, 1000, 8000])
def test_result_does_not_depend_on_packet_size(model: object, chunk: int) -> None:
    rec = SpeechRecognizer(model, INTENTS, lang="ko", prompt_playing=False)
    audio = np.concatenate([au.silence(0.5), au.synth("음 네"), au.silence(2.0)])
    events = [e for f in au.frames(audio, chunk) for e in rec.feed(f)]
    started, result = events
    assert started == SpeechStarted(0.5)
    assert isinstance(result, SpeechResult) and result.text == "음 네"


def test_rejects_non_int16_samples(model: object) -> None:
    rec = SpeechRecognizer(model, INTENTS, lang="ko")
    with pytest.raises(ValueError, match="int16"):
        rec.feed(np.zeros(160, dtype=np.float32))


# --- voice activity detection ---------------------------------------------------------


def _tone_burst() -> np.ndarray:
    t = np.arange(int(0.5 * au.RATE)) / au.RATE
    burst = (0.3 * 32767 * np.sin(2 * np.pi * 300 * t)).astype(np.int16)
    return np.concatenate([au.silence(0.4), burst, au.silence(1.0)])


def test_vad_finds_start_and_end_of_a_burst() -> None:
    events = VoiceActivityDetector().feed(_tone_burst())
    assert events == [VadStart(int(0.4 * au.RATE)), VadEnd(int(0.9 * au.RATE))]


@pytest.mark.parametrize("chunk", [7, 160, 333, 4000])
def test_vad_events_do_not_depend_on_chunk_size(chunk: int) -> None:
    vad = VoiceActivityDetector()
    audio = _tone_burst()
    events = [e for i in range(0, audio.size, chunk) for e in vad.feed(audio[i : i + chunk])]
    assert events == VoiceActivityDetector().feed(audio)


def test_vad_hears_short_answer_on_noisy_line() -> None:
    speech = au.synth("네")
    begin, end = speech_bounds(speech)
    x = speech.astype(np.float64) / 32768
    active = 10 * np.log10(np.mean(x[np.abs(x) > 0.01] ** 2))
    lead = int(1.0 * au.RATE)
    audio = np.concatenate([au.silence(1.0), speech, au.silence(1.0)])
    noisy = au.mix(audio, au.white_noise(audio.size / au.RATE, active - 10))  # 10 dB SNR
    events = VoiceActivityDetector().feed(noisy)
    assert [type(e) for e in events] == [VadStart, VadEnd], events
    assert abs(events[0].sample / au.RATE - (1.0 + begin)) <= 0.15
    assert abs(events[1].sample / au.RATE - (1.0 + end)) <= 0.15
    assert events[0].sample > lead - 0.15 * au.RATE


def test_vad_ignores_steady_white_noise() -> None:
    noise = au.line(au.white_noise(3.0, -20))
    assert VoiceActivityDetector().feed(noise) == []


# --- model configuration --------------------------------------------------------------


def test_model_is_loaded_once(model: object) -> None:
    assert load_model(lang="ko") is model
    assert load_model(find_model(lang="ko")) is model
    check_model(lang="ko")


def test_env_variable_wins_over_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AUTOCALL_VOSK_MODEL", str(tmp_path / "m"))
    assert find_model(lang="ko") == tmp_path / "m"
    assert find_model(tmp_path / "explicit", lang="ko") == tmp_path / "explicit"
    monkeypatch.delenv("AUTOCALL_VOSK_MODEL")
    assert (find_model(lang="ko") / "am" / "final.mdl").is_file()
    assert find_model(lang="ko-KR") == find_model(lang="ko") == find_model(lang="KO_kr")


def test_no_model_configured_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUTOCALL_VOSK_MODEL", raising=False)
    # English no longer needs a vosk model (pocketsphinx answers): ask for German.
    with pytest.raises(ModelError, match="AUTOCALL_VOSK_MODEL.*packaged model only for ko") as exc:
        check_model(lang="de")
    assert "vosk-model-de" not in str(exc.value)  # no such package on PyPI: never suggest it
    assert "vosk-model-small-de" in str(exc.value)  # the model to download, by name


def test_missing_model_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no such directory.*AUTOCALL_VOSK_MODEL"):
        check_model(tmp_path / "nowhere")


def test_incomplete_model_lists_missing_files(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "model.conf").write_text("--beam=10\n")
    with pytest.raises(ModelError, match=r"missing am/final.mdl, graph/HCLG.fst"):
        check_model(tmp_path)


def test_broken_model_is_reported_at_validation(tmp_path: Path) -> None:
    good = find_model(lang="ko")
    shutil.copytree(good / "conf", tmp_path / "conf")
    (tmp_path / "am").mkdir()
    (tmp_path / "graph").mkdir()
    with open(good / "am" / "final.mdl", "rb") as f:
        (tmp_path / "am" / "final.mdl").write_bytes(f.read(50_000))
    (tmp_path / "graph" / "HCLG.fst").write_bytes(os.urandom(1000))
    with pytest.raises(ModelError, match="cannot be loaded.*download"):
        check_model(tmp_path)


def test_answer_after_filler_is_recognised_every_time(model: object) -> None:
    """Kaldi dithers its features, so the same audio decodes a little differently each
    time; an answer's confidence must not straddle the threshold because of it."""
    pcm = au.synth("어 아니요")
    results = [final(listen(model, pcm)) for _ in range(8)]
    assert all(isinstance(r, SpeechResult) and r.intent == "no" for r in results), results


def test_confidence_is_the_share_of_paths_that_give_the_answer(model: object) -> None:
    from autocall.speech.asr import _VoskUtterance

    rec = SpeechRecognizer(model, INTENTS, lang="ko")

    class Decoded:  # what vosk's KaldiRecognizer returns for n-best, as data
        def __init__(self, alternatives: list[dict[str, object]]) -> None:
            self.alternatives = alternatives

        def SetMaxAlternatives(self, n: int) -> None:  # noqa: N802 (vosk's name)
            assert n > 1

        def FinalResult(self) -> str:  # noqa: N802
            import json

            return json.dumps({"alternatives": self.alternatives})

    def path(score: float, *words: str) -> dict[str, object]:
        return {"confidence": score, "result": [{"word": w} for w in words]}

    # two spellings of "no" (posteriors 0.5 each): one answer, so sure of it
    same = _VoskUtterance(Decoded([path(114.2, "아니오"), path(114.2, "아니요")]), rec._intent_of)
    assert same.finish().result() == [("아니오", pytest.approx(1.0))]
    # "no" against "yes" at ln 3 apart: 3/4 of the mass says no
    split = [path(100.0 + np.log(3), "어", "아니오"), path(100.0, "어", "네")]
    words = _VoskUtterance(Decoded(split), rec._intent_of).finish().result()
    assert words == [("어", pytest.approx(0.75)), ("아니오", pytest.approx(0.75))]
    # a best path that is no answer is scored by its own posterior
    garbage = [path(50.0 + np.log(4), "어디"), path(50.0, "아니오")]
    assert _VoskUtterance(Decoded(garbage), rec._intent_of).finish().result() == [
        ("어디", pytest.approx(0.8))
    ]
    assert _VoskUtterance(Decoded([]), rec._intent_of).finish().result() == []
