"""Who owns a job: a process of a program.

A process's owner id is `PROGRAM@HOST:PID:RANDOM`: the program (`Settings.program`, `VIBE_JOBS_PROGRAM`; a
`JobServer`'s name by default, so `vibe-jobs serve` is `vibe-jobs`) and the process. Recovery finds a program's
jobs by that start of their owner ids (`owner_prefix`, in the stores' queries): on a store of one machine (SQLite,
shared by every program of its user), a job of a tool that this process lacks is failed when its owner was this
same program (the tool is no longer registered), and left for the program that has it when its owner was another.
"""

from __future__ import annotations

import os
import re

_CHARS = "A-Za-z0-9._-"  # what a program's name may hold: it is the start of an owner id
PROGRAM = re.compile(f"[{_CHARS}]{{1,64}}")
DEFAULT_PROGRAM = "vibe-jobs"


def check_program(name: str) -> str:
    """`name`, when it may name a program; else ValueError saying what may."""
    if not PROGRAM.fullmatch(name):
        raise ValueError("a program is 1 to 64 letters, digits and . _ - (it starts every owner id of its processes)")
    return name


def program_named(name: str) -> str:
    """The program of a server called `name` (a `JobServer`'s): its characters a program may hold, others as `-`."""
    return re.sub(f"[^{_CHARS}]", "-", name)[:64] or DEFAULT_PROGRAM


def new_owner(program: str = DEFAULT_PROGRAM) -> str:
    """A new owner id for this process of `program`."""
    return f"{owner_prefix(check_program(program))}{os.uname().nodename}:{os.getpid()}:{os.urandom(4).hex()}"


def owner_prefix(program: str) -> str:
    """What every owner id of `program`'s processes starts with (the stores find a program's jobs by it)."""
    return f"{program}@"
