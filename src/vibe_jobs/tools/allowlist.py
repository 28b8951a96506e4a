"""What `run-command` may run, and with which environment: decided once, when the server starts.

`VIBE_JOBS_ALLOWED_COMMANDS` lists programs (comma separated). Each is resolved at start-up to one
absolute path, and that path is what runs: a name (`git`) on the server's PATH, an entry with a
slash (`./scripts/build.sh`) under the first root. Nothing the caller sends (its `env`, its `cwd`)
can change which file is executed.

The child gets a minimal environment: `PATH`, `HOME`, `LANG` and `TERM` as the server had them,
`PWD`, and of the caller's `env` only the names listed in `VIBE_JOBS_COMMAND_ENV` (default: none).
A caller's `env` naming anything else is refused, naming the names (never their values).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from vibe_jobs.errors import ConfigError
from vibe_jobs.settings import split_names
from vibe_jobs.tools.printable import shortened

MINIMAL_ENV_NAMES = ("PATH", "HOME", "LANG", "TERM")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_SHOWN_NAMES = 10


class CommandRefused(ValueError):
    """A command the server will not run; the message says what was refused and why."""


parse_names = split_names  # the entries of a comma-separated setting (one rule: settings.split_names)


def _encodable(text: str) -> bool:
    """Whether `text` can be handed to the OS (escaped bytes of a non-UTF-8 name can)."""
    try:
        os.fsencode(text)
    except UnicodeEncodeError:
        return False
    return True


def minimal_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The part of the server's environment every child gets."""
    return {name: environ[name] for name in MINIMAL_ENV_NAMES if name in environ}


def resolve_program(entry: str, *, root: Path, path: str) -> str | None:
    """The one absolute path `entry` runs: a name looked up on `path`, a path with a slash under `root`."""
    if os.sep in entry:
        candidate = os.path.normpath(root / entry)
        return candidate if os.path.isfile(candidate) and os.access(candidate, os.X_OK) else None
    found = shutil.which(entry, path=path)
    return os.path.abspath(found) if found is not None else None


@dataclass(frozen=True)
class Allowlist:
    """The allowed programs (entry -> absolute path, None when not found at start-up) and env names."""

    programs: Mapping[str, str | None]
    env_names: frozenset[str]
    base_env: Mapping[str, str]

    @classmethod
    def build(cls, allowed: str | None, env_names: str | None, *, root: Path, environ: Mapping[str, str]) -> Allowlist:
        """Resolve every allowed program now, with the server's PATH and the first root."""
        path = environ.get("PATH", os.defpath)
        programs = {entry: resolve_program(entry, root=root, path=path) for entry in parse_names(allowed)}
        names = parse_names(env_names)
        if bad := [name for name in names if not _ENV_NAME.match(name)]:
            raise ConfigError(f"VIBE_JOBS_COMMAND_ENV={env_names!r} is invalid: {', '.join(bad)} is no variable name")
        return cls(programs, frozenset(names), minimal_env(environ))

    def executable(self, argv: Sequence[str]) -> str:
        """The absolute path that runs for `argv`; raises CommandRefused."""
        if not argv or not argv[0]:
            raise CommandRefused("empty command: give the program and its arguments as a list")
        if any("\0" in arg for arg in argv):
            raise CommandRefused("the command contains a NUL character")
        if not all(_encodable(arg) for arg in argv):
            raise CommandRefused("the command contains a lone surrogate (text that is no valid Unicode)")
        program = argv[0]
        if program not in self.programs:
            listed = ", ".join(sorted(self.programs)) or "none"
            raise CommandRefused(
                f"program '{shortened(program)}' is not allowed (allowed: {listed}); "
                "add it to VIBE_JOBS_ALLOWED_COMMANDS"
            )
        found = self.programs[program]
        if found is None:
            raise CommandRefused(f"program '{program}' is allowed but was not found when the server started")
        return found

    def child_env(self, env: Mapping[str, str] | None, cwd: Path) -> dict[str, str]:
        """The child's whole environment; raises CommandRefused for names not passed through."""
        given = dict(env or {})
        if refused := sorted(name for name in given if name not in self.env_names):
            shown = ", ".join(shortened(name, 60) for name in refused[:_SHOWN_NAMES])
            more = f" and {len(refused) - _SHOWN_NAMES} more" if len(refused) > _SHOWN_NAMES else ""
            allowed = ", ".join(sorted(self.env_names)) or "none"
            raise CommandRefused(
                f"env names not allowed: {shown}{more}; only names listed in VIBE_JOBS_COMMAND_ENV "
                f"are passed to the program (now: {allowed})"
            )
        if bad := sorted(name for name, value in given.items() if "\0" in value or not _encodable(value)):
            raise CommandRefused(f"env value of {', '.join(bad)} contains a NUL character or a lone surrogate")
        return {**self.base_env, "PWD": str(cwd), **given}
