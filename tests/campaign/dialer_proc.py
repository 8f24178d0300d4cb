"""A dialer process for the SIGKILL and two-node tests (run as a script).

usage: dialer_proc.py DB_URL CAMPAIGN_NAME NODE DIAL_LOG SCRIPTS_JSON TALK_SECONDS [--no-start]
(NODE ``-``: the default node name, as ``campaign run`` without --node)
Prints ``READY`` once started and ``DONE attempt_id outcome`` after each committed record.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from farend import ScriptedFarEnd  # noqa: E402

from autocall.campaign.dialer import Finished, run_campaign  # noqa: E402


def main() -> None:
    url, name, node, log, scripts, talk = sys.argv[1:7]
    start = "--no-start" not in sys.argv
    far = ScriptedFarEnd(json.loads(scripts), talk=float(talk), log=log)

    def record(f: Finished) -> None:
        print(f"DONE {f.attempt_id} {f.outcome.value}", flush=True)

    print("READY", flush=True)
    asyncio.run(run_campaign(name, url, far, node=None if node == "-" else node,
                             on_record=record, start=start, poll=0.05))


if __name__ == "__main__":
    main()
