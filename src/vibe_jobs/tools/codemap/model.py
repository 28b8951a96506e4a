"""Pydantic models for the structured result of `map-codebase` (camelCase on the wire)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class Symbol(_Wire):
    """One declaration: a class, function, method, type, ... with its 1-based line."""

    kind: str
    name: str
    signature: str | None = None
    line: int
    children: list[Symbol] | None = None

    def count(self) -> int:
        """This symbol plus all nested ones."""
        return 1 + sum(child.count() for child in self.children or ())


class FileEntry(_Wire):
    """One mapped file; `path` is relative to the mapped root, with forward slashes."""

    path: str
    language: str
    lines: int
    symbols: list[Symbol] = []

    def symbol_count(self) -> int:
        """All symbols of the file, nested ones included."""
        return sum(symbol.count() for symbol in self.symbols)


class LanguageSummary(_Wire):
    """Totals for one language."""

    files: int = 0
    lines: int = 0
    symbols: int = 0


class CodeMap(_Wire):
    """The whole map: files, per-language totals, what was skipped and why."""

    root: str
    files: list[FileEntry] = []
    languages: dict[str, LanguageSummary] = {}
    total_files: int = 0
    skipped: dict[str, int] = {}
    truncated: bool = False  # stopped at max_files: more files exist
    max_files: int | None = None  # the cap this map ran with
    files_omitted: int = 0  # mapped, but left out of `files` to keep the result within the result limit
    diagnostics: list[str] = []
