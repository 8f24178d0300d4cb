"""The SIP trace `autocall sip check` shows on failure (sans-I/O)."""

from __future__ import annotations

from autocall.sip.trace import MAX_CHARS, SipTrace

OPTIONS = b"OPTIONS sip:127.0.0.1 SIP/2.0\r\nCSeq: 1 OPTIONS\r\n\r\n"
PEER = ("127.0.0.1", 5060)


def test_entries_since_a_mark_survive_the_bound() -> None:
    trace = SipTrace(100.0, limit=3)
    trace.record(100.5, "sent", PEER, b"A")
    mark = trace.mark()
    for i in range(4):
        trace.record(101.0 + i, "received", PEER, f"B{i}".encode())
    assert [e.text for e in trace.since(mark)] == ["B1", "B2", "B3"]  # B0 fell off
    assert trace.since(trace.mark()) == []
    assert trace.entries[0].at == 2.0


def test_retransmissions_render_as_one_line() -> None:
    trace = SipTrace(0.0)
    for t in (0.0, 0.5, 1.5):
        trace.record(t, "sent", PEER, OPTIONS)
    trace.record(2.0, "received", PEER, b"SIP/2.0 200 OK\r\n\r\n")
    text = SipTrace.render(list(trace.entries))
    assert text.count("OPTIONS sip:") == 1
    assert "(sent again unchanged 2x: +0.500, +1.500 s)" in text
    assert "+2.000 s  received from 127.0.0.1:5060\nSIP/2.0 200 OK" in text


def test_control_characters_and_digest_answers_are_not_shown() -> None:
    trace = SipTrace(0.0)
    trace.record(0.0, "received", PEER, b"SIP/2.0 401 x\x1b[2J\r\nX: \x00\r\n\r\n")
    trace.record(0.1, "sent", PEER, b'REGISTER sip:x SIP/2.0\r\nAuthorization: Digest '
                                    b'username="a", response="8095e68456714397", nc=1\r\n\r\n')
    text = SipTrace.render(list(trace.entries))
    assert "\x1b" not in text and "\\x1b[2J" in text and "\\x00" in text
    assert "8095e684" not in text and 'response="***"' in text


def test_a_huge_message_is_cut() -> None:
    trace = SipTrace(0.0)
    trace.record(0.0, "received", PEER, b"x" * (MAX_CHARS * 3))
    assert len(trace.entries[0].text) < MAX_CHARS + 100
    assert "more characters" in trace.entries[0].text
