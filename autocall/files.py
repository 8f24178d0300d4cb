"""Private files: what autocall writes about people is readable by its own user only.

Recordings of voices, call records (numbers, digits pressed, answers) and the SQLite
store are personal data. Everything autocall creates for them is made ``0600`` (files)
and ``0700`` (folders) at creation, never created wider and narrowed afterwards, so no
other local user can read them even for an instant.

A file or folder that already exists keeps its mode: an operator may have widened it on
purpose (a group for a reporting user, a shared recordings share). If such a file is
readable by every user, one warning says so and how to narrow it; autocall does not
change permissions it did not set.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

__all__ = ["FILE_MODE", "DIR_MODE", "private_dir", "private_file"]

log = logging.getLogger(__name__)

FILE_MODE = 0o600
DIR_MODE = 0o700

_warned: set[str] = set()


def private_dir(path: str | Path) -> Path:
    """Make ``path`` and any missing parents as ``0700`` folders; existing ones are kept."""
    path = Path(path)
    missing: list[Path] = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue  # made meanwhile by another call or process: theirs to keep
        os.chmod(folder, DIR_MODE)  # mkdir's mode is narrowed by the umask, never widened
    return path


def private_file(path: str | Path) -> Path:
    """Create ``path`` (and its folders) empty with mode ``0600`` unless it exists.

    An existing file is left as it is (see the module notes) and warned about once if
    every user can read it.
    """
    path = Path(path)
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        _warn_if_open(path)
        return path
    os.close(fd)
    return path


def _warn_if_open(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    key = str(path.resolve())
    if mode & stat.S_IROTH and key not in _warned:
        _warned.add(key)
        log.warning(
            "%s is readable by every user (mode %o); it may hold personal data: run chmod 600 %s",
            path,
            stat.S_IMODE(mode),
            path,
        )
