"""Pure logic of the built-in `map-codebase` tool (no MCP imports)."""

from vibe_jobs.tools.codemap.mapper import DEFAULT_MAX_FILES, Reporter, map_codebase
from vibe_jobs.tools.codemap.model import CodeMap, FileEntry, LanguageSummary, Symbol
from vibe_jobs.tools.codemap.render import DEFAULT_MAX_CHARS, render_markdown
from vibe_jobs.tools.codemap.symbols import detect_language, extract_symbols
from vibe_jobs.tools.codemap.walk import PatternsRefused, Walker, WalkResult, check_globs

__all__ = [
    "DEFAULT_MAX_CHARS",
    "DEFAULT_MAX_FILES",
    "CodeMap",
    "FileEntry",
    "LanguageSummary",
    "PatternsRefused",
    "Reporter",
    "Symbol",
    "WalkResult",
    "Walker",
    "check_globs",
    "detect_language",
    "extract_symbols",
    "map_codebase",
    "render_markdown",
]
