"""Every digit exactly as pressed: in-band and RFC 4733 keys in the order the caller
pressed them, whichever way each one came.

A caller's gateway may send one key as audio tones and the next as an RFC 4733
telephone-event. The in-band detector reports a tone only once its 100 ms batch has
been analysed (plus the release confirmation), while an event was reported the moment
its end packet arrived: an RFC 4733 key pressed 40-60 ms after an in-band one came out
first ('21' for '12'). Keys are ordered by their RTP timestamps (where each press
starts), over a real RTP stream on loopback.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import numpy as np
import pytest

from autocall.audio import g711
from autocall.audio.dtmf import DtmfDetector, DtmfEvent
from autocall.audio.levels import dbm0_to_power
from autocall.audio.tones import dtmf
from autocall.media import MediaEngine, MediaSession
from autocall.media.detection import DetectorPool
from autocall.media.digit_order import SETTLE, DigitOrder, Press
from autocall.media.rtp import RtpPacket
from autocall.media.telephone_event import TelephoneEvent, event_code
from tests.media.udp_call import Packet, digits_after, udp_call

pytestmark = pytest.mark.timeout(30)

US, CALLER = 24100, 24101  # this branch's port range: 24000-24499
SSRC, TS0, SEQ0 = 0x5EED, 90_000, 700
FRAME = 160  # 20 ms at 8 kHz, the RTP clock of PCMU and of telephone-event
LEAD = 800  # 100 ms of silence before the first key

@pytest.fixture
async def call(engine: MediaEngine) -> AsyncIterator[tuple[MediaSession, socket.socket]]:
    async with udp_call(engine, US, CALLER) as pair:
        yield pair


class Stream:
    """One caller's RTP stream on the 20 ms grid: PCMU audio and RFC 4733 events share
    the SSRC, sequence numbers and timestamp clock, as a gateway sends them."""

    def __init__(self, pcm: np.ndarray) -> None:
        pcm = np.concatenate([pcm, np.zeros(-len(pcm) % FRAME, np.int16)])
        self.ulaw = g711.ulaw_encode(pcm)
        self.frames = len(pcm) // FRAME
        self.events: dict[int, list[bytes]] = {}  # frame index -> event payloads sent then
        self.replaced: set[int] = set()  # frames sent as events instead of audio
        self.starts: dict[int, int] = {}  # frame index -> start frame of its event
        self.comfort: set[int] = set()  # frames sent as one comfort-noise packet (RFC 3389)
        self.unsent: set[int] = set()  # frames of a pause after comfort noise (no packet)

    def pause(self, frame: int, frames: int) -> None:
        """Discontinuous transmission: one comfort-noise packet at ``frame``, then
        nothing for the rest of ``frames`` (RFC 3389 §4)."""
        self.comfort.add(frame)
        self.unsent.update(range(frame + 1, frame + frames))

    def event(self, digit: str, frame: int, frames: int, replace_audio: bool) -> None:
        """A key press starting at ``frame`` for ``frames`` frames, RFC 4733 §2.5.1: one
        update per frame, all with the start timestamp, the end packet three times."""
        code = event_code(digit)
        for k in range(frames + 2):
            end = k >= frames - 1
            duration = FRAME * min(k + 1, frames)
            payload = bytes(TelephoneEvent(code, end, 10, duration))
            self.events.setdefault(frame + k, []).append(payload)
            self.starts[frame + k] = frame
            if replace_audio:
                self.replaced.add(frame + k)

    def packets(self) -> list[Packet]:
        out: list[Packet] = []
        seq = SEQ0
        first_event: set[int] = set()
        for i in range(self.frames):
            t = 0.02 * i
            for payload in self.events.get(i, []):
                start = self.starts[i]
                marker = start not in first_event
                first_event.add(start)
                ts = TS0 + FRAME * start
                out.append((t, bytes(RtpPacket(101, seq % 65536, ts, SSRC, payload, marker))))
                seq += 1
            if i in self.comfort:  # a noise level of -64 dBov, no spectrum
                out.append((t, bytes(RtpPacket(13, seq % 65536, TS0 + FRAME * i, SSRC, b"\x40"))))
                seq += 1
            elif i not in self.replaced and i not in self.unsent:
                audio = self.ulaw[FRAME * i : FRAME * (i + 1)]
                out.append((t, bytes(RtpPacket(0, seq % 65536, TS0 + FRAME * i, SSRC, audio))))
                seq += 1
        return out


async def received(media: MediaSession, caller: socket.socket, packets: list[Packet]) -> str:
    heard = await digits_after(media, packets, caller)
    assert heard == "".join(d.digit for d in media.received_digits)
    return heard


def tone(digit: str, on_ms: int) -> np.ndarray:
    return dtmf(digit, on_ms=on_ms, off_ms=0)


def silence(samples: int) -> np.ndarray:
    return np.zeros(samples, np.int16)


@pytest.mark.parametrize("replace_audio", [True, False], ids=["events-only", "audio-under"])
@pytest.mark.parametrize(("on_ms", "gap_ms"), [(80, 40), (70, 50), (60, 60)])
async def test_inband_key_then_rfc4733_key_40_to_60_ms_later_stay_in_order(
    call: tuple[MediaSession, socket.socket], on_ms: int, gap_ms: int, replace_audio: bool
) -> None:
    """'1' in-band, then '2' as telephone-event starting ``gap_ms`` after the tone ends:
    the event's end packet arrives before the detector has analysed the tone."""
    media, caller = call
    start = LEAD + 8 * (on_ms + gap_ms)
    assert start % FRAME == 0
    s = Stream(np.concatenate([silence(LEAD), tone("1", on_ms), silence(8 * gap_ms + 4000)]))
    s.event("2", start // FRAME, 5, replace_audio)
    assert await received(media, caller, s.packets()) == "12"


@pytest.mark.parametrize("replace_audio", [True, False], ids=["events-only", "audio-under"])
@pytest.mark.parametrize("gap_ms", [40, 60])
async def test_rfc4733_key_then_inband_key_stay_in_order(
    call: tuple[MediaSession, socket.socket], gap_ms: int, replace_audio: bool
) -> None:
    media, caller = call
    s = Stream(
        np.concatenate([silence(LEAD + 800 + 8 * gap_ms), tone("1", 80), silence(4000)])
    )
    s.event("2", LEAD // FRAME, 5, replace_audio)
    assert await received(media, caller, s.packets()) == "21"


@pytest.mark.parametrize("pause_frames", [1, 4])
async def test_comfort_noise_before_a_key_is_no_lost_audio_to_wait_for(
    call: tuple[MediaSession, socket.socket], pause_frames: int
) -> None:
    """Comfort noise takes a sequence number of the audio's (RFC 3389 §4): waiting for
    it as for a lost packet held the in-band '1' after it back by the reorder window,
    and the RFC 4733 '2' pressed 40 ms after the tone came out first."""
    media, caller = call
    tone_at = LEAD + FRAME * pause_frames
    s = Stream(np.concatenate([silence(tone_at), tone("1", 80), silence(320 + 4000)]))
    s.pause(LEAD // FRAME, pause_frames)
    s.event("2", (tone_at + 640 + 320) // FRAME, 5, replace_audio=True)
    assert await received(media, caller, s.packets()) == "12"
    assert media.stats().packets_lost == 0
    assert media._signal.skipped == 0  # the detector's audio gave up on no packet


async def test_one_key_sent_both_ways_is_one_press(
    call: tuple[MediaSession, socket.socket],
) -> None:
    """A gateway that leaves the tone in the audio and also sends the event: one press,
    here after an in-band '1' and before an in-band '3' (de-duplication and order)."""
    media, caller = call
    pcm = np.concatenate(
        [
            silence(LEAD),
            tone("1", 80),
            silence(8 * 60),
            tone("2", 100),  # starts at LEAD + 1120 = frame 12
            silence(8 * 60),
            tone("3", 80),
            silence(4000),
        ]
    )
    s = Stream(pcm)
    s.event("2", (LEAD + 8 * 140) // FRAME, 5, replace_audio=False)
    assert await received(media, caller, s.packets()) == "123"


async def test_rfc4733_only_keys_are_all_reported(
    call: tuple[MediaSession, socket.socket],
) -> None:
    media, caller = call
    s = Stream(silence(LEAD + 8000))
    for k, digit in enumerate("4567"):
        s.event(digit, 5 + 10 * k, 5, replace_audio=True)
    assert await received(media, caller, s.packets()) == "4567"
    assert all(d.source == "rfc4733" for d in media.received_digits)


def noisy(pcm: np.ndarray, dbm0: float = -35.0) -> np.ndarray:
    """``pcm`` over white noise (a line that is not silent: no shortcut for quiet audio)."""
    rng = np.random.default_rng(4733)
    noise = rng.normal(0.0, np.sqrt(dbm0_to_power(dbm0)), len(pcm))
    return np.clip(pcm + noise, -32768, 32767).astype(np.int16)


@pytest.mark.parametrize("replace_audio", [True, False], ids=["events-only", "audio-under"])
async def test_keys_both_ways_over_a_noisy_line_stay_in_order(
    call: tuple[MediaSession, socket.socket], replace_audio: bool
) -> None:
    """Noise too loud to tell there is no tone without analysing it: events wait for
    the detector (or the bound), and still come out in order."""
    media, caller = call
    pcm = np.concatenate(
        [silence(LEAD), tone("1", 80), silence(8 * 40 + 8 * 140 + 8 * 60), tone("3", 80)]
    )
    s = Stream(noisy(np.concatenate([pcm, silence(4000)])))
    s.event("2", (LEAD + 8 * 120) // FRAME, 5, replace_audio)  # 40 ms after '1'
    s.event("4", (LEAD + 8 * (120 + 140 + 60 + 80 + 60)) // FRAME, 5, replace_audio)
    assert await received(media, caller, s.packets()) == "1234"


# -- the sans-I/O parts --------------------------------------------------------------


def p(digit: str, source: str = "rfc4733") -> Press:
    return Press(digit, "rfc4733" if source == "rfc4733" else "inband", 100.0)


def test_order_holds_an_event_until_the_detector_passed_its_start_and_settle() -> None:
    order = DigitOrder()
    order.fed(0, 1600, TS0 + 1600)  # detector samples 0-1600 are RTP TS0 … TS0+1600
    assert order.event(p("2"), TS0 + 1200, now=0.0) == []
    assert order.holding
    assert order.analysed(1200 + SETTLE - 1) == []
    # a tone heard from sample 400 on started before the event: it goes first
    assert order.inband(p("1", "inband"), 400, now=0.0) == [p("1", "inband")]
    assert order.analysed(1200 + SETTLE) == [p("2")]
    assert not order.holding


def test_order_a_tone_reported_later_but_started_later_lets_the_event_go_first() -> None:
    order = DigitOrder()
    order.fed(0, 800, TS0 + 800)
    assert order.event(p("2"), TS0 + 160, now=0.0) == []
    assert order.inband(p("1", "inband"), 640, now=0.0) == [p("2"), p("1", "inband")]


def test_order_maps_detector_samples_across_pause_silence_and_timestamp_gaps() -> None:
    order = DigitOrder()
    order.fed(0, 800, TS0 + 800)
    # 400 samples of silence for an arrival pause (no RTP time), then audio that the
    # timestamps put 1600 after the first run (a gap the sender meant)
    order.fed(1200, 2000, TS0 + 3200)
    assert order.event(p("2"), TS0 + 2400, now=0.0) == []
    # sample 1000 is pause silence: the tone starts with the next run, at TS0 + 2400
    assert order.inband(p("1", "inband"), 1000, now=0.0) == [p("1", "inband")]
    assert order.holding
    assert order.inband(p("3", "inband"), 1300, now=0.0) == [p("2"), p("3", "inband")]


def test_order_is_bounded_and_keeps_events_in_their_own_order() -> None:
    order = DigitOrder(max_hold=0.12)
    order.fed(0, 800, TS0 + 800)
    assert order.event(p("5"), TS0 + 480, now=1.00) == []
    assert order.event(p("4"), TS0 + 320, now=1.05) == []  # earlier start, later end
    assert order.poll(1.11) == []
    assert order.poll(1.12) == [p("4"), p("5")]
    assert order.released_by_bound == 1


def test_order_an_event_past_its_bound_goes_before_a_later_tone() -> None:
    """Ticks that come late (a loaded process) must not let a tone overtake an event
    that has waited its time, whatever the timestamps say."""
    order = DigitOrder(max_hold=0.12)
    order.fed(0, 800, TS0 + 800)
    assert order.event(p("4"), TS0 + 8000, now=1.0) == []  # far ahead of the audio
    assert order.inband(p("5", "inband"), 400, now=1.05) == [p("5", "inband")]
    assert order.event(p("6"), TS0 + 8000 + 1600, now=1.1) == []
    assert order.inband(p("7", "inband"), 600, now=1.2) == [p("4"), p("7", "inband")]


def test_order_lets_go_once_all_received_audio_is_analysed() -> None:
    """A stream whose audio stopped: pause silence analysed past the last audio."""
    order = DigitOrder()
    order.fed(0, 800, TS0 + 800)
    assert order.event(p("7"), TS0 + 1600, now=0.0) == []
    assert order.analysed(800 + SETTLE - 1) == []
    assert order.analysed(800 + SETTLE) == [p("7")]


@pytest.mark.parametrize("ts", [TS0 - 90_000, TS0 + 2**31, 12345])
def test_order_does_not_hold_an_event_on_another_clock(ts: int) -> None:
    order = DigitOrder()
    order.fed(0, 800, TS0 + 800)
    assert order.event(p("9"), ts % 2**32, now=0.0) == [p("9")]


def test_order_without_audio_holds_nothing() -> None:
    assert DigitOrder().event(p("9"), 5, now=0.0) == [p("9")]


def test_order_extends_timestamps_across_the_wrap() -> None:
    order = DigitOrder()
    top = 2**32 - 400
    order.fed(0, 800, top + 800)  # the audio's extended clock runs past 2**32
    assert order.event(p("2"), 200, now=0.0) == []  # 32-bit 200 is top + 600
    assert order.analysed(600 + SETTLE - 1) == []
    assert order.analysed(600 + SETTLE) == [p("2")]


def test_order_quiet_audio_lets_events_go_up_to_where_the_stream_is_complete() -> None:
    order = DigitOrder()
    order.fed(0, 800, TS0 + 800)
    assert order.event(p("2"), TS0 + 800, now=0.0) == []
    assert order.event(p("3"), TS0 + 2400, now=0.0) == []
    # audio complete up to TS0 + 800: '2' cannot follow a tone any more, '3' still can
    assert order.quiet(TS0 + 800) == [p("2")]
    assert order.quiet(TS0 + 2400) == [p("3")]


def test_pool_tells_how_far_it_analysed_and_whether_a_press_can_come() -> None:
    pool = DetectorPool(bank_size=2, batch=800)
    events: list[DtmfEvent] = []
    slot = pool.attach(events.append)
    seen: list[int] = []
    pool.on_progress(slot, seen.append)
    pool.push(slot, np.zeros(400, np.int16))
    assert pool.quiet(slot)
    pool.push(slot, tone("1", 50)[:400])  # a tone waits for analysis
    assert not pool.quiet(slot)
    pool.run()
    assert pool.analysed(slot) == 800 and seen == [800]
    assert not pool.quiet(slot)  # the detector is timing the press
    pool.on_progress(slot, None)
    pool.push(slot, np.zeros(800, np.int16))
    pool.run()
    assert [e.digit for e in events] == ["1"] and seen == [800]
    assert pool.quiet(slot)


def test_detector_quiet_and_analysed() -> None:
    det = DtmfDetector()
    det.feed(np.zeros(160, np.int16))
    assert det.quiet and det.fed == 160 and det.analysed == 0
    det.feed(tone("5", 60))  # waits for the 100 ms batch: loud, not analysed yet
    assert not det.quiet and det.fed == 640 and det.analysed == 0
    det.feed(np.zeros(160, np.int16))  # the batch is full: analysed, the press under way
    assert not det.quiet and det.fed == det.analysed == 800
