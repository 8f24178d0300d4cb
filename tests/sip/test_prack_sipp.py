"""Reliable provisional responses (RFC 3262) and UPDATE in an early dialog (RFC 3311)
against a real SIPp on 127.0.0.1. SIPp's scenario checks what we send (Supported/Require,
RAck, answers), its exit code says it saw each message in time; our side checks what it
made of SIPp's messages (PRACKs, early media heard, the negotiated media)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from autocall.audio import g711
from autocall.audio.tones import beep, silence
from autocall.sip.transaction import Timers
from autocall.telephony.call import CallStatus, UserAgent
from tests.peers import SCENARIOS, Sipp

pytestmark = [pytest.mark.peers, pytest.mark.timeout(60)]

_ports = itertools.count(19600, 10)  # ours: 19600-19699 (SIPp, its media, our agent)
FAST = Timers(t1=0.1, t2=0.4, t4=0.5, timer_d=0.5)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_a_reliable_183_is_pracked_and_its_early_media_heard(
        tmp_path: Path, transport: str) -> None:
    # 0.6 s of 1 kHz, streamed by SIPp during the 183 only: a loud left channel in our
    # recording can only be early media.
    pcm = np.concatenate([beep(1000, 600), silence(100)])
    (tmp_path / "early.ul").write_bytes(g711.ulaw_encode(pcm))
    port = next(_ports)
    peer = Sipp(SCENARIOS / "uas_183_100rel.xml", port=port, media_port=port + 2,
                cwd=tmp_path, transport="u1" if transport == "udp" else "t1")
    with peer:
        ua = await UserAgent.start(bind_port=port + 7, timers=FAST, transport=transport)
        try:
            tp = "" if transport == "udp" else ";transport=tcp"
            call = await ua.call(f"sip:sipp@127.0.0.1:{port}{tp}", ring_timeout=10,
                                 record=tmp_path / "call.wav")
            assert await call.wait_answer(10) is CallStatus.IN_PROGRESS
            usage = call.session.usage
            assert usage.pracks == 1  # the 183's retransmissions were not PRACKed again
            assert usage.dialog is not None and usage.dialog.local_seq == 2  # PRACK was 2
            await call.hangup()  # BYE: CSeq 3 in the dialog the 183 made
            assert await call.wait_ended(5) is CallStatus.COMPLETED
            assert peer.wait(10) == 0, peer.errors()
            rec, rate = sf.read(str(tmp_path / "call.wav"), dtype="int16")
            assert rate == 8000 and rec.ndim == 2
            assert np.abs(rec[:, 0]).max() > 1000, "no early media heard"
        finally:
            await ua.close()


async def _until(check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s")
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_served_call_sends_its_180_reliably_until_pracked(
        tmp_path: Path, transport: str) -> None:
    port = next(_ports)
    ours = port + 7
    ua = await UserAgent.start(bind_port=ours, timers=FAST, transport=transport)
    try:
        calls = aiter(ua.incoming())
        scenario = "uac_100rel.xml" if transport == "udp" else "uac_100rel_tcp.xml"
        peer = Sipp(SCENARIOS / scenario, port=port, media_port=port + 2,
                    remote=f"127.0.0.1:{ours}", service="robot", cwd=tmp_path,
                    extra=["-trace_msg"], transport="u1" if transport == "udp" else "t1")
        with peer:
            call = await asyncio.wait_for(anext(calls), 5)
            usage = call.session.usage
            assert usage.reliable_1xx
            await _until(lambda: usage.pracks == 1, 5)
            dialog = usage.dialog
            assert dialog is not None  # the early dialog of our 180
            await _until(lambda: dialog.remote_seq == 4, 5)  # both UPDATEs came
            assert call.negotiated is None  # the refused UPDATE's offer changed nothing
            await call.answer()
            assert await call.wait_ended(10) is CallStatus.COMPLETED
            assert call.ended_by == "remote"
            assert call.negotiated is not None and call.negotiated.codec == "PCMU"
            assert peer.wait(10) == 0, peer.errors()
        # While SIPp held its PRACK back 600 ms, our 180 came again (T1 = 0.1 s: at
        # 0.1 and 0.3 s; over TCP too, RFC 3262 §3 retransmits above the transport),
        # then stopped: the INVITE's 200 is the only later response.
        trace = "".join(p.read_text(errors="replace") for p in tmp_path.glob("*messages*"))
        ringing = trace.count("SIP/2.0 180 Ringing")
        # (over TCP SIPp PRACKs right after the first repeat, which its scenario requires)
        assert (3 if transport == "udp" else 2) <= ringing <= 6, ringing
    finally:
        await ua.close()


async def test_a_caller_that_never_pracks_gets_504_after_64_t1(tmp_path: Path) -> None:
    port = next(_ports)
    ours = port + 7
    ua = await UserAgent.start(bind_port=ours, timers=FAST)
    try:
        calls = aiter(ua.incoming())
        peer = Sipp(SCENARIOS / "uac_100rel_no_prack.xml", port=port, media_port=port + 2,
                    remote=f"127.0.0.1:{ours}", service="robot", cwd=tmp_path)
        with peer:
            call = await asyncio.wait_for(anext(calls), 5)
            started = time.monotonic()
            await _until(lambda: call.status.final, 10)
            waited = time.monotonic() - started
            assert 6.0 <= waited <= 7.5, waited  # 64 * T1 = 6.4 s
            assert call.sip_code == 504 and call.ended_by == "local"
            assert peer.wait(10) == 0, peer.errors()
    finally:
        await ua.close()


async def test_an_update_in_the_early_dialog_moves_the_early_media_to_pcma(
        tmp_path: Path) -> None:
    pcm = np.concatenate([beep(700, 600), silence(100)])
    (tmp_path / "early.al").write_bytes(g711.alaw_encode(pcm))
    port = next(_ports)
    peer = Sipp(SCENARIOS / "uas_183_update.xml", port=port, media_port=port + 2,
                cwd=tmp_path)
    with peer:
        ua = await UserAgent.start(bind_port=port + 7, timers=FAST)
        try:
            call = await ua.call(f"sip:sipp@127.0.0.1:{port}", ring_timeout=10,
                                 record=tmp_path / "call.wav")
            await _until(lambda: call.negotiated is not None
                         and call.negotiated.codec == "PCMA", 5)
            assert call.status is CallStatus.RINGING  # the UPDATE came before the answer
            assert call.media.payload_type == 8  # what we send follows the UPDATE
            assert await call.wait_answer(10) is CallStatus.IN_PROGRESS
            assert call.negotiated is not None and call.negotiated.codec == "PCMA"
            await call.hangup()
            assert await call.wait_ended(5) is CallStatus.COMPLETED
            assert peer.wait(10) == 0, peer.errors()
            rec, _rate = sf.read(str(tmp_path / "call.wav"), dtype="int16")
            assert np.abs(rec[:, 0]).max() > 1000, "the PCMA early media was not heard"
        finally:
            await ua.close()


async def test_rport_sends_the_answer_where_the_request_came_from(tmp_path: Path) -> None:
    port = next(_ports)
    ours = port + 7
    ua = await UserAgent.start(bind_port=ours, timers=FAST)
    try:
        peer = Sipp(SCENARIOS / "uac_options_rport.xml", port=port, media_port=port + 2,
                    remote=f"127.0.0.1:{ours}", service="robot", cwd=tmp_path,
                    extra=["-trace_msg"])
        with peer:  # waited for off the loop: our agent must answer meanwhile
            assert await asyncio.to_thread(peer.wait, 10) == 0, peer.errors()
        trace = "".join(p.read_text(errors="replace") for p in tmp_path.glob("*messages*"))
        assert f";rport={port};received=127.0.0.1" in trace  # SIPp's own port
    finally:
        await ua.close()
