"""The `autocall` command line.

Each command group lives in its own module with a ``register(app)`` function, so the
layers' commands are written and tested apart. Exit codes: 0 ok, 1 the work found
problems (invalid tree, failed call…), 2 usage or input errors.
"""

from __future__ import annotations

import typer

from autocall import __version__
from autocall.cli import audio, call, campaign, demo, prompts, sip

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
) -> None:
    """Autodialer and voice dialogue robot over SIP."""


for _module in (audio, prompts, sip, call, campaign, demo):
    _module.register(app)


def main() -> None:
    app()
