"""One worker of ``autocall campaign run --workers N`` (see
:mod:`autocall.cli.campaign_workers`): ``python -m autocall.cli.campaign_worker``, started
by the supervisor with the arguments it builds; not a command for people."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys

from autocall import lifeline

__all__ = ["main"]


def _share(text: str) -> tuple[int, int]:
    index, _, of = text.partition("/")
    if not (index.isdigit() and of.isdigit() and int(index) < int(of)):
        raise argparse.ArgumentTypeError(f"{text!r}: give INDEX/COUNT, e.g. 0/2")
    return int(index), int(of)


def main(argv: list[str] | None = None) -> None:
    """One worker: dial its share of the campaign until done, told to stop, or orphaned."""
    parser = argparse.ArgumentParser(
        prog="python -m autocall.cli.campaign_worker",
        description="a worker of autocall campaign run --workers",
    )
    parser.add_argument("campaign")
    parser.add_argument("--db", required=True)
    parser.add_argument("--placer", required=True)
    parser.add_argument("--share", type=_share, required=True, metavar="INDEX/COUNT")
    parser.add_argument("--parent", type=int, required=True, metavar="PID")
    parser.add_argument("--node")
    parser.add_argument("--wait", action="store_true")
    parser.add_argument("--sys-path", default="[]", help="the supervisor's import path")
    args = parser.parse_args(argv)
    # First thing: a SIGHUP when the supervisor dies, even by SIGKILL (follow_parent
    # looks at once; until its handler is set SIGHUP just ends us: nothing dials yet).
    lifeline.ask_parent_death_signal(signal.SIGHUP)
    from autocall.campaign.dialer import Share  # after the signal: imports take a while

    share = Share(*args.share)
    # The placer (--placer MODULE:FACTORY) imports here as it did in the supervisor.
    sys.path[:0] = [p for p in json.loads(args.sys_path) if p not in sys.path]
    logging.basicConfig(
        level=logging.WARNING, format=f"worker {share.index + 1}/{share.of}: %(message)s"
    )
    logging.getLogger("stamina").setLevel(logging.ERROR)
    from autocall.cli import campaign  # the CLI's own dialing code, as --workers 1 runs it

    code = campaign.work(
        args.campaign, args.db, args.placer, args.node, args.wait, share, args.parent
    )
    raise SystemExit(code)


if __name__ == "__main__":
    main()
