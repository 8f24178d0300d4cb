"""Virtual phones: scripted SIP callees on loopback for the demo and the tests.

They speak real SIP over UDP (RFC 3261) and real RTP (RFC 3550, G.711) with RFC 4733
telephone events, and they are written apart from ``autocall.sip`` on purpose: the
dialer under test meets an independent implementation, as it would meet a desk phone.
Each number's behaviour comes from a script looked up by the user part of the
Request-URI, so a demo contact list maps straight onto answering, busy, declining,
silent, digit-pressing and early-hanging-up callees.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import os
import re
import struct
import time
from collections import deque
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from autocall.audio import g711, tones
from autocall.signals import cancelled

__all__ = ["Behaviour", "PhoneScript", "VirtualCallLog", "VirtualPhones"]

_FRAME = 160  # 20 ms of 8 kHz audio per RTP packet (RFC 3551 §4.5.14 default ptime)
_TICK = 0.02
_VOICE_RMS = 200.0
_COMPACT = {"v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact",
            "l": "content-length", "c": "content-type"}
_EVENT_CODES = {d: i for i, d in enumerate("0123456789*#ABCD")}  # RFC 4733 §3.2 table


class Behaviour(enum.StrEnum):
    """What a virtual phone does with an INVITE."""

    ANSWER = "answer"  # answer, listen, press the script's digits (if any)
    BUSY = "busy"  # 486 Busy Here
    NO_ANSWER = "no-answer"  # ring until cancelled
    DECLINE = "decline"  # 603 Decline
    HANGUP_EARLY = "hangup-early"  # answer, then BYE before the dialogue ends
    FAIL = "fail"  # 503 Service Unavailable


@dataclass(frozen=True)
class PhoneScript:
    """One callee's behaviour.

    Digits are pressed one at a time, each once the robot's prompt has gone quiet (or
    after ``max_wait`` seconds), in-band as Q.23 tones or as RFC 4733 events.
    """

    behaviour: Behaviour = Behaviour.ANSWER
    digits: str = ""
    dtmf: str = "rfc4733"  # or "inband"
    ring_seconds: float = 0.3
    hangup_after: float = 1.0
    talk_limit: float = 30.0
    max_wait: float = 6.0
    quiet: float = 0.35

    def __post_init__(self) -> None:
        bad = [d for d in self.digits if d.upper() not in tones.DTMF_KEYS]
        if bad:
            raise ValueError(f"digits {self.digits!r}: {bad[0]!r} is not a DTMF key (0-9 * # A-D)")
        if self.dtmf not in ("rfc4733", "inband"):
            raise ValueError(f"dtmf {self.dtmf!r}: use 'rfc4733' or 'inband'")


@dataclass
class VirtualCallLog:
    """What happened on one virtual phone, for tests and the demo's narration."""

    number: str
    behaviour: Behaviour
    call_id: str
    started: float
    final_code: int | None = None
    answered_at: float | None = None
    ended_at: float | None = None
    hung_up_by: str | None = None  # "caller", "phone" or "cancel"
    digits_sent: str = ""
    packets_received: int = 0
    voiced_seconds: float = 0.0
    events_received: str = ""


# ---------------------------------------------------------------- SIP messages (sans-I/O)


@dataclass
class _Message:
    first_line: str
    headers: list[tuple[str, str]]
    body: bytes = b""

    @classmethod
    def parse(cls, data: bytes) -> _Message:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            raise ValueError("no blank line after the SIP headers")
        lines = head.decode("utf-8", "replace").split("\r\n")
        headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            if line[:1] in (" ", "\t") and headers:  # RFC 3261 §7.3.1 folding
                name, value = headers[-1]
                headers[-1] = (name, value + " " + line.strip())
                continue
            name, colon, value = line.partition(":")
            if not colon:
                raise ValueError(f"header line without a colon: {line!r}")
            key = name.strip().lower()
            headers.append((_COMPACT.get(key, key), value.strip()))
        msg = cls(lines[0], headers)
        length = msg.get("content-length")
        msg.body = rest[: int(length)] if length is not None else rest
        return msg

    def get(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def get_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name]

    @property
    def is_request(self) -> bool:
        return not self.first_line.startswith("SIP/")

    @property
    def method(self) -> str:
        return self.first_line.split(" ", 1)[0]

    @property
    def uri(self) -> str:
        return self.first_line.split(" ")[1]

    @property
    def status(self) -> int:
        return int(self.first_line.split(" ")[1])

    @property
    def cseq(self) -> tuple[int, str]:
        num, _, method = (self.get("cseq") or "0 ?").partition(" ")
        return int(num), method.strip()

    def encode(self) -> bytes:
        lines = [self.first_line]
        lines += [f"{_canonical(k)}: {v}" for k, v in self.headers if k != "content-length"]
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body


def _canonical(name: str) -> str:
    special = {"call-id": "Call-ID", "cseq": "CSeq", "www-authenticate": "WWW-Authenticate"}
    return special.get(name, "-".join(p.capitalize() for p in name.split("-")))


def _user_of(uri: str) -> str:
    match = re.search(r"sips?:([^@;>]+)@", uri)
    return match.group(1) if match else ""


def _uri_in(header: str) -> str:
    match = re.search(r"<([^>]+)>", header)
    return match.group(1) if match else header.split(";")[0].strip()


def _host_port(uri: str) -> tuple[str, int]:
    match = re.search(r"sips?:(?:[^@]+@)?([^:;>]+)(?::(\d+))?", uri)
    if not match:
        raise ValueError(f"cannot find a host in {uri!r}")
    return match.group(1), int(match.group(2) or 5060)


def _tag() -> str:
    return os.urandom(6).hex()


def _response(request: _Message, code: int, reason: str, to_tag: str,
              extra: list[tuple[str, str]] | None = None, body: bytes = b"") -> _Message:
    headers = [("via", v) for v in request.get_all("via")]
    to = request.get("to") or ""
    if code != 100 and ";tag=" not in to:
        to = f"{to};tag={to_tag}"
    headers += [("from", request.get("from") or ""), ("to", to),
                ("call-id", request.get("call-id") or ""), ("cseq", request.get("cseq") or "")]
    headers += extra or []
    return _Message(f"SIP/2.0 {code} {reason}", headers, body)


@dataclass(frozen=True)
class _Offer:
    host: str
    port: int
    codec: int
    event_pt: int


def _parse_offer(body: bytes) -> _Offer:
    text = body.decode("utf-8", "replace")
    conn = re.search(r"^c=IN IP4 (\S+)", text, re.M)
    media = re.search(r"^m=audio (\d+) RTP/S?AVP ([\d ]+)", text, re.M)
    if not conn or not media:
        raise ValueError("SDP offer without c= or m=audio (RFC 4566 §5.7, §5.14)")
    pts = [int(p) for p in media.group(2).split()]
    codec = next((p for p in pts if p in (0, 8)), None)
    if codec is None:
        raise ValueError("SDP offer has neither PCMU (0) nor PCMA (8)")
    event = re.search(r"^a=rtpmap:(\d+) telephone-event/8000", text, re.M | re.I)
    return _Offer(conn.group(1), int(media.group(1)), codec, int(event.group(1)) if event else 101)


def _answer_sdp(host: str, port: int, offer: _Offer) -> bytes:
    name = "PCMU" if offer.codec == 0 else "PCMA"
    sid = int(time.time())
    lines = [
        "v=0", f"o=- {sid} {sid} IN IP4 {host}", "s=autocall-virtual-phone", f"c=IN IP4 {host}",
        "t=0 0", f"m=audio {port} RTP/AVP {offer.codec} {offer.event_pt}",
        f"a=rtpmap:{offer.codec} {name}/8000", f"a=rtpmap:{offer.event_pt} telephone-event/8000",
        f"a=fmtp:{offer.event_pt} 0-16", "a=ptime:20", "a=sendrecv",
    ]
    return ("\r\n".join(lines) + "\r\n").encode()


# ---------------------------------------------------------------- RTP media


class _Media(asyncio.DatagramProtocol):
    """One call's RTP: sends a 20 ms frame per clock tick, listens for the robot's voice."""

    def __init__(self, log: VirtualCallLog) -> None:
        self.log = log
        self.transport: asyncio.DatagramTransport | None = None
        self.remote: tuple[str, int] | None = None
        self.codec = 0
        self.event_pt = 101
        self.ssrc = int.from_bytes(os.urandom(4), "big")
        self.seq = int.from_bytes(os.urandom(2), "big")
        self.ts = int.from_bytes(os.urandom(4), "big")
        self.queue: deque[tuple[int, bytes, bool, int | None]] = deque()
        self.last_voice = 0.0
        self.last_press = 0.0
        self._last_event_ts: int | None = None
        self._encode: Callable[[npt.ArrayLike], bytes] = g711.ulaw_encode
        self._decode: Callable[[bytes], npt.NDArray[np.int16]] = g711.ulaw_decode

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def setup(self, offer: _Offer) -> None:
        self.remote = (offer.host, offer.port)
        self.codec, self.event_pt = offer.codec, offer.event_pt
        if offer.codec == 8:
            self._encode, self._decode = g711.alaw_encode, g711.alaw_decode

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) < 12 or data[0] >> 6 != 2:
            return
        self.log.packets_received += 1
        offset = 12 + 4 * (data[0] & 0x0F)
        if data[0] & 0x10 and len(data) >= offset + 4:  # header extension, RFC 3550 §5.3.1
            offset += 4 + 4 * int.from_bytes(data[offset + 2 : offset + 4], "big")
        pt = data[1] & 0x7F
        payload = data[offset:]
        if pt == self.codec and payload:
            samples = self._decode(payload).astype(np.float64)
            if float(np.sqrt(np.mean(samples * samples))) > _VOICE_RMS:
                self.last_voice = time.monotonic()
                self.log.voiced_seconds += len(payload) / 8000.0
        elif pt == self.event_pt and len(payload) >= 4 and payload[1] & 0x80:
            ts = int.from_bytes(data[4:8], "big")
            if ts != self._last_event_ts:  # the end packet comes three times (RFC 4733 §2.5.1.4)
                self._last_event_ts = ts
                keys = "0123456789*#ABCD"
                self.log.events_received += keys[payload[0]] if payload[0] < 16 else "?"

    def press(self, digit: str, mode: str) -> None:
        """Queue one key press: 100 ms of event (160 ms of tone), then 100 ms of silence.

        In-band keys are held longer than Q.24's 40 ms minimum, as a person's are, so a
        late or lost packet on a loaded machine does not cut a key below detection.
        """
        digit = digit.upper()
        if mode == "inband":
            tone = tones.dtmf(digit, on_ms=160, off_ms=0)
            for i in range(0, len(tone), _FRAME):
                self.queue.append((self.codec, self._encode(tone[i : i + _FRAME]), False, None))
        else:
            # RFC 4733 §2.5.1: updates with growing duration, marker on the first, end x3.
            code = _EVENT_CODES[digit]
            start = self.ts
            for n in range(1, 6):
                payload = struct.pack("!BBH", code, 10, n * _FRAME)
                self.queue.append((self.event_pt, payload, n == 1, start))
            end = struct.pack("!BBH", code, 0x80 | 10, 5 * _FRAME)
            for _ in range(3):
                self.queue.append((self.event_pt, end, False, start))
        silence = self._encode(np.zeros(_FRAME, dtype=np.int16))
        for _ in range(5):
            self.queue.append((self.codec, silence, False, None))
        self.last_press = time.monotonic()
        self.log.digits_sent += digit

    def tick(self) -> None:
        if self.transport is None or self.remote is None:
            return
        if self.queue:
            pt, payload, marker, ts = self.queue.popleft()
        else:
            silence = self._encode(np.zeros(_FRAME, np.int16))
            pt, payload, marker, ts = self.codec, silence, False, None
        header = struct.pack(
            "!BBHII", 0x80, (0x80 if marker else 0) | pt, self.seq, self.ts if ts is None else ts,
            self.ssrc,
        )
        self.seq = (self.seq + 1) & 0xFFFF
        self.ts = (self.ts + _FRAME) & 0xFFFFFFFF
        self.transport.sendto(header + payload, self.remote)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None


# ---------------------------------------------------------------- the phones


@dataclass
class _Dialog:
    invite: _Message
    source: tuple[str, int]
    script: PhoneScript
    log: VirtualCallLog
    to_tag: str = field(default_factory=_tag)
    last_response: _Message | None = None
    acked: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    final_sent: bool = False
    media: _Media | None = None
    task: asyncio.Task[None] | None = None
    bye_reply: asyncio.Future[int] | None = None


class VirtualPhones(asyncio.DatagramProtocol):
    """A bank of scripted callees behind one SIP port on 127.0.0.1.

    A number maps to one script, or to a list: the n-th call to it follows the n-th
    script (the last one repeats), so "busy, then answers" is a retry test.

    Example::

        book = {"+15550001": PhoneScript(Behaviour.ANSWER, digits="1")}
        async with VirtualPhones(book) as phones:
            target = phones.uri("+15550001")   # sip:+15550001@127.0.0.1:<port>
    """

    def __init__(self, book: Mapping[str, PhoneScript | Sequence[PhoneScript]],
                 default: PhoneScript | None = None, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self.book = {k: (v,) if isinstance(v, PhoneScript) else tuple(v) for k, v in book.items()}
        self._dialed: dict[str, int] = {}
        self.default = default or PhoneScript(Behaviour.NO_ANSWER)
        self.host = host
        self.port = port
        self.calls: list[VirtualCallLog] = []
        self._transport: asyncio.DatagramTransport | None = None
        self._dialogs: dict[str, _Dialog] = {}
        self._clock: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._cseq = itertools.count(1)

    async def __aenter__(self) -> VirtualPhones:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def uri(self, number: str) -> str:
        return f"sip:{number}@{self.host}:{self.port}"

    def script_for(self, number: str) -> PhoneScript:
        """The script for this call to ``number``: the n-th call gets the n-th (last repeats)."""
        scripts = self.book.get(number) or self.book.get(number.lstrip("+"))
        if not scripts:
            return self.default
        n = self._dialed.get(number, 0)
        self._dialed[number] = n + 1
        return scripts[min(n, len(scripts) - 1)]

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: self, local_addr=(self.host, self.port)
        )
        self._transport = transport
        self.port = transport.get_extra_info("sockname")[1]
        self._clock = asyncio.create_task(self._run_clock())

    async def stop(self) -> None:
        """Hang up calls still up (BYE, waiting at most a second), then close everything."""
        up = [d for d in self._dialogs.values()
              if d.log.answered_at is not None and not d.ended.is_set()]
        if up:
            await asyncio.gather(*(self._bye(d, patience=1.0) for d in up),
                                 return_exceptions=True)
        for dialog in list(self._dialogs.values()):
            self._finish(dialog, dialog.log.hung_up_by or "phone")
        for task in list(self._tasks):
            task.cancel()
        await cancelled(self._clock)
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    async def _run_clock(self) -> None:
        """One deadline-driven 20 ms clock for every call's RTP (DESIGN.md §3)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        while True:
            deadline += _TICK
            for dialog in list(self._dialogs.values()):
                if dialog.media is not None and not dialog.ended.is_set():
                    dialog.media.tick()
            delay = deadline - loop.time()
            if delay < -0.2:  # fell far behind (loaded machine): resynchronise
                deadline = loop.time()
            await asyncio.sleep(max(0.0, delay))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _send(self, msg: _Message, addr: tuple[str, int]) -> None:
        if self._transport is not None:
            self._transport.sendto(msg.encode(), addr)

    # -- incoming

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if data.strip() == b"":
            return  # keep-alive (RFC 5626 §3.5.1)
        try:
            msg = _Message.parse(data)
        except ValueError:
            return
        call_id = msg.get("call-id") or ""
        dialog = self._dialogs.get(call_id)
        if not msg.is_request:
            reply = dialog.bye_reply if dialog is not None else None
            final = msg.status >= 200 and msg.cseq[1] == "BYE"
            if reply is not None and final and not reply.done():
                reply.set_result(msg.status)
            return
        method = msg.method
        if method == "INVITE":
            self._on_invite(msg, addr, dialog)
        elif method == "ACK":
            if dialog is not None:
                dialog.acked.set()
        elif method == "CANCEL":
            self._send(_response(msg, 200, "OK", dialog.to_tag if dialog else _tag()), addr)
            if dialog is not None and not dialog.final_sent:
                self._final(dialog, 487, "Request Terminated")
                self._finish(dialog, "cancel")
        elif method == "BYE":
            if dialog is None:
                self._send(_response(msg, 481, "Call/Transaction Does Not Exist", _tag()), addr)
                return
            self._send(_response(msg, 200, "OK", dialog.to_tag), addr)
            self._finish(dialog, "caller")
        elif method in ("OPTIONS", "INFO", "NOTIFY", "UPDATE"):
            self._send(_response(msg, 200, "OK", dialog.to_tag if dialog else _tag()), addr)
        else:
            allow = [("allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, NOTIFY, UPDATE")]
            self._send(_response(msg, 501, "Not Implemented", _tag(), allow), addr)

    def _on_invite(self, msg: _Message, addr: tuple[str, int], dialog: _Dialog | None) -> None:
        if dialog is not None:
            if dialog.last_response is not None:  # retransmitted INVITE (RFC 3261 §17.2.1)
                self._send(dialog.last_response, addr)
            return
        number = _user_of(msg.uri)
        script = self.script_for(number)
        log = VirtualCallLog(number, script.behaviour, msg.get("call-id") or "", time.monotonic())
        self.calls.append(log)
        dialog = _Dialog(msg, addr, script, log)
        self._dialogs[log.call_id] = dialog
        self._send(_response(msg, 100, "Trying", dialog.to_tag), addr)
        self._spawn(self._run_invite(dialog))

    def _reply(self, dialog: _Dialog, code: int, reason: str,
               extra: list[tuple[str, str]] | None = None, body: bytes = b"") -> None:
        response = _response(dialog.invite, code, reason, dialog.to_tag, extra, body)
        dialog.last_response = response
        self._send(response, dialog.source)

    def _final(self, dialog: _Dialog, code: int, reason: str,
               extra: list[tuple[str, str]] | None = None, body: bytes = b"") -> None:
        dialog.final_sent = True
        dialog.log.final_code = code
        self._reply(dialog, code, reason, extra, body)
        self._spawn(self._retransmit_until_ack(dialog))

    async def _retransmit_until_ack(self, dialog: _Dialog) -> None:
        """Timer G doubling from T1 up to T2 until the ACK, giving up at 64*T1 (§17.2.1)."""
        interval, waited = 0.5, 0.0
        while waited < 32.0:
            try:
                await asyncio.wait_for(dialog.acked.wait(), interval)
                return
            except TimeoutError:
                waited += interval
                interval = min(interval * 2, 4.0)
                if dialog.last_response is not None and dialog.log.hung_up_by != "caller":
                    self._send(dialog.last_response, dialog.source)
        if dialog.log.final_code == 200:
            self._finish(dialog, "phone")  # no ACK: the call never really started

    async def _run_invite(self, dialog: _Dialog) -> None:
        script = dialog.script
        contact = [("contact", f"<sip:{dialog.log.number or 'phone'}@{self.host}:{self.port}>")]
        if script.behaviour == Behaviour.BUSY:
            await asyncio.sleep(min(script.ring_seconds, 0.1))
            self._final(dialog, 486, "Busy Here")
            self._finish(dialog, None)
            return
        self._reply(dialog, 180, "Ringing", contact)
        if script.behaviour == Behaviour.NO_ANSWER:
            return  # rings until the caller cancels
        await asyncio.sleep(script.ring_seconds)
        if dialog.ended.is_set():
            return
        if script.behaviour in (Behaviour.DECLINE, Behaviour.FAIL):
            code, reason = (603, "Decline") if script.behaviour == Behaviour.DECLINE else (
                503, "Service Unavailable")
            self._final(dialog, code, reason)
            self._finish(dialog, None)
            return
        try:
            offer = _parse_offer(dialog.invite.body)
        except ValueError:
            self._final(dialog, 488, "Not Acceptable Here")
            self._finish(dialog, None)
            return
        loop = asyncio.get_running_loop()
        media = _Media(dialog.log)
        await loop.create_datagram_endpoint(lambda: media, local_addr=(self.host, 0))
        assert media.transport is not None
        media.setup(offer)
        rtp_port = media.transport.get_extra_info("sockname")[1]
        dialog.media = media
        headers = contact + [("content-type", "application/sdp")]
        self._final(dialog, 200, "OK", headers, _answer_sdp(self.host, rtp_port, offer))
        dialog.log.answered_at = time.monotonic()
        media.last_press = time.monotonic()
        dialog.task = asyncio.current_task()
        await self._run_script(dialog)

    async def _run_script(self, dialog: _Dialog) -> None:
        script, media = dialog.script, dialog.media
        assert media is not None
        if script.behaviour == Behaviour.HANGUP_EARLY:
            if not await self._ended_within(dialog, script.hangup_after):
                await self._bye(dialog)
            return
        for digit in script.digits:
            deadline = time.monotonic() + script.max_wait
            while time.monotonic() < deadline and not dialog.ended.is_set():
                now = time.monotonic()
                heard = media.last_voice > media.last_press
                if heard and now - media.last_voice >= script.quiet:
                    break
                await asyncio.sleep(0.05)
            if dialog.ended.is_set():
                return
            media.press(digit, script.dtmf)
            await asyncio.sleep(0.2)
            media.last_press = time.monotonic()
        if not await self._ended_within(dialog, script.talk_limit):
            await self._bye(dialog)

    async def _ended_within(self, dialog: _Dialog, seconds: float) -> bool:
        try:
            await asyncio.wait_for(dialog.ended.wait(), seconds)
            return True
        except TimeoutError:
            return False

    async def _bye(self, dialog: _Dialog, patience: float = 12.0) -> None:
        """Hang up from the phone's side: BYE within the dialog (RFC 3261 §15.1.1)."""
        invite = dialog.invite
        target = _uri_in(invite.get("contact") or invite.get("from") or "")
        routes = invite.get_all("record-route")
        dest = dialog.source if routes else _host_port(target)
        headers = [
            ("via", f"SIP/2.0/UDP {self.host}:{self.port};branch=z9hG4bK{_tag()};rport"),
            ("max-forwards", "70"),
            ("from", f"{invite.get('to')};tag={dialog.to_tag}"),
            ("to", invite.get("from") or ""),
            ("call-id", dialog.log.call_id),
            ("cseq", f"{next(self._cseq)} BYE"),
        ]
        headers += [("route", r) for r in routes]
        bye = _Message(f"BYE {target} SIP/2.0", headers)
        dialog.bye_reply = asyncio.get_running_loop().create_future()
        self._finish(dialog, "phone")
        interval, waited = 0.5, 0.0
        while waited < patience:  # Timer E retransmissions (§17.1.2.2), bounded for a test peer
            self._send(bye, dest)
            step = min(interval, patience - waited)
            try:
                await asyncio.wait_for(asyncio.shield(dialog.bye_reply), step)
                return
            except TimeoutError:
                waited += step
                interval = min(interval * 2, 4.0)

    def _finish(self, dialog: _Dialog, by: str | None) -> None:
        if dialog.ended.is_set():
            return
        dialog.ended.set()
        dialog.log.ended_at = time.monotonic()
        if dialog.log.hung_up_by is None:
            dialog.log.hung_up_by = by
        if dialog.media is not None:
            media = dialog.media
            # Keep the socket a moment so a late packet is not answered with ICMP.
            asyncio.get_running_loop().call_later(0.5, media.close)
        asyncio.get_running_loop().call_later(40.0, self._dialogs.pop, dialog.log.call_id, None)
