"""Lists that do not show results do not read them: list-jobs, `jobs://recent` and the dashboard's list page of
the real `vibe-jobs serve` over jobs whose results are large."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.e2e.conftest import HttpServer, http_client_for
from tests.e2e.test_health_metrics_e2e import serve_store
from tests.e2e.test_jobs_e2e import start, structured

pytestmark = pytest.mark.timeout(180)
JOBS = 40
TEXT = "x" * 10_000
COUNT = 100  # each result holds the text 100 times, twice (text block and structured): about 2 MB a job


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM), in MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    assert found is not None, status
    return int(found.group(1)) / 1024


async def test_listing_jobs_with_large_results_does_not_read_the_results() -> None:
    """A page of list-jobs (up to 500) read every job's whole result (up to max_result_bytes, 4 MiB, each) and
    decoded it on the event loop, to show none of it: 40 jobs of 2 MB took the server's peak memory up by
    146 MB (50 of 4 MB: 1.4 s a call, every other client held meanwhile). Now the results stay in the store."""
    with (
        tempfile.TemporaryDirectory(prefix="vj-lists-") as tmp,
        serve_store(f"sqlite:///{Path(tmp) / 'j.db'}") as (
            port,
            pid,
        ),
    ):
        server = HttpServer("streamable-http", port, None, None)  # type: ignore[arg-type]
        async with http_client_for(server, "auto") as client:
            ids = [await start(client, "echo", {"text": TEXT, "count": COUNT}) for _ in range(JOBS)]
            for job_id in ids:
                done = await client.call_tool("get-job-result", {"jobId": job_id, "waitSeconds": 30})
                assert structured(done)["status"] == "completed"
            before = peak_rss_mb(pid)
            listed = structured(await client.call_tool("list-jobs", {"limit": 500}))
            recent = await client.read_resource("jobs://recent")
            async with httpx.AsyncClient(timeout=60) as http:
                page = await http.get(f"http://127.0.0.1:{port}/")
            grown = peak_rss_mb(pid) - before
    assert [j["id"] for j in listed["jobs"]] == ids[::-1]
    assert all(j["status"] == "completed" and "result" not in j for j in listed["jobs"])
    assert len(json.loads(recent.contents[0].text)["jobs"]) == JOBS  # type: ignore[union-attr]
    assert page.status_code == 200 and ids[0] in page.text
    assert grown < 40, f"listing took the server's peak memory up by {grown:.0f} MB"
