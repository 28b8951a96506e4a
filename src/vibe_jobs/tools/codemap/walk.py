"""Directory walking for `map-codebase`: .gitignore rules, skipped folders, binaries, symlinks.

Gitignore semantics implemented here: `#` comments, `\\` escapes, trailing-space trimming,
negation `!`, directory-only `dir/`, anchoring (a `/` anywhere but at the end), `*`, `?`,
`[...]`, and `**` (leading `**/`, trailing `/**`, inner `/**/`). A deeper .gitignore overrides
a shallower one; inside one file the last matching pattern wins; an ignored directory is not
entered, so nothing below it can be re-included (as in git).

Compiling patterns costs the server time by the character (a regex alternation of them all; the figure
is in bench/MEASUREMENTS.md), so a set of patterns is bounded: a .gitignore's first `PATTERNS_MAX`
patterns of `PATTERNS_MAX_CHARS` characters are honoured (a diagnostic says the rest were ignored), and
include/exclude globs past them are refused. The walk runs in a worker thread and checks its `stop` flag
at every folder.
"""

from __future__ import annotations

import os
import re
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vibe_jobs.tools.codemap.safeio import DIR_FLAGS, Refused, opened, read_regular
from vibe_jobs.tools.roots import is_within

SKIP_DIRS: dict[str, str] = {
    ".git": "vcs",
    ".hg": "vcs",
    ".svn": "vcs",
    ".venv": "virtualenv",
    "venv": "virtualenv",
    "node_modules": "dependencies",
    "__pycache__": "cache",
    ".mypy_cache": "cache",
    ".pytest_cache": "cache",
    ".ruff_cache": "cache",
    ".tox": "cache",
    "build": "build",
    "dist": "build",
    "target": "build",
    "out": "build",
}

_BINARY_EXTENSION_WORDS = (
    "png jpg jpeg gif bmp ico icns webp tif tiff psd pdf zip gz tgz bz2 xz zst 7z rar tar jar war ear"
    " class so dylib dll exe o obj a lib pyc pyo pyd whl egg woff woff2 ttf otf eot mp3 mp4 m4a wav ogg"
    " flac avi mov mkv webm sqlite sqlite3 db bin iso dmg parquet npy npz pkl pickle h5 onnx pt pth wasm"
)
BINARY_EXTENSIONS = frozenset("." + word for word in _BINARY_EXTENSION_WORDS.split())

BINARY_SNIFF_BYTES = 8192
GITIGNORE_MAX_BYTES = 1024 * 1024
_GITIGNORE_REFUSED = {  # why a .gitignore was not read, in words (the keys are skip counters)
    "special": "not a regular file",
    "too-large": f"larger than {GITIGNORE_MAX_BYTES:,} bytes",
    "symlink-outside-roots": "a link out of the allowed roots",
}
PATTERNS_MAX = 1_000  # patterns in one set: a .gitignore, the include or the exclude globs
PATTERNS_MAX_CHARS = 16 * 1024  # their text together: at most about 0.15 s of compiling
LIMITS = f"at most {PATTERNS_MAX:,} patterns of {PATTERNS_MAX_CHARS:,} characters together"


def looks_binary(head: bytes) -> bool:
    """True when the first 8 KiB of a file contain a NUL byte."""
    return b"\0" in head[:BINARY_SNIFF_BYTES]


def has_binary_extension(name: str) -> bool:
    """True for file names with a well-known binary extension."""
    return os.path.splitext(name)[1].lower() in BINARY_EXTENSIONS


# --- gitignore patterns -------------------------------------------------------------------------


# Any number of leading directories (`**/`): it backtracks over directory boundaries only.
ANY_DIRS = "(?:[^/]*+/)*"


def _char_class(pattern: str, start: int) -> tuple[str, int] | None:
    """Translate the `[...]` starting at `start`; None when it is not closed or not a valid set."""
    end = pattern.find("]", start + 2 if pattern[start + 1 : start + 2] in ("!", "^", "]") else start + 1)
    if end < 0:
        return None
    body = pattern[start + 1 : end]
    negated = body[:1] in ("!", "^")
    chars = "".join("-" if char == "-" else re.escape(char) for char in (body[1:] if negated else body))
    klass = f"[^/{chars}]" if negated else f"[{chars}]"
    try:
        re.compile(klass)
    except re.error:  # `[z-a]`: the `[` is then an ordinary character
        return None
    return klass, end + 1


def translate_glob(pattern: str) -> str:
    """Translate one gitignore glob (no leading `!`, no trailing `/`) into a regex source.

    The regex stays linear-ish on any file name: within one path component, every `*` but the
    last takes the earliest place its following text fits, atomically (what fnmatch does), so a
    pattern like `*a*a*a*a*b` cannot backtrack through every way to split a long name.
    """
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        at_boundary = i == 0 or pattern[i - 1] == "/"
        if at_boundary and pattern.startswith("**/", i):
            out.append(ANY_DIRS)
            i += 3
        elif at_boundary and pattern.startswith("**", i) and i + 2 == n:
            out.append("[\\s\\S]*")  # anything, a newline in a name too (`.` stops at one)
            i += 2
        else:
            piece, i = _component(pattern, i)
            out.append(piece)
    return "".join(out)


def _component(pattern: str, i: int) -> tuple[str, int]:
    """Translate the path component starting at `i` (up to and with its `/`); the regex and the next index."""
    chunks: list[list[str]] = [[]]  # the text before the first `*`, then the text after each `*`
    while i < len(pattern) and pattern[i] != "/":
        if pattern[i] == "*":
            if chunks[-1] or len(chunks) == 1:  # `**` inside a component is one `*`
                chunks.append([])
            i += 1
            continue
        piece, i = _glob_atom(pattern, i)
        chunks[-1].append(piece)
    head, *starred = ["".join(chunk) for chunk in chunks]
    middle = "".join(f"(?>[^/]*?{chunk})" for chunk in starred[:-1])
    tail = f"[^/]*{starred[-1]}" if starred else ""
    slash = "/" if i < len(pattern) else ""
    return head + middle + tail + slash, i + len(slash)


def _glob_atom(pattern: str, i: int) -> tuple[str, int]:
    """Translate the single glob element at `i` (no `*`); returns the regex piece and the next index."""
    char = pattern[i]
    if char == "?":
        return "[^/]", i + 1
    if char == "\\" and i + 1 < len(pattern):
        return re.escape(pattern[i + 1]), i + 2
    if char == "[" and (klass := _char_class(pattern, i)) is not None:
        return klass
    return re.escape(char), i + 1


@dataclass(frozen=True)
class _Rule:
    regex: str
    negated: bool
    dir_only: bool


def _trimmed(line: str) -> str:
    """The line without its line break and trailing spaces, but for one escaped (`\\ `)."""
    line = line.rstrip("\r\n")
    trimmed = line.rstrip(" ")
    return trimmed + " " if trimmed.endswith("\\") and len(trimmed) < len(line) else trimmed


def _is_pattern(line: str) -> bool:
    return bool(line.strip(" \r\n")) and not line.startswith("#")


def honoured(lines: Iterable[str]) -> tuple[list[str], int]:
    """The first pattern lines (no blanks or comments) within `LIMITS`, and how many pattern lines come after."""
    kept: list[str] = []
    chars = past = 0
    for line in filter(_is_pattern, lines):
        chars += len(line)
        if past or len(kept) >= PATTERNS_MAX or chars > PATTERNS_MAX_CHARS:
            past += 1
        else:
            kept.append(line)
    return kept, past


class PatternsRefused(ValueError):
    """Include or exclude globs past `LIMITS`."""


def check_globs(name: str, globs: Sequence[str] | None) -> None:
    """Raise `PatternsRefused` (naming the argument `name` and the limits) when `globs` are past `LIMITS`."""
    if globs and honoured(globs)[1]:
        size = sum(map(len, globs))
        raise PatternsRefused(f"{name}: {len(globs):,} patterns of {size:,} characters; {LIMITS}")


def _parse_line(line: str) -> _Rule | None:
    """One .gitignore line as a rule, or None for blanks and comments."""
    line = _trimmed(line)
    if not line or line.startswith("#"):
        return None
    negated = line.startswith("!")
    body = line[1:] if negated else line
    dir_only = body.endswith("/")
    body = body.rstrip("/")
    if not body:
        return None
    anchored = "/" in body
    regex = translate_glob(body.lstrip("/"))
    return _Rule(regex if anchored else ANY_DIRS + regex, negated, dir_only)


def _alternation(rules: list[_Rule]) -> re.Pattern[str] | None:
    """One regex trying the rules last-first, so the first alternative that matches is the last rule."""
    if not rules:
        return None
    return re.compile("|".join(f"(?P<g{i}>{rule.regex})" for i, rule in reversed(list(enumerate(rules)))))


@dataclass(frozen=True)
class PatternSet:
    """The patterns of one .gitignore (or include/exclude list), relative to `base` ("" or "a/b/")."""

    base: str
    file_regex: re.Pattern[str] | None
    dir_regex: re.Pattern[str] | None
    negated: tuple[bool, ...]

    @classmethod
    def parse(cls, lines: Iterable[str], base: str = "") -> PatternSet:
        rules = [rule for line in lines if (rule := _parse_line(line)) is not None]
        all_ = _alternation(rules)
        file_rules = [r if not r.dir_only else _Rule("(?!)", r.negated, True) for r in rules]
        return cls(base, _alternation(file_rules), all_, tuple(r.negated for r in rules))

    def match(self, rel: str, is_dir: bool) -> bool | None:
        """True (ignored), False (re-included by `!`) or None (no pattern matches) for `rel`."""
        regex = self.dir_regex if is_dir else self.file_regex
        if regex is None or not rel.startswith(self.base):
            return None
        found = regex.fullmatch(rel, len(self.base))
        if found is None or found.lastgroup is None:
            return None
        return not self.negated[int(found.lastgroup[1:])]


def is_ignored(rules: Sequence[PatternSet], rel: str, is_dir: bool) -> bool:
    """Apply the .gitignore sets, deepest first: the first set with a matching pattern decides."""
    for patterns in reversed(rules):
        verdict = patterns.match(rel, is_dir)
        if verdict is not None:
            return verdict
    return False


# --- the walk -----------------------------------------------------------------------------------


@dataclass
class WalkResult:
    """Files found (absolute path, relative posix path), counts of skipped entries, notes."""

    files: list[tuple[str, str]] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    diagnostics: list[str] = field(default_factory=list)
    truncated: bool = False


@dataclass(frozen=True)
class _Dir:
    path: str
    real: str
    rel: str  # "" for the root, else "a/b/"
    rules: tuple[PatternSet, ...]
    included: bool


@dataclass(frozen=True)
class _Found:
    """One directory entry, classified while its directory was open."""

    name: str
    path: str
    kind: str  # "dir", "file", "broken-symlink" or "special"
    link: bool


def _classify(base: str, entry: os.DirEntry[str]) -> _Found:
    path = os.path.join(base, entry.name)
    try:
        link = entry.is_symlink()
    except OSError:
        link = False
    try:
        is_dir = entry.is_dir()
        is_file = not is_dir and entry.is_file()
    except OSError:  # a link loop
        is_dir = is_file = False
    # a link that leads nowhere (missing, a loop) is broken; one to a FIFO or a device is special, as they are
    broken = link and not (is_dir or is_file) and not os.path.exists(path)
    kind = "dir" if is_dir else "file" if is_file else "broken-symlink" if broken else "special"
    return _Found(entry.name, path, kind, link)


class Walker:
    """Incremental walk: call `step()` until it returns True; `result` holds what was found."""

    def __init__(
        self,
        root: Path,
        *,
        roots: Sequence[Path],
        include: Sequence[str] | None = None,
        exclude: Sequence[str] | None = None,
        max_files: int | None = None,
        shown_as: str | None = None,
    ) -> None:
        """`shown_as`: how a refusal names `root` (None: `root` itself; a principal is not told where roots are)."""
        check_globs("include", include)
        check_globs("exclude", exclude)
        real = os.path.realpath(root)
        if not os.path.isdir(real):
            raise NotADirectoryError(f"'{root if shown_as is None else shown_as}' is not a directory")
        self.result = WalkResult()
        self.stop = threading.Event()  # set, the walk ends at the next folder (its job was cancelled)
        self._roots = tuple(Path(r).resolve() for r in roots)
        self._include = PatternSet.parse(include) if include else None
        self._exclude = PatternSet.parse(exclude or ())
        self._max_files = max_files
        self._visited = {real}
        self._stack = [_Dir(str(root), real, "", (), self._include is None)]

    @property
    def roots(self) -> tuple[Path, ...]:
        return self._roots

    @property
    def done(self) -> bool:
        return not self._stack

    def step(self, budget: int = 2000) -> bool:
        """Walk until about `budget` directory entries were looked at or `stop` is set; True when finished."""
        while self._stack and budget > 0 and not self.stop.is_set():
            budget -= self._visit(self._stack.pop())
        return self.done

    def walk(self) -> WalkResult:
        """Walk everything at once (or until `stop` is set)."""
        while not self.step() and not self.stop.is_set():
            pass
        return self.result

    def _skip(self, reason: str) -> None:
        self.result.skipped[reason] += 1

    def _visit(self, folder: _Dir) -> int:
        entries = self._scan(folder)
        if entries is None:
            return 1
        names = {entry.name for entry in entries}
        if folder.rel and "pyvenv.cfg" in names:
            self._skip("virtualenv")
            return 1
        rules = folder.rules + self._gitignore(folder) if ".gitignore" in names else folder.rules
        subdirs: list[_Dir] = []
        for entry in entries:
            if self.result.truncated:
                break
            self._entry(folder, rules, entry, subdirs)
        if not self.result.truncated:
            self._stack.extend(reversed(subdirs))
        return len(entries) + 1

    def _scan(self, folder: _Dir) -> list[_Found] | None:
        """The folder's entries, listed through a descriptor that really is inside the roots."""
        try:
            with opened(folder.path, self._roots, DIR_FLAGS) as fd, os.scandir(fd) as it:
                return sorted((_classify(folder.path, entry) for entry in it), key=lambda found: found.name)
        except Refused as exc:
            self._skip(exc.reason)
        except OSError as exc:
            self._skip("unreadable")
            self.result.diagnostics.append(f"cannot list directory {folder.rel or '.'}: {exc.strerror or exc}")
        return None

    def _gitignore(self, folder: _Dir) -> tuple[PatternSet, ...]:
        try:
            data = read_regular(os.path.join(folder.path, ".gitignore"), self._roots, GITIGNORE_MAX_BYTES)
        except (Refused, OSError) as exc:
            reason = _GITIGNORE_REFUSED.get(exc.reason, exc.reason) if isinstance(exc, Refused) else exc.strerror
            reason = reason or str(exc)
            self.result.diagnostics.append(f"cannot read {folder.rel}.gitignore: {reason}")
            return ()
        text = data.decode("utf-8-sig", errors="replace")  # a byte order mark is skipped, as git does
        patterns, past = honoured(text.splitlines())
        if past:
            self.result.diagnostics.append(f"{folder.rel}.gitignore: {past:,} more patterns ignored ({LIMITS})")
        return (PatternSet.parse(patterns, folder.rel),)

    def _entry(self, folder: _Dir, rules: tuple[PatternSet, ...], entry: _Found, out: list[_Dir]) -> None:
        rel = folder.rel + entry.name
        if entry.kind == "dir":
            self._directory(folder, rules, entry, rel, out)
        elif entry.kind == "file":
            self._file(folder, rules, entry, rel)
        else:
            self._skip(entry.kind)

    def _filtered(self, rules: tuple[PatternSet, ...], rel: str, is_dir: bool) -> str | None:
        """The reason to skip `rel` by its patterns, or None to keep it."""
        if is_ignored(rules, rel, is_dir):
            return "gitignored"
        if self._exclude.match(rel, is_dir):
            return "excluded"
        return None

    def _directory(self, folder: _Dir, rules: tuple[PatternSet, ...], entry: _Found, rel: str, out: list[_Dir]) -> None:
        reason = SKIP_DIRS.get(entry.name) or self._filtered(rules, rel, True)
        real = None if reason else self._real_dir(folder, entry)
        if reason is not None:
            self._skip(reason)
        elif real is not None:
            self._visited.add(real)
            included = folder.included or bool(self._include and self._include.match(rel, True))
            out.append(_Dir(entry.path, real, rel + "/", rules, included))

    def _real_dir(self, folder: _Dir, entry: _Found) -> str | None:
        """The real path of a sub-directory to enter, or None (counted) when it must not be."""
        real = self._link_target(entry) if entry.link else os.path.join(folder.real, entry.name)
        if real is not None and real in self._visited:
            self._skip("already-visited")
            return None
        return real

    def _file(self, folder: _Dir, rules: tuple[PatternSet, ...], entry: _Found, rel: str) -> None:
        reason = "vcs" if entry.name == ".git" else None
        reason = reason or ("binary" if has_binary_extension(entry.name) else self._filtered(rules, rel, False))
        if reason is None and not (folder.included or (self._include and self._include.match(rel, False))):
            reason = "not-included"
        if reason is None and entry.link and self._link_target(entry) is None:
            return
        if reason is not None:
            self._skip(reason)
        elif self._max_files is not None and len(self.result.files) >= self._max_files:
            self.result.truncated = True
            self._stack.clear()
        else:
            self.result.files.append((entry.path, rel))

    def _link_target(self, entry: _Found) -> str | None:
        """The real path of a symbolic link, or None (counted) when it leaves the allowed roots."""
        real = os.path.realpath(entry.path)
        if is_within(Path(real), self._roots):
            return real
        self._skip("symlink-outside-roots")
        return None
