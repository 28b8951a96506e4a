"""One rule for showing text that came from the operating system (file names, paths) to a client.

POSIX names are bytes; Python hands them over as `str` with undecodable bytes as lone surrogates
(surrogateescape). Such a string cannot be encoded as UTF-8, so it must never reach a result, a
message or the store as is. `printable` writes each such byte as `\\xNN` (and any other lone
surrogate as `\\uNNNN`), so every answer is valid UTF-8 and still says which byte was there. Control
characters (a newline, a terminal's escape sequences) are escaped too: a name stays one line and never
drives the terminal that shows it.
"""

from __future__ import annotations

import re

_BACKTICKS = re.compile("`+")


def printable(text: str) -> str:
    """`text` as valid UTF-8 that shows what it holds: undecodable bytes and lone surrogates escaped (`\\xff`,
    `\\ud800`), and so are control characters (a newline; an escape sequence a terminal would obey: `\\x1b`)."""
    if text.isprintable():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        try:
            text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:  # a surrogate that is no escaped byte (from JSON `\ud800`, say)
            text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def printable_lines(text: str) -> str:
    """`printable` line by line: what a job wrote (a message, a question, a result) as a terminal shows it, its
    lines and tabs kept (a tab only moves to the next column stop); escape sequences a terminal would obey (clear
    the screen, set its title) shown escaped."""
    return "\n".join("\t".join(map(printable, line.split("\t"))) for line in text.split("\n"))


def shortened(text: str, limit: int = 200) -> str:
    """`printable(text)`, cut to `limit` characters with an ellipsis (for echoing input in messages)."""
    shown = printable(text[: limit + 1])
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def code_span(text: str) -> str:
    """`text` as one Markdown code span: fenced by more backticks than its longest run of them (and padded by a
    space, which Markdown takes off), so no name or signature closes the span early and has the rest read as
    Markdown: raw HTML, a link, an image."""
    longest = _longest_backticks(text)
    fence = "`" * (longest + 1)
    return f"{fence} {text} {fence}" if longest else f"`{text}`"


def code_block(text: str) -> str:
    """`text` (lines: a command's output) as one fenced Markdown code block: a fence of more backticks than any
    run in it (at least three), so that no line of it ends the block and has the rest read as Markdown."""
    fence = "`" * max(3, _longest_backticks(text) + 1)
    body = text if not text or text.endswith("\n") else text + "\n"
    return f"{fence}\n{body}{fence}"


def _longest_backticks(text: str) -> int:
    return max(map(len, _BACKTICKS.findall(text)), default=0)
