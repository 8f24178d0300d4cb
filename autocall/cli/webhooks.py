"""``autocall webhooks``: deliver the outbox from a process of its own, and see its backlog.

``campaign run`` delivers its campaign's events itself; ``webhooks deliver`` is for what
is left when it stops, for a web node without a dialer, and for more delivery capacity
(several may run on one PostgreSQL store: leases keep them from sending an event twice).
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from datetime import timedelta
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from autocall.campaign import outbox
from autocall.campaign.dialer import default_node
from autocall.cli.campaign import DbOpt, JsonOpt, _open
from autocall.cli.safe_text import safe

webhooks_app = typer.Typer(help="Webhook events in the outbox: deliver them, list them.",
                           no_args_is_help=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


@webhooks_app.command()
def deliver(
    db: DbOpt = None,
    node: Annotated[str | None, typer.Option(
        "--node", help="This process's name in the leases (default: host:pid:random).")
    ] = None,
    max_age: Annotated[float, typer.Option(
        "--max-age-hours", min=0.01, help="Give an event up once it is this old.")] = 24.0,
    timeout: Annotated[float, typer.Option(
        "--timeout", min=0.1, max=300, help="Seconds to wait for a receiver's answer.")
    ] = 10.0,
) -> None:
    """Deliver due webhook events (signed, retried with backoff) until SIGINT/SIGTERM.

    Example: autocall webhooks deliver --db postgresql://dialer@db/autocall
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    store = _open(db)
    policy = outbox.Policy(max_age=timedelta(hours=max_age), timeout=timeout,
                           lease=timedelta(seconds=timeout + 30))
    name = node or default_node()

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        err.print(f"delivering webhook events as {safe(name)} (Ctrl-C stops)")
        return await outbox.deliver(store.engine, stop=stop, node=name, policy=policy)

    try:
        sent = asyncio.run(main())
    finally:
        store.close()
    err.print(f"{sent} event(s) delivered")


@webhooks_app.command("list")
def list_(
    db: DbOpt = None,
    pending: Annotated[bool, typer.Option(
        "--pending", help="Only events not yet delivered nor given up.")] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, max=100000)] = 1000,
    as_json: JsonOpt = False,
) -> None:
    """The outbox's events, oldest first: state, tries, last answer.

    Example: autocall webhooks list --pending --json
    """
    with _open(db) as store:
        rows = outbox.backlog(store.engine, pending=pending, limit=limit)
    if as_json:
        typer.echo(json.dumps(rows, default=str))
        return
    table = Table("event", "type", "subject", "url", "state", "tries", "last")
    for r in rows:
        state = ("delivered" if r["delivered_at"] else "given up" if r["given_up_at"]
                 else f"next {r['next_at']:%H:%M:%S}")
        last = str(r["last_status"] or "") + (f" {r['last_error']}" if r["last_error"] else "")
        table.add_row(*(safe(str(v)) for v in (r["event_id"], r["type"], r["subject"],
                                               r["url"], state, r["attempts"], last)))
    Console().print(table)
    if not rows:
        err.print("no events" + (" pending" if pending else ""))


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.add_typer(webhooks_app, name="webhooks")
