"""Argument types of the CLI's numeric flags: the settings' rules (one place), refused by argparse with the reason
(`--concurrency -1` had a worker take its place in the cluster and never claim a job; `--drain-seconds nan` crashed
its stop, leaving its lease; `--port 70000` ended in a traceback)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeVar

from vibe_jobs import settings
from vibe_jobs.settings import positive_int

T = TypeVar("T")


def typed(parse: Callable[[str], T], name: str) -> Callable[[str], T]:
    def convert(raw: str) -> T:
        try:
            return parse(raw)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{raw!r}: {exc}") from None

    convert.__name__ = name  # what argparse names in its own messages
    return convert


def _port(raw: str) -> int:
    value = int(raw)
    if not 0 <= value <= 65535:
        raise ValueError("must be a port number from 0 to 65535 (0: any free port)")
    return value


count = typed(positive_int, "count")
seconds = typed(settings.seconds, "seconds")
seconds_or_zero = typed(lambda raw: settings.seconds(raw, zero=True), "seconds")
port = typed(_port, "port")
