"""`autocall serve` refusing and cutting calls honestly (issue 12, small wrong answers).

Callers over ``--max-calls`` get 503 without a 180 Ringing first; a call refused with 488
(no common codec) is recorded as failed; a call cut by the drain timeout is recorded as
canceled, not completed.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.peers import SCENARIOS, Sipp
from tests.telephony.serving import hold_or_refused, records, serve

pytestmark = [pytest.mark.peers, pytest.mark.timeout(90)]

BASE = 42300  # h3's range: 42000-42999


def _strict(tmp: Path, code: int, codec: tuple[int, str] = (0, "PCMU")) -> Path:
    text = (SCENARIOS / "uac_refused_strict.xml").read_text()
    text = text.replace("[code]", str(code)).replace("[codec_pt]", str(codec[0]))
    path = tmp / f"uac_refused_{code}.xml"
    path.write_text(text.replace("[codec]", codec[1]))
    return path


def test_caller_over_the_limit_gets_503_without_ringing(tmp_path: Path) -> None:
    with serve(tmp_path, BASE, "--max-calls", "1"):
        holder = Sipp(
            hold_or_refused(tmp_path, 3000),
            port=BASE + 1,
            media_port=BASE + 2,
            remote=f"127.0.0.1:{BASE}",
            service="frontdesk",
            timeout=20,
        )
        with holder:
            time.sleep(1.0)  # the holder is answered and on the line
            late = Sipp(
                _strict(tmp_path, 503),
                port=BASE + 10,
                media_port=BASE + 12,
                remote=f"127.0.0.1:{BASE}",
                service="frontdesk",
                timeout=10,
            )
            with late:
                assert late.wait(10) == 0, late.errors()  # 503 came, no 180 before it
            assert holder.wait(15) == 0, holder.errors()
        time.sleep(0.3)
    refused = [r for r in records(tmp_path) if r["sip_code"] == 503]
    assert len(refused) == 1 and refused[0]["status"] == "failed"


def test_no_common_codec_is_recorded_as_failed_488(tmp_path: Path) -> None:
    with serve(tmp_path, BASE + 20):
        caller = Sipp(
            _strict(tmp_path, 488, (18, "G729")),
            port=BASE + 21,
            media_port=BASE + 22,
            remote=f"127.0.0.1:{BASE + 20}",
            service="frontdesk",
            timeout=10,
        )
        with caller:
            assert caller.wait(10) == 0, caller.errors()
        time.sleep(0.5)
    (row,) = records(tmp_path)
    assert row["sip_code"] == 488 and row["status"] == "failed", row
    assert row["answered_at"] is None


def test_call_cut_by_the_drain_timeout_is_recorded_canceled(tmp_path: Path) -> None:
    with serve(tmp_path, BASE + 30, "--drain-timeout", "1") as proc:
        caller = Sipp(
            hold_or_refused(tmp_path, 8000),
            port=BASE + 31,
            media_port=BASE + 32,
            remote=f"127.0.0.1:{BASE + 30}",
            service="frontdesk",
            timeout=20,
        )
        with caller:
            time.sleep(1.5)  # answered, the tree is waiting for a key
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) == 0
    (row,) = records(tmp_path)
    assert row["answered_at"] is not None
    assert row["status"] == "canceled", row
    assert "drain" in (row["error"] or ""), row
