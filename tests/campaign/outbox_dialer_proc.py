"""A dialer process that also delivers its campaign's webhooks (as ``campaign run`` does),
with a fast retry policy; for the outbox's SIGKILL test.

usage: outbox_dialer_proc.py DB_URL CAMPAIGN_NAME NODE DIAL_LOG SCRIPTS_JSON TALK_SECONDS
(NODE ``-``: the default node name, as ``campaign run`` without --node)
Prints ``READY`` and ``DONE attempt_id outcome`` like dialer_proc.py.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from farend import ScriptedFarEnd  # noqa: E402

from autocall.campaign import outbox  # noqa: E402
from autocall.campaign.dialer import Finished, default_node, run_campaign  # noqa: E402
from autocall.campaign.store import Store  # noqa: E402

FAST = outbox.Policy(first=timedelta(seconds=0.05), cap=timedelta(seconds=0.5), timeout=2.0,
                     lease=timedelta(seconds=3))


def main() -> None:
    url, name, node, log, scripts, talk = sys.argv[1:7]
    node = default_node() if node == "-" else node  # host:pid: a restart sees it gone
    far = ScriptedFarEnd(json.loads(scripts), talk=float(talk), log=log)

    def record(f: Finished) -> None:
        print(f"DONE {f.attempt_id} {f.outcome.value}", flush=True)

    async def run() -> None:
        store = Store(url)
        dialing = run_campaign(name, store, far, node=node, on_record=record, poll=0.05)
        await outbox.alongside(store.engine, node, dialing, grace=20.0, policy=FAST)

    print("READY", flush=True)
    asyncio.run(run())


if __name__ == "__main__":
    main()
