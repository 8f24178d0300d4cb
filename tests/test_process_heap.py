"""freeze_startup_heap: start-up objects leave the collector's passes, garbage still goes."""

from __future__ import annotations

import subprocess
import sys

_PROBE = """
import gc
from autocall.process import freeze_startup_heap
long_lived = [{"tree": i} for i in range(1000)]
frozen = freeze_startup_heap()
assert frozen >= 1000, frozen
tracked = {id(o) for o in gc.get_objects()}
assert id(long_lived) not in tracked and id(long_lived[0]) not in tracked
class Node:
    pass
a, b = Node(), Node()
a.other, b.other = b, a  # a cycle made after start-up is still collected
del a, b
assert gc.collect() >= 2
print("ok", frozen)
"""


def test_startup_objects_are_frozen_and_later_cycles_still_collected() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok ")
