"""DTMF receivers side by side: autocall.audio.dtmf against spandsp, same signals, one run.

    python bench/bench_dtmf.py [--seconds 60] [--channels 100 500] [--rounds 5] [--show-all]
                               [--throughput-only] [--old OLD_DTMF_PY]

1. Conformance: every condition of tests/dtmf/conditions.py (ITU-T Q.24 cases, talk-off
   on espeak-ng speech and music, barge-in) through both receivers in 20 ms frames; a
   condition passes when exactly the expected digits are reported.
2. Throughput in seconds of audio per CPU second: one channel fed 20 ms frames, and
   100 (and 500) channels fed 20 ms frames each (ours: one DtmfDetectorBank call per
   frame; spandsp: one dtmf_rx call per channel per frame, its only interface).

``--old`` times an older dtmf.py too (``git show main:autocall/audio/dtmf.py >
/tmp/dtmf_old.py``), in the same rounds, so that load on a shared host hits both alike;
its rows say "(old)". ``--throughput-only`` skips the conformance part.

spandsp (Debian libspandsp2) runs with its defaults from dtmf_rx_init (8 dB normal and
4 dB reverse twist, its own level threshold); it works at 8 kHz only, so 16 kHz
conditions are resampled to 8 kHz for it.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from types import ModuleType

import numpy as np
import numpy.typing as npt
import soxr
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "dtmf"))

import conditions  # noqa: E402
from _old import load_old  # noqa: E402  (this folder: the scripts run from it)

from autocall.audio import dtmf  # noqa: E402
from autocall.audio.dtmf import DtmfDetector  # noqa: E402

FRAME_MS = 20


class SpanDsp:
    """spandsp's DTMF receiver via ctypes: dtmf_rx_init, dtmf_rx, dtmf_rx_get, dtmf_rx_free."""

    _lib: ctypes.CDLL | None = None

    @classmethod
    def lib(cls) -> ctypes.CDLL:
        if cls._lib is None:
            name = ctypes.util.find_library("spandsp") or "libspandsp.so.2"
            lib = ctypes.CDLL(name)
            lib.dtmf_rx_init.restype = ctypes.c_void_p
            lib.dtmf_rx_init.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
            lib.dtmf_rx.restype = ctypes.c_int
            lib.dtmf_rx.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
            lib.dtmf_rx_get.restype = ctypes.c_size_t
            lib.dtmf_rx_get.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
            lib.dtmf_rx_free.argtypes = [ctypes.c_void_p]
            cls._lib = lib
        return cls._lib

    def __init__(self) -> None:
        self._rx = self.lib().dtmf_rx_init(None, None, None)
        if not self._rx:
            raise RuntimeError("dtmf_rx_init failed")
        self._out = ctypes.create_string_buffer(256)

    def feed(self, frame: npt.NDArray[np.int16]) -> None:
        self.lib().dtmf_rx(self._rx, frame.ctypes.data, frame.size)

    def digits(self) -> str:
        lib = self.lib()
        got = []
        while n := lib.dtmf_rx_get(self._rx, self._out, 255):
            got.append(self._out.raw[:n].decode())
        return "".join(got)

    def close(self) -> None:
        if self._rx:
            self.lib().dtmf_rx_free(self._rx)
            self._rx = None


def run_spandsp(signal: npt.NDArray[np.int16], rate: int) -> str:
    x = signal if rate == 8000 else soxr.resample(signal, rate, 8000)
    x = np.ascontiguousarray(x, dtype=np.int16)
    rx = SpanDsp()
    got = []
    step = 8000 * FRAME_MS // 1000
    for i in range(0, x.size, step):
        rx.feed(x[i : i + step])
        got.append(rx.digits())
    rx.feed(np.zeros(8 * 100, dtype=np.int16))  # let it confirm a digit sounding at the end
    got.append(rx.digits())
    rx.close()
    return "".join(got)


def run_ours(signal: npt.NDArray[np.int16], rate: int) -> str:
    det = DtmfDetector(rate)
    step = rate * FRAME_MS // 1000
    got = []
    for i in range(0, signal.size, step):
        got += [e.digit for e in det.feed(signal[i : i + step])]
    got += [e.digit for e in det.flush()]
    return "".join(got)


def conformance(conds: list[conditions.Condition], show_all: bool, console: Console) -> None:
    per_group: dict[str, list[tuple[bool, bool]]] = defaultdict(list)
    detail = Table(title="Conditions (✓ pass, ✗ fail: what was reported)")
    for col in ("condition", "expected", "autocall", "spandsp"):
        detail.add_column(col)
    for c in conds:
        ours = run_ours(c.signal, c.rate)
        theirs = run_spandsp(c.signal, c.rate)
        ok_o, ok_s = ours == c.expected, theirs == c.expected
        per_group[c.group].append((ok_o, ok_s))
        if show_all or not (ok_o and ok_s):
            detail.add_row(
                c.id,
                c.expected or "(none)",
                "✓" if ok_o else f"✗ {ours or '(none)'}",
                "✓" if ok_s else f"✗ {theirs or '(none)'}",
            )
    summary = Table(title="Conformance per group (conditions passed)")
    for col in ("group", "conditions", "autocall", "spandsp"):
        summary.add_column(col, justify="right" if col != "group" else "left")
    tot_o = tot_s = tot = 0
    for g, res in per_group.items():
        o, s = sum(r[0] for r in res), sum(r[1] for r in res)
        tot_o, tot_s, tot = tot_o + o, tot_s + s, tot + len(res)
        summary.add_row(g, str(len(res)), f"{o}/{len(res)}", f"{s}/{len(res)}")
    summary.add_row("all", str(tot), f"{tot_o}/{tot}", f"{tot_s}/{tot}")
    console.print(detail)
    console.print(summary)


def _corpus(conds: list[conditions.Condition]) -> npt.NDArray[np.int16]:
    """Everything at 8 kHz back to back: keys, speech, music, noise, barge-in."""
    return np.ascontiguousarray(np.concatenate([c.signal for c in conds if c.rate == 8000]))


def throughput(
    corpus: npt.NDArray[np.int16],
    channel_counts: list[int],
    seconds: float,
    rounds: int,
    console: Console,
    old: ModuleType | None = None,
) -> None:
    step = 8000 * FRAME_MS // 1000
    n = corpus.size - corpus.size % step
    audio_s = n / 8000
    frames = [corpus[i : i + step] for i in range(0, n, step)]

    mods = {"": dtmf} if old is None else {"": dtmf, " (old)": old}

    def single_ours(batch_ms: float, mod: ModuleType) -> float:
        det = mod.DtmfDetector(batch_ms=batch_ms)
        t = time.process_time()
        for f in frames:
            det.feed(f)
        det.flush()
        return audio_s / (time.process_time() - t)

    def single_spandsp() -> float:
        rx = SpanDsp()
        t = time.process_time()
        for f in frames:
            rx.feed(f)
            rx.digits()
        r = audio_s / (time.process_time() - t)
        rx.close()
        return r

    def bank_ours(multi: npt.NDArray[np.int16], mod: ModuleType) -> float:
        channels, window = multi.shape
        bank = mod.DtmfDetectorBank(channels)
        t = time.process_time()
        for i in range(0, window, step):
            bank.feed(multi[:, i : i + step])
        return channels * window / 8000 / (time.process_time() - t)

    def bank_spandsp(multi: npt.NDArray[np.int16]) -> float:
        channels, window = multi.shape
        rxs = [SpanDsp() for _ in range(channels)]
        rows = [np.ascontiguousarray(r) for r in multi]
        t = time.process_time()
        for i in range(0, window, step):
            for rx, row in zip(rxs, rows, strict=True):
                rx.feed(row[i : i + step])
                rx.digits()
        r = channels * window / 8000 / (time.process_time() - t)
        for rx in rxs:
            rx.close()
        return r

    # Rounds alternate between the receivers and each keeps its best round, so load
    # from other processes on the machine hits both alike and is filtered out.
    load0 = os.getloadavg()
    runs: dict[str, list[float]] = defaultdict(list)
    for _ in range(rounds):
        runs["sp1"].append(single_spandsp())
        for tag, mod in mods.items():
            runs["o1" + tag].append(single_ours(100.0, mod))
            runs["o0" + tag].append(single_ours(0.0, mod))
    table = Table(title=f"Throughput: seconds of audio per CPU second ({audio_s:.0f} s corpus)")
    for col in ("case", "spandsp", "autocall", "ratio (autocall/spandsp)", "goal"):
        table.add_column(col, justify="right" if col != "case" else "left")
    sp1 = max(runs["sp1"])
    for tag in mods:
        o1, o0 = max(runs["o1" + tag]), max(runs["o0" + tag])
        table.add_row(
            f"1 channel, 20 ms frames{tag}", f"{sp1:,.0f}", f"{o1:,.0f}", f"{o1 / sp1:.2f}×", "≥ 1×"
        )
        table.add_row(
            f"1 channel, 20 ms frames, batch_ms=0{tag}",
            f"{sp1:,.0f}",
            f"{o0:,.0f}",
            f"{o0 / sp1:.2f}×",
            "—",
        )
    for channels in channel_counts:
        # Each channel plays a window of the corpus from its own offset: together they
        # cover the whole corpus, and keys start at different times on each channel.
        # Above 100 channels the windows shrink so every row costs about the same.
        window = min(n, int(seconds * min(1.0, 100 / channels) * 8000) // step * step)
        shifts = np.linspace(0, n, channels, endpoint=False).astype(int)
        multi = np.stack([corpus[(s + np.arange(window)) % n] for s in shifts])
        sp: list[float] = []
        ours: dict[str, list[float]] = defaultdict(list)
        for _ in range(max(2, rounds // 2)):
            sp.append(bank_spandsp(multi))
            for tag, mod in mods.items():
                ours[tag].append(bank_ours(multi, mod))
        spn = max(sp)
        for tag in mods:
            on = max(ours[tag])
            table.add_row(
                f"{channels} channels × {window / 8000:.0f} s, 20 ms frames{tag}",
                f"{spn:,.0f}",
                f"{on:,.0f}",
                f"{on / spn:.2f}×",
                "≥ 1×" if channels == 100 else "—",
            )
    load1 = os.getloadavg()
    console.print(table)
    console.print(
        "load average (1, 5, 15 min) before: "
        + ", ".join(f"{x:.2f}" for x in load0)
        + "; after: "
        + ", ".join(f"{x:.2f}" for x in load1)
    )
    console.print(
        "autocall's single-channel default analyses every 100 ms of audio (batch_ms=100); "
        "batch_ms=0 analyses each 20 ms frame as it arrives. Banks: one "
        "DtmfDetectorBank.feed per 20 ms for all channels; spandsp: one dtmf_rx per channel."
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0, help="audio per channel, batched case")
    ap.add_argument(
        "--channels", type=int, nargs="+", default=[100, 500], help="channel counts, batched case"
    )
    ap.add_argument("--rounds", type=int, default=5, help="timing rounds; the best counts")
    ap.add_argument("--show-all", action="store_true", help="list passing conditions too")
    ap.add_argument("--throughput-only", action="store_true", help="skip the conformance part")
    ap.add_argument("--old", type=Path, help="an older dtmf.py to time beside this one")
    args = ap.parse_args()
    console = Console()
    old = load_old(args.old, "dtmf_old") if args.old is not None else None
    with tempfile.TemporaryDirectory() as tmp:
        conds = conditions.all_conditions(Path(tmp))
    console.print(
        f"{len(conds)} conditions, {sum(c.signal.size / c.rate for c in conds):.0f} s of audio"
    )
    if not args.throughput_only:
        conformance(conds, args.show_all, console)
    throughput(_corpus(conds), args.channels, args.seconds, args.rounds, console, old)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
