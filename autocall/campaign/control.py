"""An operator's verbs on a campaign, shared by the CLI and the web console.

``steer`` changes a campaign's state the one way ``autocall campaign pause/resume/stop``
and the console's buttons both do (a running dialer obeys within a second, since it
reads the state from the store); ``pin_tree`` moves a campaign to a published version
of a stored tree (a running dialer also reads that within a second); ``start_problems``
is what must be fixed before a campaign may start; ``explain_number`` says why a number
is or is not being dialed. All work on the store only, so any node may call them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy.engine import Connection

from autocall.campaign.check import Problem, preflight
from autocall.campaign.dialer import explain
from autocall.campaign.model import Campaign, CampaignState, start_state
from autocall.campaign.schedule import DncCheck, DncList, normalize
from autocall.campaign.store import Store, StoreError
from autocall.campaign.trees import TreeLibrary, TreesError, pin


class Verb(StrEnum):
    """What an operator may ask of a campaign."""

    START = "start"
    PAUSE = "pause"
    RESUME = "resume"
    STOP = "stop"


# verb -> (state it leads to, states it may be applied to)
MOVES: dict[Verb, tuple[CampaignState, tuple[CampaignState, ...]]] = {
    Verb.START: (CampaignState.RUNNING, (CampaignState.DRAFT,)),
    Verb.PAUSE: (CampaignState.PAUSED, (CampaignState.RUNNING, CampaignState.SCHEDULED)),
    Verb.RESUME: (CampaignState.RUNNING, (CampaignState.PAUSED, CampaignState.DRAFT)),
    Verb.STOP: (CampaignState.STOPPED, (CampaignState.RUNNING, CampaignState.PAUSED,
                                        CampaignState.SCHEDULED, CampaignState.DRAFT)),
}


class SteerError(StoreError):
    """The campaign is not in a state the verb applies to."""


@dataclass(frozen=True)
class Steered:
    name: str
    before: CampaignState
    after: CampaignState


def allowed_verbs(state: CampaignState) -> list[Verb]:
    """The verbs that apply to a campaign in ``state`` (the buttons a page shows): a
    draft is started (resume also takes one, as the CLI always did, but says less)."""
    return [verb for verb, (_, sources) in MOVES.items() if state in sources
            and not (verb is Verb.RESUME and state is CampaignState.DRAFT)]


def steer(store: Store, name: str, verb: Verb, reason: str,
          also: Callable[[Connection], None] | None = None) -> Steered:
    """Apply ``verb``; ``also`` runs in the same transaction (an audit line exists iff
    the change does). Raises :class:`SteerError` when the state does not allow it,
    :class:`StoreError` when there is no such campaign."""
    target, sources = MOVES[verb]
    if verb is Verb.START:  # scheduled until its start_at, as `campaign run` does
        target = start_state(store.campaign(name)[0], datetime.now(UTC))
    before, _ = store.state(name)
    if not store.set_state(name, target, reason, sources, also):  # the one state change
        now, _ = store.state(name)
        raise SteerError(f"{name} is {now.value}; cannot {verb.value} it (only from "
                         f"{', '.join(s.value for s in sources)})")
    return Steered(name, before, target)


def start_problems(campaign: Campaign, trees: TreeLibrary) -> list[Problem]:
    """The errors that stop a stored campaign from starting: its tree (a file, or a
    published version in the store) and its DNC files; its contact lists were read at
    import, so they are not read again."""
    return [p for p in preflight(campaign.model_copy(update={"contacts": []}), trees=trees)
            if p.severity == "error"]


@dataclass(frozen=True)
class Pinned:
    name: str
    before: str  # the tree it ran: a pin, or a file path
    after: str  # the pin it runs now, store:NAME@N


def pin_tree(store: Store, trees: TreeLibrary, name: str, tree: str, version: int,
             also: Callable[[Connection, str], None] | None = None) -> Pinned:
    """Point campaign ``name`` at version ``version`` of stored tree ``tree``; only a
    published version may run (:class:`TreesError` 409; 404 for an unknown tree or
    version; 422 when the tree declares ``contact_fields`` the campaign's contacts lack;
    :class:`StoreError` for an unknown campaign). ``also(conn, before)`` runs
    in the same transaction. A dialer running the campaign places its next calls on the new
    version within a second; calls in flight end on the version they started with."""
    store.campaign(name)  # an unknown campaign is told first, before the tree
    found = trees.version(tree, version)
    if found.published_at is None:
        raise TreesError(409, f"{tree} version {version} is not published; a designer "
                              "publishes it first (a campaign runs only published versions)")
    spec = pin(tree, version)
    needed = trees.load(spec).contact_fields or []
    sample = store.contacts_page(name, 0, 1)
    missing = [f for f in needed if sample and f not in sample[0].fields]
    if missing:
        raise TreesError(422, f"{tree} version {version} needs the contact field(s) "
                              f"{', '.join(missing)}, which {name}'s contacts do not have "
                              f"(they have: {', '.join(sample[0].fields) or 'none'})")
    return Pinned(name, store.set_tree(name, spec, also), spec)


@dataclass(frozen=True)
class Explanation:
    number: str  # as E.164 when it parses
    dial_now: bool
    reasons: list[str]


def explain_number(store: Store, name: str, number: str, now: datetime) -> Explanation:
    """Why ``number`` is or is not dialed now: window, retry, DNC, attempts, state.

    A DNC line that cannot be read might be this person: then never "dialable".
    """
    campaign, state, _ = store.campaign(name)
    e164 = normalize(number, campaign.default_region) or number
    contact = store.contact_by_number(name, e164)
    dnc = DncList.from_files(campaign.dnc, campaign.default_region)
    # the store's list too: the dialer closes those numbers when it claims them
    ok, lines = explain(campaign, state, contact, now, DncCheck(dnc, store.on_dnc))
    if dnc.problems:
        ok = False
        lines = [*lines, f"the do-not-call list has {len(dnc.problems)} line(s) not "
                 "understood; run refuses to dial until they are fixed:",
                 *(f"  {p}" for p in dnc.problems)]
    return Explanation(e164, ok, lines)
