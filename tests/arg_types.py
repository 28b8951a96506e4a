"""A job tool whose arguments arrive typed only when they are validated: an int, a Path, an enum and a
pydantic model. It answers with the type each one arrived as; the tests of every run path (local
scheduler, PostgreSQL worker, recovery, JobServer as a library, MCP) compare that with TYPED.

The function is plain here; `tests.e2e.sample_tools` registers it as the job tool `typed` for the
server and worker subprocesses, and the in-process tests wrap it with `make_spec`.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel


class Color(Enum):
    RED = "red"
    BLUE = "blue"


class Shape(BaseModel):
    sides: int
    label: str = "polygon"


# the arguments as stored JSON holds them (an int given as a string, as a library caller may)
RAW: dict[str, Any] = {"count": "3", "where": "/tmp/vibe-jobs/typed", "color": "blue", "shape": {"sides": 4}}
TYPED = {"count": "int", "where": "PosixPath", "color": "Color", "shape": "Shape"}


def arrived(count: object, where: object, color: object, shape: object) -> dict[str, str]:
    return {name: type(value).__name__ for name, value in zip(TYPED, (count, where, color, shape), strict=True)}


async def typed(count: int, where: Path, color: Color, shape: Shape) -> dict[str, str]:
    """Report the type each argument arrived as."""
    return arrived(count, where, color, shape)
