"""Media priority: what raise_priority reports is what the kernel applied."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from autocall.process import raise_priority

_PROBE = """
import json, os, sys
from autocall.process import raise_priority
applied = raise_priority(sys.argv[1])
print(json.dumps({"applied": applied, "policy": os.sched_getscheduler(0), "nice": os.nice(0)}))
"""


def _probe(wanted: str) -> dict[str, object]:
    cmd = [sys.executable, "-c", _PROBE, wanted]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_unknown_priority_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="normal, high, realtime"):
        raise_priority("urgent")


def test_normal_changes_nothing() -> None:
    res = _probe("normal")
    assert res == {"applied": "normal", "policy": os.SCHED_OTHER, "nice": os.nice(0)}


def test_realtime_is_applied_or_the_fallback_is_reported() -> None:
    res = _probe("realtime")
    if res["applied"] == "realtime":
        assert res["policy"] == os.SCHED_RR
    elif res["applied"] == "high":  # no CAP_SYS_NICE for SCHED_RR, but nice was allowed
        assert res["policy"] == os.SCHED_OTHER and res["nice"] == -10
    else:
        assert res == {"applied": "normal", "policy": os.SCHED_OTHER, "nice": os.nice(0)}
    if os.geteuid() == 0:
        assert res["applied"] == "realtime"  # root may always ask for SCHED_RR


def test_high_lowers_the_nice_value_when_allowed() -> None:
    res = _probe("high")
    assert res["policy"] == os.SCHED_OTHER
    if res["applied"] == "high":
        assert res["nice"] == min(-10, os.nice(0))
    else:
        assert os.geteuid() != 0


def test_cli_flag_applies_before_the_command_runs() -> None:
    code = (
        "import os, sys; from autocall.cli import app; "
        "sys.argv=['autocall','--priority','high','sip','--help']; "
        "import contextlib\n"
        "with contextlib.suppress(SystemExit): app()\n"
        "print('NICE', os.nice(0))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    nice = int(out.stdout.strip().splitlines()[-1].split()[1])
    assert nice == (-10 if os.geteuid() == 0 else os.nice(0))
