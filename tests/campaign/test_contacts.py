"""CSV import: malformed rows reported and skipped, E.164, time zones, dedupe."""

from __future__ import annotations

from pathlib import Path

import pytest

from autocall.campaign.contacts import ContactsError, import_campaign, read_contacts
from autocall.campaign.model import ContactColumns, load_campaign
from autocall.campaign.store import Store

CSV = """\
Mobile,Name,Zone,Plan
(202) 555-0143,Ada,,gold
+44 20 7946 0958,Tim,,silver
312-555-0119,Edsger,America/Denver,gold
202.555.0143,Ada again,,gold
hello,Bad,,gold
555-0100,Short,,gold
+1 646 555 0161,Barbara,Mars/Base,gold
+1 617 555 0175,Donald,,gold,extra

"unterminated,x,,gold
"""


def test_rows_normalised_rejected_and_deduped(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text(CSV, encoding="utf-8")
    cols = ContactColumns(phone="Mobile", timezone="Zone")
    result = read_contacts(path, region="US", columns=cols, default_timezone="UTC")
    numbers = [c.number for c in result.contacts]
    assert numbers == ["+12025550143", "+442079460958", "+13125550119"]
    assert result.contacts[0].timezones == ("America/New_York",)
    assert result.contacts[1].timezones == ("Europe/London",)
    assert result.contacts[2].timezones == ("America/Denver",)  # the column wins
    assert result.contacts[0].fields["Name"] == "Ada"
    assert result.duplicates == 1
    rejected = {r.row: r.reason for r in result.rejected}
    assert sorted(rejected) == [6, 7, 8, 9, 11]
    assert "not a number" in rejected[6]
    assert "not a valid number" in rejected[7]
    assert "Mars/Base" in rejected[8]
    assert "5 fields" in rejected[9]


def test_missing_phone_column_names_the_headers(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text("tel,name\n+12025550143,Ada\n", encoding="utf-8")
    with pytest.raises(ContactsError) as info:
        read_contacts(path)
    assert f"{path}:1" in str(info.value) and "tel, name" in str(info.value)


def test_ambiguous_zone_keeps_every_candidate(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text("phone\n+1 907 555 0158\n", encoding="utf-8")
    (contact,) = read_contacts(path).contacts
    assert set(contact.timezones) == {"America/Anchorage", "America/Adak"}


def test_import_dedupes_across_files_and_reimports(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("phone\n2025550143\n2025550144\n", encoding="utf-8")
    (tmp_path / "b.csv").write_text("phone\n+12025550144\n2025550145\n", encoding="utf-8")
    yaml = tmp_path / "c.yaml"
    yaml.write_text("name: two-lists\ntree: t.yaml\ncontacts: [a.csv, b.csv]\n"
                    "caller_ids: ['+12025550100']\n", encoding="utf-8")
    campaign = load_campaign(yaml)
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    first = import_campaign(store, campaign)
    assert (first.added, first.duplicates) == (3, 1)
    again = import_campaign(store, campaign)
    assert (again.added, again.duplicates) == (0, 4)
    assert len(store.contacts("two-lists")) == 3
