"""`autocall prompts …`: design, check, walk, test, draw and pre-render prompt trees."""

from __future__ import annotations

import csv
import datetime as dt
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from autocall.dialogue import graph as graph_mod
from autocall.dialogue.loader import TreeError, load
from autocall.dialogue.schema import Tree, json_schema, spoken_prompts
from autocall.dialogue.simulate import SimulationResult, Simulator, Step, parse_inputs
from autocall.dialogue.template import fields
from autocall.dialogue.testing import CasesReport, run_cases, tree_for_cases
from autocall.dialogue.validate import Report, tree_files, validate_file

prompts_app = typer.Typer(
    help="Design, check, walk, test and draw prompt trees.\n\n"
    "Example: autocall prompts validate prompts/",
    no_args_is_help=True,
)

# soft_wrap keeps each finding on one line, so editors and grep can read file:line:col.
_out = Console(soft_wrap=True)
_err = Console(stderr=True, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.add_typer(prompts_app, name="prompts")


def _load_or_exit(path: Path) -> Tree:
    """Load a tree for a tool that needs a valid one: problems → exit 2 (input error)."""
    try:
        return load(path)
    except TreeError as exc:
        for problem in exc.problems:
            _err.print(str(problem), markup=False, highlight=False)
        _err.print(f"{path}: fix the tree first (autocall prompts validate {path})")
        raise typer.Exit(2) from None


# --- schema ---------------------------------------------------------------------------


@prompts_app.command()
def schema(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file.")
    ] = None,
) -> None:
    """Print the JSON Schema of the tree format, for editor autocompletion.

    Example: autocall prompts schema -o prompt-tree.schema.json
    """
    text = json.dumps(json_schema(), indent=2) + "\n"
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
        _err.print(f"wrote {output}")


# --- validate -------------------------------------------------------------------------


def _contact_fields(contacts: Path | None, field_list: str | None) -> list[str] | None:
    if contacts is None and field_list is None:
        return None
    names: list[str] = []
    if field_list:
        names.extend(f.strip() for f in field_list.split(",") if f.strip())
    if contacts is not None:
        try:
            with contacts.open(newline="", encoding="utf-8-sig") as handle:
                header = next(csv.reader(handle), [])
        except (OSError, UnicodeDecodeError) as exc:
            _err.print(f"{contacts}: cannot read the contacts file: {exc}")
            raise typer.Exit(2) from None
        names.extend(h.strip() for h in header if h.strip())
    return names


@prompts_app.command()
def validate(
    paths: Annotated[list[Path], typer.Argument(help="Tree files or folders of trees.")],
    contacts: Annotated[
        Path | None,
        typer.Option(
            "--contacts", help="Contacts CSV: its header lists the fields templates may use."
        ),
    ] = None,
    field_list: Annotated[
        str | None,
        typer.Option("--fields", help="Comma-separated contact fields (instead of --contacts)."),
    ] = None,
    speech: Annotated[
        bool,
        typer.Option(
            "--speech", help="Also load the vosk model and check every speech phrase (slow)."
        ),
    ] = False,
    speech_model: Annotated[
        str | None,
        typer.Option("--speech-model", help="vosk model directory (implies --speech)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable findings.")] = False,
) -> None:
    """Check trees: keys, types, targets, loops, exits, audio files, template fields.

    Every finding has file:line:column. Exit 1 when there are errors (warnings pass).

    Example: autocall prompts validate prompts/ --contacts campaigns/demo/contacts.csv
    """
    missing = [p for p in paths if not p.exists()]
    if missing:
        for path in missing:
            _err.print(f"{path}: no such file or folder")
        raise typer.Exit(2)
    files = tree_files(paths)
    if not files:
        _err.print("no tree files (*.yaml) found")
        raise typer.Exit(2)
    known = _contact_fields(contacts, field_list)
    check_speech = speech or speech_model is not None
    reports: list[Report] = [
        validate_file(f, known, speech=check_speech, speech_model=speech_model) for f in files
    ]
    errors = sum(len(r.errors) for r in reports)
    warnings = sum(len(r.warnings) for r in reports)
    if as_json:
        data = {
            "files": [
                {"file": r.file, "ok": r.ok, "problems": [p.as_dict() for p in r.problems]}
                for r in reports
            ],
            "errors": errors,
            "warnings": warnings,
        }
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    else:
        for report in reports:
            for problem in report.problems:
                style = "red" if problem.severity == "error" else "yellow"
                _out.print(str(problem), style=style, markup=False, highlight=False)
        summary = f"{len(reports)} tree(s): {errors} error(s), {warnings} warning(s)"
        _out.print(summary, style="red" if errors else "green", highlight=False)
    if errors:
        raise typer.Exit(1)


# --- simulate -------------------------------------------------------------------------


def _variables(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            _err.print(f"--var {pair!r}: write it as name=value")
            raise typer.Exit(2)
        out[name.strip()] = value
    return out


def _start_time(at: str | None, tree: Tree) -> float:
    if at is None:
        return dt.datetime.now(dt.UTC).timestamp()
    try:
        moment = dt.datetime.fromisoformat(at)
    except ValueError:
        _err.print(f"--at {at!r}: use ISO 8601, e.g. 2026-11-23T10:30 or 2026-11-23T10:30+01:00")
        raise typer.Exit(2) from None
    if moment.tzinfo is None:
        from zoneinfo import ZoneInfo

        moment = moment.replace(tzinfo=ZoneInfo(tree.timezone))
    return moment.timestamp()


_STEP_STYLE = {
    "say": "bold cyan",
    "play": "cyan",
    "input": "bold green",
    "listen": "dim",
    "hangup": "bold magenta",
    "webhook": "yellow",
    "transfer": "yellow",
    "record": "yellow",
}


def _show_step(step: Step) -> None:
    label = {"say": "🔊", "play": "🔊", "input": "📞", "listen": "  "}.get(step.kind, "→")
    node = f"[{step.node}] " if step.node else ""
    _out.print(
        f"{step.at:7.1f}s {label} {node}{step.text}",
        style=_STEP_STYLE.get(step.kind),
        markup=False,
        highlight=False,
    )


def _path_text(path: list[str]) -> str:
    if len(path) > 40:
        return " → ".join([*path[:30], f"… ({len(path) - 35} more)", *path[-5:]])
    return " → ".join(path)


def _print_result(result: SimulationResult) -> None:
    _out.print(f"path:      {_path_text(result.path)}", markup=False, highlight=False)
    _out.print(f"outcome:   {result.outcome}", markup=False, highlight=False)
    _out.print(f"digits:    {result.digits or '-'}", markup=False, highlight=False)
    shown = {k: v for k, v in sorted(result.variables.items())}
    _out.print(f"variables: {json.dumps(shown, ensure_ascii=False)}", markup=False)
    if result.error:
        _out.print(f"error:     {result.error}", style="red", markup=False)
    if result.unused_input:
        _out.print(f"unused input: {', '.join(result.unused_input)}", style="yellow", markup=False)


@prompts_app.command()
def simulate(
    file: Annotated[Path, typer.Argument(help="The tree to walk.")],
    var: Annotated[
        list[str] | None, typer.Option("--var", help="A variable, name=value (repeatable).")
    ] = None,
    inputs: Annotated[
        str | None,
        typer.Option(
            "--input", help="Scripted caller: keys, 't'/timeout, 'h'/hangup or spoken text."
        ),
    ] = None,
    at: Annotated[
        str | None, typer.Option("--at", help="Time of the call (ISO 8601), for hours.")
    ] = None,
    transfer_fails: Annotated[
        bool, typer.Option("--transfer-fails", help="Agents never answer.")
    ] = False,
    live_webhooks: Annotated[
        bool,
        typer.Option(
            "--live-webhooks", help="Really POST webhooks (otherwise they get no answer)."
        ),
    ] = False,
    play: Annotated[
        bool, typer.Option("--play", help="Also play the prompts (TTS cache, sox 'play').")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Transcript and result as JSON.")] = False,
) -> None:
    """Walk a tree without a phone and show the prompts and the path taken.

    Without --input it asks in the terminal: type keys (1, 12#), t for a timeout, h to
    hang up, or words for what the caller says. Piped stdin gives one input per line.

    Example: autocall prompts simulate prompts/informer.yaml --var first_name=Ann --input 2,1
    """
    tree = _load_or_exit(file)
    variables = _variables(var or [])
    show = None if as_json else _show_step
    if play:
        show = _Player(show)
    sim = Simulator(
        tree,
        variables,
        start_time=_start_time(at, tree),
        live_webhooks=live_webhooks,
        transfer_ok=not transfer_fails,
        on_step=show,
    )
    if inputs is not None:
        result = sim.run(parse_inputs(inputs))
    elif sys.stdin.isatty() and not as_json:
        _out.print("keys: 0-9 * #   t = timeout   h = hang up   other text = speech", style="dim")

        def ask() -> str | None:
            try:
                answer = input("caller> ")
            except EOFError:
                return None
            return answer.strip() or "t"

        result = sim.drive(ask)
    else:
        result = sim.run([t for line in sys.stdin for t in parse_inputs(line)])
    if as_json:
        sys.stdout.write(json.dumps(result.as_dict(), indent=2, ensure_ascii=False) + "\n")
    else:
        _print_result(result)
    if result.error:
        raise typer.Exit(1)


class _Player:
    """Plays each prompt as the simulator reaches it; gives up quietly without a sound card."""

    def __init__(self, show: Callable[[Step], None] | None) -> None:
        from autocall.config import Settings

        self.show = show
        self.cache = Settings.from_env().tts_cache_dir
        player = shutil.which("play") or shutil.which("aplay")
        if player is None:
            _err.print("--play needs sox's 'play' or 'aplay' (apt-get install sox)")
            raise typer.Exit(2)
        self.player: str = player
        self.working = True

    def __call__(self, step: Step) -> None:
        from autocall.dialogue.engine import Play, Say
        from autocall.speech import tts

        if self.show is not None:
            self.show(step)
        if not self.working or not isinstance(step.action, Say | Play):
            return
        try:
            if isinstance(step.action, Say):
                prompt = tts.PromptText(step.action.text, step.action.language, step.action.voice)
                path = tts.render_prompt(prompt, self.cache)
            else:
                path = Path(step.action.path)
            args = [self.player, "-q", str(path)]
            done = subprocess.run(args, capture_output=True, timeout=120, check=False)
            if done.returncode != 0:
                raise RuntimeError(done.stderr.decode(errors="replace").strip()[:200])
        except Exception as exc:  # noqa: BLE001 - sound is a convenience; the walk goes on
            _err.print(f"cannot play prompts, showing them only: {exc}", markup=False)
            self.working = False


# --- test -----------------------------------------------------------------------------


@prompts_app.command("test")
def test_cases(
    file: Annotated[
        Path, typer.Argument(help="The tree under test, or a folder / cases file naming its tree.")
    ],
    cases: Annotated[list[Path] | None, typer.Argument(help="Cases files (YAML).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Results as JSON.")] = False,
) -> None:
    """Run scripted calls against a tree and check path, outcome, variables, webhooks.

    With only a folder (or a cases file), every *.cases.yaml runs against the tree its
    `tree:` names. Exit 1 if any case fails. The format is in prompts/README.md.

    Example: autocall prompts test prompts/informer.yaml prompts/informer.cases.yaml
    """
    if not file.exists():
        _err.print(f"{file}: no such file or folder")
        raise typer.Exit(2)
    pairs: list[tuple[Path, Path]] = []
    if cases:
        pairs = [(file, c) for c in cases]
    else:
        found = (
            sorted([*file.rglob("*.cases.yaml"), *file.rglob("*.cases.yml")])
            if file.is_dir()
            else [file]
        )
        if not found:
            _err.print(f"{file}: no *.cases.yaml files")
            raise typer.Exit(2)
        for path in found:
            try:
                named = tree_for_cases(path)
            except TreeError as exc:
                for problem in exc.problems:
                    _err.print(str(problem), markup=False, highlight=False)
                raise typer.Exit(2) from None
            if named is None:
                _err.print(f"{path}: say which tree it tests (tree: file.yaml) or give the tree")
                raise typer.Exit(2)
            pairs.append((Path(named), path))
    reports: list[CasesReport] = []
    trees: dict[Path, Tree] = {}
    for tree_path, path in pairs:
        if tree_path not in trees:
            trees[tree_path] = _load_or_exit(tree_path)
        try:
            if cases:
                named = tree_for_cases(path)
                if named is not None and Path(named).resolve() != tree_path.resolve():
                    _err.print(f"{path}: note: written for {named}, run against {tree_path}")
            reports.append(run_cases(trees[tree_path], path))
        except TreeError as exc:
            for problem in exc.problems:
                _err.print(str(problem), markup=False, highlight=False)
            raise typer.Exit(2) from None
    total = sum(len(r.results) for r in reports)
    failed = sum(1 for r in reports for c in r.results if not c.passed)
    if as_json:
        data = {
            "passed": total - failed,
            "failed": failed,
            "cases": [
                {
                    "file": r.file,
                    "line": c.line,
                    "name": c.name,
                    "passed": c.passed,
                    "failures": c.failures,
                    "result": c.result.as_dict(),
                }
                for r in reports
                for c in r.results
            ],
        }
        sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    else:
        for report in reports:
            for case in report.results:
                mark = "PASS" if case.passed else "FAIL"
                style = "green" if case.passed else "bold red"
                _out.print(
                    f"{mark} {report.file}:{case.line}: {case.name}",
                    style=style,
                    markup=False,
                    highlight=False,
                )
                for failure in case.failures:
                    _out.print(f"     {failure}", style="red", markup=False, highlight=False)
                if not case.passed:
                    _out.print(f"     path: {' → '.join(case.result.path)}", markup=False)
        _out.print(f"{total - failed} passed, {failed} failed", style="red" if failed else "green")
    if failed:
        raise typer.Exit(1)


# --- graph ----------------------------------------------------------------------------


@prompts_app.command()
def graph(
    file: Annotated[Path, typer.Argument(help="The tree to draw.")],
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="mermaid, dot, svg or png.")
    ] = "mermaid",
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Output file (svg/png default: <tree>.<format>)."),
    ] = None,
) -> None:
    """Draw a tree as Mermaid, Graphviz DOT, SVG or PNG (svg/png need graphviz).

    Example: autocall prompts graph prompts/office.yaml --format svg
    """
    if fmt not in ("mermaid", "dot", "svg", "png"):
        _err.print(f"--format {fmt!r}: choose mermaid, dot, svg or png")
        raise typer.Exit(2)
    tree = _load_or_exit(file)
    if fmt in ("mermaid", "dot"):
        text = graph_mod.to_mermaid(tree) if fmt == "mermaid" else graph_mod.to_dot(tree)
        if output is None:
            sys.stdout.write(text)
        else:
            output.write_text(text, encoding="utf-8")
            _err.print(f"wrote {output}")
        return
    try:
        data = graph_mod.render(tree, fmt)
    except graph_mod.GraphvizMissing as exc:
        _err.print(str(exc))
        raise typer.Exit(2) from None
    except RuntimeError as exc:
        _err.print(str(exc))
        raise typer.Exit(1) from None
    target = output or file.with_suffix(f".{fmt}")
    target.write_bytes(data)
    _err.print(f"wrote {target}")


# --- render ---------------------------------------------------------------------------


@prompts_app.command()
def render(
    paths: Annotated[list[Path], typer.Argument(help="Tree files or folders of trees.")],
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            "--cache-dir", help="TTS cache (default: AUTOCALL_TTS_CACHE or .autocall/tts-cache)."
        ),
    ] = None,
    offline: Annotated[
        bool, typer.Option("--offline", help="Use espeak-ng only (no gTTS).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Outcomes as JSON.")] = False,
) -> None:
    """Render every text prompt of the trees ahead of time into the TTS cache.

    Templated prompts ({first_name}) are reported as 'runtime': they are spoken per call.
    Exit 1 if any prompt failed to render.

    Example: autocall prompts render prompts/ --offline
    """
    from autocall.config import Settings
    from autocall.speech import tts

    missing = [p for p in paths if not p.exists()]
    if missing:
        for path in missing:
            _err.print(f"{path}: no such file or folder")
        raise typer.Exit(2)
    trees = [_load_or_exit(f) for f in tree_files(paths)]
    cache = cache_dir or Settings.from_env().tts_cache_dir

    wanted: dict[tuple[str, str, str | None], Any] = {}
    runtime: list[dict[str, Any]] = []
    for tree in trees:
        for node_id, prompt in spoken_prompts(tree):
            language = prompt.language or tree.language
            if fields(prompt.say):
                runtime.append(
                    {
                        "file": str(tree.source),
                        "node": node_id,
                        "text": prompt.say,
                        "language": language,
                        "voice": prompt.voice,
                        "status": "runtime",
                        "engine": None,
                        "path": None,
                        "error": None,
                    }
                )
                continue
            key = (prompt.say, language, prompt.voice)
            wanted.setdefault(key, tts.PromptText(prompt.say, language, prompt.voice))

    engines = [tts.EspeakEngine()] if offline else None
    outcomes: list[Any] = []
    if as_json or not sys.stderr.isatty():
        outcomes = tts.render_prompts(list(wanted.values()), cache, engines=engines)
    else:
        with Progress(
            TextColumn("rendering prompts"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.description}"),
            console=_err,
            transient=True,
        ) as progress:
            task = progress.add_task("", total=len(wanted))

            def advance(outcome: Any) -> None:
                progress.update(task, advance=1, description=outcome.status)

            outcomes = tts.render_prompts(
                list(wanted.values()), cache, engines=engines, on_progress=advance
            )

    counts = {"rendered": 0, "cached": 0, "failed": 0, "runtime": len(runtime)}
    rows: list[dict[str, Any]] = []
    for outcome in outcomes:
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
        rows.append(
            {
                "text": outcome.prompt.text,
                "language": outcome.prompt.language,
                "voice": outcome.prompt.voice,
                "status": outcome.status,
                "engine": outcome.engine,
                "path": str(outcome.path) if outcome.path else None,
                "error": outcome.error,
            }
        )
    if as_json:
        payload = {"cache_dir": str(cache), "counts": counts, "prompts": rows + runtime}
        sys.stdout.write(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    else:
        for row in rows:
            if row["status"] == "failed":
                _out.print(
                    f"failed: {str(row['text'])[:60]!r} ({row['language']}): {row['error']}",
                    style="red",
                    markup=False,
                    highlight=False,
                )
        for row in runtime:
            _out.print(
                f"runtime: {row['node']}: {str(row['text'])[:60]!r} (templated, rendered per call)",
                style="dim",
                markup=False,
                highlight=False,
            )
        engines_used = sorted({r["engine"] for r in rows if r["engine"]})
        _out.print(
            f"{counts['rendered']} rendered, {counts['cached']} cached, {counts['failed']} failed, "
            f"{counts['runtime']} runtime; engines: {', '.join(engines_used) or '-'}; "
            f"cache: {cache}",
            style="red" if counts["failed"] else "green",
            markup=False,
            highlight=False,
        )
    if counts["failed"]:
        raise typer.Exit(1)
