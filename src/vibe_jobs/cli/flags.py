"""Argument types of the CLI's numeric flags: the settings' rules (one place), refused by argparse with the reason
(`--concurrency -1` had a worker take its place in the cluster and never claim a job; `--drain-seconds nan` crashed
its stop, leaving its lease; `--port 70000` ended in a traceback)."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Sequence
from typing import TypeVar

from vibe_jobs import settings
from vibe_jobs.settings import positive_int

T = TypeVar("T")

# a word that starts with '-' and then a digit, a point or inf/nan: a value, not an option (no option of ours is named
# so); argparse itself takes only plain negative numbers for values (-1, -1.5: its own rule, left to it, so that such a
# word after a flag that takes no value stays the positional it was: `jobs show --json -1`)
_NEGATIVE_LOOKING = re.compile(r"-(?:\.?\d|inf|nan)", re.IGNORECASE)
_PLAIN_NEGATIVE_NUMBER = re.compile(r"-\d+|-\d*\.\d+")


def negative_values_joined(argv: Sequence[str]) -> list[str]:
    """`argv` with each negative-looking word that follows a long option joined to it (`--older-than -1d` ->
    `--older-than=-1d`), so that the flag's own rule refuses it naming the flag and the value: argparse took
    `-1d`, `-inf`, `-1e3` for options and said only "expected one argument". One rule for every flag of every
    command; nothing after `--` (the proxy's upstream command and its arguments) is touched."""
    words, joined = list(argv), list[str]()
    while words:
        word = words.pop(0)
        if word == "--":
            return [*joined, word, *words]
        if word.startswith("--") and "=" not in word and words and _taken_for_an_option(words[0]):
            word = f"{word}={words.pop(0)}"
        joined.append(word)
    return joined


def _taken_for_an_option(word: str) -> bool:
    return bool(_NEGATIVE_LOOKING.match(word)) and not _PLAIN_NEGATIVE_NUMBER.fullmatch(word)


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


def add_store_options(command: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """`--store` and `--json` of a command whose subcommands take them too, given before the subcommand
    (`vibe-jobs jobs --json list`). Their own names, since a subcommand's defaults would overwrite them;
    `cli.main` merges them into the subcommand's (`merge_store_options`). Returns the common parser that each
    subcommand takes as a parent."""
    command.add_argument("--store", dest="outer_store", metavar="URL", help="store URL (also after the subcommand)")
    command.add_argument(
        "--json", dest="outer_json", action="store_true", help="JSON output (also after the subcommand)"
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--store", metavar="URL", help="store URL (default: VIBE_JOBS_STORE or the user data dir)")
    common.add_argument("--json", action="store_true", help="machine-readable JSON output")
    return common


def merge_store_options(args: argparse.Namespace) -> None:
    """`--store` read as VIBE_JOBS_STORE is: without the whitespace around it, and a blank one as none
    (`--store 'sqlite:///jobs.db '` made a file named `jobs.db `); given before the subcommand (`jobs --store URL
    list`) it is the command's `--store`, which then replaces the variable (a bad one failed that form); `--json`
    before it is the command's `--json`."""
    for name in ("store", "outer_store"):
        if isinstance(getattr(args, name, None), str):
            setattr(args, name, getattr(args, name).strip() or None)
    if getattr(args, "outer_store", None) and not args.store:
        args.store = args.outer_store
    if getattr(args, "outer_json", False):
        args.json = True
