"""REFER as its recipient, sans-I/O: which Refer-To values we follow, and the sipfrag we report.

The wire behaviour (202, NOTIFYs, the INVITE, the BYE) is tested against SIPp in
tests/telephony/test_transferee.py.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autocall.sip.message import URI, Headers, Request, parse_message
from autocall.sip.refer import ReferRefused, parse_refer, sipfrag


def _refer(*refer_to: str, referred_by: str | None = None) -> Request:
    h = Headers()
    h.add("Via", "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKref")
    h.add("From", "<sip:pbx@127.0.0.1:5070>;tag=p")
    h.add("To", "<sip:autocall@127.0.0.1>;tag=a")
    h.add("Call-ID", "refer-test")
    h.add("CSeq", "7 REFER")
    for value in refer_to:
        h.add("Refer-To", value)
    if referred_by is not None:
        h.add("Referred-By", referred_by)
    return Request("REFER", URI.parse("sip:autocall@127.0.0.1"), h)


@pytest.mark.parametrize(("value", "uri"), [
    ("<sip:agent@10.0.0.5:5080>", "sip:agent@10.0.0.5:5080"),
    ('"Sales" <sips:sales@pbx.example.com>;x=1', "sips:sales@pbx.example.com"),
    ("sip:agent@10.0.0.5", "sip:agent@10.0.0.5"),  # addr-spec form
    ("<tel:+15550100>", "tel:+15550100"),
    # method=INVITE is what we do anyway; other embedded headers are not copied (§19.1.5)
    ("<sip:agent@10.0.0.5;method=INVITE;user=phone?Subject=hi&X-Trunk=premium>",
     "sip:agent@10.0.0.5;user=phone"),
])
def test_targets_we_can_follow(value: str, uri: str) -> None:
    target = parse_refer(_refer(value))
    assert str(target.uri) == uri and target.referred_by is None


def test_compact_form_and_referred_by_are_understood() -> None:
    raw = bytes(_refer()).replace(b"Content-Length", b"r: <sip:x@10.0.0.1>\r\nb: <sip:pbx@h>"
                                  b"\r\nContent-Length")
    req = parse_message(raw)
    assert isinstance(req, Request)
    target = parse_refer(req)
    assert str(target.uri) == "sip:x@10.0.0.1" and target.referred_by == "<sip:pbx@h>"
    assert parse_refer(_refer("<sip:x@h>", referred_by="not an address <")).referred_by is None


@pytest.mark.parametrize(("values", "status", "words"), [
    ((), 400, "Missing Refer-To"),  # RFC 3515 §2.4.1: exactly one value, else 400
    (("<sip:a@h>", "<sip:b@h>"), 400, "Exactly one"),
    (("<sip:a@h>, <sip:b@h>",), 400, "Exactly one"),
    (("<sip:a@h:99999>",), 400, "Bad Refer-To"),
    (("<>",), 400, "Bad Refer-To"),
    (("just words",), 400, "Bad Refer-To"),
    (("<http://evil.example/x>",), 603, "scheme http"),
    (("<mailto:boss@example.com>",), 603, "scheme mailto"),
    (("<sip:a@h?Replaces=abc%40h%3Bto-tag%3D1%3Bfrom-tag%3D2>",), 603, "Replaces"),
    (("<sip:a@h?x=1&replaces=abc>",), 603, "Replaces"),
    (("<sip:a@h;method=BYE>",), 603, "method BYE"),
])
def test_refusals_say_why(values: tuple[str, ...], status: int, words: str) -> None:
    with pytest.raises(ReferRefused) as info:
        parse_refer(_refer(*values))
    assert info.value.status == status and words in info.value.reason


@settings(max_examples=400, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=80))
def test_any_refer_to_is_followed_or_refused_never_a_crash(value: str) -> None:
    try:
        target = parse_refer(_refer(value))
    except ReferRefused as exc:
        assert exc.status in (400, 603) and exc.reason.isprintable()
        return
    assert target.uri.scheme in ("sip", "sips", "tel") and target.uri.headers is None
    assert "method" not in target.uri.params


def test_sipfrag_is_one_status_line() -> None:
    assert sipfrag(100, "Trying") == b"SIP/2.0 100 Trying\r\n"
    assert sipfrag(486) == b"SIP/2.0 486 Busy Here\r\n"
    assert sipfrag(503, "bad\r\nX-Injected: 1") == b"SIP/2.0 503 bad??X-Injected: 1\r\n"
