"""`autocall trees`: prompt trees kept in the store as versions (issue 17).

The files in ``prompts/`` stay the format (`autocall prompts` works on them); these
commands move them into the store and back, so the console's designer and the files
in git hold the same text byte for byte.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from autocall.campaign.store import Store
from autocall.campaign.trees import TreeLibrary, TreesError
from autocall.config import Settings, hide_password, shown_url
from autocall.dialogue.validate import tree_files

trees_app = typer.Typer(help="Prompt trees kept in the store as versions.",
                        no_args_is_help=True)
_err = Console(stderr=True, soft_wrap=True)
_SPEC = re.compile(r"^(?P<name>[^@]+)(?:@(?P<version>[0-9]+))?$")

DbOpt = Annotated[str | None, typer.Option(
    "--db", help="Store URL (default: AUTOCALL_DATABASE_URL or sqlite:///autocall.db).")]


@contextlib.contextmanager
def _library(db: str | None) -> Iterator[TreeLibrary]:
    """The store's tree library; the store is closed after."""
    settings = Settings.from_env()
    url = db or settings.database_url
    try:
        store = Store(url)
    except Exception as exc:  # noqa: BLE001 - any connection problem is a usage error
        _err.print(f"[red]error:[/] cannot open store {shown_url(url)}: "
                   f"{escape(hide_password(str(exc), url))}")
        raise typer.Exit(2) from None
    with store:
        yield TreeLibrary(store.engine, settings.prompts_dir)


@trees_app.command("import")
def import_(
    paths: Annotated[list[Path], typer.Argument(help="Tree files or folders (prompts/).")],
    db: DbOpt = None,
    publish: Annotated[bool, typer.Option(
        "--publish", help="Publish each imported version that validates.")] = False,
) -> None:
    """Save each tree file as a new version named after the file (NAME.cases.yaml beside
    it goes with it); a file whose text is already the newest version is skipped.

    Example: autocall trees import prompts/ --publish
    """
    failed = 0
    with _library(db) as library:
        for path in tree_files(paths):
            name = path.stem
            text = path.read_text(encoding="utf-8")
            cases = path.with_name(f"{name}.cases.yaml")
            try:
                known = library.versions(name)
            except TreesError:
                known = []
            if known and known[-1].text == text:
                typer.echo(f"{name}: unchanged (version {known[-1].version})")
                continue
            try:
                saved = library.save(name, text, "cli", f"imported from {path}",
                                     cases.read_text(encoding="utf-8") if cases.is_file()
                                     else None)
            except TreesError as exc:
                _err.print(f"[red]{escape(str(path))}:[/] {escape(str(exc))}")
                failed += 1
                continue
            state = f"{saved.errors} error(s), a draft" if saved.errors else "clean"
            if publish and not saved.errors:
                library.publish(name, saved.version, "cli")
                state = "published"
            typer.echo(f"{name}: version {saved.version} ({state}) -> {saved.pin}")
    if failed:
        raise typer.Exit(1)


@trees_app.command("export")
def export(
    spec: Annotated[str, typer.Argument(help="NAME or NAME@VERSION (default: the newest).")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="File to write.")] = None,
    db: DbOpt = None,
) -> None:
    """Write a version's YAML exactly as it was saved.

    Example: autocall trees export reminder@2 -o prompts/reminder.yaml
    """
    m = _SPEC.match(spec)
    if m is None:
        raise typer.BadParameter("write NAME or NAME@VERSION", param_hint="SPEC")
    with _library(db) as library:
        try:
            number = (int(m["version"]) if m["version"]
                      else library.versions(m["name"])[-1].version)
            text = library.version(m["name"], number).text
        except TreesError as exc:
            _err.print(f"[red]error:[/] {escape(str(exc))}")
            raise typer.Exit(1) from None
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")


@trees_app.command("list")
def list_(db: DbOpt = None,
          as_json: Annotated[bool, typer.Option("--json", help="One JSON array.")] = False,
          ) -> None:
    """Each stored tree with its newest and its published version.

    Example: autocall trees list --json
    """
    with _library(db) as library:
        rows = library.names()
    if as_json:
        typer.echo(json.dumps(rows))
        return
    for row in rows:
        published = row["published"] or "none"
        typer.echo(f"{row['tree']}: newest {row['latest']}, published {published}")


@trees_app.command("publish")
def publish_(name: str, version: int, db: DbOpt = None) -> None:
    """Publish a clean version, so campaigns may pin it (store:NAME@VERSION).

    Example: autocall trees publish reminder 2
    """
    with _library(db) as library:
        try:
            done = library.publish(name, version, "cli")
        except TreesError as exc:
            _err.print(f"[red]error:[/] {escape(str(exc))}")
            raise typer.Exit(1) from None
    typer.echo(f"{done.pin} published")


def register(app: typer.Typer) -> None:
    app.add_typer(trees_app, name="trees")
