"""TEST ONLY - a deliberately broken build: job writes are not fenced by attempt.

Loaded into the job-running processes of a fault run with `--break fencing` (as a `--tools` module,
so nothing in src/ knows about it). It replaces the guards a running attempt's writes carry (the
attempt number and `running`) with no guard at all, so the write of an attempt that lost its job
(a paused or cut-off worker whose job another worker now runs) lands on the newer attempt. The
checker must then report `fencing` violations. Fails loudly when the product moved the functions.
"""

from __future__ import annotations

from vibe_jobs import manager
from vibe_jobs.engine import executor
from vibe_jobs.store.base import NO_GUARD, Guard


def _unfenced(attempt: int | None) -> Guard:
    return NO_GUARD


for _module, _name in ((manager, "_fence"), (executor, "_attempt_guard")):
    if not callable(getattr(_module, _name, None)):
        raise ImportError(f"break_fencing: {_module.__name__}.{_name} is gone; update this module")
    setattr(_module, _name, _unfenced)
