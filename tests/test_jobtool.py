"""A job tool validates its stored arguments on every run: the function gets the values its parameters
declare (an int, a Path, an enum, a model), whoever created the job and whichever process runs it.

Here: the local scheduler on memory and SQLite, and a job recovered by the next process on the same SQLite
file. The PostgreSQL worker and the MCP paths are in tests/e2e/test_arguments_e2e.py, the library
JobServer in tests/server/test_wrap.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest

from tests.arg_types import RAW, TYPED, Color, Shape, arrived, typed
from vibe_jobs import JobManager, JobServer, JobStatus, Settings, jobtool
from vibe_jobs.context import JobContext
from vibe_jobs.engine.local import LocalSource
from vibe_jobs.errors import BadJobTool
from vibe_jobs.jobtool import make_spec
from vibe_jobs.results import first_text
from vibe_jobs.store import JobStore, MemoryStore
from vibe_jobs.store.sqlite import SQLiteStore

WAIT = 10.0


def local_store(kind: str, tmp_path: Path) -> JobStore:
    return MemoryStore() if kind == "memory" else SQLiteStore(f"sqlite:///{tmp_path / 'jobs.db'}")


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_the_local_scheduler_runs_a_job_with_typed_arguments(kind: str, tmp_path: Path) -> None:
    manager = JobManager(local_store(kind, tmp_path), Settings())
    LocalSource(manager, {"typed": make_spec(typed, name="typed")})
    async with manager:
        rec = await manager.wait(await manager.create_job("typed", RAW), WAIT)
    assert rec.status is JobStatus.COMPLETED, rec.progress_message
    assert rec.result is not None and rec.result["structuredContent"] == TYPED


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_stored_arguments_the_tool_cannot_take_fail_the_job_once_naming_them(kind: str, tmp_path: Path) -> None:
    manager = JobManager(local_store(kind, tmp_path), Settings())
    LocalSource(manager, {"typed": make_spec(typed, name="typed", retry_safe=True, max_retries=3)})
    async with manager:
        rec = await manager.wait(await manager.create_job("typed", {**RAW, "count": "x", "second": 5}), WAIT)
    assert rec.status is JobStatus.FAILED
    assert rec.retry_count == 0, "the same arguments would fail every attempt: no retry"
    text = first_text(rec.result) or ""
    assert "count: Input should be a valid integer" in text and "unknown argument 'second'" in text, text


async def test_a_job_recovered_by_the_next_process_runs_with_typed_arguments(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    started = anyio.Event()

    async def typed_after_an_interruption(
        count: int, where: Path, color: Color, shape: Shape, job: JobContext
    ) -> dict[str, object]:
        if job.attempt == 1:  # the first process stops while this runs
            started.set()
            await anyio.sleep_forever()
        return {"types": arrived(count, where, color, shape), "attempt": job.attempt}

    spec = make_spec(typed_after_an_interruption, name="typed", retry_safe=True)
    first = JobManager(SQLiteStore(url), Settings())
    LocalSource(first, {"typed": spec})
    async with first:
        job_id = await first.create_job("typed", RAW)
        with anyio.fail_after(WAIT):
            await started.wait()
    second = JobManager(SQLiteStore(url), Settings())
    LocalSource(second, {"typed": spec})
    async with second:
        rec = await second.wait(job_id, WAIT)
    assert rec.status is JobStatus.COMPLETED, rec.progress_message
    assert rec.result is not None and rec.result["structuredContent"] == {"types": TYPED, "attempt": 2}


def test_a_bad_schedule_is_refused_where_the_tool_is_declared(tmp_path: Path) -> None:
    """It was refused only when a server started, as an ExceptionGroup traceback; now `vibe-jobs serve` says in
    one line which tool and which cron."""

    def nightly() -> str:
        return "ok"

    with pytest.raises(TypeError, match=r"job tool nightly: schedule: cron '99 \* \* \* \*' is not valid"):
        make_spec(nightly, schedule="99 * * * *")
    assert make_spec(nightly, schedule="0  3 * * *").schedule == "0 3 * * *"  # normalised as schedule-job does
    (tmp_path / "badsched.py").write_text(
        "from vibe_jobs import job_tool\n\n@job_tool(schedule='99 * * * *')\ndef nightly() -> str:\n    return 'ok'\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "VIBE_JOBS_STORE": "memory://"}
    cmd = [sys.executable, "-m", "vibe_jobs", "serve", "--tools", "badsched"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "job tool nightly: schedule: cron '99 * * * *' is not valid" in done.stderr, done.stderr[-2000:]


def test_a_schedule_on_a_tool_that_needs_arguments_is_refused_where_it_is_declared(tmp_path: Path) -> None:
    """A declared schedule runs its tool with no arguments: one on a tool with a required argument crashed
    `vibe-jobs serve` at start (an ExceptionGroup traceback, "Invalid arguments for 'resize': width: Field
    required"). Now it is refused where it is written, naming the tool and the argument."""

    def resize(width: int, height: int = 10) -> str:
        return "ok"

    with pytest.raises(TypeError, match=r"job tool resize: schedule: .*no arguments.*width: Field required"):
        make_spec(resize, schedule="0 3 * * *")
    assert make_spec(resize).schedule is None
    (tmp_path / "needsargs.py").write_text(
        "from vibe_jobs import job_tool\n\n@job_tool(schedule='0 3 * * *')\n"
        "def resize(width: int) -> str:\n    return 'ok'\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "VIBE_JOBS_STORE": "memory://"}
    cmd = [sys.executable, "-m", "vibe_jobs", "serve", "--tools", "needsargs"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "job tool resize: schedule: " in done.stderr and "width: Field required" in done.stderr, done.stderr


def test_a_tools_retry_policy_comes_from_the_package_root() -> None:
    """Issue 4's RetryPolicy (per tool) is importable where job_tool is: `from vibe_jobs import RetryPolicy`."""
    import vibe_jobs

    policy = vibe_jobs.RetryPolicy(max_retries=2, initial_delay_ms=500)
    spec = make_spec(typed, name="typed", retry_safe=True, retry=policy)
    assert spec.retry is policy and "RetryPolicy" in vibe_jobs.__all__


def test_plain_tool_used_bare_registers_the_function(monkeypatch: pytest.MonkeyPatch) -> None:
    """`@plain_tool` without parentheses took the function as the tool's name: nothing was registered and the
    module's name was bound to the decorator's inner function (`@job_tool` works bare)."""
    monkeypatch.setattr(jobtool, "PLAIN_REGISTRY", {})

    @jobtool.plain_tool
    def ping() -> str:
        return "pong"

    assert ping() == "pong"
    assert {"ping": (ping, None)} == jobtool.PLAIN_REGISTRY


def test_one_tool_name_declared_by_two_modules_is_refused_naming_both(tmp_path: Path) -> None:
    """Two `--tools` modules declaring a tool of one name: the later silently replaced the earlier (its jobs ran
    the other module's function). Now serve stops in one line naming both; a module run twice is no conflict."""
    for module in ("teama", "teamb"):
        (tmp_path / f"{module}.py").write_text(
            "from vibe_jobs import job_tool\n\n@job_tool(name='build')\n"
            f"def {module}_build() -> str:\n    return 'ok'\n"
        )
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "VIBE_JOBS_STORE": "memory://"}
    cmd = [sys.executable, "-m", "vibe_jobs", "serve", "--tools", "teama,teamb"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "tool build: declared twice, by teama.teama_build and by teamb.teamb_build" in done.stderr, done.stderr


def test_one_function_declared_twice_is_no_conflict(monkeypatch: pytest.MonkeyPatch) -> None:
    """A module run twice (reloaded, or imported under two names in a notebook) declares the same function again."""
    monkeypatch.setattr(jobtool, "REGISTRY", {})

    def build() -> str:
        return "ok"

    assert jobtool.job_tool(build) is build and jobtool.job_tool(build) is build
    assert jobtool.REGISTRY["build"].fn is build


def count_in_stages(job: JobContext, stages: int) -> str:
    """A sync job tool (run in a worker thread) reporting progress as an async one does, without `await`."""
    for i in range(stages):
        job.progress(100 * (i + 1) / stages, f"stage {i + 1}", stage=f"s{i + 1}", sub_progress=50)
    return "counted"


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_a_sync_job_tool_reports_progress_without_await(kind: str, tmp_path: Path) -> None:
    """`job.progress(...)` in a sync tool made a coroutine that nobody awaited: nothing was stored (and Python
    warned "never awaited" at the end). Each report is now stored before the call returns."""
    manager = JobManager(local_store(kind, tmp_path), Settings())
    LocalSource(manager, {"count": make_spec(count_in_stages, name="count")})
    async with manager:
        rec = await manager.wait(await manager.create_job("count", {"stages": 3}), WAIT)
    assert rec.status is JobStatus.COMPLETED, rec.progress_message
    assert [entry["stage"] for entry in rec.stage_history or ()] == ["s1", "s2", "s3"]
    assert rec.current_stage == "s3"


@pytest.mark.parametrize(
    ("option", "value", "problem"),
    [
        ("timeout", 0, "greater than 0"),
        ("timeout", -1, "greater than 0"),
        ("max_retries", -1, "greater than or equal to 0"),
        ("max_concurrent", 0, "greater than or equal to 1"),
        ("operation_type", "bogus", "'decomposition'"),
    ],
)
async def test_a_job_tool_option_no_job_could_run_under_is_refused_where_it_is_declared(
    option: str, value: object, problem: str
) -> None:
    """`timeout=0` (or -1) was taken, and every job of the tool then failed as "ran past its -1 s time-out";
    `max_concurrent=0` left every job pending for ever, with no word; a negative `max_retries` or an operation type
    no job has passed silently. Each is refused as the tool is declared, naming the tool, the option and the rule."""
    server = JobServer("options", settings=Settings())

    async def quick(job: JobContext) -> str:
        return "ok"

    with pytest.raises(BadJobTool, match=rf"job tool quick: {option}={value!r}: .*{problem}"):
        server.job_tool(quick, **{option: value})  # type: ignore[call-overload]
    assert server.specs == {}
    with pytest.raises(BadJobTool, match=rf"job tool quick: {option}="):
        jobtool.job_tool(**{option: value})(quick)  # type: ignore[call-overload]
    server.job_tool(quick, timeout=0.5, max_retries=0, max_concurrent=1, operation_type="analysis")
    async with server.manager as manager:  # what is accepted runs
        rec = await manager.wait(await manager.create_job("quick"), WAIT)
    assert rec.status is JobStatus.COMPLETED, rec


def test_a_generator_function_is_refused_where_it_is_declared() -> None:
    """A generator (sync or async) was taken as a job tool, and its jobs "completed" with the text
    "<generator object ...>": the generator never ran. It is refused as it is declared, saying what to do."""

    def lines(job: JobContext) -> Iterator[str]:
        yield "one"

    async def chunks(job: JobContext) -> AsyncIterator[str]:
        yield "one"

    for fn in (lines, chunks):
        with pytest.raises(BadJobTool, match=rf"job tool {fn.__name__}: .*generator.*return its result"):
            make_spec(fn)


def test_a_job_context_annotated_optional_is_refused_naming_the_parameter() -> None:
    """`job: JobContext | None = None` (a function also called outside jobs) was refused as "an argument's type
    has no JSON schema (... IsInstanceSchema ...)", naming neither the parameter nor what to write."""

    async def index(path: str, job: JobContext | None = None) -> str:
        return path

    with pytest.raises(BadJobTool, match=r"job tool index: parameter job: .*annotate it JobContext"):
        make_spec(index)


@pytest.mark.parametrize("name", ["map code", "résumé", "a" * 129, "tool,2", "<lambda>"])
def test_a_tool_name_clients_may_refuse_is_refused_where_it_is_declared(name: str) -> None:
    """A job tool named "map code" (or a lambda's "<lambda>") was listed as it was: the MCP's tool names are 1 to 128
    ASCII letters, digits, '_', '-' and '.' (SEP-986), and a client that holds to it refuses the tool, or the whole
    list, only when an agent first uses the server. An ordinary tool of such a name is refused the same way."""
    server = JobServer("names", settings=Settings())

    async def quick() -> str:
        return "ok"

    with pytest.raises(BadJobTool, match=r"tool .*: its name must be 1 to 128 of the letters A-Z"):
        server.job_tool(quick, name=name)
    with pytest.raises(BadJobTool, match=r"tool .*: its name must be 1 to 128 of the letters A-Z"):
        server.tool(name=name)(quick)
    assert server.specs == {}
    server.job_tool(quick, name="Map_code-2.v1")
