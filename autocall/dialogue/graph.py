"""Pictures of a tree: Mermaid (renders in GitHub/GitLab markdown) and Graphviz DOT.

SVG and PNG come from Graphviz's ``dot`` program (Debian package ``graphviz``).
"""

from __future__ import annotations

import shutil
import subprocess

from autocall.dialogue.schema import (
    Edge,
    GatherNode,
    HangupNode,
    HoursNode,
    MenuItem,
    MenuNode,
    PlayNode,
    Prompts,
    RecordNode,
    SayNode,
    SayPrompt,
    TransferNode,
    Tree,
    WebhookNode,
    edges,
    prompt_items,
)

_SHAPES_DOT = {
    "menu": "diamond",
    "gather": "parallelogram",
    "hangup": "doubleoctagon",
    "hours": "box",  # a hexagon grows wide around the schedule lines
    "branch": "hexagon",
    "transfer": "cds",
}


def _verb(node: object) -> str:
    return type(node).__name__.removesuffix("Node").lower()


def _words(prompts: Prompts | None) -> str:
    return " ".join(p.say if isinstance(p, SayPrompt) else p.play for p in prompt_items(prompts))


def _summary(node: object, limit: int = 40) -> str:
    """A short caption: the first words of what the node says or does."""
    text = ""
    if isinstance(node, SayNode):
        text = _words(node.say)
    elif isinstance(node, PlayNode):
        text = node.play if isinstance(node.play, str) else ", ".join(node.play)
    elif isinstance(node, MenuNode):
        text = _words(node.menu.prompt)
    elif isinstance(node, GatherNode):
        text = f"→ {node.gather.variable}"
    elif isinstance(node, RecordNode):
        text = f"→ {node.record.variable}"
    elif isinstance(node, TransferNode):
        text = f"{node.transfer.mode} {node.transfer.target}"
    elif isinstance(node, WebhookNode):
        text = node.webhook.url
    elif isinstance(node, HoursNode):
        text = "open or closed"  # the schedule is in the details, a line a day range
    elif isinstance(node, HangupNode):
        text = node.outcome
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _details(node: object, tree: Tree) -> list[str]:
    """What a designer checks at a glance, beyond the caption: a listening node's keys,
    speech, retries and timeouts; an hours node's schedule, holidays and zone; a
    transfer's timeout. One short line each."""
    if isinstance(node, MenuNode):
        body = node.menu
        keys = " ".join(str(k) for k in body.items)
        listen = f"keys {keys}" + (f" · {body.repeat_key} repeats" if body.repeat_key else "")
        tries = f"retries {body.retries} · {body.timeout:g} s"
        return [listen, tries + (" · speech" if body.speech else "")]
    if isinstance(node, GatherNode):
        g = node.gather
        digits = (f"{g.min_digits}–{g.max_digits} digits" if g.min_digits != g.max_digits
                  else f"{g.max_digits} digits")
        end = f" · ends {g.terminator}" if g.terminator else ""
        lines = [digits + end, f"retries {g.retries} · {g.first_timeout:g} s"
                 + (" · speech" if g.speech else "")]
        if g.speech and g.grammar:
            lines.append(_clip("hears " + "/".join(f"'{w}'" for w in g.grammar)))
        return lines
    if isinstance(node, HoursNode):
        h = node.hours
        lines = [_clip(f"{days} {ranges}") for days, ranges in h.schedule.items()]
        days = [d.isoformat() for d in h.holidays[:9]]
        for i in range(0, len(days), 3):
            lines.append(("holidays " if i == 0 else "") + ", ".join(days[i:i + 3]))
        if len(h.holidays) > 9:
            lines.append(f"and {len(h.holidays) - 9} more holidays")
        lines.append(h.timezone or tree.timezone)
        return lines
    if isinstance(node, TransferNode):
        return [f"{node.transfer.timeout:g} s"]
    if isinstance(node, RecordNode):
        return [f"up to {node.record.max_seconds:g} s"]
    return []


def _clip(text: str, limit: int = 44) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _edge_label(tree: Tree, edge: Edge) -> str:
    """An edge's label with the menu item's spoken phrases and the retries a failure
    path waits for."""
    node = tree.nodes[edge.source]
    if isinstance(node, MenuNode) and edge.path[2:4] == ("menu", "items"):
        item = node.menu.items.get(str(edge.path[4]))
        if isinstance(item, MenuItem) and item.say:
            return _clip(f"{edge.label} " + "/".join(f"'{w}'" for w in item.say))
    if _is_failure(edge):
        retries = (node.menu.retries if isinstance(node, MenuNode)
                   else node.gather.retries if isinstance(node, GatherNode) else None)
        if retries is not None:
            return f"failed after {retries} retries"
    return edge.label


def _is_failure(edge: Edge) -> bool:
    return edge.path[-1] == "on_failure"


def _caption(node_id: str, node: object, tree: Tree) -> str:
    head = f"{node_id}\n{_verb(node)}: {_summary(node)}".strip()
    return "\n".join([head, *_details(node, tree)])


def to_mermaid(tree: Tree) -> str:
    ids = {node_id: f"n{i}" for i, node_id in enumerate(tree.nodes)}
    lines = ["flowchart TD", f"    start((start)) --> {ids.get(tree.start, 'missing')}"]
    if tree.machine is not None:  # answering machine: enters here after the beep
        entry = ids.get(tree.machine, "missing")
        lines.append(f"    machine((machine)) -->|after the beep| {entry}")
    for node_id, node in tree.nodes.items():
        text = "\n".join([f"{node_id}: {_verb(node)}", _summary(node), *_details(node, tree)])
        caption = _mermaid_text(text.strip())
        nid = ids[node_id]
        if isinstance(node, MenuNode):
            lines.append(f'    {nid}{{"{caption}"}}')
        elif isinstance(node, HangupNode):
            lines.append(f'    {nid}(["{caption}"])')
        else:
            lines.append(f'    {nid}["{caption}"]')
    for edge in edges(tree):
        target = ids.get(edge.target)
        if target is None:
            continue
        label = _mermaid_text(_edge_label(tree, edge))
        arrow = "-.->" if _is_failure(edge) else "-->"
        lines.append(f"    {ids[edge.source]} {arrow}|{label}| {target}" if label
                     else f"    {ids[edge.source]} {arrow} {target}")
    return "\n".join(lines) + "\n"


def _mermaid_text(text: str) -> str:
    # Mermaid reads quotes and brackets in labels as syntax; HTML entities are safe.
    for raw, entity in (('"', "#quot;"), ("|", "#124;"), ("\n", "<br/>")):
        text = text.replace(raw, entity)
    return text


def to_dot(tree: Tree) -> str:
    name = _dot_text(tree.name or "prompt tree")
    lines = [
        f'digraph "{name}" {{',
        "  rankdir=TB;",
        '  node [shape=box, style=rounded, fontname="Helvetica", fontsize=11];',
        '  edge [fontname="Helvetica", fontsize=10];',
        '  "__start" [shape=point, width=0.15];',
        f'  "__start" -> "{_dot_text(tree.start)}";',
    ]
    if tree.machine is not None:  # answering machine: enters here after the beep
        lines += [
            '  "__machine" [shape=point, width=0.15, xlabel="machine"];',
            f'  "__machine" -> "{_dot_text(tree.machine)}" [label="after the beep"];',
        ]
    for node_id, node in tree.nodes.items():
        verb = _verb(node)
        label = _dot_text(_caption(node_id, node, tree))
        shape = _SHAPES_DOT.get(verb, "box")
        lines.append(f'  "{_dot_text(node_id)}" [label="{label}", shape={shape}];')
    for edge in edges(tree):
        if edge.target not in tree.nodes:
            continue
        attrs = []
        label = _edge_label(tree, edge)
        if label:
            attrs.append(f'label="{_dot_text(label)}"')
        if _is_failure(edge):
            attrs.append('style=dashed, color="#b03a2e", fontcolor="#b03a2e"')
        tail = f" [{', '.join(attrs)}]" if attrs else ""
        lines.append(f'  "{_dot_text(edge.source)}" -> "{_dot_text(edge.target)}"{tail};')
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dot_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class GraphvizMissing(RuntimeError):
    """``dot`` is not installed."""


def render(tree: Tree, fmt: str, *, timeout: float = 30.0) -> bytes:
    """SVG or PNG bytes via Graphviz ``dot``."""
    if fmt not in ("svg", "png"):
        raise ValueError(f"cannot render {fmt!r}; use svg or png")
    dot = shutil.which("dot")
    if dot is None:
        raise GraphvizMissing(
            "Graphviz 'dot' is not installed (apt-get install graphviz); "
            "use --format mermaid or --format dot instead"
        )
    done = subprocess.run(
        [dot, f"-T{fmt}"],
        input=to_dot(tree).encode(),
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"dot failed: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout
