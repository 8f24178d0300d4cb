"""The impairment relay itself: each profile does what it says, from its seed alone."""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import replace

import pytest

from tests.impair import PROFILES, Impairer, MediaRelay, Profile, RelayLoop, judge, profile

PTIME = 0.020


def rtp(seq: int, ssrc: int = 0x1234, pt: int = 0) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, seq & 0xFFFF, (seq * 160) & 0xFFFFFFFF, ssrc) + bytes(
        160
    )


def header(data: bytes) -> tuple[int, int, int]:
    """(sequence, timestamp, SSRC) of an RTP packet."""
    _, _, seq, ts, ssrc = struct.unpack("!BBHII", data[:12])
    return seq, ts, ssrc


def run(
    profile: str | Profile, n: int, seed: int = 7
) -> tuple[list[tuple[float, bytes]], Impairer]:
    """``n`` packets sent every 20 ms through a profile; (release time, packet) in order."""
    imp = Impairer(PROFILES[profile] if isinstance(profile, str) else profile, seed)
    out: list[tuple[float, bytes]] = []
    for i in range(n):
        now = 100.0 + i * PTIME
        while (when := imp.next_due()) is not None and when <= now:
            out += [(when, p) for p in imp.due(when)]
        imp.push(rtp(i), now)
    while (when := imp.next_due()) is not None:
        out += [(when, p) for p in imp.due(when)]
    return out, imp


def seqs(out: list[tuple[float, bytes]], ssrc: int = 0x1234) -> list[int]:
    return [header(p)[0] for _, p in out if header(p)[2] == ssrc]


@pytest.mark.parametrize("profile", list(PROFILES))
def test_the_same_seed_gives_the_same_stream(profile: str) -> None:
    assert run(profile, 1500, seed=3)[0] == run(profile, 1500, seed=3)[0]


def test_another_seed_gives_another_stream() -> None:
    assert run("jitter", 500, seed=1)[0] != run("jitter", 500, seed=2)[0]


def test_clean_passes_everything_at_once_in_order() -> None:
    out, imp = run("clean", 500)
    assert seqs(out) == list(range(500))
    assert all(when == pytest.approx(100.0 + i * PTIME) for i, (when, _) in enumerate(out))
    assert imp.stats.forwarded == imp.stats.received == 500


@pytest.mark.parametrize(("profile", "hold"), [("spike80", 0.080), ("spike150", 0.150)])
def test_spikes_hold_then_release_at_once_losing_and_reordering_nothing(
    profile: str, hold: float
) -> None:
    out, imp = run(profile, 3000)  # 60 s
    assert seqs(out) == list(range(3000))  # none lost, none reordered
    delays = [when - (100.0 + header(p)[0] * PTIME) for when, p in out]
    assert max(delays) == pytest.approx(hold, abs=0.001)
    releases: dict[float, int] = {}
    for when, _ in out:
        releases[round(when, 6)] = releases.get(round(when, 6), 0) + 1
    bursts = [n for n in releases.values() if n > 1]
    # a hold every 2.4-3.6 s: 17-25 of them in 60 s, each letting out hold/20 ms packets
    assert 16 <= len(bursts) <= 25
    full = (int(hold / PTIME + 1e-9), int(hold / PTIME + 1e-9) + 1)
    assert all(n in full for n in bursts[:-1]) and bursts[-1] <= full[1]  # the last: cut short
    assert imp.stats.held == sum(bursts) and imp.stats.dropped == 0


def test_the_first_spike_can_be_aimed() -> None:
    out, imp = run(replace(PROFILES["spike150"], first_spike_s=(2.0, 2.1)), 200)
    held = [header(p)[0] * PTIME for when, p in out if when > 100.0 + header(p)[0] * PTIME]
    assert 2.0 <= held[0] <= 2.12 and len(held) == imp.stats.held in (7, 8)
    assert seqs(out) == list(range(200))


def test_jitter_delays_up_to_40_ms_and_reorders() -> None:
    out, _ = run("jitter", 3000)
    got = seqs(out)
    assert sorted(got) == list(range(3000))
    assert sum(1 for a, b in zip(got, got[1:], strict=False) if b < a) > 300  # reordered
    delays = [when - (100.0 + header(p)[0] * PTIME) for when, p in out]
    assert 0.0 <= min(delays) < 0.002 and 0.038 < max(delays) <= 0.040


def test_random_loss_is_about_one_percent_and_isolated() -> None:
    out, imp = run("loss1", 20000)
    assert 150 <= imp.stats.dropped <= 250
    assert len(seqs(out)) == 20000 - imp.stats.dropped
    assert seqs(out) == sorted(seqs(out))


def test_bursty_loss_comes_in_runs() -> None:
    out, imp = run("burst", 20000)
    missing = sorted(set(range(20000)) - set(seqs(out)))
    runs = 1 + sum(1 for a, b in zip(missing, missing[1:], strict=False) if b != a + 1)
    assert 0.01 <= len(missing) / 20000 <= 0.025
    assert len(missing) / runs > 2.5  # mean burst 1/0.3 packets
    assert imp.stats.dropped == len(missing)


def test_duplicates_are_about_two_percent_and_nothing_is_lost() -> None:
    out, imp = run("dup2", 20000)
    got = seqs(out)
    assert set(got) == set(range(20000))
    assert len(got) - 20000 == imp.stats.duplicated
    assert 300 <= imp.stats.duplicated <= 500


def test_the_stray_stream_is_another_ssrc_sequence_and_timestamp_space() -> None:
    out, imp = run("stray", 1000)
    assert seqs(out) == list(range(1000))
    stray = [header(p) for _, p in out if header(p)[2] != 0x1234]
    assert len(stray) == imp.stats.stray == 1000
    (ssrc,) = {s for _, _, s in stray}
    steps = {
        ((b[0] - a[0]) & 0xFFFF, (b[1] - a[1]) & 0xFFFFFFFF)
        for a, b in zip(stray, stray[1:], strict=False)
    }
    assert steps == {(1, 160)}
    # interleaved one for one, each right behind a real packet
    kinds = [header(p)[2] == ssrc for _, p in out]
    assert kinds[:6] == [False, True, False, True, False, True]


def test_a_previous_calls_tail_comes_first_then_interleaves() -> None:
    out, imp = run("tail", 100)
    kinds = [header(p)[2] == 0x1234 for _, p in out]
    assert kinds[:8] == [False] * 5 + [True, False, True]
    assert imp.stats.stray == 105 and seqs(out) == list(range(100))


def test_carrier_mix_loses_little_and_delays_at_most_spike_plus_jitter() -> None:
    out, imp = run("carrier", 6000)
    assert 0 < imp.stats.dropped <= 40 and imp.stats.held > 0 and imp.stats.duplicated > 0
    delays = [when - (100.0 + header(p)[0] * PTIME) for when, p in out]
    assert max(delays) <= 0.100 + 0.020 + PTIME + 1e-9


def test_profiles_compose_with_a_plus() -> None:
    both = profile("stray+jitter")
    assert both.stray and both.jitter_ms == 40 and both.name == "stray+jitter"
    assert profile("spike150") == PROFILES["spike150"]
    assert profile("carrier+spike80").spike_ms == 80  # the later part wins
    with pytest.raises(KeyError, match="unknown profile 'netem'"):
        profile("stray+netem")
    out, imp = run(both, 500)
    assert sorted(seqs(out)) == list(range(500)) and imp.stats.stray == 500


def test_judge_tells_exact_short_and_wrong() -> None:
    assert judge("12345678", "12345678") == "exact"
    assert judge("12345678", "1234") == "short"
    assert judge("12345678", "1234578") == "short"
    assert judge("12345678", "") == "short"
    assert judge("12345678", "12345667") == "wrong"
    assert judge("12345678", "123456678") == "wrong"
    assert judge("12345678", "1243") == "wrong"


def test_relay_forwards_impaired_over_real_sockets_and_returns_the_reply() -> None:
    """A raw UDP sender, the relay on 41990, a receiver on 41991; the receiver answers."""
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 41992))
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 41991))
    receiver.settimeout(5)
    peer.settimeout(5)
    with RelayLoop().running() as loop:
        relay = loop.call(
            lambda: MediaRelay.open(
                "127.0.0.1", 41990, ("127.0.0.1", 41991), Impairer(PROFILES["stray"], 1)
            )
        )
        try:
            for i in range(20):
                peer.sendto(rtp(i), ("127.0.0.1", 41990))
                time.sleep(0.002)  # a pace, not a timing assertion
            got = [receiver.recvfrom(2048) for _ in range(40)]
            assert {addr for _, addr in got} == {("127.0.0.1", 41990)}  # one source address
            assert seqs([(0.0, data) for data, _ in got]) == list(range(20))
            assert len({header(data)[2] for data, _ in got}) == 2
            receiver.sendto(b"reply", ("127.0.0.1", 41990))
            assert peer.recvfrom(2048) == (b"reply", ("127.0.0.1", 41990))
        finally:
            loop.loop.call_soon_threadsafe(relay.close)
            peer.close()
            receiver.close()
