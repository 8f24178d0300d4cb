"""Pictures of a tree: Mermaid (renders in GitHub/GitLab markdown) and Graphviz DOT.

SVG and PNG come from Graphviz's ``dot`` program (Debian package ``graphviz``).
"""

from __future__ import annotations

import shutil
import subprocess

from autocall.dialogue.schema import (
    GatherNode,
    HangupNode,
    HoursNode,
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
    "hours": "hexagon",
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
        text = ", ".join(f"{d} {r}" for d, r in node.hours.schedule.items())
    elif isinstance(node, HangupNode):
        text = node.outcome
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def to_mermaid(tree: Tree) -> str:
    ids = {node_id: f"n{i}" for i, node_id in enumerate(tree.nodes)}
    lines = ["flowchart TD", f"    start((start)) --> {ids.get(tree.start, 'missing')}"]
    if tree.machine is not None:  # answering machine: enters here after the beep
        entry = ids.get(tree.machine, "missing")
        lines.append(f"    machine((machine)) -->|after the beep| {entry}")
    for node_id, node in tree.nodes.items():
        caption = _mermaid_text(f"{node_id}: {_verb(node)}\n{_summary(node)}".strip())
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
        label = _mermaid_text(edge.label)
        arrow = f" -->|{label}| " if label else " --> "
        lines.append(f"    {ids[edge.source]}{arrow}{target}")
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
        label = _dot_text(f"{node_id}\n{verb}: {_summary(node)}")
        shape = _SHAPES_DOT.get(verb, "box")
        lines.append(f'  "{_dot_text(node_id)}" [label="{label}", shape={shape}];')
    for edge in edges(tree):
        if edge.target not in tree.nodes:
            continue
        label = f' [label="{_dot_text(edge.label)}"]' if edge.label else ""
        lines.append(f'  "{_dot_text(edge.source)}" -> "{_dot_text(edge.target)}"{label};')
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
