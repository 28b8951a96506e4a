"""Allowed roots: which paths the built-in tools may touch.

`VIBE_JOBS_ROOTS` (path-separator separated) names them; the default is the directory the
server started in. A path is served only when its real location (symbolic links resolved)
lies inside one of the roots.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path


class PathRefused(ValueError):
    """A path the built-in tools will not serve; the message says which and why."""


def parse_roots(value: str | None, *, cwd: Path | None = None) -> tuple[Path, ...]:
    """Turn the `VIBE_JOBS_ROOTS` value into resolved directories (default: cwd)."""
    base = cwd or Path.cwd()
    parts = [p for p in (value or "").split(os.pathsep) if p.strip()]
    if not parts:
        return (base.resolve(),)
    return tuple((base / p.strip()).resolve() for p in parts)


def is_within(path: Path, roots: Sequence[Path]) -> bool:
    """True when the resolved `path` is one of `roots` or lies below one."""
    return any(path == root or path.is_relative_to(root) for root in roots)


def resolve_within_roots(path: str | Path, roots: Sequence[Path], *, must_be_dir: bool = False) -> Path:
    """Resolve `path` (relative paths against the first root) and refuse it outside the roots."""
    raw = Path(path).expanduser()
    candidate = raw if raw.is_absolute() else roots[0] / raw
    if not candidate.exists():
        raise PathRefused(f"path '{path}' does not exist")
    resolved = candidate.resolve()
    if not is_within(resolved, roots):
        allowed = ", ".join(str(r) for r in roots)
        raise PathRefused(f"path '{path}' is outside the allowed roots ({allowed}); set VIBE_JOBS_ROOTS")
    if must_be_dir and not resolved.is_dir():
        raise PathRefused(f"path '{path}' is not a directory")
    return resolved
