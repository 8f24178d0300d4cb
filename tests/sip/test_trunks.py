"""Trunk presets and user trunk files: loading, validation with file:line:col, and the
settings they give calls (AUTOCALL_SIP_TRUNK). No network."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autocall.cli import app
from autocall.config import Settings, TrunkSettings
from autocall.sip.callerid import CallerIdStyle
from autocall.trunks import PRESETS_DIR, TrunkError, list_trunks, load_trunk


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("AUTOCALL_SIP_TRUNK", "AUTOCALL_SIP_HOST", "AUTOCALL_SIP_PORT",
                 "AUTOCALL_SIP_TRANSPORT", "AUTOCALL_SIP_USER", "AUTOCALL_SIP_PASSWORD",
                 "AUTOCALL_SIP_PASSWORD_FILE", "AUTOCALL_SIP_REGISTER",
                 "AUTOCALL_SIP_CALLER_ID_HEADER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AUTOCALL_SIP_TRUNKS_DIR", str(tmp_path / "trunks"))


def _write(tmp_path: Path, name: str, text: str) -> Path:
    folder = tmp_path / "trunks"
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return path


def test_every_preset_loads_and_says_its_style(tmp_path: Path) -> None:
    names = sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))
    assert {"generic-udp", "generic-tcp", "generic-tls", "generic-pai", "generic-rpid",
            "asterisk", "freeswitch", "kamailio"} <= set(names)
    trunks, problems = list_trunks()
    assert problems == [] and [t.name for t in trunks] == names
    by = {t.name: t for t in trunks}
    assert (by["generic-tls"].transport, by["generic-tls"].port) == ("tls", 5061)
    assert by["generic-pai"].caller_id_header is CallerIdStyle.PAI
    assert by["generic-rpid"].caller_id_header is CallerIdStyle.RPID
    assert by["asterisk"].register and by["asterisk"].caller_id_header is CallerIdStyle.FROM
    assert all(t.source == "preset" and t.host is None and t.description for t in trunks)


def test_a_user_file_starts_from_a_preset_and_wins_over_it(tmp_path: Path) -> None:
    _write(tmp_path, "office", "preset: asterisk\nhost: pbx.example.com\nuser: robot\n"
                               "password_env: PBX_PW\ncaller_id_header: P-Asserted-Identity\n")
    t = load_trunk("office")
    assert (t.source, t.host, t.port, t.transport, t.register) == (
        "user", "pbx.example.com", 5060, "udp", True)
    assert t.caller_id_header is CallerIdStyle.PAI and t.password_env == "PBX_PW"
    assert t.description.startswith("asterisk: ")
    _write(tmp_path, "kamailio", "transport: tcp\n")  # replaces the preset of that name
    trunks, _ = list_trunks()
    mine = [t for t in trunks if t.name == "kamailio"]
    assert len(mine) == 1 and mine[0].source == "user" and mine[0].transport == "tcp"


@pytest.mark.parametrize(("text", "expected"), [
    ("host: pbx.example.com\nregistr: yes\n",
     ":2:1: error: registr: unknown field; did you mean 'register'?"),
    ("port: 70000\n", ":1:7: error: port: Input should be less than or equal to 65535"),
    ("transport: sctp\n", ":1:12: error: transport: Input should be 'udp', 'tcp' or 'tls'"),
    ("caller_id_header: diversion\n", ":1:19: error: caller_id_header: caller-ID header "
                                      "'diversion': use from"),
    ("password: hunter2\n", ":1:1: error: password: a password never goes in a trunk file"),
    ("password_env: my-password\n", ":1:15: error: password_env: 'my-password' is not an "
                                     "environment variable name"),
    ("host: sip:pbx.example.com:5060\n", ":1:7: error: host: 'sip:pbx.example.com:5060' is "
                                          "not a host name"),
    ("caller_id: '+1 555'\n", ":1:12: error: caller_id: caller ID '+1 555' cannot be"),
    ("user: 'robot 1'\n", ":1:7: error: user: 'robot 1' cannot be a SIP URI user"),
    ("echo: 'call me'\n", ":1:7: error: echo: 'call me' is neither a number"),
    ("echo: 'sip:'\n", ":1:7: error: echo:"),
    ("description: \"bell\\a\"\n", ":1:14: error: description: control characters"),
    ("- a\n- b\n", ":1:1: error: a trunk file is a mapping"),
    ("host: [unclosed\n", ":1:7: error: YAML syntax"),
    ("preset: nothing-like-it\n", ":1:1: error: preset: no preset 'nothing-like-it'"),
])
def test_a_bad_trunk_file_is_named_by_file_line_and_column(tmp_path: Path, text: str,
                                                           expected: str) -> None:
    path = _write(tmp_path, "bad", text)
    with pytest.raises(TrunkError) as caught:
        load_trunk("bad")
    assert caught.value.problems[0].startswith(str(path)), caught.value.problems
    assert expected in caught.value.problems[0], caught.value.problems


def test_unknown_trunk_names_the_known_ones() -> None:
    with pytest.raises(TrunkError, match="no such trunk.*known: asterisk"):
        load_trunk("nope")
    with pytest.raises(TrunkError, match="not a trunk name"):
        load_trunk("Office PBX")
    with pytest.raises(TrunkError, match="no such trunk file"):
        load_trunk("/nonexistent/x.yaml")


def test_the_trunk_gives_the_settings_and_variables_still_win(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path, "office", "preset: generic-rpid\nhost: pbx.example.com\nport: 5070\n"
                               "register: true\nuser: robot\npassword_env: PBX_PW\n"
                               "echo: '600'\ncaller_id: '+15550100'\n")
    monkeypatch.setenv("PBX_PW", "s3cret")
    monkeypatch.setenv("AUTOCALL_SIP_TRUNK", "office")
    trunk = Settings.from_env().trunk
    assert (trunk.name, trunk.host, trunk.port, trunk.transport, trunk.user) == (
        "office", "pbx.example.com", 5070, "udp", "robot")
    assert trunk.register and trunk.password == "s3cret"
    assert trunk.caller_id_header is CallerIdStyle.RPID
    assert (trunk.echo, trunk.caller_id) == ("600", "+15550100")
    monkeypatch.setenv("AUTOCALL_SIP_PORT", "5080")
    monkeypatch.setenv("AUTOCALL_SIP_REGISTER", "0")
    monkeypatch.setenv("AUTOCALL_SIP_CALLER_ID_HEADER", "pai")
    trunk = TrunkSettings.from_env()
    assert trunk.port == 5080 and not trunk.register
    assert trunk.caller_id_header is CallerIdStyle.PAI


def test_a_bad_caller_id_header_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOCALL_SIP_CALLER_ID_HEADER", "x-caller")
    with pytest.raises(ValueError, match="AUTOCALL_SIP_CALLER_ID_HEADER: caller-ID header"):
        TrunkSettings.from_env()


def test_a_bad_trunk_named_by_the_environment_stops_every_command(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path, "office", "prot: 5060\n")
    monkeypatch.setenv("AUTOCALL_SIP_TRUNK", "office")
    result = CliRunner().invoke(app, ["sip", "trunks"])
    assert result.exit_code == 2
    assert f"{path}:1:1: error: prot: unknown field; did you mean 'port'?" in result.output
    assert "Traceback" not in result.output


def test_cli_lists_presets_and_own_files_as_json(tmp_path: Path) -> None:
    _write(tmp_path, "office", "preset: freeswitch\nhost: 192.0.2.10\n")
    result = CliRunner().invoke(app, ["sip", "trunks", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    by = {t["name"]: t for t in data["trunks"]}
    assert by["office"]["source"] == "user" and by["office"]["host"] == "192.0.2.10"
    assert by["office"]["register"] is True and by["generic-pai"]["caller_id_header"] == "pai"
    assert data["problems"] == []


def test_cli_lists_the_good_ones_and_names_a_bad_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "broken", "transport: carrier-pigeon\n")
    result = CliRunner().invoke(app, ["sip", "trunks"], env={"COLUMNS": "200"})
    assert result.exit_code == 1
    assert "generic-udp" in result.output
    assert f"{path}:1:12: error: transport:" in result.output


def test_check_refuses_a_trunk_without_a_host_before_sending_anything() -> None:
    result = CliRunner().invoke(app, ["sip", "check", "asterisk"])
    assert result.exit_code == 2
    assert "names no host" in result.output and "preset: asterisk" in result.output


def test_check_names_a_bad_trunk_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "office", "host: pbx.example.com\ntransport: smoke\n")
    result = CliRunner().invoke(app, ["sip", "check", "office"])
    assert result.exit_code == 2
    assert f"{path}:2:12: error: transport:" in result.output and "Traceback" not in result.output


def test_check_refuses_a_bad_caller_id_or_echo(tmp_path: Path) -> None:
    _write(tmp_path, "office", "host: 127.0.0.1\n")
    result = CliRunner().invoke(app, ["sip", "check", "office", "--caller-id", "+1\r\nX: y"])
    assert result.exit_code == 2 and "cannot be a SIP URI user" in result.output
    result = CliRunner().invoke(app, ["sip", "check", "office", "--echo", "sip:"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    result = CliRunner().invoke(app, ["sip", "check", "office", "--echo", "6 0 0"])
    assert result.exit_code == 2 and "neither a number" in result.output
