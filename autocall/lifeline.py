"""A child process that ends with its parent: ``autocall web``'s dialer worker must not
outlive the web process, even when that one is killed with SIGKILL and has no chance to
stop it (an orphaned worker would go on dialing with nobody watching it, and hold the
SIP port the next ``autocall web`` needs).

Two guards, used together by the child:

- :func:`ask_parent_death_signal`: on Linux, the kernel's parent-death signal
  (``prctl(PR_SET_PDEATHSIG)``, see prctl(2)) delivers a signal to the child the moment
  its parent dies. It follows the parent *thread*: when that thread ends the child is
  handed to another thread of the parent, and the signal comes then, and again each
  time (a multi-threaded parent killed with SIGKILL may send it twice). So choose a
  signal whose repetition is harmless, and check :func:`orphaned` when it comes.
- :func:`orphaned`: everywhere, the parent is gone once ``getppid()`` is no longer the
  pid the child was started by (the kernel hands an orphan to init or a subreaper). This
  also covers a parent that died before the child could ask for the signal.

:func:`follow_parent` is the asyncio watch both kinds of worker run (``autocall web``'s
dialer worker, ``autocall campaign run --workers N``'s workers): once the parent is gone
it stops new calls, and hangs up what is still on the line after a grace.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import os
import signal
import sys

__all__ = ["ask_parent_death_signal", "follow_parent", "orphaned"]

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def ask_parent_death_signal(sig: signal.Signals = signal.SIGTERM) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent dies; True if it
    will (Linux only; elsewhere, or if prctl fails, rely on :func:`orphaned`)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        done = int(libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0))
    except (OSError, AttributeError) as exc:
        log.warning("cannot ask for a parent-death signal (%s); watching the parent instead",
                    exc)
        return False
    if done != 0:
        err = ctypes.get_errno()
        log.warning("prctl(PR_SET_PDEATHSIG) failed: %s; watching the parent instead",
                    os.strerror(err))
        return False
    return True


def orphaned(parent: int) -> bool:
    """True once the process that started this one (pid ``parent``) is gone."""
    return os.getppid() != parent


async def follow_parent(parent: int, stop: asyncio.Event, force: asyncio.Event, *,
                        who: str = "the parent process", grace: float = 60.0,
                        poll: float = 0.5) -> None:
    """Once the process ``parent`` is gone: set ``stop`` (no new calls; calls in flight
    end), and after ``grace`` seconds set ``force`` (hang up what is still on the line).
    Nobody is left to stop us. ``who`` names the parent in the log.

    The parent's pid is looked at every ``poll`` seconds, and at once on SIGHUP, the
    parent-death signal the worker asks for (:func:`ask_parent_death_signal`). Not
    SIGTERM: the kernel sends that signal each time the worker is handed from a dying
    thread of the parent to another (a multi-threaded parent killed with SIGKILL sends
    it twice), and a second SIGTERM means "hang up now". SIGHUP only makes us look.
    """
    loop = asyncio.get_running_loop()
    look = asyncio.Event()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGHUP, look.set)
    try:
        while not orphaned(parent):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(look.wait(), poll)
            look.clear()
        log.warning("%s %d is gone: no new calls; calls in flight end (hung up after %g s)",
                    who, parent, grace)
        stop.set()
        await asyncio.sleep(grace)
        if not force.is_set():
            log.warning("calls still in flight %g s after %s died: hanging up", grace, who)
            force.set()
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGHUP)
