"""One-contact campaigns for tests that dial a real peer through ``AUTOCALL_SIP_*``."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo


def _open_zone(now: dt.datetime) -> str:
    """A zone where it is between 10:00 and 19:00 now (the window below is 09-20)."""
    zones = [
        "America/New_York",
        "America/Los_Angeles",
        "Pacific/Honolulu",
        "Europe/London",
        "Europe/Berlin",
        "Asia/Kolkata",
        "Asia/Tokyo",
        "Australia/Sydney",
        "Pacific/Auckland",
        "America/Sao_Paulo",
        "Asia/Singapore",
        "Asia/Dubai",
    ]
    return next(z for z in zones if 10 <= now.astimezone(ZoneInfo(z)).hour < 19)


def write_campaign(
    folder: Path,
    name: str,
    tree: str,
    fields: dict[str, str],
    *,
    attempts: int = 1,
    recording: bool = False,
) -> Path:
    """A one-contact campaign dialed now through the trunk in ``AUTOCALL_SIP_*``."""
    (folder / "tree.yaml").write_text(tree)
    with (folder / "contacts.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["phone", "timezone", *fields])
        writer.writerow(["+12025550111", _open_zone(dt.datetime.now(dt.UTC)), *fields.values()])
    path = folder / "campaign.yaml"
    path.write_text(f"""\
name: {name}
tree: tree.yaml
contacts: [contacts.csv]
columns: {{phone: phone, timezone: timezone}}
default_region: US
caller_ids: ["+12025550100"]
window:
  days: [mon, tue, wed, thu, fri, sat, sun]
  start: "09:00"
  end: "20:00"
channels: 1
calls_per_second: 5
ring_timeout: 5
retry:
  max_attempts: {attempts}
  delays: {{failed: 1s}}
recording: {"true" if recording else "false"}
""")
    return path
