"""The render cache: where a rendered prompt lives and how it is stored.

One file per prompt and engine: ``<prompt key>.<engine>.<version key>.wav``. The
prompt key hashes the normalised text, the language and the voice; the version key
hashes the engine's version, so an engine upgrade renders again. Entries are written
atomically (temporary file + ``os.replace``), so a reader or a crash never meets a
partial entry; storing a render removes the prompt's entries by the engines after it in
its order, which is how a better engine's render replaces a fallback one.
"""

from __future__ import annotations

import hashlib
import time
import unicodedata
from collections.abc import Collection
from pathlib import Path

from autocall.audio.convert import write_atomic

__all__ = [
    "clean_stale_temps",
    "engine_of",
    "entries",
    "entry_path",
    "normalise_text",
    "prompt_key",
    "store",
]

STALE_TMP_S = 600.0
"""A temporary file this old belongs to a render that died; it is removed."""


def normalise_text(text: str) -> str:
    """NFC, whitespace collapsed: spelling variants that sound the same share an entry."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def prompt_key(text: str, language: str, voice: str | None) -> str:
    raw = "\x00".join((normalise_text(text), language.lower(), voice or "")).encode("utf-8")
    return hashlib.sha256(raw).hexdigest()[:24]


def entry_path(cache_dir: Path, key: str, engine: str, version: str) -> Path:
    version_key = hashlib.sha256(version.encode("utf-8")).hexdigest()[:8]
    return Path(cache_dir) / f"{key}.{engine}.{version_key}.wav"


def entries(cache_dir: Path, key: str) -> list[Path]:
    """Every entry for a prompt key, whatever engine or version made it."""
    return sorted(Path(cache_dir).glob(f"{key}.*.wav"))


def engine_of(entry: Path) -> str:
    return entry.name.split(".")[1]


def store(entry: Path, wav: bytes, *, replaces: Collection[str] = ()) -> None:
    """Write *entry* atomically, then drop the prompt's entries it replaces: its own
    engine's other versions and the renders of the engines in *replaces* (the fallbacks
    after it in the order it was rendered for; another order's renders stay)."""
    write_atomic(entry, wav)
    key = entry.name.split(".")[0]
    mine = engine_of(entry)
    for other in entries(entry.parent, key):
        if other != entry and (engine_of(other) == mine or engine_of(other) in replaces):
            other.unlink(missing_ok=True)


def clean_stale_temps(cache_dir: Path, *, now: float | None = None) -> None:
    limit = (time.time() if now is None else now) - STALE_TMP_S
    for tmp in Path(cache_dir).glob(".*.tmp"):
        try:
            if tmp.stat().st_mtime < limit:
                tmp.unlink()
        except OSError:
            pass
