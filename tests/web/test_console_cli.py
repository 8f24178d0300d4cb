"""`autocall web`, `users`, `tokens` and `demo --web` as an operator runs them."""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from consoletest import csrf_of, free_socket
from typer.testing import CliRunner

from autocall.cli import app
from autocall.cli.web import DialerWorker, exposed_without_tls, worker_command
from autocall.web import accounts
from autocall.web.accounts import Role

CLI = [sys.executable, "-c", "from autocall.cli import main; main()"]


def _db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


def test_users_and_tokens_commands(tmp_path: Path) -> None:
    runner = CliRunner()
    db = _db(tmp_path)
    secret = tmp_path / "ann.pw"
    secret.write_text("ann-password-1\n", encoding="utf-8")
    done = runner.invoke(app, ["users", "add", "ann", "--role", "marketer",
                               "--password-file", str(secret), "--db", db])
    assert done.exit_code == 0, done.output
    again = runner.invoke(app, ["users", "add", "ann", "--role", "marketer",
                                "--password-file", str(secret), "--db", db])
    assert again.exit_code == 2 and "exists" in again.output
    bad_role = runner.invoke(app, ["users", "add", "bob", "--role", "boss",
                                   "--password-file", str(secret), "--db", db])
    assert bad_role.exit_code == 2 and "unknown role" in bad_role.output
    asked = runner.invoke(app, ["users", "add", "bob", "--role", "viewer", "--db", db],
                          input="bob-password-1\nbob-password-1\n")
    assert asked.exit_code == 0, asked.output
    short = runner.invoke(app, ["users", "add", "cy", "--role", "viewer", "--db", db],
                          input="short\nshort\n")
    assert short.exit_code == 2 and "at least 8" in short.output
    listed = json.loads(runner.invoke(app, ["users", "list", "--json", "--db", db]).output)
    assert [(u["name"], u["role"]) for u in listed] == [("ann", "marketer"), ("bob", "viewer")]

    made = runner.invoke(app, ["tokens", "create", "--name", "crm", "--role", "marketer",
                               "--db", db])
    assert made.exit_code == 0, made.output
    token = made.stdout.strip().splitlines()[-1]
    assert token.startswith("ac_")
    from autocall.campaign.store import Store

    store = Store(db)
    try:
        found = accounts.token_principal(store.engine, token)
        assert found is not None and found.role is Role.MARKETER
        assert accounts.check_password(store.engine, "bob", "bob-password-1") is not None
        tokens = json.loads(runner.invoke(app, ["tokens", "list", "--json", "--db", db]).output)
        assert [(t["name"], t["revoked"]) for t in tokens] == [("crm", False)]
        assert token not in json.dumps(tokens) and tokens[0]["prefix"] == token[:10]
        revoked = runner.invoke(app, ["tokens", "revoke", "crm", "--db", db])
        assert revoked.exit_code == 0, revoked.output
        assert accounts.token_principal(store.engine, token) is None
        assert runner.invoke(app, ["tokens", "revoke", "crm", "--db", db]).exit_code == 1
        actions = [line.action for line in accounts.audit_lines(store.engine)]
        assert actions == ["token.revoke", "token.create", "user.add", "user.add"]
    finally:
        store.close()


def test_every_command_has_help_with_an_example() -> None:
    runner = CliRunner()
    for args in (["web"], ["users"], ["users", "add"], ["users", "list"], ["tokens"],
                 ["tokens", "create"], ["tokens", "list"], ["tokens", "revoke"]):
        shown = runner.invoke(app, [*args, "--help"])
        assert shown.exit_code == 0 and "Example" in shown.output, args
    assert "--web" in runner.invoke(app, ["demo", "--help"]).output


def test_tls_warning_rule() -> None:
    assert not exposed_without_tls("127.0.0.1", None, None)
    assert not exposed_without_tls("::1", None, None)
    assert not exposed_without_tls("localhost", None, None)
    assert exposed_without_tls("0.0.0.0", None, None)
    assert exposed_without_tls("console.example.com", None, None)
    assert not exposed_without_tls("0.0.0.0", Path("c.pem"), Path("k.pem"))
    done = CliRunner().invoke(app, ["web", "--certfile", "c.pem"])
    assert done.exit_code == 2 and "go together" in done.output


def test_worker_command_is_the_lead_worker_module() -> None:
    assert worker_command("sqlite:///x.db") == [sys.executable, "-m", "autocall.web.worker",
                                                "--db", "sqlite:///x.db",
                                                "--parent", str(os.getpid())]


FAKE_WORKER = """
import signal, sys, time
out = sys.argv[1]
def bye(*_):
    open(out, "a").write("sigterm\\n")
    sys.exit(0 if sys.argv[2] == "obey" else time.sleep(3600))
signal.signal(signal.SIGTERM, bye)
open(out, "a").write("started\\n")
while True:
    time.sleep(0.05)
"""


def _fake(tmp_path: Path, mode: str) -> tuple[list[str], Path]:
    script = tmp_path / "fake_worker.py"
    script.write_text(FAKE_WORKER, encoding="utf-8")
    out = tmp_path / f"worker-{mode}.log"
    return [sys.executable, str(script), str(out), mode], out


def _wait_for(path: Path, text: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not (path.exists() and text in path.read_text()):
        assert time.monotonic() < deadline, f"{text!r} not in {path}"
        time.sleep(0.05)


def test_dialer_worker_stops_with_sigterm_then_sigkill(tmp_path: Path) -> None:
    command, out = _fake(tmp_path, "obey")
    worker = DialerWorker(command, stop_seconds=10).start()
    _wait_for(out, "started")
    assert worker.stop() == 0 and "sigterm" in out.read_text()
    command, out = _fake(tmp_path, "ignore")
    stubborn = DialerWorker(command, stop_seconds=0.5).start()
    _wait_for(out, "started")
    began = time.monotonic()
    assert stubborn.stop() == -signal.SIGKILL
    assert time.monotonic() - began < 5 and "sigterm" in out.read_text()


SERVE_WITH_FAKE_WORKER = """
import sys
from pathlib import Path
from autocall.campaign.store import Store
from autocall.cli.web import serve
store = Store(sys.argv[1])
serve(store, port=int(sys.argv[2]), worker=sys.argv[3:])
"""


def test_web_server_starts_and_stops_its_dialer_worker(tmp_path: Path) -> None:
    """The server's own process spawns the worker and SIGTERMs it on the way out."""
    command, out = _fake(tmp_path, "obey")
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    proc = subprocess.Popen([sys.executable, "-c", SERVE_WITH_FAKE_WORKER, _db(tmp_path),
                             str(port), *command], stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(out, "started", 20)
        _up(f"http://127.0.0.1:{port}")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert out.read_text().splitlines() == ["started", "sigterm"]
    assert proc.stderr is not None and "dialer worker stopped (exit 0)" in proc.stderr.read()


def _up(url: str, timeout: float = 60) -> None:  # start-up: imports, slow when loaded
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"{url} does not answer"
        time.sleep(0.1)


def test_autocall_web_serves_the_console(tmp_path: Path) -> None:
    """`autocall web --no-dialer` on loopback: no TLS warning, logins work, SIGTERM ends it."""
    db = _db(tmp_path)
    secret = tmp_path / "pw"
    secret.write_text("ann-password-1", encoding="utf-8")
    subprocess.run([*CLI, "users", "add", "ann", "--role", "admin", "--password-file",
                    str(secret), "--db", db], check=True, capture_output=True, timeout=60)
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    proc = subprocess.Popen([*CLI, "web", "--no-dialer", "--port", str(port), "--db", db],
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        _up(url)
        with httpx.Client(base_url=url) as client:
            token = csrf_of(client.get("/login").text)
            answer = client.post("/login", data={"username": "ann", "password":
                                                 "ann-password-1", "csrf_token": token})
            assert answer.status_code == 303
            assert client.get("/campaigns").status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.stderr is not None
    log = proc.stderr.read()
    assert f"console: http://127.0.0.1:{port}/" in log and "WARNING" not in log
    assert "dialer worker" not in log


def test_demo_web_leaves_the_console_up(tmp_path: Path) -> None:
    """`autocall demo --web`: the demo runs, then its store is served with a login."""
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    proc = subprocess.Popen([*CLI, "demo", "--web", "--contacts", "4", "--channels", "4",
                             "--port", str(port), "--out", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "COLUMNS": "200"})
    try:
        assert proc.stdout is not None
        login = None
        deadline = time.monotonic() + 120
        for line in proc.stdout:
            if line.startswith("console:"):
                login = line.split()
                break
            assert time.monotonic() < deadline, "the demo did not finish"
        assert login is not None, "no console line"
        name, password = login[login.index("user") + 1], login[login.index("password") + 1]
        url = f"http://127.0.0.1:{port}"
        _up(url)
        with httpx.Client(base_url=url) as client:
            token = csrf_of(client.get("/login").text)
            assert client.post("/login", data={"username": name, "password": password,
                                               "csrf_token": token}).status_code == 303
            page = client.get("/campaigns").text
            assert "demo-" in page and "completed" in page
        proc.send_signal(signal.SIGINT)
        proc.wait(20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_dialer_worker_that_dies_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    worker = DialerWorker([sys.executable, "-c", "import sys; sys.exit(3)"]).start()
    deadline = time.monotonic() + 10
    while "exited (code 3)" not in capsys.readouterr().err.replace("\n", " ") \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    assert time.monotonic() < deadline, "no word of the worker's death"
    assert worker.stop() == 3


def test_a_host_beyond_loopback_without_tls_warns_loudly(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The warning itself (serving is replaced: the test must not listen beyond loopback)."""
    served: list[dict[str, object]] = []
    monkeypatch.setattr("autocall.cli.web.serve", lambda store, **kw: served.append(kw))
    done = CliRunner().invoke(app, ["web", "--host", "0.0.0.0", "--db", _db(tmp_path)])
    assert done.exit_code == 0, done.output
    assert "WARNING: serving on 0.0.0.0 without TLS" in " ".join(done.output.split())
    assert served and served[0]["host"] == "0.0.0.0"
    assert served[0]["worker"] == worker_command(_db(tmp_path))  # a dialer by default
    done = CliRunner().invoke(app, ["web", "--db", _db(tmp_path), "--no-dialer"])
    assert "WARNING" not in done.output and served[1]["worker"] is None


def test_autocall_web_over_tls(tmp_path: Path) -> None:
    """--certfile/--keyfile: HTTPS, a Secure cookie, HSTS, and no warning."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl is not installed (Debian package openssl)")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    db = _db(tmp_path)
    secret = tmp_path / "pw"
    secret.write_text("ann-password-1", encoding="utf-8")
    subprocess.run([*CLI, "users", "add", "ann", "--role", "admin", "--password-file",
                    str(secret), "--db", db], check=True, capture_output=True, timeout=60)
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    proc = subprocess.Popen([*CLI, "web", "--no-dialer", "--port", str(port), "--db", db,
                             "--certfile", str(cert), "--keyfile", str(key)],
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    url = f"https://127.0.0.1:{port}"
    try:
        trust = ssl.create_default_context(cafile=str(cert))
        with httpx.Client(base_url=url, verify=trust, timeout=5) as client:
            deadline = time.monotonic() + 20
            while True:
                try:
                    health = client.get("/healthz")
                    break
                except httpx.ConnectError:
                    assert time.monotonic() < deadline and proc.poll() is None
                    time.sleep(0.1)
            assert health.headers["strict-transport-security"].startswith("max-age=")
            token = csrf_of(client.get("/login").text)
            answer = client.post("/login", data={"username": "ann", "password":
                                                 "ann-password-1", "csrf_token": token})
            assert answer.status_code == 303
            cookie = answer.headers["set-cookie"].lower()
            assert "secure" in cookie and "httponly" in cookie
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.stderr is not None
    log = proc.stderr.read()
    assert f"console: https://127.0.0.1:{port}/" in log and "WARNING" not in log
