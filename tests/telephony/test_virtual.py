"""Virtual phones answer SIPp like real callees: codes, RTP, RFC 4733 and in-band keys."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest

from autocall.audio import g711
from autocall.telephony.virtual import Behaviour, PhoneScript, VirtualPhones
from tests.telephony.sipp import run_sipp, uac_scenario

pytestmark = pytest.mark.peers


class _Sink(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.packets: list[bytes] = []

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.packets.append(data)


async def _sink(port: int) -> tuple[asyncio.DatagramTransport, _Sink]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(_Sink, local_addr=("127.0.0.1", port))
    return transport, proto


def _events(packets: list[bytes]) -> str:
    """Digits from RFC 4733 end packets, once per event timestamp."""
    seen: dict[int, str] = {}
    for p in packets:
        if p[1] & 0x7F == 101 and p[13] & 0x80:
            seen.setdefault(int.from_bytes(p[4:8], "big"), "0123456789*#ABCD"[p[12]])
    return "".join(seen[k] for k in sorted(seen))


@pytest.mark.parametrize(("behaviour", "code"), [
    (Behaviour.BUSY, 486), (Behaviour.DECLINE, 603), (Behaviour.FAIL, 503),
])
async def test_refusals_give_their_sip_code(tmp_path: Path, behaviour: Behaviour,
                                             code: int) -> None:
    book = {"200": PhoneScript(behaviour, ring_seconds=0.05)}
    async with VirtualPhones(book, port=30100) as phones:
        rc, err = await run_sipp(tmp_path, uac_scenario(code, rtp_port=30102),
                                 "127.0.0.1:30100", "200", 30101)
        assert rc == 0, err
        assert phones.calls[0].final_code == code


async def test_answers_and_presses_rfc4733_digits(tmp_path: Path) -> None:
    book = {"+15550001": PhoneScript(Behaviour.ANSWER, digits="1#", max_wait=0.3,
                                     ring_seconds=0.05)}
    transport, sink = await _sink(30112)
    try:
        async with VirtualPhones(book, port=30110) as phones:
            rc, err = await run_sipp(tmp_path, uac_scenario(200, rtp_port=30112, talk_ms=2000),
                                     "127.0.0.1:30110", "+15550001", 30111)
            assert rc == 0, err
            log = phones.calls[0]
    finally:
        transport.close()
    assert log.final_code == 200 and log.hung_up_by == "caller"
    assert log.digits_sent == "1#"
    assert _events(sink.packets) == "1#"
    markers = [p for p in sink.packets if p[1] == 0x80 | 101]
    assert len(markers) == 2  # one marker bit per event (RFC 4733 §2.5.1.2)
    assert len(sink.packets) > 50  # audio frames keep flowing between the keys


async def test_inband_digit_is_a_q23_tone_pair(tmp_path: Path) -> None:
    book = {"300": PhoneScript(Behaviour.ANSWER, digits="5", dtmf="inband", max_wait=0.2,
                               ring_seconds=0.05)}
    transport, sink = await _sink(30122)
    try:
        async with VirtualPhones(book, port=30120):
            rc, err = await run_sipp(tmp_path, uac_scenario(200, rtp_port=30122, talk_ms=1200),
                                     "127.0.0.1:30120", "300", 30121)
            assert rc == 0, err
    finally:
        transport.close()
    audio = np.concatenate([g711.ulaw_decode(p[12:]) for p in sink.packets if p[1] & 0x7F == 0])
    spectrum = np.abs(np.fft.rfft(audio.astype(np.float64)))
    freqs = np.fft.rfftfreq(len(audio), 1 / 8000)
    top = sorted(freqs[np.argsort(spectrum)[-2:]])
    assert abs(top[0] - 770) < 10 and abs(top[1] - 1336) < 10  # Q.23: key 5


async def test_hangs_up_early_with_its_own_bye(tmp_path: Path) -> None:
    book = {"400": PhoneScript(Behaviour.HANGUP_EARLY, hangup_after=0.3, ring_seconds=0.05)}
    async with VirtualPhones(book, port=30130) as phones:
        scenario = uac_scenario(200, rtp_port=30132, far_end_hangs_up=True)
        rc, err = await run_sipp(tmp_path, scenario, "127.0.0.1:30130", "400", 30131)
        assert rc == 0, err
        assert phones.calls[0].hung_up_by == "phone"


def test_script_rejects_a_non_key() -> None:
    with pytest.raises(ValueError, match="not a DTMF key"):
        PhoneScript(digits="1x")


async def test_the_second_call_follows_the_second_script(tmp_path: Path) -> None:
    book = {"500": [PhoneScript(Behaviour.BUSY), PhoneScript(Behaviour.DECLINE, ring_seconds=0)]}
    async with VirtualPhones(book, port=30140) as phones:
        for code in (486, 603, 603):
            rc, err = await run_sipp(tmp_path, uac_scenario(code, rtp_port=30142),
                                     "127.0.0.1:30140", "500", 30141)
            assert rc == 0, err
        assert [c.final_code for c in phones.calls] == [486, 603, 603]


async def test_stop_hangs_up_calls_still_up_without_waiting_long(tmp_path: Path) -> None:
    book = {"600": PhoneScript(Behaviour.ANSWER, ring_seconds=0.05, talk_limit=30)}
    phones = VirtualPhones(book, port=30150)
    await phones.start()
    sipp = asyncio.ensure_future(run_sipp(
        tmp_path, uac_scenario(200, rtp_port=30152, far_end_hangs_up=True),
        "127.0.0.1:30150", "600", 30151))
    while not phones.calls or phones.calls[0].answered_at is None:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    started = time.monotonic()
    await phones.stop()
    assert time.monotonic() - started < 1.5
    rc, err = await sipp
    assert rc == 0, err  # SIPp got our BYE and answered it
    assert phones.calls[0].hung_up_by == "phone"
