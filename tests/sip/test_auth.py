"""Digest answers match the worked examples of RFC 2617 §3.5 and RFC 7616 §3.9.1."""

from __future__ import annotations

from autocall.sip.auth import Challenge, Credentials, DigestClient, digest_response, parse_challenge


def test_rfc2617_md5_example() -> None:
    ch = Challenge("testrealm@host.com", "dcd98b7102dd2f0e8b11d0f600bfb0c093", "MD5", ("auth",))
    creds = Credentials("Mufasa", "Circle Of Life")
    resp = digest_response(ch, creds, "GET", "/dir/index.html", 1, "0a4f113b")
    assert resp == "6629fae49393a05397450978507c4ef1"


def test_rfc7616_sha256_and_md5_examples() -> None:
    nonce = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
    cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
    creds = Credentials("Mufasa", "Circle of Life")
    md5 = Challenge("http-auth@example.org", nonce, "MD5", ("auth",))
    sha = Challenge("http-auth@example.org", nonce, "SHA-256", ("auth",))
    assert digest_response(md5, creds, "GET", "/dir/index.html", 1, cnonce) == \
        "8ca523f5e9506fed4657c9700eebdbec"
    assert digest_response(sha, creds, "GET", "/dir/index.html", 1, cnonce) == \
        "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"


def test_challenge_parsing_and_nonce_count() -> None:
    ch = parse_challenge('Digest realm="a, b", nonce="n1", qop="auth,auth-int", '
                         'algorithm=SHA-256, opaque="op", stale=TRUE')
    assert ch.realm == "a, b" and ch.qop == ("auth", "auth-int") and ch.stale
    client = DigestClient(Credentials("alice", "secret"))
    name, first = client.authorize(407, 'Digest realm="r", nonce="n1", qop="auth"', "INVITE",
                                   "sip:bob@x")  # type: ignore[misc]
    _, second = client.authorize(407, 'Digest realm="r", nonce="n1", qop="auth"', "INVITE",
                                 "sip:bob@x")  # type: ignore[misc]
    assert name == "Proxy-Authorization"
    assert "nc=00000001" in first and "nc=00000002" in second
    assert "secret" not in first and "secret" not in repr(client.creds)


def test_unanswerable_challenges() -> None:
    client = DigestClient(Credentials("alice", "secret", realm="only-this"))
    assert client.authorize(401, 'Digest realm="other", nonce="n"', "REGISTER", "sip:x") is None
    assert client.authorize(401, 'Basic realm="only-this"', "REGISTER", "sip:x") is None
    assert client.authorize(401, 'Digest realm="only-this", nonce="n", algorithm=SHA-512-256',
                            "REGISTER", "sip:x") is None
    hdr = client.authorize(401, 'Digest realm="only-this", nonce="n"', "REGISTER", "sip:x")
    assert hdr is not None and hdr[0] == "Authorization" and "qop" not in hdr[1]
