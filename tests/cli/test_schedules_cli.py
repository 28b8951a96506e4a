"""`vibe-jobs schedules list|pause|resume|delete` in-process against a SQLite store."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import anyio
import httpx2 as httpx
import pytest

from vibe_jobs.cli import main
from vibe_jobs.engine.schedules import Schedules, parse_spec
from vibe_jobs.errors import InvalidSchedule
from vibe_jobs.jobtool import make_spec
from vibe_jobs.manager import JobManager
from vibe_jobs.store import open_store


def echo(text: str) -> str:
    return text


async def fill(tmp_path: Path, timing: dict[str, str]) -> tuple[str, str]:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    store = open_store(url)
    await store.open()
    try:
        s = Schedules(JobManager(store), {"echo": make_spec(echo)})
        rec = await s.create(parse_spec({"tool": "echo", "arguments": {"text": "x"}, **timing}))
    finally:
        await store.close()
    return url, rec.schedule_id


def filled(tmp_path: Path, **timing: str) -> tuple[str, str]:
    return anyio.run(fill, tmp_path, timing or {"cron": "@daily"})


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """The command's exit code, stdout and stderr (not what setting up the store logged before it)."""
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_store_and_json_may_come_before_the_subcommand_as_for_jobs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`vibe-jobs schedules --store URL --json list` was a usage error (exit 2), where `jobs` takes either place."""
    url, sid = filled(tmp_path)
    code, out, err = run(capsys, "schedules", "--store", url, "--json", "list")
    assert code == 0, err
    assert [s["scheduleId"] for s in json.loads(out)] == [sid]
    code, out, _ = run(capsys, "schedules", "--json", "pause", sid, "--store", url)
    assert code == 0 and json.loads(out)["paused"] is True


def test_list_pause_resume_delete(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url, sid = filled(tmp_path)
    code, out, _ = run(capsys, "schedules", "list", "--store", url)
    assert code == 0 and sid in out and "@daily" in out and "active" in out
    code, out, _ = run(capsys, "schedules", "pause", sid, "--store", url, "--json")
    assert code == 0 and json.loads(out)["paused"] is True
    code, out, _ = run(capsys, "schedules", "list", "--store", url, "--json")
    assert [s["paused"] for s in json.loads(out)] == [True]
    code, out, _ = run(capsys, "schedules", "resume", sid, "--store", url)
    assert code == 0 and f"schedule {sid} resumed" in out
    code, out, _ = run(capsys, "schedules", "delete", sid, "--store", url)
    assert code == 0 and "deleted" in out
    code, out, _ = run(capsys, "schedules", "list", "--store", url)
    assert out.strip() == "no schedules"


def test_a_cron_read_in_another_zone_is_listed_with_its_zone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """TIMING showed "0 3 * * *" beside a NEXT of 02:00 UTC (Berlin's 03:00): the zone the cron is read in was
    nowhere in the table."""
    url, sid = filled(tmp_path, cron="0 3 * * *", timezone="Europe/Berlin")
    code, out, _ = run(capsys, "schedules", "list", "--store", url)
    assert code == 0 and f"{sid}  echo  0 3 * * * (Europe/Berlin)" in out, out
    assert re.search(r" 0[12]:00:00 UTC", out), out  # 03:00 in Berlin, in winter or in summer


def test_an_unknown_schedule_is_one_line_on_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url, _ = filled(tmp_path)
    code, out, err = run(capsys, "schedules", "pause", "nope", "--store", url)
    assert code == 1 and out == "" and err.strip() == "vibe-jobs: No schedule with id 'nope'"


def test_a_mistyped_store_is_refused_not_created(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["list"], ["pause", "some-id"]):
        typo = tmp_path / "typo" / "jobs.db"
        code, out, err = run(capsys, "schedules", *args, "--store", f"sqlite:///{typo}")
        assert code == 1 and out == "" and f"no SQLite database at {typo}" in err, err
        assert not typo.parent.exists(), "the command created the store it was pointed at"


async def push_far(url: str, schedule_id: str) -> None:
    """Move a schedule's next firing to the year 33,658, as a store written before such schedules were
    refused (`everySeconds: 1e12`) may hold."""
    store = open_store(url)
    await store.open()
    try:
        rec = await store.get_schedule(schedule_id)  # type: ignore[attr-defined]
        await store.update_schedule(schedule_id, {"next_fire_at": 10**15}, rec.version)  # type: ignore[attr-defined]
    finally:
        await store.close()


def test_a_firing_past_the_year_9999_is_listed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url, sid = filled(tmp_path)
    anyio.run(push_far, url, sid)
    code, out, err = run(capsys, "schedules", "list", "--store", url)
    assert code == 0 and sid in out and "1000000000000000 ms" in out, err
    with pytest.raises(InvalidSchedule, match="everySeconds: Input should be less than or equal to"):
        parse_spec({"tool": "echo", "everySeconds": 1e12})  # such a schedule is refused now


def test_the_dashboard_lists_schedules_with_last_and_next_firing(tmp_path: Path) -> None:
    from tests.cli.test_dashboard_cli import dashboard

    url, sid = filled(tmp_path)
    with dashboard(url) as base, httpx.Client(base_url=base) as http:
        page = http.get("/").text
    row = re.search(rf'<tr data-schedule="{sid}">(.*?)</tr>', page)
    assert row is not None, page[:2000]
    assert "echo" in row.group(1) and "@daily" in row.group(1) and " UTC" in row.group(1)  # its next firing


SKEWED_CLOCK = """
import os, time

_wall, _offset = time.time, float(os.environ["VJ_TEST_CLOCK_OFFSET"])
time.time = lambda: _wall() + _offset
"""


@pytest.mark.postgres
def test_resume_on_postgresql_resumes_from_the_database_s_time_not_the_operator_machine_s(tmp_path: Path) -> None:
    """The servers of a PostgreSQL store keep the database's time; `vibe-jobs schedules resume` took its own
    machine's. Run where the clock is an hour behind, it resumed a minutely schedule at a tick an hour past, so the
    servers fired at once what came due while it was paused ("resuming fires from now on"); an hour ahead, it
    fired nothing for the hour."""
    from tests.cli.test_dashboard_cli import drop_schema
    from tests.e2e.conftest import ROOT
    from tests.pg import postgres_url, with_new_schema
    from vibe_jobs.store.postgres import PostgresStore

    url = with_new_schema(postgres_url("schedules resume on PostgreSQL"), "vj_sched_cli")

    async def paused() -> str:
        store = open_store(url)
        await store.open()
        try:
            s = Schedules(JobManager(store), {"echo": make_spec(echo)})
            spec = {"tool": "echo", "arguments": {"text": "x"}, "everySeconds": 60, "startAt": 0}  # on the minute
            rec = await s.create(parse_spec(spec))
            await s.pause(rec.schedule_id)
        finally:
            await store.close()
        return rec.schedule_id

    async def database_ms() -> int:
        store = open_store(url)
        assert isinstance(store, PostgresStore)
        await store.open()
        try:
            return await store.clock_ms()
        finally:
            await store.close()

    (tmp_path / "sitecustomize.py").write_text(SKEWED_CLOCK)
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT / 'src'}", "VJ_TEST_CLOCK_OFFSET": "-3600"}
    try:
        sid = anyio.run(paused)
        cli = [sys.executable, "-m", "vibe_jobs", "schedules", "resume", sid, "--store", url, "--json"]
        done = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=60, check=False)
        now = anyio.run(database_ms)
    finally:
        anyio.run(drop_schema, url)
    assert done.returncode == 0, done.stderr
    resumed = json.loads(done.stdout)
    assert now < resumed["nextFireAt"] <= now + 60_000 + 5_000, (resumed["nextFireAt"] - now, resumed)
