"""Real SIP peers for tests: SIPp, Kamailio and baresip on 127.0.0.1.

Each launcher starts one process with explicit ports (pick them from your own range),
waits until it is ready, and is always killed at teardown — use them as context
managers::

    from tests.peers import Sipp, SCENARIOS
    with Sipp(SCENARIOS / "uas_reject.xml", port=20010, media_port=20012,
              keys={"code": "486", "reason": "Busy Here"}) as far_end:
        ...                      # call sip:service@127.0.0.1:20010
        assert far_end.wait(10) == 0, far_end.errors()

SIPp's exit code is 0 when every call followed the scenario. ``Kamailio`` runs a
registrar + proxy with digest auth from ``tests/sip/kamailio.cfg`` and ``Baresip`` a
headless auto-answering softphone that records what it hears (see their docstrings).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = ["SCENARIOS", "Peer", "Sipp", "Kamailio", "KamailioTls", "Baresip", "BaresipControl",
           "port_bound", "need"]

SCENARIOS = Path(__file__).parent / "sip" / "scenarios"
KAMAILIO_CFG = Path(__file__).parent / "sip" / "kamailio.cfg"


def need(binary: str) -> str:
    """Path of a peer binary; raise (tests fail, not skip) if the test setup did not install it."""
    path = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/sbin")
    if path is None:
        raise RuntimeError(f"{binary} is not installed: run scripts/setup.sh")
    return path


def port_bound(host: str, port: int, kind: int = socket.SOCK_DGRAM) -> bool:
    """True if a socket is bound to ``port`` (UDP) or listening on it (TCP).

    Reads /proc/net instead of test-binding the port, which would race with the peer
    that is binding it right now.
    """
    del host  # every peer here binds 127.0.0.1; the port is what identifies it
    tables = ["/proc/net/udp", "/proc/net/udp6"] if kind == socket.SOCK_DGRAM else \
        ["/proc/net/tcp", "/proc/net/tcp6"]
    want = f":{port:04X}"
    for table in tables:
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[1].endswith(want) and \
                    (kind == socket.SOCK_DGRAM or fields[3] == "0A"):  # 0A = LISTEN
                return True
    return False


def _die_with_parent() -> None:
    """In the child: get SIGKILL when the test process dies (no teardown ran, e.g. killed
    by a timeout), so no peer outlives its test (Linux prctl PR_SET_PDEATHSIG)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


class Peer:
    """A child process with a readiness check; killed by pid at teardown."""

    name = "peer"

    def __init__(self, cmd: Sequence[str], *, cwd: Path | None = None,
                 ready_timeout: float = 5.0) -> None:
        self.cmd = list(cmd)
        self.workdir = Path(cwd) if cwd else Path(tempfile.mkdtemp(prefix=f"{self.name}-"))
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.workdir / f"{self.name}.log"

    def ready(self) -> bool:
        return True

    def start(self) -> Self:
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(self.cmd, cwd=self.workdir, stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + self.ready_timeout
        while not self.ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: "
                                   f"{self.output()[-2000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} not ready after {self.ready_timeout} s: "
                                   f"{self.output()[-2000:]}")
            time.sleep(0.02)
        return self

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def wait(self, timeout: float) -> int:
        """Exit code, waiting at most ``timeout`` seconds (then kill; returns -9)."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            return -9

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)  # our own process group, by id
        try:
            self.proc.wait(2)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(2)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class Sipp(Peer):
    """SIPp running one scenario: UAS when ``remote`` is None, else UAC calling ``remote``.

    keys: values for ``[key]`` placeholders in the scenario (``-key``); the scenarios in
    ``SCENARIOS`` document theirs. ``timeout`` bounds the whole run (``-timeout``).
    Files a scenario streams (``rtp_stream="x.ul"``) are looked up in ``workdir``.
    """

    name = "sipp"

    def __init__(self, scenario: str | Path, *, port: int, media_port: int,
                 host: str = "127.0.0.1", remote: str | None = None, service: str = "sipp",
                 calls: int = 1, rate: float | None = None, keys: dict[str, str] | None = None,
                 transport: str = "u1", timeout: float = 30.0, cwd: Path | None = None,
                 extra: Sequence[str] = ()) -> None:
        self.host, self.port, self.media_port = host, port, media_port
        self.remote = remote
        self.kind = socket.SOCK_STREAM if transport.startswith("t") else socket.SOCK_DGRAM
        keys = {"dtmf_pt": "101", **(keys or {})}
        cmd = [need("sipp")]
        if remote:
            cmd.append(remote)
        cmd += ["-sf", str(scenario), "-i", host, "-p", str(port), "-mi", host,
                "-mp", str(media_port), "-m", str(calls), "-s", service, "-t", transport,
                "-nostdin", "-timeout", f"{int(timeout)}s", "-timeout_error", "-trace_err",
                "-error_file", "errors.log", "-max_recv_loops", "1000"]
        if rate is not None:
            cmd += ["-r", str(rate)]
        for k, v in keys.items():
            cmd += ["-key", k, v]
        cmd += list(extra)
        super().__init__(cmd, cwd=cwd)

    def ready(self) -> bool:
        if self.remote:
            return True
        return port_bound(self.host, self.port, self.kind)

    def errors(self) -> str:
        try:
            return (self.workdir / "errors.log").read_text(errors="replace")[-3000:]
        except OSError:
            return self.output()[-3000:]


@dataclass(frozen=True)
class KamailioTls:
    """Kamailio's TLS listener (module ``tls``, Debian ``kamailio-tls-modules``) on
    ``port``: its certificate and key, and the CA it checks client certificates against
    (``require_client_cert``: refuse clients without one)."""

    port: int
    cert_file: Path
    key_file: Path
    ca_file: Path | None = None
    require_client_cert: bool = False

    def modparams(self) -> str:
        params = {"tls_method": "TLSv1.2+", "certificate": str(self.cert_file),
                  "private_key": str(self.key_file)}
        if self.ca_file is not None:
            params["ca_list"] = str(self.ca_file)
        flag = "1" if self.require_client_cert else "0"
        lines = [f'modparam("tls", "{k}", "{v}")' for k, v in params.items()]
        lines += [f'modparam("tls", "verify_certificate", {flag})',
                  f'modparam("tls", "require_certificate", {flag})']
        return "\n".join(lines) + "\n"


class Kamailio(Peer):
    """Kamailio as registrar + proxy with digest auth (401 REGISTER, 407 INVITE) and
    Record-Route, no database: users come from ``users`` ({name: password}).

    Config: ``tests/sip/kamailio.cfg`` (listen address and users are passed as defines);
    with ``tls`` (``KamailioTls``) it also listens for SIP over TLS, and then on
    ``tcp_port`` for SIP over TCP if given. ``defines`` are more ``-A`` pre-processor
    defines, e.g. ``'TLS_FORWARD="sip:127.0.0.1:5061;transport=tls"'``: INVITEs for
    user ``robot`` go there (the cfg says how).
    """

    name = "kamailio"

    def __init__(self, *, port: int, users: dict[str, str], host: str = "127.0.0.1",
                 cfg: Path = KAMAILIO_CFG, tls: KamailioTls | None = None,
                 tcp_port: int | None = None, defines: Sequence[str] = ()) -> None:
        self.host, self.port, self.tls = host, port, tls
        work = Path(tempfile.mkdtemp(prefix="kamailio-"))
        shutil.copy(cfg, work / "kamailio.cfg")
        fill = "".join(f'\t$sht(users=>{u}) = "{p}";\n' for u, p in users.items())
        (work / "users.cfg").write_text("event_route[htable:mod-init] {\n" + fill + "}\n")
        cmd = [need("kamailio"), "-f", str(work / "kamailio.cfg"), "-DD", "-E",
               "-Y", str(work), "-l", f"udp:{host}:{port}",
               "-P", str(work / "kamailio.pid"), "-m", "32", "-M", "8"]
        if tls is not None:
            (work / "tls-params.cfg").write_text(tls.modparams())
            cmd += ["-A", "WITH_TLS", "-l", f"tls:{host}:{tls.port}"]
            if tcp_port is not None:  # TCP rides on the TLS build (the base cfg disables it)
                cmd += ["-l", f"tcp:{host}:{tcp_port}"]
        for define in defines:
            cmd += ["-A", define]
        super().__init__(cmd, cwd=work, ready_timeout=8.0)

    def ready(self) -> bool:
        return port_bound(self.host, self.port) and (
            self.tls is None or port_bound(self.host, self.tls.port, socket.SOCK_STREAM))


class Baresip(Peer):
    """Headless baresip: auto-answers, plays ``source_wav`` (or silence) and records
    what it hears to ``recording`` (one WAV per call); controlled over ``ctrl_tcp``.

    The account user is ``user``: call ``sip:<user>@127.0.0.1:<port>``. baresip also
    listens for SIP over TLS on ``port + 1``, so keep ``ctrl_port`` and ``rtp_ports`` off it.
    With ``certificate`` (one PEM file: certificate, then its key) that TLS port serves it,
    and ``cafile`` is what baresip trusts; ``mediaenc`` ("srtp": RTP/AVP with SDES keys,
    "srtp-mand": RTP/SAVP only) loads its SRTP module for the account. ``codecs`` is the
    account's audio codec list in its order, as baresip names them (``G722/16000/1``: its
account parser takes a bare ``G722`` as 8000 Hz and finds nothing; G722 loads the module);
    ``srate`` the rate of its source and player (16000 for a wideband source WAV).
    """

    name = "baresip"

    def __init__(self, *, port: int, ctrl_port: int, user: str = "bob",
                 host: str = "127.0.0.1", rtp_ports: tuple[int, int] | None = None,
                 source_wav: Path | None = None, certificate: Path | None = None,
                 cafile: Path | None = None, mediaenc: str | None = None,
                 codecs: str = "PCMU,PCMA", srate: int = 8000) -> None:
        self.host, self.port, self.ctrl_port, self.user = host, port, ctrl_port, user
        home = Path(tempfile.mkdtemp(prefix="baresip-"))
        self.recordings = home / "rec"
        self.recordings.mkdir()
        lo, hi = rtp_ports or (port + 10, port + 40)
        if source_wav is None:  # baresip hangs up when its source ends: 60 s of silence
            source_wav = home / "silence.wav"
            with wave.open(str(source_wav), "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(srate)
                w.writeframes(bytes(2 * srate * 60))
        source = f"aufile,{source_wav}"
        config = f"""
poll_method epoll
sip_listen {host}:{port}
audio_player aufile,{self.recordings}/played.wav
audio_source {source}
audio_alert aufile,/dev/null
ausrc_srate {srate}
auplay_srate {srate}
ausrc_channels 1
auplay_channels 1
audio_level no
rtp_ports {lo}-{hi}
net_interface {host}
ctrl_tcp_listen {host}:{ctrl_port}
module_path /usr/lib/baresip/modules
module g711.so
module aufile.so
module sndfile.so
module_app account.so
module_app menu.so
module_app ctrl_tcp.so
snd_path {self.recordings}
"""
        if certificate is not None:
            config += f"sip_certificate {certificate}\n"
        if cafile is not None:
            config += f"sip_cafile {cafile}\n"
        if mediaenc is not None:
            config += "module srtp.so\n"
        if "G722" in codecs.upper():
            config += "module g722.so\n"
        (home / "config").write_text(config)
        (home / "accounts").write_text(
            f"<sip:{user}@{host}:{port}>;regint=0;answermode=auto;audio_codecs={codecs}"
            + (f";mediaenc={mediaenc}" if mediaenc else "") + "\n")
        (home / "contacts").write_text("")
        cmd = [need("baresip"), "-f", str(home)]
        super().__init__(cmd, cwd=home, ready_timeout=8.0)

    def ready(self) -> bool:
        return port_bound(self.host, self.ctrl_port, socket.SOCK_STREAM) and \
            port_bound(self.host, self.port)

    def control(self) -> BaresipControl:
        """A ctrl_tcp connection (JSON in netstrings): commands out, events in."""
        return BaresipControl(self.host, self.ctrl_port)


class BaresipControl:
    """Blocking client for baresip's ctrl_tcp; run it in an executor from async tests."""

    def __init__(self, host: str, port: int, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection((host, port), timeout)
        self.sock.settimeout(timeout)
        self._buf = b""

    def send(self, command: str, params: str = "") -> None:
        data = json.dumps({"command": command, "params": params, "token": command}).encode()
        self.sock.sendall(str(len(data)).encode() + b":" + data + b",")

    def read(self) -> dict[str, object]:
        """The next message (command response or event); raises TimeoutError."""
        while True:
            head, sep, rest = self._buf.partition(b":")
            if sep and head.isdigit() and len(rest) > int(head):
                n = int(head)
                msg, self._buf = rest[:n], rest[n + 1 :]
                return dict(json.loads(msg))
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("baresip closed the control connection")
            self._buf += chunk

    def wait_event(self, kind: str, timeout: float = 5.0) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                msg = self.read()
            except TimeoutError:
                break
            if msg.get("event") and msg.get("type") == kind:
                return msg
        raise TimeoutError(f"no {kind} event from baresip within {timeout} s")

    def close(self) -> None:
        self.sock.close()
