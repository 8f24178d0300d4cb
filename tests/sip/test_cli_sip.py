"""`autocall sip options` against a real Kamailio, and against nothing."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from autocall.cli import app
from tests.peers import Kamailio

pytestmark = [pytest.mark.peers, pytest.mark.timeout(60)]


def test_options_ok_json() -> None:
    with Kamailio(port=20400, users={"x": "y"}):
        result = CliRunner().invoke(app, ["sip", "options", "127.0.0.1:20400", "--json",
                                          "--bind", "127.0.0.1:0"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["ok"] is True and data["status"] == 200 and data["rtt_ms"] >= 0


def test_options_no_answer_exits_1() -> None:
    result = CliRunner().invoke(app, ["sip", "options", "sip:127.0.0.1:20404", "--timeout",
                                      "1", "--bind", "127.0.0.1:0"])
    assert result.exit_code == 1, result.output
    assert "408" in result.output


def test_options_bad_target_exits_2() -> None:
    result = CliRunner().invoke(app, ["sip", "options", "sip:bad host::"])
    assert result.exit_code == 2
