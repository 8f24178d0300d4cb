"""SDP offer/answer (RFC 3264) and dialog rules (RFC 3261 §12) without any network."""

from __future__ import annotations

import pytest

from autocall.sip.dialog import Dialog, InDialogKind, parse_info_dtmf, response_to
from autocall.sip.message import Headers, Request, parse_message
from autocall.sip.sdp import answer_direction, build_sdp, negotiate, parse_sdp

PEER_OFFER = b"""v=0\r
o=peer 5 7 IN IP4 192.0.2.10\r
s=-\r
c=IN IP4 192.0.2.10\r
t=0 0\r
m=audio 4000 RTP/AVP 9 8 0 96\r
a=rtpmap:9 G722/8000\r
a=rtpmap:96 telephone-event/8000\r
a=fmtp:96 0-15\r
a=ptime:20\r
a=sendonly\r
"""


def test_negotiate_picks_first_common_codec_and_peer_dtmf_pt() -> None:
    neg = negotiate(parse_sdp(PEER_OFFER))
    assert (neg.pt, neg.codec, neg.dtmf_pt) == (8, "PCMA", 96)
    assert neg.remote == ("192.0.2.10", 4000) and neg.direction == "sendonly"
    assert answer_direction(neg.direction) == "recvonly"


def test_our_offer_parses_back() -> None:
    sdp = parse_sdp(build_sdp("10.0.0.5", 30000, session_id=1, version=2))
    assert sdp.audio is not None and sdp.audio.formats == [0, 8, 101]
    assert sdp.audio.rtpmap[101] == ("telephone-event", 8000) and sdp.audio.ptime == 20
    assert negotiate(sdp).dtmf_pt == 101


def test_no_common_codec_and_bad_lines() -> None:
    with pytest.raises(ValueError, match="no common codec"):
        negotiate(parse_sdp(PEER_OFFER.replace(b"9 8 0 96", b"9 96")))
    with pytest.raises(ValueError, match="SDP line 6"):
        parse_sdp(PEER_OFFER.replace(b"m=audio 4000", b"m=audio x"))
    held = parse_sdp(PEER_OFFER.replace(b"c=IN IP4 192.0.2.10", b"c=IN IP4 0.0.0.0")
                     .replace(b"a=sendonly\r\n", b""))
    assert held.media_direction == "sendonly"  # RFC 2543-style hold


def test_info_dtmf_bodies() -> None:
    assert parse_info_dtmf("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n") == ("5", 160)
    assert parse_info_dtmf("application/dtmf-relay", b"Signal=11\r\n") == ("#", None)
    assert parse_info_dtmf("application/dtmf", b"*") == ("*", None)
    assert parse_info_dtmf("application/dtmf-relay", b"Signal=Z\r\n") is None


def _invite() -> Request:
    return parse_message(
        b"INVITE sip:bob@192.0.2.20 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n"
        b"Record-Route: <sip:192.0.2.99;lr>\r\n"
        b"From: <sip:alice@x>;tag=alice1\r\nTo: <sip:bob@y>\r\n"
        b"Call-ID: cid\r\nCSeq: 10 INVITE\r\nContact: <sip:alice@192.0.2.1:5062>\r\n"
        b"Content-Length: 0\r\n\r\n")  # type: ignore[return-value]


def _in_dialog(method: str, seq: int, to_tag: str = "bob1", from_tag: str = "alice1") -> Request:
    h = Headers([("Via", "SIP/2.0/UDP 192.0.2.99;branch=z9hG4bK9"),
                 ("From", f"<sip:alice@x>;tag={from_tag}"), ("To", f"<sip:bob@y>;tag={to_tag}"),
                 ("Call-ID", "cid"), ("CSeq", f"{seq} {method}")])
    return Request(method, "sip:bob@192.0.2.20", h)


def test_uas_dialog_vets_tags_cseq_and_source() -> None:
    d = Dialog.as_uas(_invite(), "bob1")
    assert d.remote_target.port == 5062 and d.route_set == ["<sip:192.0.2.99;lr>"]
    assert d.next_hop() == ("192.0.2.99", 5060)
    assert d.vet(_in_dialog("BYE", 11, to_tag="evil"), ("192.0.2.99", 5060)) == (
        481, "Call/Transaction Does Not Exist")
    assert d.vet(_in_dialog("BYE", 11), ("203.0.113.66", 5060))[0] == 403  # type: ignore[index]
    # The right IP from another port is another sender (issue 12 item 2); TCP checks IPs.
    assert d.vet(_in_dialog("BYE", 11), ("192.0.2.99", 5999))[0] == 403  # type: ignore[index]
    assert d.vet(_in_dialog("BYE", 11), ("192.0.2.99", 5999), check_port=False) is None
    assert d.vet(_in_dialog("BYE", 10), ("192.0.2.99", 5060)) == (500, "CSeq out of order")
    ok = _in_dialog("INFO", 11)
    ok.headers.set("Content-Type", "application/dtmf-relay")
    ok.body = b"Signal=3\r\n"
    assert d.vet(ok, ("192.0.2.99", 5060)) is None
    ev = d.accept(ok)
    assert ev.kind is InDialogKind.INFO_DTMF and ev.digit == "3" and d.remote_seq == 11


def test_uac_dialog_builds_requests_with_routes_and_increasing_cseq() -> None:
    inv = _invite()
    inv.headers.remove("Record-Route")
    ok = response_to(inv, 200, to_tag="bob1", headers=Headers([
        ("Contact", "<sip:bob@192.0.2.20:5070>"),
        ("Record-Route", "<sip:p2.example;lr>, <sip:p1.example;lr>")]))
    d = Dialog.as_uac(inv, ok)
    assert d.route_set == ["<sip:p1.example;lr>", "<sip:p2.example;lr>"]
    bye = d.new_request("BYE", "SIP/2.0/UDP me;branch=z9hG4bKx")
    assert str(bye.uri) == "sip:bob@192.0.2.20:5070"
    assert bye.headers.get_all("Route") == ["<sip:p1.example;lr>", "<sip:p2.example;lr>"]
    assert bye.cseq.number == 11 and bye.to.tag == "bob1" and bye.from_.tag == "alice1"
    ack = d.ack(10, "SIP/2.0/UDP me;branch=z9hG4bKy")
    assert ack.cseq.number == 10 and ack.cseq.method == "ACK"
    assert d.new_request("INFO", "SIP/2.0/UDP me;branch=z9hG4bKz").cseq.number == 12
