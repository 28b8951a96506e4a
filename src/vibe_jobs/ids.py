"""Job ids: 128 random bits from the operating system's generator, as 32 hex digits.

The bytes are read a pool at a time (one system call per POOL ids instead of one per id) and each id is handed
out once: `deque.popleft` is atomic, so threads never share one. A forked child drops the ids it inherited, so
that parent and child never hand out the same id.
"""

from __future__ import annotations

import os
from collections import deque

POOL = 256  # ids read at once
_BYTES = 16

_ready: deque[str] = deque()
os.register_at_fork(after_in_child=_ready.clear)


def new_job_id() -> str:
    """A fresh job id (`os.urandom` quality: unguessable)."""
    try:
        return _ready.popleft()
    except IndexError:
        pool = os.urandom(POOL * _BYTES)
        _ready.extend([pool[i : i + _BYTES].hex() for i in range(0, len(pool), _BYTES)])
        return _ready.popleft()
