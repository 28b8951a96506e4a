"""The PostgreSQL the tests use: VIBE_JOBS_TEST_POSTGRES_URL, skipped when unset (a failure instead when
VIBE_JOBS_REQUIRE_POSTGRES=1, as .ci/run sets), and a fresh schema per test so runs never collide."""

from __future__ import annotations

import os

import pytest


def postgres_url(what: str) -> str:
    url = os.environ.get("VIBE_JOBS_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("VIBE_JOBS_REQUIRE_POSTGRES") == "1":
            pytest.fail("VIBE_JOBS_REQUIRE_POSTGRES=1 but VIBE_JOBS_TEST_POSTGRES_URL is unset")
        pytest.skip(f"set VIBE_JOBS_TEST_POSTGRES_URL to run {what}")
    return url


def with_new_schema(url: str, prefix: str) -> str:
    """`url` naming a schema of its own (the store creates it; the test drops it afterwards)."""
    return f"{url}{'&' if '?' in url else '?'}schema={prefix}_{os.urandom(6).hex()}"
