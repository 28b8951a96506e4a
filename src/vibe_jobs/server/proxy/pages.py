"""An upstream's listing (tools, resources, templates, prompts), read page by page within bounds.

The upstream decides how many pages there are: one that always answers another `nextCursor` kept the proxy
reading for ever, its memory growing by 50 MB a second (review helper-54), at start-up, on every
`tools/list_changed`, and on each client's `resources/list`. A listing ends at its last page, at a cursor the
upstream gave before, or at one of the bounds below; a listing cut short keeps what was read, and the proxy's
log says so (`proxy.upstream_listing_cut`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from vibe_jobs.logs import get_logger

log = get_logger("vibe_jobs.server.proxy")

MAX_PAGES = 100
MAX_ITEMS = 10_000
MAX_BYTES = 32 * 1024 * 1024  # of the items' JSON

T = TypeVar("T")
Page = tuple[Sequence[T], str | None]  # a page's items, and the cursor of the next (None: the last)


async def read_pages(
    fetch: Callable[[str | None], Awaitable[Page[T]]], size: Callable[[T], int], upstream: str, what: str
) -> list[T]:
    """Every item of a listing `fetch(cursor)` answers page by page, within the bounds (module doc); `size`: an
    item's JSON size."""
    items: list[T] = []
    cursors: set[str] = set()
    held = 0
    cursor: str | None = None
    for pages in range(1, MAX_PAGES + 1):
        found, cursor = await fetch(cursor)
        for item in found:
            held += size(item)
            if len(items) >= MAX_ITEMS or held > MAX_BYTES:
                return _cut(items, upstream, what, pages, f"more than {MAX_ITEMS:,} items or {MAX_BYTES:,} bytes")
            items.append(item)
        if not cursor:
            return items
        if cursor in cursors:
            return _cut(items, upstream, what, pages, "it gave a cursor it had given before")
        cursors.add(cursor)
    return _cut(items, upstream, what, MAX_PAGES, f"more than {MAX_PAGES} pages")


def _cut(items: list[T], upstream: str, what: str, pages: int, why: str) -> list[T]:
    log.warning("proxy.upstream_listing_cut", upstream=upstream, listing=what, pages=pages, kept=len(items), why=why)
    return items
