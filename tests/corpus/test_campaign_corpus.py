"""Issue 13, campaign side: every campaign YAML, contact list, DNC file and audio file of
the corpus, however broken, gets a clear located answer from every command that reads it
(no traceback, no run over 5 s or 500 MB, every finding ``file:line(:col)``, and the
findings ``EXPECTED.yaml`` names). The harness is h6's ``harness.py``."""

from __future__ import annotations

from pathlib import Path

import pytest

from .harness import Runner, check_folder, corpus_files, load_expected

HERE = Path(__file__).resolve().parent
FOLDERS = [HERE / "campaigns", HERE / "contacts", HERE / "dnc", HERE / "audio"]


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_campaign_corpus_folder(folder: Path, runner: Runner) -> None:
    failures = check_folder(folder, runner)
    assert not failures, "\n".join(failures)


def test_campaign_corpus_is_large_and_every_file_expects_something() -> None:
    total = 0
    for folder in FOLDERS:
        _, specs = load_expected(folder)
        files = corpus_files(folder)
        total += len(files)
        for path in files:
            spec = specs[path.name]
            assert spec.expect or spec.clean, path
    assert total >= 60
