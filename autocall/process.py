"""Process tuning for a process that paces media: scheduling priority and GC pauses.

RTP pacing needs the process to run when its 20 ms timer fires. On a busy host the
kernel may hand the CPU to a batch job first and every call's packet leaves late
together. Telephony media servers therefore offer to run at a real-time priority; so
does autocall (``--priority realtime`` / ``AUTOCALL_MEDIA_PRIORITY``). Off by default: a
real-time process that spins would starve the machine (Linux's RT throttling still
leaves others 5 % of each second, ``kernel.sched_rt_runtime_us``).

A full garbage collection walks every tracked object, and every call's packets wait for
it. Right after start-up most tracked objects are modules, classes, the dialogue tree
and library state that live as long as the process: 80,000 objects and a 45 ms pass
here. `freeze_startup_heap` moves what exists now into the permanent generation, so
later full passes walk only what the calls created.
"""

from __future__ import annotations

import gc
import logging
import os
from typing import Literal

__all__ = ["Priority", "freeze_startup_heap", "raise_priority"]

log = logging.getLogger(__name__)

Priority = Literal["normal", "high", "realtime"]
PRIORITIES: tuple[Priority, ...] = ("normal", "high", "realtime")
_RT_PRIORITY = 10  # of 1..99: above ordinary processes, below the kernel's own RT threads
_HIGH_NICE = -10


def raise_priority(wanted: str) -> str:
    """Apply ``wanted`` to this process; returns what was applied (it may be less).

    ``realtime`` asks for SCHED_RR and falls back to ``high`` (nice −10) where the
    process may not (no CAP_SYS_NICE, or no such policy); ``high`` falls back to
    ``normal``. The fallback is logged, never fatal: calls still work, pacing is just
    more exposed to the rest of the machine.
    """
    if wanted not in PRIORITIES:
        raise ValueError(f"priority {wanted!r}: use one of {', '.join(PRIORITIES)}")
    if wanted == "realtime":
        setter = getattr(os, "sched_setscheduler", None)
        policy = getattr(os, "SCHED_RR", None)
        if setter is not None and policy is not None:
            try:
                setter(0, policy, os.sched_param(_RT_PRIORITY))
                return "realtime"
            except OSError as exc:
                log.warning("real-time priority refused (%s); trying nice %d", exc, _HIGH_NICE)
        wanted = "high"
    if wanted == "high":
        try:
            current = os.nice(0)
            if current > _HIGH_NICE:
                os.nice(_HIGH_NICE - current)
            return "high"
        except OSError as exc:
            log.warning("raising the priority refused (%s); running at normal priority", exc)
    return "normal"


def freeze_startup_heap() -> int:
    """Collect once, then exempt every surviving object from later passes; returns how many.

    Call it once set-up is done (tree loaded, store open), before the first call.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
