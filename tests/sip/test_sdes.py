"""SDES a=crypto lines (RFC 4568) and the SRTP policy's offer/answer decisions."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autocall.config import TrunkSettings
from autocall.sip.sdes import Crypto, SrtpPolicy, new_key, parse_policy
from autocall.sip.sdp import build_sdp, negotiate, parse_sdp

KEY = bytes(range(30))
B64 = base64.b64encode(KEY).decode()
SHA80, SHA32 = "AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32"
OFF, OPTIONAL, REQUIRED = SrtpPolicy("off"), SrtpPolicy("optional"), SrtpPolicy("required")


def sdp(profile: str = "RTP/AVP", *crypto: str) -> bytes:
    lines = ["v=0", "o=x 1 1 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0",
             f"m=audio 4000 {profile} 0 101", "a=rtpmap:101 telephone-event/8000"]
    lines += [f"a=crypto:{c}" for c in crypto]
    return ("\r\n".join(lines) + "\r\n").encode()


def test_crypto_line_round_trip_and_its_rfc_4568_example() -> None:
    c = Crypto(1, SHA80, KEY)
    assert str(c) == f"1 {SHA80} inline:{B64}"
    assert Crypto.parse(str(c)) == c
    # RFC 4568 §4's example line (with lifetime and MKI): the MKI makes it unusable for us
    rfc = "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4"
    assert Crypto.parse(rfc) == "tag 1: an MKI is given, which we do not use"
    lifetime = Crypto.parse(f"7 {SHA32} inline:{B64}|2^31 WSH=64")
    assert lifetime == Crypto(7, SHA32, KEY)


@pytest.mark.parametrize(("line", "why"), [
    ("1 AES_CM_128_HMAC_SHA1_80", "needs a tag, a suite and key parameters"),
    ("x1 AES_CM_128_HMAC_SHA1_80 inline:" + B64, "is not 1-9 digits"),
    ("1 AES_CM_128_HMAC_SHA1_80 uri:" + B64, "key method must be inline"),
    ("1 AES_CM_128_HMAC_SHA1_80 inline:***", "is not base64"),
    ("1 AES_CM_128_HMAC_SHA1_80 inline:" + base64.b64encode(b"short").decode(),
     "needs a 30-byte key and salt, got 5 bytes"),
    ("1 AES_CM_128_HMAC_SHA1_80 inline:" + B64 + "|forever", "is not a number or 2^n"),
    ("1 AES_CM_128_HMAC_SHA1_80 inline:" + B64 + "|2^60", "out of range"),
])
def test_broken_crypto_lines_say_what_is_wrong(line: str, why: str) -> None:
    with pytest.raises(ValueError, match=why.replace("^", r"\^")):
        Crypto.parse(line)
    with pytest.raises(ValueError, match=r"SDP line 8 .*" + why.replace("^", r"\^")):
        parse_sdp(sdp("RTP/SAVP", line))


def test_lines_we_cannot_use_are_skipped_not_fatal() -> None:
    parsed = parse_sdp(sdp("RTP/SAVP", f"1 AEAD_AES_256_GCM inline:{B64}",
                           f"2 {SHA80} inline:{B64} UNENCRYPTED_SRTP",
                           f"3 {SHA32} inline:{B64}"))
    assert parsed.audio is not None and parsed.audio.profile == "RTP/SAVP"
    assert parsed.audio.crypto == [Crypto(3, SHA32, KEY)]
    assert parsed.audio.crypto_ignored == [
        "tag 1: suite AEAD_AES_256_GCM is not supported",
        "tag 2: session parameter UNENCRYPTED_SRTP is not supported"]
    neg = negotiate(parsed, srtp=OPTIONAL)
    assert neg.crypto == Crypto(3, SHA32, KEY) and neg.profile == "RTP/SAVP"


def test_answering_under_each_policy() -> None:
    savp = parse_sdp(sdp("RTP/SAVP", f"1 {SHA32} inline:{B64}", f"2 {SHA80} inline:{B64}"))
    avp_keys = parse_sdp(sdp("RTP/AVP", f"5 {SHA80} inline:{B64}"))
    plain = parse_sdp(sdp("RTP/AVP"))
    # our suite order decides among the offered lines (80 first by default)
    assert negotiate(savp, srtp=REQUIRED).crypto == Crypto(2, SHA80, KEY)
    assert negotiate(savp, srtp=SrtpPolicy("optional", (SHA32,))).crypto == Crypto(1, SHA32,
                                                                                   KEY)
    assert negotiate(avp_keys, srtp=OPTIONAL).crypto == Crypto(5, SHA80, KEY)  # best effort
    assert negotiate(avp_keys, srtp=OFF).crypto is None  # keys ignored: plain RTP
    assert negotiate(plain, srtp=OPTIONAL).crypto is None
    with pytest.raises(ValueError, match="RTP/SAVP .SRTP. offered but AUTOCALL_SRTP=off"):
        negotiate(savp, srtp=OFF)
    with pytest.raises(ValueError, match="no usable SRTP key in the RTP/AVP offer"):
        negotiate(plain, srtp=REQUIRED)
    only_gcm = parse_sdp(sdp("RTP/SAVP", f"1 AEAD_AES_128_GCM inline:{B64}"))
    with pytest.raises(ValueError, match="suite AEAD_AES_128_GCM is not supported"):
        negotiate(only_gcm, srtp=OPTIONAL)
    with pytest.raises(ValueError, match="DTLS-SRTP is not implemented"):
        negotiate(parse_sdp(sdp("UDP/TLS/RTP/SAVP")), srtp=OPTIONAL)


def test_accepting_an_answer_to_our_offer() -> None:
    ours = REQUIRED.offer({SHA80: new_key(SHA80), SHA32: new_key(SHA32)})
    assert [(c.tag, c.suite) for c in ours] == [(1, SHA80), (2, SHA32)]
    assert ours[0].key != ours[1].key and len(ours[0].key) == 30
    answer = parse_sdp(sdp("RTP/SAVP", f"2 {SHA32} inline:{B64}"))
    assert negotiate(answer, srtp=REQUIRED, ours=ours).crypto == Crypto(2, SHA32, KEY)
    wrong_tag = parse_sdp(sdp("RTP/SAVP", f"2 {SHA80} inline:{B64}"))
    with pytest.raises(ValueError, match="matches no line of our offer"):
        negotiate(wrong_tag, srtp=REQUIRED, ours=ours)
    with pytest.raises(ValueError, match="no a=crypto key and AUTOCALL_SRTP=required"):
        negotiate(parse_sdp(sdp("RTP/SAVP")), srtp=REQUIRED, ours=ours)
    # optional: a peer that does not know SDES answers plain RTP/AVP; the call goes on
    assert negotiate(parse_sdp(sdp("RTP/AVP")), srtp=OPTIONAL, ours=ours).crypto is None
    with pytest.raises(ValueError, match="the answer is RTP/SAVP but we offered plain RTP"):
        negotiate(parse_sdp(sdp("RTP/SAVP")), srtp=OFF, ours=[])


def test_our_offer_carries_the_profile_and_lines() -> None:
    ours = OPTIONAL.offer({SHA80: KEY, SHA32: KEY})
    body = build_sdp("127.0.0.1", 4000, session_id=1, version=1,
                     profile=OPTIONAL.offer_profile, crypto=ours).decode()
    assert "m=audio 4000 RTP/AVP 0 8 101\r\n" in body  # optional: best effort, RTP/AVP
    assert f"a=crypto:1 {SHA80} inline:{B64}\r\n" in body
    assert f"a=crypto:2 {SHA32} inline:{B64}\r\n" in body
    assert REQUIRED.offer_profile == "RTP/SAVP" and OFF.offer({}) == []


def test_keys_in_clear_are_refused_unless_allowed() -> None:
    OFF.check_transport("udp")
    REQUIRED.check_transport("TLS")
    with pytest.raises(ValueError, match="over udp anyone on the path reads them"):
        OPTIONAL.check_transport("udp")
    SrtpPolicy("required", clear_keys=True).check_transport("tcp")


def test_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert TrunkSettings.from_env().srtp == SrtpPolicy()  # off by default
    monkeypatch.setenv("AUTOCALL_SRTP", "Required")
    monkeypatch.setenv("AUTOCALL_SRTP_SUITES", "aes_cm_128_hmac_sha1_32")
    monkeypatch.setenv("AUTOCALL_SRTP_CLEAR_KEYS", "1")
    assert TrunkSettings.from_env().srtp == SrtpPolicy("required", (SHA32,), True)
    monkeypatch.setenv("AUTOCALL_SRTP", "sometimes")
    with pytest.raises(ValueError, match="AUTOCALL_SRTP='sometimes': use off, optional"):
        TrunkSettings.from_env()
    with pytest.raises(ValueError, match="AUTOCALL_SRTP_SUITES: 'F8_128_HMAC_SHA1_80'"):
        parse_policy("optional", "F8_128_HMAC_SHA1_80", False)


_PIECES = st.sampled_from(["1", "99", "0", " ", "  ", SHA80, SHA32, "AEAD_AES_256_GCM",
                           "inline:", B64, B64[:-4], "|", "2^31", "2^99", "1:4", ";", "WSH=",
                           "KDR=1", "=", "\x00", "é", "-", "inline:" + B64])


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(_PIECES, st.text(max_size=8)), max_size=10))
def test_any_crypto_line_is_parsed_skipped_or_refused_with_a_reason(pieces: list[str]) -> None:
    """Hostile a=crypto values: a Crypto, a reason to skip it, or ValueError; nothing else,
    and an SDP holding it is answered, skipped or refused the same way."""
    value = "".join(pieces)
    try:
        got = Crypto.parse(value)
    except ValueError as exc:
        assert str(exc)
    else:
        assert isinstance(got, str) or (len(got.key) == 30 and got.suite in (SHA80, SHA32))
    if "\r" in value or "\n" in value:
        return
    try:
        negotiate(parse_sdp(sdp("RTP/SAVP", value)), srtp=OPTIONAL)
    except ValueError as exc:
        assert str(exc)
