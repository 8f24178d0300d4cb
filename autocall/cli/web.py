"""`autocall web`, `autocall users …`, `autocall tokens …`: the console and who may use it.

``autocall web`` serves the console and the API with uvicorn and, unless ``--no-dialer``,
starts a dialer worker in a process of its own (media pacing never shares the web
server's process or event loop) and stops it when the server stops; the worker also
ends by itself when the server dies without stopping it (SIGKILL, OOM killer): see
``autocall.lifeline``.
"""

from __future__ import annotations

import contextlib
import getpass
import ipaddress
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from autocall.campaign.outbox import STATUS_SECRET_ENV, secret_problem
from autocall.campaign.store import Store
from autocall.cli.campaign import DbOpt, JsonOpt, _db_url, _open
from autocall.cli.safe_text import plain, safe
from autocall.config import shown_url
from autocall.web import accounts
from autocall.web.accounts import AccountError, Role

err = Console(stderr=True, highlight=False, soft_wrap=True)

WORKER_STOP_SECONDS = 60.0  # calls in flight may end this long after SIGTERM


def worker_command(url: str) -> list[str]:
    """The dialer worker ``autocall web`` starts: dials the store's running campaigns,
    and ends with this process (``--parent``), however this one ends."""
    return [sys.executable, "-m", "autocall.web.worker", "--db", url,
            "--parent", str(os.getpid())]


class DialerWorker:
    """A dialer worker process: started with the web server, stopped with it (SIGTERM,
    then SIGKILL after ``stop_seconds`` if its calls have not ended)."""

    def __init__(self, command: Sequence[str], stop_seconds: float = WORKER_STOP_SECONDS
                 ) -> None:
        self.command = list(command)
        self.stop_seconds = stop_seconds
        self.proc: subprocess.Popen[bytes] | None = None
        self.stopping = False

    def start(self) -> DialerWorker:
        """Start it; call this from the main thread (the worker's parent-death signal
        follows the thread that spawned it, see ``autocall.lifeline``)."""
        self.proc = subprocess.Popen(self.command, stdin=subprocess.DEVNULL)
        self.stopping = False
        err.print(f"dialer worker started (pid {self.proc.pid})")
        threading.Thread(target=self._watch, args=(self.proc,), daemon=True).start()
        return self

    def _watch(self, proc: subprocess.Popen[bytes]) -> None:
        """Say so, loudly, if the worker ends while the console still runs: campaigns
        set running in the console would wait for a dialer that is not there."""
        code = proc.wait()
        if not self.stopping:
            err.print(f"[bold red]dialer worker {proc.pid} exited (code {code}): running "
                      "campaigns are not dialed until a dialer runs (restart autocall web, "
                      "or run autocall campaign run NAME)[/bold red]")

    def stop(self) -> int | None:
        """Its exit code (None if it was never started)."""
        if self.proc is None:
            return None
        self.stopping = True
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(self.stop_seconds)
            except subprocess.TimeoutExpired:
                err.print(f"dialer worker {self.proc.pid} did not stop in "
                          f"{self.stop_seconds:g} s: killing it")
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def exposed_without_tls(host: str, certfile: Path | None, keyfile: Path | None) -> bool:
    """True when the console would listen beyond this machine in clear text."""
    if certfile is not None and keyfile is not None:
        return False
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True  # a host name: it may resolve to anything


def serve(store: Store, *, host: str = "127.0.0.1", port: int = 8080,
          certfile: Path | None = None, keyfile: Path | None = None,
          worker: Sequence[str] | None = None) -> None:
    """Serve the console on ``store`` until SIGINT/SIGTERM; ``worker`` is the dialer
    command to run beside it (None: a pure web node)."""
    import uvicorn

    from autocall.web.app import SECRET_ENV, create_app, session_secret

    https = certfile is not None and keyfile is not None
    app = create_app(store, secret_key=session_secret(), https=https)
    dialer = DialerWorker(worker).start() if worker else None
    if not os.environ.get(SECRET_ENV):
        err.print(f"note: {SECRET_ENV} is not set; logins end when this server stops "
                  "(set it, the same on every web node, to keep them)")
    # uvicorn stops on SIGINT/SIGTERM, then raises the signal again for the handler
    # that was there before it: let that be a no-op, so the worker is stopped below
    # (the default SIGTERM action would end this process first, orphaning it).
    before = {sig: signal.signal(sig, _noted) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        uvicorn.run(app, host=host, port=port, log_level="info",
                    ssl_certfile=str(certfile) if https else None,
                    ssl_keyfile=str(keyfile) if https else None,
                    timeout_graceful_shutdown=5, proxy_headers=False)
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
        if dialer is not None:
            code = dialer.stop()
            err.print(f"dialer worker stopped (exit {code})")


def _noted(signum: int, frame: object) -> None:
    """uvicorn has already acted on the signal; nothing more to do."""


def register(app: typer.Typer) -> None:
    """Add ``web``, ``users`` and ``tokens`` to the root app."""

    @app.command("web")
    def web(
        host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
        port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port.")] = 8080,
        db: DbOpt = None,
        no_dialer: Annotated[bool, typer.Option(
            "--no-dialer", help="Do not start a dialer worker (a pure web node; dialers run "
            "as `autocall campaign run` elsewhere on the same PostgreSQL).")] = False,
        certfile: Annotated[Path | None, typer.Option(
            "--certfile", help="TLS certificate (PEM) to serve HTTPS.")] = None,
        keyfile: Annotated[Path | None, typer.Option(
            "--keyfile", help="TLS private key (PEM) for --certfile.")] = None,
    ) -> None:
        """Serve the web console and the HTTP API, with a dialer worker beside it.

        The store comes from --db, else AUTOCALL_DATABASE_URL, else sqlite:///autocall.db.
        Log in with a user made by `autocall users add`. Ctrl-C stops the server and the
        dialer (its calls in flight end first, up to a minute).

        Example: autocall web --port 8080 --db sqlite:///autocall.db
        """
        if (certfile is None) != (keyfile is None):
            err.print("error: --certfile and --keyfile go together")
            raise typer.Exit(2)
        for path in (certfile, keyfile):
            if path is not None and not path.is_file():
                err.print(f"error: {safe(path)} is not a readable file")
                raise typer.Exit(2)
        if (problem := secret_problem(STATUS_SECRET_ENV)) is not None:
            err.print(f"error: {safe(problem)}")  # every callback would wait unsigned
            raise typer.Exit(2)
        if exposed_without_tls(host, certfile, keyfile):
            err.print(f"[bold red]WARNING: serving on {safe(host)} without TLS: passwords, "
                      "session cookies and API tokens cross the network in clear text. "
                      "Pass --certfile and --keyfile, or put a TLS proxy in front and "
                      "listen on 127.0.0.1.[/bold red]")
        url = _db_url(db)
        store = _open(db)
        if not accounts.list_users(store.engine):
            err.print("note: no users yet: add one with autocall users add NAME --role admin")
        scheme = "https" if certfile else "http"
        err.print(f"console: {scheme}://{safe(host)}:{port}/  store: {shown_url(url)}"
                  f"{'' if no_dialer else '  (with a dialer worker)'}")
        try:
            serve(store, host=host, port=port, certfile=certfile, keyfile=keyfile,
                  worker=None if no_dialer else worker_command(url))
        finally:
            store.close()

    app.add_typer(users_app, name="users")
    app.add_typer(tokens_app, name="tokens")


users_app = typer.Typer(help="Console users (argon2-hashed passwords) and their roles.\n\n"
                        "Example: autocall users add ann --role marketer", no_args_is_help=True)
tokens_app = typer.Typer(help="API tokens for CRMs and scripts (shown once, stored hashed).\n\n"
                         "Example: autocall tokens create --name crm --role marketer",
                         no_args_is_help=True)

RoleOpt = Annotated[str, typer.Option(
    "--role", help="admin, marketer (campaigns, contacts, reports), designer (trees, "
    "audio; no contacts) or viewer (reads only).")]


def _role(value: str) -> Role:
    try:
        return accounts.role_of(value)
    except AccountError as exc:
        err.print(f"error: --role: {safe(exc)}")
        raise typer.Exit(2) from None


def _cli_actor() -> str:
    """Who did it, for the audit log: the operating-system user at the terminal."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _password(password_file: Path | None) -> str:
    if password_file is None:
        value: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
        return value
    try:
        text = password_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        err.print(f"error: --password-file {safe(password_file)}: {safe(exc)}")
        raise typer.Exit(2) from None
    return text.rstrip("\r\n")


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Login name.")],
    role: RoleOpt,
    password_file: Annotated[Path | None, typer.Option(
        "--password-file", help="Read the password from this file (first line); "
        "otherwise it is asked twice.")] = None,
    db: DbOpt = None,
) -> None:
    """Add a console user with a role; the password is asked (hidden) or read from a file.

    Example: autocall users add ann --role marketer --password-file ann.pw
    """
    chosen = _role(role)
    password = _password(password_file)
    store = _open(db)
    try:
        accounts.add_user(store.engine, name, chosen, password)
        with store.engine.begin() as conn:
            accounts.audit(conn, _cli_actor(), "user.add", name, role=chosen.value)
    except AccountError as exc:
        err.print(f"error: {safe(exc)}")
        raise typer.Exit(2) from None
    finally:
        store.close()
    typer.echo(plain(f"user {name} added ({chosen.value})"))


@users_app.command("list")
def users_list(db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """List console users and their roles.

    Example: autocall users list --json
    """
    with _open(db) as store:
        rows = accounts.list_users(store.engine)
    if as_json:
        typer.echo(json.dumps([{"name": u.name, "role": u.role.value,
                                "created_at": u.created_at.isoformat(),
                                "disabled": u.disabled} for u in rows]))
        return
    table = Table("user", "role", "created (UTC)", "state")
    for u in rows:
        table.add_row(safe(u.name), u.role.value, f"{u.created_at:%Y-%m-%d %H:%M}",
                      "disabled" if u.disabled else "active")
    Console().print(table)


@tokens_app.command("create")
def tokens_create(
    name: Annotated[str, typer.Option("--name", help="What the token is for (e.g. crm).")],
    role: RoleOpt,
    db: DbOpt = None,
) -> None:
    """Create an API token and print it once (only its hash is kept).

    Send it as `Authorization: Bearer <token>`.

    Example: autocall tokens create --name crm --role marketer
    """
    chosen = _role(role)
    if not name.strip() or len(name) > 100:
        err.print("error: --name is 1 to 100 characters")
        raise typer.Exit(2)
    with _open(db) as store:
        token = accounts.create_token(store.engine, name, chosen, created_by=_cli_actor())
        with store.engine.begin() as conn:
            accounts.audit(conn, _cli_actor(), "token.create", name, role=chosen.value)
    err.print("the token (shown once; store it in your CRM's secret settings now):")
    typer.echo(token)


@tokens_app.command("list")
def tokens_list(db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """List API tokens (their first characters, never the token).

    Example: autocall tokens list
    """
    with _open(db) as store:
        rows = accounts.list_tokens(store.engine)
    if as_json:
        typer.echo(json.dumps([{
            "name": t.name, "role": t.role.value, "prefix": t.prefix,
            "created_by": t.created_by, "created_at": t.created_at.isoformat(),
            "last_used_at": t.last_used_at.isoformat() if t.last_used_at else None,
            "revoked": t.revoked_at is not None} for t in rows]))
        return
    table = Table("token", "role", "starts with", "created (UTC)", "last used", "state")
    for t in rows:
        table.add_row(safe(t.name), t.role.value, f"{t.prefix}…",
                      f"{t.created_at:%Y-%m-%d %H:%M}",
                      f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "never",
                      "revoked" if t.revoked_at else "active")
    Console().print(table)


@tokens_app.command("revoke")
def tokens_revoke(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The token's name.")],
    db: DbOpt = None,
) -> None:
    """Revoke every live token with this name; clients using it get 401 at once.

    Example: autocall tokens revoke crm
    """
    with _open(db) as store:
        count = accounts.revoke_tokens(store.engine, name, _cli_actor())
    if not count:
        err.print(f"error: no live token named {safe(name)}")
        raise typer.Exit(1)
    typer.echo(plain(f"{count} token(s) named {name} revoked"))
