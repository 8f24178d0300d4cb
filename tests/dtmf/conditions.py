"""Signal conditions for DTMF receivers, after ITU-T Q.24 and common receiver practice.

Shared by the conformance suite (tests/dtmf) and the benchmark (bench/bench_dtmf.py),
so both judge the same signals. Every condition is deterministic: fixed seeds,
fixed texts, espeak-ng output (itself deterministic) cached in a directory.
A condition passes when a receiver reports exactly `expected`, nothing more.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soundfile as sf
import soxr

from autocall.audio import g711
from autocall.audio.levels import dbm0_to_amplitude, scale_to_dbm0
from autocall.audio.tones import (
    DTMF_KEYS,
    comfort_noise,
    dtmf_pair,
    dual_tone,
    silence,
)

Pcm = npt.NDArray[np.int16]
ALL = DTMF_KEYS
LEAD_MS = 60.0  # silence before the first and after the last key press


@dataclass(frozen=True)
class Condition:
    """One test signal and the exact digit string a conforming receiver reports."""

    group: str
    name: str
    signal: Pcm
    expected: str
    rate: int = 8000

    @property
    def id(self) -> str:
        return f"{self.group}:{self.name}"


def _pad(x: Pcm, rate: int = 8000) -> Pcm:
    return np.concatenate([silence(LEAD_MS, rate), x, silence(LEAD_MS, rate)])


def _clip(x: npt.NDArray[np.float64]) -> Pcm:
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def keyed(
    keys: str,
    *,
    on_ms: float = 100.0,
    off_ms: float = 100.0,
    level: float = -10.0,
    twist: float = 0.0,
    dev_low: float = 0.0,
    dev_high: float = 0.0,
    rate: int = 8000,
    seed: int = 0,
) -> Pcm:
    """Key presses with both tones off-frequency by `dev_*` (fractions) and random phases.

    The stronger tone is at `level` dBm0, the weaker `abs(twist)` below (as `tones.dtmf`).
    """
    rng = np.random.default_rng(seed)
    lo_level = level - max(twist, 0.0)
    hi_level = level + min(twist, 0.0)
    parts: list[Pcm] = []
    for k in keys:
        f_lo, f_hi = dtmf_pair(k)
        ph = rng.uniform(0, 2 * np.pi, 2)
        parts.append(
            dual_tone(
                f_lo * (1 + dev_low),
                f_hi * (1 + dev_high),
                on_ms,
                lo_level,
                hi_level,
                rate,
                phase_low=float(ph[0]),
                phase_high=float(ph[1]),
            )
        )
        parts.append(silence(off_ms, rate))
    return _pad(np.concatenate(parts), rate)


def _mix(*signals: Pcm) -> Pcm:
    n = max(s.size for s in signals)
    acc = np.zeros(n, dtype=np.float64)
    for s in signals:
        acc[: s.size] += s
    return _clip(acc)


def _g711(x: Pcm, law: str) -> Pcm:
    if law == "ulaw":
        return g711.ulaw_decode(g711.ulaw_encode(x))
    if law == "alaw":
        return g711.alaw_decode(g711.alaw_encode(x))
    return x


# ---------------------------------------------------------------- tone conditions


def keys_conditions() -> list[Condition]:
    """All 16 keys, at both rates and through both G.711 laws."""
    out = [
        Condition("keys", "all 16 @8k", keyed(ALL), ALL),
        Condition("keys", "all 16 @16k", keyed(ALL, rate=16000), ALL, 16000),
        Condition("keys", "phone numbers", keyed("0049301234567#", seed=3), "0049301234567#"),
    ]
    for law in ("ulaw", "alaw"):
        out.append(Condition("keys", f"all 16 via {law}", _g711(keyed(ALL, level=-20), law), ALL))
    return out


def level_conditions() -> list[Condition]:
    """Q.24: operate 0…−30 dBm0 per tone; never operate at −55 dBm0 or below."""
    out = [
        Condition("level", f"{lv:+.0f} dBm0 per tone", keyed(ALL, level=lv, seed=10), ALL)
        for lv in (0.0, -5.0, -10.0, -15.0, -20.0, -25.0, -30.0)
    ]
    out += [
        Condition("level", f"{lv:+.0f} dBm0 per tone", keyed(ALL, level=lv, seed=11), "")
        for lv in (-55.0, -60.0)
    ]
    out.append(
        Condition(
            "level", "-30 dBm0 via ulaw", _g711(keyed(ALL, level=-30.0, seed=12), "ulaw"), ALL
        )
    )
    return out


def frequency_conditions() -> list[Condition]:
    """Q.24: ±1.5 % operates (every sign combination), ±3.5 % and beyond never does."""
    out: list[Condition] = []
    for d_lo in (-0.015, 0.0, 0.015):
        for d_hi in (-0.015, 0.0, 0.015):
            if d_lo == d_hi == 0.0:
                continue
            name = f"low {d_lo * 100:+.1f}% high {d_hi * 100:+.1f}%"
            out.append(Condition("freq-accept", name, keyed(ALL, dev_low=d_lo, dev_high=d_hi), ALL))
    for dev in (0.035, 0.05):
        for sign in (-1.0, 1.0):
            d = sign * dev
            out.append(Condition("freq-reject", f"low {d * 100:+.1f}%", keyed(ALL, dev_low=d), ""))
            out.append(
                Condition("freq-reject", f"high {d * 100:+.1f}%", keyed(ALL, dev_high=d), "")
            )
    for d_lo in (-0.035, 0.035):
        for d_hi in (-0.035, 0.035):
            name = f"low {d_lo * 100:+.1f}% high {d_hi * 100:+.1f}%"
            out.append(Condition("freq-reject", name, keyed(ALL, dev_low=d_lo, dev_high=d_hi), ""))
    # One good tone, the other at ±3.5 %, while the good one is at its own ±1.5 % corner.
    for d_ok in (-0.015, 0.015):
        for d_bad in (-0.035, 0.035):
            out.append(
                Condition(
                    "freq-reject",
                    f"low {d_ok * 100:+.1f}% high {d_bad * 100:+.1f}%",
                    keyed(ALL, dev_low=d_ok, dev_high=d_bad),
                    "",
                )
            )
            out.append(
                Condition(
                    "freq-reject",
                    f"low {d_bad * 100:+.1f}% high {d_ok * 100:+.1f}%",
                    keyed(ALL, dev_low=d_bad, dev_high=d_ok),
                    "",
                )
            )
    return out


def twist_conditions() -> list[Condition]:
    """Twist = level(high) − level(low): +4 and −8 dB operate exactly; +8 and −12 dB never."""
    out: list[Condition] = []
    for tw in (4.0, -8.0):
        for lv in (-10.0, -20.0):
            out.append(
                Condition(
                    "twist", f"{tw:+.0f} dB at {lv:+.0f} dBm0", keyed(ALL, level=lv, twist=tw), ALL
                )
            )
        for d_lo in (-0.015, 0.015):
            for d_hi in (-0.015, 0.015):
                name = f"{tw:+.0f} dB, low {d_lo * 100:+.1f}% high {d_hi * 100:+.1f}%"
                sig = keyed(ALL, twist=tw, dev_low=d_lo, dev_high=d_hi, seed=20)
                out.append(Condition("twist", name, sig, ALL))
    for tw in (8.0, -12.0, 10.0, -16.0):
        for lv in (-5.0, -15.0):
            out.append(
                Condition(
                    "twist", f"{tw:+.0f} dB at {lv:+.0f} dBm0", keyed(ALL, level=lv, twist=tw), ""
                )
            )
    return out


def timing_conditions() -> list[Condition]:
    """Q.24: 40 ms tones operate, 20 (and 23) ms never; 40 ms pauses split keys."""
    out: list[Condition] = []
    for shift in (0, 13, 27, 41):
        lead = silence(shift / 8.0)
        out.append(
            Condition(
                "duration",
                f"40 ms on / 40 ms off, +{shift} samples",
                np.concatenate([lead, keyed(ALL, on_ms=40.0, off_ms=40.0, seed=shift)]),
                ALL,
            )
        )
        for on in (20.0, 23.0):
            out.append(
                Condition(
                    "duration",
                    f"{on:.0f} ms on, +{shift} samples",
                    np.concatenate([lead, keyed(ALL, on_ms=on, off_ms=60.0, seed=shift)]),
                    "",
                )
            )
    for keys in ("1111", "00000", "#5#5", "99*99", "DDDD"):
        for on in (40.0, 100.0):
            out.append(
                Condition(
                    "pause",
                    f"{keys} {on:.0f} ms on / 40 ms off",
                    keyed(keys, on_ms=on, off_ms=40.0, seed=len(keys)),
                    keys,
                )
            )
    return out


def dropout_conditions() -> list[Condition]:
    """Q.24: a 10 ms interruption inside a 100 ms tone does not split the key."""
    out: list[Condition] = []
    for at in (15.0, 30.0, 45.0, 60.0, 75.0):
        parts: list[Pcm] = []
        for k in "1470*#":
            tone = keyed(k, on_ms=100.0, off_ms=0.0, seed=int(at))[
                int(LEAD_MS * 8) : -int(LEAD_MS * 8)
            ]
            tone = tone.copy()
            tone[int(at * 8) : int((at + 10.0) * 8)] = 0
            parts += [tone, silence(100.0)]
        out.append(
            Condition("dropout", f"10 ms gap at {at:.0f} ms", _pad(np.concatenate(parts)), "1470*#")
        )
    return out


def combined_conditions() -> list[Condition]:
    """Several limits at once: shortest tones with lowest level, twist, offsets and noise."""
    out = [
        Condition(
            "combined", "40/40 ms at -30 dBm0", keyed(ALL, on_ms=40, off_ms=40, level=-30.0), ALL
        ),
        Condition(
            "combined",
            "40/40 ms, twist -8 dB, low +1.5% high -1.5%",
            keyed(ALL, on_ms=40, off_ms=40, twist=-8.0, dev_low=0.015, dev_high=-0.015, seed=1),
            ALL,
        ),
        Condition(
            "combined",
            "40/40 ms, twist +4 dB, low -1.5% high +1.5%",
            keyed(ALL, on_ms=40, off_ms=40, twist=4.0, dev_low=-0.015, dev_high=0.015, seed=2),
            ALL,
        ),
        Condition("combined", "2 s key press", keyed("5#", on_ms=2000.0, seed=3), "5#"),
    ]
    sig = keyed(ALL, on_ms=40, off_ms=40, level=-20.0, seed=4)
    noisy = _mix(sig, comfort_noise(sig.size / 8.0, -35.0, seed=5))
    out.append(Condition("combined", "40/40 ms at SNR 15 dB", noisy, ALL))
    sig = keyed(ALL, level=-20.0, twist=-8.0, dev_low=0.015, dev_high=-0.015, seed=6)
    noisy = _mix(sig, comfort_noise(sig.size / 8.0, -43.0, seed=7))
    out.append(Condition("combined", "twist -8 dB, ±1.5 %, SNR 15 dB", noisy, ALL))
    return out


def wideband_conditions() -> list[Condition]:
    """The limits again at 16 kHz (wideband calls)."""
    w = 16000
    out = [
        Condition(
            "16k",
            "low +1.5% high -1.5%",
            keyed(ALL, dev_low=0.015, dev_high=-0.015, rate=w),
            ALL,
            w,
        ),
        Condition(
            "16k",
            "low -1.5% high +1.5%",
            keyed(ALL, dev_low=-0.015, dev_high=0.015, rate=w),
            ALL,
            w,
        ),
        Condition("16k", "low +3.5%", keyed(ALL, dev_low=0.035, rate=w), "", w),
        Condition("16k", "high -3.5%", keyed(ALL, dev_high=-0.035, rate=w), "", w),
        Condition("16k", "twist +4 dB", keyed(ALL, twist=4.0, rate=w), ALL, w),
        Condition("16k", "twist -8 dB", keyed(ALL, twist=-8.0, rate=w), ALL, w),
        Condition("16k", "twist +8 dB", keyed(ALL, twist=8.0, rate=w), "", w),
        Condition("16k", "twist -12 dB", keyed(ALL, twist=-12.0, rate=w), "", w),
        Condition("16k", "40/40 ms", keyed(ALL, on_ms=40, off_ms=40, rate=w), ALL, w),
        Condition("16k", "20 ms on", keyed(ALL, on_ms=20, off_ms=60, rate=w), "", w),
        Condition("16k", "-30 dBm0", keyed(ALL, level=-30.0, rate=w), ALL, w),
        Condition("16k", "-55 dBm0", keyed(ALL, level=-55.0, rate=w), "", w),
    ]
    tone = keyed("9", on_ms=100.0, off_ms=0.0, rate=w)[
        int(LEAD_MS * 16) : -int(LEAD_MS * 16)
    ].copy()
    tone[640:800] = 0
    out.append(
        Condition(
            "16k",
            "10 ms dropout",
            _pad(np.concatenate([tone, silence(100.0, w), tone]), w),
            "99",
            w,
        )
    )
    return out


def noise_conditions() -> list[Condition]:
    """Q.24: white noise 15 dB below the weaker tone (over 0–4 kHz): every key, no extras."""
    out: list[Condition] = []
    cases = [(-10.0, 0.0), (-20.0, 0.0), (-15.0, -8.0), (-15.0, 4.0), (-25.0, 0.0)]
    for i, (lv, tw) in enumerate(cases):
        sig = keyed(ALL, level=lv, twist=tw, seed=30 + i)
        weaker = lv - abs(tw)
        noise = comfort_noise(sig.size / 8.0, weaker - 15.0, seed=40 + i)
        name = f"SNR 15 dB, {lv:+.0f} dBm0, twist {tw:+.0f} dB"
        out.append(Condition("noise", name, _mix(sig, noise), ALL))
    return out


def non_digit_conditions() -> list[Condition]:
    """Single tones and two tones of one group are never a key press."""
    out: list[Condition] = []
    lows, highs = (697.0, 770.0, 852.0, 941.0), (1209.0, 1336.0, 1477.0, 1633.0)
    for lv in (0.0, -10.0, -25.0):
        parts = [dual_tone(f, f, 200.0, lv - 6.02, lv - 6.02) for f in lows + highs]
        sig = _pad(np.concatenate([p for x in parts for p in (x, silence(50.0))]))
        out.append(Condition("non-digit", f"single tones at {lv:+.0f} dBm0", sig, ""))
    for group, fs in (("low", lows), ("high", highs)):
        parts = []
        for i in range(4):
            for j in range(i + 1, 4):
                parts += [dual_tone(fs[i], fs[j], 200.0, -10.0, -10.0), silence(50.0)]
        out.append(Condition("non-digit", f"{group}-group pairs", _pad(np.concatenate(parts)), ""))
    # A tone halfway between two keys' frequencies pairs with no key.
    mid = _pad(np.concatenate([dual_tone(733.5, 1272.5, 300.0, -10.0, -10.0), silence(50.0)]))
    out.append(Condition("non-digit", "between rows and columns", mid, ""))
    return out


# ---------------------------------------------------------------- talk-off material


def music_conditions(rate: int = 8000) -> list[Condition]:
    """Pure-sine music: triad chords, melodies, sweeps and vibrato (talk-off)."""
    rng = np.random.default_rng(50)
    out: list[Condition] = []

    def note(midi: float) -> float:
        return 440.0 * 2.0 ** ((midi - 69.0) / 12.0)

    def sines(
        freqs: list[float], ms: float, level: float, vib: float = 0.0
    ) -> npt.NDArray[np.float64]:
        n = int(ms * rate / 1000)
        t = np.arange(n) / rate
        acc = np.zeros(n)
        amp = dbm0_to_amplitude(level)
        for f in freqs:
            inst = f * (1 + vib * np.sin(2 * np.pi * 5.5 * t))
            acc += amp * np.sin(2 * np.pi * np.cumsum(inst) / rate + rng.uniform(0, 6.28))
        return acc

    chords = []
    for root in range(60, 84, 2):  # C4…B5 major and minor triads, with the octave
        for third in (3, 4):
            chords.append([note(root), note(root + third), note(root + 7), note(root + 12)])
    for lv in (-8.0, -20.0):
        seq = np.concatenate([sines(c, 250.0, lv - 6.0) for c in chords])
        out.append(Condition("music", f"triads at {lv:+.0f} dBm0", _clip(seq), ""))
        vib = np.concatenate([sines(c[:3], 300.0, lv - 5.0, vib=0.02) for c in chords])
        out.append(Condition("music", f"triads with vibrato at {lv:+.0f} dBm0", _clip(vib), ""))
    # Melodies: one pure sine at a time, random notes of a chromatic range, legato.
    for lv in (-8.0, -20.0):
        notes = rng.integers(65, 100, 60)
        mel = np.concatenate(
            [sines([note(float(m))], float(rng.choice([80, 120, 200])), lv) for m in notes]
        )
        out.append(Condition("music", f"sine melody at {lv:+.0f} dBm0", _clip(mel), ""))
        vm = np.concatenate([sines([note(float(m))], 250.0, lv, vib=0.03) for m in notes[:30]])
        out.append(Condition("music", f"sine melody with vibrato at {lv:+.0f} dBm0", _clip(vm), ""))
    # Sweeps over the whole DTMF band, slow and fast, single and as a moving triad.
    t = np.arange(int(3.0 * rate)) / rate
    for name, f0, f1 in (("up", 500.0, 2000.0), ("down", 2000.0, 500.0)):
        f = f0 * (f1 / f0) ** (t / t[-1])
        phase = 2 * np.pi * np.cumsum(f) / rate
        amp = dbm0_to_amplitude(-10.0)
        out.append(Condition("music", f"sweep {name}", _clip(amp * np.sin(phase)), ""))
        tri = sum(amp / 2 * np.sin(phase * r) for r in (1.0, 1.26, 1.5))
        out.append(Condition("music", f"triad sweep {name}", _clip(np.asarray(tri)), ""))
    return out


def noise_talkoff_conditions() -> list[Condition]:
    """White and low-passed noise, steady and in bursts: never a key press."""
    out: list[Condition] = []
    for lv in (-30.0, -15.0, -5.0):
        out.append(
            Condition(
                "noise-talkoff", f"white {lv:+.0f} dBm0", comfort_noise(4000.0, lv, seed=60), ""
            )
        )
    w = comfort_noise(4000.0, -10.0, seed=61).astype(np.float64)
    brown = np.cumsum(w) * 0.05
    brown -= np.convolve(brown, np.ones(400) / 400, mode="same")
    out.append(Condition("noise-talkoff", "low-passed noise", _clip(brown), ""))
    bursts = comfort_noise(4000.0, -10.0, seed=62).copy()
    for i in range(0, bursts.size, 640):
        bursts[i + 240 : i + 640] = 0
    out.append(Condition("noise-talkoff", "noise bursts", bursts, ""))
    return out


# ---------------------------------------------------------------- speech (espeak-ng)

# (voice, text) — our own short IVR-style sentences in each language.
VOICES: tuple[tuple[str, str], ...] = (
    ("en-us", "Thank you for calling. Press one for sales, two for support, or stay on the line."),
    ("en-gb+f3", "Hello, this is a reminder about your appointment tomorrow at half past nine."),
    ("en-us+klatt", "One, two, three, four, five, six, seven, eight, nine, zero, star, and pound."),
    ("de", "Guten Tag, hier spricht Ihr Assistent. Bitte nennen Sie Ihre Kundennummer."),
    ("fr-fr+f2", "Bonjour, merci de votre appel. Un conseiller va vous répondre dans un instant."),
    ("es+m3", "Buenos días, le llamamos para confirmar su cita. Diga sí o no después de la señal."),
    ("it", "Buongiorno, la chiamiamo per un breve sondaggio sulla qualità del servizio."),
    ("pt-br+f4", "Olá, obrigado por ligar. Por favor, aguarde enquanto transferimos a chamada."),
    ("nl", "Goedemiddag, u spreekt met de klantenservice. Waarmee kan ik u helpen?"),
    ("ru", "Здравствуйте, вы позвонили в службу поддержки. Пожалуйста, оставайтесь на линии."),
    ("pl+m2", "Dzień dobry, dziękujemy za telefon. Proszę czekać na połączenie z konsultantem."),
    ("cmn", "你好，欢迎致电客户服务中心。请稍候，我们将尽快为您服务。"),
    ("ja", "こんにちは。お電話ありがとうございます。しばらくお待ちください。"),
    ("ko+f1", "안녕하세요. 고객 센터에 전화해 주셔서 감사합니다. 잠시만 기다려 주십시오."),
    ("ar", "مرحبا، شكرا لاتصالك. يرجى الانتظار قليلا حتى نحولك إلى الموظف."),
    ("hi", "नमस्ते, कॉल करने के लिए धन्यवाद। कृपया लाइन पर बने रहें।"),
    ("tr+m1", "Merhaba, aradığınız için teşekkür ederiz. Lütfen hatta kalın."),
    ("vi", "Xin chào, cảm ơn quý khách đã gọi. Vui lòng giữ máy trong giây lát."),
    ("sw", "Habari, asante kwa kupiga simu. Tafadhali subiri kidogo."),
    (
        "en-us+f5 -p 95",
        "Hi there! I would love to hear more about your great offer, please call me back.",
    ),
    ("en-us+m7 -p 5", "Yes, I am interested. Please send me the details by mail."),
    # High voices (F0 ≈ 307 Hz) whose 3rd and 4th harmonics sit near 941 and 1209 Hz.
    ("hak+f3 -p 90", "Hello, one two three four five six seven eight nine zero. Ahhh, eeee, oooh!"),
    ("ja+f3 -p 90", "Hello, please hold the line, your call is important to us. Ahhh, mmm, oooh!"),
)


def _voice_key(voice: str) -> str:
    return voice.replace(" ", "").replace("+", "_").replace("-", "_")


def render_speech(cache_dir: Path, rate: int = 8000) -> dict[str, Pcm]:
    """Speak every VOICES sentence with espeak-ng, resampled to `rate`; cached as WAVs."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError(
            "espeak-ng is not installed: apt-get install espeak-ng (scripts/setup.sh)"
        )
    cache_dir.mkdir(parents=True, exist_ok=True)
    out: dict[str, Pcm] = {}
    for voice, text in VOICES:
        path = cache_dir / f"{_voice_key(voice)}.wav"
        if not path.exists():
            name, *opts = voice.split()
            tmp = path.with_suffix(".part.wav")
            subprocess.run([exe, "-v", name, *opts, "-w", str(tmp), text], check=True, timeout=60)
            tmp.replace(path)
        x, sr = sf.read(path, dtype="float64")
        if sr != rate:
            x = soxr.resample(x, sr, rate)
        out[voice] = _clip(x * 32767.0)
    return out


SPEECH_LEVELS = (-25.0, -15.0, -8.0)


def speech_conditions(speech: dict[str, Pcm]) -> list[Condition]:
    """Talk-off on speech at three active levels (P.56), some through G.711."""
    out: list[Condition] = []
    for i, (voice, x) in enumerate(speech.items()):
        for lv in SPEECH_LEVELS:
            out.append(Condition("talk-off", f"{voice} {lv:+.0f} dBm0", scale_to_dbm0(x, lv), ""))
        law = ("ulaw", "alaw")[i % 2]
        lv = SPEECH_LEVELS[i % 3]
        sig = _g711(scale_to_dbm0(x, lv), law)
        out.append(Condition("talk-off", f"{voice} {lv:+.0f} dBm0 via {law}", sig, ""))
    return out


def barge_in_conditions(speech: dict[str, Pcm]) -> list[Condition]:
    """Key presses at −10 dBm0 per tone over speech 15 dB lower (−25 dBm0 active)."""
    out: list[Condition] = []
    keys = "147*2580369#ABCD"
    for i, (voice, x) in enumerate(list(speech.items())[::3]):
        talk = scale_to_dbm0(x, -25.0)
        digits = keys[(i * 5) % 16 :] + keys[: (i * 5) % 16]
        tones_ = keyed(digits[:8], on_ms=60.0, off_ms=120.0, level=-10.0, seed=70 + i)
        reps = int(np.ceil(tones_.size / talk.size))
        bed = np.tile(talk, reps)[: tones_.size]
        sig = _mix(tones_, bed)
        if i % 2:
            sig = _g711(sig, "alaw")
        out.append(Condition("barge-in", f"{voice} under {digits[:8]}", sig, digits[:8]))
    return out


TONE_GROUPS: tuple[Callable[[], list[Condition]], ...] = (
    keys_conditions,
    level_conditions,
    frequency_conditions,
    twist_conditions,
    timing_conditions,
    dropout_conditions,
    noise_conditions,
    combined_conditions,
    wideband_conditions,
    non_digit_conditions,
    music_conditions,
    noise_talkoff_conditions,
)


def tone_conditions() -> list[Condition]:
    """Every condition that needs no speech synthesis."""
    return [c for group in TONE_GROUPS for c in group()]


def all_conditions(cache_dir: Path) -> list[Condition]:
    speech = render_speech(cache_dir)
    return tone_conditions() + speech_conditions(speech) + barge_in_conditions(speech)
