"""RFC 4733 packets on the audio's SSRC in the signal's reorder buffer (issue: every
digit exactly as pressed).

An event shares the audio's sequence numbers (one RTP stream, RFC 3550 §5.1), but it is
no audio: `ReorderBuffer` waited its whole window (200 ms) for those sequence numbers
as for lost packets before it passed on the audio after an event, which delayed the
in-band detector, and took the event's timestamps for a loss.
"""

from __future__ import annotations

import numpy as np

from autocall.media.reorder import ReorderBuffer

FRAME = 160
TS0 = 90_000


def test_reorder_an_events_sequence_number_is_no_hole() -> None:
    """RFC 4733 packets on the audio's SSRC take sequence numbers: the audio after them
    comes at once (it used to wait the 200 ms reorder window for them) and the event's
    timestamps become the sender's silence, not a loss."""
    buf = ReorderBuffer()
    frame = np.ones(FRAME, np.int16)
    buf.push(1, TS0, frame, 0.0)
    for k in range(3):
        buf.skip(2 + k, TS0 + FRAME, 0.02 * (k + 1))
    buf.push(5, TS0 + 4 * FRAME, frame, 0.08)
    got = buf.pop(0.08)
    assert [len(c) for c in got] == [FRAME, 3 * FRAME, FRAME]
    assert not got[1].any()
    assert buf.take_hole() == 0 and buf.skipped == 0
    assert buf.next_ts == TS0 + 5 * FRAME


def test_reorder_an_event_packet_beyond_a_real_hole_still_waits_for_it() -> None:
    buf = ReorderBuffer(window=0.2)
    frame = np.ones(FRAME, np.int16)
    for k in range(3):
        buf.push(1 + k, TS0 + k * FRAME, frame, 0.02 * k)
    buf.skip(5, TS0 + 4 * FRAME, 0.08)  # packet 4 (audio) is late
    assert sum(len(c) for c in buf.pop(0.09)) == 3 * FRAME
    buf.push(4, TS0 + 3 * FRAME, frame, 0.10)
    assert [len(c) for c in buf.pop(0.10)] == [FRAME]
    assert buf.late == 0 and buf.skipped == 0 and buf.idle(0.5, 0.25)


def test_reorder_complete_up_to_an_event_in_line() -> None:
    """The first packet of an event, in line, says the audio before its start is all
    there: nothing can still come that sounds before the event."""
    buf = ReorderBuffer()
    frame = np.ones(FRAME, np.int16)
    for k in range(3):
        buf.push(1 + k, TS0 + k * FRAME, frame, 0.02 * k)
    buf.pop(0.05)
    assert buf.complete_ts == buf.next_ts == TS0 + 3 * FRAME
    buf.skip(5, TS0 + 4 * FRAME, 0.08)  # packet 4 missing: not complete past it
    assert buf.complete_ts == TS0 + 3 * FRAME
    buf.push(4, TS0 + 3 * FRAME, frame, 0.09)
    buf.pop(0.09)
    buf.skip(6, TS0 + 4 * FRAME, 0.10)  # the same event's next packet, in line
    assert buf.next_ts == TS0 + 4 * FRAME and buf.complete_ts == TS0 + 4 * FRAME
    buf.skip(7, TS0 + 9 * FRAME, 0.12)  # a later event, in line: audio is complete to it
    assert buf.next_ts == TS0 + 4 * FRAME and buf.complete_ts == TS0 + 9 * FRAME
