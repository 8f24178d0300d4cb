"""English spoken answers with no model to download: pocketsphinx's grammar decoder.

vosk needs a model copied in by hand, and PyPI has none for English. pocketsphinx 5
(``pip install pocketsphinx``, BSD-2-Clause) ships a US English acoustic model and
dictionary inside its wheel, so ``speech: true`` in an English tree works on a fresh
install. :mod:`autocall.speech.asr` uses this model when the language is English and
no vosk model is configured; vosk stays the engine for every language it has a model for.

The recogniser is a grammar decoder only (JSGF alternatives: the expected phrases, the
fillers and a set of everyday garbage phrases that soak up anything else), which is all
a menu, a yes/no question or a spoken digit string needs. The acoustic model is 16 kHz
wideband; call audio is 8 kHz narrowband, so it is resampled up (the empty band above
4 kHz costs accuracy on a robotic voice, see bench/bench_asr.py). Word confidence is the
word's posterior probability from the lattice (``bestpath``).

The audio of one utterance (the VAD's speech, at most ``max_speech``) is decoded in one
pass when it ends, so the cepstral mean is this caller's; measured on this machine that
beats streaming with the previous caller's mean. That pass costs tens of milliseconds at
the end of an utterance (bench/bench_asr.py). A decoder takes ~0.3 s to load the acoustic
model, so decoders are pooled per process: one is borrowed for one utterance and handed
back when its words are read.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from pocketsphinx import Decoder

__all__ = ["DIGIT_LOOP", "MODEL_RATE", "SphinxModel", "SphinxUtterance", "load_english"]

MODEL_RATE = 16000
"""The rate of pocketsphinx's bundled en-us acoustic model."""

DIGIT_LOOP = ("zero", "oh", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
"""Words of the grammar for a spoken digit string (a gather with no phrases)."""


def _jsgf(weighted: Sequence[tuple[str, int]], loop: bool) -> str:
    body = " | ".join(f"/{w}/ {phrase}" for phrase, w in weighted)
    rule = "( <alt> )+" if loop else "<alt>"
    return f"#JSGF V1.0;\ngrammar g;\npublic <s> = {rule} ;\n<alt> = {body} ;\n"


class _Pooled:
    """A decoder and the names of the grammars already compiled into it."""

    def __init__(self, decoder: Decoder) -> None:
        self.decoder = decoder
        self.grammars: set[str] = set()


class SphinxModel:
    """The bundled en-us model: says which words it knows and lends decoders out."""

    def __init__(self) -> None:
        from pocketsphinx import Decoder  # ImportError when pocketsphinx is not installed

        self._decoder_class = Decoder
        self._pool: list[_Pooled] = []
        self._lock = threading.Lock()
        self._probe = self._new_decoder()

    def _new_decoder(self) -> Decoder:
        return self._decoder_class(
            samprate=MODEL_RATE, lm=None, bestpath=True, loglevel="FATAL"
        )

    def knows(self, word: str) -> bool:
        """Whether the dictionary has *word* (a grammar with an unknown word cannot load)."""
        with self._lock:
            return bool(word) and self._probe.lookup_word(word.lower()) is not None

    def utterance(
        self, weighted: Sequence[tuple[str, int]], rate: int, *, loop: bool = False
    ) -> SphinxUtterance:
        """A decoder for one utterance over these (phrase, weight) alternatives."""
        with self._lock:
            pooled = self._pool.pop() if self._pool else None
        if pooled is None:
            pooled = _Pooled(self._new_decoder())
        return SphinxUtterance(self, pooled, _jsgf(weighted, loop), rate)

    def give_back(self, decoder: _Pooled) -> None:
        with self._lock:
            self._pool.append(decoder)


class SphinxUtterance:
    """One utterance: feed int16 bytes at the call's rate, then read (word, posterior)."""

    def __init__(self, model: SphinxModel, pooled: _Pooled, grammar: str, rate: int) -> None:
        self._model = model
        self._pooled: _Pooled | None = pooled
        self._rate = rate
        self._chunks: list[bytes] = []
        self._name = "g" + hashlib.sha256(grammar.encode("utf-8")).hexdigest()[:16]
        if self._name not in pooled.grammars:
            pooled.decoder.add_jsgf_string(self._name, grammar)
            pooled.grammars.add(self._name)

    def accept(self, pcm: bytes) -> None:
        """Keep the audio: it is decoded in one pass at the end (see :meth:`words`)."""
        if self._pooled is not None and pcm:
            self._chunks.append(pcm)

    def words(self) -> list[tuple[str, float]]:
        """The words heard with their posteriors; the decoder goes back to the pool."""
        pooled, self._pooled = self._pooled, None
        if pooled is None:
            return []
        decoder = pooled.decoder
        try:
            # One pass over the whole utterance (at most the recogniser's max_speech):
            # its cepstral mean is then this caller's, not the previous one's, which is
            # what makes short answers on a telephone line recognisable at all.
            x: npt.NDArray[np.int16] = np.frombuffer(b"".join(self._chunks), dtype=np.int16)
            self._chunks.clear()
            if self._rate != MODEL_RATE and x.size:
                import soxr

                x = soxr.resample(x, self._rate, MODEL_RATE)
            decoder.activate_search(self._name)
            decoder.start_utt()
            decoder.process_raw(x.tobytes(), False, True)
            decoder.end_utt()
            heard = [
                (seg.word.split("(")[0], float(min(1.0, seg.prob)))
                for seg in (decoder.seg() if decoder.hyp() is not None else ())
                if not seg.word.startswith(("<", "["))
            ]
        finally:
            self._model.give_back(pooled)
        return heard


_english: SphinxModel | None = None
_english_lock = threading.Lock()


def load_english() -> SphinxModel:
    """The process-wide en-us model (ImportError when pocketsphinx is missing)."""
    global _english
    with _english_lock:
        if _english is None:
            _english = SphinxModel()
        return _english
