"""The simulator drives the real engine: scripted input, virtual clock, live webhooks."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from autocall.dialogue.simulate import Simulator, WebhookStub, parse_inputs

from .conftest import tree_from

MENU = {
    "start": "m",
    "nodes": {
        "m": {
            "menu": {
                "prompt": "Press 1 or say yes",
                "items": {1: {"next": "g", "say": ["yes"]}},
                "speech": True,
                "timeout": 4,
            },
            "on_failure": "bye",
        },
        "g": {"gather": {"prompt": "Code?", "variable": "code", "max_digits": 4}, "next": "w"},
        "w": {
            "webhook": {
                "url": "http://127.0.0.1:18123/hook",
                "payload": {"c": "{code}"},
                "save": {"ref": "ref"},
                "timeout": 2,
                "retries": 0,
            },
            "next": "done",
            "on_failure": "done",
        },
        "done": {"say": "Ref {ref}.", "next": "end"},
        "end": {"hangup": "ok"},
        "bye": {"hangup": "bye"},
    },
}


def test_parse_inputs() -> None:
    assert parse_inputs(" 1, 2 ,#,timeout,,yes please ") == ["1", "2", "#", "timeout", "yes please"]


def test_scripted_run_with_stub_and_virtual_clock() -> None:
    sim = Simulator(
        tree_from(MENU), {}, start_time=1000.0, webhooks={"w": WebhookStub(200, {"ref": "R1"})}
    )
    result = sim.run(["t", "1", "12#"])
    assert result.path == ["m", "g", "w", "done", "end"]
    assert result.outcome == "ok" and result.variables["ref"] == "R1"
    assert result.digits == "112#"
    assert [w.payload for w in result.webhooks] == [{"c": "12"}]
    assert result.said[-1] == "Ref R1."
    timeout_step = next(s for s in result.transcript if s.text == "(no key: timeout)")
    # the timeout happens on the virtual clock: prompt time plus the menu's 4 s
    later = [s.at for s in result.transcript if s.kind == "listen"][1]
    assert later - timeout_step.at >= 4.0 - 1e-9
    assert all(s.at >= 0 for s in result.transcript)


def test_inputs_running_out_means_the_caller_hangs_up() -> None:
    result = Simulator(tree_from(MENU), {}).run(["1"])
    assert result.outcome == "caller-hangup" and result.path == ["m", "g"]


def test_unused_input_is_reported() -> None:
    result = Simulator(tree_from(MENU), {}).run(["t", "t", "t", "1"])
    assert result.outcome == "bye" and result.unused_input == ["1"]


def test_speech_token_reaches_the_menu() -> None:
    result = Simulator(tree_from(MENU), {}).run(["oh yes", "h"])
    assert result.path == ["m", "g"] and result.outcome == "caller-hangup"


def test_unanswered_webhook_takes_the_fallback_without_network() -> None:
    result = Simulator(tree_from(MENU), {}).run(["1", "5#"])
    assert result.outcome == "ok" and result.webhooks[0].status == 0
    assert result.variables["webhook_status"] == "0"


class _Hook(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Hook.received.append(body)
        answer = json.dumps({"ref": f"REF-{body['c']}"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hook_server() -> Iterator[HTTPServer]:
    server = HTTPServer(("127.0.0.1", 18123), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Hook.received = []
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_live_webhook_posts_json_to_a_local_server(hook_server: HTTPServer) -> None:
    result = Simulator(tree_from(MENU), {}, live_webhooks=True).run(["1", "4242"])
    assert _Hook.received == [{"c": "4242"}]
    assert result.variables["ref"] == "REF-4242" and result.said[-1] == "Ref REF-4242."


def test_live_webhook_with_nobody_listening_falls_back() -> None:
    tree = json.loads(json.dumps(MENU))
    tree["nodes"]["w"]["webhook"]["url"] = "http://127.0.0.1:18124/none"
    result = Simulator(tree_from(tree), {}, live_webhooks=True).run(["1", "1#"])
    assert result.webhooks[0].status == 0 and result.outcome == "ok"


def test_transfer_failure_and_recording_are_simulated() -> None:
    tree = tree_from(
        {
            "start": "t",
            "transfer_targets": ["101"],
            "nodes": {
                "t": {"transfer": "*101#", "on_failure": "r"},
                "r": {"record": {"max_seconds": 3}, "next": "e"},
                "e": {"hangup": "vm"},
            },
        }
    )
    result = Simulator(tree, {}, transfer_ok=False).run([])
    assert result.outcome == "vm" and result.variables["recording_duration"] == "3.0"
    kinds = [s.kind for s in result.transcript]
    assert kinds == ["transfer", "record", "hangup"]
    assert Simulator(tree, {}).run([]).outcome == "transferred"


def test_speech_to_a_keys_only_node_is_shown_as_ignored() -> None:
    tree = tree_from(
        {
            "start": "m",
            "nodes": {"m": {"menu": {"prompt": "P", "items": {1: "e"}}}, "e": {"hangup": "e"}},
        }
    )
    result = Simulator(tree, {}).run(["one please", "1"])
    assert result.outcome == "e"
    assert any("speech ignored" in s.text for s in result.transcript)


def _notice_tree(skippable: bool) -> dict:
    return {
        "start": "m",
        "nodes": {
            "m": {"menu": {"prompt": "Press 1.", "items": {1: "notice"}}},
            "notice": {"say": "This call is recorded.", "skippable": skippable, "next": "q"},
            "q": {"menu": {"prompt": "Press 2 to agree.", "items": {2: "ok"}}},
            "ok": {"hangup": "agreed"},
        },
    }


def test_keys_during_an_unskippable_message_are_ignored_in_the_transcript() -> None:
    # "12": the 1 answers the first menu, the 2 falls into the notice that follows
    result = Simulator(tree_from(_notice_tree(False)), {}).run(["12", "2"])
    assert result.path == ["m", "notice", "q", "ok"] and result.outcome == "agreed"
    assert result.digits == "122" and result.unused_input == []
    assert "key 2 (ignored: this message cannot be skipped)" in [s.text for s in result.transcript]
    said = [s for s in result.transcript if s.kind == "say"]
    assert [s.text for s in said] == ["Press 1.", "This call is recorded.", "Press 2 to agree."]
    # the notice played to its end on the virtual clock: the key did not cut it short
    notice_length = len("This call is recorded.") * 0.06
    assert said[2].at - said[1].at >= notice_length - 1e-9


def test_a_skippable_message_is_skipped_by_the_same_keys() -> None:
    result = Simulator(tree_from(_notice_tree(True)), {}).run(["12", "2"])
    assert result.path == ["m", "notice", "q", "ok"]
    assert result.digits == "12" and result.unused_input == ["2"]
    assert "Press 2 to agree." not in result.said  # the kept 2 answered before the question
