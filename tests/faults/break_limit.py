"""TEST ONLY - a deliberately broken build: claims ignore the cluster-wide concurrency limit.

Loaded into the workers of a fault run with `--break limit` (as a `--tools` module, so nothing in
src/ knows about it). Every claim then runs the unlimited statement: each worker fills its own
`--concurrency` slots whatever runs elsewhere, so the cluster runs more than JOB_MANAGER_MAX_CONCURRENT
jobs at once and the checker must report `concurrency` violations. Fails loudly when the product
moved the property.
"""

from __future__ import annotations

from vibe_jobs.store.base import ClaimLimits

if not isinstance(ClaimLimits.__dict__.get("limited"), property):
    raise ImportError("break_limit: ClaimLimits.limited is gone; update this module")
ClaimLimits.limited = property(lambda self: False)  # type: ignore[assignment,method-assign]
