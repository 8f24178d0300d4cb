"""Every digit exactly as pressed, with the callers' RTP impaired on the way (issue 22).

SIPp callers press RFC 4733 "1234" (Debian's pcaps), then in-band "5678" (our own tones,
streamed), into `autocall serve` running a tree that gathers 8 digits. Between them a
seeded relay (tests/impair.py) delays, holds, reorders, drops, duplicates or adds a
stray stream to what the callers send. The stored codes must be exactly what was sent:
for the profiles that lose no packet, every call; with loss, no code may be wrong (a digit
may go missing only with its packets).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.impair import PROFILES, ImpairStats
from tests.telephony.impaired import (
    CODE_TREE,
    aimed,
    callees,
    callers,
    campaign_run,
    campaign_tally,
    impaired_front,
    tally,
    write_campaign,
)
from tests.telephony.serving import records, serve

pytestmark = [pytest.mark.peers, pytest.mark.timeout(150)]

CALLS = 20
RATE = 5  # calls/s: about 20 at once, each ~3.5 s
CAMPAIGN_CALLS = 10
CAMPAIGN_RATE = 2.0


def impaired(name: str, stats: ImpairStats) -> None:
    """The relay did to the calls what the profile says (no test passes on a no-op)."""
    p = PROFILES[name]
    assert (stats.held >= CALLS) == (p.spike_ms > 0)  # holds happened, aimed at the tones
    assert (stats.dropped > 0) == (not p.lossless)
    assert (stats.duplicated > 0) == (p.duplicate > 0)
    assert (stats.stray >= stats.received) == p.stray


@pytest.mark.parametrize("profile", list(PROFILES))
def test_stored_codes_are_what_the_callers_sent(
    tmp_path: Path, profile: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    i = list(PROFILES).index(profile)
    base = 41000 + 20 * i  # this helper's ports: 41000-41999
    relays = range(41400 + 25 * i, 41425 + 25 * i)  # up to 41649
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
    impaired(profile, proxy.stats)
    assert result.wrong == 0, result
    if PROFILES[profile].lossless:
        assert result.exact == CALLS, result


@pytest.mark.parametrize("profile", ["clean", "spike150", "stray"])
def test_a_campaigns_stored_codes_are_what_the_callees_sent(
    tmp_path: Path, profile: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dialer's side: `autocall campaign run` calls SIPp callees that press the code,
    their RTP impaired on its way to the dialer (the proxy rewrites the INVITE's offer)."""
    base = 41240 + 20 * ["clean", "spike150", "stray"].index(profile)
    monkeypatch.setenv("AUTOCALL_RTP_PORTS", "41700-41989")
    monkeypatch.setenv("AUTOCALL_RTP_QUARANTINE", "2")
    name = f"impaired-{profile}"
    path = write_campaign(tmp_path, name, CAMPAIGN_CALLS, CAMPAIGN_RATE)
    db = f"sqlite:///{tmp_path / 'campaign.db'}"
    callee = callees(tmp_path, port=base + 2, media_port=base + 4, calls=CAMPAIGN_CALLS, timeout=60)
    with (
        callee,
        impaired_front(
            ("127.0.0.1", base),
            ("127.0.0.1", base + 2),
            aimed(profile),
            seed=22,
            media_ports=range(41650, 41700),
            rewrite="requests",
        ) as proxy,
    ):
        proc = campaign_run(tmp_path, path, db, proxy_port=base, bind_port=base + 12)
        try:
            assert proc.wait(60) == 0, (tmp_path / "campaign.log").read_text()[-2000:]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    attempts, result = campaign_tally(db, name)
    print(f"campaign {profile}: {result}; relay {proxy.stats}")
    assert attempts == CAMPAIGN_CALLS and result.calls == CAMPAIGN_CALLS, result
    assert proxy.calls == CAMPAIGN_CALLS
    assert (proxy.stats.held >= CAMPAIGN_CALLS) == (profile == "spike150")
    assert (proxy.stats.stray == proxy.stats.received) == (profile == "stray")
    assert result.exact == CAMPAIGN_CALLS, result
