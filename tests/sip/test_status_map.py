"""Final SIP codes → DESIGN.md §4 call status, and the 400 we build from broken requests."""

from __future__ import annotations

import pytest

from autocall.sip.message import salvage_400
from autocall.telephony.call import CallStatus, status_for


@pytest.mark.parametrize(("code", "kwargs", "status"), [
    (486, {}, CallStatus.BUSY),
    (600, {}, CallStatus.BUSY),
    (603, {}, CallStatus.BUSY),
    (480, {}, CallStatus.NO_ANSWER),
    (408, {}, CallStatus.NO_ANSWER),
    (408, {"rang": False}, CallStatus.FAILED),  # our own timeout, nobody there
    (487, {"cancel_cause": "ring-timeout"}, CallStatus.NO_ANSWER),
    (487, {"cancel_cause": "canceled"}, CallStatus.CANCELED),
    (404, {}, CallStatus.FAILED),
    (503, {}, CallStatus.FAILED),
    (407, {}, CallStatus.FAILED),
])
def test_status_for(code: int, kwargs: dict[str, object], status: CallStatus) -> None:
    assert status_for(code, **kwargs) is status  # type: ignore[arg-type]


def test_salvaged_400_keeps_the_transaction_headers() -> None:
    raw = (b"INVITE sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bKx\r\nf: <sip:c@d>;tag=1\r\n"
           b"t: <sip:a@b>\r\ni: id\r\nCSeq: 1 INVITE\r\nBroken line\r\n\r\n")
    reply = salvage_400(raw, "bad header line 'Broken line'\r\nInjected: x")
    assert reply is not None
    text = reply.decode()
    assert text.startswith("SIP/2.0 400 bad header line 'Broken line'??Injected: x\r\n")
    assert "Via: SIP/2.0/UDP h;branch=z9hG4bKx" in text and "Call-ID: id" in text
    assert salvage_400(raw.replace(b"INVITE", b"ACK", 1), "x") is None  # never answer ACK
    assert salvage_400(b"SIP/2.0 200 OK\r\n\r\n", "x") is None  # nor a response
    assert salvage_400(b"INVITE sip:a@b SIP/2.0\r\n\r\n", "x") is None  # nowhere to send it
