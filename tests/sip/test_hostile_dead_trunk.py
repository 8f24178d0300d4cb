"""A dead trunk is a network fault, not a callee who did not answer (issue 12 item 9).

Over TCP a refused connection fails the call at once with 503; over UDP, silence (not even
100 Trying) fails it with 408 when Timer B fires, even though the ring timeout came first.
Both end ``by`` local with ``network_fault`` set, on the Call and on its HangupEvent.
Also: a callee that answers with no codec in common is a failed call (488), not completed.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autocall.cli import app
from autocall.cli.call import EXIT_FAILED
from autocall.sip.transaction import Timers
from autocall.telephony.call import CallStatus, HangupEvent, UserAgent
from tests.peers import SCENARIOS, Sipp

pytestmark = [pytest.mark.peers, pytest.mark.timeout(60)]

FAST = Timers(t1=0.1, t2=0.4, t4=0.5, timer_d=0.5)  # Timer B = 64*T1 = 6.4 s
CLOSED_TCP = 42200  # h3's range: 42000-42999; nothing listens here
CLOSED_UDP = 42201


def _closed(port: int, kind: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


async def _last_event(call: object) -> HangupEvent:
    async for ev in call:  # type: ignore[attr-defined]
        if isinstance(ev, HangupEvent):
            return ev
    raise AssertionError("no hangup event")


async def test_refused_tcp_connection_fails_at_once_with_503() -> None:
    assert _closed(CLOSED_TCP, socket.SOCK_STREAM)
    ua = await UserAgent.start(transport="tcp")  # default timers: Timer B would be 32 s
    try:
        t0 = time.monotonic()
        call = await ua.call(f"sip:trunk@127.0.0.1:{CLOSED_TCP};transport=tcp")
        assert await call.wait_ended(5) is CallStatus.FAILED
        assert time.monotonic() - t0 < 5
        assert call.sip_code == 503 and call.ended_by == "local" and call.network_fault
        assert call.reason is not None and "refused" in call.reason.lower()
        ev = await asyncio.wait_for(_last_event(call), 2)
        assert ev.network_fault and ev.status is CallStatus.FAILED and ev.sip_code == 503
    finally:
        await ua.close()


async def test_silent_udp_trunk_fails_with_408_after_timer_b_not_no_answer() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as black_hole:
        black_hole.bind(("127.0.0.1", CLOSED_UDP))  # receives and never answers
        ua = await UserAgent.start(timers=FAST)
        try:
            call = await ua.call(f"sip:trunk@127.0.0.1:{CLOSED_UDP}", ring_timeout=2)
            await asyncio.sleep(0)
            assert await call.wait_ended(15) is CallStatus.FAILED
            assert call.sip_code == 408 and call.ended_by == "local" and call.network_fault
            ev = await asyncio.wait_for(_last_event(call), 2)
            assert ev.network_fault and ev.status is CallStatus.FAILED
        finally:
            await ua.close()


async def test_a_callee_that_rings_and_times_out_is_still_no_answer() -> None:
    """The other side of the line: a 180 then silence is no-answer, no network fault."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as phone:
        phone.bind(("127.0.0.1", CLOSED_UDP))
        phone.setblocking(False)
        ua = await UserAgent.start(timers=FAST)
        loop = asyncio.get_running_loop()
        try:
            call = await ua.call(f"sip:trunk@127.0.0.1:{CLOSED_UDP}", ring_timeout=1)
            invite, src = await loop.sock_recvfrom(phone, 65535)
            head = invite.split(b"\r\n\r\n")[0].split(b"\r\n")
            keep = [
                h
                for h in head[1:]
                if h.split(b":")[0] in (b"Via", b"From", b"To", b"Call-ID", b"CSeq")
            ]
            keep = [h + b";tag=ph1" if h.startswith(b"To:") else h for h in keep]
            phone.sendto(
                b"SIP/2.0 180 Ringing\r\n" + b"\r\n".join(keep) + b"\r\nContent-Length: 0\r\n\r\n",
                src,
            )
            cancel, _ = await loop.sock_recvfrom(phone, 65535)
            while not cancel.startswith(b"CANCEL"):
                cancel, _ = await loop.sock_recvfrom(phone, 65535)
            assert await call.wait_ended(10) is CallStatus.NO_ANSWER
            assert not call.network_fault
        finally:
            await ua.close()


async def test_answer_without_a_common_codec_is_failed_488_not_completed() -> None:
    port = 42210
    with Sipp(SCENARIOS / "uas_answer_g729.xml", port=port, media_port=port + 2) as peer:
        ua = await UserAgent.start()
        try:
            call = await ua.call(f"sip:sipp@127.0.0.1:{port}")
            assert await call.wait_ended(10) is CallStatus.FAILED
            assert call.sip_code == 488 and call.ended_by == "local" and not call.network_fault
            assert peer.wait(10) == 0, peer.errors()  # it got our ACK and BYE
        finally:
            await ua.close()


def test_cli_call_to_a_refused_tcp_trunk_exits_failed_not_no_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _closed(CLOSED_TCP, socket.SOCK_STREAM)
    monkeypatch.setenv("AUTOCALL_TTS_CACHE", str(tmp_path / "tts"))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        app,
        [
            "call",
            f"sip:trunk@127.0.0.1:{CLOSED_TCP}",
            "--transport",
            "tcp",
            "--say",
            "Hello.",
            "--bind",
            "127.0.0.1:42205",
            "--ring-timeout",
            "3",
            "--json",
        ],
    )
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert result.exit_code == EXIT_FAILED, result.output  # 1, never 5 (no-answer)
    assert summary["status"] == "failed" and summary["sip_code"] == 503
    assert summary["network_fault"] is True
