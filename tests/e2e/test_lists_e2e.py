"""Lists that do not show results do not read them: list-jobs, `jobs://recent` and the dashboard's list page of
the real `vibe-jobs serve` over jobs whose results are large."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.e2e.conftest import MODES, HttpServer, http_client_for, start_http
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


@pytest.mark.parametrize("mode", MODES)
async def test_a_page_of_jobs_over_http_fits_the_answer_limit_and_goes_on_by_its_cursor(mode: str) -> None:
    """list-jobs and `jobs://recent` showed every job's params (up to 1 MiB) and question whole: two large jobs on
    a page put it past the client's 1 MiB, and neither the owner nor the admin could read any page (review
    helper-55). Now the large ones show as markers, and a page that would still not fit ends early, with a cursor
    to the rest. Here the answer limit is 64 KiB: params past 16 KiB in all are markers; a page keeps 24 KiB."""
    with start_http("streamable-http", {"VIBE_JOBS_MAX_ANSWER_BYTES": "65536"}) as server:
        async with http_client_for(server, mode) as client:
            large = [await start(client, "echo", {"text": "L" * 15_000}) for _ in range(2)]
            small = [await start(client, "echo", {"text": "s" * 500}) for _ in range(60)]
            pages, cursor = [], None
            while True:
                page = structured(
                    await client.call_tool("list-jobs", {"limit": 500, **({"cursor": cursor} if cursor else {})})
                )
                pages.append(page["jobs"])
                if not (cursor := page.get("nextCursor")):
                    break
            recent = json.loads((await client.read_resource("jobs://recent")).contents[0].text)  # type: ignore[union-attr]
    listed = [job for jobs in pages for job in jobs]
    assert [job["id"] for job in listed] == (large + small)[::-1]  # every job once, newest first
    assert len(pages) > 1 and all(len(json.dumps(jobs)) < 65536 for jobs in pages)
    shown = {job["id"]: job["params"] for job in listed}
    for job_id in large:
        assert shown[job_id] == {"truncated": True, "originalBytes": 15_021, "maxAnswerBytes": 65536}
    assert any(shown[job_id] == {"text": "s" * 500, "count": 1} for job_id in small)  # the small ones, while they fit
    assert recent["jobs"] and recent["nextCursor"] and len(json.dumps(recent)) < 65536
