"""Text-to-speech prompt rendering: engines and a render cache.

TTS is a cache, not a call-time dependency (DESIGN.md §3): prompts are rendered ahead
of time into ``cache_dir`` as 8 kHz 16-bit mono WAV (16 kHz for wideband calls, G.722:
a separate entry, keyed by the rate too), loudness-normalised by
:mod:`autocall.audio.convert`, and calls only read files.

Engines are tried in preference order (``AUTOCALL_TTS``, default gTTS, piper, espeak-ng).
gTTS is online and always runs with a connect/read timeout; when it fails it is marked
unavailable for a cool-down so one dead network costs one fast failure, not one per prompt. A render
is written only once it is complete and decodes to audible audio, through a temporary
file and ``os.replace``, so a render that fails or is killed leaves no cache entry.

Entries are keyed by normalised text, language, voice, engine and engine version
(:mod:`autocall.speech.cache`). A prompt rendered by a fallback engine is rendered
again by a better engine once that one is reachable, and the better render replaces
the fallback.
"""

from __future__ import annotations

import abc
import io
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
import numpy.typing as npt
import soundfile as sf

from autocall.audio import convert
from autocall.audio.convert import AudioFileError, NetworkFormat
from autocall.speech import cache

__all__ = [
    "CACHE_FORMAT",
    "RATES",
    "WIDEBAND_FORMAT",
    "EngineUnavailable",
    "EspeakEngine",
    "GttsEngine",
    "PromptText",
    "RenderOutcome",
    "TtsEngine",
    "TtsError",
    "UnsupportedLanguage",
    "cache_entries",
    "default_engines",
    "engine_named",
    "forget_failures",
    "missing_engines",
    "prompt_key",
    "render_prompt",
    "render_prompts",
    "synthesize_at",
]

T = TypeVar("T")

CACHE_FORMAT = NetworkFormat(8000, "pcm16")
"""What a cache entry holds: 8 kHz 16-bit mono PCM WAV at the convert loudness target
(``WIDEBAND_FORMAT`` for entries rendered with ``rate=16000``)."""
WIDEBAND_FORMAT = NetworkFormat(16000, "pcm16")
"""16 kHz entries, for G.722 calls (ITU-T G.722 carries 50-7000 Hz)."""
RATES = (8000, 16000)

GTTS_URL_ENV = "AUTOCALL_GTTS_URL"
"""Base URL that replaces ``https://translate.google.<tld>`` (a proxy or a local stand-in)."""


class TtsError(RuntimeError):
    """A render failed; the message says which engine and why."""


class EngineUnavailable(TtsError):
    """The engine cannot render anything right now (network down, binary missing)."""


class UnsupportedLanguage(TtsError):
    """The engine works but does not speak this language."""


@dataclass(frozen=True)
class PromptText:
    """A text prompt to speak: the text, its language (BCP 47 tag), an optional voice and
    an optional engine order (a tree's or node's ``tts: [piper, espeak]``; None: the
    settings' order)."""

    text: str
    language: str = "en"
    voice: str | None = None
    engines: tuple[str, ...] | None = None


@dataclass(frozen=True)
class RenderOutcome:
    """What happened to one prompt: rendered now, found in the cache, or failed."""

    prompt: PromptText
    status: Literal["rendered", "cached", "failed"]
    engine: str | None
    path: Path | None
    error: str | None


# Cool-downs are per process and per engine identity, so fresh engine objects (one per
# CLI call) still skip an engine that just failed.
_DOWN_UNTIL: dict[str, float] = {}


class TtsEngine(abc.ABC):
    """A speech engine: text in, the bytes of a complete audio file (WAV/MP3) out."""

    name: str = "engine"
    cooldown_s: float = 300.0

    @property
    @abc.abstractmethod
    def version(self) -> str:
        """Engine version; part of the cache key, so an upgrade re-renders."""

    @abc.abstractmethod
    def supports(self, language: str) -> bool:
        """Whether this engine speaks *language* (a BCP 47 tag such as ``en-US``)."""

    @abc.abstractmethod
    def synthesize(self, text: str, language: str, voice: str | None) -> bytes:
        """Render *text*; raise EngineUnavailable, UnsupportedLanguage or TtsError."""

    @property
    def identity(self) -> str:
        return self.name

    def missing(self) -> str | None:
        """Why this engine cannot speak on this machine at all (not installed), with the
        install hint; None when it is installed. Cheap: no render, no network."""
        return None

    def available(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        return _DOWN_UNTIL.get(self.identity, 0.0) <= now

    def mark_unavailable(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        _DOWN_UNTIL[self.identity] = now + self.cooldown_s


class GttsEngine(TtsEngine):
    """Google Translate's TTS through the gTTS library, always with timeouts.

    ``timeout`` is requests' (connect, read) pair: read bounds each wait for bytes.
    ``deadline_s`` bounds the whole render, name lookup included (requests' timeouts
    do not cover DNS, and a server that trickles bytes never trips a read timeout).

    ``base_url`` (or ``$AUTOCALL_GTTS_URL``) replaces the Google host, for a proxy or a
    local stand-in; gTTS itself only lets the top-level domain change. ``voice`` is
    read as gTTS's accent domain (``co.uk``, ``com.au``…) when it looks like one.
    """

    name = "gtts"

    def __init__(
        self,
        *,
        base_url: str | None = None,
        timeout: tuple[float, float] = (2.0, 10.0),
        deadline_s: float = 30.0,
        cooldown_s: float = 300.0,
    ) -> None:
        self.base_url = (base_url or os.environ.get(GTTS_URL_ENV) or "").rstrip("/") or None
        self.timeout = timeout
        self.deadline_s = deadline_s
        self.cooldown_s = cooldown_s

    @property
    def identity(self) -> str:
        return f"gtts@{self.base_url or 'google'}"

    @property
    def version(self) -> str:
        import gtts

        return str(gtts.__version__)

    def supports(self, language: str) -> bool:
        from gtts.lang import tts_langs

        return _gtts_language(language, tts_langs()) is not None

    def synthesize(self, text: str, language: str, voice: str | None) -> bytes:
        from gtts import gTTS, gTTSError
        from gtts.lang import tts_langs

        lang = _gtts_language(language, tts_langs())
        if lang is None:
            raise UnsupportedLanguage(f"gtts: language {language!r} is not supported")
        tld = voice if voice and re.fullmatch(r"[a-z]{2,3}(\.[a-z]{2,3})?", voice) else "com"
        base = self.base_url

        class _Routed(gTTS):
            def _prepare_requests(self) -> list[Any]:
                requests = super()._prepare_requests()
                if base is not None:
                    for pr in requests:
                        path = pr.url.split("/", 3)[3]
                        pr.prepare_url(f"{base}/{path}", None)
                return requests

        def fetch() -> list[bytes]:
            tts = _Routed(text, tld=tld, lang=lang, lang_check=False, timeout=self.timeout)
            return [part for part in tts.stream() if part]

        try:
            parts = _within(fetch, self.deadline_s)
        except TimeoutError as exc:
            raise EngineUnavailable(
                f"gtts: no complete answer within {self.deadline_s:g} s"
            ) from exc
        except gTTSError as exc:
            raise EngineUnavailable(f"gtts: {exc}") from exc
        except (OSError, ValueError) as exc:
            raise EngineUnavailable(f"gtts: {type(exc).__name__}: {exc}") from exc
        if not parts:
            raise EngineUnavailable("gtts: the server answered without audio")
        if len(parts) == 1:
            return parts[0]
        return _join_parts(parts)


def _within(work: Callable[[], T], seconds: float) -> T:
    """Run *work* in a daemon thread and give up waiting after *seconds* (TimeoutError).

    An abandoned thread ends on its own when its socket times out or closes.
    """
    box: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            box.append(work())
        except BaseException as exc:  # handed to the caller's thread below
            failure.append(exc)

    worker = threading.Thread(target=run, name="gtts-render", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise TimeoutError(f"gave up after {seconds:g} s")
    if failure:
        raise failure[0]
    return box[0]


def _join_parts(parts: list[bytes]) -> bytes:
    """Decode each MP3 part on its own and join the samples into one WAV.

    gTTS asks for at most 100 characters per request; simply concatenating the MP3s
    is not enough, because a decoder trusts the first part's Xing frame count and
    stops there.
    """
    decoded: list[npt.NDArray[np.float64]] = []
    rate = 0
    for n, part in enumerate(parts):
        try:
            frames, part_rate = convert.decode(part, name=f"<gtts part {n + 1}>")
        except AudioFileError as exc:
            raise TtsError(f"gtts: part {n + 1} of {len(parts)}: {exc.detail}") from exc
        mono = convert.to_mono(frames)
        decoded.append(
            mono if not rate or part_rate == rate else convert.resample(mono, part_rate, rate)
        )
        rate = rate or part_rate
    buf = io.BytesIO()
    sf.write(buf, np.concatenate(decoded), rate, format="WAV", subtype="FLOAT")
    return buf.getvalue()


def _gtts_language(language: str, known: dict[str, str]) -> str | None:
    tag = language.replace("_", "-")
    for candidate in (tag, tag.lower(), tag.split("-")[0].lower()):
        if candidate in known:
            return candidate
    region = {k.lower(): k for k in known}
    return region.get(tag.lower())


ESPEAK_HINT = "apt-get install espeak-ng (scripts/setup.sh installs it)"


class EspeakEngine(TtsEngine):
    """espeak-ng through a subprocess: offline, about a hundred languages."""

    name = "espeak-ng"

    def __init__(self, *, executable: str = "espeak-ng", timeout_s: float = 60.0) -> None:
        self.executable = executable
        self.timeout_s = timeout_s
        self._version: str | None = None
        self._languages: frozenset[str] | None = None
        self._voices: frozenset[str] = frozenset()

    def _run(self, args: list[str], stdin: bytes | None = None) -> bytes:
        exe = shutil.which(self.executable)
        if exe is None:
            raise EngineUnavailable(
                f"espeak-ng: {self.executable!r} is not installed; {ESPEAK_HINT}"
            )
        try:
            done = subprocess.run(
                [exe, *args],
                input=stdin,
                capture_output=True,
                timeout=self.timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise TtsError(f"espeak-ng: no result within {self.timeout_s:.0f} s") from exc
        if done.returncode != 0:
            err = done.stderr.decode("utf-8", "replace").strip()
            raise TtsError(f"espeak-ng: exit status {done.returncode} {err}".rstrip())
        return done.stdout

    @property
    def version(self) -> str:
        if self._version is None:
            out = self._run(["--version"]).decode("utf-8", "replace")
            m = re.search(r"text-to-speech:\s*(\S+)", out)
            self._version = m.group(1) if m else out.strip()[:40]
        return self._version

    def languages(self) -> frozenset[str]:
        """Language tags of the installed voices (``espeak-ng --voices``)."""
        if self._languages is None:
            text = self._run(["--voices"]).decode("utf-8", "replace")
            tags: set[str] = set()
            voices: set[str] = set()
            for line in text.splitlines()[1:]:
                parts = line.split()
                if len(parts) > 1:
                    tags.add(parts[1].lower())
                if len(parts) > 4:  # "English_(America)" and "gmw/en-US" name voices too
                    voices.update((parts[3].lower(), parts[4].lower().rsplit("/", 1)[-1]))
                # "Other Languages" column: "(en 2)(en-gb 3)" — tags the voice also answers to.
                tags.update(t.lower() for t in re.findall(r"\(([\w-]+) \d+\)", line))
            self._languages = frozenset(tags)
            self._voices = frozenset(voices) | self._languages
        return self._languages

    def knows_voice(self, voice: str) -> bool:
        """Whether *voice* is espeak-ng's (``en-us``, ``en-us+f2``, ``English_(America)``);
        a piper voice (``en_US-joe-medium``) or a gTTS accent (``co.uk``) is not."""
        self.languages()
        return voice.split("+", 1)[0].lower() in self._voices

    def _voice_for(self, language: str) -> str | None:
        tag = language.lower().replace("_", "-")
        known = self.languages()
        for candidate in (tag, tag.split("-")[0]):
            if candidate in known:
                return candidate
        return None

    def missing(self) -> str | None:
        if shutil.which(self.executable) is None:
            return f"espeak-ng: {self.executable!r} is not installed; {ESPEAK_HINT}"
        return None

    def supports(self, language: str) -> bool:
        return self._voice_for(language) is not None

    def synthesize(self, text: str, language: str, voice: str | None) -> bytes:
        if voice is None or not self.knows_voice(voice):
            # another engine's voice (a tree's piper voice when piper is not there, a gTTS
            # accent): espeak-ng speaks the language with its own voice instead
            voice = self._voice_for(language)
            if voice is None:
                raise UnsupportedLanguage(f"espeak-ng: language {language!r} is not installed")
        # Text goes through stdin (UTF-8, -b 1) so a leading '-' is never read as an option.
        wav = self._run(["-b", "1", "-v", voice, "--stdout"], stdin=text.encode("utf-8"))
        if not wav:  # espeak-ng exits 0 with no output for an unknown voice
            raise UnsupportedLanguage(f"espeak-ng: voice {voice!r} produced no audio")
        return wav


def forget_failures() -> None:
    """End every engine's cool-down now (after the network came back, or between tests)."""
    _DOWN_UNTIL.clear()


ENGINE_NAMES = ("gtts", "piper", "espeak")
"""Names ``AUTOCALL_TTS`` and ``--engine`` accept (``espeak-ng`` also means espeak)."""


def engine_named(name: str) -> TtsEngine:
    """The engine called *name*; ValueError listing the known names otherwise."""
    key = name.strip().lower()
    if key == "gtts":
        return GttsEngine()
    if key == "piper":
        from autocall.speech.piper import PiperEngine  # piper's runtime loads on first render

        return PiperEngine()
    if key in ("espeak", "espeak-ng"):
        return EspeakEngine()
    raise ValueError(f"unknown TTS engine {name!r}; use one of {', '.join(ENGINE_NAMES)}")


def missing_engines(engines: Sequence[TtsEngine]) -> list[str]:
    """One line per engine in *engines* that is not installed here: what and how to install."""
    return [why for why in (e.missing() for e in engines) if why is not None]


def default_engines(order: Sequence[str] | None = None) -> list[TtsEngine]:
    """Engines in preference order: *order*, else ``$AUTOCALL_TTS``, else gTTS, piper, espeak.

    gTTS (online, with a timeout) sounds best when reachable; piper is the natural offline
    voice; espeak-ng speaks about a hundred languages and is always there.
    """
    if order is None:
        from autocall.config import tts_order

        order = tts_order()
    return [engine_named(name) for name in order]


# ---------------------------------------------------------------- rendering


def prompt_key(prompt: PromptText, rate: int = 8000) -> str:
    """The cache key: 8 kHz entries keep the key they always had, other rates add theirs
    (``…-16k``), so the two renders of one prompt never replace each other."""
    key = cache.prompt_key(prompt.text, prompt.language, prompt.voice)
    return key if rate == CACHE_FORMAT.rate else f"{key}-{rate // 1000}k"


def _format(rate: int) -> NetworkFormat:
    if rate not in RATES:
        raise ValueError(f"TTS renders at 8000 or 16000 Hz, not {rate}")
    return CACHE_FORMAT if rate == CACHE_FORMAT.rate else WIDEBAND_FORMAT


def cache_entries(cache_dir: Path, prompt: PromptText, rate: int = 8000) -> list[Path]:
    """Every cache entry for *prompt* at *rate*, whatever engine made it."""
    return cache.entries(cache_dir, prompt_key(prompt, rate))


def _entry_path(cache_dir: Path, prompt: PromptText, engine: TtsEngine, rate: int) -> Path:
    return cache.entry_path(cache_dir, prompt_key(prompt, rate), engine.name, engine.version)


def _rank(name: str, engines: Sequence[TtsEngine]) -> int:
    names = [e.name for e in engines]
    return names.index(name) if name in names else len(names)


def _render_with(
    engine: TtsEngine,
    prompt: PromptText,
    dest: Path,
    fallbacks: Sequence[str] = (),
    fmt: NetworkFormat = CACHE_FORMAT,
) -> None:
    text = cache.normalise_text(prompt.text)
    if not text:
        raise TtsError("the prompt text is empty")
    data = engine.synthesize(text, prompt.language, prompt.voice)
    try:
        frames, rate = convert.decode(data, name=f"<{engine.name} output>")
        mono = convert.to_mono(frames)
        samples = convert.prepare(mono, rate, fmt.rate, name=f"<{engine.name} output>")
    except AudioFileError as exc:
        raise TtsError(f"{engine.name}: unusable audio ({exc.detail})") from exc
    cache.store(dest, convert.encode(samples, fmt), replaces=fallbacks)


def synthesize_at(
    prompt: PromptText, rate: int, engines: Sequence[TtsEngine]
) -> tuple[str, npt.NDArray[np.float64]]:
    """(engine name, loudness-normalised mono samples at *rate*) from the first engine that
    speaks; no cache. For one-off renders at a rate other than the cache's (16 kHz)."""
    text = cache.normalise_text(prompt.text)
    if not text:
        raise TtsError("the prompt text is empty")
    errors: list[str] = []
    for engine in engines:
        if not engine.available():
            errors.append(f"{engine.name}: unavailable (cooling down after a failure)")
            continue
        try:
            data = engine.synthesize(text, prompt.language, prompt.voice)
            frames, got = convert.decode(data, name=f"<{engine.name} output>")
            return engine.name, convert.prepare(convert.to_mono(frames), got, rate)
        except EngineUnavailable as exc:
            engine.mark_unavailable()
            errors.append(str(exc))
        except AudioFileError as exc:
            errors.append(f"{engine.name}: unusable audio ({exc.detail})")
        except TtsError as exc:
            errors.append(str(exc))
    raise TtsError("; ".join(errors) or "no engine")


def _render_one(
    prompt: PromptText,
    cache_dir: Path,
    engines: Sequence[TtsEngine],
    upgrade: bool,
    rate: int = 8000,
) -> RenderOutcome:
    names = {e.name for e in engines}
    fmt = _format(rate)
    if not upgrade:
        # a render by an engine this prompt's order leaves out is not this prompt's audio
        existing = [
            p for p in cache_entries(cache_dir, prompt, rate) if cache.engine_of(p) in names
        ]
        if existing:
            ranked = sorted(existing, key=lambda p: _rank(cache.engine_of(p), engines))
            return RenderOutcome(prompt, "cached", cache.engine_of(ranked[0]), ranked[0], None)
    errors: list[str] = []
    for rank, engine in enumerate(engines):
        try:
            entry = _entry_path(cache_dir, prompt, engine, rate)
        except TtsError as exc:
            engine.mark_unavailable()
            errors.append(str(exc))
            continue
        if entry.is_file():
            return RenderOutcome(prompt, "cached", engine.name, entry, None)
        if not engine.available():
            errors.append(f"{engine.name}: unavailable (cooling down after a failure)")
            continue
        try:
            _render_with(engine, prompt, entry, [e.name for e in engines[rank + 1 :]], fmt)
        except EngineUnavailable as exc:
            engine.mark_unavailable()
            errors.append(str(exc))
            continue
        except TtsError as exc:
            errors.append(str(exc))
            continue
        return RenderOutcome(prompt, "rendered", engine.name, entry, None)
    leftovers = [p for p in cache_entries(cache_dir, prompt, rate) if cache.engine_of(p) in names]
    if leftovers:  # an older render (other engine version) beats no prompt at all
        return RenderOutcome(prompt, "cached", cache.engine_of(leftovers[0]), leftovers[0], None)
    return RenderOutcome(prompt, "failed", None, None, "; ".join(errors) or "no engine")


def render_prompts(
    prompts: Iterable[PromptText],
    cache_dir: Path,
    *,
    engines: Sequence[TtsEngine] | None = None,
    on_progress: Callable[[RenderOutcome], None] | None = None,
    upgrade: bool = True,
    rate: int = 8000,
) -> list[RenderOutcome]:
    """Render every prompt (or find it cached); one outcome per prompt, in order.

    This is the ahead-of-time path (``autocall prompts render``): with ``upgrade`` a
    prompt cached from a fallback engine is tried again with each better engine. Engines:
    *engines* when given, else each prompt's own order, else :func:`default_engines`.
    ``rate``: 8000 (G.711 calls) or 16000 (G.722 calls); each rate has its own entries.
    """
    _format(rate)
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    cache.clean_stale_temps(cache_dir)
    orders: dict[tuple[str, ...] | None, list[TtsEngine]] = {}
    if engines is not None:
        orders[None] = list(engines)
    outcomes: list[RenderOutcome] = []
    for prompt in prompts:
        # *engines* (a caller's override) beats the prompt's own order, which beats settings
        order = None if engines is not None else prompt.engines
        if order not in orders:
            orders[order] = default_engines(order)
        outcome = _render_one(prompt, cache_dir, orders[order], upgrade, rate)
        outcomes.append(outcome)
        if on_progress is not None:
            on_progress(outcome)
    return outcomes


def render_prompt(
    prompt: PromptText,
    cache_dir: Path,
    *,
    engines: Sequence[TtsEngine] | None = None,
    upgrade: bool = False,
    rate: int = 8000,
) -> Path:
    """Path of the prompt's 16-bit mono WAV at ``rate`` (8000, or 16000 for G.722 calls),
    rendering it if needed; TtsError if none.

    This is the call-time path: any cached render is used as it is (no network wait on
    a live call just to improve a fallback render), unless ``upgrade`` is set.
    """
    (outcome,) = render_prompts([prompt], cache_dir, engines=engines, upgrade=upgrade, rate=rate)
    if outcome.path is None:
        raise TtsError(f"cannot render {prompt.text[:40]!r} ({prompt.language}): {outcome.error}")
    return outcome.path
