"""What the tests of process groups see of them (`run-command` and tools' children: killed as a group)."""

from __future__ import annotations

from pathlib import Path


def live_members(pgid: int) -> list[int]:
    """Pids of non-zombie processes in group `pgid` (orphaned zombies may never be reaped here)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            found.append(int(stat.parent.name))
    return found
