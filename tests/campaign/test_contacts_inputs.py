"""Issue 13 (campaign side) and issue 12 items 5 and 11, through the real CLI and a real
SQLite file: contact lists as CRMs and spreadsheets write them, DNC files as people type
them, text from files that must not drive the terminal, and campaigns whose tree is
broken. Each test failed on main before this branch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autocall.campaign.contacts import read_contacts
from autocall.campaign.model import ContactColumns
from autocall.cli import app

TREE = """\
name: hello
contact_fields: [first_name]
start: hello
nodes:
  hello:
    say: "Hello {first_name}, this is a test."
    next: bye
  bye:
    hangup: completed
"""

CAMPAIGN = """\
name: inputs
tree: tree.yaml
contacts: [contacts.csv]
columns:
  phone: phone
default_region: US
caller_ids: ["+12025550100"]
window:
  days: [mon, tue, wed, thu, fri, sat, sun]
  start: "00:00"
  end: "23:59:59.999999"
  override_legal_hours: true
channels: 2
calls_per_second: 100
dnc: [dnc.txt]
"""


def _setup(
    tmp: Path, csv: bytes | str, *, dnc: str = "", campaign: str = CAMPAIGN, tree: str = TREE
) -> Path:
    (tmp / "tree.yaml").write_text(tree, encoding="utf-8")
    data = csv.encode("utf-8") if isinstance(csv, str) else csv
    (tmp / "contacts.csv").write_bytes(data)
    (tmp / "dnc.txt").write_text(dnc, encoding="utf-8")
    path = tmp / "campaign.yaml"
    path.write_text(campaign, encoding="utf-8")
    return path


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"traceback: {result.exception!r}\n{result.output}"
    )
    return result.exit_code, result.output


def _db(tmp: Path) -> str:
    return f"sqlite:///{tmp / 'store.db'}"


def _contacts(tmp: Path, name: str = "inputs") -> list[dict[str, object]]:
    code, out = _run("campaign", "contacts", name, "--db", _db(tmp), "--json")
    assert code == 0, out
    rows: list[dict[str, object]] = json.loads(out.splitlines()[0])
    return rows


# --- encodings and delimiters ---------------------------------------------------------


def test_latin1_contact_file_imports_the_right_names(tmp_path: Path) -> None:
    """Compliance: the robot speaks the name; 'Bj\ufffdrn' is a wrong name spoken."""
    csv = "phone,first_name\n+1 202 555 0143,Björn\n+1 212 555 0187,Zoë\n".encode("latin-1")
    yaml = _setup(tmp_path, csv)
    code, out = _run("campaign", "import", str(yaml), "--db", _db(tmp_path))
    assert code == 0, out
    assert "latin-1" in out.lower() or "cp1252" in out.lower()  # the user is told
    names = sorted(str(c["fields"]["first_name"]) for c in _contacts(tmp_path))  # type: ignore[index]
    assert names == ["Björn", "Zoë"]


@pytest.mark.parametrize(
    ("encoding", "text"),
    [
        ("cp1252", "phone;first_name\r\n+1 202 555 0143;Ren\u00e9e \u2019Smith\u2019\r\n"),
        ("utf-8-sig", "phone\tfirst_name\n+1 202 555 0143\tRen\u00e9e \u2019Smith\u2019\n"),
        ("utf-16", "phone,first_name\n+1 202 555 0143,Ren\u00e9e \u2019Smith\u2019\n"),
    ],
)
def test_encodings_and_delimiters_are_detected(tmp_path: Path, encoding: str, text: str) -> None:
    path = tmp_path / "c.csv"
    path.write_bytes(text.encode(encoding))
    result = read_contacts(path)
    assert [c.fields["first_name"] for c in result.contacts] == ["Ren\u00e9e \u2019Smith\u2019"]
    assert not result.rejected


def test_binary_file_is_refused_naming_byte_and_row(tmp_path: Path) -> None:
    yaml = _setup(tmp_path, b"phone,first_name\n+12025550143,Ada\n\x00\x01\x02PK\n")
    code, out = _run("campaign", "validate", str(yaml))
    assert code == 1
    assert "contacts.csv:3:1: error: byte 0x00 is not text" in out


# --- columns, extensions, duplicates, country -----------------------------------------


def test_headers_are_mapped_and_extensions_kept(tmp_path: Path) -> None:
    csv = "Phone Number,First Name\n+1 202 555 0143 ext. 23,Ada\n212-555-0187 x12,Alan\n"
    campaign = CAMPAIGN.replace(
        "  phone: phone\n", '  phone: "Phone Number"\n  first_name: "First Name"\n'
    )
    yaml = _setup(tmp_path, csv, campaign=campaign)
    code, out = _run("campaign", "validate", str(yaml), "--json")
    data = json.loads(out)
    assert data["ok"] is True and data["contacts"] == 2, data
    assert sum("extension 23 kept" in p for p in data["problems"]) == 1
    code, out = _run("campaign", "import", str(yaml), "--db", _db(tmp_path), "--json")
    assert code == 0, out
    rows = {c["number"]: c["fields"] for c in _contacts(tmp_path)}
    assert rows["+12025550143"] == {
        "Phone Number": "+1 202 555 0143 ext. 23",
        "First Name": "Ada",
        "first_name": "Ada",
        "extension": "23",
    }
    assert rows["+12125550187"]["extension"] == "12"  # type: ignore[index]


def test_every_duplicate_is_listed_in_the_rejects_report(tmp_path: Path) -> None:
    csv = (
        "phone,first_name\n+12025550143,A\n(202) 555-0143,B\n202.555.0143,C\n"
        "+12125550187,D\n212 555 0187,E\n"
    )
    yaml = _setup(tmp_path, csv)
    rejects = tmp_path / "rejects.csv"
    code, out = _run(
        "campaign", "import", str(yaml), "--db", _db(tmp_path), "--rejects", str(rejects)
    )
    assert code == 0, out
    lines = rejects.read_text().splitlines()[1:]
    assert [line.split(",")[1] for line in lines] == ["3", "4", "6"]
    assert all("duplicate of" in line for line in lines)
    assert "contacts.csv:2" in lines[0]  # names the row it repeats


def test_per_row_country_reads_uk_and_german_national_numbers(tmp_path: Path) -> None:
    csv = (
        "phone,first_name,Country\n"
        "020 7946 0958,Tim,GB\n"
        "0171 1234567,Jana,DE\n"
        "(202) 555-0143,Ada,\n"
        "0171 1234567,X,Narnia\n"
    )
    campaign = CAMPAIGN.replace("  phone: phone\n", "  phone: phone\n  country: Country\n")
    yaml = _setup(tmp_path, csv, campaign=campaign)
    code, out = _run("campaign", "import", str(yaml), "--db", _db(tmp_path), "--json")
    assert code == 0, out
    data = json.loads(out)
    numbers = sorted(str(c["number"]) for c in _contacts(tmp_path))
    assert numbers == ["+12025550143", "+442079460958", "+491711234567"]
    (bad,) = data["rejected"]
    assert bad["row"] == 5 and bad["column"] == 3 and "Narnia" in bad["reason"]


# --- DNC ------------------------------------------------------------------------------


def test_international_dnc_line_blocks_the_contact(tmp_path: Path) -> None:
    """Compliance: '0049 171 1234567' in a US list is +49 171 1234567: never dial it."""
    csv = "phone,first_name\n+49 171 1234567,Jana\n+1 202 555 0143,Ada\n"
    yaml = _setup(tmp_path, csv, dnc="0049 171 1234567\n")
    db = _db(tmp_path)
    code, out = _run("campaign", "import", str(yaml), "--db", db, "--json")
    assert code == 0, out
    assert json.loads(out)["dnc"] == 1
    _run("campaign", "resume", "inputs", "--db", db)
    code, out = _run("campaign", "explain", "inputs", "+491711234567", "--db", db)
    assert code == 1 and "do-not-call list" in out, out
    code, out = _run("campaign", "status", "inputs", "--db", db, "--json")
    status = json.loads(out)
    assert status["due"] == 1 and status["due_but_dnc"] == 1
    assert status["dialer_attached"] is False
    code, out = _run(
        "campaign", "run", "inputs", "--db", db, "--placer", "farend:answer_all", "--json"
    )
    assert code == 0, out
    code, out = _run("campaign", "status", "inputs", "--db", db, "--json")
    assert json.loads(out)["outcomes"] == {"completed": 1, "dnc": 1}


def test_every_unreadable_dnc_line_is_reported(tmp_path: Path) -> None:
    dnc = (
        "# opt-outs\n+12025550143\ngarbage\n\n555-0100\n  +44 20 7946 0958  # ok\n"
        "12345678901234567890\n"
    )
    yaml = _setup(tmp_path, "phone,first_name\n+12125550187,A\n", dnc=dnc)
    code, out = _run("campaign", "validate", str(yaml), "--json")
    assert code == 1
    found = [p for p in json.loads(out)["findings"] if p["code"] == "dnc"]
    assert [(p["line"], p["severity"]) for p in found] == [(3, "error"), (5, "error"), (7, "error")]
    assert all(p["file"].endswith("dnc.txt") for p in found)
    # explain must not call anyone dialable while the DNC list cannot be read in full
    db = _db(tmp_path)
    code, out = _run("campaign", "import", str(yaml), "--db", db)
    assert code == 1 and "dnc.txt:3:1: error:" in out  # import refuses too
    code, out = _run("campaign", "list", "--db", db, "--json")
    assert json.loads(out) == []


# --- markup and control codes (issue 12 item 5) ---------------------------------------


def test_markup_and_escape_codes_from_a_file_never_reach_the_terminal(tmp_path: Path) -> None:
    csv = (
        "phone,first_name,\x1b]0;pwned\x07note\n"
        "[/red],Ada,x\n"
        "+12025550143,[bold]Bob[/bold],\x1b[2J\n"
        "+1 212 555 0187,Eve,[/red]\n"
    )
    yaml = _setup(tmp_path, csv)
    code, out = _run("campaign", "validate", str(yaml))
    assert code == 1, out
    assert "'[/red]' is not a number" in out
    assert "\x1b" not in out and "\x07" not in out
    db = _db(tmp_path)
    code, out = _run("campaign", "import", str(yaml), "--db", db)
    assert code == 0, out
    assert "\x1b" not in out and "[/red]" in out
    code, out = _run("campaign", "contacts", "inputs", "--db", db)
    assert code == 0, out
    assert "\x1b" not in out and "\x07" not in out and "\\x1b" in out
    rows = {str(c["number"]): c["fields"] for c in _contacts(tmp_path)}
    assert rows["+12025550143"]["first_name"] == "[bold]Bob[/bold]"  # type: ignore[index]


def test_import_does_not_half_commit(tmp_path: Path) -> None:
    """A second list that cannot be read: nothing of the campaign is stored."""
    campaign = CAMPAIGN.replace("contacts: [contacts.csv]", "contacts: [contacts.csv, b.csv]")
    yaml = _setup(tmp_path, "phone,first_name\n+12025550143,Ada\n", campaign=campaign)
    (tmp_path / "b.csv").write_text("tel,first_name\n+12125550187,Bob\n")
    db = _db(tmp_path)
    code, out = _run("campaign", "import", str(yaml), "--db", db)
    assert code == 1 and "b.csv:1:1: error: no column 'phone'" in out
    code, out = _run("campaign", "list", "--db", db, "--json")
    assert json.loads(out) == []


# --- the tree (issue 12 item 11) ------------------------------------------------------


def test_campaign_with_a_dangling_next_is_refused(tmp_path: Path) -> None:
    tree = TREE.replace("next: bye", "next: byee")
    yaml = _setup(tmp_path, "phone,first_name\n+12025550143,Ada\n", tree=tree)
    code, out = _run("campaign", "validate", str(yaml))
    assert code == 1
    assert (
        "tree.yaml:7:11: error: target 'byee' is not a node of this tree; did you mean 'bye'?"
    ) in out
    db = _db(tmp_path)
    code, out = _run("campaign", "import", str(yaml), "--db", db)
    assert code == 1 and "not imported" in out
    code, out = _run("campaign", "list", "--db", db, "--json")
    assert json.loads(out) == []


def test_a_field_the_tree_uses_must_be_a_column(tmp_path: Path) -> None:
    yaml = _setup(tmp_path, "phone,given\n+12025550143,Ada\n")
    code, out = _run("campaign", "import", str(yaml), "--db", _db(tmp_path))
    assert code == 1
    assert "{first_name} is not a column of the contacts" in out


# --- campaign YAML --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "where", "words"),
    [
        (
            lambda t: t.replace(
                "  override_legal_hours: true\n",
                "  override_legal_hours: true\n  holidays: [2026-11-31]\n",
            ),
            "campaign.yaml:13:14: error:",
            "write a real date",
        ),
        (
            lambda t: t.replace("name: inputs", "name: inputs  # Café crème"),
            "campaign.yaml:1:",
            "save it as UTF-8",
        ),
        (
            lambda t: (
                "a: &a [x, x, x, x, x, x, x, x, x]\n"
                + "".join(
                    f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
                    for p, c in zip("abcdefgh", "bcdefghi", strict=True)
                )
                + t
            ),
            "campaign.yaml:",
            "alias",
        ),
    ],
)
def test_campaign_yaml_errors_name_file_line_col(
    tmp_path: Path, edit: object, where: str, words: str
) -> None:
    assert callable(edit)
    text = edit(CAMPAIGN)
    yaml = _setup(tmp_path, "phone,first_name\n+12025550143,Ada\n")
    yaml.write_bytes(text.encode("latin-1"))
    code, out = _run("campaign", "validate", str(yaml))
    assert code == 2, out
    assert where in out and words in out, out


# --- status, stop, list, contacts -----------------------------------------------------


def test_stop_asks_and_list_and_contacts_show_the_store(tmp_path: Path) -> None:
    yaml = _setup(tmp_path, "phone,first_name\n+12025550143,Ada\n+12125550187,Alan\n")
    db = _db(tmp_path)
    assert _run("campaign", "import", str(yaml), "--db", db)[0] == 0
    assert _run("campaign", "resume", "inputs", "--db", db)[0] == 0
    code, out = _run("campaign", "status", "inputs", "--db", db)
    assert code == 0 and "no dialer attached" in out
    code, out = _run("campaign", "stop", "inputs", "--db", db)
    assert code == 2 and "--yes" in out
    code, out = _run("campaign", "list", "--db", db, "--json")
    assert json.loads(out) == [
        {
            "name": "inputs",
            "state": "running",
            "contacts": 2,
            "pending": 2,
            "done": 0,
            "attempts": 0,
        }
    ]
    code, out = _run("campaign", "stop", "inputs", "--db", db, "--yes")
    assert code == 0 and "stopped" in out
    rows = _contacts(tmp_path)
    assert [r["number"] for r in rows] == ["+12025550143", "+12125550187"]
    code, out = _run("campaign", "contacts", "inputs", "--db", db, "--search", "alan", "--json")
    assert [r["number"] for r in json.loads(out)] == ["+12125550187"]


def test_columns_mapping_is_read_by_read_contacts(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("Tel;Vorname\n+49 171 1234567;Jürgen\n", encoding="utf-8")
    cols = ContactColumns.model_validate({"phone": "Tel", "first_name": "Vorname"})
    (contact,) = read_contacts(path, columns=cols).contacts
    assert contact.fields["first_name"] == "Jürgen"


# --- report on a fresh campaign -------------------------------------------------------


def test_report_on_a_fresh_campaign(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No negative chart axis, and the import summary (added, duplicates, rejected, DNC)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    csv = "phone,first_name\n+12025550143,A\n202-555-0143,B\nnope,C\n+12125550187,D\n"
    yaml = _setup(tmp_path, csv, dnc="+1 212 555 0187\n")
    db = _db(tmp_path)
    assert _run("campaign", "import", str(yaml), "--db", db)[0] == 0
    figures: list[object] = []
    real_close = plt.close

    def keep(fig: object = None) -> None:
        figures.append(fig)
        real_close(fig)  # type: ignore[arg-type]

    monkeypatch.setattr(plt, "close", keep)
    code, out = _run(
        "campaign",
        "report",
        "inputs",
        "--db",
        db,
        "--format",
        "json",
        "--charts",
        str(tmp_path / "charts"),
    )
    assert code == 0, out
    report = json.loads(out[out.index("{") :])
    assert report["imported"] == {"added": 2, "duplicates": 1, "rejected": 1, "dnc": 1}
    assert len(figures) == 2
    for fig in figures:
        (ax,) = fig.axes  # type: ignore[attr-defined]
        assert ax.get_ylim()[0] == 0


def test_status_does_not_count_out_of_window_contacts_as_due(tmp_path: Path) -> None:
    """A fresh contact whose calling day is not today (in its zone) is not 'due'."""
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    # New York and Los Angeles share the weekday except in the hours around midnight;
    # take out both their weekdays today so the answer does not depend on the hour.
    today = {
        days[datetime.now(UTC).astimezone(ZoneInfo(z)).weekday()]
        for z in ("America/New_York", "America/Los_Angeles")
    }
    open_days = [d for d in days if d not in today]
    campaign = CAMPAIGN.replace(
        "[mon, tue, wed, thu, fri, sat, sun]", "[" + ", ".join(open_days) + "]"
    )
    yaml = _setup(tmp_path, "phone,first_name\n+12125550187,A\n+14155550132,B\n", campaign=campaign)
    db = _db(tmp_path)
    assert _run("campaign", "import", str(yaml), "--db", db)[0] == 0
    code, out = _run("campaign", "status", "inputs", "--db", db, "--json")
    status = json.loads(out)
    assert (status["pending"], status["due"], status["due_but_outside_window"]) == (2, 0, 2)


def test_explain_never_says_dialable_while_a_dnc_line_is_unreadable(tmp_path: Path) -> None:
    yaml = _setup(tmp_path, "phone,first_name\n+12025550143,Ada\n", dnc="+12125550187\n")
    db = _db(tmp_path)
    assert _run("campaign", "import", str(yaml), "--db", db)[0] == 0
    assert _run("campaign", "resume", "inputs", "--db", db)[0] == 0
    code, out = _run("campaign", "explain", "inputs", "+12025550143", "--db", db)
    assert code == 0, out  # open window, running, not on the list: dialable
    with open(tmp_path / "dnc.txt", "a", encoding="utf-8") as fh:
        fh.write("202 555 O143\n")  # a letter O typed for a zero: it may be this person
    code, out = _run("campaign", "explain", "inputs", "+12025550143", "--db", db)
    assert code == 1, out
    assert "dnc.txt:2:1: error: '202 555 O143'" in out
