"""An older copy of one of the package's modules, imported beside the package's own.

Benchmarks and checks time or compare it against today's module in the same process
(``git show REV:autocall/audio/amd.py > /tmp/amd_old.py``).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def load_old(path: Path, name: str) -> ModuleType:
    """``path`` imported as the module ``name`` (dataclasses look their module up there)."""
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"{path}: not a Python module")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    try:
        spec.loader.exec_module(mod)
    except (OSError, SyntaxError, ImportError) as exc:  # a bench's argument, not a bug
        del sys.modules[name]
        raise SystemExit(f"{path}: cannot load it as {name}: {exc}") from None
    return mod
