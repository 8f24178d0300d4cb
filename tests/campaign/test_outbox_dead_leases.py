"""Events leased by a process that was killed are sent again at once by the next
deliverer on this host, not a lease (a minute) later; a live process's leases are
left alone (issue 15: webhook delivery through kill -9)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from outbox_receiver import Receiver

from autocall.campaign import outbox
from autocall.campaign.store import Store


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(secret=None)
    yield r
    r.stop()


def dead_pid() -> int:
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait(30)
    return done.pid


def node_of(pid: int) -> str:
    return f"{socket.gethostname()[:70]}:{pid}:0a1b2c3d"


async def test_leases_of_a_dead_process_are_sent_at_once_and_a_live_ones_wait(
        tmp_path: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    url = receiver.start()
    store = Store(f"sqlite:///{tmp_path / 'o.db'}")
    target = outbox.WebhookTarget(url=url)
    with store.engine.begin() as conn:
        for call in ("dead", "live"):
            for step in range(3):
                outbox.enqueue(conn, [target], "call.completed", f"call:{call}",
                               {"step": step})
    now = datetime.now(UTC)
    policy = outbox.Policy()  # leases of 60 s
    dead, live = node_of(dead_pid()), node_of(os.getpid())
    by_dead = outbox.lease(store.engine, dead, now, 1, policy)  # the head of call:dead
    by_live = outbox.lease(store.engine, live, now, 1, policy)  # and of call:live
    assert [r.subject for r in by_dead + by_live] == ["call:dead", "call:live"]

    stop = asyncio.Event()
    task = asyncio.create_task(outbox.deliver(store.engine, stop=stop, node="next",
                                              idle=0.02))
    began = time.monotonic()
    while len(receiver.accepted()) < 3:
        assert time.monotonic() - began < 10, receiver.arrivals
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)  # time for anything of call:live to be (wrongly) sent
    stop.set()
    await task
    got = receiver.accepted()
    assert [a.subject for a in got] == ["call:dead"] * 3  # in order, the leased one first
    assert [a.body["data"]["step"] for a in got] == [0, 1, 2]  # type: ignore[index]
    assert got[0].event_id == by_dead[0].event_id  # sent again under its own id
    pending = outbox.backlog(store.engine, pending=True)
    assert [r["subject"] for r in pending] == ["call:live"] * 3
    assert pending[0]["locked_by"] == live  # the live holder keeps its lease
    assert sum("leased by stopped process" in r.getMessage() for r in caplog.records) == 1
    store.close()
