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

from autocall.audio.amd import AnsweredBy
from autocall.dialogue import graph as graph_mod
from autocall.dialogue.loader import Document, Problem, TreeError, load_with_document, read
from autocall.dialogue.schema import Tree, json_schema, spoken_prompts
from autocall.dialogue.simulate import SimulationResult, Simulator, Step, parse_inputs
from autocall.dialogue.template import fields
from autocall.dialogue.testing import (
    DEFAULT_AT_TEXT,
    CasesReport,
    check_cases,
    is_cases_document,
    run_cases,
    tree_for_cases,
)
from autocall.dialogue.validate import Report, template_errors, tree_files, validate_file

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


def _problem(problem: Problem) -> None:
    style = "red" if problem.severity == "error" else "yellow"
    _err.print(str(problem), style=style, markup=False, highlight=False)


def _load_document(path: Path) -> tuple[Tree, Document]:
    """Load a tree for a tool that runs it: problems → exit 2 (input error).

    Malformed templates (an unclosed ``{``) are shown but do not stop the tool: they are
    spoken with their braces as written, which is what the designer should hear.
    """
    if path.is_dir():
        _err.print(f"{path}: error: this is a folder; name one tree file", highlight=False)
        raise typer.Exit(2)
    tree, doc, problems = load_with_document(path)
    if tree is None or doc is None:
        for problem in problems:
            _problem(problem)
        _err.print(f"{path}: note: fix the tree first (autocall prompts validate {path})")
        raise typer.Exit(2)
    for problem in template_errors(tree, doc):
        _problem(problem)
    return tree, doc


TreePaths = Annotated[list[Path], typer.Argument(help="Tree files or folders of trees.")]


def _tree_files_or_exit(paths: list[Path]) -> list[Path]:
    """The tree files in ``paths``; exit 2, naming each, if some path does not exist."""
    missing = [p for p in paths if not p.exists()]
    if missing:
        for path in missing:
            _err.print(f"{path}: error: no such file or folder", highlight=False)
        raise typer.Exit(2)
    return tree_files(paths)


def _load_or_exit(path: Path) -> Tree:
    return _load_document(path)[0]


def _load_for_drawing(path: Path) -> Tree:
    """Like :func:`_load_or_exit`, quiet about templates (a picture does not speak)."""
    tree = load_with_document(path)[0] if path.is_file() else None
    return tree if tree is not None else _load_or_exit(path)


def _output_or_exit(output: Path, example: str = "tree.svg") -> None:
    """Refuse an output path we cannot write before any work is done."""
    if output.is_dir():
        _err.print(
            f"{output}: error: this is a folder; give a file name, e.g. {output / example}",
            highlight=False,
        )
        raise typer.Exit(2)
    parent = output.parent
    if not parent.is_dir():
        what = "is not a folder" if parent.exists() else "does not exist"
        _err.print(
            f"{output}: error: the folder {parent} {what}; create it (mkdir -p {parent}) "
            "or choose another path",
            highlight=False,
        )
        raise typer.Exit(2)


def _write_or_exit(output: Path, data: bytes, example: str = "tree.svg") -> None:
    _output_or_exit(output, example)
    try:
        output.write_bytes(data)
    except OSError as exc:
        _err.print(f"{output}: error: cannot write: {exc.strerror or exc}", highlight=False)
        raise typer.Exit(2) from None
    _err.print(f"wrote {output}")


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
        _write_or_exit(output, text.encode("utf-8"), "prompt-tree.schema.json")


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
            _err.print(f"{contacts}: error: cannot read the contacts file: {exc}", highlight=False)
            raise typer.Exit(2) from None
        names.extend(h.strip() for h in header if h.strip())
    return names


@prompts_app.command()
def validate(
    paths: TreePaths,
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
    files = _tree_files_or_exit(paths)
    if not files:
        _err.print("error: no tree files (*.yaml) found")
        raise typer.Exit(2)
    known = _contact_fields(contacts, field_list)
    check_speech = speech or speech_model is not None
    reports: list[Report] = [_validate_one(f, known, check_speech, speech_model) for f in files]
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
        n_cases = sum(1 for r in reports if r.kind == "cases")
        counted = f"{len(reports) - n_cases} tree(s)" + (
            f", {n_cases} cases file(s)" if n_cases else ""
        )
        summary = f"{counted}: {errors} error(s), {warnings} warning(s)"
        _out.print(summary, style="red" if errors else "green", highlight=False)
    if errors:
        raise typer.Exit(1)


def _validate_one(
    path: Path, known: list[str] | None, speech: bool, speech_model: str | None
) -> Report:
    """One file's report; a bug of ours in one file must not stop the others."""
    try:
        return validate_file(path, known, speech=speech, speech_model=speech_model)
    except Exception as exc:  # noqa: BLE001 - reported as a located finding, work goes on
        message = (
            f"autocall could not check this file ({type(exc).__name__}: {exc}); "
            "the other files were checked; please report this file"
        )
        return Report(str(path), [Problem(str(path), 1, 1, "error", "internal", message)])


# --- simulate -------------------------------------------------------------------------


def _variables(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            _err.print(f"--var {pair!r}: error: write it as name=value", highlight=False)
            raise typer.Exit(2)
        out[name.strip()] = value
    return out


def _start_time(at: str | None, tree: Tree) -> float:
    if at is None:
        return dt.datetime.now(dt.UTC).timestamp()
    try:
        moment = dt.datetime.fromisoformat(at)
    except ValueError:
        _err.print(
            f"--at {at!r}: error: use ISO 8601, e.g. 2026-11-23T10:30 or 2026-11-23T10:30+01:00",
            highlight=False,
        )
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
    "why": "cyan",
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
        _out.print(f"halted:    {result.error}", style="red", markup=False)
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
    answered_by: Annotated[
        str | None,
        typer.Option(
            "--answered-by",
            help="What answering-machine detection found: human, machine (starts at the "
            "tree's machine: node, as after the beep), fax (hangs up) or unknown.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Transcript and result as JSON.")] = False,
) -> None:
    """Walk a tree without a phone and show the prompts and the path taken.

    Without --input it asks in the terminal: type keys (1, 12#), t for a timeout, h to
    hang up, or words for what the caller says. Piped stdin gives one input per line.

    Example: autocall prompts simulate prompts/informer.yaml --var first_name=Ann --input 2,1
    """
    who = _answered_by(answered_by)
    tree, doc = _load_document(file)
    variables = _variables(var or [])
    if who == "machine" and tree.machine is None:
        _err.print(
            f"{file}: note: the tree has no machine: node, so a machine hears it from start "
            "(a live call follows --on-machine / the campaign's amd.on_machine: message or "
            "hangup)",
            highlight=False,
        )
    for i, name in enumerate(tree.contact_fields or []):
        if name not in variables and name not in tree.variables:
            line, column = doc.locate(["contact_fields", i])
            _problem(
                Problem(
                    str(file),
                    line,
                    column,
                    "warning",
                    "var",
                    f"contact field {name!r} has no value in this simulation, so it is "
                    f"spoken as nothing; give --var {name}=…",
                )
            )
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
        answered_by=who,
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


_ANSWERED_BY: dict[str, AnsweredBy] = {
    "human": "human",
    "machine": "machine",
    "fax": "fax",
    "unknown": "unknown",
}


def _answered_by(value: str | None) -> AnsweredBy | None:
    if value is None:
        return None
    if value not in _ANSWERED_BY:
        _err.print(
            f"--answered-by {value!r}: error: use one of {', '.join(_ANSWERED_BY)}",
            highlight=False,
        )
        raise typer.Exit(2)
    return _ANSWERED_BY[value]


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
                prompt = tts.PromptText(step.action.text, step.action.language,
                                        step.action.voice, step.action.tts)
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
        _err.print(f"{file}: error: no such file or folder", highlight=False)
        raise typer.Exit(2)
    pairs: list[tuple[Path, Path]] = []
    beside = file.with_name(f"{file.stem}.cases.yaml")
    if cases:
        pairs = [(file, c) for c in cases]
    elif file.is_file() and not file.name.endswith(".cases.yaml") and beside.is_file():
        pairs = [(file, beside)]  # `prompts test x.yaml` runs x.cases.yaml beside it
    else:
        found = (
            sorted([*file.rglob("*.cases.yaml"), *file.rglob("*.cases.yml")])
            if file.is_dir()
            else [file]
        )
        if not found:
            _err.print(f"{file}: error: no *.cases.yaml files", highlight=False)
            raise typer.Exit(2)
        for path in found:
            doc, problems = read(path)
            if doc is not None and not is_cases_document(doc.data) and not file.is_dir():
                _err.print(
                    f"{path}:1:1: error: this is not a cases file (no cases: list); to test a "
                    "tree give its cases too: autocall prompts test TREE CASES",
                    highlight=False,
                )
                raise typer.Exit(2)
            problems = problems or (check_cases(doc) if doc is not None else [])
            if problems:
                for problem in problems:
                    _problem(problem)
                raise typer.Exit(2)
            named = tree_for_cases(path)
            if named is None:
                _err.print(
                    f"{path}:1:1: error: say which tree it tests (tree: file.yaml) or give "
                    "the tree first: autocall prompts test TREE CASES",
                    highlight=False,
                )
                raise typer.Exit(2)
            pairs.append((Path(named), path))
    reports: list[CasesReport] = []
    trees: dict[Path, Tree] = {}
    tree_of: dict[str, Path] = {}
    for tree_path, path in pairs:
        tree_of[str(path)] = tree_path
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
                    "default_time": c.default_time,
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
            defaulted = [c for c in report.results if c.default_time]
            if defaulted:
                zone = trees[tree_of[report.file]].timezone
                _err.print(
                    f"{report.file}:{defaulted[0].line}: note: {len(defaulted)} case(s) without "
                    f"at: run on {DEFAULT_AT_TEXT} ({zone}); add at: 2026-11-23T20:00 to test "
                    "another time",
                    style="dim",
                    markup=False,
                    highlight=False,
                )
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


_GRAPH_SUFFIXES = {
    ".mmd": "mermaid",
    ".mermaid": "mermaid",
    ".md": "mermaid",
    ".dot": "dot",
    ".gv": "dot",
    ".svg": "svg",
    ".png": "png",
}


def _graph_format(fmt: str | None, output: Path | None) -> str:
    """The picture format: --format, else the output file's extension, else mermaid."""
    if fmt is not None and fmt not in ("mermaid", "dot", "svg", "png"):
        _err.print(f"--format {fmt!r}: error: choose mermaid, dot, svg or png", highlight=False)
        raise typer.Exit(2)
    if output is None:
        return fmt or "mermaid"
    suffix = output.suffix.lower()
    implied = _GRAPH_SUFFIXES.get(suffix)
    if implied is None:
        known = ", ".join(sorted(_GRAPH_SUFFIXES))
        _err.print(
            f"{output}: error: unknown picture extension {suffix or '(none)'!r}; use one of "
            f"{known} (the format follows the extension)",
            highlight=False,
        )
        raise typer.Exit(2)
    if fmt is not None and fmt != implied:
        _err.print(
            f"{output}: error: --format {fmt} but the extension {suffix} means {implied}; "
            f"name the file .{ {'mermaid': 'mmd'}.get(fmt, fmt)} or drop --format",
            highlight=False,
        )
        raise typer.Exit(2)
    return implied


@prompts_app.command()
def graph(
    file: Annotated[Path, typer.Argument(help="The tree to draw.")],
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format", "-f", help="mermaid, dot, svg or png (default: from -o's extension)."
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Output file; .mmd/.md, .dot/.gv, .svg or .png choose the format "
            "(svg/png default: <tree>.<format>).",
        ),
    ] = None,
) -> None:
    """Draw a tree as Mermaid, Graphviz DOT, SVG or PNG (svg/png need graphviz).

    Example: autocall prompts graph prompts/office.yaml -o office.svg
    """
    if output is not None:
        _output_or_exit(output)
    fmt = _graph_format(fmt, output)
    tree = _load_for_drawing(file)
    if fmt in ("mermaid", "dot"):
        text = graph_mod.to_mermaid(tree) if fmt == "mermaid" else graph_mod.to_dot(tree)
        if output is None:
            sys.stdout.write(text)
        else:
            _write_or_exit(output, text.encode("utf-8"))
        return
    try:
        data = graph_mod.render(tree, fmt)
    except graph_mod.GraphvizMissing as exc:
        _err.print(str(exc))
        raise typer.Exit(2) from None
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        _err.print(f"{file}: error: cannot draw the tree: {exc}", markup=False)
        raise typer.Exit(1) from None
    _write_or_exit(output or file.with_suffix(f".{fmt}"), data)


# --- render ---------------------------------------------------------------------------


@prompts_app.command()
def render(
    paths: TreePaths,
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            "--cache-dir", help="TTS cache (default: AUTOCALL_TTS_CACHE or .autocall/tts-cache)."
        ),
    ] = None,
    offline: Annotated[
        bool, typer.Option("--offline", help="Use espeak-ng only (no gTTS).")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only list what would be rendered.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Outcomes as JSON.")] = False,
    wideband: Annotated[
        bool | None,
        typer.Option(
            "--wideband/--no-wideband",
            help="Also render 16 kHz entries, for G.722 calls (default: when "
            "AUTOCALL_CODECS or the trunk file names g722).",
        ),
    ] = None,
) -> None:
    """Render every text prompt of the trees ahead of time into the TTS cache.

    Templated prompts ({first_name}) are reported as 'runtime': they are spoken per call.
    With G.722 allowed, each prompt is rendered at 8 kHz and at 16 kHz (wideband calls).
    Exit 1 if any prompt failed to render.

    Example: autocall prompts render prompts/ --offline
    """
    from autocall.config import Settings
    from autocall.speech import tts

    trees = [_load_or_exit(f) for f in _tree_files_or_exit(paths)]
    settings = Settings.from_env()
    cache = cache_dir or settings.tts_cache_dir
    if wideband is None:
        wideband = "G722" in settings.trunk.codecs
    rates = (8000, 16000) if wideband else (8000,)

    wanted: dict[tuple[str, str, str | None, tuple[str, ...] | None], tts.PromptText] = {}
    runtime: list[dict[str, Any]] = []
    malformed = 0
    for tree in trees:
        for node_id, prompt in spoken_prompts(tree):
            language = prompt.language or tree.language
            try:
                templated = bool(fields(prompt.say))
            except ValueError:
                malformed += 1  # shown with file:line:col when the tree was loaded
                continue
            if templated:
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
            order = tuple(prompt.tts) if prompt.tts else None
            key = (prompt.say, language, prompt.voice, order)
            wanted.setdefault(key, tts.PromptText(prompt.say, language, prompt.voice, order))

    if dry_run:
        for text in wanted.values():
            _out.print(
                f"would render: {text.text[:60]!r} ({text.language})",
                markup=False,
                highlight=False,
            )
        _out.print(
            f"{len(wanted)} to render, {len(runtime)} runtime, {malformed} malformed; "
            f"cache: {cache}",
            markup=False,
            highlight=False,
        )
        if malformed:
            raise typer.Exit(1)
        return
    engines: list[tts.TtsEngine] | None = [tts.EspeakEngine()] if offline else None
    try:
        named = {e.name: e for e in engines or tts.default_engines()}
    except ValueError as exc:  # AUTOCALL_TTS names an engine that does not exist
        _err.print(f"error: AUTOCALL_TTS: {exc}", style="red", markup=False, highlight=False)
        raise typer.Exit(2) from exc
    if engines is None:  # and the engines the trees' own `tts:` orders name
        for text in wanted.values():
            named.update((e.name, e) for e in tts.default_engines(text.engines or ()))
    notes = tts.missing_engines(list(named.values()))
    if not as_json:
        for note in notes:  # e.g. piper without autocall[piper]: the fallback speaks, say how
            _err.print(f"note: {note}", style="yellow", markup=False, highlight=False)
    outcomes: list[tuple[int, Any]] = []
    if as_json or not sys.stderr.isatty():
        for rate in rates:
            found = tts.render_prompts(list(wanted.values()), cache, engines=engines, rate=rate)
            outcomes += [(rate, o) for o in found]
    else:
        with Progress(
            TextColumn("rendering prompts"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.description}"),
            console=_err,
            transient=True,
        ) as progress:
            task = progress.add_task("", total=len(wanted) * len(rates))

            def advance(outcome: Any) -> None:
                progress.update(task, advance=1, description=outcome.status)

            for rate in rates:
                found = tts.render_prompts(
                    list(wanted.values()),
                    cache,
                    engines=engines,
                    on_progress=advance,
                    rate=rate,
                )
                outcomes += [(rate, o) for o in found]

    counts = {"rendered": 0, "cached": 0, "failed": malformed, "runtime": len(runtime)}
    rows: list[dict[str, Any]] = []
    for rate, outcome in outcomes:
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
        rows.append(
            {
                "rate": rate,
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
        payload = {"cache_dir": str(cache), "counts": counts, "prompts": rows + runtime,
                   "notes": notes}
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
