from __future__ import annotations

from typer.testing import CliRunner

from autocall import __version__
from autocall.cli import app


def test_version_and_help() -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "Example" in result.output
