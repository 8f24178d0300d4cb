"""`autocall call TARGET` (one informer call) and `autocall serve --tree FILE` (inbound robot).

Exit codes of `autocall call`, by outcome:

  0  answered (and, with --confirm, the confirm key was pressed)
  1  failed: SIP error, unreachable trunk, transport problem
  2  bad usage or unreadable input (tree, audio file, password file)
  3  answered, but the --confirm key was not pressed
  4  busy or declined (486, 600, 603)
  5  no answer (ring timeout, 408, 480)
  130/143  cut by Ctrl-C / SIGTERM (the call is hung up and its record written)
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from sqlalchemy.exc import SQLAlchemyError

from autocall.audio import check as audio_check
from autocall.campaign import outbox
from autocall.campaign.dialer import default_node, node_process_gone
from autocall.campaign.placer import load_tree
from autocall.campaign.store import Store
from autocall.config import Settings, TrunkSettings, hide_password, secret, shown_url
from autocall.dialogue.schema import Tree
from autocall.dialogue.validate import validate_file
from autocall.process import freeze_startup_heap
from autocall.signals import StopSignals
from autocall.telephony.answer import AmdOptions, OnMachine
from autocall.telephony.call import Call, CallStatus, UserAgent
from autocall.telephony.inbound import AllowList, InboundServer
from autocall.telephony.outbound import Dial, OutboundCall, Services, informer_tree
from autocall.telephony.record import HUNG_UP_EARLY, CallRecord
from autocall.telephony.runner import AudioCache, prompt_rates, prompts_of, tree_uses_speech
from autocall.telephony.webhooks import EventSink, StatusCallbacks, WebhookClient

EXIT_ANSWERED = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_CONFIRMED = 3
EXIT_BUSY = 4
EXIT_NO_ANSWER = 5

_err = Console(stderr=True, soft_wrap=True)


def _usage(message: str) -> typer.Exit:
    _err.print(f"[red]error:[/] {message}")
    return typer.Exit(EXIT_USAGE)


def _checked_tree(path: Path) -> Tree:
    """The tree, only if the validator finds no error in it, its audio or its outcomes
    (issue 12 item 11): a broken tree must not answer or dial anyone."""
    report = validate_file(path)
    if report.errors:
        for problem in report.errors:
            _err.print(escape(str(problem)))
        raise _usage(escape(f"{path}: {len(report.errors)} error(s); fix them "
                            f"(autocall prompts validate {path})"))
    return load_tree(path)


def _on_machine(value: str) -> OnMachine:
    return "hangup" if value == "hangup" else "message"


def _told_outcome(record: CallRecord) -> str | None:
    """AMD's outcome (machine, left-message, fax) or else the tree's."""
    if record.outcome in (None, HUNG_UP_EARLY):
        return record.dialogue_outcome
    return record.outcome


def exit_code(record: CallRecord, confirm: bool) -> int:
    """The documented exit code (module docstring) of a finished call's record."""
    if record.status in (CallStatus.COMPLETED, CallStatus.IN_PROGRESS):
        if confirm and _told_outcome(record) != "confirmed":
            return EXIT_NOT_CONFIRMED
        return EXIT_ANSWERED
    if record.status is CallStatus.BUSY:
        return EXIT_BUSY
    if record.status is CallStatus.NO_ANSWER:
        return EXIT_NO_ANSWER
    return EXIT_FAILED


@dataclass(frozen=True, slots=True)
class Placed:
    """What one informer call leaves: its record, whether the trunk was never reached at
    all (a network fault, not the callee), and the signal that cut it, if one did."""

    record: CallRecord
    network_fault: bool = False
    signal: int | None = None

    def as_json(self, code: int) -> dict[str, object]:
        """What ``--json`` prints: the call record as the store and the web API give it
        (DESIGN.md §4), with the network fault and the exit code beside it."""
        return {**self.record.as_json(), "network_fault": self.network_fault,
                "exit_code": code}

    def line(self) -> str:
        """The one line printed without ``--json``; ``outcome`` is AMD's or the tree's."""
        r, outcome = self.record, _told_outcome(self.record)
        parts = [str(r.number), r.status.value, f"SIP {r.sip_code}"]
        if r.answered_at is not None:
            parts += [f"answered {r.answered_at.isoformat()}", f"{round(r.billable or 0.0, 2)} s"]
        parts += [text for shown, text in (
            (r.digits, f"digits {r.digits}"), (r.path, "path " + ">".join(r.path)),
            (r.answered_by, f"answered by {r.answered_by}"), (outcome, f"outcome {outcome}"),
            (r.error, f"error {r.error}")) if shown]
        return "  ".join(parts)


def _target_uri(target: str, trunk: TrunkSettings) -> str:
    if target.startswith(("sip:", "sips:")):
        return target
    return f"sip:{target}@{trunk.hostport}"


async def place_informer_call(target: str, tree: Tree, variables: dict[str, str], *,
                              trunk: TrunkSettings, settings: Settings, caller_id: str | None,
                              ring_timeout: float, status_callback: str | None = None,
                              via_trunk: bool = False, amd: AmdOptions | None = None,
                              on_progress: Callable[[CallRecord], object] | None = None,
                              sink: EventSink | None = None,
                              ) -> Placed:
    """Dial ``target``, run ``tree`` if answered; return what the call left.

    ``via_trunk`` sends even a full sip: URI through the trunk as outbound proxy (a
    number always goes to the trunk).
    """
    ua = await UserAgent.from_settings(settings, trunk, proxy=trunk.uri if via_trunk else None)
    services = Services(AudioCache(settings.tts_cache_dir),
                        callbacks=StatusCallbacks(status_callback, sink=sink))
    outbound = OutboundCall(ua, Dial(_target_uri(target, trunk), tree, target, variables,
                                     caller_id=caller_id, ring_timeout=ring_timeout, amd=amd),
                            services, on_progress=on_progress)
    task = asyncio.current_task()
    signals = StopSignals(lambda _: task.cancel() if task else None)
    try:
        rates = prompt_rates(trunk.codecs)  # prompts rendered before it rings
        for error in await services.audio.warm(prompts_of(tree, variables), rates):
            _err.print(f"[yellow]prompt not rendered:[/] {error}")
        if trunk.register and not await ua.wait_registered(10.0):
            done = outbound.record(error="registration failed")
        else:
            done = await outbound.place()
        return Placed(done, _network_fault(outbound.call))
    except asyncio.CancelledError:
        if not signals.received:
            raise
        # SIGINT/SIGTERM: hang up (BYE, or CANCEL while ringing) and keep the record; a
        # second signal stops waiting for the far end's answer to that.
        sig = signals.received[0]
        me = asyncio.current_task()
        if me is not None:
            me.uncancel()  # handled here: later timeouts must work as timeouts
        if outbound.call is not None:
            await outbound.hang_up(4.0)
            outbound.callback("completed", call_status=str(outbound.call.status))
        done = outbound.record(error=f"interrupted by {sig.name}")
        return Placed(done, _network_fault(outbound.call), signal=sig.value)
    finally:
        signals.close()
        await services.callbacks.drain(0.5 if signals.received else 3.0)
        await ua.close()


def _network_fault(call: Call | None) -> bool:
    return call is not None and call.network_fault


# Status callbacks: a receiver answers within 3 s (as before the outbox); retried for
# a day by whichever process delivers next.
CALLBACKS = outbox.Policy(timeout=3.0, lease=timedelta(seconds=30))


class _RecordStore:
    """Where ``autocall call`` keeps its DESIGN.md §4 record: written at answer, as digits
    come, and at the end. A store that fails is reported once; the call goes on."""

    def __init__(self, url: str) -> None:
        self.url, self.node = url, default_node()
        self.store: Store | None = None
        try:
            self.store = Store(url)
            # records a killed `autocall call` left unfinished are closed now
            self.store.close_unfinished_calls("outbound", node_process_gone)
        except SQLAlchemyError as exc:
            self._failed(exc)

    def write(self, record: CallRecord) -> None:
        if self.store is None:
            return
        try:
            self.store.add_call(replace(record, node=self.node))
        except SQLAlchemyError as exc:
            self._failed(exc)

    def _failed(self, exc: SQLAlchemyError) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None
        _err.print(f"[yellow]call record not stored in {shown_url(self.url)}:[/] "
                   f"{escape(hide_password(str(exc), self.url))}")

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


def _callback_target(url: str | None) -> outbox.WebhookTarget | None:
    """``--status-callback``, checked before dialing or listening: an http(s) URL, and
    the signing secret set (or unset) as the outbox needs it."""
    if not url:
        return None
    try:
        target = outbox.callback_target(url)
    except ValueError:
        raise _usage(f"--status-callback {escape(url)}: not an http(s) URL") from None
    if (problem := outbox.secret_problem(outbox.STATUS_SECRET_ENV)) is not None:
        raise _usage(escape(problem))
    return target


def _parse_vars(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        name, eq, value = pair.partition("=")
        if not eq or not name.strip():
            raise _usage(f"--var {pair!r}: write NAME=VALUE")
        out[name.strip()] = value
    return out


def _trunk(host: str | None, port: int | None, transport: str | None, user: str | None,
           password_file: Path | None, register: bool | None) -> TrunkSettings:
    try:
        base = TrunkSettings.from_env()
    except ValueError as exc:
        raise _usage(escape(str(exc))) from None
    password = base.password
    if password_file is not None:
        try:
            password = password_file.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise _usage(f"--password-file {password_file}: {exc.strerror}") from exc
    # replace, not a new TrunkSettings: what the flags do not name (caller-ID header,
    # keep-alive, the trunk file's values) stays as the environment and trunk file say
    trunk = replace(
        base, host=host or base.host, port=port or base.port,
        transport=(transport or base.transport).lower(), user=user or base.user,
        password=password or base.password or secret("AUTOCALL_SIP_PASSWORD"),
        register=base.register if register is None else register)
    if trunk.transport not in ("udp", "tcp", "tls"):
        raise _usage(f"transport {escape(trunk.transport)!r} (--transport or "
                     "AUTOCALL_SIP_TRANSPORT): use udp, tcp or tls")
    try:  # SDES keys over plain signalling are refused before dialing
        trunk.srtp.check_transport(trunk.transport)
    except ValueError as exc:
        raise _usage(escape(str(exc))) from None
    if trunk.transport == "tls":
        try:  # a missing or broken certificate file is named now, not after dialing
            trunk.tls.client_context()
            trunk.tls.server_context()
        except ValueError as exc:
            raise _usage(escape(str(exc))) from None
    return trunk


HostOpt = Annotated[str | None, typer.Option(
    "--host", help="Trunk/PBX host (env AUTOCALL_SIP_HOST, default 127.0.0.1).")]
PortOpt = Annotated[int | None, typer.Option(
    "--port",
    help="Trunk/PBX port (env AUTOCALL_SIP_PORT; default: DNS SRV for a name, else 5060).")]
TransportOpt = Annotated[str | None, typer.Option(
    "--transport", help="udp, tcp or tls (env AUTOCALL_SIP_TRANSPORT; TLS settings: "
    "AUTOCALL_SIP_TLS_CA_FILE, _CERT_FILE, _KEY_FILE, _SERVER_NAME, _VERIFY).")]
UserOpt = Annotated[str | None, typer.Option(
    "--user", help="SIP user for digest auth (env AUTOCALL_SIP_USER). The password comes "
    "from AUTOCALL_SIP_PASSWORD, AUTOCALL_SIP_PASSWORD_FILE or --password-file, never a flag.")]
PasswordFileOpt = Annotated[Path | None, typer.Option(
    "--password-file", help="File holding the SIP password (first line).")]
RegisterOpt = Annotated[bool | None, typer.Option(
    "--register/--no-register", help="REGISTER with the trunk (env AUTOCALL_SIP_REGISTER).")]
BindOpt = Annotated[str | None, typer.Option(
    "--bind", help="Local SIP address HOST:PORT (env AUTOCALL_BIND_HOST/PORT).")]


def _settings(bind: str | None) -> Settings:
    try:
        base = Settings.from_env()
    except ValueError as exc:
        raise _usage(escape(str(exc))) from None
    if not bind:
        return base
    host, _, port = bind.rpartition(":")
    if not host or not port.isdigit():
        raise _usage(f"--bind {bind!r}: write HOST:PORT, e.g. 0.0.0.0:5060")
    return Settings(trunk=base.trunk, bind_host=host, bind_port=int(port),
                    advertised_host=base.advertised_host, database_url=base.database_url,
                    tts_cache_dir=base.tts_cache_dir, vosk_model=base.vosk_model)


def register(app: typer.Typer) -> None:
    """Add ``autocall call`` and ``autocall serve`` to the root app."""

    @app.command("call")
    def call(
        target: Annotated[str, typer.Argument(
            help="Number (dialed via the trunk) or a full sip: URI.")],
        say: Annotated[str | None, typer.Option("--say", help="Text to speak.")] = None,
        lang: Annotated[str, typer.Option("--lang", help="Language of --say.")] = "en",
        play: Annotated[Path | None, typer.Option("--play", help="WAV/MP3 to play.")] = None,
        tree_file: Annotated[Path | None, typer.Option(
            "--tree", help="Prompt tree (YAML) to run instead of a message.")] = None,
        var: Annotated[list[str] | None, typer.Option(
            "--var", help="Tree variable NAME=VALUE (repeatable).")] = None,
        repeat: Annotated[int, typer.Option(
            "--repeat", min=1, max=10, help="Say/play the message N times.")] = 1,
        confirm: Annotated[str | None, typer.Option(
            "--confirm", help="Ask the callee to press this key to confirm.")] = None,
        confirm_timeout: Annotated[float, typer.Option(
            "--confirm-timeout", min=0.5, max=60, help="Seconds to wait for the key "
            "(asked twice).")] = 6.0,
        caller_id: Annotated[str | None, typer.Option("--caller-id", help="Caller ID.")] = None,
        ring_timeout: Annotated[float, typer.Option(
            "--ring-timeout", min=1, max=300, help="Seconds to ring before giving up.")] = 30,
        status_callback: Annotated[str | None, typer.Option(
            "--status-callback", help="URL for initiated/answered/completed POSTs.")] = None,
        host: HostOpt = None, port: PortOpt = None, transport: TransportOpt = None,
        user: UserOpt = None, password_file: PasswordFileOpt = None,
        register_: RegisterOpt = None, bind: BindOpt = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the call record (as the "
                                              "store and the web API give it) as JSON.")
                           ] = False,
        db: Annotated[str | None, typer.Option(
            "--db", help="Store for the call record (default: AUTOCALL_DATABASE_URL or "
            "sqlite:///autocall.db).")] = None,
        amd: Annotated[bool, typer.Option(
            "--amd", help="Detect answering machines: talk to a person at once, leave the "
            "message after a machine's beep (or hang up, --on-machine), hang up on a fax.")
        ] = False,
        on_machine: Annotated[str, typer.Option(
            "--on-machine", help="With --amd, on a machine: message or hangup.")] = "message",
    ) -> None:
        """Place one informer call: speak or play a message, optionally ask to confirm.

        Exit codes: 0 answered (and confirmed), 1 failed, 2 bad usage,
        3 answered but not confirmed, 4 busy or declined, 5 no answer; 130/143 when
        Ctrl-C/SIGTERM cut the call (it is hung up and its record written).

        Example: autocall call +15550100 --say "Your parcel arrives today" --confirm 1
        Example: autocall call +15550100 --say "Your parcel arrives today" --amd
        """
        logging.basicConfig(level=logging.ERROR)
        chosen = [x for x in (say, play, tree_file) if x is not None]
        if len(chosen) != 1:
            raise _usage("give exactly one of --say TEXT, --play FILE or --tree FILE")
        if confirm is not None and (len(confirm) != 1 or confirm not in "0123456789*#"):
            raise _usage(f"--confirm {confirm!r}: one key, 0-9, * or #")
        if confirm is not None and tree_file is not None:
            raise _usage("--confirm goes with --say/--play; a --tree asks its own questions")
        if on_machine not in ("message", "hangup"):
            raise _usage(f"--on-machine {on_machine!r}: use message or hangup")
        amd_options = AmdOptions(on_machine=_on_machine(on_machine)) if amd else None
        variables = _parse_vars(var or [])
        try:
            if tree_file is not None:
                tree = _checked_tree(tree_file)
            else:
                if play is not None and not play.is_file():
                    raise _usage(f"--play {play}: no such file")
                if play is not None and (bad := audio_check.problem(play)) is not None:
                    # refused before dialing: a call that plays silence is not delivered
                    raise _usage(escape(f"--play {play}: {bad.detail}. {bad.hint}"))
                tree = informer_tree(say=say, lang=lang, play=play.resolve() if play else None,
                                     repeat=repeat, confirm=confirm,
                                     confirm_timeout=confirm_timeout)
        except (OSError, ValueError) as exc:
            raise _usage(str(exc)) from exc
        trunk = _trunk(host, port, transport, user, password_file, register_)
        settings = _settings(bind)
        callback = _callback_target(status_callback)
        records = _RecordStore(db or settings.database_url)
        store = records.store  # the outbox keeps the status callbacks (else: in memory)
        sink = None if store is None or callback is None else outbox.Sink(store.engine,
                                                                           [callback])
        try:
            placing = place_informer_call(
                target, tree, variables, trunk=trunk, settings=settings, caller_id=caller_id,
                ring_timeout=ring_timeout, status_callback=status_callback,
                via_trunk=host is not None or bool(os.environ.get("AUTOCALL_SIP_HOST"))
                or trunk.name is not None,  # AUTOCALL_SIP_TRUNK: every call goes through it
                amd=amd_options, on_progress=records.write, sink=sink)
            placed = asyncio.run(placing if store is None or sink is None else
                                 outbox.alongside(store.engine, default_node(), placing,
                                                  grace=3.0, policy=CALLBACKS))
            if placed.record.call_id:
                records.write(placed.record)
        finally:
            records.close()
        code = exit_code(placed.record, confirm is not None)
        if placed.signal:
            code = 128 + placed.signal  # the shell's convention: 130, 143
        typer.echo(json.dumps(placed.as_json(code)) if as_json else placed.line())
        raise typer.Exit(code)

    @app.command("serve")
    def serve(
        tree_file: Annotated[Path, typer.Option("--tree", help="Prompt tree (YAML) to run.")],
        bind: Annotated[str, typer.Option(
            "--bind", help="Local SIP address HOST:PORT to listen on.")] = "127.0.0.1:5060",
        max_calls: Annotated[int, typer.Option(
            "--max-calls", min=1, max=5000, help="Concurrent calls; more get 503.")] = 50,
        allow: Annotated[list[str] | None, typer.Option(
            "--allow", help="Source address or network allowed to call (repeatable); "
            "others get 403. Default: anyone.")] = None,
        records: Annotated[Path, typer.Option(
            "--records", help="Call records, one JSON object per line.")] = Path(
            "autocall-inbound.jsonl"),
        db: Annotated[str | None, typer.Option(
            "--db", help="Store for call records (default: AUTOCALL_DATABASE_URL or "
            "sqlite:///autocall.db).")] = None,
        recordings: Annotated[Path, typer.Option(
            "--recordings", help="Folder for voicemail WAVs and their JSON sidecars.")] = Path(
            "recordings"),
        var: Annotated[list[str] | None, typer.Option(
            "--var", help="Tree variable NAME=VALUE (repeatable).")] = None,
        status_callback: Annotated[str | None, typer.Option(
            "--status-callback", help="URL for ringing/answered/completed POSTs.")] = None,
        webhook_fallback: Annotated[str | None, typer.Option(
            "--webhook-fallback", help="URL tried when a tree webhook never answers.")] = None,
        drain_timeout: Annotated[float, typer.Option(
            "--drain-timeout", help="On SIGTERM/Ctrl-C, seconds to let calls finish.")] = 60.0,
        host: HostOpt = None, port: PortOpt = None, transport: TransportOpt = None,
        user: UserOpt = None, password_file: PasswordFileOpt = None,
        register_: RegisterOpt = None,
    ) -> None:
        """Answer inbound calls with a prompt tree (as a trunk endpoint, or registered).

        Calls beyond --max-calls get 503; sources outside --allow get 403.
        Transfers may only reach the tree's transfer_targets (toll-fraud guard).
        SIGTERM or Ctrl-C stops taking calls and lets the running ones finish.
        Every call leaves one call record in the store (--db) and one JSON line in --records.

        Example: autocall serve --tree prompts/office.yaml --bind 0.0.0.0:5060
        """
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
        try:
            tree = _checked_tree(tree_file)
            allow_list = AllowList(allow or [])
        except (OSError, ValueError) as exc:
            raise _usage(str(exc)) from exc
        settings = _settings(bind)
        trunk = _trunk(host, port, transport, user, password_file, register_)
        speech_model = _speech_model(tree, settings)
        try:
            store = Store(db or settings.database_url)
        except SQLAlchemyError as exc:
            url = db or settings.database_url
            raise _usage(f"--db {shown_url(url)}: {escape(hide_password(str(exc), url))}"
                         ) from exc
        callback = _callback_target(status_callback)
        sink = None if callback is None else outbox.Sink(store.engine, [callback])
        # records a killed server left unfinished (answered, digits so far) are closed now
        closed = store.close_unfinished_calls("inbound", node_process_gone)
        if closed:
            _err.print(f"closed {closed} call record(s) a stopped server left unfinished")
        server = InboundServer(tree, records, max_calls=max_calls, allow=allow_list,
                               on_record=store.add_call, node=default_node(),
                               speech_model=speech_model,
                               audio=AudioCache(settings.tts_cache_dir),
                               recordings_dir=recordings, variables=_parse_vars(var or []),
                               callbacks=StatusCallbacks(status_callback, sink=sink),
                               webhooks=WebhookClient(fallback_url=webhook_fallback))
        freeze_startup_heap()  # the tree, models and libraries stay: keep GC passes short
        try:
            # the status callbacks (and any other event in this store) go out from here
            asyncio.run(outbox.alongside(store.engine, default_node(),
                                         _serve(server, settings, trunk, drain_timeout),
                                         grace=3.0, policy=CALLBACKS))
        finally:
            store.close()


def _speech_model(tree: Tree, settings: Settings) -> object | None:
    """The vosk model, loaded before the first call, if the tree takes spoken answers."""
    if not tree_uses_speech(tree):
        return None
    from autocall.speech import asr

    try:
        return asr.load_model(settings.vosk_model, tree.language)
    except (asr.ModelError, OSError) as exc:
        _err.print(f"[yellow]spoken answers off:[/] {exc} (keys still work)")
        return False


async def _serve(server: InboundServer, settings: Settings, trunk: TrunkSettings,
                 drain_timeout: float) -> None:
    ua = await UserAgent.from_settings(settings, trunk, on_call=server.on_call)
    signals = StopSignals()
    host, port = ua.sip.advertised
    try:
        if trunk.register:
            if not await ua.wait_registered(10.0):
                _err.print(f"[red]registration with {trunk.uri} failed:[/] "
                           f"{ua.sip.register_error}")
                raise SystemExit(EXIT_FAILED)
            _err.print(f"registered as {trunk.user or 'autocall'} with {trunk.uri}")
        # Calls arriving meanwhile are answered too; their prompts render on demand.
        warm = prompts_of(server.tree, server.variables)
        for error in await server.audio.warm(warm, prompt_rates(trunk.codecs)):
            _err.print(f"[yellow]prompt not rendered:[/] {error}")
        _err.print(f"autocall serve: listening on sip:{host}:{port} "
                   f"(max {server.max_calls} calls); records in {server.records}")
        await signals.stop.wait()
        _err.print(f"stopping: {server.active} call(s) in progress, refusing new ones")
        left = await server.drain(drain_timeout)
        if left:
            _err.print(f"[yellow]{left} call(s) still running after {drain_timeout:.0f} s[/]")
    finally:
        await server.callbacks.drain(3.0)  # only without a store: each undelivered is logged
        await ua.close()
        _err.print(f"served {server.served} call(s), refused {server.refused}")
