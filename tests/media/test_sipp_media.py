"""SIPp as the far end's media: its rtp_stream audio and its RFC 4733 pcaps reach a MediaSession.

SIPp answers a hand-written INVITE (this test is about media, not SIP; the SIP user
agent has its own tests) whose SDP points at our session, then streams a μ-law tone
with ``rtp_stream`` and replays the ``dtmf_2833_*.pcap`` files Debian ships (those need
a raw socket: root, which the test machines and CI are).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf

from autocall.audio import g711
from autocall.audio.tones import beep, dtmf
from autocall.media import MediaEngine, MediaSession
from tests.conftest import need_binary

pytestmark = [pytest.mark.peers, pytest.mark.timeout(40)]

SIP_PORT = 25060
MEDIA_PORT = 25100
PCAPS = Path("/usr/share/sip-tester")

SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="media peer: answers, then plays what the test asks for">
  <recv request="INVITE" crlf="true"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=sipp 1 1 IN IP4 [media_ip]
      s=-
      c=IN IP4 [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-16
    ]]>
  </send>
  <recv request="ACK"/>
{media}
  <recv request="BYE" timeout="10000"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0
    ]]>
  </send>
</scenario>
"""


def request(
    method: str, cseq: int, local_port: int, to: str, sdp: str = "", sip_port: int = SIP_PORT
) -> bytes:
    lines = [
        f"{method} sip:peer@127.0.0.1:{sip_port} SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:{local_port};branch=z9hG4bK-media-{cseq}-{method}",
        f"From: <sip:test@127.0.0.1:{local_port}>;tag=media-test",
        to,
        "Call-ID: media-sipp-test",
        f"CSeq: {cseq} {method}",
        f"Contact: <sip:test@127.0.0.1:{local_port}>",
        "Max-Forwards: 70",
    ]
    if sdp:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(sdp)}")
    return ("\r\n".join(lines) + "\r\n\r\n" + sdp).encode()


async def recv_final(sock: socket.socket) -> str:
    loop = asyncio.get_running_loop()
    while True:
        msg = (await asyncio.wait_for(loop.sock_recv(sock, 65535), 5)).decode()
        if not msg.startswith("SIP/2.0 1"):
            return msg


@contextlib.asynccontextmanager
async def sipp_call(
    tmp_path: Path, media_actions: str, sip_port: int = SIP_PORT, media_port: int = MEDIA_PORT
) -> AsyncIterator[MediaSession]:
    """SIPp answers our INVITE, runs ``media_actions`` after the ACK; BYE on exit."""
    SIP_PORT, MEDIA_PORT = sip_port, media_port  # noqa: N806 (the module's defaults)
    if os.geteuid() != 0:
        pytest.fail("play_pcap_audio needs root (raw socket); run the suite as CI does")
    sipp = need_binary("sipp")
    scenario = tmp_path / "uas.xml"
    scenario.write_text(SCENARIO.replace("{media}", media_actions))
    proc = await asyncio.create_subprocess_exec(
        sipp, "-sf", str(scenario), "-i", "127.0.0.1", "-p", str(SIP_PORT),
        "-mi", "127.0.0.1", "-mp", str(MEDIA_PORT), "-m", "1", "-nostdin", "-timeout", "20",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    engine = MediaEngine()
    media = await MediaSession.open(engine)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    port = sock.getsockname()[1]
    try:
        await asyncio.sleep(0.3)  # SIPp binds its port
        sdp = (
            "v=0\r\no=test 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {media.local_port} RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"
        )
        to = f"To: <sip:peer@127.0.0.1:{SIP_PORT}>"
        sock.sendto(request("INVITE", 1, port, to, sdp, SIP_PORT), ("127.0.0.1", SIP_PORT))
        ok = await recv_final(sock)
        assert ok.startswith("SIP/2.0 200"), ok
        to = next(h for h in ok.split("\r\n") if h.startswith("To:"))
        # media starts with the answer, before our ACK sets SIPp's stream going
        media.start(("127.0.0.1", MEDIA_PORT), payload_type=0, dtmf_payload_type=101)
        media.record(tmp_path / "call.wav")
        sock.sendto(request("ACK", 1, port, to, "", SIP_PORT), ("127.0.0.1", SIP_PORT))
        yield media
        sock.sendto(request("BYE", 2, port, to, "", SIP_PORT), ("127.0.0.1", SIP_PORT))
        assert (await recv_final(sock)).startswith("SIP/2.0 200")
    finally:
        await media.close()
        sock.close()
        if proc.returncode is None:
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                proc.kill()
                await proc.wait()
    assert proc.returncode == 0


def loud_frames(wav: Path) -> npt.NDArray[np.bool_]:
    left = sf.read(wav, dtype="int16")[0][:, 0]
    frames = left[: len(left) // 160 * 160].reshape(-1, 160).astype(float)
    return np.sqrt((frames**2).mean(axis=1)) > 1000


async def test_sipp_tone_and_rfc4733_pcaps_arrive(tmp_path: Path) -> None:
    tone = tmp_path / "tone.ul"
    tone.write_bytes(g711.ulaw_encode(beep(1000, 600, -10)))
    actions = f"""
  <nop><action><exec rtp_stream="{tone},1,0"/></action></nop>
  <pause milliseconds="1100"/>
  <nop><action><exec play_pcap_audio="{PCAPS}/dtmf_2833_7.pcap"/></action></nop>
  <pause milliseconds="500"/>
  <nop><action><exec play_pcap_audio="{PCAPS}/dtmf_2833_pound.pcap"/></action></nop>
"""
    digits = []
    async with sipp_call(tmp_path, actions) as media:

        async def two_digits() -> None:
            async for d in media.digits():
                digits.append(d)
                if len(digits) == 2:
                    return

        await asyncio.wait_for(two_digits(), 8)
        await asyncio.sleep(0.4)  # SIPp's triple end packets are in; nothing more may arrive
        stats = media.stats()
    assert [(d.digit, d.source) for d in digits] == [("7", "rfc4733"), ("#", "rfc4733")]
    assert stats.dtmf_received == 2
    assert media.remote_addr == ("127.0.0.1", MEDIA_PORT)
    assert 29 <= loud_frames(tmp_path / "call.wav").sum() <= 31  # the 600 ms tone, once
    left = sf.read(tmp_path / "call.wav", dtype="int16")[0][:, 0]
    spec = np.abs(np.fft.rfft(left.astype(float)))
    assert np.argmax(spec) * 8000 / len(left) == pytest.approx(1000, abs=10)


async def test_sipp_alaw_pcap_in_30_ms_packets_plays_out_whole(tmp_path: Path) -> None:
    """Debian's g711a.pcap: 236 A-law packets of 30 ms, although we asked for μ-law/20 ms."""
    actions = f"""
  <nop><action><exec play_pcap_audio="{PCAPS}/g711a.pcap"/></action></nop>
  <pause milliseconds="7400"/>
"""
    async with sipp_call(tmp_path, actions) as media:
        await asyncio.sleep(7.6)
        stats = media.stats()
    assert stats.packets_received == 236
    assert stats.packets_lost == 0 and stats.late_packets == 0 and stats.malformed == 0
    assert stats.concealed_ms <= 60  # at most the edges of the stream
    played = loud_frames(tmp_path / "call.wav")
    # 236 x 30 ms = 7.08 s of audio, heard as 354 frames of 20 ms (speech has pauses)
    assert 100 <= played.sum() <= 354


async def test_sipp_inband_dtmf_from_rtp_stream(tmp_path: Path) -> None:
    keys = tmp_path / "keys.ul"
    keys.write_bytes(g711.ulaw_encode(dtmf("159#", on_ms=80, off_ms=80)))
    actions = f"""
  <nop><action><exec rtp_stream="{keys},1,0"/></action></nop>
  <pause milliseconds="1200"/>
"""
    async with sipp_call(tmp_path, actions) as media:
        got = []

        async def four() -> None:
            async for d in media.digits():
                got.append(d)
                if len(got) == 4:
                    return

        await asyncio.wait_for(four(), 6)
        await asyncio.sleep(1.0)  # SIPp's stream plays in a pause: BYE only after it
        stats = media.stats()
    assert [(d.digit, d.source) for d in got] == [(k, "inband") for k in "159#"]
    assert stats.dtmf_received == 4
