"""The dialer's placer over our SIP user agent against virtual phones on loopback.

Each callee behaviour must come back as the status, SIP code and dialogue facts the
campaign store records; keys pressed as RFC 4733 events and as in-band tones both steer
the tree.
"""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from autocall.campaign.dialer import CallRequest, outcome_of
from autocall.campaign.model import CallStatus, Outcome
from autocall.campaign.placer import SipPlacer
from autocall.telephony.call import UserAgent
from autocall.telephony.virtual import Behaviour, PhoneScript, VirtualPhones
from autocall.telephony.webhooks import StatusCallbacks

pytestmark = pytest.mark.peers

TREE = """\
name: placer-test
outcomes: [chose-two]
start: hello
nodes:
  hello: {say: "Hello {first_name}.", next: menu}
  menu:
    menu: {prompt: "Press 1 or 2.", items: {1: one, 2: two, 9: out}, timeout: 2, retries: 0}
    on_failure: silent
  one: {say: "Thank you for your answer. Goodbye, and have a nice day.", next: null}
  two: {hangup: chose-two}
  out: {hangup: opt-out}
  silent: {hangup: no-input}
"""

BOOK = {
    "+12025550101": PhoneScript(digits="1", ring_seconds=0.1),
    "+12025550102": PhoneScript(digits="2", dtmf="inband", ring_seconds=0.1),
    "+12025550103": PhoneScript(Behaviour.BUSY),
    "+12025550104": PhoneScript(Behaviour.DECLINE, ring_seconds=0.1),
    "+12025550105": PhoneScript(Behaviour.NO_ANSWER),
    "+12025550106": PhoneScript(Behaviour.HANGUP_EARLY, hangup_after=0.3, ring_seconds=0.1),
    "+12025550107": PhoneScript(Behaviour.FAIL, ring_seconds=0.1),
    "+12025550108": PhoneScript(digits="9", ring_seconds=0.1),
    # answers, then hangs up during the goodbye: a completed call, not an early hang-up
    "+12025550109": PhoneScript(digits="1", ring_seconds=0.1, talk_limit=0.2),
}

# number → (status, SIP code, campaign outcome, dialogue path)
EXPECTED = {
    "+12025550101": (CallStatus.COMPLETED, 200, Outcome.COMPLETED, ("hello", "menu", "one")),
    "+12025550102": (CallStatus.COMPLETED, 200, Outcome.COMPLETED, ("hello", "menu", "two")),
    "+12025550103": (CallStatus.BUSY, 486, Outcome.BUSY, ()),
    "+12025550104": (CallStatus.BUSY, 603, Outcome.DECLINED, ()),
    "+12025550105": (CallStatus.NO_ANSWER, 487, Outcome.NO_ANSWER, ()),
    "+12025550106": (CallStatus.COMPLETED, 200, Outcome.HUNG_UP_EARLY, ("hello",)),
    "+12025550107": (CallStatus.FAILED, 503, Outcome.UNREACHABLE, ()),
    "+12025550108": (CallStatus.COMPLETED, 200, Outcome.OPTED_OUT, ("hello", "menu", "out")),
    "+12025550109": (CallStatus.COMPLETED, 200, Outcome.COMPLETED, ("hello", "menu", "one")),
}


class _Callbacks(BaseHTTPRequestHandler):
    seen: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self.seen.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


async def test_every_behaviour_becomes_its_call_record(tmp_path: Path) -> None:
    tree = tmp_path / "tree.yaml"
    tree.write_text(TREE)
    hooks = ThreadingHTTPServer(("127.0.0.1", 30205), _Callbacks)
    threading.Thread(target=hooks.serve_forever, daemon=True).start()
    async with VirtualPhones(BOOK, port=30200) as phones:
        ua = await UserAgent.start(bind_host="127.0.0.1", bind_port=30201)
        callbacks = StatusCallbacks("http://127.0.0.1:30205/status")
        try:
            placer = SipPlacer(ua, target=f"sip:{{number}}@127.0.0.1:{phones.port}",
                               tts_cache_dir=tmp_path / "tts", recordings_dir=tmp_path,
                               status_callbacks=callbacks)
            requests = [CallRequest("demo", i, 1, i, number, "+12025550199", str(tree),
                                    {"first_name": "Ann"}, 2.0)
                        for i, number in enumerate(BOOK)]
            results = await asyncio.wait_for(
                asyncio.gather(*(placer.place(r) for r in requests)), 40)
            await callbacks.drain(5)
        finally:
            await ua.close()
            hooks.shutdown()
            hooks.server_close()
        heard = {c.number: c.voiced_seconds for c in phones.calls}
    for request, result in zip(requests, results, strict=True):
        status, code, outcome, path = EXPECTED[request.number]
        got = (result.status, result.sip_code, outcome_of(result), result.path)
        assert got == (status, code, outcome, path), request.number
        if result.answered_at is not None:
            assert result.started_at is not None and result.ended_at is not None
            assert result.started_at <= result.answered_at <= result.ended_at
    by_number = dict(zip(BOOK, results, strict=True))
    assert by_number["+12025550101"].digits == "1"
    assert by_number["+12025550102"].digits == "2"  # in-band tones, detected by our side
    assert heard["+12025550101"] > 0.5  # the callee heard the prompts over RTP
    by_call: dict[str, list[str]] = {}
    for event in _Callbacks.seen:
        by_call.setdefault(event["call_id"], []).append(event["status"])
    assert len(by_call) == len(BOOK)
    assert sorted(by_call.values()) == sorted(
        [["initiated", "ringing", "answered", "completed"]] * 5  # answered after ringing
        + [["initiated", "ringing", "completed"]] * 2  # decline, 503 after ringing
        + [["initiated", "ringing", "completed"]]  # never answers
        + [["initiated", "completed"]])  # busy at once, no 180
