"""Secrets out of what people see: arguments named like a secret are shown as a placeholder.

TODO(i15-identity): a minimal stand-in so the dashboard can use `redact_params` now; the identity branch's
module (configurable pattern, run-command `env` values) replaces this file at merge.
"""

from __future__ import annotations

import re
from typing import Any

SECRET_NAME = re.compile(r"token|secret|password|key|auth", re.IGNORECASE)
REDACTED = "[redacted]"


def redact_params(params: dict[str, Any]) -> dict[str, Any]:
    """A copy of `params` with the value of every key named like a secret replaced, at any depth."""
    return {k: REDACTED if SECRET_NAME.search(k) else _redact(v) for k, v in params.items()}


def _redact(value: Any) -> Any:
    if isinstance(value, dict):
        return redact_params(value)
    if isinstance(value, list):
        return [_redact(v) for v in value]
    return value
