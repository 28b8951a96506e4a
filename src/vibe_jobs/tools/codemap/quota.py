"""How many symbols one file keeps: the first `limit` found; the ones after are counted, never built.

A generated file can declare hundreds of thousands of functions (a 2 MiB Go file of `func a()` lines:
233,000 symbols, 160 MB); the map keeps the first ones and says how many it left out.
"""

from __future__ import annotations

MAX_SYMBOLS_PER_FILE = 2_000


class Quota:
    """Room for `limit` more symbols; `dropped` counts those refused."""

    def __init__(self, limit: int = MAX_SYMBOLS_PER_FILE) -> None:
        self.limit, self.kept, self.dropped = limit, 0, 0

    def take(self) -> bool:
        """True when one more symbol may be kept (and counts it); False, counted as left out, once full."""
        if self.kept < self.limit:
            self.kept += 1
            return True
        self.dropped += 1
        return False

    def note(self) -> str | None:
        """What the cap left out, if it left anything out."""
        if not self.dropped:
            return None
        return f"kept its first {self.limit:,} symbols; {self.dropped:,} more left out"
