"""bench/bench_calls.py's health rule: streams told apart by source address and port, a
call healthy against the floor a C sender measured in the same run (issue 20)."""

from __future__ import annotations

import importlib.util
import shutil
import socket
import subprocess
import sys
import threading
import time
from array import array
from multiprocessing import Pipe
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
    exe = bench._build_c(tmp_path, "floor", bench._FLOOR_C)
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


def _rtp(seq: int, pt: int = 0) -> bytes:
    return bytes([0x80, pt]) + seq.to_bytes(2, "big") + bytes(8) + b"\xff" * 160


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler to build the sink")
def test_the_c_sink_bursts_echoes_and_stamps_as_the_python_one(tmp_path: Path) -> None:
    """A new stream gets the DTMF burst, paced 20 ms, then its own packets back (echo);
    the floor sender starts with "start"; only PCMU/PCMA and floor packets that arrive
    between start and stop are stamped, each under its source address and port."""
    bench = _bench()
    exe = bench._build_c(tmp_path, "sink", bench._SINK_C)
    floor = bench._build_c(tmp_path, "floor", bench._FLOOR_C)
    assert exe is not None and floor is not None
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    burst = [_rtp(900 + k) for k in range(5)]
    ours, theirs = Pipe()
    sink = threading.Thread(target=bench._sink_c,
                            args=(exe, port, theirs, burst, True, (floor, 1)))
    sink.start()
    caller = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        assert ours.poll(10) and ours.recv() == "ready"
        caller.bind(("127.0.0.1", 0))
        caller.settimeout(2)
        key = bench._addr_key(caller.getsockname())
        dest = ("127.0.0.1", port)
        caller.sendto(_rtp(1), dest)
        t0 = time.monotonic()
        got = [caller.recvfrom(2048)[0] for _ in burst]
        took = time.monotonic() - t0
        assert got == burst and took >= 0.07  # paced: 4 gaps of 20 ms
        ours.send("start")
        time.sleep(0.2)  # the order reaches the sink before what it should stamp
        for seq in range(2, 6):
            caller.sendto(_rtp(seq), dest)
            assert caller.recvfrom(2048)[0] == _rtp(seq)  # echoed once the burst is over
        caller.sendto(_rtp(6, pt=101), dest)  # an RFC 4733 event: echoed, not stamped
        assert caller.recvfrom(2048)[0] == _rtp(6, pt=101)
        ours.send("stop")
        assert ours.poll(10)
        keys_b, times_b, floor_keys = ours.recv()
    finally:
        sink.join(10)
        caller.close()
    keys = np.frombuffer(keys_b, dtype=np.uint64)
    times = np.frombuffer(times_b, dtype=np.float64)
    assert len(floor_keys) == 1 and floor_keys[0] != key
    assert list(keys[keys == key]) == [key] * 4
    assert np.count_nonzero(keys == floor_keys[0]) >= 5  # 50/s for over 0.2 s
    assert set(keys.tolist()) == {key, floor_keys[0]}
    assert np.all(np.diff(times[keys == key]) >= 0) and abs(times[0] - time.time()) < 60


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler to build the sink")
def test_the_c_sink_greeting_turns_its_echo_to_silence(tmp_path: Path) -> None:
    """``--far-end greeting``: the far end echoes for the greeting's length, then sends
    the same packets back with G.711 silence (PCMU 0xFF, PCMA 0xD5) in them."""
    bench = _bench()
    exe = bench._build_c(tmp_path, "sink", bench._SINK_C)
    assert exe is not None
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    ours, theirs = Pipe()
    sink = threading.Thread(
        target=bench._sink_c, args=(exe, port, theirs, [_rtp(900)], True, None, 0.2))
    sink.start()
    caller = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        assert ours.poll(10) and ours.recv() == "ready"
        caller.bind(("127.0.0.1", 0))
        caller.settimeout(2)
        dest = ("127.0.0.1", port)
        caller.sendto(_rtp(1), dest)
        assert caller.recvfrom(2048)[0] == _rtp(900)  # the burst: one packet
        loud = bytes([0x80, 8]) + bytes(10) + b"\x2a" * 160
        caller.sendto(loud, dest)
        assert caller.recvfrom(2048)[0] == loud  # speaking: echoed as it came
        time.sleep(0.3)
        caller.sendto(loud, dest)
        assert caller.recvfrom(2048)[0] == loud[:12] + b"\xd5" * 160  # listening: PCMA silence
        loud_pcmu = bytes([0x80, 0]) + bytes(10) + b"\x2a" * 160
        caller.sendto(loud_pcmu, dest)
        assert caller.recvfrom(2048)[0] == loud_pcmu[:12] + b"\xff" * 160  # PCMU silence
        ours.send("stop")
        assert ours.poll(10)
        ours.recv()
    finally:
        sink.join(10)
        caller.close()
