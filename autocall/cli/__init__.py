"""The `autocall` command line.

Each command group lives in its own module with a ``register(app)`` function, so the
layers' commands are written and tested apart. Exit codes: 0 ok, 1 the work found
problems (invalid tree, failed call…), 2 usage or input errors.
"""

from __future__ import annotations

import typer

from autocall import __version__
from autocall.cli import audio, call, campaign, demo, prompts, sip, trees, web, webhooks
from autocall.config import Settings
from autocall.process import raise_priority

app = typer.Typer(
    name="autocall",
    help="Autodialer and voice dialogue robot over SIP.\n\nExample: autocall demo",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"autocall {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    priority: str | None = typer.Option(
        None,
        "--priority",
        help="Scheduling priority for media pacing: normal, high (nice -10) or realtime "
        "(SCHED_RR; needs root or CAP_SYS_NICE). Default: AUTOCALL_MEDIA_PRIORITY or normal.",
    ),
) -> None:
    """Autodialer and voice dialogue robot over SIP."""
    try:
        settings = Settings.from_env()
    except ValueError as exc:  # a bad AUTOCALL_* value: say which, for every command
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    wanted = priority or settings.media_priority
    if wanted == "normal":
        return
    try:
        applied = raise_priority(wanted)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--priority") from None
    if applied != wanted:
        typer.echo(f"autocall: priority {wanted} refused, running at {applied}", err=True)


for _module in (audio, prompts, sip, call, campaign, demo, trees, web, webhooks):
    _module.register(app)


def main() -> None:
    app()
