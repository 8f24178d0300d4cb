"""Webhooks: tree webhooks and call status callbacks over HTTP, never holding a call.

Every tree webhook request has a timeout, a bounded number of retries with a short
backoff, and an optional fallback URL tried when the primary never answers; "no answer"
is status 0, which the dialogue engine routes to ``on_failure``.

Status callbacks (initiated, ringing, answered, completed — Twilio's vocabulary) go to an
:class:`EventSink` when there is one: ``autocall call`` and ``serve`` give them the
store's outbox, so each is committed at once and delivered, signed and retried for
hours, by the outbox's worker; a kill -9 loses none. Without a sink (a caller with no
store) they are fire-and-forget tasks held in memory: a dead receiver costs the call
nothing, and none is lost without a log line naming it (refused, or still waiting at
:meth:`StatusCallbacks.drain`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any, Protocol

import httpx

__all__ = ["EventSink", "StatusCallbacks", "WebhookClient"]

log = logging.getLogger(__name__)

_BACKOFF = 0.2


class WebhookClient:
    """POSTs JSON with timeout, retries and a fallback URL; returns ``(status, body)``."""

    def __init__(self, fallback_url: str | None = None,
                 client: httpx.AsyncClient | None = None) -> None:
        self.fallback_url = fallback_url
        self._client = client

    async def post(self, url: str, payload: dict[str, Any], *, timeout: float = 5.0,
                   retries: int = 1, headers: Mapping[str, str] | None = None
                   ) -> tuple[int, Any]:
        status, body = await self._try(url, payload, timeout, retries, headers)
        if status == 0 and self.fallback_url and self.fallback_url != url:
            # the fallback is the operator's URL: the tree's headers (its secrets) stay home
            status, body = await self._try(self.fallback_url, payload, timeout, 0, None)
        return status, body

    async def _try(self, url: str, payload: dict[str, Any], timeout: float,
                   retries: int, headers: Mapping[str, str] | None = None
                   ) -> tuple[int, Any]:
        last_status, last_body = 0, None
        for attempt in range(retries + 1):
            if attempt:
                await asyncio.sleep(_BACKOFF * 2 ** (attempt - 1))
            try:
                response = await self._send(url, payload, timeout, headers)
            except (httpx.HTTPError, OSError) as exc:
                log.info("webhook %s attempt %d: %s", url, attempt + 1, exc)
                continue
            last_status, last_body = response.status_code, _body(response)
            if response.status_code < 500:
                return last_status, last_body  # 2xx done; 4xx will not get better
        return last_status, last_body

    async def _send(self, url: str, payload: dict[str, Any], timeout: float,
                    headers: Mapping[str, str] | None = None) -> httpx.Response:
        if self._client is not None:
            return await self._client.post(url, json=payload, timeout=timeout,
                                           headers=headers)
        async with httpx.AsyncClient(timeout=timeout) as client:
            return await client.post(url, json=payload, headers=headers)


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


class EventSink(Protocol):
    """Where a status change goes durably (the store's outbox): ``type`` is
    ``call.<status>``, ``subject`` ``call:<Call-ID>``; returns once committed."""

    def add(self, type: str, subject: str, data: Mapping[str, object]) -> object: ...


class StatusCallbacks:
    """Status changes to ``url`` in order per call: into ``sink`` when given, else
    POSTed in the background."""

    def __init__(self, url: str | None, *, timeout: float = 3.0, retries: int = 1,
                 sink: EventSink | None = None) -> None:
        self.url = url
        self.timeout = timeout
        self.retries = retries
        self.sink = sink
        self._client = WebhookClient()
        self._tails: dict[str, asyncio.Task[None]] = {}
        self._tasks: dict[asyncio.Task[None], dict[str, Any]] = {}  # task -> its payload
        self.undelivered = 0  # callbacks refused, never answered, or dropped at the end

    def send(self, call_id: str, status: str, **fields: Any) -> None:
        """Queue one callback; returns at once."""
        if not self.url:
            return
        payload = {"call_id": call_id, "status": status, "timestamp": time.time(), **fields}
        if self.sink is not None:
            try:
                self.sink.add(f"call.{status}", f"call:{call_id}", payload)
                return
            except Exception:  # noqa: BLE001 - the store failed: still try it from memory
                log.exception("status callback %r for call %s not written to the outbox; "
                              "sending it from memory", status, call_id)
        previous = self._tails.get(call_id)
        task = asyncio.ensure_future(self._post_after(previous, payload))
        self._tails[call_id] = task
        self._tasks[task] = payload
        task.add_done_callback(self._forget)
        if status == "completed":
            task.add_done_callback(lambda _t: self._tails.pop(call_id, None))

    async def _post_after(self, previous: asyncio.Task[None] | None,
                          payload: dict[str, Any]) -> None:
        if previous is not None:
            with contextlib.suppress(Exception):
                await previous
        assert self.url is not None
        code, _ = await self._client.post(self.url, payload, timeout=self.timeout,
                                          retries=self.retries)
        if not 200 <= code < 300:
            self.undelivered += 1
            why = f"answered {code}" if code else (
                f"no answer in {self.retries + 1} tries of {self.timeout:g} s")
            log.error("status callback %r for call %s not delivered to %s: %s",
                      payload["status"], payload["call_id"], self.url, why)

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)

    async def drain(self, timeout: float = 5.0) -> None:
        """Wait (bounded) for the callbacks still in flight, e.g. before exiting.

        Those still waiting after ``timeout`` are cancelled and each is logged as dropped.
        """
        if not self._tasks:
            return
        _, pending = await asyncio.wait(list(self._tasks), timeout=timeout)
        for task in pending:
            payload = self._tasks.get(task, {})
            self.undelivered += 1
            log.error("status callback %r for call %s dropped: %s had not accepted it %g s "
                      "after the call ended", payload.get("status"), payload.get("call_id"),
                      self.url, timeout)
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=1.0)
