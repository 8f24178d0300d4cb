"""`autocall campaign …`: validate, import, run, steer, explain and report campaigns.

Every command takes ``--db URL`` (default ``AUTOCALL_DATABASE_URL`` or
``sqlite:///autocall.db``), so pause/stop from another terminal reach a running dialer
through the same store.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import json
import logging
import signal
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from autocall.campaign import report as rep
from autocall.campaign.contacts import ContactsError, import_campaign, read_contacts
from autocall.campaign.dialer import CallPlacer, explain, run_campaign
from autocall.campaign.dialer import Progress as DialProgress
from autocall.campaign.model import Campaign, CampaignError, CampaignState, load_campaign
from autocall.campaign.schedule import DncList, normalize
from autocall.campaign.store import Store, StoreError
from autocall.config import Settings
from autocall.media.heap import freeze_startup_heap

campaign_app = typer.Typer(
    help="Define, import, run and report dialing campaigns.\n\n"
    "Example: autocall campaign import campaigns/example.yaml && "
    "autocall campaign run spring-survey",
    no_args_is_help=True,
)

DEFAULT_PLACER = "autocall.campaign.placer:from_settings"

DbOpt = Annotated[str | None, typer.Option("--db", help="Store URL (SQLite file or PostgreSQL).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
NameArg = Annotated[str, typer.Argument(metavar="CAMPAIGN", help="Campaign name.")]

err = Console(stderr=True, highlight=False, soft_wrap=True)


def _db_url(db: str | None) -> str:
    return db or Settings.from_env().database_url


def _open(db: str | None) -> Store:
    try:
        return Store(_db_url(db))
    except Exception as exc:  # noqa: BLE001 - any connection problem is a usage error
        err.print(f"[red]error:[/red] cannot open store {_db_url(db)}: {exc}")
        raise typer.Exit(2) from None


def _load(path: Path) -> Campaign:
    try:
        return load_campaign(path)
    except CampaignError as exc:
        for line in exc.problems:
            err.print(f"[red]error:[/red] {line}")
        raise typer.Exit(2) from None


def _store_error(exc: StoreError) -> typer.Exit:
    err.print(f"[red]error:[/red] {exc}")
    return typer.Exit(2)


@campaign_app.command()
def validate(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="Campaign YAML.")],
    as_json: JsonOpt = False,
) -> None:
    """Check a campaign YAML and its contact lists without touching any store.

    Errors name file:line and field. Exit 0: valid; 1: the lists have rejected rows or a
    file is missing; 2: the YAML itself is invalid.

    Example: autocall campaign validate campaigns/example.yaml
    """
    try:
        campaign = load_campaign(file)
    except CampaignError as exc:
        if as_json:
            typer.echo(json.dumps({"ok": False, "problems": exc.problems}))
        else:
            for line in exc.problems:
                err.print(f"[red]error:[/red] {line}")
        raise typer.Exit(2) from None
    problems: list[str] = []
    seen: set[str] = set()
    contacts = 0
    needed = _tree_fields(campaign.tree, problems)
    for source in campaign.contacts:
        try:
            result = read_contacts(source, region=campaign.default_region,
                                   columns=campaign.columns,
                                   default_timezone=campaign.default_timezone, seen=seen)
        except ContactsError as exc:
            problems.append(str(exc))
            continue
        contacts += len(result.contacts)
        problems.extend(f"{r.source}:{r.row}: {r.reason}" for r in result.rejected)
        missing = [f for f in needed if f not in result.header]
        if missing:
            problems.append(f"{source}:1: no column for the tree's field(s) "
                            f"{', '.join(missing)} (headers: {', '.join(result.header)})")
    for path in campaign.dnc:
        if not Path(path).exists():
            problems.append(f"{path}: file not found")
    if as_json:
        typer.echo(json.dumps({"ok": not problems, "name": campaign.name,
                               "contacts": contacts, "problems": problems}))
    else:
        for line in problems:
            err.print(f"[yellow]problem:[/yellow] {line}")
        typer.echo(f"{campaign.name}: {contacts} contacts, {len(problems)} problem(s)")
    if problems:
        raise typer.Exit(1)


def _tree_fields(tree: str, problems: list[str]) -> list[str]:
    """The contact fields the prompt tree uses; its load errors go to ``problems``."""
    if not Path(tree).exists():
        problems.append(f"{tree}: prompt tree not found")
        return []
    from autocall.dialogue.loader import TreeError, load

    try:
        loaded = load(tree)
    except TreeError as exc:
        problems.extend(str(p) for p in exc.problems)
        return []
    return list(loaded.contact_fields or [])


@campaign_app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="Campaign YAML.")],
    db: DbOpt = None,
    rejects: Annotated[Path | None, typer.Option(
        "--rejects", help="Write rejected rows (source,row,reason) to this CSV.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Store a campaign and import its contact lists (E.164, time zones, dedupe).

    Bad rows are reported and skipped; importing again adds only new numbers.

    Example: autocall campaign import campaigns/example.yaml --rejects rejects.csv
    """
    campaign = _load(file)
    store = _open(db)
    try:
        result = import_campaign(store, campaign)
    except ContactsError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    finally:
        store.close()
    if rejects is not None:
        import csv

        with open(rejects, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(("source", "row", "reason"))
            writer.writerows((r.source, r.row, r.reason) for r in result.rejected)
    if as_json:
        typer.echo(json.dumps({"name": campaign.name, "added": result.added,
                               "duplicates": result.duplicates,
                               "rejected": [asdict(r) for r in result.rejected]}))
        return
    for r in result.rejected:
        err.print(f"[yellow]rejected:[/yellow] {r.source}:{r.row}: {r.reason}")
    typer.echo(f"{campaign.name}: {result.added} added, {result.duplicates} duplicates, "
               f"{len(result.rejected)} rejected")


PlacerFactory = Callable[[Settings], Any]


def _placer_factory(spec: str) -> PlacerFactory:
    """``MODULE:FACTORY``; the factory takes Settings and returns a placer, an awaitable
    of one, or an async context manager yielding one (to start and stop a SIP UA)."""
    module_name, _, attr = spec.partition(":")
    try:
        factory: PlacerFactory = getattr(importlib.import_module(module_name),
                                         attr or "from_settings")
    except (ImportError, AttributeError) as exc:
        err.print(f"[red]error:[/red] no call placer {spec!r} ({exc}); "
                  "pass --placer MODULE:FACTORY")
        raise typer.Exit(2) from None
    return factory


async def _enter_placer(stack: contextlib.AsyncExitStack, factory: PlacerFactory) -> CallPlacer:
    made = factory(Settings.from_env())
    if hasattr(made, "__aenter__"):
        placer: CallPlacer = await stack.enter_async_context(made)
        return placer
    if inspect.isawaitable(made):
        made = await made
    close = getattr(made, "aclose", None)
    if close is not None:
        stack.push_async_callback(close)
    return made


@campaign_app.command()
def run(
    campaign: Annotated[str, typer.Argument(
        metavar="CAMPAIGN", help="Campaign name in the store, or a YAML file (imported first).")],
    db: DbOpt = None,
    node: Annotated[str | None, typer.Option(
        "--node", help="This dialer's name (default: host:pid:random). Unique per "
        "process: a restart under the same name resolves its calls left open.")] = None,
    placer: Annotated[str, typer.Option(
        "--placer", help="MODULE:FACTORY returning the call placer.")] = DEFAULT_PLACER,
    wait: Annotated[bool, typer.Option(
        "--wait/--exit-when-done", help="Keep running when no contact is left.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Dial a campaign with a live progress display until it completes or is stopped.

    Ctrl-C or SIGTERM stops new calls and lets calls in flight end (exit 0); a second
    one hangs them up at once and records them as interrupted (exit 130 or 143).
    Pause, resume and stop work from another terminal with the same --db.

    Example: autocall campaign run spring-survey --db sqlite:///autocall.db
    """
    store = _open(db)
    try:
        if campaign.endswith((".yaml", ".yml")) and Path(campaign).exists():
            model = _load(Path(campaign))
            import_campaign(store, model)
            name = model.name
        else:
            name = campaign
            store.campaign(name)
    except StoreError as exc:
        store.close()
        raise _store_error(exc) from None
    factory = _placer_factory(placer)
    # The dialer says once when the store goes away and comes back; stamina's line per
    # retry would fill the terminal during an outage.
    logging.getLogger("stamina").setLevel(logging.ERROR)
    freeze_startup_heap()  # the store, models and libraries stay: keep GC passes short
    try:
        final, code = asyncio.run(_run(name, store, factory, node, wait, as_json))
    except StoreError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps(asdict(final), default=str))
    else:
        typer.echo(f"{name}: {final.state.value}; {final.dialed} dialed, {final.answered} "
                   f"answered, {final.done}/{final.total} contacts done")
    if code:
        raise typer.Exit(code)


class _Signals:
    """SIGINT and SIGTERM (systemd, container runtimes) stop a run the same way: the
    first stops new calls and lets calls in flight end (their records are written);
    a second hangs them up at once and still writes their records."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.received: list[signal.Signals] = []
        self.force = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        self.received.append(sig)
        if len(self.received) == 1:
            err.print(f"{sig.name}: no new calls; letting calls in flight end "
                      "(send it again to hang them up now)")
        else:
            self.force.set()

    def stopping(self) -> bool:
        return bool(self.received)

    def close(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.loop.remove_signal_handler(sig)


async def _run(name: str, store: Store, factory: PlacerFactory, node: str | None, wait: bool,
               quiet: bool) -> tuple[DialProgress, int]:
    """Dial; returns the final progress and the exit code (128 + signal if forced)."""
    signals = _Signals(asyncio.get_running_loop())
    try:
        async with contextlib.AsyncExitStack() as stack:
            placer = await _enter_placer(stack, factory)
            final = await _dial(name, store, placer, node, wait, quiet, signals)
    finally:
        signals.close()
    code = 128 + signals.received[-1].value if signals.force.is_set() else 0
    return final, code


async def _dial(name: str, store: Store, placer: CallPlacer, node: str | None, wait: bool,
                quiet: bool, signals: _Signals) -> DialProgress:
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[detail]}"), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), disable=quiet) as bar:
        task = bar.add_task(name, total=None, detail="starting")

        def show(p: DialProgress) -> None:
            detail = (f"dialed {p.dialed} · answered {p.answered} · in progress "
                      f"{p.in_progress} · waiting {p.waiting} · not completed {p.failed}")
            if p.idle:
                detail += f" · [yellow]{p.idle}[/yellow]"
            bar.update(task, completed=p.done, total=p.total or None,
                       description=f"{name} ({p.state.value})", detail=detail)

        return await run_campaign(name, store, placer, node=node, progress=show,
                                  stop=signals.stopping, force=signals.force,
                                  exit_when_idle=not wait)


@campaign_app.command()
def status(name: NameArg, db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """Show a campaign's state, contact counts and what each dialer node is doing.

    Example: autocall campaign status spring-survey --json
    """
    store = _open(db)
    try:
        s = store.summary(name, datetime.now(UTC))
    except StoreError as exc:
        raise _store_error(exc) from None
    finally:
        store.close()
    data: dict[str, Any] = {
        "name": name, "state": s.state.value, "reason": s.state_reason, "contacts": s.total,
        "pending": s.pending, "due": s.due, "in_flight": s.in_flight, "done": s.done,
        "waiting": s.waiting, "next_due": s.next_due.isoformat() if s.next_due else None,
        "outcomes": s.outcomes, "attempts": s.attempts, "answered": s.answered,
        "nodes": [{**n, "heartbeat": n["heartbeat"].isoformat()} for n in s.nodes],
    }
    if as_json:
        typer.echo(json.dumps(data))
        return
    table = Table(show_header=False, box=None)
    for key in ("state", "reason", "contacts", "pending", "due", "in_flight", "done",
                "waiting", "next_due", "outcomes", "attempts", "answered"):
        table.add_row(f"[bold]{key}[/bold]", str(data[key]))
    for n in s.nodes:
        table.add_row(f"[bold]node {n['node']}[/bold]",
                      f"{n['status']} (in flight {n['in_flight']}, seen {n['heartbeat']:%H:%M:%S})")
    Console().print(table)


def _steer(name: str, db: str | None, state: CampaignState, allowed: tuple[CampaignState, ...],
           verb: str) -> None:
    store = _open(db)
    try:
        current, _ = store.state(name)
        if not store.set_state(name, state, f"{verb} from the command line", allowed):
            err.print(f"[red]error:[/red] {name} is {current.value}; cannot {verb} it")
            raise typer.Exit(1)
    except StoreError as exc:
        raise _store_error(exc) from None
    finally:
        store.close()
    typer.echo(f"{name}: {current.value} -> {state.value}")


@campaign_app.command()
def pause(name: NameArg, db: DbOpt = None) -> None:
    """Pause dialing (calls in flight end normally); a running dialer obeys within a second.

    Example: autocall campaign pause spring-survey
    """
    _steer(name, db, CampaignState.PAUSED, (CampaignState.RUNNING, CampaignState.SCHEDULED),
           "pause")


@campaign_app.command()
def resume(name: NameArg, db: DbOpt = None) -> None:
    """Resume a paused (or draft) campaign.

    Example: autocall campaign resume spring-survey
    """
    _steer(name, db, CampaignState.RUNNING, (CampaignState.PAUSED, CampaignState.DRAFT),
           "resume")


@campaign_app.command()
def stop(name: NameArg, db: DbOpt = None) -> None:
    """Stop a campaign for good: no new calls; dialers exit when their calls end.

    Example: autocall campaign stop spring-survey
    """
    _steer(name, db, CampaignState.STOPPED,
           (CampaignState.RUNNING, CampaignState.PAUSED, CampaignState.SCHEDULED,
            CampaignState.DRAFT), "stop")


@campaign_app.command("explain")
def explain_cmd(
    name: NameArg,
    number: Annotated[str, typer.Argument(metavar="NUMBER", help="The contact's number.")],
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Say why a contact is or is not being dialed (window, retry, DNC, attempts, state).

    Exit 0 if it would be dialed now, 1 if not.

    Example: autocall campaign explain spring-survey "+1 202 555 0143"
    """
    store = _open(db)
    try:
        campaign, state, _ = store.campaign(name)
        e164 = normalize(number, campaign.default_region) or number
        contact = store.contact_by_number(name, e164)
    except StoreError as exc:
        raise _store_error(exc) from None
    finally:
        store.close()
    dnc = DncList.from_files(campaign.dnc, campaign.default_region)
    ok, lines = explain(campaign, state, contact, datetime.now(UTC), dnc)
    if as_json:
        typer.echo(json.dumps({"number": e164, "dial_now": ok, "reasons": lines}))
    else:
        for line in lines:
            typer.echo(line)
    if not ok:
        raise typer.Exit(1)


@campaign_app.command()
def report(
    name: NameArg,
    db: DbOpt = None,
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
    charts: Annotated[Path | None, typer.Option(
        "--charts", help="Write PNG charts into this folder.")] = None,
    cdr: Annotated[Path | None, typer.Option(
        "--cdr", help="Write every call record to this CSV.")] = None,
) -> None:
    """Counts by status, answer and completion rates, handle time, menu choices, per hour.

    Example: autocall campaign report spring-survey --format csv --charts out/ --cdr cdr.csv
    """
    if fmt not in ("table", "csv", "json"):
        err.print(f"[red]error:[/red] --format {fmt!r}: use table, csv or json")
        raise typer.Exit(2)
    store = _open(db)
    try:
        result = rep.campaign_report(store, name)
        if cdr is not None:
            n = rep.write_cdr(store, name, cdr)
            err.print(f"{n} call records written to {cdr}")
    except StoreError as exc:
        raise _store_error(exc) from None
    finally:
        store.close()
    if charts is not None:
        for path in rep.write_charts(result, charts):
            err.print(f"chart: {path}")
    if fmt == "json":
        typer.echo(rep.to_json(result))
    elif fmt == "csv":
        typer.echo(rep.to_csv(result), nl=False)
    else:
        table = Table("metric", "value", title=f"campaign {name}")
        for key, value in result.rows():
            table.add_row(key, value)
        Console().print(table)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.add_typer(campaign_app, name="campaign")
