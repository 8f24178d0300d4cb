"""`autocall sip …`: check a SIP trunk or PBX from the command line."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Annotated

import typer
from rich.console import Console

from autocall.config import TrunkSettings
from autocall.sip.transport import TlsSettings

sip_app = typer.Typer(
    help="Check SIP trunks and peers.\n\nExample: autocall sip options sip:pbx.example.com",
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


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.add_typer(sip_app, name="sip")
