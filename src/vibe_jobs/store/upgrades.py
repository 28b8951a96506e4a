"""Upgrading a store beside servers of the older version: refused, in these words.

A newer server brings a store's schema up to date when it opens it. A server of the older version still running on
that store would go on writing to a schema it does not know (one from before PostgreSQL step 11 fired a schedule's
tick twice beside a newer server), so the newer one refuses to upgrade while an older one holds a live lease: it
names them and says what to do, and changes nothing.
"""

from __future__ import annotations

SHOWN = 5  # servers named at most


def older_servers_message(where: str, version: int, live: list[tuple[str, int]]) -> str:
    """What a newer server says of the store at `where` (at schema step `version`) that the servers `live`
    ((owner id, ms until its lease ends), of the older version) still use."""
    shown = ", ".join(f"{owner[:120]!r} (its lease ends in {-(-left // 1000)} s)" for owner, left in live[:SHOWN])
    more = f" and {len(live) - SHOWN} more" if len(live) > SHOWN else ""
    servers = "1 running server" if len(live) == 1 else f"{len(live)} running servers"
    return (
        f"the job store at {where} (schema {version}) is in use by {servers} of an older vibe-jobs: {shown}{more}. "
        "Stop them first, then start this version: it upgrades the store (a killed server's lease ends by itself "
        "in the time shown). Nothing was changed"
    )
