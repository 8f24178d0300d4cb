"""A dialer process placing real SIP calls (our UA + SipPlacer) for the SIGKILL test.

usage: sip_dialer_proc.py DB_URL CAMPAIGN_NAME NODE BIND_PORT TARGET_URI
Prints ``READY`` once the UA is bound and ``DONE attempt_id outcome`` after each
committed record.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from autocall.campaign.dialer import Finished, run_campaign
from autocall.campaign.placer import SipPlacer
from autocall.telephony.call import UserAgent


async def main() -> None:
    url, name, node, port, target = sys.argv[1:6]
    ua = await UserAgent.start(bind_host="127.0.0.1", bind_port=int(port))
    work = Path(url.removeprefix("sqlite:///")).parent

    def record(f: Finished) -> None:
        print(f"DONE {f.attempt_id} {f.outcome.value}", flush=True)

    try:
        placer = SipPlacer(ua, target=target, tts_cache_dir=work / "tts",
                           recordings_dir=work / "rec")
        print("READY", flush=True)
        await run_campaign(name, url, placer, node=node, on_record=record, poll=0.05)
    finally:
        await ua.close()


if __name__ == "__main__":
    asyncio.run(main())
