"""Sans-I/O codec negotiation: G.722 (RTP payload type 9, ``G722/8000`` per RFC 3551
§4.5.2) beside G.711, the configured codec order, and AUTOCALL_CODECS parsing."""

from __future__ import annotations

from pathlib import Path

import pytest

from autocall.config import TrunkSettings
from autocall.sip.sdp import SUPPORTED, build_sdp, negotiate, parse_codecs, parse_sdp

WIDE = ("PCMU", "PCMA", "G722")


def offer(fmts: str, *rtpmaps: str) -> bytes:
    lines = [
        "v=0",
        "o=peer 1 1 IN IP4 127.0.0.1",
        "s=-",
        "c=IN IP4 127.0.0.1",
        "t=0 0",
        f"m=audio 4000 RTP/AVP {fmts}",
        *rtpmaps,
        "a=sendrecv",
    ]
    return ("\r\n".join(lines) + "\r\n").encode()


def test_g722_is_written_with_its_8000hz_rtp_clock() -> None:
    body = build_sdp(
        "127.0.0.1", 5000, session_id=1, version=1, codecs=[(9, "G722"), (0, "PCMU")]
    ).decode()
    assert "m=audio 5000 RTP/AVP 9 0 101\r\n" in body
    assert "a=rtpmap:9 G722/8000\r\n" in body  # not /16000: RFC 3551 §4.5.2


def test_the_default_list_is_g711_only() -> None:
    assert SUPPORTED == ("PCMU", "PCMA")
    # A peer that prefers G.722 still gets G.711 unless G.722 is allowed.
    neg = negotiate(parse_sdp(offer("9 0 8 101", "a=rtpmap:101 telephone-event/8000")))
    assert (neg.pt, neg.codec, neg.dtmf_pt) == (0, "PCMU", 101)


def test_an_offer_with_g722_first_gets_g722_when_allowed() -> None:
    neg = negotiate(
        parse_sdp(offer("9 0 101", "a=rtpmap:9 G722/8000", "a=rtpmap:101 telephone-event/8000")),
        WIDE,
    )
    assert (neg.pt, neg.codec, neg.dtmf_pt) == (9, "G722", 101)


def test_g722_without_an_rtpmap_is_the_static_type() -> None:
    neg = negotiate(parse_sdp(offer("9")), WIDE)
    assert (neg.pt, neg.codec) == (9, "G722")


def test_the_offerers_order_decides_among_allowed_codecs() -> None:
    """RFC 3264 §6.1: we answer with the first offered format we allow."""
    neg = negotiate(parse_sdp(offer("8 9 0")), ("G722", "PCMU", "PCMA"))
    assert neg.codec == "PCMA"


def test_an_offer_without_9_gets_g711() -> None:
    neg = negotiate(parse_sdp(offer("0 8")), ("G722", "PCMU", "PCMA"))
    assert neg.codec == "PCMU"


def test_g722_only_against_a_g711_only_peer_is_refused() -> None:
    with pytest.raises(ValueError, match="no common codec"):
        negotiate(parse_sdp(offer("0 8")), ("G722",))


def test_an_answer_of_9_to_our_wideband_offer() -> None:
    answer = offer("9 101", "a=rtpmap:9 G722/8000", "a=rtpmap:101 telephone-event/8000")
    neg = negotiate(parse_sdp(answer), ("G722", "PCMU"))
    assert (neg.pt, neg.codec) == (9, "G722")


@pytest.mark.parametrize("rtpmap", ["a=rtpmap:9 G722/16000", "a=rtpmap:96 G722/8000"])
def test_g722_at_another_clock_or_number_is_not_taken(rtpmap: str) -> None:
    """16000 is not G.722's RTP clock (§4.5.2), and our encoder is bound to type 9."""
    fmts = "96 0" if "96" in rtpmap else "9 0"
    neg = negotiate(parse_sdp(offer(fmts, rtpmap)), WIDE)
    assert neg.codec == "PCMU"


def test_codec_list_parsing() -> None:
    assert parse_codecs("g722,pcmu,pcma") == ("G722", "PCMU", "PCMA")
    assert parse_codecs(" PCMA , g.722 ,pcma") == ("PCMA", "G722")
    with pytest.raises(ValueError, match=r"AUTOCALL_CODECS='g729,pcmu': unknown codec 'g729'"):
        parse_codecs("g729,pcmu")
    with pytest.raises(ValueError, match="at least one codec"):
        parse_codecs(" , ")


def test_autocall_codecs_reaches_the_trunk(monkeypatch: pytest.MonkeyPatch) -> None:
    assert TrunkSettings.from_env().codecs == ("PCMU", "PCMA")
    monkeypatch.setenv("AUTOCALL_CODECS", "g722,pcmu")
    assert TrunkSettings.from_env().codecs == ("G722", "PCMU")
    monkeypatch.setenv("AUTOCALL_CODECS", "opus")
    with pytest.raises(ValueError, match="unknown codec 'opus'"):
        TrunkSettings.from_env()


async def test_an_agent_refuses_a_codec_it_cannot_speak() -> None:
    from autocall.telephony.call import UserAgent

    with pytest.raises(ValueError, match="name one or more of PCMU, PCMA, G722"):
        await UserAgent.start(codecs=("OPUS",))
    with pytest.raises(ValueError, match="name one or more of"):
        await UserAgent.start(codecs=())


def test_a_trunk_file_names_its_codecs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from autocall.trunks import TrunkError, load_trunk

    pbx = tmp_path / "pbx.yaml"
    pbx.write_text("preset: asterisk\nhost: pbx.example.com\ncodecs: [g722, pcmu]\n")
    assert load_trunk(str(pbx)).codecs == ("G722", "PCMU")
    monkeypatch.delenv("AUTOCALL_CODECS", raising=False)
    assert TrunkSettings.from_env(str(pbx)).codecs == ("G722", "PCMU")
    monkeypatch.setenv("AUTOCALL_CODECS", "pcma")  # the environment wins, as for every field
    assert TrunkSettings.from_env(str(pbx)).codecs == ("PCMA",)
    plain = tmp_path / "plain.yaml"
    plain.write_text("host: pbx.example.com\n")
    assert load_trunk(str(plain)).codecs == ("PCMU", "PCMA")
    bad = tmp_path / "bad.yaml"
    bad.write_text("host: pbx.example.com\ncodecs: g729\n")
    with pytest.raises(TrunkError, match=r"bad.yaml:2:9: error: codecs: unknown codec 'g729'"):
        load_trunk(str(bad))
