"""`autocall demo`: a real campaign against virtual phones on 127.0.0.1.

Everything is the production path: the campaign YAML and contact CSV are written to the
output folder and imported like a user's, the dialer claims contacts from a SQLite
store, our SIP user agent dials each number, and the prompt tree runs over RTP with
espeak-ng speech. Only the callees are virtual: scripted phones (real SIP and RTP) that
answer and press keys (RFC 4733 and in-band), are busy, ring out, decline, hang up
early or fail, so every outcome and retry shows up in the report.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from autocall.campaign.contacts import import_campaign
from autocall.campaign.dialer import Finished, run_campaign
from autocall.campaign.dialer import Progress as DialerProgress
from autocall.campaign.model import Attempt, load_campaign
from autocall.campaign.placer import SipPlacer, load_tree
from autocall.campaign.report import Report, campaign_report, write_cdr
from autocall.campaign.store import Store
from autocall.speech.cache import engine_of
from autocall.speech.tts import default_engines, missing_engines
from autocall.telephony.call import UserAgent
from autocall.telephony.runner import AudioCache, prompts_of
from autocall.telephony.virtual import Behaviour, PhoneScript, VirtualPhones

DB_NAME = "autocall.db"  # the store every `autocall campaign …` command opens by default
WORK_DIR = Path(".autocall")  # demo inputs and the TTS cache, under --out
CSV_NAME = "autocall-demo-calls.csv"

TREE_YAML = """\
# The demo's prompt tree: a two-question satisfaction survey by touch tones.
name: demo-survey
language: en
start: hello
transfer_targets: []
nodes:
  hello:
    say: "Hello {first_name}, this is Example Energy with a short survey."
    next: menu
  menu:
    menu:
      prompt: >-
        If you are happy with our service, press 1. If not, press 2.
        To stop these calls, press 9.
      items: {1: happy, 2: score, 9: opt_out}
      timeout: 3
      retries: 0
    on_failure: no_answer
  happy:
    set: {satisfied: "yes"}
    next: thanks
  score:
    gather:
      prompt: "Sorry to hear that. From 0 to 9, how likely are you to stay with us?"
      max_digits: 1
      variable: score
      first_timeout: 4
      retries: 0
    next: thanks
    on_failure: thanks
  thanks:
    say: "Thank you, goodbye."
  opt_out:
    say: "You will not be called again. Goodbye."
    next: done_opt_out
  done_opt_out:
    hangup: opt-out
  no_answer:
    hangup: no-input
"""

CAMPAIGN_YAML = """\
# The demo campaign: about 20 virtual phones on 127.0.0.1, each with its own behaviour.
name: {name}
tree: demo-tree.yaml
contacts: [demo-contacts.csv]
columns: {{phone: phone, timezone: timezone}}
default_region: US
caller_ids: ["+12025550100"]
window:
  days: [mon, tue, wed, thu, fri, sat, sun]
  start: "09:00"                    # each contact's local time; inside the legal 08-21
  end: "20:00"
channels: {channels}
calls_per_second: 10
ring_timeout: 3
retry:
  max_attempts: 2
  delays: {{busy: 2s, no-answer: 2s, failed: 2s, unreachable: 2s, hung-up-early: 2s}}
recording: false
"""

_NAMES = ["Ada", "Alan", "Grace", "Tim", "Edsger", "Barbara", "Donald", "Frances", "John",
          "Margaret", "Dennis", "Radia", "Ken", "Hedy", "Linus", "Shafi", "Guido", "Sophie",
          "Niklaus", "Karen", "Claude", "Joan", "Vint", "Lynn"]
# Zones tried for contacts so the window is open now wherever the demo runs.
_ZONES = ["America/New_York", "America/Chicago", "America/Los_Angeles", "Pacific/Honolulu",
          "Europe/London", "Europe/Berlin", "Asia/Kolkata", "Asia/Tokyo", "Australia/Sydney",
          "Pacific/Auckland", "America/Sao_Paulo", "Asia/Singapore"]


@dataclass(frozen=True)
class Persona:
    """One demo callee: what it does on each call, and what the report should say."""

    label: str
    scripts: tuple[PhoneScript, ...]
    expect: str  # the contact's final outcome


def _ans(digits: str = "", dtmf: str = "rfc4733") -> PhoneScript:
    return PhoneScript(Behaviour.ANSWER, digits=digits, dtmf=dtmf, ring_seconds=0.4)


_PERSONAS = [
    Persona("happy (RFC 4733)", (_ans("1"),), "completed"),
    Persona("happy (in-band)", (_ans("1", "inband"),), "completed"),
    Persona("unhappy, scores 7", (_ans("27"),), "completed"),
    Persona("happy (RFC 4733)", (_ans("1"),), "completed"),
    Persona("busy, then happy", (PhoneScript(Behaviour.BUSY), _ans("1")), "completed"),
    Persona("opts out", (_ans("9"),), "opt-out"),
    Persona("never answers", (PhoneScript(Behaviour.NO_ANSWER),), "no-answer"),
    Persona("unhappy, scores 3 (in-band)", (_ans("23", "inband"),), "completed"),
    Persona("declines (603)", (PhoneScript(Behaviour.DECLINE, ring_seconds=0.6),), "declined"),
    Persona("listens, presses nothing", (_ans(),), "completed"),
    Persona("happy (in-band)", (_ans("1", "inband"),), "completed"),
    Persona("always busy", (PhoneScript(Behaviour.BUSY),), "busy"),
    Persona("hangs up early, then happy",
            (PhoneScript(Behaviour.HANGUP_EARLY, hangup_after=1.0, ring_seconds=0.3), _ans("1")),
            "completed"),
    Persona("happy (RFC 4733)", (_ans("1"),), "completed"),
    Persona("trunk error (503)", (PhoneScript(Behaviour.FAIL, ring_seconds=0.2),),
            "unreachable"),
    Persona("unhappy, scores 9", (_ans("29"),), "completed"),
    Persona("no answer, then happy", (PhoneScript(Behaviour.NO_ANSWER), _ans("1")),
            "completed"),
    Persona("opts out (in-band)", (_ans("9", "inband"),), "opt-out"),
    Persona("happy (RFC 4733)", (_ans("1"),), "completed"),
    Persona("hangs up early", (PhoneScript(Behaviour.HANGUP_EARLY, hangup_after=1.5),),
            "hung-up-early"),
]


def _open_zones(now: dt.datetime) -> list[str]:
    """Zones where it is between 10:00 and 19:00 now (the window is 09-20 local)."""
    good = [z for z in _ZONES if 10 <= now.astimezone(ZoneInfo(z)).hour < 19]
    return good or ["UTC"]


def _number(i: int) -> str:
    return f"+1202555{100 + i:04d}"  # 555-01xx: reserved for fiction in the NANP


def campaign_name(now: dt.datetime) -> str:
    """One campaign per demo run, so a run never touches earlier campaigns in the store."""
    return f"demo-{now:%Y%m%d-%H%M%S}"


def write_demo_files(out: Path, contacts: int, channels: int, now: dt.datetime,
                     name: str) -> tuple[Path, dict[str, Persona]]:
    """Tree, contacts CSV and campaign YAML in ``out``; returns the campaign file and cast."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "demo-tree.yaml").write_text(TREE_YAML, encoding="utf-8")
    zones = _open_zones(now)
    cast: dict[str, Persona] = {}
    with (out / "demo-contacts.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["phone", "first_name", "timezone", "persona"])
        for i in range(contacts):
            persona = _PERSONAS[i % len(_PERSONAS)]
            number = _number(i + 1)
            cast[number] = persona
            writer.writerow([number, _NAMES[i % len(_NAMES)], zones[i % len(zones)],
                             persona.label])
    path = out / "demo-campaign.yaml"
    path.write_text(CAMPAIGN_YAML.format(name=name, channels=channels), encoding="utf-8")
    return path, cast


async def run_demo(out: Path, contacts: int, channels: int, console: Console,
                   quiet: bool = False) -> dict[str, Any]:
    """Run the demo campaign; returns the report as a dict (also printed unless quiet)."""
    now = dt.datetime.now(dt.UTC)
    name = campaign_name(now)
    campaign_file, cast = write_demo_files(out / WORK_DIR / "demo", contacts, channels, now,
                                           name)
    db_path = out / DB_NAME
    campaign = load_campaign(campaign_file)
    store = Store(f"sqlite:///{db_path}")
    started = time.monotonic()
    try:
        store.migrate()
        imported = await asyncio.to_thread(import_campaign, store, campaign)
        audio = AudioCache(out / WORK_DIR / "tts-cache")
        await _render_prompts(campaign, store, name, audio, console, quiet)
        book = {number: persona.scripts for number, persona in cast.items()}
        async with VirtualPhones(book, host="127.0.0.1") as phones:
            ua = await UserAgent.start(bind_host="127.0.0.1", user="autocall-demo")
            placer = SipPlacer(ua, target=f"sip:{{number}}@127.0.0.1:{phones.port}",
                               audio=audio, recordings_dir=out / "recordings")
            if not quiet:
                console.print(f"[bold]autocall demo[/]: campaign {name}, {imported.added} "
                              f"contacts, virtual phones at sip:127.0.0.1:{phones.port}, "
                              f"store {db_path}")
            try:
                await _dial(campaign, store, placer, console, cast, phones, quiet)
            finally:
                await ua.close()
        csv_path = out / CSV_NAME
        attempts = await asyncio.to_thread(store.attempts, name)
        stats = await asyncio.to_thread(campaign_report, store, name)
        await asyncio.to_thread(write_cdr, store, name, csv_path)
    finally:
        store.close()
    report = _report(attempts, cast, stats, time.monotonic() - started)
    report.update(campaign=name, database=str(db_path), csv=str(csv_path),
                  campaign_file=str(campaign_file))
    if not quiet:
        _print_report(console, report)
    return report


async def _render_prompts(campaign: Any, store: Store, name: str, audio: AudioCache,
                          console: Console, quiet: bool) -> None:
    """Every contact's prompts, rendered before the first call (TTS is a cache)."""
    tree = load_tree(campaign.tree)
    contacts = await asyncio.to_thread(store.contacts, name)
    prompts = list(dict.fromkeys(p for c in contacts for p in prompts_of(tree, dict(c.fields))))
    columns = (TextColumn("[bold blue]rendering prompts"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=console, transient=True, disable=quiet) as bar:
        task = bar.add_task("tts", total=len(prompts))
        for prompt in prompts:
            for error in await audio.warm([prompt]):  # the call says nothing there, goes on
                console.print(f"[yellow]prompt not rendered:[/] {error}")
            bar.advance(task)
    spoke = Counter(engine_of(p) for p in audio.tts_cache_dir.glob("*.wav"))
    if not quiet and spoke:  # piper when installed (natural, offline); else gTTS or espeak-ng
        console.print("voice: " + ", ".join(f"{n} prompts by {e}" for e, n in spoke.items()))
        for note in missing_engines(default_engines()):  # no piper: how to get the natural voice
            console.print(f"[yellow]note:[/] {note}", highlight=False)


async def _dial(campaign: Any, store: Store, placer: SipPlacer, console: Console,
                cast: dict[str, Persona], phones: VirtualPhones, quiet: bool) -> None:
    columns = (TextColumn("[bold blue]dialing"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[detail]}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True, disable=quiet) as bar:
        task = bar.add_task("campaign", total=len(cast), detail="")

        def on_progress(p: DialerProgress) -> None:
            detail = (f"dialed {p.dialed} · answered {p.answered} · in progress "
                      f"{p.in_progress} · waiting {p.waiting}")
            if p.idle and p.in_progress == 0:
                detail += f" · {p.idle}"
            bar.update(task, completed=p.done, total=p.total or len(cast), detail=detail)

        def on_record(f: Finished) -> None:
            if quiet:
                return
            who = cast.get(f.number)
            digits = f" keys {f.result.digits}" if f.result.digits else ""
            logs = [c for c in phones.calls if c.number == f.number]
            heard = f"heard {logs[-1].voiced_seconds:4.1f} s" if logs and logs[-1].answered_at \
                else ""
            console.print(f"  {f.number}  try {f.attempt_no}  {f.outcome.value:<14}"
                          f"{digits:<9} {heard:<13} [dim]{who.label if who else ''}[/]")

        await run_campaign(campaign, store, placer, node="demo", progress=on_progress,
                           on_record=on_record, poll=0.2)


def _report(attempts: list[Attempt], cast: dict[str, Persona], stats: Report,
            seconds: float) -> dict[str, Any]:
    """The campaign report plus the demo's own check: did each persona end as scripted?"""
    final: dict[str, Attempt] = {}
    for a in attempts:
        final[a.number] = a  # attempts come in id order: the last one is the final word
    mismatches = []
    for number, persona in cast.items():
        last = final.get(number)
        got = last.outcome.value if last is not None and last.outcome is not None else None
        if got != persona.expect:
            mismatches.append({"number": number, "persona": persona.label,
                               "expected": persona.expect, "got": got})
    choices = Counter(a.path[2] for a in attempts if len(a.path) > 2)
    return {
        "contacts": stats.contacts, "attempts": stats.attempts, "answered": stats.answered,
        "answer_rate": round(stats.answer_rate or 0.0, 3),
        "completion_rate": round(stats.completion_rate or 0.0, 3),
        "average_handle_seconds": (round(stats.average_handle_time, 1)
                                   if stats.average_handle_time is not None else None),
        "outcomes": dict(sorted(stats.contacts_by_outcome.items())),
        "attempts_by_status": stats.by_status,
        "menu_choices": dict(sorted(choices.items())),
        "scores": [a.variables["score"] for a in attempts if a.variables.get("score")],
        "seconds": round(seconds, 1), "unexpected": mismatches,
    }


def _print_report(console: Console, report: dict[str, Any]) -> None:
    table = Table(title=f"{report['campaign']}: contacts by final outcome")
    table.add_column("outcome")
    table.add_column("contacts", justify="right")
    for outcome, count in report["outcomes"].items():
        table.add_row(outcome, str(count))
    console.print(table)
    console.print(f"{report['attempts']} calls to {report['contacts']} contacts, "
                  f"{report['answered']} answered ({report['answer_rate']:.0%}), completion "
                  f"{report['completion_rate']:.0%}, average handle time "
                  f"{report['average_handle_seconds']} s, in {report['seconds']} s")
    console.print(f"menu choices: {report['menu_choices']}; scores given: {report['scores']}")
    for m in report["unexpected"]:
        console.print(f"[red]unexpected:[/] {m['number']} ({m['persona']}) ended "
                      f"{m['got']}, expected {m['expected']}")
    console.print(f"store: {report['database']}   call records: {report['csv']}")
    db = "" if report["database"] == DB_NAME else f" --db sqlite:///{report['database']}"
    console.print(f"again: autocall campaign report {report['campaign']}{db}")


def serve_demo_console(db_path: Path, port: int, console: Console) -> None:
    """The console on the demo's store, with a new admin whose password is printed once."""
    import secrets

    from autocall.cli.web import serve
    from autocall.web import accounts

    with Store(f"sqlite:///{db_path}") as store:
        taken = {u.name for u in accounts.list_users(store.engine)}
        name = "admin" if "admin" not in taken else f"admin-{secrets.token_hex(2)}"
        password = secrets.token_urlsafe(12)
        accounts.add_user(store.engine, name, accounts.Role.ADMIN, password)
        console.print(f"[bold]console:[/] http://127.0.0.1:{port}/  user [bold]{name}[/]  "
                      f"password [bold]{password}[/]  (shown once; Ctrl-C stops the console)")
        serve(store, host="127.0.0.1", port=port, worker=None)


_HERE = Path(".")


def register(app: typer.Typer) -> None:
    """Add ``autocall demo`` to the root app."""

    @app.command("demo")
    def demo(
        out: Annotated[Path, typer.Option(
            "--out", help="Folder for the SQLite store, CSV export and the campaign files.")
        ] = _HERE,
        contacts: Annotated[int, typer.Option(
            "--contacts", min=1, max=200, help="How many virtual contacts to dial.")] = 20,
        channels: Annotated[int, typer.Option(
            "--channels", min=1, max=200, help="Concurrent calls.")] = 20,
        as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
        verbose: Annotated[bool, typer.Option(
            "--verbose", "-v", help="Log SIP and media warnings.")] = False,
        web: Annotated[bool, typer.Option(
            "--web", help="Then serve the web console on the demo's store (an admin login "
            "is printed once) until Ctrl-C.")] = False,
        port: Annotated[int, typer.Option(
            "--port", min=1, max=65535, help="The console's port with --web.")] = 8080,
    ) -> None:
        """Run a real campaign against virtual phones on 127.0.0.1 and print the report.

        Each run is a new campaign (demo-<time>) in the SQLite store autocall.db, the
        default store of `autocall campaign …`; the call records go to
        autocall-demo-calls.csv. Both land in --out, the campaign YAML, tree and
        contacts in --out/.autocall/demo. Exit code 1 if a contact ended other than its
        script says.

        Example: autocall demo --out /tmp/demo   (or: autocall demo --web)
        """
        logging.basicConfig(level=logging.INFO if verbose else logging.ERROR)
        console = Console(stderr=as_json)
        report = asyncio.run(run_demo(out, contacts, channels, console, quiet=as_json))
        if as_json:
            typer.echo(json.dumps(report, indent=2))
        if web:
            serve_demo_console(out / DB_NAME, port, console)
        raise typer.Exit(1 if report["unexpected"] else 0)
