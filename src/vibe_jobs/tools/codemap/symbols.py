"""Language detection and top-level symbol extraction: Python via `ast`, the brace languages by pattern.

Every extraction has a time budget, checked as it goes: a file over budget gets no symbols and a
diagnostic, never a frozen server. `ast.parse` cannot be interrupted and holds the GIL (about
1.3 s a megabyte here), so Python files above `AST_MAX_BYTES` are outlined by a linear scan instead.
"""

from __future__ import annotations

import ast
import bisect
import os
import re
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

from vibe_jobs.tools.codemap.braces import BRACE_LANGUAGES, LineIndex, brace_symbols, render_signature, signature_end
from vibe_jobs.tools.codemap.model import Symbol
from vibe_jobs.tools.codemap.quota import MAX_SYMBOLS_PER_FILE, Quota
from vibe_jobs.tools.codemap.scan import OverBudget, Syntax, blank_noise, line_comment, quoted

AST_MAX_BYTES = 128 * 1024

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
    """Symbols found in one file, and why some or all were left out (if any were)."""

    symbols: list[Symbol]
    error: str | None = None


Check = Callable[[], None]


def extract_symbols(
    language: str, data: bytes, *, budget: float | None = None, max_symbols: int = MAX_SYMBOLS_PER_FILE
) -> Extraction:
    """Extract the first `max_symbols` symbols of `data` written in `language` within `budget` seconds (nested
    ones count); never raises for bad input."""
    check, quota = _deadline(budget), Quota(max_symbols)
    try:
        found = _extract(language, data, check, quota)
        return found if found.error else Extraction(found.symbols, quota.note())
    except OverBudget:
        return Extraction([], f"symbols left out: reading them took over {budget:g} s")
    except (RecursionError, MemoryError) as exc:  # nesting too deep for ast.unparse, say
        return Extraction([], f"symbols left out: {type(exc).__name__}: {exc}")


def _deadline(budget: float | None) -> Check:
    if budget is None:
        return lambda: None
    deadline = time.monotonic() + budget

    def check() -> None:
        if time.monotonic() > deadline:
            raise OverBudget

    return check


def _extract(language: str, data: bytes, check: Check, quota: Quota) -> Extraction:
    if language == "Python" and len(data) <= AST_MAX_BYTES:
        return _python(data, quota)
    spec = BRACE_LANGUAGES.get(language)
    if spec is None and language != "Python":
        return Extraction([])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return Extraction([], f"not valid UTF-8 (byte {exc.start})")
    return Extraction(python_outline(text, check, quota) if spec is None else brace_symbols(text, spec, check, quota))


# --- Python -------------------------------------------------------------------------------------

_FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef
# `warnings.catch_warnings` swaps process-wide state: parses in worker threads take turns (CPU only, no I/O).
_WARNINGS_LOCK = threading.Lock()


def _python(data: bytes, quota: Quota) -> Extraction:
    try:
        with _WARNINGS_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. SyntaxWarning for invalid escapes in parsed sources
            tree = ast.parse(data)
    except SyntaxError as exc:
        where = f" at line {exc.lineno}" if exc.lineno is not None else ""  # a NUL byte's error has no line
        return Extraction([], f"syntax error{where}: {exc.msg}")
    except (ValueError, RecursionError, MemoryError) as exc:
        return Extraction([], f"cannot parse: {type(exc).__name__}: {exc}")
    return Extraction([s for node in tree.body if (s := _python_symbol(node, quota, in_class=False))])


def _python_symbol(node: ast.stmt, quota: Quota, *, in_class: bool) -> Symbol | None:
    if not isinstance(node, _FunctionNode | ast.ClassDef) or not quota.take():
        return None
    if isinstance(node, ast.ClassDef):
        members = [s for child in node.body if (s := _python_symbol(child, quota, in_class=True))]
        bases = [_expr(base) for base in node.bases] + [ast.unparse(kw) for kw in node.keywords]
        signature = f"class {node.name}({', '.join(bases)})" if bases else f"class {node.name}"
        return Symbol(kind="class", name=node.name, signature=signature, line=node.lineno, children=members or None)
    kind = "method" if in_class else "function"
    return Symbol(kind=kind, name=node.name, signature=python_signature(node), line=node.lineno)


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


# --- Python files too large for ast: a linear outline ------------------------------------------

PYTHON = Syntax.of(
    ("#", line_comment),
    ('"""', quoted('"""', multiline=True)),
    ("'''", quoted("'''", multiline=True)),
    ('"', quoted('"', multiline=False)),
    ("'", quoted("'", multiline=False)),
)
_PY_DEF = re.compile(
    r"^(?P<indent>[ \t]*+)(?P<head>(?:async[ \t]++)?def[ \t]++(?P<def>\w++)|class[ \t]++(?P<cls>\w++))", re.M
)
_PY_TOP = re.compile(r"^[^\s]", re.M)
_PY_HEAD_STOP = re.compile(r"[()\[\]:\n]")


@dataclass
class _Frame:
    """An open class while outlining: its symbol, its indentation, that of its body, where its head ends."""

    symbol: Symbol
    indent: str
    body: str
    head_end: int


def python_outline(text: str, check: Check = lambda: None, quota: Quota | None = None) -> list[Symbol]:
    """Top-level classes and functions, the methods and classes inside classes (as `ast` finds them), by scan:
    the first ones `quota` has room for."""
    quota = quota or Quota()
    masked = blank_noise(text, PYTHON, check)
    lines, tops = LineIndex(text), [m.start() for m in _PY_TOP.finditer(masked)]
    found: list[Symbol] = []
    frames: list[_Frame] = []
    matches = list(_PY_DEF.finditer(masked))
    for count, match in enumerate(matches):
        if count % 256 == 255:
            check()
        start, indent = match.start("head"), match["indent"]
        if frames and _next_top(tops, frames[0].head_end) < start:  # a statement in column 0 closed them all
            frames.clear()
        while frames and len(frames[-1].indent) >= len(indent):
            frames.pop()
        if (frames and indent != frames[-1].body) or (not frames and indent):
            continue  # inside a function, or a block that is no class body (`if`, `for`, ...)
        if not quota.take():
            continue
        limit = matches[count + 1].start() if count + 1 < len(matches) else None
        end = signature_end(masked, start, _PY_HEAD_STOP, limit)
        symbol = _outlined(match, render_signature(text, start, end).rstrip(":"), lines.line(start), bool(frames))
        if frames:
            frames[-1].symbol.children = [*(frames[-1].symbol.children or ()), symbol]
        else:
            found.append(symbol)
        if symbol.kind == "class":
            frames.append(_Frame(symbol, indent, _body_indent(masked, end), end))
    return found


def _outlined(match: re.Match[str], signature: str, line: int, in_class: bool) -> Symbol:
    kind = "class" if match["cls"] is not None else "method" if in_class else "function"
    return Symbol(kind=kind, name=match["cls"] or match["def"], signature=signature, line=line)


def _body_indent(masked: str, head_end: int) -> str:
    """The indentation of the first line with code after a class head."""
    found = _PY_BODY.search(masked, head_end)
    return found[1] if found is not None else ""


_PY_BODY = re.compile(r"\n([ \t]*+)[^\s]")


def _next_top(tops: list[int], after: int) -> int:
    """Where the next line that starts in column 0 begins (the end of a top-level block)."""
    index = bisect.bisect_right(tops, after)
    return tops[index] if index < len(tops) else 1 << 62
