"""RTP ports: a range from the environment, and a quarantine after each call (issue 22)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from autocall.audio import g711
from autocall.audio.tones import dtmf
from autocall.media import MediaEngine, MediaSession
from autocall.media.ports import PortPool, PortsExhausted
from autocall.media.rtp import RtpPacket

pytestmark = pytest.mark.timeout(30)

LOW, HIGH = 40400, 40405  # h1's range 40000-40999: even ports 40400, 40402, 40404


def test_pool_hands_out_even_ports_and_rests_freed_ones() -> None:
    pool = PortPool(40401, 40407, quarantine=30)
    now = 100.0
    first = next(pool.candidates(now))
    assert first in (40402, 40404, 40406)
    pool.taken(first)
    pool.released(first, now)
    assert not pool.usable(first, now + 29.9)
    assert first not in set(pool.candidates(now + 29.9))
    assert pool.usable(first, now + 30)
    assert sorted(pool.candidates(now + 30)) == [40402, 40404, 40406]


def test_pool_from_env_explains_bad_values() -> None:
    pool = PortPool.from_env({"AUTOCALL_RTP_PORTS": "20000-29999", "AUTOCALL_RTP_QUARANTINE": "5"})
    assert pool.range is not None and (pool.range.low, pool.range.high) == (20000, 29999)
    assert pool.quarantine == 5
    assert PortPool.from_env({}).range is None and PortPool.from_env({}).quarantine == 30
    with pytest.raises(ValueError, match="write it like 20000-29999"):
        PortPool.from_env({"AUTOCALL_RTP_PORTS": "20000"})
    with pytest.raises(ValueError, match="AUTOCALL_RTP_QUARANTINE='soon'"):
        PortPool.from_env({"AUTOCALL_RTP_QUARANTINE": "soon"})
    with pytest.raises(ValueError, match="outside 1024-65535"):
        PortPool.from_env({"AUTOCALL_RTP_PORTS": "70000-70010"})


@pytest.fixture
async def engine(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[MediaEngine]:
    monkeypatch.setenv("AUTOCALL_RTP_PORTS", f"{LOW}-{HIGH}")
    monkeypatch.setenv("AUTOCALL_RTP_QUARANTINE", "30")
    eng = MediaEngine()
    yield eng
    eng.close()


async def test_a_freed_port_is_not_given_to_the_next_call_while_its_tail_arrives(
    engine: MediaEngine,
) -> None:
    """The previous call's gateway keeps sending in-band "9" to the port it had."""
    first = await MediaSession.open(engine)
    old_port = first.local_port
    assert old_port in (40400, 40402, 40404)
    gateway = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    gateway.bind(("127.0.0.1", 40410))
    first.start(gateway.getsockname(), payload_type=0, dtmf_payload_type=101)
    await first.close()

    tone = g711.ulaw_encode(dtmf("9", on_ms=300, off_ms=100))
    tail = [
        bytes(RtpPacket(0, 7 + i, 1000 + 160 * i, 0x70, tone[160 * i : 160 * (i + 1)]))
        for i in range(len(tone) // 160)
    ]
    second = await MediaSession.open(engine)
    third = await MediaSession.open(engine)
    try:
        ports = {second.local_port, third.local_port}
        assert old_port not in ports and ports <= {40400, 40402, 40404}
        # the new call's caller sends from the same host and port as the old gateway
        second.start(gateway.getsockname(), payload_type=0, dtmf_payload_type=101)
        for p in tail:
            gateway.sendto(p, ("127.0.0.1", old_port))
            await asyncio.sleep(0.005)
        with pytest.raises(PortsExhausted, match="1 resting for 30 s"):
            await MediaSession.open(engine)  # the range is full: two in use, one resting
        await asyncio.sleep(0.5)
        assert second.stats().packets_received == 0 and second.stats().dtmf_received == 0
    finally:
        await second.close()
        await third.close()
        gateway.close()
