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
4 kHz is filled with faint noise, see :func:`widen`). Confidence is n-best agreement
(:meth:`SphinxUtterance._agreement`).

The audio of one utterance (the VAD's speech, at most ``max_speech``) is decoded in one
pass when it ends, so the cepstral mean is this caller's; measured on this machine that
beats streaming with the previous caller's mean. That pass costs 45-65 ms of CPU in the
``feed`` that ends an utterance (2-CPU machine under load; ~120 ms the first time a
grammar is compiled into a pooled decoder), 0.02 s of CPU per second of call audio
overall (bench/bench_asr.py --english). pocketsphinx holds the GIL while it decodes, so
a worker thread does not spare the event loop: with an answer every 150 ms, a 20 ms
media clock on the loop woke up late by 100-470 ms (p99, load average 7-9 on 2 cores)
with the decode inline and 90-160 ms with it in a thread, and 7-11 ms (idle: 3-6 ms)
with it in a process pool (bench/bench_sphinx_loop.py). So the telephony runner calls
:meth:`SphinxModel.offload`: :meth:`SphinxUtterance.finish` then sends the utterance's
audio to a spawned worker process and returns a future at once. Without it (tests,
benchmarks, the validator) the decode runs in the caller's thread. A decoder takes
~0.3 s to load the acoustic model, so decoders are pooled per process (the worker has
its own): one is borrowed for one utterance and handed back when its words are read.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import multiprocessing
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from pocketsphinx import Decoder

log = logging.getLogger(__name__)

__all__ = [
    "DIGIT_LOOP",
    "HIGH_BAND_DBFS",
    "MODEL_RATE",
    "SphinxModel",
    "SphinxUtterance",
    "Words",
    "load_english",
    "widen",
]

MODEL_RATE = 16000
"""The rate of pocketsphinx's bundled en-us acoustic model."""

DIGIT_LOOP = ("zero", "oh", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
"""Words of the grammar for a spoken digit string (a gather with no phrases)."""


def _jsgf(weighted: Sequence[tuple[str, float]], loop: bool) -> str:
    body = " | ".join(f"/{w:g}/ {phrase}" for phrase, w in weighted)
    rule = "( <alt> )+" if loop else "<alt>"
    return f"#JSGF V1.0;\ngrammar g;\npublic <s> = {rule} ;\n<alt> = {body} ;\n"


class _Pooled:
    """A decoder and the names of the grammars already compiled into it."""

    def __init__(self, decoder: Decoder) -> None:
        self.decoder = decoder
        self.grammars: set[str] = set()


Words = list[tuple[str, float]]
"""What a decode hears: (word, confidence) in order, fillers and silences left out."""


class SphinxModel:
    """The bundled en-us model: says which words it knows, decodes utterances.

    Decoding runs in this process (:meth:`decode`) unless :meth:`offload` gave it a
    process pool; :meth:`decode_later` then sends the utterance to a worker process.
    """

    def __init__(self) -> None:
        from pocketsphinx import Decoder  # ImportError when pocketsphinx is not installed

        self._decoder_class = Decoder
        self._pool: list[_Pooled] = []
        self._lock = threading.Lock()
        self._probe = self._new_decoder()
        self._workers: ProcessPoolExecutor | None = None

    def _new_decoder(self) -> Decoder:
        return self._decoder_class(
            samprate=MODEL_RATE, lm=None, bestpath=True, loglevel="FATAL"
        )

    def knows(self, word: str) -> bool:
        """Whether the dictionary has *word* (a grammar with an unknown word cannot load)."""
        with self._lock:
            return bool(word) and self._probe.lookup_word(word.lower()) is not None

    def utterance(
        self,
        weighted: Sequence[tuple[str, float]],
        rate: int,
        *,
        loop: bool = False,
        meaning: Mapping[str, str] | None = None,
    ) -> SphinxUtterance:
        """One utterance over these (phrase, weight) alternatives; *meaning* maps a phrase
        to what it means (its intent), for the confidence."""
        return SphinxUtterance(self, _jsgf(weighted, loop), rate, dict(meaning or {}))

    # -- decoding ------------------------------------------------------------------------

    def offload(self, workers: int = 1) -> None:
        """Decode in *workers* processes from now on (idempotent; started once).

        pocketsphinx holds the GIL while it decodes (bench/bench_sphinx_loop.py), so a
        thread does not help: a 20 ms media clock on the same event loop woke up to
        hundreds of ms late. The workers are spawned (not forked from a process with an
        event loop and threads) and load the model before their first utterance; as with
        any spawned process, a script of one's own that places calls must keep its top
        level under ``if __name__ == "__main__":`` (the ``autocall`` command does).
        """
        with self._lock:
            if self._workers is not None:
                return
            self._workers = ProcessPoolExecutor(
                max_workers=workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_worker_start,
            )
            self._workers.submit(_worker_ready)  # start loading now, not at the first answer

    @property
    def offloaded(self) -> bool:
        return self._workers is not None

    def close(self) -> None:
        """Stop the worker processes (decoding is back in this process)."""
        with self._lock:
            workers, self._workers = self._workers, None
        if workers is not None:
            workers.shutdown(wait=True, cancel_futures=True)

    def decode(self, grammar: str, rate: int, meaning: Mapping[str, str], pcm: bytes) -> Words:
        """Decode one utterance here, on a pooled decoder (the caller's thread holds the
        GIL for the 45-65 ms this takes)."""
        with self._lock:
            pooled = self._pool.pop() if self._pool else None
        if pooled is None:
            pooled = _Pooled(self._new_decoder())
        try:
            return _decode(pooled, grammar, rate, meaning, pcm)
        finally:
            with self._lock:
                self._pool.append(pooled)

    def decode_later(
        self, grammar: str, rate: int, meaning: Mapping[str, str], pcm: bytes
    ) -> Future[Words]:
        """The words of one utterance, as a future: from a worker process when offloaded
        (the caller goes on at once), else decoded now into a finished future."""
        workers = self._workers
        if workers is not None:
            try:
                return workers.submit(_worker_decode, grammar, rate, dict(meaning), pcm)
            except (BrokenProcessPool, RuntimeError) as exc:  # a worker died; decode here
                log.warning("speech worker unavailable (%s); decoding in this process", exc)
                with self._lock:
                    self._workers = None
        done: Future[Words] = Future()
        try:
            done.set_result(self.decode(grammar, rate, meaning, pcm))
        except Exception as exc:  # handed to whoever reads the future
            done.set_exception(exc)
        return done


class SphinxUtterance:
    """One utterance: feed int16 bytes at the call's rate, then read (word, confidence)."""

    def __init__(
        self, model: SphinxModel, grammar: str, rate: int, meaning: dict[str, str]
    ) -> None:
        self._model = model
        self._grammar = grammar
        self._meaning = meaning
        self._rate = rate
        self._chunks: list[bytes] = []

    def accept(self, pcm: bytes) -> None:
        """Keep the audio: it is decoded in one pass at the end (see :meth:`words`)."""
        if pcm:
            self._chunks.append(pcm)

    def _audio(self) -> bytes:
        pcm = b"".join(self._chunks)
        self._chunks.clear()
        return pcm

    def words(self) -> Words:
        """The words heard with their confidences, decoded now in this thread."""
        return self._model.decode(self._grammar, self._rate, self._meaning, self._audio())

    def finish(self) -> Future[Words]:
        """The words heard, as a future: decoded by a worker process when the model is
        offloaded (nothing waits here), else now."""
        return self._model.decode_later(self._grammar, self._rate, self._meaning, self._audio())


def _decode(
    pooled: _Pooled, grammar: str, rate: int, meaning: Mapping[str, str], pcm: bytes
) -> Words:
    name = "g" + hashlib.sha256(grammar.encode("utf-8")).hexdigest()[:16]
    decoder = pooled.decoder
    if name not in pooled.grammars:
        decoder.add_jsgf_string(name, grammar)
        pooled.grammars.add(name)
    # One pass over the whole utterance (at most the recogniser's max_speech): its
    # cepstral mean is then this caller's, not the previous one's, which is what makes
    # short answers on a telephone line recognisable at all.
    x: npt.NDArray[np.int16] = np.frombuffer(pcm, dtype=np.int16)
    # Silence on both sides: a word the VAD cut close still reaches the grammar's end.
    pad = np.zeros(int(rate * PAD_S), np.int16)
    x = np.concatenate([pad, x, pad])
    if rate != MODEL_RATE and x.size:
        x = widen(x, rate)
    decoder.activate_search(name)
    decoder.start_utt()
    decoder.process_raw(x.tobytes(), False, True)
    decoder.end_utt()
    best = decoder.hyp()
    if best is None:
        return []
    confidence = _agreement(best.hypstr, decoder, meaning)
    return [
        (seg.word.split("(")[0], confidence)
        for seg in decoder.seg()
        if not seg.word.startswith(("<", "["))
    ]


def _agreement(best: str, decoder: Decoder, meaning: Mapping[str, str]) -> float:
    """The share of the n best paths that mean what the best one means.

    A word's lattice posterior is no confidence here: it is split between synonyms of
    one answer ("no", "nope", "nah") and between start frames of the same word, so a
    clear "no" scored 0.05-0.5. N-best agreement counts those as one answer.
    """
    want = meaning.get(best, best)
    # the n-best iterator may yield None for a path it cannot spell out: skip it
    paths = [h.hypstr for h in itertools.islice(decoder.nbest(), NBEST) if h is not None]
    if not paths:
        return 1.0
    return sum(meaning.get(p, p) == want for p in paths) / len(paths)


# -- the worker process (spawned: it imports this module afresh) ---------------------------


def _worker_start() -> None:
    load_english()


def _worker_ready() -> bool:
    return True


def _worker_decode(grammar: str, rate: int, meaning: dict[str, str], pcm: bytes) -> Words:
    return load_english().decode(grammar, rate, meaning, pcm)


PAD_S = 0.3
"""Silence added before and after an utterance's audio when it is decoded."""

HIGH_BAND_DBFS = -40.0
"""Level of the noise :func:`widen` puts above the telephone band (tuned in bench_asr)."""


def widen(x: npt.NDArray[np.int16], rate: int) -> npt.NDArray[np.int16]:
    """Narrowband call audio → what the 16 kHz model expects: resampled up, with a faint
    fixed noise filling the empty band above the old Nyquist frequency.

    The model's top mel filters were trained on real energy up there; an empty band makes
    every frame look unlike speech, and short answers ("four", "no") were lost to the
    garbage phrases. Measured (bench/bench_asr.py): piper 36→40 of 48 and espeak-ng 5→10
    of 16 answers right, with no more false accepts. The noise is seeded: same audio,
    same words.
    """
    import soxr

    y = soxr.resample(x, rate, MODEL_RATE).astype(np.float64)
    spectrum = np.fft.rfft(np.random.default_rng(0).standard_normal(y.size))
    spectrum[: int(spectrum.size * rate / MODEL_RATE)] = 0
    noise = np.fft.irfft(spectrum, y.size)
    rms = float(np.sqrt(np.mean(noise**2))) or 1.0
    y += noise * (32767 * 10 ** (HIGH_BAND_DBFS / 20) / rms)
    return np.clip(np.round(y), -32768, 32767).astype(np.int16)


NBEST = 20
"""Paths compared for the confidence (:meth:`SphinxUtterance._agreement`)."""


_english: SphinxModel | None = None
_english_lock = threading.Lock()


def load_english() -> SphinxModel:
    """The process-wide en-us model (ImportError when pocketsphinx is missing)."""
    global _english
    with _english_lock:
        if _english is None:
            _english = SphinxModel()
        return _english
