"""Retry policy: decide(exception, attempt) -> delay in ms, or None for "do not retry"."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from vibe_jobs.errors import DependencyFailed, JobCancelled, NonRetryableError
from vibe_jobs.models import RetryPolicyConfig

NEVER_RETRY: tuple[type[BaseException], ...] = (NonRetryableError, JobCancelled, DependencyFailed)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff: initial * multiplier^(retry-1), capped, with +-jitter (a fraction)."""

    max_retries: int = 3
    initial_delay_ms: int = 1000
    multiplier: float = 2.0
    max_delay_ms: int = 60_000
    jitter: float = 0.1
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    @classmethod
    def from_config(cls, cfg: RetryPolicyConfig) -> RetryPolicy:
        return cls(cfg.max_retries, cfg.initial_delay_ms, cfg.backoff_multiplier, cfg.max_delay_ms, cfg.jitter)

    def delay(self, retry: int) -> int:
        """The delay before retry number `retry` (1-based)."""
        try:
            base = min(self.initial_delay_ms * self.multiplier ** (retry - 1), self.max_delay_ms)
        except OverflowError:  # a float power past ~1e308 (many retries): the cap applies
            base = self.max_delay_ms if self.initial_delay_ms else 0
        spread = base * self.jitter
        return max(0, round(base + self.rng.uniform(-spread, spread))) if spread else round(base)

    def decide(self, exc: BaseException, retries_done: int, max_retries: int | None = None) -> int | None:
        """Delay before the next attempt, or None when the failure is final."""
        if isinstance(exc, NEVER_RETRY) or getattr(exc, "retryable", True) is False:
            return None
        if retries_done >= (self.max_retries if max_retries is None else max_retries):
            return None
        return self.delay(retries_done + 1)
