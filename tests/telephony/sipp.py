"""SIPp scenarios written at test time, and a runner with a hard timeout.

The scenarios are short on purpose: each one checks one behaviour of our side, and
SIPp's exit code says whether the far end did what the scenario expects.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

_INVITE = """
  <send retrans="500">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:sipp@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=sipp 1 1 IN IP4 127.0.0.1
      s=-
      c=IN IP4 127.0.0.1
      t=0 0
      m=audio {rtp_port} RTP/AVP {codec} 101
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-16
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
"""

_ACK = """
  <send>
    <![CDATA[
      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
"""

_BYE = """
  <send retrans="500">
    <![CDATA[
      BYE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="200"/>
"""

_ANSWER_BYE = """
  <recv request="BYE"/>
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
"""


def uac_scenario(expect: int, *, rtp_port: int, talk_ms: int = 0, codec: int = 0,
                 far_end_hangs_up: bool = False) -> str:
    """INVITE, expect a final ``expect``; on 200 talk then BYE (or wait for the far end's)."""
    body = _INVITE.format(rtp_port=rtp_port, codec=codec)
    if expect == 200:
        body += '  <recv response="200" rtd="true"/>\n' + _ACK
        if far_end_hangs_up:
            body += _ANSWER_BYE
        else:
            body += f'  <pause milliseconds="{talk_ms}"/>\n' + _BYE
    else:
        body += f'  <recv response="{expect}"/>\n' + _ACK
    return f'<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="t">\n{body}</scenario>\n'


async def run_sipp(tmp: Path, scenario: str, target: str, service: str, port: int,
                   timeout: float = 20.0, extra: tuple[str, ...] = ()) -> tuple[int, str]:
    """Run one SIPp call; return its exit code and the tail of its error log."""
    sipp = shutil.which("sipp")
    if sipp is None:
        pytest.fail("sipp is not installed: run scripts/test.sh, which installs it")
    path = tmp / f"scenario-{service}-{port}.xml"
    path.write_text(scenario)
    proc = await asyncio.create_subprocess_exec(
        sipp, "-sf", str(path), "-s", service, target, "-i", "127.0.0.1", "-p", str(port),
        "-m", "1", "-timeout", f"{int(timeout)}s", "-timeout_error", "-nostdin", *extra,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, cwd=tmp,
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(), timeout + 5)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode or 0, err.decode(errors="replace")[-600:]
