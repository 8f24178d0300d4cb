"""A seeded corpus of what answers an outbound call, built from real speech (espeak-ng).

Every clip starts at the answer and is what a call would deliver: 8 kHz speech from
espeak-ng (voices and languages drawn from the seed), line noise, sometimes background
babble (other espeak-ng voices talking), through a G.711 μ-law or A-law round trip.

Families (truth in brackets) and how they are made:

- ``human-short`` [human]: pick-up pause 0.2–1.2 s, "Hello?" and the like, then the
  person waits (2.5–4 s of line noise), sometimes saying "Hello?" again.
- ``human-long`` [human]: as above with a longer greeting ("Good morning, Smith residence").
- ``vm-beep`` [machine]: a recorded greeting of 2–4 sentences (0.2–0.55 s pauses between
  them), 0.1–0.8 s later one or two beeps (single or dual tone, 400–1,500 Hz,
  0.15–1.2 s, −20…−8 dBm0), then the line records (noise).
- ``vm-silence`` [machine]: a greeting that ends without a beep.
- ``vm-music`` [machine]: a greeting over a music bed (sometimes with a music intro), then
  a beep.
- ``vm-short`` [machine]: a one-sentence greeting ("Leave a message.") and a beep
  0.1–0.4 s after it.
- ``carrier`` [machine]: a carrier announcement ("The number you have dialled is not
  in service…"), half of them after the special information tone (ITU-T E.180 SIT:
  913.8, 1,370.6, 1,776.7 Hz), repeated after a pause.
- ``fax-cng`` / ``fax-ced`` [fax]: a calling tone (1,100 Hz, 0.5 s on, 3 s off) or an
  answer tone (2,100 Hz for 2.6–4 s, half of them ANSam: 15 Hz amplitude modulation and
  phase reversals every 450 ms, ITU-T V.8 / T.30).
- ``dead-air`` [unknown]: line noise only.

Ground truth per clip: ``speech_end`` (humans: end of their greeting, what their wait is
measured from) and ``beep_end`` (end of the last beep, where a message may start).
"""

from __future__ import annotations

import functools
import io
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import soundfile as sf
import soxr

from autocall.audio.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from autocall.audio.levels import dbm0_to_amplitude, scale_to_dbm0

RATE = 8000

FAMILIES: dict[str, str] = {
    "human-short": "human",
    "human-long": "human",
    "vm-beep": "machine",
    "vm-silence": "machine",
    "vm-music": "machine",
    "vm-short": "machine",
    "carrier": "machine",
    "fax-cng": "fax",
    "fax-ced": "fax",
    "dead-air": "unknown",
}

# (espeak-ng voice, texts) per language: greetings a person says on picking up.
_SHORT_HUMAN: dict[str, list[str]] = {
    "en-us": ["Hello?", "Yes?", "Hi.", "Hello.", "Yeah, hello?", "Hello, who is this?"],
    "en-gb": ["Hello?", "Hello, yes?", "Speaking.", "Hiya."],
    "de": ["Hallo?", "Ja, bitte?", "Ja?", "Hallo, wer ist da?"],
    "fr-fr": ["Allô?", "Oui, allô?", "Allô, oui?"],
    "es": ["¿Diga?", "¿Sí?", "Hola.", "¿Bueno?"],
    "it": ["Pronto?", "Sì, pronto?"],
    "pt": ["Alô?", "Sim?"],
    "nl": ["Hallo?", "Ja, met wie?"],
}
_LONG_HUMAN: dict[str, list[str]] = {
    "en-us": [
        "Hello, this is Maria speaking.",
        "Good morning, Smith residence.",
        "Hi, Tom here, who's calling?",
        "Hello, Johnson Plumbing, Dave speaking.",
        "Yes, hello, who is this please?",
    ],
    "en-gb": ["Hello, Sarah speaking, can I help?", "Good afternoon, the Browns."],
    "de": ["Guten Tag, Müller am Apparat.", "Hallo, hier ist Anna, wer spricht?"],
    "fr-fr": ["Bonjour, ici Pierre, j'écoute.", "Allô, oui, c'est Marie."],
    "es": ["Buenos días, habla Carlos.", "Hola, sí, dígame, ¿quién es?"],
    "it": ["Pronto, sono Giulia, chi parla?"],
    "pt": ["Bom dia, fala a Ana."],
    "nl": ["Goedemiddag, met Jan de Vries."],
}
# Sentences of recorded greetings: an opening, then one to three of the rest.
_VM_OPEN: dict[str, list[str]] = {
    "en-us": [
        "Hi, you've reached John Smith.",
        "Hello, this is Karen.",
        "You have reached the voicemail of Michael Brown.",
        "Thanks for calling Acme Insurance.",
        "Hey, it's Jess.",
    ],
    "en-gb": ["Hello, you've reached Emma and Paul.", "Hi, this is Oliver's phone."],
    "de": ["Hallo, hier ist der Anschluss von Familie Weber.", "Guten Tag, Sie sind bei Klaus."],
    "fr-fr": ["Bonjour, vous êtes bien chez Sophie.", "Bonjour, c'est la messagerie de Luc."],
    "es": ["Hola, has llamado a Lucía.", "Buenas, este es el buzón de Javier."],
    "it": ["Ciao, sono Marco.", "Buongiorno, avete chiamato lo studio Rossi."],
    "pt": ["Olá, você ligou para o João."],
    "nl": ["Hallo, je spreekt met de voicemail van Eva."],
}
_VM_REST: dict[str, list[str]] = {
    "en-us": [
        "I can't take your call right now.",
        "Please leave your name, number and a short message.",
        "I'll get back to you as soon as I can.",
        "Our office hours are nine to five, Monday through Friday.",
        "Please leave a message after the tone.",
        "Sorry I missed you.",
    ],
    "en-gb": [
        "We're not able to come to the phone at the moment.",
        "Leave a message after the beep.",
    ],
    "de": [
        "Leider bin ich gerade nicht erreichbar.",
        "Bitte hinterlassen Sie eine Nachricht nach dem Signalton.",
        "Ich rufe so bald wie möglich zurück.",
    ],
    "fr-fr": [
        "Je ne suis pas disponible pour le moment.",
        "Laissez-moi un message après le bip sonore.",
        "Je vous rappellerai dès que possible.",
    ],
    "es": [
        "En este momento no puedo atenderte.",
        "Deja tu mensaje después de la señal.",
        "Te devolveré la llamada lo antes posible.",
    ],
    "it": ["Al momento non posso rispondere.", "Lasciate un messaggio dopo il segnale acustico."],
    "pt": ["No momento não posso atender.", "Deixe sua mensagem após o sinal."],
    "nl": ["Ik ben op dit moment niet bereikbaar.", "Spreek een bericht in na de piep."],
}
_VM_SHORT: dict[str, list[str]] = {
    "en-us": ["Leave a message.", "Leave a message, thanks.", "It's Bob. Leave a message."],
    "en-gb": ["Please leave a message."],
    "de": ["Bitte sprechen Sie.", "Nachricht nach dem Ton."],
    "fr-fr": ["Laissez un message."],
    "es": ["Deja tu mensaje."],
    "it": ["Lascia un messaggio."],
    "pt": ["Deixe recado."],
    "nl": ["Spreek maar in."],
}
_CARRIER: dict[str, list[str]] = {
    "en-us": [
        "The number you have dialed is not in service. Please check the number and dial again.",
        "The wireless customer you are calling is not available. Please try your call later.",
        "All circuits are busy now. Please try your call again later.",
    ],
    "en-gb": ["The number you have called has not been recognised. Please check and try again."],
    "de": ["Kein Anschluss unter dieser Nummer. Bitte rufen Sie die Auskunft an."],
    "fr-fr": [
        "Le numéro que vous avez demandé n'est pas attribué. Veuillez vérifier votre numéro."
    ],
    "es": ["El número marcado no existe. Por favor, compruebe el número y vuelva a marcar."],
}
_BABBLE = [t for texts in _VM_REST.values() for t in texts] + [
    t for texts in _LONG_HUMAN.values() for t in texts
]
_VARIANTS = ["", "+m1", "+m2", "+m3", "+m4", "+f1", "+f2", "+f3", "+f4", "+f5"]


@dataclass(frozen=True)
class Clip:
    family: str
    truth: str
    samples: npt.NDArray[np.int16]
    speech_end: float | None = None
    beep_end: float | None = None
    text: str = ""

    @property
    def seconds(self) -> float:
        return self.samples.size / RATE


@functools.lru_cache(maxsize=4096)
def _espeak(text: str, voice: str, speed: int, pitch: int) -> npt.NDArray[np.float64]:
    """espeak-ng speech at 8 kHz, float in [-1, 1], leading and trailing silence trimmed."""
    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", text],
        check=True,
        capture_output=True,
        timeout=30,
    ).stdout
    x, rate = sf.read(io.BytesIO(wav), dtype="float64")
    y = np.asarray(soxr.resample(x, rate, RATE), dtype=np.float64)
    loud = np.flatnonzero(np.abs(y) > 10 ** (-45 / 20))
    if loud.size == 0:
        raise RuntimeError(f"espeak-ng said nothing for {text!r} ({voice})")
    return y[loud[0] : loud[-1] + 1].copy()


class _Maker:
    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def pick(self, items: list[str]) -> str:
        return items[int(self.rng.integers(len(items)))]

    def uniform(self, lo: float, hi: float) -> float:
        return float(self.rng.uniform(lo, hi))

    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def language(self, table: dict[str, list[str]]) -> str:
        return self.pick(sorted(table))

    def speech(self, text: str, lang: str, level_dbm0: float) -> npt.NDArray[np.float64]:
        voice = lang + self.pick(_VARIANTS)
        speed = int(self.rng.integers(140, 195))
        pitch = int(self.rng.integers(25, 75))
        x = _espeak(text, voice, speed, pitch) * 32768.0
        return scale_to_dbm0(x, level_dbm0).astype(np.float64)

    def gap(self, lo: float, hi: float) -> npt.NDArray[np.float64]:
        return np.zeros(int(self.uniform(lo, hi) * RATE))

    def tone(
        self, freqs: tuple[float, ...], seconds: float, level_dbm0: float
    ) -> npt.NDArray[np.float64]:
        t = np.arange(int(seconds * RATE)) / RATE
        amp = dbm0_to_amplitude(level_dbm0 - 10 * np.log10(len(freqs)))
        x = sum(amp * np.sin(2 * np.pi * f * t + self.uniform(0, 6.28)) for f in freqs)
        ramp = min(int(0.005 * RATE), t.size // 2)  # 5 ms edges, as tone generators do
        env = np.ones(t.size)
        if ramp:
            env[:ramp] = np.linspace(0, 1, ramp)
            env[-ramp:] = np.linspace(1, 0, ramp)
        return np.asarray(x, dtype=np.float64) * env

    def beeps(self) -> tuple[npt.NDArray[np.float64], float]:
        """One or two beeps; returns the audio and the end of the last beep within it."""
        if self.chance(0.3):
            f1 = self.uniform(400, 1000)
            freqs: tuple[float, ...] = (f1, f1 + self.uniform(80, 500))
        else:
            freqs = (self.uniform(400, 1500),)
        seconds = self.uniform(0.15, 1.2)
        level = self.uniform(-20, -8)
        one = self.tone(freqs, seconds, level)
        if self.chance(0.2):
            seconds2 = self.uniform(0.15, 0.5)
            two = self.tone(freqs, seconds2, level)
            gap = self.gap(0.1, 0.3)
            audio = np.concatenate([one, gap, two])
            return audio, audio.size / RATE
        return one, one.size / RATE

    def music(self, n: int, level_dbm0: float) -> npt.NDArray[np.float64]:
        """Synthetic music: notes of a pentatonic scale with harmonics, two voices."""
        out = np.zeros(n)
        scale = [261.6, 293.7, 329.6, 392.0, 440.0, 523.3, 587.3, 659.3]
        for voice in range(2):
            pos = 0
            while pos < n:
                dur = int(self.uniform(0.15, 0.45) * RATE)
                f = self.pick([str(s) for s in scale])
                t = np.arange(min(dur, n - pos)) / RATE
                note = np.zeros(t.size)
                for h in range(1, 5):
                    note += np.sin(2 * np.pi * float(f) * (voice + 1) * h * t) / h**1.2
                note *= np.exp(-t * self.uniform(2, 6))
                out[pos : pos + t.size] += note
                pos += dur
        return scale_to_dbm0(out, level_dbm0).astype(np.float64)

    def babble(self, n: int, level_dbm0: float) -> npt.NDArray[np.float64]:
        out = np.zeros(n)
        for _ in range(int(self.rng.integers(3, 6))):
            pos = int(self.uniform(-1.0, 0.5) * RATE)
            while pos < n:
                lang = self.pick(["en-us", "en-gb", "de", "fr-fr", "es"])
                s = self.speech(self.pick(_BABBLE), lang, -20.0)
                lo = max(pos, 0)
                hi = min(pos + s.size, n)
                if hi > lo:
                    out[lo:hi] += s[lo - pos : hi - pos]
                pos += s.size + int(self.uniform(0.1, 0.6) * RATE)
        return scale_to_dbm0(out, level_dbm0).astype(np.float64)

    def line(self, x: npt.NDArray[np.float64], noise_dbm0: float) -> npt.NDArray[np.int16]:
        """Add line noise and pass through G.711 (μ-law or A-law, as the call negotiated)."""
        sigma = dbm0_to_amplitude(noise_dbm0) / np.sqrt(2.0)
        y = x + self.rng.standard_normal(x.size) * sigma
        pcm = np.clip(np.round(y), -32768, 32767).astype(np.int16)
        if self.chance(0.5):
            return ulaw_decode(ulaw_encode(pcm))
        return alaw_decode(alaw_encode(pcm))


def _cat(parts: list[npt.NDArray[np.float64]]) -> npt.NDArray[np.float64]:
    return np.concatenate(parts) if parts else np.zeros(0)


def make_clip(family: str, seed: int, index: int) -> Clip:
    """Clip ``index`` of ``family`` for corpus ``seed`` (the same arguments give the same clip)."""
    fam = list(FAMILIES).index(family)
    m = _Maker(np.random.default_rng([seed, fam, index]))
    truth = FAMILIES[family]
    noise = m.uniform(-68, -48)
    level = m.uniform(-26, -12)
    if family in ("human-short", "human-long"):
        table = _SHORT_HUMAN if family == "human-short" else _LONG_HUMAN
        lang = m.language(table)
        text = m.pick(table[lang])
        lead = m.gap(0.2, 1.2)
        said = m.speech(text, lang, level)
        parts = [lead, said, m.gap(2.5, 4.0)]
        if m.chance(0.4):
            parts += [m.speech(m.pick(_SHORT_HUMAN[lang]), lang, level), m.gap(1.0, 2.0)]
        x = _cat(parts)
        if m.chance(0.4):
            x = x + m.babble(x.size, level - m.uniform(12, 25))
        end = (lead.size + said.size) / RATE
        return Clip(family, truth, m.line(x, noise), speech_end=end, text=text)
    if family in ("vm-beep", "vm-silence", "vm-music"):
        lang = m.language(_VM_OPEN)
        rest = _VM_REST[lang]
        sentences = [m.pick(_VM_OPEN[lang])]
        for _ in range(int(m.rng.integers(1, 4))):
            sentences.append(m.pick([s for s in rest if s not in sentences] or rest))
        voice = lang + m.pick(_VARIANTS)
        speed = int(m.rng.integers(140, 195))
        pitch = int(m.rng.integers(25, 75))
        spoken: list[npt.NDArray[np.float64]] = []
        for i, s in enumerate(sentences):
            if i:
                spoken.append(m.gap(0.2, 0.55))
            spoken.append(scale_to_dbm0(_espeak(s, voice, speed, pitch) * 32768.0, level))
        greeting = _cat(spoken)
        intro = np.zeros(0)
        if family == "vm-music":
            intro_n = int(m.uniform(0.5, 2.0) * RATE) if m.chance(0.5) else 0
            bed = m.music(intro_n + greeting.size, level - m.uniform(6, 14))
            intro = bed[:intro_n] * 2.0
            greeting = greeting + bed[intro.size : intro.size + greeting.size]
        lead = m.gap(0.1, 0.8)
        head = _cat([lead, intro, greeting, m.gap(0.1, 0.8)])
        if family == "vm-silence":
            x = _cat([head, m.gap(4.0, 5.0)])
            return Clip(family, truth, m.line(x, noise), text=" ".join(sentences))
        beeps, beep_len = m.beeps()
        x = _cat([head, beeps, m.gap(3.0, 4.0)])
        end = head.size / RATE + beep_len
        return Clip(family, truth, m.line(x, noise), beep_end=end, text=" ".join(sentences))
    if family == "vm-short":
        lang = m.language(_VM_SHORT)
        text = m.pick(_VM_SHORT[lang])
        head = _cat([m.gap(0.1, 0.8), m.speech(text, lang, level), m.gap(0.1, 0.4)])
        beeps, beep_len = m.beeps()
        x = _cat([head, beeps, m.gap(3.0, 4.0)])
        end = head.size / RATE + beep_len
        return Clip(family, truth, m.line(x, noise), beep_end=end, text=text)
    if family == "carrier":
        lang = m.language(_CARRIER)
        text = m.pick(_CARRIER[lang])
        parts = [m.gap(0.1, 0.6)]
        if m.chance(0.5):
            # ITU-T E.180 §2.6 / Telcordia SIT: three rising tones, ~274/274/380 ms.
            for f, s in ((913.8, 0.274), (1370.6, 0.274), (1776.7, 0.380)):
                parts.append(m.tone((f,), s, -18.0))
            parts.append(m.gap(0.05, 0.2))
        said = m.speech(text, lang, level)
        parts += [said, m.gap(0.8, 1.5), said]
        return Clip(family, truth, m.line(_cat(parts), noise), text=text)
    if family == "fax-cng":
        # ITU-T T.30 §5.2.1: CNG 1,100 Hz, 0.5 s on, 3 s off.
        parts = [m.gap(0.0, 1.5)]
        for _ in range(3):
            parts += [m.tone((1100.0 + m.uniform(-20, 20),), 0.5, m.uniform(-18, -8)), m.gap(3, 3)]
        return Clip(family, truth, m.line(_cat(parts), noise))
    if family == "fax-ced":
        # ITU-T T.30 §5.2.2 CED: 2,100 Hz for 2.6–4 s; V.8 ANSam: 15 Hz AM (20 %) and
        # V.25 phase reversals every 450 ms.
        lead = m.gap(0.2, 1.0)
        seconds = m.uniform(2.6, 4.0)
        level_t = m.uniform(-18, -8)
        t = np.arange(int(seconds * RATE)) / RATE
        if m.chance(0.5):
            phase = np.pi * (np.floor(t / 0.45) % 2)
            am = 1.0 + 0.2 * np.sin(2 * np.pi * 15 * t)
        else:
            phase = np.zeros(t.size)
            am = np.ones(t.size)
        tone = dbm0_to_amplitude(level_t) * am * np.sin(2 * np.pi * 2100 * t + phase)
        x = _cat([lead, tone, m.gap(2.0, 3.0)])
        return Clip(family, truth, m.line(x, noise))
    if family == "dead-air":
        return Clip(family, truth, m.line(np.zeros(int(6.0 * RATE)), noise))
    raise ValueError(f"unknown family {family!r}: use one of {', '.join(FAMILIES)}")


def corpus(seed: int, per_family: int, families: list[str] | None = None) -> Iterator[Clip]:
    for family in families or list(FAMILIES):
        for i in range(per_family):
            yield make_clip(family, seed, i)
