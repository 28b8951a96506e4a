"""Blanking comments and string literals in linear time, so declarations can be found in what is left.

A backtracking regular expression such as `/\\*.*?\\*/` retried at every opener is quadratic on
input that opens and never closes (`'/*a' * 40000` took 18 s and held the GIL throughout). This
scanner instead looks for the next opener, asks the opener's rule where the comment or literal
ends (`str.find`, or an anchored pattern whose alternatives cannot overlap), blanks that span and
goes on from its end: every character is looked at a bounded number of times.

An unterminated comment or string runs to the end of the text (a multi-line one) or of the line
(a one-line one), as a compiler would see it. A character literal that does not close within a
few characters is not one (a Rust lifetime `'a`), and only its quote is passed over.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

# Where a noise span that starts at the opener's match ends (None: not noise, skip one character).
EndRule = Callable[[str, "re.Match[str]"], int | None]


class OverBudget(Exception):
    """Scanning one file took longer than its time budget."""


@dataclass(frozen=True)
class Syntax:
    """The comment and literal rules of one language: an opener pattern per rule, tried in order."""

    openers: re.Pattern[str]
    rules: tuple[EndRule, ...]

    @classmethod
    def of(cls, *rules: tuple[str, EndRule]) -> Syntax:
        pattern = "|".join(f"(?P<r{i}>{opener})" for i, (opener, _) in enumerate(rules))
        return cls(re.compile(pattern), tuple(rule for _, rule in rules))


def line_comment(text: str, match: re.Match[str]) -> int:
    end = text.find("\n", match.end())
    return len(text) if end < 0 else end


def until(close: str) -> EndRule:
    """A span that ends after the first `close` (or runs to the end of the text)."""

    def end(text: str, match: re.Match[str]) -> int:
        found = text.find(close, match.end())
        return len(text) if found < 0 else found + len(close)

    return end


def nested(opener: str, close: str) -> EndRule:
    """A block comment that nests (Rust's `/* /* */ */`)."""
    marks = re.compile(f"{re.escape(opener)}|{re.escape(close)}")

    def end(text: str, match: re.Match[str]) -> int:
        depth, at = 1, match.end()
        while depth:
            found = marks.search(text, at)
            if found is None:
                return len(text)
            depth += 1 if found.group() == opener else -1
            at = found.end()
        return at

    return end


def quoted(quote: str, *, multiline: bool, escapes: bool = True) -> EndRule:
    """A string closed by `quote`; a backslash escapes the next character when `escapes`."""
    excluded = quote[0] + ("" if multiline else "\n") + ("\\" if escapes else "")
    parts = [f"[^{re.escape(excluded)}]"]  # the alternatives start differently: no backtracking
    if escapes:
        parts.append(r"\\[\s\S]")
    if len(quote) > 1:  # a triple quote: a lone quote character belongs to the body
        parts.append(f"{re.escape(quote[0])}(?!{re.escape(quote[1:])})")
    body = re.compile("(?:" + "|".join(parts) + ")*+")

    def end(text: str, match: re.Match[str]) -> int:
        stop = body.match(text, match.end())
        at = stop.end() if stop is not None else match.end()
        # unterminated: it ends at the line break (one-line) or with the text (multi-line)
        return at + len(quote) if text.startswith(quote, at) else at

    return end


def char_literal(text: str, match: re.Match[str]) -> int | None:
    """`'x'`, `'\\n'`, `'\\u{1F600}'`: closed within a few characters, or not a literal at all."""
    found = _CHAR.match(text, match.start())
    return found.end() if found is not None else None


_CHAR = re.compile(r"b?'(?:[^'\\\n]|\\[^\n][^'\n]{0,10})'")


def raw_hashes(text: str, match: re.Match[str]) -> int:
    """Rust's `r#"..."#`: closed by a quote and as many `#` as opened it."""
    close = '"' + "#" * match.group().count("#")
    found = text.find(close, match.end())
    return len(text) if found < 0 else found + len(close)


_BLANK = re.compile(r"[^\n]+")


def _blank(chunk: str) -> str:
    if "\n" not in chunk:
        return " " * len(chunk)
    return _BLANK.sub(lambda m: " " * len(m.group()), chunk)


def blank_noise(text: str, syntax: Syntax, check: Callable[[], None] = lambda: None) -> str:
    """`text` with comments and literals replaced by spaces (same length, same line breaks).

    `check` is called every few hundred spans; it may raise (`OverBudget`) to give up.
    """
    out: list[str] = []
    at = kept = 0
    spans = 0
    while (found := syntax.openers.search(text, at)) is not None:
        rule = syntax.rules[int(found.lastgroup[1:])] if found.lastgroup else None
        end = rule(text, found) if rule is not None else None
        if end is None:
            at = found.start() + 1
            continue
        out += (text[kept : found.start()], _blank(text[found.start() : end]))
        at = kept = max(end, found.start() + 1)
        spans += 1
        if spans % 512 == 0:
            check()
    out.append(text[kept:])
    return "".join(out)
