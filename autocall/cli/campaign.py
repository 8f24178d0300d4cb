"""`autocall campaign …`: validate, import, run, steer, explain and report campaigns.

Every command takes ``--db URL`` (default ``AUTOCALL_DATABASE_URL`` or
``sqlite:///autocall.db``), so pause/stop from another terminal reach a running dialer
through the same store.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import inspect
import json
import logging
import re
import signal
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Protocol, TypeVar, runtime_checkable

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from autocall import lifeline
from autocall.campaign import migrations, outbox
from autocall.campaign import report as rep
from autocall.campaign.check import Problem, check_campaign, preflight
from autocall.campaign.contacts import ContactsError, Rejected, import_campaign
from autocall.campaign.control import SteerError, Verb, explain_number, pin_tree, steer
from autocall.campaign.dialer import (
    SOLE,
    CallPlacer,
    Share,
    begin_run,
    default_node,
    run_campaign,
)
from autocall.campaign.dialer import Progress as DialProgress
from autocall.campaign.model import Campaign, CampaignError, CampaignState, load_campaign
from autocall.campaign.schedule import DncCheck, DncList, is_open_all
from autocall.campaign.store import Store, StoreError
from autocall.campaign.trees import TreeLibrary, TreesError
from autocall.cli.campaign_workers import ORPHAN_GRACE, follow_orders, supervise, worker_count
from autocall.cli.safe_text import plain, safe
from autocall.config import Settings, hide_password, shown_url
from autocall.process import freeze_startup_heap
from autocall.signals import StopSignals, cancelled

campaign_app = typer.Typer(
    help="Define, import, run and report dialing campaigns.\n\n"
    "Example: autocall campaign import campaigns/example.yaml && "
    "autocall campaign run spring-survey",
    no_args_is_help=True,
)

DEFAULT_PLACER = "autocall.campaign.placer:from_settings"

DbOpt = Annotated[str | None, typer.Option("--db", help="Store URL (SQLite file or PostgreSQL).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
TreeFromFileOpt = Annotated[bool, typer.Option(
    "--tree-from-file", help="Use the tree the file names even when the stored campaign "
    "is pinned to a tree version (autocall campaign pin, or the console); without it the "
    "pin stays.")]
NameArg = Annotated[str, typer.Argument(metavar="CAMPAIGN", help="Campaign name.")]
ListsOpt = Annotated[list[Path] | None, typer.Option(
    "--contacts", help="Use this contact list instead of the campaign's (repeatable).")]
DncOpt = Annotated[list[Path] | None, typer.Option(
    "--dnc", help="Use this do-not-call file instead of the campaign's (repeatable).")]

err = Console(stderr=True, highlight=False, soft_wrap=True)

__all__ = ["Problem", "campaign_app", "preflight", "register"]
"""``preflight(campaign) -> list[Problem]`` is the check ``run`` and ``serve`` call before
dialing (from :mod:`autocall.campaign.check`); refuse if any has severity ``error``."""


def _db_url(db: str | None) -> str:
    return db or Settings.from_env().database_url


def _trees(store: Store) -> TreeLibrary:
    return TreeLibrary(store.engine, Settings.from_env().prompts_dir)


def _open(db: str | None) -> Store:
    try:
        return Store(_db_url(db))
    except Exception as exc:  # noqa: BLE001 - any connection problem is a usage error
        url = _db_url(db)
        err.print(f"[red]error:[/red] cannot open store {shown_url(url)}: "
                  f"{hide_password(str(exc), url)}")
        raise typer.Exit(2) from None


def _load(path: Path) -> Campaign:
    try:
        return load_campaign(path)
    except CampaignError as exc:
        for line in exc.problems:
            err.print(safe(line))
        raise typer.Exit(2) from None


def _override(campaign: Campaign, lists: list[Path] | None, dnc: list[Path] | None
              ) -> Campaign:
    """The campaign with other contact lists / DNC files (checking a new CRM export)."""
    update: dict[str, list[str]] = {}
    if lists:
        update["contacts"] = [str(p.resolve()) for p in lists]
    if dnc:
        update["dnc"] = [str(p.resolve()) for p in dnc]
    return campaign.model_copy(update=update) if update else campaign


def _print_problems(problems: list[Problem]) -> None:
    """Findings as ``file:line:col: severity: message [code]``, file text made safe."""
    for p in problems:
        colour = "red" if p.severity == "error" else "yellow"
        err.print(f"{safe(p.file)}:{p.line}:{p.column}: [{colour}]{p.severity}:[/{colour}] "
                  f"{safe(p.message)} {safe('[' + p.code + ']')}")


def _store_error(exc: StoreError) -> typer.Exit:
    err.print(f"[red]error:[/red] {exc}")
    return typer.Exit(2)


@contextlib.contextmanager
def _opened(db: str | None) -> Iterator[Store]:
    """The store, closed after; a store error is exit 2 with its message."""
    with _open(db) as store:
        try:
            yield store
        except StoreError as exc:
            raise _store_error(exc) from None


@campaign_app.command()
def validate(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="Campaign YAML.")],
    lists: ListsOpt = None,
    dnc: DncOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check a campaign YAML, its prompt tree, contact lists and DNC files; no store.

    Findings name file:line:col. Exit 0: valid; 1: errors (the campaign may not be
    imported or run) or rejected/duplicate rows; 2: the YAML itself is invalid.

    Example: autocall campaign validate campaigns/example.yaml
    """
    try:
        campaign = load_campaign(file)
    except CampaignError as exc:
        if as_json:
            typer.echo(json.dumps({"ok": False, "problems": exc.problems}))
        else:
            for line in exc.problems:
                err.print(safe(line))
        raise typer.Exit(2) from None
    checked = check_campaign(_override(campaign, lists, dnc), file)
    problems = checked.problems
    contacts = len(checked.lists.contacts)
    if as_json:
        typer.echo(json.dumps({"ok": checked.ok, "name": campaign.name, "contacts": contacts,
                               "problems": [str(p) for p in problems],
                               "findings": [p.as_dict() for p in problems]}))
    else:
        _print_problems(problems)
        errors = len(checked.errors)
        typer.echo(f"{campaign.name}: {contacts} contacts, {errors} error(s), "
                   f"{len(problems) - errors} warning(s)")
    if checked.errors or checked.lists.rejected or checked.lists.duplicate_rows:
        raise typer.Exit(1)


@campaign_app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="Campaign YAML.")],
    db: DbOpt = None,
    rejects: Annotated[Path | None, typer.Option(
        "--rejects",
        help="Write rejected and duplicate rows (source,row,column,reason) to this CSV.")] = None,
    lists: ListsOpt = None,
    dnc: DncOpt = None,
    as_json: JsonOpt = False,
    tree_from_file: TreeFromFileOpt = False,
) -> None:
    """Store a campaign and import its contact lists (E.164, time zones, dedupe).

    The campaign is checked first (tree, lists, DNC files, as validate does); with any
    error nothing is stored. Bad rows are reported and skipped; importing again adds
    only new numbers. A campaign pinned to a tree version keeps it (--tree-from-file
    to use the file's tree again).

    Example: autocall campaign import campaigns/example.yaml --rejects rejects.csv
    """
    campaign = _override(_load(file), lists, dnc)
    store = _open(db)
    checked = check_campaign(campaign, file, _trees(store))
    if not checked.ok:
        store.close()
        if as_json:
            typer.echo(json.dumps({"ok": False, "name": campaign.name,
                                   "problems": [str(p) for p in checked.errors]}))
        else:
            _print_problems(checked.errors)
            err.print(f"{safe(campaign.name)}: not imported: {len(checked.errors)} error(s); "
                      f"fix them (autocall campaign validate {safe(file)})")
        raise typer.Exit(1)
    try:
        result = import_campaign(store, campaign, checked.lists, tree_from_file=tree_from_file,
                                 unpinned=_audit_unpin(campaign))
    except ContactsError as exc:  # a list changed between the check and the import
        err.print(safe(str(exc)))
        raise typer.Exit(2) from None
    except StoreError as exc:
        raise _store_error(exc) from None
    finally:
        store.close()
    skipped = [*result.rejected, *result.duplicate_rows]
    skipped.sort(key=lambda r: (r.source, r.row))
    if rejects is not None:
        _write_rejects(rejects, skipped)
    if as_json:
        typer.echo(json.dumps({"name": campaign.name, "added": result.added,
                               "duplicates": result.duplicates, "dnc": result.dnc,
                               "rejected": [asdict(r) for r in result.rejected],
                               "duplicate_rows": [asdict(r) for r in result.duplicate_rows],
                               "warnings": [asdict(r) for r in result.warnings],
                               "tree": result.kept_tree or campaign.tree}))
        return
    if result.kept_tree:
        _kept_pin(campaign.name, result.kept_tree, campaign.tree)
    for r in skipped:
        err.print(f"{safe(r.where())}: [yellow]warning:[/yellow] skipped: {safe(r.reason)}")
    for r in result.warnings:
        err.print(f"{safe(r.where())}: [yellow]warning:[/yellow] {safe(r.reason)}")
    typer.echo(plain(f"{campaign.name}: {result.added} added, {result.duplicates} duplicates, "
                     f"{len(result.rejected)} rejected, {result.dnc} on the do-not-call list"))


def _write_rejects(path: Path, rows: list[Rejected]) -> None:
    import csv

    try:
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(("source", "row", "column", "reason"))
            writer.writerows((r.source, r.row, r.column or "", r.reason) for r in rows)
    except OSError as exc:
        err.print(f"error: cannot write {safe(path)}: {safe(exc.strerror or exc)}")
        raise typer.Exit(2) from None


@runtime_checkable
class _Closes(Protocol):
    """A placer to close when the run ends."""

    async def aclose(self) -> None: ...


Placer = CallPlacer | Awaitable[CallPlacer] | contextlib.AbstractAsyncContextManager[CallPlacer]
PlacerFactory = Callable[[Settings], Placer]


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


async def _enter_placer(stack: contextlib.AsyncExitStack, factory: PlacerFactory,
                        store_url: str) -> CallPlacer:
    # the placer's store is the one dialed from (it loads the trees kept there)
    made = factory(replace(Settings.from_env(), database_url=store_url))
    if isinstance(made, contextlib.AbstractAsyncContextManager):
        return await stack.enter_async_context(made)
    placer = await made if inspect.isawaitable(made) else made
    if isinstance(placer, _Closes):
        stack.push_async_callback(placer.aclose)
    return placer


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
    workers: Annotated[int | None, typer.Option(
        "--workers", min=1, max=512, help="Dialer processes (default: one per core, never "
        "more than the campaign's channels). They share the campaign's channels and "
        "calls/second evenly; 1 dials in this process.")] = None,
    as_json: JsonOpt = False,
    tree_from_file: TreeFromFileOpt = False,
) -> None:
    """Dial a campaign with a live progress display until it completes or is stopped.

    Ctrl-C or SIGTERM stops new calls and lets calls in flight end (exit 0); a second
    one hangs them up at once and records them as interrupted (exit 130 or 143).
    Pause, resume and stop work from another terminal with the same --db.
    Given its YAML file again, a campaign pinned to a tree version keeps running that
    version (say --tree-from-file to run the file's tree).

    With several --workers this process supervises: each worker is a dialer of its own
    (SIP port AUTOCALL_BIND_PORT + k when a port is set), signals are passed on, and
    the exit status is 1 if a worker died (its calls are resolved as interrupted).

    Example: autocall campaign run spring-survey --db sqlite:///autocall.db --workers 2
    """
    store = _open(db)
    try:
        if campaign.endswith((".yaml", ".yml")) and Path(campaign).exists():
            model = _load(Path(campaign))
            checked = check_campaign(model, Path(campaign), _trees(store))
            _refuse_to_dial(model.name, checked.errors)
            report = import_campaign(store, model, checked.lists,
                                     tree_from_file=tree_from_file,
                                     unpinned=_audit_unpin(model))
            name = model.name
            if report.kept_tree:
                _kept_pin(name, report.kept_tree, model.tree)
                _refuse_to_dial(name, preflight(  # the pinned version, not the file's tree
                    store.campaign(name)[0].model_copy(update={"contacts": []}),
                    trees=_trees(store)))
        else:
            name = campaign
            model = store.campaign(name)[0]
            # Its lists were read at import; the tree and DNC files may have changed since.
            _refuse_to_dial(name, preflight(model.model_copy(update={"contacts": []}),
                                            trees=_trees(store)))
    except StoreError as exc:
        store.close()
        raise _store_error(exc) from None
    except typer.Exit:
        store.close()
        raise
    factory = _placer_factory(placer)
    # The dialer says once when the store goes away and comes back; stamina's line per
    # retry would fill the terminal during an outage.
    logging.getLogger("stamina").setLevel(logging.ERROR)
    count = worker_count(workers, model.channels)
    try:
        if count > 1:
            begin_run(store, model, datetime.now(UTC))  # once; the workers leave it
            final, code = asyncio.run(_supervise(name, store.url, count, placer, node, wait,
                                                 as_json))
        else:
            freeze_startup_heap()  # the store, models and libraries stay: short GC passes
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


def _kept_pin(name: str, pinned: str, file_tree: str) -> None:
    """Say that a stored pin wins over the file's tree, and how to move it."""
    err.print(f"{safe(name)}: runs {safe(pinned)}, the tree version it is pinned to, not the "
              f"file's tree {safe(file_tree)}; move it with: autocall campaign pin "
              f"{safe(name)} TREE@N, or use the file's tree with --tree-from-file")


def _refuse_to_dial(name: str, problems: list[Problem]) -> None:
    """Exit 1 with the findings if any is an error: an invalid campaign never dials."""
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        _print_problems(errors)
        err.print(f"{safe(name)}: not dialing: {len(errors)} error(s) (autocall campaign "
                  "validate shows them all)")
        raise typer.Exit(1)


async def _run(name: str, store: Store, factory: PlacerFactory, node: str | None, wait: bool,
               quiet: bool, share: Share = SOLE, parent: int | None = None
               ) -> tuple[DialProgress, int]:
    """Dial; returns the final progress and the exit code (128 + signal if forced).

    As a worker of ``--workers N`` (``parent`` set): dial ``share`` of the campaign,
    say nothing of signals (the supervisor does) and stop when the supervisor is gone.
    """
    def told(sig: signal.Signals) -> None:
        if len(signals.received) == 1 and parent is None:
            err.print(f"{sig.name}: no new calls; letting calls in flight end "
                      "(send it again to hang them up now)")

    signals = StopSignals(told)
    watch = None if parent is None else asyncio.gather(
        lifeline.follow_parent(parent, signals.stop, signals.force,
                               who="the supervisor (autocall campaign run)",
                               grace=ORPHAN_GRACE),
        follow_orders(signals.stop, signals.force))
    try:
        async with contextlib.AsyncExitStack() as stack:
            placer = await _enter_placer(stack, factory, store.url)
            final = await _dial(name, store, placer, node, wait, quiet, signals, share,
                                start=parent is None)
    finally:
        signals.close()
        await cancelled(watch)
    if signals.force.is_set() and not signals.received:  # a worker cut by an order
        return final, 128 + signal.SIGTERM  # (or orphaned): as by a second SIGTERM
    return final, signals.exit_code


async def _supervise(name: str, url: str, workers: int, placer: str, node: str | None,
                     wait: bool, quiet: bool) -> tuple[DialProgress, int]:
    """``--workers N``: the same progress display, fed from the store (every worker's
    calls), while the workers dial."""
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[detail]}"), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), disable=quiet) as bar:
        task = bar.add_task(name, total=None, detail=f"starting {workers} workers")
        return await supervise(name, url, workers=workers, placer=placer, node=node,
                               wait=wait, show=functools.partial(_show, bar, task, name),
                               say=lambda text: err.print(escape(text)))


def _show(bar: Progress, task: TaskID, name: str, p: DialProgress) -> None:
    detail = (f"dialed {p.dialed} · answered {p.answered} · in progress "
              f"{p.in_progress} · waiting {p.waiting} · not completed {p.failed}")
    if p.idle:
        detail += f" · [yellow]{p.idle}[/yellow]"
    bar.update(task, completed=p.done, total=p.total or None,
               description=f"{name} ({p.state.value})", detail=detail)


def work(name: str, url: str, placer: str, node: str | None, wait: bool, share: Share,
         parent: int) -> int:
    """One worker of ``--workers N`` (``python -m autocall.cli.campaign_workers``):
    dial ``share`` of campaign ``name``; returns the exit status."""
    try:
        store = Store(url)
    except Exception as exc:  # noqa: BLE001 - any connection problem is a usage error
        err.print(f"[red]error:[/red] cannot open store {shown_url(url)}: "
                  f"{hide_password(str(exc), url)}")
        return 2
    try:
        factory = _placer_factory(placer)
        freeze_startup_heap()
        _, code = asyncio.run(_run(name, store, factory, node, wait, True, share, parent))
    except StoreError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        return 1
    except typer.Exit as exc:
        return exc.exit_code
    finally:
        store.close()
    return code


async def _dial(name: str, store: Store, placer: CallPlacer, node: str | None, wait: bool,
                quiet: bool, signals: StopSignals, share: Share = SOLE, start: bool = True
                ) -> DialProgress:
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[detail]}"), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), disable=quiet) as bar:
        task = bar.add_task(name, total=None, detail="starting")

        dialing = run_campaign(name, store, placer, node=node,
                               progress=functools.partial(_show, bar, task, name),
                               stop=signals.stopping, force=signals.force,
                               exit_when_idle=not wait, share=share, start=start)
        # The campaign's webhooks go out from this process too (a task of their own);
        # after the dialer drains they get a short grace, the rest waits in the outbox.
        return await outbox.alongside(store.engine, node or default_node(), dialing)


HEARTBEAT_STALE = 30.0
"""Seconds after which a dialer node that has not written its heartbeat is gone (a live
dialer beats every second or so)."""


@campaign_app.command()
def status(name: NameArg, db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """Show a campaign's state, contact counts and what each dialer node is doing.

    ``due`` counts contacts a dialer would call now: not on the do-not-call list and
    inside the calling window. A "running" campaign with no live dialer says so.

    Example: autocall campaign status spring-survey --json
    """
    now = datetime.now(UTC)
    with _opened(db) as store:
        s = store.summary(name, now)
        campaign, _, _ = store.campaign(name)
        pending = [c for c in store.contacts(name)
                   if c.state.value == "pending" and (c.next_at is None or c.next_at <= now)]
    files = DncList.from_files(campaign.dnc, campaign.default_region)
    with _open(db) as store:  # the store's list too: the dialer closes those when it claims
        dnc = DncCheck(files, store.on_dnc)
        on_dnc = sum(1 for c in pending if c.number in dnc)
    closed = sum(1 for c in pending
                 if c.number not in dnc and not is_open_all(campaign.window, c.timezones, now))
    live = [n for n in s.nodes if (now - n["heartbeat"]).total_seconds() <= HEARTBEAT_STALE]
    state = s.state.value
    attached = bool(live)
    if s.state is CampaignState.RUNNING and not attached:
        state = "running (no dialer attached)"
    data: dict[str, Any] = {
        "name": name, "state": s.state.value, "dialer_attached": attached,
        "reason": s.state_reason, "contacts": s.total,
        "pending": s.pending, "due": len(pending) - on_dnc - closed,
        "due_but_dnc": on_dnc, "due_but_outside_window": closed,
        "in_flight": s.in_flight, "done": s.done,
        "waiting": s.waiting, "next_due": s.next_due.isoformat() if s.next_due else None,
        "outcomes": s.outcomes, "attempts": s.attempts, "answered": s.answered,
        "nodes": [{**n, "heartbeat": n["heartbeat"].isoformat(),
                   "alive": n in live} for n in s.nodes],
    }
    if as_json:
        typer.echo(json.dumps(data))
        return
    table = Table(show_header=False, box=None)
    table.add_row("[bold]state[/bold]", safe(state))
    for key in ("reason", "contacts", "pending", "due", "due_but_dnc",
                "due_but_outside_window", "in_flight", "done", "waiting", "next_due",
                "outcomes", "attempts", "answered"):
        table.add_row(f"[bold]{key}[/bold]", safe(data[key]))
    for n in s.nodes:
        alive = "" if n in live else " [yellow]stale: not heartbeating[/yellow]"
        table.add_row(f"[bold]node {safe(n['node'])}[/bold]",
                      f"{safe(n['status'])} (in flight {n['in_flight']}, "
                      f"seen {n['heartbeat']:%H:%M:%S}){alive}")
    if s.state is CampaignState.RUNNING and not attached:
        table.add_row("", f"[yellow]no dialer is attached: start one with "
                      f"autocall campaign run {safe(name)}[/yellow]")
    Console().print(table)


Moved = TypeVar("Moved")


def _change(db: str | None, refused: type[Exception], change: Callable[[Store], Moved]) -> Moved:
    """Run one operator change on the store: ``refused`` is the change's own error (exit
    1, it says why), a store error is exit 2."""
    with _opened(db) as store:
        try:
            return change(store)
        except refused as exc:
            err.print(f"[red]error:[/red] {escape(str(exc))}")
            raise typer.Exit(1) from None


def _steer(name: str, db: str | None, verb: Verb) -> None:
    done = _change(db, SteerError,
                   lambda store: steer(store, name, verb, f"{verb.value} from the command line"))
    typer.echo(f"{name}: {done.before.value} -> {done.after.value}")


@campaign_app.command()
def pause(name: NameArg, db: DbOpt = None) -> None:
    """Pause dialing (calls in flight end normally); a running dialer obeys within a second.

    Example: autocall campaign pause spring-survey
    """
    _steer(name, db, Verb.PAUSE)


@campaign_app.command()
def resume(name: NameArg, db: DbOpt = None) -> None:
    """Resume a paused (or draft) campaign.

    Example: autocall campaign resume spring-survey
    """
    _steer(name, db, Verb.RESUME)


@campaign_app.command()
def stop(
    name: NameArg,
    db: DbOpt = None,
    yes: Annotated[bool, typer.Option(
        "--yes", "-y", help="Do not ask: stopping is permanent.")] = False,
) -> None:
    """Stop a campaign for good: no new calls; dialers exit when their calls end.

    Stopping cannot be undone (use pause to halt for a while), so it asks first;
    --yes skips the question (scripts).

    Example: autocall campaign stop spring-survey --yes
    """
    if not yes:
        import sys

        if not sys.stdin.isatty():
            err.print(f"error: stopping {safe(name)} is permanent; pass --yes to confirm "
                      "(or use pause)")
            raise typer.Exit(2)
        if not typer.confirm(f"Stop {plain(name)} for good? It cannot be resumed "
                             "(pause can)", default=False):
            err.print("not stopped")
            raise typer.Exit(1)
    _steer(name, db, Verb.STOP)


@campaign_app.command()
def pin(
    name: NameArg,
    version: Annotated[str, typer.Argument(
        metavar="TREE@N", help="A published version of a tree kept in the store.")],
    db: DbOpt = None,
) -> None:
    """Run a published version of a stored tree (what the console's campaign page and
    POST /v1/campaigns/{name}/tree do); a running dialer places its next calls on it
    within a second, calls in flight end on theirs. Audited as campaign.tree by cli.

    Example: autocall campaign pin spring-survey reminder@2
    """
    picked = _PIN_ARG.match(version)
    if picked is None:
        err.print(f"[red]error:[/red] {safe(version)}: give TREE@N, e.g. reminder@2 "
                  "(autocall trees list shows the published versions)")
        raise typer.Exit(2)
    from autocall.web.accounts import audit  # the audit log lives with the accounts

    tree, number = picked["tree"], int(picked["version"])
    done = _change(db, TreesError, lambda store: pin_tree(
        store, _trees(store), name, tree, number,
        also=lambda conn, before: audit(conn, "cli", "campaign.tree", name,
                                        tree=f"store:{tree}@{number}", previous=before)))
    typer.echo(f"{name}: {done.before} -> {done.after}")


def _audit_unpin(campaign: Campaign) -> Callable[[Connection, str], None]:
    """--tree-from-file moves a campaign off its pinned version: audited like a pin."""
    from autocall.web.accounts import audit  # the audit log lives with the accounts

    def unpinned(conn: Connection, before: str) -> None:
        audit(conn, "cli", "campaign.tree", campaign.name, tree=campaign.tree,
              previous=before, via="--tree-from-file")

    return unpinned


_PIN_ARG = re.compile(r"^(?P<tree>[A-Za-z0-9][A-Za-z0-9_-]{0,99})@(?P<version>[0-9]{1,9})$")


@campaign_app.command("list")
def list_(db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """List the campaigns in the store with their state and contact counts.

    Example: autocall campaign list --json
    """
    now = datetime.now(UTC)
    with _opened(db) as store:
        rows = []
        for name in store.campaign_names():
            s = store.summary(name, now)
            rows.append({"name": name, "state": s.state.value, "contacts": s.total,
                         "pending": s.pending, "done": s.done, "attempts": s.attempts})
    if as_json:
        typer.echo(json.dumps(rows))
        return
    table = Table("campaign", "state", "contacts", "pending", "done", "attempts")
    for r in rows:
        table.add_row(*(safe(r[k]) for k in ("name", "state", "contacts", "pending", "done",
                                              "attempts")))
    Console().print(table)
    if not rows:
        err.print("no campaigns yet: autocall campaign import FILE")


@campaign_app.command("contacts")
def contacts_cmd(
    name: NameArg,
    db: DbOpt = None,
    state: Annotated[str | None, typer.Option(
        "--state", help="Only contacts in this state: pending, in-flight or done.")] = None,
    outcome: Annotated[str | None, typer.Option(
        "--outcome", help="Only contacts whose last outcome is this (e.g. busy, dnc).")] = None,
    search: Annotated[str | None, typer.Option(
        "--search", help="Only contacts whose number or a field contains this text.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=0, help="At most this many; 0: all.")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """List a campaign's contacts (number, state, attempts, last outcome, fields).

    Example: autocall campaign contacts spring-survey --state pending --json
    """
    states = ("pending", "in-flight", "done")
    if state is not None and state not in states:
        err.print(f"error: --state {safe(state)!s}: use {', '.join(states)}")
        raise typer.Exit(2)
    with _opened(db) as store:
        store.campaign(name)
        found = store.contacts(name)
    needle = search.lower() if search else None
    picked = []
    for c in found:
        if state is not None and c.state.value != state:
            continue
        if outcome is not None and (c.last_outcome.value if c.last_outcome else "") != outcome:
            continue
        if needle is not None and needle not in c.number.lower() and not any(
                needle in str(v).lower() for v in c.fields.values()):
            continue
        picked.append(c)
        if limit and len(picked) >= limit:
            break
    rows: list[dict[str, object]] = [
            {"number": c.number, "state": c.state.value, "attempts": c.attempts,
             "last_outcome": c.last_outcome.value if c.last_outcome else None,
             "next_at": c.next_at.isoformat() if c.next_at else None,
             "timezones": list(c.timezones), "fields": dict(c.fields)} for c in picked]
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False))
        return
    table = Table("number", "state", "attempts", "last outcome", "next", "fields")
    for c in picked:
        fields = ", ".join(f"{k}={v}" for k, v in c.fields.items())
        table.add_row(c.number, c.state.value, str(c.attempts),
                      c.last_outcome.value if c.last_outcome else "",
                      f"{c.next_at:%Y-%m-%d %H:%M}" if c.next_at else "", safe(fields))
    Console().print(table)
    err.print(f"{len(rows)} of {len(found)} contacts")


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
    with _opened(db) as store:
        found = explain_number(store, name, number, datetime.now(UTC))
    ok = found.dial_now
    lines = [plain(line) for line in found.reasons]
    if as_json:
        typer.echo(json.dumps({"number": found.number, "dial_now": ok, "reasons": lines}))
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
    with _opened(db) as store:
        try:
            result = rep.campaign_report(store, name)
            if cdr is not None:
                n = rep.write_cdr(store, name, cdr)
                err.print(f"{n} call records written to {safe(cdr)}")
        except OSError as exc:
            err.print(f"error: cannot write {safe(exc.filename or cdr)}: "
                      f"{safe(exc.strerror or exc)}; check the folder exists")
            raise typer.Exit(2) from None
    if charts is not None:
        try:
            for path in rep.write_charts(result, charts):
                err.print(f"chart: {safe(path)}")
        except OSError as exc:
            err.print(f"error: cannot write charts into {safe(charts)}: "
                      f"{safe(exc.strerror or exc)}; --charts names a folder")
            raise typer.Exit(2) from None
    if fmt == "json":
        typer.echo(rep.to_json(result))
    elif fmt == "csv":
        typer.echo(rep.to_csv(result), nl=False)
    else:
        table = Table("metric", "value", title=f"campaign {safe(name)}")
        for key, value in result.rows():
            table.add_row(safe(key), safe(value))
        Console().print(table)


db_app = typer.Typer(help="The store's schema (alembic migrations shipped with autocall).",
                     no_args_is_help=True)
campaign_app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade(
    db: DbOpt = None,
    sql: Annotated[bool, typer.Option(
        "--sql", help="Print the SQL for a DBA instead; change nothing.")] = False,
) -> None:
    """Bring the store's schema to this autocall's (every command also does it on start).

    With --sql the store is only read: the SQL that brings it from its revision (or from
    empty) to the newest is printed, for a DBA to review and run.

    Example: autocall campaign db upgrade --sql --db postgresql://dba@db/autocall > up.sql
    """
    if not sql:
        _open(db).close()
        err.print(f"store {shown_url(_db_url(db))} at schema revision {migrations.head()}")
        return
    url = _db_url(db)
    try:
        typer.echo(migrations.offline_sql(url), nl=False)
    except (SQLAlchemyError, migrations.MigrationError) as exc:
        err.print(f"[red]error:[/red] {shown_url(url)}: {hide_password(str(exc), url)}")
        raise typer.Exit(2) from None


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.add_typer(campaign_app, name="campaign")
