"""The built-in job tools: map-codebase and run-command (registered only when allowed)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

import anyio
from pydantic import Field

from vibe_jobs.context import JobContext
from vibe_jobs.errors import JobNotFound, JobTimeout, NonRetryableError, ProcessLimit, StoreError
from vibe_jobs.identity import LOCAL_PRINCIPAL
from vibe_jobs.jobtool import JobToolSpec, make_spec
from vibe_jobs.logs import get_logger
from vibe_jobs.manager import diagnostic_line
from vibe_jobs.results import json_size, text_result
from vibe_jobs.settings import Settings
from vibe_jobs.tools.allowlist import Allowlist, CommandRefused
from vibe_jobs.tools.codemap import (
    DEFAULT_MAX_CHARS,
    DEFAULT_MAX_FILES,
    CodeMap,
    PatternsRefused,
    check_globs,
    map_codebase,
    render_markdown,
)
from vibe_jobs.tools.codemap.walk import PATTERNS_MAX
from vibe_jobs.tools.command import CommandFailedToStart, CommandOutcome, kill_leftovers, run_process
from vibe_jobs.tools.contain import hide_from_children
from vibe_jobs.tools.printable import code_block, code_span, printable
from vibe_jobs.tools.roots import PathRefused, parse_roots, resolve_within_roots

log = get_logger("vibe_jobs.tools.builtin")

MAX_FILES_CAP = 1_000_000
MAX_GLOBS = PATTERNS_MAX
Glob = Annotated[str, Field(max_length=4096)]
MAX_FILES_HELP = f"Stop after this many files (default {DEFAULT_MAX_FILES:,}); the result says when it stopped there."
PROGRESS_EVERY = 0.2  # seconds between progress writes of streamed output
DIAGNOSTICS_EVERY = 1.0  # seconds between those that add its lines to the diagnostics (each write rewrites them)
KEEP_LINES = 20
KEEP_CHARS = 16_000  # all kept lines together
ENV_HELP = "Environment variables for the program: only names the server lists in VIBE_JOBS_COMMAND_ENV."


class MapCodebase:
    def __init__(
        self, roots: Sequence[Path], max_result_bytes: int = 4 * 1024 * 1024, name_roots: bool = False
    ) -> None:
        self.roots, self.name_roots = tuple(roots), name_roots  # name_roots: refusals name them (roots.py)
        self.max_result_bytes = max_result_bytes  # the job's result is cut whole past this (results.bounded_result)

    async def __call__(
        self,
        path: Annotated[str, Field(description="Directory to map (inside the allowed roots).")],
        job: JobContext,
        include: Annotated[
            list[Glob] | None, Field(max_length=MAX_GLOBS, description="Globs of files to include.")
        ] = None,
        exclude: Annotated[
            list[Glob] | None, Field(max_length=MAX_GLOBS, description="Globs of files to leave out.")
        ] = None,
        maxFiles: Annotated[int | None, Field(ge=1, le=MAX_FILES_CAP, description=MAX_FILES_HELP)] = DEFAULT_MAX_FILES,
        format: Literal["markdown", "json"] = "markdown",
    ) -> dict[str, Any]:
        """Map a code base: per file its language, line count and top-level symbols, plus a Markdown map."""
        name_roots = await _names_roots(self.name_roots, job)
        root = resolve_within_roots(path, self.roots, must_be_dir=True, name_roots=name_roots)

        async def report(percent: float, message: str, *, stage: str, sub_progress: float) -> None:
            await job.progress(percent, message, stage=stage, sub_progress=sub_progress)

        try:
            code_map = await map_codebase(
                root,
                roots=self.roots,
                include=include,
                exclude=exclude,
                max_files=maxFiles or DEFAULT_MAX_FILES,
                report=report,
                checkpoint=job.checkpoint,
                diagnostic=job.diagnostic,
                threads=job.threads,
                shown_as=None if name_roots else path,  # a principal is not told where the roots are
            )
        except PatternsRefused as exc:  # a job whose arguments were not checked at call time (a schedule's)
            raise NonRetryableError(f"map-codebase refused: {exc}") from None
        await job.progress(97, "rendering", stage="render", sub_progress=0)
        structured = code_map.model_dump(mode="json", by_alias=True)
        text_budget = DEFAULT_MAX_CHARS * 6 + 4096  # the Markdown as JSON text at most (every character escaped)
        if (keep := _files_within(structured, self.max_result_bytes - text_budget)) is not None:
            code_map.files_omitted = len(code_map.files) - keep
            code_map.files = code_map.files[:keep]
            structured = code_map.model_dump(mode="json", by_alias=True)
        body = render_markdown(code_map, max_chars=DEFAULT_MAX_CHARS) if format == "markdown" else None
        return text_result(body or _summary(code_map), structured=structured)

    def refuse(self, params: dict[str, Any]) -> str | None:
        try:
            resolve_within_roots(params["path"], self.roots, must_be_dir=True, name_roots=self.name_roots)
            check_globs("include", params.get("include"))
            check_globs("exclude", params.get("exclude"))
        except (PathRefused, PatternsRefused) as exc:
            return f"map-codebase refused: {exc}"
        return None


async def _names_roots(name_roots: bool, job: JobContext) -> bool:
    """Whether a run of `job` may name the roots: in a process without authentication (`name_roots`), for a job the
    operator created (the local principal). A `vibe-jobs worker` serves nothing and holds no token settings, yet
    runs the jobs that principals with tokens created on an authenticated replica: it named the roots to them."""
    if not name_roots:
        return False
    try:
        return (await job.manager.get_record(job.job_id)).principal == LOCAL_PRINCIPAL
    except (JobNotFound, StoreError):  # not known: not named
        return False


def _files_within(structured: dict[str, Any], budget: int) -> int | None:
    """How many of the map's files fit in `budget` bytes of JSON with the rest of the map, when not all do
    (None: they all fit). The job's result is cut whole past its limit: the map keeps its first files instead,
    and says how many it left out (`filesOmitted`)."""
    files = structured["files"]
    sizes = [json_size(entry) + 1 for entry in files]
    used = json_size({**structured, "files": []})
    if used + sum(sizes) <= budget:
        return None
    keep = 0
    while keep < len(sizes) and used + sizes[keep] <= budget:
        used += sizes[keep]
        keep += 1
    return keep


def _summary(code_map: CodeMap) -> str:
    text = f"Mapped {code_map.total_files:,} files under {code_map.root}."
    if code_map.truncated:
        text += f" Stopped at maxFiles ({code_map.max_files:,}): more files exist."
    if code_map.files_omitted:
        left_out = code_map.files_omitted
        text += f" The result lists {len(code_map.files):,} of them ({left_out:,} left out: the result limit)."
    return text


class RunCommand:
    def __init__(self, roots: Sequence[Path], allowlist: Allowlist, name_roots: bool = False) -> None:
        self.roots, self.allowlist, self.name_roots = tuple(roots), allowlist, name_roots

    async def __call__(
        self,
        command: Annotated[list[str], Field(min_length=1, description="Program and arguments (no shell).")],
        job: JobContext,
        cwd: Annotated[str | None, Field(description="Working directory inside the allowed roots.")] = None,
        timeoutSeconds: Annotated[float | None, Field(gt=0, description="Stop the command after this long.")] = None,
        env: Annotated[dict[str, str] | None, Field(description=ENV_HELP)] = None,
    ) -> dict[str, Any]:
        """Run an allowed program (no shell) and report its exit code and the tails of its output."""
        try:
            executable, workdir, child_env = await self._checked_for(job, command, cwd, env)
        except (CommandRefused, PathRefused) as exc:
            raise NonRetryableError(f"run-command refused: {exc}") from None
        stream = _Stream(job)

        async def started(record: dict[str, Any]) -> None:
            await job.progress(None, f"started {printable(command[0])}", stage="running", metadata={"process": record})

        try:
            outcome = await run_process(
                command,
                cwd=workdir,
                env=child_env,
                executable=executable,
                timeout=timeoutSeconds,
                on_lines=stream.lines,
                on_start=started,
            )
        except CommandFailedToStart as exc:
            raise (ProcessLimit if exc.limit else NonRetryableError)(str(exc)) from None
        finally:  # however the run ends (a cancel too): its last lines are stored with the job's outcome
            await stream.end()
        job.add_child_usage(outcome.cpu_seconds, outcome.peak_memory_mb)
        if outcome.timed_out:
            raise JobTimeout(f"the command ran past its {timeoutSeconds:g} s time-out and was stopped")
        summary = f"{code_span(printable(' '.join(command)))} {_ended(outcome)} after {outcome.duration_ms} ms"
        # fenced: a client that renders Markdown shows the output as it was, not as Markdown or HTML
        out, err = code_block(outcome.stdout_tail), code_block(outcome.stderr_tail)
        tails = f"\n\nstdout (tail):\n{out}\n\nstderr (tail):\n{err}"
        return text_result(summary + tails, structured=outcome.to_dict())

    async def _checked_for(
        self, job: JobContext, command: Sequence[str], cwd: str | None, env: Mapping[str, str] | None
    ) -> tuple[str, Path, dict[str, str]]:
        """`_checked` for a run of `job`: a refusal names the roots only to the operator (`_names_roots`, read only
        for a refusal)."""
        try:
            return self._checked(command, cwd, env, False)
        except PathRefused:
            if not await _names_roots(self.name_roots, job):
                raise
            return self._checked(command, cwd, env, True)  # refused again, naming them

    def _checked(
        self, command: Sequence[str], cwd: str | None, env: Mapping[str, str] | None, name_roots: bool
    ) -> tuple[str, Path, dict[str, str]]:
        """The file to run, the working directory and the child's environment; raises the refusal (naming the
        roots with `name_roots`)."""
        executable = self.allowlist.executable(command)
        workdir = resolve_within_roots(cwd or self.roots[0], self.roots, must_be_dir=True, name_roots=name_roots)
        return executable, workdir, self.allowlist.child_env(env, workdir)

    def refuse(self, params: dict[str, Any]) -> str | None:
        try:
            self._checked(params["command"], params.get("cwd"), params.get("env"), self.name_roots)
        except (CommandRefused, PathRefused) as exc:
            return f"run-command refused: {exc}"
        return None


def _ended(outcome: CommandOutcome) -> str:
    """How the command ended, for its summary: its exit code, or the signal that killed it."""
    if outcome.exit_code is None and outcome.signal is not None:
        try:
            name = f" ({signal.Signals(outcome.signal).name})"
        except ValueError:  # a real-time signal has no name
            name = ""
        return f"was killed by signal {outcome.signal}{name}"
    return f"exited with code {outcome.exit_code}"


class _Stream:
    """Streamed output: the progress message is the last line, and the lines become diagnostics as they come.

    The lines of one read arrive together and only their last `KEEP_LINES` are looked at: the work per
    read is bounded, whatever the number of lines (`yes` writes 32,768 in 64 KiB). Output without line
    breaks arrives as 64 KiB pieces: each kept line is cut as the job keeps a diagnostic
    (`manager.diagnostic_line`, saying so), and the kept lines together stay within `KEEP_CHARS`. The kept lines
    not yet given are added to the job's diagnostics with a progress write (at most every `DIAGNOSTICS_EVERY`:
    each such write rewrites them) and when the command ends, however it ends (`end`): each line once, in the
    order read. Of a flood, the diagnostics keep the last lines of each second (the job keeps its last 100).
    What the limits hold back is written once they allow it, whether more output comes or not (`_trail`).
    """

    def __init__(self, job: JobContext) -> None:
        self.job, self.kept, self.written, self.flushed = job, list[tuple[int, str]](), 0.0, 0.0
        self.read = self.given = 0  # lines read, and lines up to which the kept ones were given as diagnostics
        self.last, self.unwritten = "", False  # the last line, and whether a progress write has shown it
        self.ended = self._trailing = False
        self._writing = anyio.Lock()  # one write at a time, the diagnostics in the order read

    async def lines(self, stream: str, lines: list[str]) -> None:
        first = self.read + max(0, len(lines) - KEEP_LINES)
        self.read += len(lines)
        cut = [diagnostic_line(f"{stream}: {text}") for text in lines[-KEEP_LINES:]]  # cut once, as kept
        self.kept += enumerate(cut, first)
        del self.kept[:-KEEP_LINES]
        while sum(len(line) for _, line in self.kept) > KEEP_CHARS:
            del self.kept[0]
        self.last, self.unwritten = lines[-1][:500], True
        if time.monotonic() - self.written >= PROGRESS_EVERY:
            await self._write()
        if self._owed() and not self._trailing:  # written once the limits allow, more output or not (`_trail`)
            self._trailing = True
            self.job.manager.task_group.start_soon(self._trail)

    def _owed(self) -> bool:
        return not self.ended and (self.unwritten or self.given < self.read)

    async def _write(self) -> None:
        async with self._writing:
            if self.ended:
                return  # the lines go with the job's outcome (`end`)
            now = self.written = time.monotonic()
            if now - self.flushed >= DIAGNOSTICS_EVERY:
                self.flushed = now
                self.flush()
            self.unwritten = False
            await self.job.progress(None, self.last, stage="running")

    async def _trail(self) -> None:
        """Write what a write's limits held back once they allow it: a command that goes quiet after a line
        showed it neither as its message nor in its diagnostics until it ended."""
        try:
            while self._owed():
                due = self.written + PROGRESS_EVERY if self.unwritten else 0.0
                if self.given < self.read:
                    due = max(due, self.flushed + DIAGNOSTICS_EVERY)
                await anyio.sleep(max(0.0, due - time.monotonic()))
                if self._owed():
                    await self._write()
        except Exception as exc:  # the job ended meanwhile (its outcome keeps the lines): nothing more to show
            log.debug("run_command.trail_ended", job_id=self.job.job_id, error=f"{type(exc).__name__}: {exc}")
        finally:
            self._trailing = False

    async def end(self) -> None:
        """The command ended, however: no more writes (one under way is waited for), and the lines not given yet
        are given, to be stored with the job's outcome."""
        self.ended = True
        with anyio.CancelScope(shield=True):
            async with self._writing:
                pass
        self.flush()

    def flush(self) -> None:
        """Give the kept lines not given yet as diagnostics (stored with the job's next write)."""
        for number, line in self.kept:
            if number >= self.given:
                self.job.diagnostic(line)
        self.given = self.read


class SpecRegistry(Protocol):
    """Where job tools are registered (a JobServer; tools sit below the server and do not import it)."""

    def add_spec(self, spec: JobToolSpec) -> JobToolSpec: ...


def register_builtins(server: SpecRegistry, settings: Settings) -> None:
    """Add map-codebase always, run-command when VIBE_JOBS_ALLOWED_COMMANDS names programs. Their refusals name
    the roots only on a server without authentication: its one caller is the operator who set them."""
    roots, name_roots = parse_roots(settings.roots), not settings.authenticated
    mapper = MapCodebase(roots, settings.max_result_bytes, name_roots)
    server.add_spec(_spec(mapper, "map-codebase", "codemap"))
    allowlist = Allowlist.build(settings.allowed_commands, settings.command_env, root=roots[0], environ=os.environ)
    for program in sorted(name for name, found in allowlist.programs.items() if found is None):
        log.warning("run_command.program_not_found", program=program, setting="VIBE_JOBS_ALLOWED_COMMANDS")
    if allowlist.programs:
        if not hide_from_children():
            log.warning("run_command.environ_readable", why="prctl(PR_SET_DUMPABLE) is not available here")
        runner = RunCommand(roots, allowlist, name_roots)
        spec = _spec(runner, "run-command", "execution")
        spec.on_interrupted = kill_leftovers
        server.add_spec(spec)


def _spec(tool: MapCodebase | RunCommand, name: str, operation: Literal["codemap", "execution"]) -> Any:
    spec = make_spec(tool.__call__, name=name, operation_type=operation)
    spec.refuse = tool.refuse
    return spec
