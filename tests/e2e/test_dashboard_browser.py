"""The dashboard in a real headless Chromium against the real `vibe-jobs serve` (streamable HTTP)."""

from __future__ import annotations

import itertools
import os
import re
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from mcp import Client

from tests.e2e.browser import browser_page, screenshot, until_true
from tests.e2e.conftest import BASE_ENV, HttpServer, http_client_for, start_http, stop
from tests.e2e.test_jobs_e2e import follow, read, start, until_running

pytestmark = [pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def server() -> Iterator[HttpServer]:
    with start_http("streamable-http") as srv:
        yield srv


def base(server: HttpServer) -> str:
    return f"http://127.0.0.1:{server.port}"


@asynccontextmanager
async def client_of(server: HttpServer) -> AsyncIterator[Client]:
    async with http_client_for(server, "auto") as client:
        yield client


async def test_the_jobs_page_lists_jobs(server: HttpServer) -> None:
    async with client_of(server) as client:
        ids = [await start(client, "echo", {"text": f"listed {i}"}) for i in range(3)]
        for job_id in ids:
            await follow(client, job_id)
    async with browser_page() as page:
        await page.goto(base(server) + "/")
        for job_id in ids:
            row = page.locator(f'tr[data-job="{job_id}"]')
            await row.wait_for()
            assert await row.get_attribute("data-status") == "completed"
            assert "echo" in await row.inner_text()
        learned = await page.locator("details.learned").text_content() or ""
        assert "echo" in learned, "the learned durations of the tool that ran are not shown"
        print("screenshot:", await screenshot(page, "jobs-page.png"))


async def test_a_running_jobs_progress_bar_advances_without_a_reload(server: HttpServer) -> None:
    async with client_of(server) as client, browser_page() as page:
        job_id = await start(client, "sleepy", {"seconds": 6, "steps": 12})
        await until_running(client, job_id)
        await page.goto(f"{base(server)}/jobs/{job_id}")
        await until_true(page, "document.body.dataset.live === '1'")
        await page.evaluate("window.notReloaded = true")
        bar = page.locator("#job progress")
        first = float(await bar.get_attribute("value") or 0)
        await until_true(page, f"Number(document.querySelector('#job progress').value) > {first} + 10", seconds=15)
        assert await page.evaluate("window.notReloaded === true"), "the page was reloaded"
        assert await page.locator("#job .stage").inner_text() == "sleep"
        print("screenshot:", await screenshot(page, "job-page-running.png"))
        await follow(client, job_id)
        await page.reload()
        assert "sleep" in await page.locator("#stages").inner_text()


async def test_the_jobs_page_shows_a_new_job_and_its_progress_live(server: HttpServer) -> None:
    async with client_of(server) as client, browser_page() as page:
        await page.goto(base(server) + "/")
        await until_true(page, "document.body.dataset.live === '1'")
        await page.evaluate("window.notReloaded = true")
        job_id = await start(client, "sleepy", {"seconds": 4, "steps": 8})
        row = page.locator(f'tr[data-job="{job_id}"]')
        await row.wait_for(timeout=10_000)  # inserted from its `created` event
        await until_true(
            page, f"Number(document.querySelector('tr[data-job=\"{job_id}\"] progress').value) >= 25", seconds=15
        )
        await page.locator(f'tr[data-job="{job_id}"][data-status="completed"]').wait_for(timeout=15_000)
        assert await page.evaluate("window.notReloaded === true"), "the page was reloaded"
        await until_true(page, "document.getElementById('spark-queue').innerHTML.includes('polyline')")


async def test_a_row_added_live_shows_its_priority_and_attempt(server: HttpServer) -> None:
    """A row inserted from a `created` event had empty priority and attempt cells, and no row's attempt moved
    until the page was loaded again (helper-115's note)."""
    async with client_of(server) as client, browser_page() as page:
        await page.goto(base(server) + "/")
        await until_true(page, "document.body.dataset.live === '1'")
        submitted = await client.call_tool(
            "submit-job", {"tool": "sleepy", "arguments": {"seconds": 2, "steps": 4}, "priority": "high"}
        )
        assert not submitted.is_error and submitted.structured_content is not None
        job_id = submitted.structured_content["jobId"]
        cells = f'tr[data-job="{job_id}"] td'
        await page.locator(f'tr[data-job="{job_id}"]').wait_for(timeout=10_000)
        assert await page.locator(cells).nth(2).inner_text() == "high"
        await until_true(
            page, f"document.querySelectorAll('{cells}')[5].textContent === '1'", seconds=15
        )  # its first attempt, from the event of its start


async def test_cancel_from_the_page_ends_the_job_cancelled(server: HttpServer) -> None:
    async with client_of(server) as client, browser_page() as page:
        job_id = await start(client, "wait_forever", {})
        await until_running(client, job_id)
        await page.goto(f"{base(server)}/jobs/{job_id}")
        dialogs: list[str] = []

        async def accept(dialog: Any) -> None:
            dialogs.append(dialog.message)
            await dialog.accept()

        page.on("dialog", accept)
        async with page.expect_navigation():
            await page.click("button.cancel")
        assert dialogs == [
            "Stop this job? OK stops it; Cancel keeps it running."
        ]  # "Cancel" of a cancel read both ways
        _, seen = await follow(client, job_id)
        assert seen[-1]["status"] == "cancelled"
        assert "cancelled from the dashboard" in seen[-1]["message"]
        await page.locator('#job[data-status="cancelled"]').wait_for()


async def test_a_declined_confirmation_leaves_the_job_running(server: HttpServer) -> None:
    async with client_of(server) as client, browser_page() as page:
        job_id = await start(client, "wait_forever", {})
        await until_running(client, job_id)
        await page.goto(f"{base(server)}/jobs/{job_id}")

        async def decline(dialog: Any) -> None:
            await dialog.dismiss()

        page.on("dialog", decline)
        await page.click("button.cancel")
        _, body = await read(client, job_id)
        assert body["status"] == "running"
        await client.call_tool("cancel-job", {"jobId": job_id})


async def test_a_failed_jobs_page_shows_its_error_and_diagnostics_and_retry_makes_a_new_job(
    server: HttpServer,
) -> None:
    async with client_of(server) as client, browser_page() as page:
        job_id = await start(client, "explode", {"message": "boom from the test"})
        await follow(client, job_id)
        await page.goto(f"{base(server)}/jobs/{job_id}")
        assert "boom from the test" in await page.locator("#result.error").inner_text()
        assert "about to explode" in await page.locator("#diagnostics").inner_text()
        print("screenshot:", await screenshot(page, "job-page-failed.png"))
        await page.click("button.retry")
        # "commit", not "load": the new job may fail while its page loads, and the page then reloads itself
        await page.wait_for_url(re.compile(rf"/jobs/(?!{job_id})[0-9a-f]{{32}}$"), wait_until="commit")
        new_id = page.url.rsplit("/", 1)[-1]
        _, seen = await follow(client, new_id)
        assert seen[-1]["toolName"] == "explode" and seen[-1]["status"] == "failed"
        assert "boom from the test" in seen[-1]["message"]
        await page.locator(f'#job[data-job="{new_id}"][data-status="failed"]').wait_for()


async def test_the_pages_read_at_phone_width(server: HttpServer) -> None:
    async with browser_page(390, 844) as page:
        await page.goto(base(server) + "/")
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the jobs page scrolls sideways at phone width ({width} px)"


async def test_a_tab_goes_from_page_to_page_without_running_out_of_connections(server: HttpServer) -> None:
    """Each page left kept its live stream open in the browser's back/forward cache: after six page views in one tab
    (a browser keeps six connections to a host) the next page never loaded (review helper-58)."""
    async with client_of(server) as client:
        done = await start(client, "echo", {"text": "page to page"})
        await follow(client, done)
    pages = [f"{base(server)}/", f"{base(server)}/jobs/{done}"] * 5
    async with browser_page() as page:
        page.set_default_timeout(10_000)
        for url in pages:
            await page.goto(url)
            await page.locator('body[data-live="1"]').wait_for()  # its own stream is open
        await page.go_back()  # a page shown again from the cache is current (reloaded), and live
        await page.locator('body[data-live="1"]').wait_for()


async def scroll_width(page: Any, url: str) -> int:
    await page.goto(url)
    return int(await page.evaluate("document.documentElement.scrollWidth"))


async def test_a_long_unbroken_error_does_not_widen_the_pages_at_phone_width(server: HttpServer) -> None:
    """An error without spaces (a path, a URL) is the job's progress message and diagnostics: the jobs page and the
    job page scrolled sideways by 2,400 px at 375 px (UX walk, helper-115)."""
    async with client_of(server) as client:
        job_id = await start(client, "explode", {"message": "/var/data/" + "x" * 300})
        await follow(client, job_id)
    async with browser_page(375, 800) as page:
        for url in (f"{base(server)}/", f"{base(server)}/jobs/{job_id}"):
            width = await scroll_width(page, url)
            assert width <= 375, f"{url} scrolls sideways at 375 px ({width} px)"


async def test_a_job_page_with_a_dependency_reads_at_phone_width(server: HttpServer) -> None:
    """The run facts' second column (a dependency's 32-character id, a time) did not shrink: 432 px at 375 px."""
    async with client_of(server) as client:
        first = await start(client, "echo", {"text": "first"})
        answer = await client.call_tool(
            "submit-job", {"tool": "echo", "arguments": {"text": "then"}, "dependsOn": [first]}
        )
        second = str((answer.structured_content or {})["jobId"])
        await follow(client, second)
    async with browser_page(375, 800) as page:
        width = await scroll_width(page, f"{base(server)}/jobs/{second}")
        assert width <= 375, f"the job page scrolls sideways at 375 px ({width} px)"
        async with page.expect_navigation():
            await page.click(f'dl a[href="/jobs/{first}"]')  # a dependency's id was text, not a link to its page
        await page.locator(f'#job[data-job="{first}"]').wait_for()


async def test_the_pages_log_no_console_error(server: HttpServer) -> None:
    """Every page load logged `Failed to load resource: 404` (the browser's /favicon.ico)."""
    async with client_of(server) as client:
        job_id = await start(client, "echo", {"text": "quiet"})
        await follow(client, job_id)
    errors: list[str] = []
    async with browser_page() as page:
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        for url in (f"{base(server)}/", f"{base(server)}/jobs/{job_id}"):
            await page.goto(url)
            await page.locator('body[data-live="1"]').wait_for()
        assert errors == []


async def test_a_page_shows_what_changed_while_its_server_restarted(tmp_path: Any) -> None:
    """The stream reconnects after a restart, but a change made meanwhile was never shown: the reconnected stream
    takes the store as it finds it for what the page shows (UX walk, helper-115)."""
    store = ["--store", f"sqlite:///{tmp_path}/jobs.db"]
    with start_http("streamable-http", args=store) as first:
        async with client_of(first) as client:
            blocker = await start(client, "wait_forever", {})
            answer = await client.call_tool("submit-job", {"tool": "noop", "arguments": {}, "dependsOn": [blocker]})
            waiting = str((answer.structured_content or {})["jobId"])
        async with browser_page() as page:
            await page.goto(f"{base(first)}/jobs/{waiting}")
            await page.locator('body[data-live="1"] #job[data-status="pending"]').wait_for()
            stop(first.proc)
            cancel = [sys.executable, "-m", "vibe_jobs", "jobs", *store, "cancel", waiting]
            done = await anyio.run_process(cancel, env={**os.environ, **BASE_ENV}, check=False)
            assert done.returncode == 0, done.stderr.decode()
            with start_http("streamable-http", args=store, port=first.port):
                await page.locator('#job[data-status="cancelled"]').wait_for(timeout=20_000)
                await page.locator('body[data-live="1"]').wait_for()


async def test_a_new_job_is_not_put_on_a_page_of_older_jobs(server: HttpServer) -> None:
    """The second page ("Older jobs →") took every new job at its top, above jobs older than those of page one."""
    async with client_of(server) as client:
        for _ in range(51):  # more than a page, whatever the other tests left
            await start(client, "noop", {})
        async with browser_page() as page:
            await page.goto(base(server) + "/")
            await page.click("a.next")
            await page.wait_for_url(re.compile(r"cursor="))
            await page.locator('body[data-live="1"]').wait_for()
            first_page = await page.context.new_page()
            await first_page.goto(base(server) + "/")
            await first_page.locator('body[data-live="1"]').wait_for()
            job_id = await start(client, "echo", {"text": "newest"})
            await follow(client, job_id)
            await first_page.locator(f'tr[data-job="{job_id}"][data-status="completed"]').wait_for()
            assert await page.locator(f'tr[data-job="{job_id}"]').count() == 0, "a new job on the page of older jobs"


async def test_the_health_banner_changes_only_when_the_health_does(server: HttpServer) -> None:
    """The banner is a live region (role=status): it was written anew with every stats event (every 2 s), so a
    screen reader announced the same health over and over."""
    async with browser_page() as page:
        await page.goto(base(server) + "/")
        initial = await page.locator("#health").text_content() or ""
        await page.evaluate(
            """() => { window.writes = [];
               new MutationObserver(() => window.writes.push(document.getElementById('health').textContent))
                 .observe(document.getElementById('health'), {childList: true, subtree: true, characterData: true,
                                                             attributes: true}); }"""
        )
        # three stats events: the sparkline has three points
        await until_true(
            page,
            "(document.querySelector('#spark-queue polyline')?.getAttribute('points') || '').split(' ').length >= 3",
            seconds=15,
        )
        writes: list[str] = [initial, *await page.evaluate("window.writes")]
        repeated = [text for before, text in itertools.pairwise(writes) if before == text]
        assert not repeated, f"the banner was written {len(writes) - 1} times: {writes}"


async def test_a_script_put_into_a_page_does_not_run(server: HttpServer) -> None:
    """Defence in depth behind the escaping (review helper-154): the pages' policy allowed any script, so markup
    that ever reached a page unescaped (a job's words) would have run in the operator's session, whose buttons
    cancel jobs. Only the dashboard's own script file runs; an inline script and an event handler do not."""
    async with client_of(server) as client:
        job_id = await start(client, "echo", {"text": "policy"})
        await follow(client, job_id)
    async with browser_page() as page:
        await page.goto(f"{base(server)}/jobs/{job_id}")
        await page.locator('body[data-live="1"]').wait_for()  # the page's own script ran
        ran = await page.evaluate(
            """() => new Promise((resolve) => {
                const inline = document.createElement("script");
                inline.textContent = "window.pwned = 'inline'";
                document.body.appendChild(inline);
                const img = document.createElement("img");
                img.setAttribute("onerror", "window.pwned = (window.pwned || '') + ' handler'");
                img.addEventListener("error", () => setTimeout(() => resolve(window.pwned ?? null), 0));
                img.src = "/no-such-image";
                document.body.appendChild(img);
            })"""
        )
        assert ran is None, ran
