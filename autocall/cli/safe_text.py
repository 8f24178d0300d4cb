"""Text from user files, made safe for the terminal (issue 12 item 5).

A contact list, a DNC file or a header is written by someone else. Two things in such
text must never reach the terminal raw:

- rich console markup: a cell ``[/red]`` makes ``Console.print`` raise ``MarkupError``
  (a traceback, mid-import), and ``[link=…]`` or ``[blink]`` would style our output;
- terminal control codes: ESC sequences (ECMA-48 CSI/OSC) can move the cursor, rewrite
  the screen, set the window title or, on some terminals, answer back keystrokes.

:func:`safe` escapes markup and shows every control character as a visible escape
(``\\x1b``), so what the user sees is exactly what the file holds. Use it on any text
that came from a file before it goes into a rich string or ``typer.echo``.
"""

from __future__ import annotations

import unicodedata

from rich.markup import escape

_KEEP = frozenset("\t")
"""Control characters shown as they are (a tab in a message is harmless)."""


def _visible(ch: str) -> str:
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def strip_controls(text: str) -> str:
    """``text`` with C0/C1 control characters, DEL and bidi/format controls (Unicode
    category Cc/Cf, e.g. U+202E right-to-left override) written as visible escapes."""
    out: list[str] = []
    for ch in text:
        if ch in _KEEP:
            out.append(ch)
        elif unicodedata.category(ch) in ("Cc", "Cf") and ch != "\u200d":
            out.append(_visible(ch))
        else:
            out.append(ch)
    return "".join(out)


def safe(text: object) -> str:
    """``text`` ready for a rich markup string or plain echo: controls visible, markup
    escaped (``[/red]`` prints as ``[/red]``)."""
    return escape(strip_controls(str(text)))


def plain(text: object) -> str:
    """``text`` for plain output (``typer.echo``, CSV/JSON to a terminal): controls
    visible; markup left as is because nothing will interpret it."""
    return strip_controls(str(text))
