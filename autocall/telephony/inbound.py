"""The inbound robot: answer calls with a prompt tree, safely.

An open SIP port is attacked within minutes, so the server refuses before it answers:
sources outside the allow-list get 403, calls beyond the concurrency limit get 503
(RFC 3261 §21.5.4, with Retry-After), and a shutting-down server gets 503 too. The
toll-fraud guard sits between the tree and the call: a transfer may only reach the
tree's own ``transfer_targets``, whatever the engine or a template asks for. Every
call, refused or answered, leaves one call record (DESIGN.md §4) as a JSON line.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from autocall.dialogue.schema import Tree, allowed_transfer_targets
from autocall.files import private_file
from autocall.telephony.call import Call
from autocall.telephony.record import (
    CallRecord,
    CallStatus,
    Unfinished,
    UnfinishedCalls,
    build,
)
from autocall.telephony.runner import AudioCache, CallRunner, RunnerCall, RunResult
from autocall.telephony.webhooks import StatusCallbacks, WebhookClient

__all__ = ["AllowList", "GuardedCall", "InboundServer", "TransferRefused"]

log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TransferRefused(PermissionError):
    """A transfer target outside the tree's ``transfer_targets`` (toll-fraud guard)."""


class AllowList:
    """Source networks allowed to call in; empty means everyone."""

    def __init__(self, networks: Iterable[str] = ()) -> None:
        self.networks: list[Network] = []
        for text in networks:
            try:
                self.networks.append(ipaddress.ip_network(text.strip(), strict=False))
            except ValueError as exc:
                raise ValueError(f"--allow {text!r}: not an address or network ({exc})") from exc

    def permits(self, host: str | None) -> bool:
        if not self.networks:
            return True
        if host is None:
            return False
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(addr in net for net in self.networks)


class GuardedCall:
    """A call's blind transfers, checked against the tree's allowed targets (the
    ``transfer`` a :class:`CallRunner` uses instead of the call's own)."""

    def __init__(self, call: RunnerCall, allowed: set[str]) -> None:
        self._call = call
        self.allowed = allowed
        self.refused: list[str] = []

    async def transfer(self, target: str) -> int:
        if target not in self.allowed:
            self.refused.append(target)
            log.warning("refused transfer to %s: not in the tree's transfer_targets", target)
            raise TransferRefused(f"{target} is not an allowed transfer target")
        return await self._call.transfer(target)


def source_host(call: Call) -> str | None:
    """The host the INVITE says it came from (its top Via's sent-by)."""
    via = call.session.usage.invite.headers.get("Via") or ""
    sent_by = via.split()[1] if len(via.split()) > 1 else ""
    return sent_by.split(";")[0].rsplit(":", 1)[0] or None


@dataclass
class InboundServer:
    """Runs ``tree`` on each inbound call of a ``telephony.call.UserAgent``.

    Use ``ua = await UserAgent.start(..., on_call=server.on_call)``; ``await
    server.drain()`` on shutdown refuses new calls and waits for the running ones.
    """

    tree: Tree
    records: Path
    max_calls: int = 50
    allow: AllowList = field(default_factory=AllowList)
    audio: AudioCache = field(default_factory=lambda: AudioCache(Path(".autocall/tts-cache")))
    recordings_dir: Path = Path("recordings")
    webhooks: WebhookClient = field(default_factory=WebhookClient)
    callbacks: StatusCallbacks = field(default_factory=lambda: StatusCallbacks(None))
    variables: dict[str, str] = field(default_factory=dict)
    on_record: Callable[[CallRecord], object] | None = None
    node: str | None = None  # this process, in records written at answer
    speech_model: object | None = None  # a vosk model (asr.load_model)
    active: int = 0
    served: int = 0
    refused: int = 0
    closing: bool = False

    def __post_init__(self) -> None:
        self.allowed_targets = allowed_transfer_targets(self.tree)
        self._tasks: set[asyncio.Task[None]] = set()
        self._running: dict[asyncio.Task[None], Call] = {}
        self._cut: set[int] = set()
        """ids of calls the drain timeout cut: recorded canceled, never completed."""
        self._lock = asyncio.Lock()
        self._unfinished = UnfinishedCalls()

    async def on_call(self, call: Call) -> None:
        """The UA's ``on_call`` hook: refuse or accept at once, run the tree in a task."""
        host = source_host(call)
        if not self.allow.permits(host):
            await self._refuse(call, 403, f"source {host} is not on the allow-list")
            return
        if self.closing:
            await self._refuse(call, 503, "shutting down")
            return
        if self.active >= self.max_calls:
            await self._refuse(call, 503, f"all {self.max_calls} lines busy")
            return
        problem = call.offer_problem()
        if problem is not None:  # RFC 3261 §21.4.26, before it rings
            await self._refuse(call, 488, f"unusable SDP offer: {problem}")
            return
        self.active += 1
        task = asyncio.ensure_future(self._serve(call))
        self._tasks.add(task)
        self._running[task] = call
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda t: self._running.pop(t, None))

    async def _refuse(self, call: Call, code: int, why: str) -> None:
        self.refused += 1
        log.info("refused %s with %d: %s", call.remote, code, why)
        reason = {503: "Service Unavailable", 488: "Not Acceptable Here"}.get(code)
        with contextlib.suppress(Exception):
            await call.reject(code, reason)
        self._write(call, None, time.time(), error=why)

    async def _serve(self, call: Call) -> None:
        started = time.time()
        run: RunResult | None = None
        error: str | None = None
        key = call.call_id
        live: Unfinished | None = None
        try:
            self.callbacks.send(key, "ringing", caller=call.remote)
            await call.answer()
            self.callbacks.send(key, "answered")
            if self.on_record is not None:  # written at answer, then as digits come
                live = self._unfinished.add(Unfinished(
                    lambda: self._record(call, None, started, unfinished=True),
                    self.on_record))
            caller = _user(call.remote)
            facts = {"caller": caller, "number": caller, "call_id": key}
            guarded = GuardedCall(call, self.allowed_targets)
            runner = CallRunner(call, self.tree, {**self.variables, **facts}, audio=self.audio,
                                recordings_dir=self.recordings_dir, webhooks=self.webhooks,
                                call_facts=facts, speech_model=self.speech_model,
                                transfer=guarded.transfer)
            if live is not None:
                live.dialogue = runner.engine
            run = await runner.run()
            if guarded.refused:
                error = "refused transfer to " + ", ".join(guarded.refused)
        except Exception as exc:  # one broken call must not take the server down
            log.exception("inbound call failed")
            error = f"{type(exc).__name__}: {exc}"
        finally:
            if live is not None:
                self._unfinished.discard(live)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(call.hangup(), 5.0)
            with contextlib.suppress(Exception):
                await call.wait_ended(5.0)
            self.active -= 1
            self.served += 1
            cut = id(call) in self._cut
            if cut:
                error = error or "cut by the drain timeout while shutting down"
            self.callbacks.send(key, "completed", outcome=run.outcome if run else None)
            self._write(call, run, started, error=error,
                        status=CallStatus.CANCELED if cut else None)

    def _record(self, call: Call, run: RunResult | None, started: float,
                error: str | None = None, status: CallStatus | None = None,
                unfinished: bool = False) -> CallRecord:
        return build(call, run, started=datetime.fromtimestamp(started, UTC), status=status,
                     error=error, direction="inbound", number=_user(call.remote),
                     caller_id=call.remote, source=source_host(call), tree=self.tree.name,
                     node=self.node, unfinished=unfinished)

    def _write(self, call: Call, run: RunResult | None, started: float,
               error: str | None = None, status: CallStatus | None = None) -> None:
        record = self._record(call, run, started, error, status)
        line = {**record.as_json(), "from": record.caller_id, "outcome": record.dialogue_outcome}
        with private_file(self.records).open("a", encoding="utf-8") as fh:  # 0600: personal data
            fh.write(json.dumps(line, sort_keys=True, default=str) + "\n")
        if self.on_record is not None:
            self.on_record(record)

    async def drain(self, timeout: float = 60.0) -> int:
        """Refuse new calls and wait (bounded) for those in progress; returns how many were
        cut. Calls still running after ``timeout`` are hung up (BYE) and recorded as
        canceled with the reason in ``error``: a completed record would claim the tree ran
        to its end."""
        self.closing = True
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)
        left = [t for t in self._tasks if not t.done()]
        for task in left:
            call = self._running.get(task)
            if call is not None:
                self._cut.add(id(call))
            task.cancel()  # _serve's finally hangs up and writes the record
        if left:
            await asyncio.wait(left, timeout=15.0)  # hangup 5 s + wait_ended 5 s, bounded
        return len(left)


def _user(uri: str) -> str:
    text = uri.split("sip:", 1)[-1].split(";")[0].split(">")[0]
    return text.split("@")[0] if "@" in text else text
