"""`autocall sip …`: check a SIP trunk or PBX from the command line."""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import replace
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from autocall.config import TrunkSettings
from autocall.sip.transport import TlsSettings

sip_app = typer.Typer(
    help="Check SIP trunks and peers; list trunk presets.\n\n"
    "Example: autocall sip options sip:pbx.example.com",
    no_args_is_help=True,
)


async def _options(target: str, bind: str, transport: str, timeout: float,
                   user: str | None, password: str | None,
                   tls: TlsSettings) -> tuple[int, str, float]:
    from autocall.sip.transaction import Timers
    from autocall.telephony.call import UserAgent

    host, _, port = bind.rpartition(":")
    ua = await UserAgent.start(bind_host=host or bind, bind_port=int(port or 0),
                               transport=transport, user=user or "autocall",
                               password=password, tls=tls,
                               timers=Timers(t1=min(0.5, timeout / 64)))
    t0 = time.monotonic()
    try:
        return await asyncio.wait_for(ua.options(target), timeout)
    except TimeoutError:
        return 408, "no response", time.monotonic() - t0
    finally:
        await ua.close()


@sip_app.command("options")
def options(
    target: Annotated[str, typer.Argument(
        help="SIP URI or host[:port] of the trunk/peer, e.g. sip:pbx.example.com:5060.")],
    bind: Annotated[str, typer.Option(help="Local address to send from (host:port).")] =
        "0.0.0.0:0",
    transport: Annotated[str, typer.Option(
        help="udp, tcp or tls (TLS settings: AUTOCALL_SIP_TLS_CA_FILE, _CERT_FILE, _KEY_FILE, "
        "_SERVER_NAME, _VERIFY).")] = "udp",
    timeout: Annotated[float, typer.Option(help="Seconds to wait for an answer.")] = 5.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Send SIP OPTIONS and report the answer and round-trip time.

    Credentials for a trunk that challenges OPTIONS come from AUTOCALL_SIP_USER and
    AUTOCALL_SIP_PASSWORD (or AUTOCALL_SIP_PASSWORD_FILE). Exit status 0 on a 200 answer,
    1 on any other answer or none, 2 on a bad target or option.

    Example: autocall sip options sip:127.0.0.1:5060 --json
    """
    if transport.lower() not in ("udp", "tcp", "tls"):
        raise typer.BadParameter("use udp, tcp or tls", param_hint="--transport")
    uri = target if target.split(":", 1)[0].lower() in ("sip", "sips") else f"sip:{target}"
    from autocall.sip.message import URI

    try:
        URI.parse(uri)
    except ValueError as exc:
        Console(stderr=True).print(f"[red]error:[/red] target {target!r}: {exc}", highlight=False)
        raise typer.Exit(2) from None
    try:
        trunk = TrunkSettings.from_env()
        if transport.lower() == "tls":
            trunk.tls.client_context()  # a bad certificate file is named before anything
        code, reason, elapsed = asyncio.run(
            _options(uri, bind, transport.lower(), timeout, trunk.user, trunk.password,
                     trunk.tls))
    except (OSError, ValueError) as exc:
        Console(stderr=True).print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from None
    ok = code == 200
    if as_json:
        typer.echo(json.dumps({"ok": ok, "target": uri, "status": code, "reason": reason,
                               "rtt_ms": round(elapsed * 1000, 1)}))
    else:
        colour = "green" if ok else "red"
        Console().print(f"{uri}: [{colour}]{code} {reason}[/{colour}] in "
                        f"{elapsed * 1000:.1f} ms", highlight=False)
    if not ok:
        raise typer.Exit(1)


_CALLER_ID_SHOWN = {"from": "From user", "pai": "P-Asserted-Identity",
                    "rpid": "Remote-Party-ID"}


@sip_app.command("trunks")
def trunks(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """List trunk presets and your own trunk files.

    Presets ship with autocall; your own trunk files are NAME.yaml in the folder named by
    AUTOCALL_SIP_TRUNKS_DIR (default: ./trunks), and one with a preset's name replaces it.
    A trunk file may start from a preset (preset: asterisk) and add host:, user:,
    password_env: (the variable that holds the password), caller_id: and echo:. Use a
    trunk for calls with AUTOCALL_SIP_TRUNK=NAME; check it with `autocall sip check NAME`.
    Exit status 1 when one of your files cannot be used (each problem is named as
    file:line:col).

    Example: autocall sip trunks --json
    """
    from autocall.trunks import list_trunks, user_dir

    found, problems = list_trunks()
    if as_json:
        typer.echo(json.dumps({
            "folder": str(user_dir()), "problems": problems,
            "trunks": [{"name": t.name, "source": t.source, "path": str(t.path),
                        "description": t.description, "host": t.host, "port": t.port,
                        "transport": t.transport, "register": t.register,
                        "caller_id_header": str(t.caller_id_header),
                        "codecs": [c.lower() for c in t.codecs], "user": t.user,
                        "password_env": t.password_env, "echo": t.echo,
                        "docs": list(t.docs)} for t in found]}))
    else:
        table = Table(title=f"SIP trunks (your files: {escape(str(user_dir()))}/)")
        for col in ("name", "from", "transport", "port", "register", "caller ID in", "host",
                    "description"):
            table.add_column(col)
        for t in found:
            table.add_row(escape(t.name), t.source, t.transport,
                          str(t.port) if t.port else "DNS", "yes" if t.register else "no",
                          _CALLER_ID_SHOWN[str(t.caller_id_header)], escape(t.host or "-"),
                          escape(t.description))
        Console().print(table)
        err = Console(stderr=True)
        for problem in problems:  # each says file:line:col: error: …
            err.print(f"[red]{escape(problem)}[/red]", highlight=False, soft_wrap=True)
    if problems:
        raise typer.Exit(1)


_MARK = {"pass": "[green]pass[/green]", "warn": "[yellow]warn[/yellow]",
         "fail": "[red]FAIL[/red]", "skip": "[dim]skip[/dim]"}


@sip_app.command("check")
def check(
    trunk_name: Annotated[str, typer.Argument(
        metavar="TRUNK",
        help="A trunk from `autocall sip trunks`, or a trunk file (path ending .yaml).")],
    echo: Annotated[str | None, typer.Option(
        help="Number (or sip: URI) to place the test call to; default the trunk's echo:.")]
    = None,
    caller_id: Annotated[str | None, typer.Option(
        "--caller-id", help="Caller ID of the test call; default the trunk's caller_id:.")]
    = None,
    timeout: Annotated[float, typer.Option(
        min=0.1, max=120, help="Seconds each step waits for an answer.")] = 5.0,
    ring_timeout: Annotated[float, typer.Option(
        min=0.1, max=300, help="Seconds the test call may ring.")] = 15.0,
    bind: Annotated[str | None, typer.Option(
        help="Local address to send from (host:port); default AUTOCALL_BIND_HOST.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Check a trunk: DNS, OPTIONS, REGISTER (digest), a test call and its audio both ways.

    The trunk file gives host, port, transport, registration, user, caller-ID header and
    the variable holding the password (password_env:, default AUTOCALL_SIP_PASSWORD);
    AUTOCALL_SIP_* variables that are set win over it. The test call goes to the echo
    number only if one is given; once answered, keys sent in-band must come back (no RTP
    back is one-way audio), then it is hung up. A step that fails shows the
    SIP messages it sent and received. Exit status 0 when nothing failed, 1 when a step
    failed, 2 on a bad trunk file or option.

    Example: AUTOCALL_SIP_TRUNKS_DIR=./trunks autocall sip check office-pbx --echo 600
    """
    from autocall.config import Settings
    from autocall.sip.callerid import check_caller_id
    from autocall.telephony.trunkcheck import FAIL, check_trunk, echo_target
    from autocall.trunks import TrunkError, check_echo, load_trunk, user_dir

    err = Console(stderr=True)

    def usage(message: str) -> typer.Exit:
        err.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
        return typer.Exit(2)

    try:
        spec = load_trunk(trunk_name)
    except TrunkError as exc:
        for problem in exc.problems:  # each says file:line:col: error: …
            err.print(f"[red]{escape(problem)}[/red]", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    try:
        settings = Settings.from_env()
        trunk = TrunkSettings.from_trunk(spec)
        if bind is not None:
            host, colon, port = bind.rpartition(":")
            if not colon or not port.isdigit() or int(port) > 65535:
                raise ValueError(f"--bind {bind!r}: expected HOST:PORT (port 0: any)")
            settings = replace(settings, bind_host=host, bind_port=int(port))
        if trunk.transport not in ("udp", "tcp", "tls"):
            raise ValueError(f"transport {trunk.transport!r} (AUTOCALL_SIP_TRANSPORT): use "
                             "udp, tcp or tls")
        if trunk.transport == "tls":
            trunk.tls.client_context()  # a bad certificate file is named before anything
        echo = echo or trunk.echo
        if echo is not None:
            echo_target(trunk, check_echo(echo))
        caller_id = caller_id or trunk.caller_id
        if caller_id is not None:
            check_caller_id(caller_id)
    except (OSError, ValueError) as exc:
        raise usage(str(exc)) from None
    if spec.host is None and not os.environ.get("AUTOCALL_SIP_HOST"):
        folder = spec.path.parent if spec.source == "user" else user_dir()
        raise usage(f"trunk {spec.name!r} names no host: write {folder}/NAME.yaml with "
                    f"'preset: {spec.name}' and 'host: …', or set AUTOCALL_SIP_HOST")
    password_env = spec.password_env or "AUTOCALL_SIP_PASSWORD"
    try:
        steps = asyncio.run(check_trunk(trunk, settings, timeout=timeout, echo=echo,
                                        caller_id=caller_id, ring_timeout=ring_timeout,
                                        password_env=password_env))
    except (OSError, ValueError) as exc:
        raise usage(str(exc)) from None
    ok = not any(s.outcome == FAIL for s in steps)
    where = f"{trunk.transport}:{trunk.hostport}"
    if as_json:
        typer.echo(json.dumps({
            "ok": ok, "trunk": spec.name, "source": spec.source, "target": where,
            "register": trunk.register, "caller_id_header": str(trunk.caller_id_header),
            "steps": [s.as_json(with_trace=s.outcome == FAIL) for s in steps]}))
    else:
        from autocall.sip.trace import SipTrace

        out = Console()
        table = Table(title=f"trunk {escape(spec.name)} ({spec.source}): {escape(where)}, "
                            f"caller ID in {_CALLER_ID_SHOWN[str(trunk.caller_id_header)]}")
        for col in ("step", "result", "ms", "detail"):
            table.add_column(col)
        for s in steps:
            table.add_row(s.name, _MARK[s.outcome], "" if s.ms is None else f"{s.ms:.0f}",
                          escape(s.detail))
        out.print(table)
        for s in steps:
            if s.outcome == FAIL and s.trace:
                out.print(f"\n[bold]SIP trace of {s.name}[/bold] "
                          f"({len(s.trace)} messages):", highlight=False)
                out.print(escape(SipTrace.render(s.trace)), highlight=False, soft_wrap=True)
    if not ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.add_typer(sip_app, name="sip")
