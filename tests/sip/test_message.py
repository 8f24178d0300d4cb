"""SIP message parsing and serialisation (RFC 3261 §7, §20, §25; RFC 4475 style cases)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autocall.sip.message import (
    URI,
    Address,
    CSeq,
    Headers,
    Request,
    Response,
    StreamParser,
    Via,
    parse_message,
    split_list,
)

INVITE = (
    b"INVITE sip:bob@example.com SIP/2.0\r\n"
    b"v: SIP/2.0/UDP pc33.example.com;branch=z9hG4bK776asdhds ;received=192.0.2.1\r\n"
    b"Via: SIP/2.0/TCP proxy.example.com:5070;branch=z9hG4bKa, SIP/2.0/UDP [2001:db8::9]:5060"
    b";branch=z9hG4bKb\r\n"
    b"max-forwards: 70\r\n"
    b"t: Bob <sip:bob@example.com>\r\n"
    b'f: "Alice \\"A\\", Smith" <sip:alice@example.com>;tag=1928301774\r\n'
    b"i: a84b4c76e66710@pc33.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@pc33.example.com;transport=tcp>\r\n"
    b"Subject: folded\r\n  across lines\r\n"
    b"c: application/sdp\r\n"
    b"l: 4\r\n"
    b"\r\n"
    b"v=0\r\n"
)


def test_parse_compact_folded_and_lists() -> None:
    msg = parse_message(INVITE)
    assert isinstance(msg, Request)
    assert msg.method == "INVITE" and str(msg.uri) == "sip:bob@example.com"
    assert msg.call_id == "a84b4c76e66710@pc33.example.com"
    assert msg.cseq == CSeq(314159, "INVITE")
    assert msg.from_.display == 'Alice "A", Smith' and msg.from_.tag == "1928301774"
    assert msg.to.tag is None and msg.to.display == "Bob"
    vias = msg.vias
    assert [v.transport for v in vias] == ["UDP", "TCP", "UDP"]
    assert vias[0].branch == "z9hG4bK776asdhds" and vias[0].params["received"] == "192.0.2.1"
    assert vias[1].port == 5070 and vias[2].host == "2001:db8::9"
    assert msg.headers.get("SUBJECT") == "folded across lines"
    assert msg.content_type == "application/sdp" and msg.body == b"v=0\r"
    msg.validate()


def test_serialise_round_trip_keeps_meaning() -> None:
    msg = parse_message(INVITE)
    again = parse_message(bytes(msg))
    assert isinstance(again, Request)
    assert again.call_id == msg.call_id and again.body == msg.body
    assert [str(v) for v in again.vias] == [str(v) for v in msg.vias]
    assert bytes(again) == bytes(msg)


def test_uris() -> None:
    u = URI.parse("sips:alice:pw@[2001:db8::1]:5061;transport=tcp;lr?subject=x")
    assert (u.scheme, u.user, u.password) == ("sips", "alice", "pw")
    assert (u.host, u.port) == ("2001:db8::1", 5061)
    assert u.params == {"transport": "tcp", "lr": None} and u.headers == "subject=x"
    assert str(u) == "sips:alice:pw@[2001:db8::1]:5061;transport=tcp;lr?subject=x"
    t = URI.parse("tel:+1-201-555-0123;phone-context=example.com")
    assert t.scheme == "tel" and t.user == "+1-201-555-0123"
    assert str(t) == "tel:+1-201-555-0123;phone-context=example.com"
    assert URI.parse("sip:example.com").hostport == ("example.com", 5060)
    assert URI.parse("sips:example.com").hostport == ("example.com", 5061)


def test_addresses() -> None:
    a = Address.parse("sip:bob@example.com;tag=x")  # addr-spec: the tag belongs to the header
    assert a.tag == "x" and a.uri.params == {}
    b = Address.parse("<sip:bob@example.com;lr>;tag=y")
    assert b.uri.params == {"lr": None} and b.tag == "y"
    assert str(Address.parse('"A \\"B\\"" <sip:a@b>;tag=1')) == '"A \\"B\\"" <sip:a@b>;tag=1'


def test_split_list_respects_quotes_and_brackets() -> None:
    assert split_list('<sip:a@b;x=1,2>, "c, d" <sip:e@f>,sip:g@h') == [
        "<sip:a@b;x=1,2>", '"c, d" <sip:e@f>', "sip:g@h"]


def test_response_and_validate() -> None:
    h = Headers([("Via", "SIP/2.0/UDP a;branch=z9hG4bK1"), ("From", "<sip:a@b>;tag=1"),
                 ("To", "<sip:c@d>;tag=2"), ("Call-ID", "x"), ("CSeq", "1 INVITE")])
    resp = Response(486, None, h)
    parsed = parse_message(bytes(resp))
    assert isinstance(parsed, Response) and parsed.status == 486 and parsed.reason == "Busy Here"
    parsed.validate()
    req = Request("BYE", "sip:c@d", h.copy())
    with pytest.raises(ValueError, match="does not match"):
        req.validate()


@pytest.mark.parametrize(("data", "reason"), [
    (b"", "empty"),
    (b"INVITE sip:a@b SIP/2.0\r\nVia: x\r\n", "blank line"),
    (b"INVITE sip:a@b SIP/3.0\r\n\r\n", "start line"),
    (b"INVITE http://a SIP/2.0\r\n\r\n", "scheme"),
    (b"SIP/2.0 999 Nope\r\n\r\n", "start line"),
    (b"OPTIONS sip:a@b SIP/2.0\r\nBad Header\r\n\r\n", "header line"),
    (b"OPTIONS sip:a@b SIP/2.0\r\n folded-first\r\n\r\n", "continuation"),
    (b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 10\r\n\r\nabc", "shorter"),
    (b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: -1\r\n\r\n", "Content-Length"),
    (b"OPTIONS sip:a@b:99999 SIP/2.0\r\n\r\n", "port"),
    (b"OPTIONS sip:a@b SIP/2.0\r\nX: \xff\xfe\r\n\r\n", "UTF-8"),
])
def test_malformed_raises_value_error_with_reason(data: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_message(data)


def test_missing_mandatory_headers_are_reported() -> None:
    msg = parse_message(b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\n")
    with pytest.raises(ValueError, match="missing"):
        msg.validate()
    bad = parse_message(INVITE.replace(b"CSeq: 314159 INVITE", b"CSeq: 99999999999 INVITE"))
    with pytest.raises(ValueError, match="CSeq"):
        bad.validate()


def test_stream_framing_by_content_length() -> None:
    two = INVITE + b"\r\n" + INVITE
    parser = StreamParser()
    out = []
    for i in range(0, len(two), 7):  # arbitrary TCP segment boundaries
        out += parser.feed(two[i : i + 7])
    assert len(out) == 2 and all(m.body == b"v=0\r" for m in out)
    with pytest.raises(ValueError, match="Content-Length is required"):
        StreamParser().feed(b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\n")


_token = st.text("abcdefghijklmnopqrstuvwxyz0123456789-.", min_size=1, max_size=12).filter(
    lambda s: s[0].isalnum() and s[-1].isalnum())
_display = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=20)


@settings(max_examples=300, deadline=None)
@given(method=st.sampled_from(["INVITE", "BYE", "OPTIONS", "INFO", "REFER", "X-CUSTOM"]),
       user=_token, host=_token, port=st.none() | st.integers(1, 65535), display=_display,
       tag=_token, branch=_token, seq=st.integers(0, 2**31 - 1),
       body=st.binary(max_size=200), extra=st.lists(st.tuples(_token, _display), max_size=4))
def test_property_round_trip(method: str, user: str, host: str, port: int | None,
                             display: str, tag: str, branch: str, seq: int, body: bytes,
                             extra: list[tuple[str, str]]) -> None:
    uri = URI("sip", user, host, port)
    h = Headers()
    h.add("Via", str(Via("UDP", host, port, {"branch": "z9hG4bK" + branch, "rport": None})))
    h.add("From", str(Address(uri.copy(), display.strip() or None, {"tag": tag})))
    h.add("To", str(Address(uri.copy())))
    h.add("Call-ID", f"{branch}@{host}")
    h.add("CSeq", f"{seq} {method}")
    for name, value in extra:
        h.add("X-" + name, value.strip())
    req = Request(method, uri, h, body)
    parsed = parse_message(bytes(req))
    assert isinstance(parsed, Request)
    parsed.validate()
    assert parsed.method == method and parsed.uri == uri and parsed.body == body
    assert parsed.from_.tag == tag and parsed.from_.display == (display.strip() or None)
    assert parsed.top_via.branch == "z9hG4bK" + branch and parsed.cseq.number == seq
    assert bytes(parsed) == bytes(req)
    framed = StreamParser().feed(bytes(req) * 2)
    assert [bytes(m) for m in framed] == [bytes(req)] * 2


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400))
def test_property_garbage_only_raises_value_error(data: bytes) -> None:
    try:
        msg = parse_message(INVITE[: len(INVITE) // 2] + data)
        msg.validate()
    except ValueError:
        pass
