"""`vibe-jobs schedules list|pause|resume|delete` in-process against a SQLite store."""

from __future__ import annotations

import json
import re
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
