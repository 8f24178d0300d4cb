"""Run a folder of broken (and good) input files through every command that reads them.

Issue 13's rule: no input file, however wrong, produces a traceback, a hang or a silent
wrong result; every finding names ``file:line(:col)``. A corpus folder holds the files
and one ``EXPECTED.yaml``; that is all a new corpus needs::

    # tests/corpus/trees/EXPECTED.yaml
    commands:                    # run for every file, in this order (autocall's argv)
      validate: [prompts, validate, "{file}"]
      simulate: [prompts, simulate, "{file}", --input, "1,2,t,h"]
      graph: [prompts, graph, "{file}", -o, "{tmp}/g.dot"]
    files:                       # every file of the folder must be listed here
      alias-bomb.yaml:
        expect:                  # findings that must be printed
          - {line: 5, text: "aliases expand"}          # also col:, severity: (default error)
        in: [validate, simulate] # commands whose output must hold them (default: the first)
      opt-out-typo.yaml:
        expect: [{line: 10, col: 13, text: "did you mean 'opt-out'"}]
        commands: [validate]     # only these commands for this file
      good.yaml:
        clean: true              # no error finding at all, and every command exits 0

Placeholders: ``{file}`` the file, ``{dir}`` the corpus folder (support files there start
with ``_`` and are not corpus files), ``{tmp}`` a fresh empty folder per file. Each
command runs with ``{tmp}`` as its working directory.

Every run is checked for: exit code 0, 1 or 2; no ``Traceback`` in its output; at most
:data:`TIMEOUT` seconds; at most :data:`MAX_RSS` bytes of peak resident memory; and every
unindented output line holding ``error:`` or ``warning:`` must be a located finding,
``path:line[:col]: error|warning: message`` (for a CSV, line and column are the row
and the column: ``contacts.csv:3:2: error: ...``).

Each command is a separate process. By default it is forked from a warm interpreter that
imported ``autocall.cli`` once (a "zygote" subprocess), so a corpus of hundreds of runs
takes seconds instead of a second of imports per run; ``HARNESS_COLD=1`` (or
``Runner(cold=True)``) starts a fresh ``python -c 'autocall.cli.main()'`` per run instead,
which is the console script's path. Either way the child's peak RSS comes from
``wait4()`` and an address-space limit stops a runaway child long before it could hurt
the machine. Children inherit ``PYTHONPATH``, so a worktree's code is what runs.

From the shell: ``python tests/corpus/harness.py tests/corpus/trees`` prints every
failure (exit 1 if any).

Use from a test::

    from .harness import Runner, check_folder

    def test_my_corpus() -> None:
        with Runner() as runner:
            failures = check_folder(Path(__file__).parent / "campaigns", runner)
        assert not failures, "\\n".join(failures)
"""

from __future__ import annotations

import io
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

TIMEOUT = 5.0
"""Seconds one command may take (issue 13: no run over 5 s)."""

MAX_RSS = 500 * 1024 * 1024
"""Peak resident memory of one command (issue 13: no process over 500 MB)."""

_ADDRESS_SPACE_MARGIN = 1536 * 1024 * 1024
"""Virtual memory a child may add beyond the zygote's before allocations fail."""

_FINDING = re.compile(
    r"^(?P<file>\S[^:]*?):(?P<line>\d+)(?::(?P<col>\d+))?: (?P<sev>error|warning): "
)
_TAGGED = re.compile(r"\b(error|warning): ")


@dataclass
class Run:
    """What one command did."""

    argv: list[str]
    code: int
    output: str
    seconds: float
    max_rss: int
    timed_out: bool = False

    def findings(self) -> Iterator[Finding]:
        for text in self.output.splitlines():
            match = _FINDING.match(text)
            if match:
                yield Finding(
                    match["file"],
                    int(match["line"]),
                    int(match["col"]) if match["col"] else None,
                    match["sev"],
                    text,
                )


@dataclass(frozen=True)
class Finding:
    file: str
    line: int
    column: int | None
    severity: str
    text: str


# --- running commands --------------------------------------------------------------------


class Runner:
    """Runs ``autocall`` argv lists as separate processes and measures them."""

    def __init__(self, *, cold: bool | None = None) -> None:
        self.cold = os.environ.get("HARNESS_COLD") == "1" if cold is None else cold
        self._zygote: subprocess.Popen[str] | None = None

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._zygote is not None:
            assert self._zygote.stdin is not None
            self._zygote.stdin.close()
            try:
                self._zygote.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._zygote.kill()
                self._zygote.wait()
            self._zygote = None

    def run(self, argv: Sequence[str], cwd: Path) -> Run:
        out = cwd / ".harness-output"
        request = {"argv": list(argv), "cwd": str(cwd), "out": str(out), "timeout": TIMEOUT}
        result = self._cold(request) if self.cold else self._warm(request)
        text = out.read_text(encoding="utf-8", errors="replace")
        out.unlink()
        return Run(
            list(argv),
            result["code"],
            text,
            result["seconds"],
            result["max_rss"],
            result["timed_out"],
        )

    def _warm(self, request: dict[str, Any]) -> dict[str, Any]:
        if self._zygote is None:
            env = {**os.environ, **_QUIET_THREADS}
            self._zygote = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--serve"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env=env,
            )
        assert self._zygote.stdin is not None and self._zygote.stdout is not None
        self._zygote.stdin.write(json.dumps(request) + "\n")
        self._zygote.stdin.flush()
        answer = self._zygote.stdout.readline()
        if not answer:
            raise RuntimeError("the harness zygote died")
        result: dict[str, Any] = json.loads(answer)
        return result

    def _cold(self, request: dict[str, Any]) -> dict[str, Any]:
        # Started from a small interpreter: a child's peak RSS includes the pages of the
        # process it was forked from, and this (pytest) process may be large.
        done = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--cold", json.dumps(request)],
            capture_output=True,
            text=True,
            check=True,
            timeout=request["timeout"] + 30,
        )
        result: dict[str, Any] = json.loads(done.stdout)
        return result


def cold_run(request: dict[str, Any]) -> dict[str, Any]:
    """One fresh ``python -c 'autocall.cli.main()'``, measured (runs in a small process)."""
    argv = [sys.executable, "-c", "from autocall.cli import main; main()", *request["argv"]]
    with open(request["out"], "wb") as sink:
        started = time.monotonic()
        proc = subprocess.Popen(
            argv,
            cwd=request["cwd"],
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, **_QUIET_THREADS},
            preexec_fn=_limit_memory,
        )
        code, rss, timed_out = _wait(proc.pid, started, request["timeout"])
        proc.returncode = code  # reaped by wait4; tell Popen so it does not try again
    return {
        "code": code,
        "seconds": time.monotonic() - started,
        "max_rss": rss,
        "timed_out": timed_out,
    }


_QUIET_THREADS = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
"""One BLAS thread: a forked child cannot use a thread pool its parent started."""


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (_vm_size() + _ADDRESS_SPACE_MARGIN,) * 2)


def _vm_size() -> int:
    for text in Path("/proc/self/status").read_text().splitlines():
        if text.startswith("VmSize:"):
            return int(text.split()[1]) * 1024
    return 0


def _wait(pid: int, started: float, timeout: float) -> tuple[int, int, bool]:
    """(exit code, peak RSS in bytes, timed out) of child ``pid``, killed after ``timeout``."""
    timed_out = False
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() - started > timeout:
            timed_out = True
            os.kill(pid, signal.SIGKILL)
            done, status, usage = os.wait4(pid, 0)
            break
        time.sleep(0.005)  # polling the child, not a timing assertion
    code = os.waitstatus_to_exitcode(status)
    return code, usage.ru_maxrss * 1024, timed_out


def serve() -> None:
    """The zygote: import autocall once, then fork one child per request line."""
    from autocall.cli import main

    for line in sys.stdin:
        request = json.loads(line)
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:
            _child(main, request)
        code, rss, timed_out = _wait(pid, started, request["timeout"])
        answer = {
            "code": code,
            "seconds": time.monotonic() - started,
            "max_rss": rss,
            "timed_out": timed_out,
        }
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


def _child(main: Any, request: dict[str, Any]) -> None:
    code = 3
    try:
        _limit_memory()
        os.chdir(request["cwd"])
        sink = os.open(request["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(sink, 1)
        os.dup2(sink, 2)
        sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding="utf-8")
        sys.stdout = io.TextIOWrapper(
            io.FileIO(1, "w", closefd=False), encoding="utf-8", line_buffering=True
        )
        sys.stderr = io.TextIOWrapper(
            io.FileIO(2, "w", closefd=False), encoding="utf-8", line_buffering=True
        )
        sys.argv = ["autocall", *request["argv"]]
        try:
            main()
            code = 0
        except SystemExit as exc:
            if exc.code is None:
                code = 0
            elif isinstance(exc.code, int):
                code = exc.code
            else:
                print(exc.code, file=sys.stderr)
                code = 1
        except BaseException:  # noqa: BLE001 - the traceback is the finding
            traceback.print_exc()
            code = 3
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


# --- checking a folder -------------------------------------------------------------------


@dataclass
class FileSpec:
    name: str
    expect: list[dict[str, Any]] = field(default_factory=list)
    within: list[str] = field(default_factory=list)
    commands: list[str] | None = None
    clean: bool = False


def load_expected(folder: Path) -> tuple[dict[str, list[str]], dict[str, FileSpec]]:
    data = YAML(typ="safe").load((folder / "EXPECTED.yaml").read_text(encoding="utf-8"))
    commands = {str(k): [str(a) for a in v] for k, v in data["commands"].items()}
    specs: dict[str, FileSpec] = {}
    for name, raw in (data.get("files") or {}).items():
        raw = raw or {}
        unknown = set(raw) - {"expect", "in", "commands", "clean"}
        if unknown:
            raise ValueError(f"{folder}/EXPECTED.yaml: {name}: unknown keys {sorted(unknown)}")
        expect = raw.get("expect") or []
        specs[name] = FileSpec(
            name,
            [expect] if isinstance(expect, dict) else list(expect),
            list(raw.get("in") or []),
            raw.get("commands"),
            bool(raw.get("clean", False)),
        )
    return commands, specs


def corpus_files(folder: Path) -> list[Path]:
    """Every corpus file of a folder: all but EXPECTED.yaml and ``_support`` files."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.name != "EXPECTED.yaml" and not p.name.startswith(("_", "."))
    )


def check_folder(folder: Path, runner: Runner, only: Sequence[str] | None = None) -> list[str]:
    """Run every command over every file of ``folder``; one line per failure."""
    folder = folder.resolve()
    commands, specs = load_expected(folder)
    failures: list[str] = []
    files = corpus_files(folder)
    for path in files:
        if path.name not in specs:
            failures.append(f"{path}: not listed in EXPECTED.yaml (every corpus file must be)")
    for name in sorted(set(specs) - {p.name for p in files}):
        failures.append(f"{folder / name}: listed in EXPECTED.yaml but missing")
    for path in files:
        spec = specs.get(path.name)
        if spec is None or (only is not None and path.name not in only):
            continue
        failures.extend(check_file(path, spec, commands, runner))
    return failures


def check_file(
    path: Path, spec: FileSpec, commands: dict[str, list[str]], runner: Runner
) -> list[str]:
    names = spec.commands if spec.commands is not None else list(commands)
    unknown = [n for n in names if n not in commands]
    if unknown:
        return [f"{path}: EXPECTED.yaml names unknown commands {unknown}"]
    runs: dict[str, Run] = {}
    failures: list[str] = []
    tmp = Path(tempfile.mkdtemp(prefix="corpus-"))
    try:
        for name in names:
            argv = [
                a.format(file=str(path), dir=str(path.parent), tmp=str(tmp)) for a in commands[name]
            ]
            run = runner.run(argv, tmp)
            runs[name] = run
            failures.extend(f"{path} [{name}]: {f}" for f in check_run(run, spec.clean))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    within = spec.within or names[:1]
    for wanted in spec.expect:
        for name in within:
            if name not in runs:
                failures.append(f"{path}: 'in' names {name!r}, which did not run")
            elif not _has(runs[name], path, wanted):
                got = [f.text for f in runs[name].findings()] or runs[name].output.splitlines()[-3:]
                failures.append(
                    f"{path} [{name}]: expected finding {wanted} not printed; got: {got}"
                )
    return failures


def check_run(run: Run, clean: bool) -> list[str]:
    """The rules every run of every command obeys."""
    failures: list[str] = []
    if run.timed_out:
        failures.append(f"took over {TIMEOUT:g} s (killed)")
    if run.max_rss > MAX_RSS:
        failures.append(f"peak memory {run.max_rss / 2**20:.0f} MiB > {MAX_RSS / 2**20:.0f} MiB")
    if "Traceback" in run.output:
        failures.append("printed a Traceback:\n" + run.output[-1500:])
    if run.code not in (0, 1, 2) and not run.timed_out:
        failures.append(f"exit code {run.code} (0, 1 or 2 expected)")
    for text in run.output.splitlines():
        if text[:1].isspace() or not _TAGGED.search(text):
            continue
        if not _FINDING.match(text):
            failures.append(f"finding without file:line: {text!r}")
    if clean:
        errors = [f.text for f in run.findings() if f.severity == "error"]
        if errors or run.code != 0:
            failures.append(f"expected clean, got exit {run.code}: {errors or run.output[-500:]}")
    return failures


def _has(run: Run, path: Path, wanted: dict[str, Any]) -> bool:
    severity = wanted.get("severity", "error")
    for finding in run.findings():
        if Path(finding.file).name != path.name and finding.file != str(path):
            continue
        if finding.severity != severity:
            continue
        if "line" in wanted and finding.line != wanted["line"]:
            continue
        if "col" in wanted and finding.column != wanted["col"]:
            continue
        if "text" in wanted and str(wanted["text"]).lower() not in finding.text.lower():
            continue
        return True
    return False


def main(argv: Sequence[str]) -> int:
    if list(argv) == ["--serve"]:
        serve()
        return 0
    if len(argv) == 2 and argv[0] == "--cold":
        print(json.dumps(cold_run(json.loads(argv[1]))))
        return 0
    failures: list[str] = []
    with Runner() as runner:
        for folder in argv:
            failures.extend(check_folder(Path(folder), runner))
    for failure in failures:
        print(failure)
    print(f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
