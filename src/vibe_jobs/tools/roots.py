"""Allowed roots: which paths the built-in tools may touch.

`VIBE_JOBS_ROOTS` (path-separator separated) names them; the default is the directory the
server started in. A path is served only when its real location (symbolic links resolved)
lies inside one of the roots, and the way to it never leaves them (nor the directories above them).

A refusal says the same thing whether a path outside the roots exists or not, and lists the roots
only when they are the caller's own (`name_roots`: a server without authentication, whose one caller is
the operator who configured them, so an agent can correct itself); to a principal with a token they are
another's configuration and are not named: it learns nothing about the machine beyond what it may
already read. So a path
is resolved a component at a time and refused at the first step out, before anything outside is
looked at: `Path.resolve` looked up `/etc/x` to resolve `/etc/x/../../root`, and accepted it
only when `/etc/x` existed.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

from vibe_jobs.errors import ConfigError
from vibe_jobs.tools.printable import shortened

MAX_PATH_CHARS = 4096  # PATH_MAX on Linux: no longer path can be opened anyway
MAX_LINKS = 40  # symbolic links followed for one path (Linux's own limit): past it, a loop


class PathRefused(ValueError):
    """A path the built-in tools will not serve; the message says which and why."""


def parse_roots(value: str | None, *, cwd: Path | None = None) -> tuple[Path, ...]:
    """Turn the `VIBE_JOBS_ROOTS` value into resolved directories (default: cwd); ConfigError for one that
    is not a directory (every call under it would be refused, by a message that names no root)."""
    base = cwd or Path.cwd()
    parts = [p for p in (value or "").split(os.pathsep) if p.strip()]
    if not parts:
        return (base.resolve(),)
    roots: list[Path] = []
    for part in parts:
        root = _resolved(base / part.strip())
        if root is None or not _is_dir(root):
            hint = f" (roots are separated by {os.pathsep!r}, not ',')" if "," in part else ""
            raise ConfigError(f"VIBE_JOBS_ROOTS={value!r} is invalid: {part.strip()!r} is not a directory{hint}")
        roots.append(root)
    return tuple(roots)


def _resolved(path: Path) -> Path | None:
    """`path` with its links resolved; None for a link loop (Python 3.11 raises RuntimeError for one)."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return None


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # Python 3.11 raises for a path under a directory it may not read
        return False


def is_within(path: Path, roots: Sequence[Path]) -> bool:
    """True when the resolved `path` is one of `roots` or lies below one."""
    return any(path == root or path.is_relative_to(root) for root in roots)


def resolve_within_roots(
    path: str | Path, roots: Sequence[Path], *, must_be_dir: bool = False, name_roots: bool = False
) -> Path:
    """Resolve `path` (relative paths against the first root) and refuse it outside the roots (the refusal names
    them with `name_roots`: only for a caller whose own they are)."""
    text = str(path)
    if len(text) > MAX_PATH_CHARS:
        raise PathRefused(f"path is {len(text):,} characters long; the limit is {MAX_PATH_CHARS:,}")
    if "\0" in text:
        raise PathRefused("path contains a NUL character")
    resolved = _existing(text, roots)
    if resolved is None or not is_within(resolved, roots):
        raise PathRefused(
            f"path '{shortened(text)}' does not exist or is outside the allowed roots{_named(roots, name_roots)}"
        )
    if must_be_dir and not resolved.is_dir():
        raise PathRefused(f"path '{shortened(text)}' is not a directory")
    return resolved


def _named(roots: Sequence[Path], name_roots: bool) -> str:
    if not name_roots:
        return ""
    listed = ", ".join(f"'{shortened(str(root))}'" for root in roots)
    return f" ({listed}; a relative path starts at the first)"


def _existing(text: str, roots: Sequence[Path]) -> Path | None:
    """The real location of `text` (relative to the first root), or None when it cannot be found without
    stepping out of the roots."""
    try:
        raw = Path(text).expanduser()
        return _walk(raw if raw.is_absolute() else roots[0] / raw, roots)
    except (OSError, RuntimeError, ValueError):  # missing, a name too long, an unknown ~user, a lone surrogate
        return None


def _walk(path: Path, roots: Sequence[Path]) -> Path | None:
    """Resolve the absolute `path` as the kernel would (`..` from where a symbolic link led), a component at
    a time; None at the first step to a place neither in a root nor above one, unless that place is a symbolic
    link that leads into (or above) a root, or past MAX_LINKS links. Raises OSError for a missing component.

    So a place outside answers alike whether it exists or not (missing, a file, a directory: refused), and a
    root is still reached by a linked spelling (`/tmp` on macOS, a linked home, the directory the server
    started in given as its $PWD). All a caller can learn is whether a path is a link into the roots."""
    here, todo, links = Path(os.sep), list(reversed(path.parts[1:])), 0
    while todo:
        name = todo.pop()
        step = here.parent if name == ".." else here / name
        if not _on_the_way(step, roots) and not _leads_in(step, roots):
            return None
        if not stat.S_ISLNK(os.lstat(step).st_mode):
            here = step
            continue
        links += 1
        if links > MAX_LINKS:
            return None
        target = Path(os.readlink(step))
        here = Path(os.sep) if target.is_absolute() else here
        todo.extend(reversed(target.parts[1:] if target.is_absolute() else target.parts))
    return here


def _leads_in(path: Path, roots: Sequence[Path]) -> bool:
    """True for a symbolic link whose real location is in a root or above one."""
    return path.is_symlink() and _on_the_way(Path(os.path.realpath(path)), roots)


def _on_the_way(path: Path, roots: Sequence[Path]) -> bool:
    """True in a root or in a directory above one (those exist whenever the roots do: nothing is learnt)."""
    return is_within(path, roots) or any(root.is_relative_to(path) for root in roots)
