"""Audio benchmarks: G.711 speed, upload conversion time, resampler stop band.

    python bench/bench_audio.py

1. G.711 μ-law/A-law encode and decode throughput of ``autocall.audio.g711`` against
   CPython's ``audioop`` (the C reference, Python ≤ 3.12), measured in the same run;
   then decode time per 160-byte RTP frame, where per-call overhead dominates
   (every received packet of every call is decoded: 500 calls are 25,000 frames/s).
2. A 60 s MP3 upload (44.1 kHz stereo, 128 kbit/s) → 8 kHz μ-law WAV through
   ``autocall.audio.convert`` (target < 0.3 s), against an audioop pipeline
   (soundfile decode, audioop.tomono/ratecv/lin2ulaw) in the same run.
3. A 44.1 kHz sine sweep to 22 kHz resampled to 8 kHz: the least suppression of
   anything above 4.2 kHz (target ≥ 60 dB), and the pass band's flatness.
"""

from __future__ import annotations

import sys
import tempfile
import time
import timeit
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf

from autocall.audio import g711
from autocall.audio.convert import FORMATS, convert, resample
from autocall.audio.upload import mpeg_frames

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    if sys.version_info >= (3, 13):
        import audioop_lts as audioop  # type: ignore[import-not-found]
    else:
        import audioop


def best_of(fn: Callable[[], object], runs: int = 7) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_g711() -> None:
    print("1. G.711 throughput (best of 7, 10 s of 8 kHz audio × 100 = 8 M samples)")
    rng = np.random.default_rng(1)
    pcm = (rng.standard_normal(8_000_000) * 3000).clip(-32768, 32767).astype(np.int16)
    raw = pcm.tobytes()
    ulaw, alaw = audioop.lin2ulaw(raw, 2), audioop.lin2alaw(raw, 2)
    assert g711.ulaw_encode(pcm) == ulaw and g711.alaw_encode(pcm) == alaw
    cases = [
        ("μ-law encode", lambda: g711.ulaw_encode(pcm), lambda: audioop.lin2ulaw(raw, 2)),
        ("μ-law decode", lambda: g711.ulaw_decode(ulaw), lambda: audioop.ulaw2lin(ulaw, 2)),
        ("A-law encode", lambda: g711.alaw_encode(pcm), lambda: audioop.lin2alaw(raw, 2)),
        ("A-law decode", lambda: g711.alaw_decode(alaw), lambda: audioop.alaw2lin(alaw, 2)),
    ]
    print(f"   {'':14}{'autocall':>14}{'audioop':>14}   speed vs audioop")
    for name, ours, theirs in cases:
        t_ours, t_theirs = best_of(ours), best_of(theirs)
        rate_ours, rate_theirs = pcm.size / t_ours / 1e6, pcm.size / t_theirs / 1e6
        print(
            f"   {name:14}{rate_ours:>10.0f} M/s{rate_theirs:>10.0f} M/s{t_theirs / t_ours:>8.2f}×"
        )


def bench_g711_frames() -> None:
    calls = 500
    frames_per_s = calls * 50
    print(f"   decode one 160-byte frame (best of 7 × 20,000; share of a core at {calls} calls)")
    rng = np.random.default_rng(2)
    pcm = (rng.standard_normal(160) * 3000).clip(-32768, 32767).astype(np.int16)
    ulaw, alaw = g711.ulaw_encode(pcm), g711.alaw_encode(pcm)
    cases = [
        ("μ-law decode", lambda: g711.ulaw_decode(ulaw), lambda: audioop.ulaw2lin(ulaw, 2)),
        ("A-law decode", lambda: g711.alaw_decode(alaw), lambda: audioop.alaw2lin(alaw, 2)),
    ]
    for name, ours, theirs in cases:
        t_ours = min(timeit.repeat(ours, number=20_000, repeat=7)) / 20_000
        t_theirs = min(timeit.repeat(theirs, number=20_000, repeat=7)) / 20_000
        share = f"({t_ours * frames_per_s:.1%} vs {t_theirs * frames_per_s:.1%} of a core)"
        print(
            f"   {name:14}{t_ours * 1e6:>9.2f} µs{t_theirs * 1e6:>11.2f} µs"
            f"{t_theirs / t_ours:>8.2f}×   {share}"
        )


def bench_upload(tmp: Path) -> None:
    print("2. 60 s MP3 upload (44.1 kHz stereo, 128 kbit/s) → 8 kHz μ-law WAV (best of 5)")
    rate = 44100
    t = np.arange(60 * rate) / rate
    voice = np.sin(2 * np.pi * (150 + 40 * np.sin(2 * np.pi * 0.5 * t)) * t)
    voice *= np.clip(np.sin(2 * np.pi * 2.5 * t), 0, None)
    src = tmp / "upload.mp3"
    stereo = np.stack([voice, voice], axis=1) * 0.3
    # libsndfile maps 0…1 onto 320…32 kbit/s for MPEG-1: 0.667 → 128 kbit/s CBR.
    sf.write(src, stereo, rate, compression_level=0.667, bitrate_mode="CONSTANT")
    rates = {f.bitrate_kbps for f in mpeg_frames(src.read_bytes())[0]}
    print(f"   source {src.stat().st_size / 1e6:.2f} MB, {'/'.join(map(str, rates))} kbit/s")
    dst = tmp / "prompt.wav"
    ours = best_of(lambda: convert(src, dst, FORMATS["ulaw-8k"]), runs=5)

    def audioop_pipeline() -> bytes:
        x, r = sf.read(src, dtype="int16")
        mono = audioop.tomono(x.tobytes(), 2, 0.5, 0.5)
        narrow, _ = audioop.ratecv(mono, 2, 1, r, 8000, None)
        return audioop.lin2ulaw(narrow, 2)

    theirs = best_of(audioop_pipeline, runs=5)
    decode = best_of(lambda: sf.read(src, dtype="float64"), runs=5)
    verdict = "ok" if ours < 0.3 else "OVER TARGET"
    print(f"   autocall.audio.convert  {ours:.3f} s  (target < 0.3 s: {verdict})")
    print(f"     of which MP3 decode   {decode:.3f} s")
    print(f"   audioop pipeline        {theirs:.3f} s  (no level normalisation, no HQ filter)")
    print(f"   speed vs audioop        {theirs / ours:.2f}× (audioop time / autocall time)")


def bench_sweep() -> None:
    print("3. 44.1 kHz → 8 kHz sine sweep 20 Hz … 22 kHz (soxr HQ)")
    rate, seconds = 44100, 20.0
    t = np.arange(int(rate * seconds)) / rate
    f_end = 22000.0
    x = 0.5 * np.sin(2 * np.pi * (20 * t + (f_end - 20) * t**2 / (2 * seconds)))
    y = resample(x, rate, 8000)
    frame = 160  # 20 ms at 8 kHz; the sweep moves 22 Hz per frame
    n = y.size // frame
    levels = 20 * np.log10(np.sqrt(np.mean(y[: n * frame].reshape(n, frame) ** 2, axis=1)) + 1e-20)
    ref = 20 * np.log10(0.5 / np.sqrt(2))
    start = 20 + (f_end - 20) * (np.arange(n) * frame / 8000) / seconds
    end = 20 + (f_end - 20) * ((np.arange(n) + 1) * frame / 8000) / seconds
    stop = (start >= 4200) & (end < f_end - 100)
    passband = (start >= 300) & (end <= 3400)
    worst = ref - levels[stop].max()
    worst_f = start[stop][np.argmax(levels[stop])]
    ripple = levels[passband] - ref
    edge = start[(start > 3000) & (levels - ref < -3.0)][0]
    verdict = "ok" if worst >= 60 else "BELOW TARGET"
    print(f"   least suppression above 4.2 kHz  {worst:.1f} dB at {worst_f:.0f} Hz ({verdict})")
    print(f"   pass band 300–3400 Hz            {ripple.min():+.2f} … {ripple.max():+.2f} dB")
    print(f"   −3 dB point                      {edge:.0f} Hz")


def main() -> None:
    bench_g711()
    bench_g711_frames()
    with tempfile.TemporaryDirectory() as tmp:
        bench_upload(Path(tmp))
    bench_sweep()


if __name__ == "__main__":
    main()
