"""TTS engines at 8 kHz: time to first audio, real-time factor, and intelligibility.

    python bench/bench_tts.py            # 100 prompts per engine (a few minutes on 2 cores)
    python bench/bench_tts.py --quick    # 20 prompts
    python bench/bench_tts.py --json

Speed, per engine (gTTS, piper, espeak-ng), exactly as the render cache calls it
(``engine.synthesize`` then decode, resample to 8 kHz, normalise):

- cold start: the first render in the process (piper loads its voice model here);
- time to first audio: a short prompt ("Press one to confirm."), warm, median of 5;
- real-time factor: render seconds / audio seconds over the prompt list (CPU and wall).

gTTS needs the internet; without it the row says how fast it failed (the engine order
``gtts,piper,espeak`` pays that once, then cools gTTS down).

Intelligibility: the same fixed list of prompts rendered by each engine, through G.711
μ-law, recognised by pocketsphinx, the recogniser autocall uses for English, with the
same narrowband front end (:func:`autocall.speech.sphinx.widen`), in dictation mode
(its bundled en-us language model; a grammar would only pick among the prompts). Word
accuracy = 1 - word error rate against the prompt text. The recogniser never saw these
prompts; piper's joe voice and espeak-ng's default en-us voice speak them.

The load average is printed: the numbers are CPU time where it matters, but a shared
machine still slows wall-clock figures.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import statistics
import time
from typing import Any

import numpy as np

from autocall.audio import convert, g711
from autocall.speech import tts
from autocall.speech.piper import PiperEngine
from autocall.speech.sphinx import MODEL_RATE, widen

RATE = 8000
SHORT = "Press one to confirm."


def prompts(n: int) -> list[str]:
    """*n* fixed IVR-like prompts (deterministic, every word in the CMU dictionary)."""
    days = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
    hours = ["nine", "ten", "eleven", "two", "three", "four", "five"]
    actions = ["confirm", "cancel", "speak to an agent", "hear this again", "change the time"]
    digits = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "zero"]
    things = ["order", "payment", "appointment", "delivery", "account", "prescription"]
    states = ["ready", "late", "confirmed", "on its way", "overdue", "waiting for you"]
    pairs = zip(days * 2, hours * 2, strict=True)
    keys = zip(digits * 3, actions * 6, strict=True)
    backs = zip(days, reversed(hours), strict=True)
    numbers = zip(things * 3, itertools.islice(itertools.permutations(digits, 3), 18), strict=True)
    made = [
        *(f"Your appointment is on {d} at {h} o'clock." for d, h in pairs),
        *(f"Press {d} to {a}." for d, a in keys),
        *(f"Your {t} is {s}." for t, s in itertools.product(things, states)),
        *(f"Please call us back on {d} after {h}." for d, h in backs),
        *(f"We could not reach you about your {t}." for t in things),
        *(f"Your {t} will arrive on {d}." for t, d in zip(things, days, strict=False)),
        *(f"Thank you for calling. Your {t} number is {a} {b} {c}." for t, (a, b, c) in numbers),
        *(f"Say {d} for your {t}." for d, t in zip(digits, things, strict=False)),
        "Sorry, I did not understand that.",
        "Please say yes or no.",
        "Goodbye and have a nice day.",
        "This call may be recorded for quality and training.",
        "To stop these calls press nine.",
    ]
    return list(dict.fromkeys(made))[:n]


def render(engine: tts.TtsEngine, text: str) -> np.ndarray:
    """The cache's path minus the file: synthesize, decode, 8 kHz, normalised float."""
    data = engine.synthesize(text, "en-us", None)
    frames, rate = convert.decode(data, name=f"<{engine.name}>")
    return convert.prepare(convert.to_mono(frames), rate, RATE)


def cpu_s() -> float:
    """CPU seconds of this process and its finished children (espeak-ng is a subprocess)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def speed(engine: tts.TtsEngine, texts: list[str]) -> dict[str, Any]:
    t = time.perf_counter()
    try:
        render(engine, SHORT)
    except tts.TtsError as exc:
        return {"engine": engine.name, "error": str(exc)[:120],
                "failed_after_s": round(time.perf_counter() - t, 3)}
    cold = time.perf_counter() - t
    firsts = []
    for _ in range(5):
        t = time.perf_counter()
        render(engine, SHORT)
        firsts.append(time.perf_counter() - t)
    wall, cpu = time.perf_counter(), cpu_s()
    audio = sum(render(engine, text).size for text in texts) / RATE
    wall, cpu = time.perf_counter() - wall, cpu_s() - cpu
    return {
        "engine": engine.name,
        "cold_start_s": round(cold, 3),
        "first_audio_s": round(statistics.median(firsts), 3),
        "rtf_wall": round(wall / audio, 3),
        "rtf_cpu": round(cpu / audio, 3),
        "audio_s": round(audio, 1),
    }


def words(text: str) -> list[str]:
    text = text.lower()
    return re.findall(r"[a-z']+", text)


def errors(ref: list[str], hyp: list[str]) -> int:
    """Word-level Levenshtein distance (substitutions + deletions + insertions)."""
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]


class Dictation:
    """pocketsphinx with its en-us language model, fed like a call's audio."""

    def __init__(self) -> None:
        from pocketsphinx import Decoder

        self.decoder = Decoder(samprate=MODEL_RATE, loglevel="FATAL")

    def __call__(self, pcm: np.ndarray) -> list[str]:
        pad = np.zeros(int(0.3 * RATE), np.int16)
        x = widen(np.concatenate([pad, pcm, pad]), RATE)
        self.decoder.start_utt()
        self.decoder.process_raw(x.tobytes(), False, True)
        self.decoder.end_utt()
        hyp = self.decoder.hyp()
        return words(hyp.hypstr) if hyp is not None else []


def intelligibility(
    engine: tts.TtsEngine, texts: list[str], hear: Dictation
) -> dict[str, Any]:
    ref_words = wrong = 0
    worst: list[tuple[int, str, str]] = []
    cpu = time.process_time()
    for text in texts:
        x = render(engine, text)
        pcm = np.clip(np.round(x * 32767), -32768, 32767).astype(np.int16)
        heard = hear(g711.ulaw_decode(g711.ulaw_encode(pcm)))
        ref = words(text)
        e = errors(ref, heard)
        ref_words += len(ref)
        wrong += e
        worst.append((e, text, " ".join(heard)))
    worst.sort(key=lambda w: -w[0])
    return {
        "engine": engine.name,
        "prompts": len(texts),
        "words": ref_words,
        "word_accuracy": round(1 - wrong / ref_words, 3),
        "cpu_s": round(time.process_time() - cpu, 1),
        "worst": [list(w) for w in worst[:3]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 prompts instead of 100")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    parser.add_argument("--speed-only", action="store_true", help="skip intelligibility")
    args = parser.parse_args()
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs "
          "(a shared machine: wall-clock figures are inflated by other work)")
    texts = prompts(20 if args.quick else 100)
    engines: list[tts.TtsEngine] = [
        tts.GttsEngine(timeout=(2.0, 5.0), deadline_s=10.0), PiperEngine(), tts.EspeakEngine()
    ]
    print(f"speed over {len(texts)} prompts:")
    speeds = []
    for engine in engines:
        speeds.append(speed(engine, texts))
        print("  ", speeds[-1], flush=True)
    hear = Dictation()
    print("intelligibility (G.711 μ-law, pocketsphinx en-us dictation):")
    clear = []
    for engine in [] if args.speed_only else engines:
        if "error" in next(s for s in speeds if s["engine"] == engine.name):
            continue
        clear.append(intelligibility(engine, texts, hear))
        print("  ", clear[-1], flush=True)
    if args.json:
        print(json.dumps({"load": load, "speed": speeds, "intelligibility": clear}, indent=1))
        return
    print(f"\n{'engine':<10}{'cold s':>8}{'first s':>8}{'RTF wall':>9}{'RTF cpu':>8}")
    for s in speeds:
        if "error" in s:
            print(f"{s['engine']:<10} unavailable, failed after {s['failed_after_s']} s: "
                  f"{s['error']}")
        else:
            print(f"{s['engine']:<10}{s['cold_start_s']:>8}{s['first_audio_s']:>8}"
                  f"{s['rtf_wall']:>9}{s['rtf_cpu']:>8}")
    print(f"\n{'engine':<10}{'prompts':>8}{'words':>7}{'word accuracy':>14}")
    for c in clear:
        print(f"{c['engine']:<10}{c['prompts']:>8}{c['words']:>7}{c['word_accuracy']:>14.3f}")
    by = {c["engine"]: c["word_accuracy"] for c in clear}
    if "piper" in by and "espeak-ng" in by:
        verdict = "beats" if by["piper"] > by["espeak-ng"] else "does NOT beat"
        print(f"piper {verdict} espeak-ng: {by['piper']:.3f} vs {by['espeak-ng']:.3f}")
    load = os.getloadavg()
    print(f"load average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
