"""A local stand-in for Google Translate's TTS endpoint, as gTTS 2.5 talks to it.

gTTS POSTs ``f.req=<rpc>`` to ``/_/TranslateWebserverUi/data/batchexecute``; the rpc
``jQ1olc`` carries ``[text, lang, speed, "null"]`` and the answer is Google's
batchexecute framing (``)]}'`` guard, length-prefixed JSON chunks) with the MP3 as
base64 inside ``["wrb.fr","jQ1olc","[\\"<base64>\\"]",…]``. The audio is real: the
text spoken by espeak-ng, resampled to 24 kHz and encoded as MP3 like Google's, at a
level of its own so loudness normalisation has work to do.

Modes: ``ok``; ``stall`` (accepts, never answers); ``dribble`` (answers a few bytes at
a time, for killing a render mid-download); ``noaudio`` (200 without audio);
``error`` (HTTP 500).
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import soundfile as sf
import soxr

from autocall.speech import tts

PORTS = range(18000, 18100)
RPC_PATH = "/_/TranslateWebserverUi/data/batchexecute"


def free_port() -> int:
    """A port of this helper's range that nothing listens on (connections are refused)."""
    for port in PORTS:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 18000-18099")


def espeak_mp3(text: str, lang: str, gain_db: float) -> bytes:
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        pytest.fail("espeak-ng is not installed: run scripts/test.sh, which installs it")
    wav = subprocess.run(
        [espeak, "-b", "1", "-v", lang, "--stdout"],
        input=text.encode(),
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout
    x, rate = sf.read(io.BytesIO(wav), dtype="float64")
    y = soxr.resample(x, rate, 24000, quality="HQ")
    y = y / np.max(np.abs(y)) * 10 ** (gain_db / 20)
    buf = io.BytesIO()
    sf.write(buf, y.astype(np.float32), 24000, format="MP3", compression_level=0.85)
    return buf.getvalue()


def batchexecute_body(mp3: bytes | None) -> bytes:
    """Google's batchexecute answer around one jQ1olc result (or none)."""
    payload = None if mp3 is None else json.dumps([base64.b64encode(mp3).decode()])
    first = json.dumps(
        [
            ["wrb.fr", "jQ1olc", payload, None, None, None, "generic"],
            ["di", 47],
            ["af.httprm", 46, "-1580394123456789012", 12],
        ],
        separators=(",", ":"),
    )
    second = json.dumps([["e", 4, None, None, len(first) + 40]], separators=(",", ":"))
    return f")]}}'\n\n{len(first) + 1}\n{first}\n{len(second) + 1}\n{second}\n".encode()


@dataclass
class GttsStandIn:
    mode: str = "ok"
    gain_db: float = -14.0
    port: int = 0
    requests: list[dict[str, object]] = field(default_factory=list)
    sending: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    _server: ThreadingHTTPServer | None = None
    _audio: dict[tuple[str, str], bytes] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def audio_for(self, text: str, lang: str) -> bytes:
        key = (text, lang)
        if key not in self._audio:
            self._audio[key] = espeak_mp3(text, lang, self.gain_db)
        return self._audio[key]

    def start(self) -> GttsStandIn:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                form = urllib.parse.parse_qs(body.decode())
                record: dict[str, object] = {
                    "path": self.path,
                    "content_type": self.headers.get("Content-Type"),
                }
                stand_in.requests.append(record)
                if stand_in.mode == "stall":
                    stand_in.stop.wait(30)
                    return
                if self.path != RPC_PATH or "f.req" not in form:
                    self.send_error(404)
                    return
                rpc = json.loads(form["f.req"][0])
                assert rpc[0][0][0] == "jQ1olc"
                text, lang, speed, _ = json.loads(rpc[0][0][1])
                record.update(text=text, lang=lang, speed=speed)
                if stand_in.mode == "error":
                    self.send_error(500)
                    return
                mp3 = None if stand_in.mode == "noaudio" else stand_in.audio_for(text, lang)
                answer = batchexecute_body(mp3)
                self.send_response(200)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                if stand_in.mode != "dribble":
                    self.wfile.write(answer)
                    return
                for i in range(0, len(answer), 64):
                    self.wfile.write(answer[i : i + 64])
                    self.wfile.flush()
                    stand_in.sending.set()
                    if stand_in.stop.wait(0.05):
                        return

        self.port = self.port or free_port()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def close(self) -> None:
        self.stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@pytest.fixture
def gtts_standin() -> Iterator[Callable[..., GttsStandIn]]:
    """Start stand-ins: ``gtts_standin(mode="ok", port=0, gain_db=-14.0)``."""
    started: list[GttsStandIn] = []

    def start(mode: str = "ok", port: int = 0, gain_db: float = -14.0) -> GttsStandIn:
        server = GttsStandIn(mode=mode, port=port, gain_db=gain_db).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


@pytest.fixture
def refused_url() -> Callable[[], str]:
    """``refused_url()`` → an http URL on this helper's range where nothing listens."""
    return lambda: f"http://127.0.0.1:{free_port()}"


@pytest.fixture(autouse=True)
def _fresh_engine_state() -> Iterator[None]:
    tts.forget_failures()
    yield
    tts.forget_failures()


@pytest.fixture
def stopwatch() -> Callable[[], float]:
    start = time.monotonic()
    return lambda: time.monotonic() - start
