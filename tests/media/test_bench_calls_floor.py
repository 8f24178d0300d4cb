"""bench/bench_calls.py's health rule: streams told apart by source address and port, a
call healthy against the floor a C sender measured in the same run (issue 20)."""

from __future__ import annotations

import importlib.util
import shutil
import socket
import subprocess
import sys
import time
from array import array
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_calls.py"


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_calls", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules["bench_calls"] = bench  # its dataclasses look their module up
    spec.loader.exec_module(bench)
    return bench


def _raw(streams: dict[int, np.ndarray], floor: list[int]) -> tuple[bytes, bytes, list[int]]:
    keys, times = array("Q"), array("d")
    for key, t in streams.items():
        keys.extend([key] * len(t))
        times.extend(t.tolist())
    return keys.tobytes(), times.tobytes(), floor


def test_streams_are_told_apart_by_address_and_judged_against_the_floor() -> None:
    bench = _bench()
    steady = np.arange(500) * 0.020
    late = steady.copy()
    late[::50] += 0.004  # every 50th packet 4 ms late: p99 gap 24 ms
    slow = np.arange(500) * 0.0201  # 49.75 packets/s: off by 0.5 %
    floor = steady + 0.0005 * (np.arange(500) % 2)  # the C sender: p99 gap 20.5 ms
    a, b, c = (bench._addr_key(("127.0.0.1", p)) for p in (4000, 4002, 4004))
    f = bench._addr_key(("127.0.0.1", 5000))
    # Same SSRC on every stream does not matter: the keys are addresses and ports.
    stats = bench.stream_stats(_raw({a: steady, b: late, c: slow, f: floor}, [f]))
    assert stats.streams == 3 and stats.floor_streams == 1
    assert stats.floor_p99_ms == pytest.approx(20.5, abs=0.01)
    assert stats.limit_ms == pytest.approx(21.5, abs=0.01)
    assert stats.healthy == 1  # only the steady one: the late one is 2.5 ms over the floor
    # Without a floor the fixed 22 ms rule holds.
    assert bench.stream_stats(_raw({a: steady, b: late}, [])).limit_ms == pytest.approx(22.0)


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler to build the floor")
def test_the_floor_sender_paces_its_streams_from_ports_of_their_own(tmp_path: Path) -> None:
    bench = _bench()
    exe = bench._build_floor(tmp_path)
    assert exe is not None
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.settimeout(2)
    proc = subprocess.Popen(
        [str(exe), "127.0.0.1", str(sink.getsockname()[1]), "3"], stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        ports = {int(proc.stdout.readline()) for _ in range(3)}
        got: dict[int, list[bytes]] = {}
        t0 = time.monotonic()
        while time.monotonic() - t0 < 0.5:
            data, addr = sink.recvfrom(2048)
            got.setdefault(addr[1], []).append(data)
    finally:
        proc.terminate()
        proc.wait(5)
        sink.close()
    assert set(got) == ports
    for packets in got.values():
        assert 15 <= len(packets) <= 35  # 50 packets/s for 0.5 s, wide for a busy machine
        assert all(len(p) == 172 and p[0] == 0x80 and p[1] == 0 for p in packets)
        seqs = [int.from_bytes(p[2:4], "big") for p in packets]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
