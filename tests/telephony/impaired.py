"""SIPp callers into `autocall serve` with their RTP impaired on the way (issue 22).

:class:`ImpairingProxy` is a stateless SIP proxy (RFC 3261 §16.11) between the callers
and ``serve``: requests from the callers get its Via and go on to ``serve``; responses come
back through it, and the SDP answer in them has its audio port replaced by a per-call
:class:`~tests.impair.MediaRelay` that forwards the caller's RTP to ``serve``'s real port
through a seeded :class:`~tests.impair.Impairer`. So SIPp's ``rtp_stream`` and
``play_pcap_audio`` send to the relay without knowing it, and ``serve`` sees every packet
(the stray stream's too) come from one address, as from a caller's gateway. What ``serve``
sends the caller, and the requests it sends (its BYE) go straight to SIPp, unimpaired.

:func:`code_audio` makes the caller's audio: silence while the RFC 4733 digits "1234"
play from SIPp's pcaps, then in-band "5678"; :func:`code_scenario` the caller's scenario.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import hashlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, cast
from zoneinfo import ZoneInfo

import numpy as np

from autocall.audio import g711
from autocall.audio.tones import dtmf, silence
from autocall.campaign.store import Store
from tests.impair import Impairer, ImpairStats, MediaRelay, Profile, RelayLoop, judge, profile
from tests.peers import Sipp

HERE = Path(__file__).parent
SENT = "12345678"  # RFC 4733 1234 (SIPp's pcaps), then in-band 5678
CODE_TREE = """\
name: code
outcomes: [done]
start: ask
nodes:
  ask:
    gather: {prompt: "Code?", variable: code, min_digits: 1, max_digits: 8, terminator: null,
             first_timeout: 8, inter_timeout: 2, retries: 0}
    next: bye
    on_failure: bye
  bye: {hangup: done}
"""


def code_audio(path: Path) -> Path:
    """Headerless μ-law: 2 s of silence (the scenario plays the RFC 4733 digits 0.3-1.64 s
    after the ACK), "5678" at 100 ms on / 100 ms off at -10 dBm0, then 0.5 s of silence."""
    pcm = np.concatenate([silence(2000), dtmf(SENT[4:], on_ms=100, off_ms=100), silence(500)])
    path.write_bytes(g711.ulaw_encode(pcm))
    return path


def code_scenario(tmp: Path, name: str = "uac_code.xml") -> Path:
    """The caller scenario (or ``uas_code.xml``, the callee's) with its audio file filled in
    (SIPp keys do not reach <exec>)."""
    audio = code_audio(tmp / "code.ul")
    text = (HERE / "scenarios" / name).read_text()
    path = tmp / name
    path.write_text(text.replace("[code_ul]", str(audio)))
    return path


_AUDIO = re.compile(rb"^m=audio (\d+) ", re.MULTILINE)
_LENGTH = re.compile(rb"^(Content-Length|l)[ \t]*:[ \t]*\d+", re.MULTILINE | re.IGNORECASE)
_CALL_ID = re.compile(rb"^(?:Call-ID|i)[ \t]*:[ \t]*(\S+)", re.MULTILINE | re.IGNORECASE)
_VIA = re.compile(rb"^(?:Via|v)[ \t]*:[^\r\n]*\r\n", re.MULTILINE | re.IGNORECASE)
_BRANCH = re.compile(rb";branch=([^;\s,]+)", re.IGNORECASE)


@dataclass
class ImpairingProxy(asyncio.DatagramProtocol):
    """Stateless SIP proxy on ``listen`` that forwards requests to ``upstream``; impairs
    the RTP each call's SIPp side sends to the robot.

    ``rewrite`` says where the robot's SDP is: in the ``responses`` (``serve`` is the
    upstream, SIPp callers send it requests) or in the ``requests`` (a dialer sends its
    INVITEs through the proxy to SIPp answering as ``upstream``). Relays take ports from
    ``media_ports`` (cycled) and close once no packet has reached them for ``idle``
    seconds; ``stats`` adds up their impairers' figures.
    Run it on a :class:`~tests.impair.RelayLoop`.
    """

    listen: tuple[str, int]
    upstream: tuple[str, int]
    profile: Profile
    seed: int
    media_ports: range
    rewrite: Literal["responses", "requests"] = "responses"
    idle: float = 3.0
    stats: ImpairStats = field(default_factory=ImpairStats)
    relays: dict[bytes, MediaRelay] = field(default_factory=dict)
    calls: int = 0

    def __post_init__(self) -> None:
        self._transport: asyncio.DatagramTransport | None = None
        self._next_port = 0
        self._sweeper: asyncio.Task[None] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._inbox: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()
        self._origin: dict[bytes, tuple[str, int]] = {}  # Call-ID: where its requests come from

    async def start(self) -> ImpairingProxy:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, local_addr=self.listen)
        self._sweeper = asyncio.create_task(self._sweep())
        self._worker = asyncio.create_task(self._work())
        return self

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, int]) -> None:
        self._inbox.put_nowait((data, (str(addr[0]), addr[1])))

    async def _work(self) -> None:
        """One message at a time, in arrival order: a retransmitted 200 OK finds the relay
        that its first copy opened."""
        while True:
            await self._handle(*await self._inbox.get())

    async def _handle(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self._transport is not None
        found = _CALL_ID.search(data)
        call_id = found.group(1) if found else b""
        if data.startswith(b"SIP/2.0 "):  # a response: drop our Via, send it back
            vias = list(_VIA.finditer(data))
            if not vias or b"z9hG4bK-imp-" not in vias[0].group(0):
                return
            top = vias[0].group(0)
            comma = top.find(b",")
            # SIPp's [last_Via:] folds the Vias into one header (RFC 3261 §7.3.1)
            keep = b"Via: " + top[comma + 1 :].lstrip() if comma >= 0 else b""
            data = data[: vias[0].start()] + keep + data[vias[0].end() :]
            dest = self._origin.get(call_id)
            if dest is None:
                return
            if self.rewrite == "responses" and _AUDIO.search(data):
                data = await self._relay_sdp(data)
            self._transport.sendto(data, dest)
        elif data.strip():  # a request: our Via on top, on upstream
            self._origin[call_id] = addr
            line_end = data.find(b"\r\n") + 2
            branch = _BRANCH.search(data)
            token = hashlib.sha1(branch.group(1) if branch else data).hexdigest()[:16]
            via = b"Via: SIP/2.0/UDP %s:%d;branch=z9hG4bK-imp-%s\r\n" % (
                self.listen[0].encode(),
                self.listen[1],
                token.encode(),
            )
            data = data[:line_end] + via + data[line_end:]
            if self.rewrite == "requests" and _AUDIO.search(data):
                data = await self._relay_sdp(data)
            self._transport.sendto(data, self.upstream)

    async def _relay_sdp(self, data: bytes) -> bytes:
        """The robot's SDP with its audio port replaced by this call's relay."""
        found = _CALL_ID.search(data)
        call_id = found.group(1) if found else b""
        audio = _AUDIO.search(data)
        assert audio is not None
        relay = self.relays.get(call_id)
        if relay is None:
            target = ("127.0.0.1", int(audio.group(1)))
            seed = self.seed * 1_000_003 + self.calls  # per call, reproducible from the run's
            relay = await self._open(target, Impairer(self.profile, seed))
            self.relays[call_id] = relay
            self.calls += 1
        head, sep, body = data.partition(b"\r\n\r\n")
        body = _AUDIO.sub(b"m=audio %d " % relay.port, body, count=1)
        head = _LENGTH.sub(b"Content-Length: %d" % len(body), head, count=1)
        return head + sep + body

    async def _open(self, target: tuple[str, int], impairer: Impairer) -> MediaRelay:
        for _ in range(len(self.media_ports)):
            port = self.media_ports[self._next_port % len(self.media_ports)]
            self._next_port += 1
            if any(r.port == port for r in self.relays.values()):
                continue
            try:
                return await MediaRelay.open(self.listen[0], port, target, impairer)
            except OSError:
                continue
        raise RuntimeError(f"no free relay port in {self.media_ports}")

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.idle / 3)
            now = loop.time()
            for call_id, relay in list(self.relays.items()):
                if relay.last_packet and now - relay.last_packet > self.idle:
                    self._retire(call_id)

    def _retire(self, call_id: bytes) -> None:
        relay = self.relays.pop(call_id)
        for packet in relay.impairer.drain():  # what a hold kept at the very end
            if relay.transport is not None:
                relay.transport.sendto(packet, relay.target)
        relay.close()
        s, total = relay.impairer.stats, self.stats
        total.received += s.received
        total.dropped += s.dropped
        total.duplicated += s.duplicated
        total.held += s.held
        total.stray += s.stray
        total.forwarded += s.forwarded
        total.max_lag_ms = max(total.max_lag_ms, s.max_lag_ms)

    async def stop(self) -> ImpairStats:
        """Close every relay and the proxy; the impairment figures of the whole run."""
        for task in (self._sweeper, self._worker):
            if task is not None:
                task.cancel()
        for call_id in list(self.relays):
            self._retire(call_id)
        if self._transport is not None:
            self._transport.close()
        return self.stats


@dataclass
class Tally:
    """Stored codes judged against what the callers sent."""

    calls: int = 0
    exact: int = 0
    short: int = 0
    wrong: int = 0
    examples: list[str] = field(default_factory=list)  # every wrong code, a few short ones

    def add(self, stored: str) -> None:
        verdict = judge(SENT, stored)
        self.calls += 1
        setattr(self, verdict, getattr(self, verdict) + 1)
        if verdict == "wrong" or (verdict == "short" and len(self.examples) < 8):
            self.examples.append(stored)

    def __str__(self) -> str:
        more = f" (e.g. {', '.join(repr(c) for c in self.examples)})" if self.examples else ""
        return (
            f"{self.calls} calls: {self.exact} exact, {self.short} short, {self.wrong} wrong{more}"
        )


def tally(rows: list[dict[str, Any]]) -> Tally:
    """The answered calls' stored codes (the gather's ``code`` variable), judged."""
    out = Tally()
    for row in rows:
        if row.get("answered_at"):
            out.add(str(row.get("variables", {}).get("code", "")))
    return out


@contextmanager
def impaired_front(
    listen: tuple[str, int],
    upstream: tuple[str, int],
    profile: Profile,
    seed: int,
    media_ports: range,
    rewrite: Literal["responses", "requests"] = "responses",
) -> Iterator[ImpairingProxy]:
    """The proxy and its relays on a thread of their own; stopped (relays drained) on exit."""
    with RelayLoop().running() as loop:
        proxy = ImpairingProxy(listen, upstream, profile, seed, media_ports, rewrite=rewrite)
        loop.call(proxy.start)
        try:
            yield proxy
        finally:
            loop.call(proxy.stop)


def callers(
    tmp: Path,
    *,
    proxy_port: int,
    port: int,
    media_port: int,
    calls: int,
    rate: float,
    limit: int = 200,
    timeout: float = 120.0,
) -> Sipp:
    """SIPp placing ``calls`` code calls at ``rate`` per second through the proxy."""
    return Sipp(
        code_scenario(tmp),
        port=port,
        media_port=media_port,
        remote=f"127.0.0.1:{proxy_port}",
        service="code",
        calls=calls,
        rate=rate,
        timeout=timeout,
        cwd=tmp,
        extra=["-l", str(limit), "-cp", str(media_port + 6)],  # control port, not 8888
    )


# In-band digits play 2.0-2.8 s into each caller's stream (code_audio): a hold every ~3 s
# would miss them in most calls, so each call's first hold is aimed there.
IN_BAND = (1.9, 2.8)


def aimed(name: str) -> Profile:
    """The named profile (``a+b`` joins two), its first delay spike, if it has spikes,
    aimed at the in-band digits."""
    chosen = profile(name)
    return replace(chosen, first_spike_s=IN_BAND) if chosen.spike_ms else chosen


# ---- a campaign that calls SIPp callees pressing the code --------------------------------
CAMPAIGN = """\
name: {name}
tree: tree.yaml
contacts: [contacts.csv]
columns: {{phone: phone, timezone: timezone}}
default_region: US
caller_ids: ["+12025550100"]
window: {{days: [mon, tue, wed, thu, fri, sat, sun], start: "09:00", end: "20:00"}}
channels: {channels}
calls_per_second: {rate}
ring_timeout: 10
retry: {{max_attempts: 1}}
recording: false
"""


def open_zone(now: dt.datetime) -> str:
    """A time zone where it is daytime now (the calling window is checked per contact)."""
    for zone in [
        "America/New_York",
        "America/Los_Angeles",
        "Europe/Berlin",
        "Asia/Tokyo",
        "Australia/Sydney",
        "Pacific/Honolulu",
    ]:
        if 10 <= now.astimezone(ZoneInfo(zone)).hour < 19:
            return zone
    return "UTC"


def write_campaign(work: Path, name: str, calls: int, rate: float) -> Path:
    """Tree, ``calls`` contacts and the campaign YAML in ``work``; the campaign file."""
    (work / "tree.yaml").write_text(CODE_TREE)
    zone = open_zone(dt.datetime.now(dt.UTC))
    with (work / "contacts.csv").open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["phone", "timezone"])
        for i in range(calls):  # 555-01xx..: fiction numbers (NANP), a second area past 10k
            out.writerow([f"+1{202 if i < 10000 else 312}555{i % 10000:04d}", zone])
    path = work / "campaign.yaml"
    channels = max(10, int(rate * 8))  # ~5 s calls: room for the rate
    path.write_text(CAMPAIGN.format(name=name, channels=channels, rate=rate))
    return path


def callees(
    tmp: Path,
    *,
    port: int,
    media_port: int,
    calls: int,
    timeout: float,
    extra: tuple[str, ...] = (),
) -> Sipp:
    """SIPp answering ``calls`` calls, each pressing the code (``uas_code.xml``)."""
    return Sipp(
        code_scenario(tmp, "uas_code.xml"),
        port=port,
        media_port=media_port,
        calls=calls,
        timeout=timeout,
        cwd=tmp,
        extra=["-cp", str(media_port + 6), *extra],
    )


def campaign_run(
    work: Path, campaign: Path, db: str, *, proxy_port: int, bind_port: int
) -> subprocess.Popen[bytes]:
    """``autocall campaign run`` as a child, its trunk the proxy; output in campaign.log."""
    env = {
        **os.environ,
        "PYTHONPATH": str(HERE.parents[1]),
        "AUTOCALL_SIP_HOST": "127.0.0.1",
        "AUTOCALL_SIP_PORT": str(proxy_port),
        "AUTOCALL_BIND_PORT": str(bind_port),
        "AUTOCALL_TTS_CACHE": str(work / "tts"),
    }
    with (work / "campaign.log").open("wb") as log:
        return subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from autocall.cli import main; main()",
                "campaign",
                "run",
                str(campaign),
                "--db",
                db,
            ],
            cwd=work,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )


def campaign_tally(db: str, name: str) -> tuple[int, Tally]:
    """(attempts, the answered attempts' stored codes judged)."""
    store = Store(db)
    try:
        attempts = store.attempts(name)
    finally:
        store.close()
    out = Tally()
    for a in attempts:
        if a.answered_at is not None:
            out.add(str(a.variables.get("code", "")))
    return len(attempts), out
