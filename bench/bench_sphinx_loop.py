"""Does pocketsphinx decoding stall the event loop that paces the calls' media?

    python bench/bench_sphinx_loop.py            # 3 repetitions, ~1 minute on 2 cores
    python bench/bench_sphinx_loop.py --reps 1 --seconds 2

A call's spoken answer is decoded in one pass when the caller stops talking
(:mod:`autocall.speech.sphinx`): 45-65 ms of CPU in C. If that C code holds the GIL, every
other call's 20 ms frame waits for it, wherever the decode runs in this process.

An asyncio task stands in for the media clock: it wakes on a 20 ms deadline grid (never
``sleep(0.02)``: the next deadline is counted from the start) and records how late each
wake-up is. Meanwhile, every ``--interval`` seconds a caller "answers": the real
recogniser (:class:`autocall.speech.asr.SpeechRecognizer` on pocketsphinx's bundled en-us
model, grammar yes/no with the built-in synonyms) hears "yes please" said by piper (or
espeak-ng without the piper extra) through G.711, VAD included. Four ways to run it:

- ``idle``: no decoding at all (the baseline: the loop's own lateness on this machine now);
- ``inline``: the recogniser runs on the loop, as ``telephony.runner`` fed it before;
- ``thread``: ``asyncio.to_thread`` (the default thread pool);
- ``process``: a ``ProcessPoolExecutor`` of 1 worker that loaded the model beforehand;
- ``product``: what the telephony runner does now: the recogniser is fed 20 ms frames on
  the loop, its model offloaded (:meth:`SphinxModel.offload`), and the answer is awaited
  from its ``decoding`` future and read with ``poll()``.

Printed per mode: tick lateness p50/p99/max (ms, the median over repetitions), answers
decoded, the answer's latency (VAD end to result, p50) and the CPU seconds this process
spent; ratios of p99 and max against ``idle`` measured in the same run. The load average
is printed before and after: the machine has 2 cores and other work runs beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "speech"))
import asr_audio as au  # noqa: E402

from autocall.speech import asr, tts  # noqa: E402
from autocall.speech.sphinx import SphinxModel  # noqa: E402

TICK_S = 0.020
INTENTS = {"yes": ["yes"], "no": ["no"]}
MODES = ("idle", "inline", "thread", "process", "product")


def answer_audio() -> tuple[str, npt.NDArray[np.int16]]:
    """ "yes please" at 8 kHz through G.711, with silence after it so the VAD ends it."""
    from autocall.speech import piper

    engines: list[tts.TtsEngine] = [tts.EspeakEngine()]
    if piper.missing() is None:
        engines.insert(0, piper.PiperEngine(noise_scale=0.0, noise_w_scale=0.0))
    name, x = tts.synthesize_at(tts.PromptText("yes please", "en-us"), au.RATE, engines)
    speech = au.line(x * 0.5)
    return name, np.concatenate([au.silence(0.3), speech, au.silence(1.0)])


def hear(audio: npt.NDArray[np.int16]) -> str:
    """The product's recogniser on one answer: the intent heard, or '' (no match)."""
    rec = asr.SpeechRecognizer(asr.load_model(None, "en"), INTENTS, lang="en",
                               prompt_playing=False)
    for start in range(0, audio.size, au.FRAME):
        for event in rec.feed(audio[start : start + au.FRAME]):
            if isinstance(event, asr.SpeechResult):
                return event.intent
            if isinstance(event, asr.NoMatch | asr.NoInput):
                return ""
    return next((e.intent for e in rec.expire() if isinstance(e, asr.SpeechResult)), "")


def warm() -> str:
    """Worker initialiser: load the model and compile the grammar once, before timing."""
    asr.load_model(None, "en")
    return "ok"


@dataclass
class Run:
    late_ms: list[float] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)
    answer_s: list[float] = field(default_factory=list)
    cpu_s: float = 0.0


async def one_run(mode: str, audio: npt.NDArray[np.int16], seconds: float, interval: float,
                  pool: ProcessPoolExecutor, offloaded: SphinxModel) -> Run:
    loop = asyncio.get_running_loop()
    run = Run()
    stop = loop.time() + seconds

    async def media_clock() -> None:
        deadline = loop.time() + TICK_S
        while deadline < stop:
            await asyncio.sleep(max(0.0, deadline - loop.time()))
            run.late_ms.append((loop.time() - deadline) * 1000)
            deadline += TICK_S

    def decode_by(mode: str) -> Callable[[], Awaitable[str]]:
        async def inline() -> str:
            return hear(audio)

        async def thread() -> str:
            return await asyncio.to_thread(hear, audio)

        async def process() -> str:
            return await loop.run_in_executor(pool, hear, audio)

        async def product() -> str:
            rec = asr.SpeechRecognizer(offloaded, INTENTS, lang="en", prompt_playing=False)
            events: list[asr.SpeechEvent] = []
            for start in range(0, audio.size, au.FRAME):
                events += rec.feed(audio[start : start + au.FRAME])
                decoding = rec.decoding
                if decoding is not None:
                    await asyncio.wrap_future(decoding)
                    events += rec.poll()
                if rec.done:
                    break
            heard = [e.intent for e in events if isinstance(e, asr.SpeechResult)]
            return heard[0] if heard else ""

        return {"inline": inline, "thread": thread, "process": process,
                "product": product}[mode]

    async def callers() -> None:
        if mode == "idle":
            return
        decode = decode_by(mode)
        pending: set[asyncio.Task[None]] = set()

        async def answer() -> None:
            t0 = time.perf_counter()
            run.answers.append(await decode())
            run.answer_s.append(time.perf_counter() - t0)

        nxt = loop.time() + interval / 2
        while nxt < stop - 0.3:
            await asyncio.sleep(max(0.0, nxt - loop.time()))
            task = asyncio.create_task(answer())
            pending.add(task)
            task.add_done_callback(pending.discard)
            nxt += interval
        if pending:
            await asyncio.gather(*pending)

    cpu0 = time.process_time()
    await asyncio.gather(media_clock(), callers())
    run.cpu_s = time.process_time() - cpu0
    return run


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=3, help="repetitions per mode (default 3)")
    ap.add_argument("--seconds", type=float, default=4.0, help="length of one run")
    ap.add_argument("--interval", type=float, default=0.15,
                    help="seconds between answers (default 0.15: ~7 answers/s)")
    args = ap.parse_args()

    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
          f"(cores: {os.cpu_count()})", flush=True)
    voice, audio = answer_audio()
    warm()
    heard = hear(audio)
    t0 = time.process_time()
    for _ in range(5):
        hear(audio)
    cpu_per_answer = (time.process_time() - t0) / 5
    print(f"answer: 'yes please' by {voice}, {audio.size / au.RATE:.2f} s of audio, "
          f"heard {heard!r}, {cpu_per_answer * 1000:.0f} ms CPU per answer (VAD + decode)")
    if heard != "yes":
        print("warning: the recogniser did not hear 'yes'; the timing still holds")

    offloaded = SphinxModel()  # its own worker, as the runner's process-wide model has
    offloaded.offload()
    with ProcessPoolExecutor(max_workers=1, initializer=warm) as pool:
        pool.submit(warm).result()  # the worker has loaded the model before timing
        pool.submit(hear, audio).result()
        asyncio.run(one_run("product", audio, 1.0, 0.5, pool, offloaded))  # warm its worker
        runs: dict[str, list[Run]] = {m: [] for m in MODES}
        for rep in range(args.reps):
            for mode in MODES:  # interleaved, so a load change hits every mode alike
                runs[mode].append(asyncio.run(one_run(mode, audio, args.seconds,
                                                      args.interval, pool, offloaded)))
            print(f"  repetition {rep + 1}/{args.reps} done", flush=True)
    offloaded.close()

    def med(mode: str, get: Callable[[Run], float]) -> float:
        return statistics.median(get(r) for r in runs[mode])

    base_p99 = med("idle", lambda r: pct(r.late_ms, 99))
    base_max = med("idle", lambda r: max(r.late_ms))
    print(f"\ntick lateness of a 20 ms media clock, median of {args.reps} runs of "
          f"{args.seconds:g} s, one answer every {args.interval * 1000:.0f} ms")
    print(f"{'mode':8} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'p99/idle':>9} "
          f"{'max/idle':>9} {'answers':>8} {'right':>6} {'latency':>8} {'cpu s':>6}")
    for mode in MODES:
        p50 = med(mode, lambda r: pct(r.late_ms, 50))
        p99 = med(mode, lambda r: pct(r.late_ms, 99))
        worst = med(mode, lambda r: max(r.late_ms))
        answers = sum(len(r.answers) for r in runs[mode])
        right = sum(a == "yes" for r in runs[mode] for a in r.answers)
        latency = [s for r in runs[mode] for s in r.answer_s]
        lat = f"{pct(latency, 50) * 1000:.0f} ms" if latency else "-"
        print(f"{mode:8} {p50:7.2f} {p99:7.2f} {worst:7.2f} {p99 / base_p99:9.1f} "
              f"{worst / base_max:9.1f} {answers:8d} {right:6d} {lat:>8} "
              f"{med(mode, lambda r: r.cpu_s):6.2f}")
    print("(cpu s: this process only; the worker processes are not counted)")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
