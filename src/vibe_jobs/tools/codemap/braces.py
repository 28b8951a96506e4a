"""Top-level symbols of the brace languages (JavaScript/TypeScript, Go, Rust, Java) by pattern.

Comments and string literals are blanked first (`scan.blank_noise`, keeping offsets and line
breaks); declarations are then looked for where they start in column 0, and members (methods)
inside the declaration's `{...}` block at nesting depth one.

Every pattern here must stay linear on hostile input: whitespace runs and repeated parts are
possessive (`\\s++`, `(?:...)*+`) so a failed attempt never re-splits them, nothing lazy is
followed by something that rescans a run, and no repeated part can start where its neighbour
does. tests/tools/test_codemap_symbols.py feeds each pattern the inputs that would make it
quadratic. Blocks and member searches are bounded by the next top-level declaration, so an
unclosed `{` cannot make every later declaration rescan the rest of the file.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable
from dataclasses import dataclass

from vibe_jobs.tools.codemap.model import Symbol
from vibe_jobs.tools.codemap.quota import Quota
from vibe_jobs.tools.codemap.scan import (
    Syntax,
    blank_noise,
    char_literal,
    line_comment,
    nested,
    quoted,
    raw_hashes,
    until,
)
from vibe_jobs.tools.printable import printable, shortened

SIGNATURE_MAX = 200
_SIGNATURE_SPAN = 1000
Check = Callable[[], None]
Clean = Callable[[str], str]


class LineIndex:
    """Offset -> 1-based line number."""

    def __init__(self, text: str) -> None:
        self._starts = [m.end() for m in _NEWLINE.finditer(text)]

    def line(self, offset: int) -> int:
        return bisect.bisect_right(self._starts, offset) + 1


_NEWLINE = re.compile(r"\n")
_SIG_STOP = re.compile(r"[()\[\]{};\n]")


def signature_end(masked: str, start: int, stops: re.Pattern[str] = _SIG_STOP, limit: int | None = None) -> int:
    """Where a declaration's head ends: `{`, `;` or a line break outside brackets (`stops` lists them).

    It ends by `limit` (the next declaration) and within `_SIGNATURE_SPAN` characters at the latest.
    """
    depth, end = 0, min(start + _SIGNATURE_SPAN, len(masked) if limit is None else limit)
    for found in stops.finditer(masked, start, end):
        char = found.group()
        if char in "([":
            depth += 1
        elif char in ")]":
            depth = max(depth - 1, 0)
        elif depth == 0:
            return found.start()
    return end


def render_signature(text: str, start: int, end: int) -> str:
    """The source between `start` and `end`, whitespace collapsed, trailing `=`/`:` dropped, capped, and
    control characters escaped (`printable`: an escape sequence in a hostile file never reaches a terminal)."""
    return shortened(" ".join(text[start:end].split()).rstrip(" ="), SIGNATURE_MAX)


def matching(masked: str, opener: str, closer: str) -> dict[int, int]:
    """For every `opener` offset, the offset of its `closer` (one pass; unclosed ones absent)."""
    pairs: dict[int, int] = {}
    stack: list[int] = []
    for found in re.finditer(f"[{re.escape(opener + closer)}]", masked):
        if found.group() == opener:
            stack.append(found.start())
        elif stack:
            pairs[stack.pop()] = found.start()
    return pairs


@dataclass(frozen=True)
class Decl:
    """A declaration pattern: `name` group required; `what` group (if any) overrides `kind`."""

    kind: str
    regex: re.Pattern[str]
    members: re.Pattern[str] | None = None
    member_kind: str = "method"
    keyword: str = ""  # the regex is skipped for files that do not contain this word
    clean: Callable[[str], str] = str.strip  # tidies the matched name


class Source:
    """One file: its text, the text with noise blanked, line numbers, bracket pairs (built once), and the
    room left for its symbols (`quota`: take a place before building a symbol)."""

    def __init__(self, text: str, masked: str, check: Check, quota: Quota) -> None:
        self.text, self.masked, self.check, self.quota = text, masked, check, quota
        self.lines = LineIndex(text)
        self._pairs: dict[str, dict[int, int]] = {}

    def close_of(self, offset: int, opener: str = "{", closer: str = "}") -> int:
        """The offset of the bracket closing the one at `offset` (end of text when unclosed)."""
        if opener not in self._pairs:
            self._pairs[opener] = matching(self.masked, opener, closer)
        return self._pairs[opener].get(offset, len(self.masked))

    def symbol(self, kind: str, name: str, start: int, end: int | None = None, limit: int | None = None) -> Symbol:
        """A symbol whose signature runs from `start` to `end` (found, before `limit`, when not given)."""
        stop = signature_end(self.masked, start, limit=limit) if end is None else end
        signature = render_signature(self.text, start, stop)
        return Symbol(kind=kind, name=printable(name), signature=signature, line=self.lines.line(start))


Hook = Callable[[Source, list[int]], list[tuple[int, Symbol]]]


@dataclass(frozen=True)
class LanguageSpec:
    """How to find the symbols of one brace language."""

    syntax: Syntax
    decls: tuple[Decl, ...]
    extra: tuple[Hook, ...] = ()


def brace_symbols(
    text: str, spec: LanguageSpec, check: Check = lambda: None, quota: Quota | None = None
) -> list[Symbol]:
    """Symbols of one file in a brace language, in source order: the first ones `quota` has room for."""
    source = Source(text, blank_noise(text, spec.syntax, check), check, quota or Quota())
    matches = [(m, decl) for decl in spec.decls if decl.keyword in source.masked for m in _each(decl, source)]
    matches.sort(key=lambda item: item[0].start())
    starts = [m.start() for m, _ in matches]
    found: list[tuple[int, Symbol]] = []
    for index, (match, decl) in enumerate(matches):
        if index % 256 == 255:  # building declarations costs more than finding them: the budget holds here too
            source.check()
        if source.quota.take():
            found.append((match.start(), _declaration(source, decl, match, _next(starts, match.start()))))
    for hook in spec.extra:
        found.extend(hook(source, starts))
    found.sort(key=lambda item: item[0])
    return [symbol for _, symbol in found]


def _each(decl: Decl, source: Source) -> list[re.Match[str]]:
    out = []
    for count, match in enumerate(decl.regex.finditer(source.masked)):
        out.append(match)
        if count % 256 == 255:
            source.check()
    return out


def _next(starts: list[int], after: int) -> int | None:
    """The start of the next top-level declaration after `after` (None when it is the last)."""
    index = bisect.bisect_right(starts, after)
    return starts[index] if index < len(starts) else None


def _declaration(source: Source, decl: Decl, match: re.Match[str], limit: int | None) -> Symbol:
    groups = match.groupdict()
    kind = KIND_WORDS.get(groups.get("what") or "", decl.kind)
    name = decl.clean(match["name"])
    if groups.get("recv"):
        kind, name = "method", f"{go_receiver_type(groups['recv'])}.{name}"
    end = match.end() if kind == "arrow" else None
    symbol = source.symbol("function" if kind == "arrow" else kind, name, match.start(), end, limit)
    if decl.members is not None:
        symbol.children = _members(source, match.end(), decl, limit) or None
    return symbol


KIND_WORDS = {"@interface": "annotation", "struct": "struct", "interface": "interface"}
KIND_WORDS |= {"class": "class", "enum": "enum", "record": "record"}
NOT_NAMES = frozenset({"if", "for", "while", "switch", "catch", "return", "function"})  # JS statements


def _members(source: Source, after: int, decl: Decl, limit: int | None) -> list[Symbol]:
    """Members matching `decl.members` at depth one of the block opened after `after`."""
    open_brace = _block_open(source.masked, after, limit)
    if open_brace is None or decl.members is None:
        return []
    close = min(source.close_of(open_brace), len(source.masked) if limit is None else limit)
    found = list(decl.members.finditer(source.masked, open_brace + 1, close))
    members: list[Symbol] = []
    depth, cursor = 0, open_brace + 1
    for index, match in enumerate(found):
        depth += source.masked.count("{", cursor, match.start()) - source.masked.count("}", cursor, match.start())
        cursor = match.start()
        if depth == 0 and match["name"] not in NOT_NAMES and source.quota.take():
            until = found[index + 1].start() if index + 1 < len(found) else close
            members.append(source.symbol(decl.member_kind, match["name"], match.start("head"), limit=until))
        if index % 256 == 255:
            source.check()
    return members


def _block_open(masked: str, after: int, limit: int | None) -> int | None:
    """The `{` opening the declaration's body, unless a `;` (or the next declaration) comes first."""
    found = _OPEN_OR_END.search(masked, after, len(masked) if limit is None else limit)
    return found.start() if found is not None and found.group() == "{" else None


_OPEN_OR_END = re.compile(r"[{;]")


def go_receiver_type(receiver: str) -> str:
    """`s *Server[T]` -> `Server`."""
    words = receiver.split()
    return (words[-1] if words else receiver).lstrip("*").split("[")[0]


def _go_type_groups(source: Source, starts: list[int]) -> list[tuple[int, Symbol]]:
    """The types declared in `type ( ... )` groups."""
    found: list[tuple[int, Symbol]] = []
    groups = list(_GO_TYPE_GROUP.finditer(source.masked))
    for index, group in enumerate(groups):
        close = source.close_of(group.end() - 1, "(", ")")
        if index + 1 < len(groups):
            close = min(close, groups[index + 1].start())
        for count, spec in enumerate(_GO_TYPE_SPEC.finditer(source.masked, group.end(), close)):
            if count % 256 == 255:
                source.check()
            if not source.quota.take():
                continue
            kind = KIND_WORDS.get(spec["what"] or "", "type")
            line_end = source.masked.find("\n", spec.start("name"))
            found.append((spec.start("name"), source.symbol(kind, spec["name"], spec.start("name"), limit=line_end)))
        source.check()
    return found


def _before_where(name: str) -> str:
    """A Rust impl's subject without its `where` clause."""
    return _WHERE.split(name, maxsplit=1)[0].strip()


_WHERE = re.compile(r"\bwhere\b")

# --- the tables -----------------------------------------------------------------------------------


def _re(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.M)


def _decl(
    kind: str, keyword: str, pattern: str, members: re.Pattern[str] | None = None, clean: Clean = str.strip
) -> Decl:
    return Decl(kind, _re(pattern), members, keyword=keyword, clean=clean)


_LINE, _BLOCK = ("//", line_comment), (r"/\*", until("*/"))
_DQ = ('"', quoted('"', multiline=False))
_CHAR = (r"'", char_literal)

_GO_TYPE_GROUP = re.compile(r"^type\s*+\(", re.M)
_GO_TYPE_SPEC = re.compile(r"^[ \t](?P<name>\w++)(?:\[[^\]\n]*+\])?[ \t]++(?:=\s*+)?(?P<what>struct|interface)?", re.M)

_ID = r"[A-Za-z_$][\w$]*+"
_JS_EXPORT = r"(?:export\s++(?:default\s++)?)?(?:declare\s++)?"
_JS_METHOD = _re(
    r"^[ \t]++(?P<head>(?:(?:static|async|public|private|protected|readonly|override|abstract|get|set)[ \t]++)*+"
    rf"\*?(?P<name>#?{_ID}))\s*+(?:<[^>\n]*+>\s*+)?\("
)
_JS_PARENS = r"\([^()]*+(?:\([^()]*+\)[^()]*+)*+\)"
_ARROW_VALUE = rf"(?:async\s++)?(?:function\b|(?:{_JS_PARENS}|{_ID})\s*+(?::[^=;{{]*+)?=>)"
JS = LanguageSpec(
    Syntax.of(_LINE, _BLOCK, _DQ, ("'", quoted("'", multiline=False)), ("`", quoted("`", multiline=True))),
    (
        _decl("function", "function", rf"^{_JS_EXPORT}(?:async\s++)?function\b\s*+(?:\*\s*+)?(?P<name>{_ID})"),
        _decl("class", "class", rf"^{_JS_EXPORT}(?:abstract\s++)?class\s++(?P<name>{_ID})", _JS_METHOD),
        _decl("interface", "interface", rf"^{_JS_EXPORT}interface\s++(?P<name>{_ID})"),
        _decl("type", "type", rf"^{_JS_EXPORT}type\s++(?P<name>{_ID})\s*+(?:<[^=\n]*>\s*+)?="),
        _decl("enum", "enum", rf"^{_JS_EXPORT}(?:const\s++)?enum\s++(?P<name>{_ID})"),
        _decl("arrow", "=", rf"^{_JS_EXPORT}(?:const|let|var)\s++(?P<name>{_ID})\s*+(?::[^=\n]++)?=\s*+{_ARROW_VALUE}"),
    ),
)

GO = LanguageSpec(
    Syntax.of(_LINE, _BLOCK, _DQ, ("`", until("`")), _CHAR),
    (
        _decl("function", "func", r"^func[ \t]*+(?:\((?P<recv>[^)\n]*+)\)\s*+)?(?P<name>\w++)"),
        _decl("type", "type", r"^type\s++(?P<name>\w++)(?:\[[^\]\n]*+\])?\s++(?:=\s*+)?(?P<what>struct|interface)?"),
    ),
    (_go_type_groups,),
)

_RS_VIS = r"(?:pub(?:\([^)\n]*+\))?\s++)?"
_RS_FN = rf"{_RS_VIS}(?:(?:const|async|unsafe|extern|default)[ \t]++)*+fn\s++(?P<name>\w++)"
_RS_GENERICS = r"<(?:[^<>{\n]|<(?:[^<>{\n]|<[^<>{\n]*+>)*+>)*+>"  # nested three deep
_RS_MEMBER = _re(rf"^[ \t]++(?P<head>{_RS_FN})")
RUST = LanguageSpec(
    Syntax.of(
        _LINE,
        (r"/\*", nested("/*", "*/")),
        (r'b?r#*"', raw_hashes),
        (r'b?"', quoted('"', multiline=True)),
        (r"b?'", char_literal),
    ),
    (
        _decl("function", "fn", rf"^{_RS_FN}"),
        _decl("struct", "struct", rf"^{_RS_VIS}struct\s++(?P<name>\w++)"),
        _decl("enum", "enum", rf"^{_RS_VIS}enum\s++(?P<name>\w++)"),
        _decl("union", "union", rf"^{_RS_VIS}union\s++(?P<name>\w++)"),
        _decl("type", "type", rf"^{_RS_VIS}type\s++(?P<name>\w++)"),
        _decl("trait", "trait", rf"^{_RS_VIS}(?:unsafe\s++)?(?:auto\s++)?trait\s++(?P<name>\w++)", _RS_MEMBER),
        _decl(
            "impl",
            "impl",
            rf"^(?:unsafe\s++)?impl\b(?:\s*+{_RS_GENERICS})?\s++(?P<name>[^{{;\n]++)(?=\{{|$)",
            _RS_MEMBER,
            clean=_before_where,
        ),
    ),
)

_JAVA_ANNOTATIONS = r"(?:@\w++(?:\([^)\n]*+\))?[ \t]++)*+"
_JAVA_TYPE_MODS = r"(?:(?:abstract|final|sealed|non-sealed|static|strictfp)[ \t]++)*+"
_JAVA_METHOD_MODS = r"(?:(?:static|final|abstract|synchronized|native|default|strictfp)[ \t]++)*+"
_JAVA_TYPE_WORD = r"[\w$.<>\[\]?,]++[ \t]++"  # one word of a return type (`Map<K,`, `V>`, `int[]`)
_JAVA_METHOD = _re(
    rf"^[ \t]++{_JAVA_ANNOTATIONS}(?P<head>public\s++{_JAVA_METHOD_MODS}(?:<[^>\n]*+>\s++)?"
    rf"(?:{_JAVA_TYPE_WORD})*?(?P<name>\w++))\s*+\("
)
_JAVA_INTERFACE_METHOD = _re(
    rf"^[ \t]++{_JAVA_ANNOTATIONS}(?P<head>(?:(?:public|static|default|abstract)[ \t]++)*+(?:<[^>\n]*+>\s++)?"
    rf"(?:{_JAVA_TYPE_WORD})+?(?P<name>\w++))\s*+\("
)
_JAVA_TYPE = rf"^public\s++{_JAVA_TYPE_MODS}"
JAVA = LanguageSpec(
    Syntax.of(_LINE, _BLOCK, ('"""', quoted('"""', multiline=True)), _DQ, _CHAR),
    (
        _decl("class", "public", rf"{_JAVA_TYPE}(?P<what>class|enum|record)\s++(?P<name>\w++)", _JAVA_METHOD),
        _decl(
            "interface",
            "interface",
            rf"{_JAVA_TYPE}(?P<what>interface|@interface)\s++(?P<name>\w++)",
            _JAVA_INTERFACE_METHOD,
        ),
    ),
)

BRACE_LANGUAGES: dict[str, LanguageSpec] = {"JavaScript": JS, "TypeScript": JS, "Go": GO, "Rust": RUST, "Java": JAVA}
