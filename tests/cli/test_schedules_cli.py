"""`vibe-jobs schedules list|pause|resume|delete` in-process against a SQLite store."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from vibe_jobs.cli import main
from vibe_jobs.engine.schedules import Schedules, parse_spec
from vibe_jobs.jobtool import make_spec
from vibe_jobs.manager import JobManager
from vibe_jobs.store import open_store


def echo(text: str) -> str:
    return text


async def fill(tmp_path: Path) -> tuple[str, str]:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    store = open_store(url)
    await store.open()
    try:
        s = Schedules(JobManager(store), {"echo": make_spec(echo)})
        rec = await s.create(parse_spec({"tool": "echo", "arguments": {"text": "x"}, "cron": "@daily"}))
    finally:
        await store.close()
    return url, rec.schedule_id


def filled(tmp_path: Path) -> tuple[str, str]:
    return anyio.run(fill, tmp_path)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


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


def test_an_unknown_schedule_is_one_line_on_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url, _ = filled(tmp_path)
    code, out, err = run(capsys, "schedules", "pause", "nope", "--store", url)
    assert code == 1 and out == "" and err.strip() == "vibe-jobs: No schedule with id 'nope'"
