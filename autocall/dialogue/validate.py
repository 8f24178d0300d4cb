"""Checks a loaded tree for the mistakes that only show during a call.

Errors make ``autocall prompts validate`` exit 1: dangling targets, loops that never
wait for the caller, silent lines that loop forever, menus with no way out, audio
files that are missing or cannot play (empty, corrupt, text, silent, over the upload limit),
transfers to numbers the tree does not allow, malformed templates, and template fields the
campaign's contacts do not provide (when their fields are known).
A piper voice (``en_US-joe-medium``) that is not installed is an error with the install
hint. Warnings do not fail: nodes no call can reach, fields the tree neither declares nor
sets, two menu items that share a spoken phrase, ``speech: true`` with no recogniser for
the tree's language, and a ``machine:`` path (what an answering machine hears after its
beep) that waits for keys, records or transfers: a machine does none of that.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autocall.audio import check as audio_check
from autocall.dialogue.loader import Document, Findings, Problem, Severity, load_with_document
from autocall.dialogue.schema import (
    BUILTIN_OUTCOMES,
    ENDS_CALL,
    WAITS_FOR_CALLER,
    BranchNode,
    GatherNode,
    HangupNode,
    HoursNode,
    MenuNode,
    PlayNode,
    PlayPrompt,
    Prompts,
    RecordNode,
    SayNode,
    SayPrompt,
    SetNode,
    TransferBody,
    TransferNode,
    Tree,
    WebhookNode,
    edges,
    prompt_fields,
)
from autocall.dialogue.template import fields, strings_in
from autocall.dialogue.testing import check_cases, is_cases_document

BUILTIN_VARIABLES = frozenset({"number", "caller_id", "called", "campaign", "attempt", "contact"})
"""Call facts every driver passes in the engine's variables."""


@dataclass(frozen=True)
class Report(Findings):
    """Findings for one file."""

    file: str
    problems: list[Problem]
    kind: str = "tree"  # or "cases": validate_file tells them apart by content


def tree_files(paths: Iterable[Path]) -> list[Path]:
    """Expand folders to the tree files inside (``*.cases.yaml`` are test cases, skipped).

    Files named one by one are all kept: :func:`validate_file` recognises a cases file by
    its content (``prompts validate prompts/*.yaml`` checks trees and cases alike).
    """
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            for candidate in sorted([*path.rglob("*.yaml"), *path.rglob("*.yml")]):
                if not _is_cases_file(candidate):
                    found.append(candidate)
        else:
            found.append(path)
    return found


def _is_cases_file(path: Path) -> bool:
    return path.name.endswith((".cases.yaml", ".cases.yml")) or "tests" in path.parent.parts[-1:]


def validate_file(
    path: Path,
    contact_fields: Iterable[str] | None = None,
    *,
    speech: bool = False,
    speech_model: str | None = None,
) -> Report:
    """Load and check one tree file; never raises on bad content.

    ``speech`` also loads the recogniser's model (``speech_model``, else
    ``AUTOCALL_VOSK_MODEL``, else a packaged vosk model, else pocketsphinx for English)
    and checks every phrase against it.
    """
    tree, doc, problems = load_with_document(path)
    if doc is not None and is_cases_document(doc.data):
        return Report(str(path), check_cases(doc), kind="cases")
    if tree is None or doc is None:
        return Report(str(path), problems)
    found = check(tree, doc, contact_fields)
    if speech:
        found = sorted(
            [*found, *_speech(tree, doc, speech_model)], key=lambda p: (p.line, p.column)
        )
    return Report(str(path), found)


def _speech(tree: Tree, doc: Document, model_path: str | None) -> Iterator[Problem]:
    """Speech menus and gathers need a model that knows every phrase's words."""
    spots: list[tuple[tuple[str | int, ...], list[str]]] = []
    users: list[tuple[str | int, ...]] = []
    for node_id, node in tree.nodes.items():
        if isinstance(node, MenuNode) and node.menu.speech:
            users.append(("nodes", node_id, "menu", "speech"))
            for key in node.menu.items:
                item = node.menu.item(key)
                if item is not None and item.say:
                    spots.append((("nodes", node_id, "menu", "items", key, "say"), item.say))
        elif isinstance(node, GatherNode) and node.gather.speech:
            users.append(("nodes", node_id, "gather", "speech"))
            if node.gather.grammar:
                spots.append((("nodes", node_id, "gather", "grammar"), node.gather.grammar))
    if not users:
        return
    from autocall.speech import asr

    try:
        model = asr.load_model(model_path, tree.language)
    except asr.ModelError as exc:
        yield doc.problem(users[0], "error", "speech", str(exc))
        return
    for path, phrases in spots:
        for i, phrase in enumerate(phrases):
            try:
                asr.check_phrases(model, [phrase], lang=tree.language)
            except asr.VocabularyError as exc:
                yield doc.problem((*path, i), "error", "speech", str(exc))


def check(tree: Tree, doc: Document, contact_fields: Iterable[str] | None = None) -> list[Problem]:
    """Every semantic finding for a tree that loaded."""
    def templates(t: Tree, d: Document) -> Iterator[Problem]:
        return _templates(t, d, contact_fields)

    rules = (_targets, _reachability, _machine_path, _silent_loops, _silence_loops,
             _no_way_out, _audio, _transfers, templates, _menus, _shared_phrases, _recogniser,
             _voices, _engines, _outcomes)
    found = [problem for rule in rules for problem in rule(tree, doc)]
    return sorted(found, key=lambda p: (p.line, p.column, p.code))


def _targets(tree: Tree, doc: Document) -> Iterator[Problem]:
    if tree.start not in tree.nodes:
        yield doc.problem(["start"], "error", "dangling", _missing(tree, tree.start, "start"))
    if tree.machine is not None and tree.machine not in tree.nodes:
        yield doc.problem(
            ["machine"], "error", "dangling", _missing(tree, tree.machine, "machine")
        )
    for edge in edges(tree):
        if edge.target not in tree.nodes:
            yield doc.problem(edge.path, "error", "dangling", _missing(tree, edge.target, "target"))


def _missing(tree: Tree, target: str, what: str) -> str:
    import difflib

    close = difflib.get_close_matches(target, list(tree.nodes), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{what} {target!r} is not a node of this tree{hint}"


def _graph(tree: Tree) -> dict[str, list[str]]:
    graph: dict[str, list[str]] = {node_id: [] for node_id in tree.nodes}
    for edge in edges(tree):
        if edge.target in tree.nodes:
            graph[edge.source].append(edge.target)
    return graph


def _reachable(graph: dict[str, list[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start] if start in graph else []
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(graph[node])
    return seen


def _reachability(tree: Tree, doc: Document) -> Iterator[Problem]:
    if tree.start not in tree.nodes:
        return
    graph = _graph(tree)
    reached = _reachable(graph, tree.start)
    roots = f"start {tree.start!r}"
    if tree.machine is not None:  # a machine's call enters there
        reached |= _reachable(graph, tree.machine)
        roots += f" or machine {tree.machine!r}"
    for node_id in tree.nodes:
        if node_id not in reached:
            yield doc.problem(
                ["nodes", node_id],
                "warning",
                "unreachable",
                f"node {node_id!r} cannot be reached from {roots}",
                key=True,
            )


def _machine_path(tree: Tree, doc: Document) -> Iterator[Problem]:
    """What an answering machine walks after its beep: it presses no key and says nothing
    a tree should act on, so it follows only the ways a silent line goes."""
    if tree.machine is None or tree.machine not in tree.nodes:
        return
    graph = _graph(tree)
    silent = {n: _on_silence(tree, tree.nodes[n], targets) for n, targets in graph.items()}
    for node_id in sorted(_reachable(silent, tree.machine), key=list(tree.nodes).index):
        node = tree.nodes[node_id]
        if isinstance(node, MenuNode | GatherNode):
            kind = "menu" if isinstance(node, MenuNode) else "gather"
            why = (
                f"the machine path from machine {tree.machine!r} reaches {kind} {node_id!r}, "
                "which waits for keys a machine never presses (the recording holds the "
                "prompt and its retries); end the message with a hangup instead"
            )
        elif isinstance(node, RecordNode):
            why = (
                f"the machine path from machine {tree.machine!r} reaches record {node_id!r}, "
                "which would record the answering machine; end the message with a hangup"
            )
        elif isinstance(node, TransferNode):
            why = (
                f"the machine path from machine {tree.machine!r} reaches transfer {node_id!r}: "
                "an agent would be connected to a voicemail box"
            )
        else:
            continue
        yield doc.problem(["nodes", node_id], "warning", "machine", why, key=True)


def _components(graph: dict[str, list[str]]) -> list[list[str]]:
    """Strongly connected components (Tarjan), each in discovery order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0

    for root in graph:
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            children = graph[node]
            if i < len(children):
                work.append((node, i + 1))
                child = children[i]
                if child not in index:
                    work.append((child, 0))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                out.append(component[::-1])
    return out


def _silent_loops(tree: Tree, doc: Document) -> Iterator[Problem]:
    quiet = {
        node_id: [t for t in targets if not isinstance(tree.nodes[t], WAITS_FOR_CALLER)]
        for node_id, targets in _graph(tree).items()
        if not isinstance(tree.nodes[node_id], WAITS_FOR_CALLER)
    }
    for component in _components(quiet):
        first = component[0]
        if len(component) == 1 and first not in quiet[first]:
            continue
        members = set(component)
        leaves = any(t not in members for n in component for t in _graph(tree)[n]) or any(
            isinstance(tree.nodes[n], ENDS_CALL) for n in component
        )
        order = sorted(component, key=list(tree.nodes).index)
        cycle = " → ".join([*order, order[0]])
        if leaves:
            yield doc.problem(
                ["nodes", order[0]],
                "warning",
                "loop",
                f"loop without caller input may never end: {cycle}",
                key=True,
            )
        else:
            yield doc.problem(
                ["nodes", order[0]],
                "error",
                "loop",
                f"loop never waits for the caller and has no exit: {cycle}; "
                "add a menu, a gather or a hangup",
                key=True,
            )


def _on_silence(tree: Tree, node: Any, targets: list[str]) -> list[str]:
    """Where a node goes when the line stays silent (an answering machine, a mute caller)."""
    if isinstance(node, MenuNode):
        nxt = node.menu.default if node.menu.default is not None else node.on_failure
    elif isinstance(node, GatherNode):
        nxt = node.next if node.gather.min_digits == 0 else node.on_failure
    elif isinstance(node, TransferNode):
        return []
    else:
        return targets
    return [nxt] if nxt in tree.nodes else []


def _silence_loops(tree: Tree, doc: Document) -> Iterator[Problem]:
    """Cycles a silent line walks forever (loops of messages alone are _silent_loops')."""
    graph = _graph(tree)
    silent = {n: _on_silence(tree, tree.nodes[n], targets) for n, targets in graph.items()}
    for component in _components(silent):
        first = component[0]
        if len(component) == 1 and first not in silent[first]:
            continue
        if not any(isinstance(tree.nodes[n], WAITS_FOR_CALLER) for n in component):
            continue
        members = set(component)
        conditional = any(
            isinstance(tree.nodes[n], BranchNode | WebhookNode | HoursNode)
            and any(t not in members for t in graph[n])
            for n in component
        )
        order = sorted(component, key=list(tree.nodes).index)
        cycle = " → ".join([*order, order[0]])
        loops = "may loop" if conditional else "loops"
        yield doc.problem(
            ["nodes", order[0]],
            "warning" if conditional else "error",
            "silence-loop",
            f"a silent line (answering machine, mute caller) {loops} here forever: {cycle}; "
            "let default/on_failure lead to a hangup",
            key=True,
        )


def _no_way_out(tree: Tree, doc: Document) -> Iterator[Problem]:
    """Menus and gathers from which no choice ever reaches the end of the call."""
    graph = _graph(tree)
    exits = {
        node_id
        for node_id, node in tree.nodes.items()
        if isinstance(node, ENDS_CALL) or _falls_off(node)
    }
    reverse: dict[str, list[str]] = {n: [] for n in graph}
    for source, targets in graph.items():
        for target in targets:
            reverse[target].append(source)
    can_end = set(exits)
    todo = list(exits)
    while todo:
        reached = todo.pop()
        for source in reverse[reached]:
            if source not in can_end:
                can_end.add(source)
                todo.append(source)
    for node_id, node in tree.nodes.items():
        if isinstance(node, MenuNode | GatherNode) and node_id not in can_end:
            kind = "menu" if isinstance(node, MenuNode) else "gather"
            yield doc.problem(
                ["nodes", node_id],
                "error",
                "no-way-out",
                f"{kind} {node_id!r} has no way out: no choice ever leads to a hangup, "
                "a transfer or the end",
                key=True,
            )


def _falls_off(node: Any) -> bool:
    """A node whose success path ends the call (no ``next``)."""
    if isinstance(node, MenuNode | BranchNode | HangupNode):
        return False
    return hasattr(node, "next") and node.next is None


def _items(path: tuple[str | int, ...], prompts: Prompts | None) -> Iterator[tuple[Any, Any]]:
    if prompts is None:
        return
    if isinstance(prompts, list):
        for i, item in enumerate(prompts):
            yield (*path, i), item
    else:
        yield path, prompts


def _audio(tree: Tree, doc: Document) -> Iterator[Problem]:
    files: list[tuple[tuple[str | int, ...], str]] = []
    for path, prompts in prompt_fields(tree):
        for where, item in _items(path, prompts):
            if isinstance(item, PlayPrompt):
                files.append(((*where, "play"), item.play))
    for node_id, node in tree.nodes.items():
        if isinstance(node, PlayNode):
            if isinstance(node.play, list):
                files.extend((("nodes", node_id, "play", i), p) for i, p in enumerate(node.play))
            else:
                files.append((("nodes", node_id, "play"), node.play))
    for where, name in files:
        if "{" in name:
            continue
        resolved = tree.resolve_audio(name)
        if not resolved.is_file():
            yield doc.problem(
                where,
                "error",
                "audio",
                f"audio file {name!r} not found (looked at {resolved}); paths are relative "
                "to the tree file",
            )
        elif (bad := audio_check.problem(resolved)) is not None:
            yield doc.problem(
                where, "error", "audio", f"audio file {name!r} cannot be played: {bad.detail}. "
                f"{bad.hint}"
            )


def _transfers(tree: Tree, doc: Document) -> Iterator[Problem]:
    allowed: set[str] = set()
    for i, raw in enumerate(tree.transfer_targets):
        try:
            allowed.add(TransferBody.model_validate(raw).target)
        except ValueError as exc:
            yield doc.problem(["transfer_targets", i], "error", "transfer", _first_line(exc))
    for node_id, node in tree.nodes.items():
        if isinstance(node, TransferNode) and node.transfer.target not in allowed:
            yield doc.problem(
                ["nodes", node_id, "transfer"],
                "error",
                "transfer",
                f"transfer target {node.transfer.target!r} is not listed in transfer_targets "
                "(only listed numbers may be dialled: toll-fraud guard)",
            )


def _first_line(exc: Exception) -> str:
    text = str(exc)
    match = re.search(r"Value error, (.*?)(?: \[type=|$)", text, re.S)
    return (match.group(1) if match else text.splitlines()[0]).strip()


def _set_by_tree(tree: Tree) -> set[str]:
    names = set(tree.variables) | {"webhook_status"}
    for node in tree.nodes.values():
        if isinstance(node, SetNode):
            names |= set(node.set)
        elif isinstance(node, GatherNode):
            names.add(node.gather.variable)
        elif isinstance(node, MenuNode) and node.menu.variable:
            names.add(node.menu.variable)
        elif isinstance(node, RecordNode):
            names |= {node.record.variable, f"{node.record.variable}_duration"}
        elif isinstance(node, WebhookNode):
            names |= set(node.webhook.save)
    return names


def _templates_in(tree: Tree) -> Iterator[tuple[tuple[str | int, ...], str]]:
    for path, prompts in prompt_fields(tree):
        for where, item in _items(path, prompts):
            if isinstance(item, str):
                yield where, item
            elif isinstance(item, SayPrompt):
                yield (*where, "say"), item.say
            elif isinstance(item, PlayPrompt):
                yield (*where, "play"), item.play
    for node_id, node in tree.nodes.items():
        base: tuple[str | int, ...] = ("nodes", node_id)
        if isinstance(node, SetNode):
            for name, value in node.set.items():
                if isinstance(value, str):
                    yield (*base, "set", name), value
        elif isinstance(node, WebhookNode):
            yield (*base, "webhook", "url"), node.webhook.url
            for key, value in node.webhook.payload.items():
                for text in strings_in(value):
                    yield (*base, "webhook", "payload", key), text


def _templates(
    tree: Tree, doc: Document, contact_fields: Iterable[str] | None
) -> Iterator[Problem]:
    set_here = _set_by_tree(tree) | BUILTIN_VARIABLES
    declared = set(tree.contact_fields or [])
    contacts = set(contact_fields) if contact_fields is not None else None
    reported: set[tuple[str, str]] = set()
    known = sorted(set_here | declared | (contacts or set()))
    for where, text in _templates_in(tree):
        try:
            names = fields(text)
        except ValueError as exc:
            yield doc.problem(where, "error", "template", f"malformed template: {exc}")
            continue
        for name in names:
            if name in set_here or (name, str(where[:2])) in reported:
                continue
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
            typo = f"; did you mean {{{close[0]}}}?" if close else ""
            severity: Severity
            if contacts is not None and name not in contacts:
                severity = "error"
                text = (f"{{{name}}} is not a column of the contacts and the tree does not "
                        f"set it{typo or ': add the column or a default under variables'}")
            elif contacts is None and name not in declared:
                severity = "warning"
                text = f"{{{name}}} is neither set by the tree nor listed in contact_fields{typo}"
            else:
                continue
            reported.add((name, str(where[:2])))
            yield doc.problem(where, severity, "field", text)


def contact_fields_read(tree: Tree) -> list[str]:
    """The contact fields a call of *tree* reads: its ``contact_fields``, then every
    ``{name}`` its prompts use that the tree does not set itself and the dialer does not
    provide, in order of first use (what a sample contact fills in the simulator)."""
    set_here = _set_by_tree(tree) | BUILTIN_VARIABLES
    out = list(dict.fromkeys(tree.contact_fields or []))
    for _, text in _templates_in(tree):
        try:
            names = fields(text)
        except ValueError:
            continue
        out.extend(n for n in names if n not in set_here and n not in out)
    return out


def _squash(label: str) -> str:
    return re.sub(r"[^a-z0-9]", "", label.lower())


def _like_builtin(label: str) -> str | None:
    """The built-in outcome ``label`` is probably a misspelling of (``optout``, ``Opt_Out``)."""
    if label in BUILTIN_OUTCOMES:
        return None
    for builtin in BUILTIN_OUTCOMES:
        if _squash(builtin) == _squash(label):
            return builtin
    close = difflib.get_close_matches(label, BUILTIN_OUTCOMES, n=1, cutoff=0.85)
    return close[0] if close else None


def _outcomes(tree: Tree, doc: Document) -> Iterator[Problem]:
    """Every hangup label is a built-in or declared (a typo of opt-out skips the DNC list)."""
    for i, label in enumerate(tree.outcomes):
        twin = _like_builtin(label)
        if twin is not None:
            yield doc.problem(
                ["outcomes", i],
                "error",
                "outcome",
                f"declared outcome {label!r} looks like the built-in {twin!r}; use {twin!r} "
                f"(only {twin!r} has its built-in meaning"
                + (", adding the number to the do-not-call list)" if twin == "opt-out" else ")"),
            )
        elif label in BUILTIN_OUTCOMES:
            yield doc.problem(
                ["outcomes", i],
                "warning",
                "outcome",
                f"outcome {label!r} is built in; it need not be declared",
            )
    known = [*BUILTIN_OUTCOMES, *tree.outcomes]
    for node_id, node in tree.nodes.items():
        if not isinstance(node, HangupNode) or node.outcome in known:
            continue
        label = node.outcome
        twin = _like_builtin(label)
        close = [twin] if twin else difflib.get_close_matches(label, known, n=1, cutoff=0.6)
        hint = (
            f"did you mean {close[0]!r}?"
            if close
            else f"declare it: outcomes: [{label}] (built-ins: {', '.join(BUILTIN_OUTCOMES)})"
        )
        if close and close[0] == "opt-out":
            hint += " (only opt-out adds the number to the do-not-call list)"
        elif close:
            hint += f" Or declare it: outcomes: [{label}]"
        where = ["nodes", node_id, "hangup"]
        if doc.has([*where, "outcome"]):
            where.append("outcome")
        yield doc.problem(where, "error", "outcome", f"unknown outcome {label!r}; {hint}")


def template_errors(tree: Tree, doc: Document) -> list[Problem]:
    """Malformed templates only (an unclosed ``{``): tools that run a tree warn of them."""
    return [p for p in _templates(tree, doc, None) if p.code == "template"]


def _menus(tree: Tree, doc: Document) -> Iterator[Problem]:
    for node_id, node in tree.nodes.items():
        if isinstance(node, MenuNode):
            menu = node.menu
            if menu.repeat_key is not None and menu.repeat_key in menu.items:
                yield doc.problem(
                    ["nodes", node_id, "menu", "repeat_key"],
                    "warning",
                    "menu",
                    f"repeat_key {menu.repeat_key!r} is also a menu item; "
                    "that item can never be chosen",
                )


def _shared_phrases(tree: Tree, doc: Document) -> Iterator[Problem]:
    """Two items of one menu with the same spoken phrase: the first one always wins."""
    for node_id, node in tree.nodes.items():
        if not isinstance(node, MenuNode):
            continue
        owner: dict[str, str] = {}
        for key in node.menu.items:
            item = node.menu.item(key)
            for i, phrase in enumerate(item.say if item is not None else []):
                said = " ".join(phrase.lower().split())
                first = owner.setdefault(said, key)
                if first != key:
                    yield doc.problem(
                        ["nodes", node_id, "menu", "items", key, "say", i],
                        "warning",
                        "speech",
                        f"phrase {phrase!r} also selects item {first!r}; a caller who says it "
                        f"always gets {first!r}: give each item its own phrases",
                    )


def _recogniser(tree: Tree, doc: Document) -> Iterator[Problem]:
    """``speech: true`` with no recogniser for the language: keys work, voices are ignored."""
    users = [
        ("nodes", node_id, kind, "speech")
        for node_id, node in tree.nodes.items()
        for kind, on in (
            ("menu", isinstance(node, MenuNode) and node.menu.speech),
            ("gather", isinstance(node, GatherNode) and node.gather.speech),
        )
        if on
    ]
    if not users:
        return
    from autocall.speech import asr

    if asr.recogniser_for(tree.language) is None:
        yield doc.problem(
            users[0],
            "warning",
            "speech",
            f"no speech recogniser for language {tree.language!r}: callers' spoken answers "
            f"will be ignored (keys still work); {asr.no_recogniser_hint(tree.language)}",
        )


def _voices(tree: Tree, doc: Document) -> Iterator[Problem]:
    """A piper voice named in the tree must be installed, or every prompt falls back."""
    wanted: list[tuple[tuple[str | int, ...], str]] = []
    if tree.voice:
        wanted.append((("voice",), tree.voice))
    wanted.extend((("voices", lang), voice) for lang, voice in tree.voices.items())
    for node_id, node in tree.nodes.items():
        if isinstance(node, SayNode) and node.voice:
            wanted.append((("nodes", node_id, "voice"), node.voice))
    for path, prompts in prompt_fields(tree):
        for where, item in _items(path, prompts):
            if isinstance(item, SayPrompt) and item.voice:
                wanted.append(((*where, "voice"), item.voice))
    from autocall.speech import piper

    named = [(where, v) for where, v in wanted if piper.looks_like_piper_voice(v)]
    if not named:
        return
    why = piper.missing()
    installed = piper.installed_voices()
    for where, voice in named:
        if why is not None:
            yield doc.problem(where, "error", "voice", f"piper voice {voice!r}: {why}")
        elif not any(v.answers_to(voice) for v in installed):
            have = ", ".join(v.name for v in installed) or "none"
            yield doc.problem(
                where,
                "error",
                "voice",
                f"piper voice {voice!r} is not installed (installed: {have}); "
                f"{piper.INSTALL_HINT}",
            )


def _engines(tree: Tree, doc: Document) -> Iterator[Problem]:
    """A ``tts:`` order whose engines are not installed here: a warning for each missing
    engine, an error when none of the order can speak (every prompt would fail)."""
    orders: list[tuple[tuple[str | int, ...], list[str]]] = []
    if tree.tts:
        orders.append((("tts",), list(tree.tts)))
    for node_id, node in tree.nodes.items():
        if isinstance(node, SayNode) and node.tts:
            orders.append((("nodes", node_id, "tts"), list(node.tts)))
    for path, prompts in prompt_fields(tree):
        for where, item in _items(path, prompts):
            if isinstance(item, SayPrompt) and item.tts:
                orders.append(((*where, "tts"), list(item.tts)))
    if not orders:
        return
    from autocall.speech import tts

    why = {name: tts.engine_named(name).missing() for _, order in orders for name in order}
    for where, order in orders:
        missing = [why[name] for name in order if why[name] is not None]
        if len(missing) == len(order):
            yield doc.problem(where, "error", "tts", "no engine of this order is installed: "
                              + "; ".join(m for m in missing if m))
        else:
            for m in missing:
                if m:
                    yield doc.problem(where, "warning", "tts", f"{m} (the next engine speaks)")
