"""Who owns a job: a process of a program.

A process's owner id is `PROGRAM@HOST:PID:RANDOM`: the program (`Settings.program`, `VIBE_JOBS_PROGRAM`; a
`JobServer`'s name by default, so `vibe-jobs serve` is `vibe-jobs`) and the process. Recovery reads the program
back from a dead owner's id: on a store of one machine (SQLite, shared by every program of its user), a job of a
tool that this process lacks is failed when its owner was this same program (the tool is no longer registered),
and left for the program that has it when its owner was another one.
"""

from __future__ import annotations

import os
import re

PROGRAM = re.compile(r"[A-Za-z0-9._-]{1,64}")  # what a program may be called: it is the start of an owner id
DEFAULT_PROGRAM = "vibe-jobs"


def check_program(name: str) -> str:
    """`name`, when it may name a program; else ValueError saying what may."""
    if not PROGRAM.fullmatch(name):
        raise ValueError("a program is 1 to 64 letters, digits and . _ - (it starts every owner id of its processes)")
    return name


def program_named(name: str) -> str:
    """The program of a server called `name` (a `JobServer`'s): its characters a program may hold, others as `-`."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", name)[:64] or DEFAULT_PROGRAM


def new_owner(program: str = DEFAULT_PROGRAM) -> str:
    """A new owner id for this process of `program`."""
    return f"{check_program(program)}@{os.uname().nodename}:{os.getpid()}:{os.urandom(4).hex()}"


def program_of(owner: str | None) -> str | None:
    """The program an owner id names, None for one of no program (older ids, and ids given by hand)."""
    if owner is None or "@" not in owner:
        return None
    program = owner.partition("@")[0]
    return program if PROGRAM.fullmatch(program) else None
