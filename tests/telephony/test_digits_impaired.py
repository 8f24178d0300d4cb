"""Every digit exactly as pressed, with the callers' RTP impaired on the way (issue 22).

SIPp callers press RFC 4733 "1234" (Debian's pcaps), then in-band "5678" (our own tones,
streamed), into `autocall serve` running a tree that gathers 8 digits. Between them a
seeded relay (tests/impair.py) delays, holds, reorders, drops, duplicates or adds a
stray stream to what the callers send. The stored codes must be exactly what was sent:
for the profiles that lose no packet, every call; with loss, no code may be wrong (a digit
may go missing only with its packets).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from tests.impair import PROFILES, Profile
from tests.telephony.impaired import CODE_TREE, callers, impaired_front, tally
from tests.telephony.serving import records, serve

pytestmark = [pytest.mark.peers, pytest.mark.timeout(150)]

CALLS = 20
RATE = 5  # calls/s: about 20 at once, each ~3.5 s
# the in-band digits play 2.0-2.8 s into each caller's stream (impaired.code_audio): a hold
# every ~3 s would miss them in most calls, so each call's first hold is aimed there
IN_BAND = (1.9, 2.8)


def aimed(name: str) -> Profile:
    profile = PROFILES[name]
    return replace(profile, first_spike_s=IN_BAND) if profile.spike_ms else profile


@pytest.mark.parametrize("profile", list(PROFILES))
def test_stored_codes_are_what_the_callers_sent(
    tmp_path: Path, profile: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    i = list(PROFILES).index(profile)
    base = 41000 + 20 * i  # this helper's ports: 41000-41999
    relays = range(41400 + 30 * i, 41430 + 30 * i)
    # serve's own RTP ports from this range too (ignored by a serve that has no pool)
    monkeypatch.setenv("AUTOCALL_RTP_PORTS", "41700-41989")
    monkeypatch.setenv("AUTOCALL_RTP_QUARANTINE", "2")
    with (
        serve(tmp_path, base, "--max-calls", "100", tree=CODE_TREE) as proc,
        impaired_front(
            ("127.0.0.1", base + 1),
            ("127.0.0.1", base),
            aimed(profile),
            seed=22,
            media_ports=relays,
        ) as proxy,
    ):
        caller = callers(
            tmp_path,
            proxy_port=base + 1,
            port=base + 2,
            media_port=base + 4,
            calls=CALLS,
            rate=RATE,
        )
        with caller:
            assert caller.wait(90) == 0, caller.errors()
        assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-2000:]
    rows = records(tmp_path)
    result = tally(rows)
    print(f"{profile}: {result}; relay {proxy.stats}")
    assert len(rows) == CALLS and result.calls == CALLS, (tmp_path / "serve.log").read_text()
    assert proxy.calls == CALLS and proxy.stats.received > 0
    assert result.wrong == 0, result
    if PROFILES[profile].lossless:
        assert result.exact == CALLS, result
