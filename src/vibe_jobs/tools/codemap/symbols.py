"""Language detection and top-level symbol extraction (Python via `ast`, others via regexes).

The regex extractors first blank out comments and string literals (keeping offsets and line
breaks), then look for declarations that start in column 0; members (methods) are searched
inside the declaration's `{...}` block at nesting depth one.
"""

from __future__ import annotations

import ast
import bisect
import os
import re
from collections.abc import Callable
from dataclasses import dataclass

from vibe_jobs.tools.codemap.model import Symbol

LANGUAGES: dict[str, str] = {
    **dict.fromkeys((".py", ".pyi", ".pyw"), "Python"),
    **dict.fromkeys((".js", ".mjs", ".cjs", ".jsx"), "JavaScript"),
    **dict.fromkeys((".ts", ".mts", ".cts", ".tsx"), "TypeScript"),
    ".go": "Go",
    ".rs": "Rust",
    ".java": "Java",
    **dict.fromkeys((".c", ".h"), "C"),
    **dict.fromkeys((".cc", ".cpp", ".cxx", ".hpp", ".hh", ".hxx"), "C++"),
    ".cs": "C#",
    ".kt": "Kotlin",
    ".swift": "Swift",
    ".rb": "Ruby",
    ".php": "PHP",
    **dict.fromkeys((".sh", ".bash", ".zsh"), "Shell"),
    ".sql": "SQL",
    **dict.fromkeys((".html", ".htm"), "HTML"),
    **dict.fromkeys((".css", ".scss", ".less"), "CSS"),
    **dict.fromkeys((".md", ".markdown"), "Markdown"),
    ".rst": "reStructuredText",
    ".json": "JSON",
    **dict.fromkeys((".yaml", ".yml"), "YAML"),
    ".toml": "TOML",
    ".xml": "XML",
    **dict.fromkeys((".ini", ".cfg"), "INI"),
    ".txt": "Text",
}
SPECIAL_NAMES = {"Makefile": "Makefile", "Dockerfile": "Dockerfile", "CMakeLists.txt": "CMake"}


def detect_language(name: str) -> str:
    """The language of a file, from its name; "other" when unknown."""
    base = os.path.basename(name)
    return SPECIAL_NAMES.get(base) or LANGUAGES.get(os.path.splitext(base)[1].lower(), "other")


def count_lines(data: bytes) -> int:
    """Number of lines (a last line without a newline counts)."""
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


@dataclass(frozen=True)
class Extraction:
    """Symbols found in one file, and why extraction failed (if it did)."""

    symbols: list[Symbol]
    error: str | None = None


def extract_symbols(language: str, data: bytes) -> Extraction:
    """Extract the symbols of `data` written in `language`; never raises for bad input."""
    if language == "Python":
        return _python(data)
    spec = REGEX_LANGUAGES.get(language)
    if spec is None:
        return Extraction([])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return Extraction([], f"not valid UTF-8 (byte {exc.start})")
    return Extraction(regex_symbols(text, spec))


# --- Python -------------------------------------------------------------------------------------

_FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef


def _python(data: bytes) -> Extraction:
    try:
        tree = ast.parse(data)
    except SyntaxError as exc:
        return Extraction([], f"syntax error at line {exc.lineno}: {exc.msg}")
    except (ValueError, RecursionError, MemoryError) as exc:
        return Extraction([], f"cannot parse: {type(exc).__name__}: {exc}")
    return Extraction([s for node in tree.body if (s := _python_symbol(node, in_class=False))])


def _python_symbol(node: ast.stmt, *, in_class: bool) -> Symbol | None:
    if isinstance(node, _FunctionNode):
        kind = "method" if in_class else "function"
        return Symbol(kind=kind, name=node.name, signature=python_signature(node), line=node.lineno)
    if isinstance(node, ast.ClassDef):
        members = [s for child in node.body if (s := _python_symbol(child, in_class=True))]
        bases = [_expr(base) for base in node.bases] + [ast.unparse(kw) for kw in node.keywords]
        signature = f"class {node.name}({', '.join(bases)})" if bases else f"class {node.name}"
        return Symbol(kind="class", name=node.name, signature=signature, line=node.lineno, children=members or None)
    return None


def python_signature(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    """`def f(a: int, b=2) -> str`, with `async ` in front for coroutines."""
    prefix = "async def" if isinstance(node, ast.AsyncFunctionDef) else "def"
    returns = f" -> {_expr(node.returns)}" if node.returns is not None else ""
    return f"{prefix} {node.name}({python_parameters(node.args)}){returns}"


def python_parameters(args: ast.arguments) -> str:
    """The parameter list as `ast.unparse` writes it (PEP 8 spacing: `x: int = 1`), but faster."""
    positional = args.posonlyargs + args.args
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    parts = [_parameter(arg, default) for arg, default in zip(positional, defaults, strict=True)]
    if args.posonlyargs:
        parts.insert(len(args.posonlyargs), "/")
    if args.vararg is not None:
        parts.append("*" + _parameter(args.vararg, None))
    elif args.kwonlyargs:
        parts.append("*")
    parts += [_parameter(arg, default) for arg, default in zip(args.kwonlyargs, args.kw_defaults, strict=True)]
    if args.kwarg is not None:
        parts.append("**" + _parameter(args.kwarg, None))
    return ", ".join(parts)


def _parameter(arg: ast.arg, default: ast.expr | None) -> str:
    if arg.annotation is None:
        return arg.arg if default is None else f"{arg.arg}={_expr(default)}"
    annotated = f"{arg.arg}: {_expr(arg.annotation)}"
    return annotated if default is None else f"{annotated} = {_expr(default)}"


def _expr(node: ast.expr) -> str:
    """`ast.unparse`, short-cut for plain names, dotted names and simple constants."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return f"{node.value.id}.{node.attr}"
    if isinstance(node, ast.Constant) and (node.value is None or type(node.value) in (bool, int)):
        return repr(node.value)
    return ast.unparse(node)


# --- regex languages: masking, lines, signatures, blocks ----------------------------------------


def _blank(match: re.Match[str]) -> str:
    chunk = match.group()
    return _NOT_NEWLINE.sub(" ", chunk) if "\n" in chunk else " " * len(chunk)


_NOT_NEWLINE = re.compile(r"[^\n]")
_BLOCK_COMMENT = r"/\*.*?\*/"
_LINE_COMMENT = r"//[^\n]*"
_DQ = r'"(?:\\.|[^"\\\n])*"'
_SQ = r"'(?:\\.|[^'\\\n])*'"
_JS_NOISE = (_LINE_COMMENT, _BLOCK_COMMENT, _DQ, _SQ, r"`(?:\\.|[^`\\])*`")
_GO_NOISE = (_LINE_COMMENT, _BLOCK_COMMENT, _DQ, r"`[^`]*`", r"'(?:\\.|[^'\\\n])+'")
_RUST_NOISE = (_LINE_COMMENT, _BLOCK_COMMENT, r'r(#*)".*?"\1', r'b?"(?:\\.|[^"\\])*"', r"b?'(?:\\.|[^'\\\n])'")
_JAVA_NOISE = (_LINE_COMMENT, _BLOCK_COMMENT, r'""".*?"""', _DQ, r"'(?:\\.|[^'\\\n])+'")


def mask(text: str, noise: re.Pattern[str]) -> str:
    """`text` with comments and string literals replaced by spaces (same length and lines)."""
    return noise.sub(_blank, text)


class LineIndex:
    """Offset -> 1-based line number."""

    def __init__(self, text: str) -> None:
        self._starts = [m.end() for m in _NEWLINE.finditer(text)]

    def line(self, offset: int) -> int:
        return bisect.bisect_right(self._starts, offset) + 1


_NEWLINE = re.compile(r"\n")
_SIG_STOP = re.compile(r"[()\[\]{};\n]")
SIGNATURE_MAX = 200


def signature_end(masked: str, start: int) -> int:
    """Where a declaration's head ends: `{`, `;` or a line break outside brackets."""
    depth = 0
    for found in _SIG_STOP.finditer(masked, start, start + 1000):
        char = found.group()
        if char in "([":
            depth += 1
        elif char in ")]":
            depth = max(depth - 1, 0)
        elif depth == 0:
            return found.start()
    return min(len(masked), start + 1000)


def render_signature(text: str, start: int, end: int) -> str:
    """The source between `start` and `end`, whitespace collapsed, trailing `=` dropped, capped."""
    head = " ".join(text[start:end].split()).rstrip(" =")
    return head if len(head) <= SIGNATURE_MAX else head[: SIGNATURE_MAX - 1] + "…"


def block_end(masked: str, open_brace: int) -> int:
    """Offset of the `}` closing the `{` at `open_brace` (end of text when unbalanced)."""
    return _closing(masked, open_brace, _BRACES, "{")


def _closing(masked: str, opening: int, pairs: re.Pattern[str], opener: str) -> int:
    depth = 0
    for found in pairs.finditer(masked, opening):
        depth += 1 if found.group() == opener else -1
        if depth == 0:
            return found.start()
    return len(masked)


_BRACES = re.compile(r"[{}]")
_PARENS = re.compile(r"[()]")


# --- regex languages: declarations --------------------------------------------------------------


@dataclass(frozen=True)
class Decl:
    """A declaration pattern: `name` group required; `what` group (if any) overrides `kind`."""

    kind: str
    regex: re.Pattern[str]
    members: re.Pattern[str] | None = None
    member_kind: str = "method"
    keyword: str = ""  # the regex is skipped for files that do not contain this word


@dataclass(frozen=True)
class _Source:
    text: str
    masked: str
    lines: LineIndex

    def symbol(self, kind: str, name: str, start: int, end: int | None = None) -> Symbol:
        stop = signature_end(self.masked, start) if end is None else end
        signature = render_signature(self.text, start, stop)
        return Symbol(kind=kind, name=name, signature=signature, line=self.lines.line(start))


@dataclass(frozen=True)
class LanguageSpec:
    """How to find the symbols of one brace language."""

    noise: re.Pattern[str]
    decls: tuple[Decl, ...]
    extra: tuple[Callable[[_Source], list[tuple[int, Symbol]]], ...] = ()


def regex_symbols(text: str, spec: LanguageSpec) -> list[Symbol]:
    """Symbols of one file in a brace language, in source order."""
    source = _Source(text, mask(text, spec.noise), LineIndex(text))
    found: list[tuple[int, Symbol]] = []
    for decl in spec.decls:
        if decl.keyword not in source.masked:
            continue
        for match in decl.regex.finditer(source.masked):
            found.append((match.start(), _declaration(source, decl, match)))
    for hook in spec.extra:
        found.extend(hook(source))
    found.sort(key=lambda item: item[0])
    return [symbol for _, symbol in found]


def _declaration(source: _Source, decl: Decl, match: re.Match[str]) -> Symbol:
    groups = match.groupdict()
    kind = KIND_WORDS.get(groups.get("what") or "", decl.kind)
    name = match["name"]
    if groups.get("recv"):
        kind, name = "method", f"{go_receiver_type(groups['recv'])}.{name}"
    end = match.end() if kind == "arrow" else None
    symbol = source.symbol("function" if kind == "arrow" else kind, name, match.start(), end)
    if decl.members is not None:
        symbol.children = _members(source, match.end(), decl) or None
    return symbol


KIND_WORDS = {"@interface": "annotation", "struct": "struct", "interface": "interface"}
KIND_WORDS |= {"class": "class", "enum": "enum", "record": "record"}
NOT_NAMES = frozenset({"if", "for", "while", "switch", "catch", "return", "function"})  # JS statements


def _members(source: _Source, after: int, decl: Decl) -> list[Symbol]:
    """Members matching `decl.members` at depth one of the block opened after `after`."""
    open_brace = _block_open(source.masked, after)
    if open_brace is None or decl.members is None:
        return []
    close = block_end(source.masked, open_brace)
    members: list[Symbol] = []
    depth, cursor = 0, open_brace + 1
    for match in decl.members.finditer(source.masked, open_brace + 1, close):
        depth += source.masked.count("{", cursor, match.start()) - source.masked.count("}", cursor, match.start())
        cursor = match.start()
        if depth == 0 and match["name"] not in NOT_NAMES:
            members.append(source.symbol(decl.member_kind, match["name"], match.start("head")))
    return members


def _block_open(masked: str, after: int) -> int | None:
    """The `{` opening the declaration's body, unless a `;` ends the declaration first."""
    found = _OPEN_OR_END.search(masked, after)
    return found.start() if found is not None and found.group() == "{" else None


_OPEN_OR_END = re.compile(r"[{;]")


def go_receiver_type(receiver: str) -> str:
    """`s *Server[T]` -> `Server`."""
    words = receiver.split()
    return (words[-1] if words else receiver).lstrip("*").split("[")[0]


def _go_type_groups(source: _Source) -> list[tuple[int, Symbol]]:
    """The types declared in `type ( ... )` groups."""
    found: list[tuple[int, Symbol]] = []
    for group in _GO_TYPE_GROUP.finditer(source.masked):
        close = _closing(source.masked, group.end() - 1, _PARENS, "(")
        for spec in _GO_TYPE_SPEC.finditer(source.masked, group.end(), close):
            kind = KIND_WORDS.get(spec["what"] or "", "type")
            found.append((spec.start("name"), source.symbol(kind, spec["name"], spec.start("name"))))
    return found


_GO_TYPE_GROUP = re.compile(r"^type\s*\(", re.M)
_GO_TYPE_SPEC = re.compile(r"^[ \t](?P<name>\w+)(?:\[[^\]\n]*\])?[ \t]+(?:=\s*)?(?P<what>struct|interface)?", re.M)


# --- regex languages: the tables ----------------------------------------------------------------


def _re(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.M)


def _decl(kind: str, keyword: str, pattern: str, members: re.Pattern[str] | None = None) -> Decl:
    return Decl(kind, _re(pattern), members, keyword=keyword)


_ID = r"[A-Za-z_$][\w$]*"
_JS_EXPORT = r"(?:export\s+(?:default\s+)?)?(?:declare\s+)?"
_JS_METHOD = _re(
    r"^[ \t]+(?P<head>(?:(?:static|async|public|private|protected|readonly|override|abstract|get|set)\s+)*"
    rf"\*?(?P<name>#?{_ID}))\s*(?:<[^>\n]*>)?\s*\("
)
_ARROW_VALUE = r"(?:async\s+)?(?:function\b|(?:\([^()]*(?:\([^()]*\)[^()]*)*\)|" + _ID + r")\s*(?::[^=;{]+?)?\s*=>)"
JS = LanguageSpec(
    re.compile("|".join(_JS_NOISE), re.S),
    (
        _decl("function", "function", rf"^{_JS_EXPORT}(?:async\s+)?function\b\s*\*?\s*(?P<name>{_ID})"),
        _decl("class", "class", rf"^{_JS_EXPORT}(?:abstract\s+)?class\s+(?P<name>{_ID})", _JS_METHOD),
        _decl("interface", "interface", rf"^{_JS_EXPORT}interface\s+(?P<name>{_ID})"),
        _decl("type", "type", rf"^{_JS_EXPORT}type\s+(?P<name>{_ID})\s*(?:<[^=\n]*>)?\s*="),
        _decl("enum", "enum", rf"^{_JS_EXPORT}(?:const\s+)?enum\s+(?P<name>{_ID})"),
        _decl("arrow", "=", rf"^{_JS_EXPORT}(?:const|let|var)\s+(?P<name>{_ID})\s*(?::[^=\n]+)?=\s*{_ARROW_VALUE}"),
    ),
)

GO = LanguageSpec(
    re.compile("|".join(_GO_NOISE), re.S),
    (
        _decl("function", "func", r"^func\s*(?:\((?P<recv>[^)]*)\)\s*)?(?P<name>\w+)"),
        _decl("type", "type", r"^type\s+(?P<name>\w+)(?:\[[^\]\n]*\])?\s+(?:=\s*)?(?P<what>struct|interface)?"),
    ),
    (_go_type_groups,),
)

_RS_VIS = r"(?:pub(?:\([^)\n]*\))?\s+)?"
_RS_FN = rf"{_RS_VIS}(?:(?:const|async|unsafe|extern|default)\s+)*fn\s+(?P<name>\w+)"
_RS_MEMBER = _re(rf"^[ \t]+(?P<head>{_RS_FN})")
RUST = LanguageSpec(
    re.compile("|".join(_RUST_NOISE), re.S),
    (
        _decl("function", "fn", rf"^{_RS_FN}"),
        _decl("struct", "struct", rf"^{_RS_VIS}struct\s+(?P<name>\w+)"),
        _decl("enum", "enum", rf"^{_RS_VIS}enum\s+(?P<name>\w+)"),
        _decl("union", "union", rf"^{_RS_VIS}union\s+(?P<name>\w+)"),
        _decl("type", "type", rf"^{_RS_VIS}type\s+(?P<name>\w+)"),
        _decl("trait", "trait", rf"^{_RS_VIS}(?:unsafe\s+)?(?:auto\s+)?trait\s+(?P<name>\w+)", _RS_MEMBER),
        _decl(
            "impl",
            "impl",
            r"^(?:unsafe\s+)?impl\b(?:\s*<[^{\n]*?>)?\s+(?P<name>[^{;\n]+?)\s*(?=where\b|\{|$)",
            _RS_MEMBER,
        ),
    ),
)

_JAVA_ANNOTATIONS = r"(?:@\w+(?:\([^)\n]*\))?\s+)*"
_JAVA_TYPE_MODS = r"(?:(?:abstract|final|sealed|non-sealed|static|strictfp)\s+)*"
_JAVA_METHOD_MODS = r"(?:(?:static|final|abstract|synchronized|native|default|strictfp)\s+)*"
_JAVA_METHOD = _re(
    rf"^[ \t]+{_JAVA_ANNOTATIONS}(?P<head>public\s+{_JAVA_METHOD_MODS}(?:<[^>\n]*>\s+)?"
    r"(?:[\w$.<>\[\]?, ]+?\s+)?(?P<name>\w+))\s*\("
)
_JAVA_INTERFACE_METHOD = _re(
    rf"^[ \t]+{_JAVA_ANNOTATIONS}(?P<head>(?:(?:public|static|default|abstract)\s+)*(?:<[^>\n]*>\s+)?"
    r"[\w$.<>\[\]?, ]+?\s+(?P<name>\w+))\s*\("
)
_JAVA_TYPE = rf"^public\s+{_JAVA_TYPE_MODS}"
JAVA = LanguageSpec(
    re.compile("|".join(_JAVA_NOISE), re.S),
    (
        _decl("class", "public", rf"{_JAVA_TYPE}(?P<what>class|enum|record)\s+(?P<name>\w+)", _JAVA_METHOD),
        _decl(
            "interface",
            "interface",
            rf"{_JAVA_TYPE}(?P<what>interface|@interface)\s+(?P<name>\w+)",
            _JAVA_INTERFACE_METHOD,
        ),
    ),
)

REGEX_LANGUAGES: dict[str, LanguageSpec] = {"JavaScript": JS, "TypeScript": JS, "Go": GO, "Rust": RUST, "Java": JAVA}
