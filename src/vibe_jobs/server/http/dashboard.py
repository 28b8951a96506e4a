"""The dashboard's routes, mounted beside /mcp (streamable HTTP, SSE) or served alone (`vibe-jobs dashboard`).

GET `/` (jobs, newest first, filters, cursor paging), GET `/jobs/{jobId}`, POST `/jobs/{jobId}/cancel` and
`/jobs/{jobId}/retry` (through the manager calls the MCP tools use, behind `guard.Guard`), GET `/events` (SSE),
`/static/...` (vendored script and style), `/healthz`, `/readyz`, `/metrics`.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterable
from importlib import resources
from typing import Any, cast

from mcp.server.mcpserver import MCPServer
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from vibe_jobs.engine.schedules import Schedules
from vibe_jobs.errors import InvalidParams, InvalidTransition, JobError, JobNotFound, QueueFull, QuotaExceeded
from vibe_jobs.identity import Viewer
from vibe_jobs.manager import JobManager
from vibe_jobs.metrics import Statistics, job_metrics
from vibe_jobs.models import Job, JobRecord
from vibe_jobs.results import within_answer
from vibe_jobs.schedules import Schedule
from vibe_jobs.server.http import pages
from vibe_jobs.server.http.guard import CSRF_COOKIE, CSRF_FIELD, Guard, Refused, check_origin
from vibe_jobs.server.http.health import healthz, readyz_endpoint
from vibe_jobs.server.http.live import events_endpoint
from vibe_jobs.server.http.prom import metrics_endpoint
from vibe_jobs.states import JobStatus
from vibe_jobs.store.base import ScheduleStore

Endpoint = Callable[[Request], Awaitable[Response]]
STATIC = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}
PAGE_SIZE = 50
# the schedules the jobs page shows (oldest first, without their arguments), each with its last job's status: one
# principal may keep 1,000 (VIBE_JOBS_QUOTA_SCHEDULES), each with 1 MiB of arguments, and every view read them
# all; the rest are counted, not read
SHOWN_SCHEDULES = 50
# Every page: never inside another site's frame (its buttons cancel and retry jobs: a framed page could be
# clicked through), its type as said, and no job URL (ids) in a Referer to another site ("no-referrer" would also
# make the browser send `Origin: null` with the page's own form posts, which the same-origin check refuses); never
# kept by a browser's or a proxy's cache (a page shows jobs' arguments and results, and is stale a moment later).
# Behind the escaping (`pages.e`), only the dashboard's own files run and load: markup that ever reached a page
# unescaped (a job's words) runs no script (inline, or a handler) in the operator's session and posts no form away.
PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; object-src 'none'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": PAGE_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
# a change's form as the pages post it: one CSRF field (64 characters), no file. Read with these limits, a body of
# anything else is refused at its first field past them; Starlette's own (1,000 fields of 1 MiB each, files of any
# size spooled to disk) let one post hold a gigabyte
FORM_LIMITS: dict[str, int] = {"max_files": 0, "max_fields": 4, "max_part_size": 1024}
STATS_TTL_SECONDS = 1.0  # pages share one statistics snapshot a second (counting 100,000 jobs in SQLite is ~15 ms)


class Dashboard:
    """The handlers, bound to one manager and one guard."""

    def __init__(
        self,
        manager: JobManager,
        guard: Guard | None = None,
        tools: Iterable[str] = (),
    ) -> None:
        self.m, self.guard, self.tools = manager, guard or Guard(), tuple(tools)
        self._stats_at, self._stats_cache = -math.inf, cast(Statistics | None, None)

    def routes(self) -> list[Route]:
        return [
            Route("/", self._page(self.jobs), methods=["GET"]),
            Route("/jobs/{jobId}", self._page(self.job), methods=["GET"]),
            Route("/jobs/{jobId}/cancel", self._page(self.cancel), methods=["POST"]),
            Route("/jobs/{jobId}/retry", self._page(self.retry), methods=["POST"]),
            Route("/events", events_endpoint(self.m, self.guard.check_read), methods=["GET"]),
            Route("/static/{name}", static, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz_endpoint(self.m.store), methods=["GET"]),
            Route("/metrics", metrics_endpoint(self.m), methods=["GET"]),
        ]

    def _page(self, handler: Callable[[Request, pages.View], Awaitable[Response]]) -> Endpoint:
        """Run a handler with the guard's read check, its View, and errors answered as pages."""

        async def endpoint(request: Request) -> Response:
            try:
                await self.guard.check_read(request)  # before anything is read for the page
            except Refused as exc:
                refused = _page("Refused", str(exc), pages.View("", self.m.now()), exc.status)
                refused.headers.update({**PAGE_HEADERS, **exc.headers})
                return refused
            cookie, new = self.guard.csrf_cookie(request)
            stats = await self._stats()
            learned = stats.learned_durations if stats is not None else None
            view = pages.View(self.guard.csrf_token(cookie), self.m.now(), stats, learned)
            try:
                response = await handler(request, view)
            except Refused as exc:
                response = _page("Refused", str(exc), view, exc.status)
                response.headers.update(exc.headers)
            except JobNotFound as exc:
                response = _page("No such job", str(exc), view, 404)
            except InvalidParams as exc:  # a filter or cursor of the URL
                response = _page("Bad request", str(exc), view, 400)
            except InvalidTransition as exc:
                response = _page("Not done", str(exc), view, 409)
            except JobError as exc:  # a retry refused (a quota, a full queue, a dependency gone): say why
                response = _page("Not done", str(exc), view, 429 if isinstance(exc, QuotaExceeded | QueueFull) else 409)
            if new:
                response.set_cookie(CSRF_COOKIE, cookie, httponly=True, samesite="strict")
            response.headers.update(PAGE_HEADERS)
            return response

        return endpoint

    async def _stats(self) -> Statistics | None:
        """The queue figures for the page header (live pages get fresh ones over /events every 2 s). The snapshot's
        age is time passed (the manager's ticks): read by the clock, an hour's step back served it for the hour."""
        now = self.m.ticks()
        if self._stats_cache is not None and now - self._stats_at < STATS_TTL_SECONDS:
            return self._stats_cache
        try:
            self._stats_cache, self._stats_at = await self.m.statistics(), now
        except JobError:
            return None  # the store is down: pages say so through their own errors, /readyz says why
        return self._stats_cache

    async def _schedules(self) -> tuple[list[Schedule], int]:
        """The jobs page's schedules: the first SHOWN_SCHEDULES with their last outcome, and how many more."""
        store = self.m.store
        if not isinstance(store, ScheduleStore):
            return [], 0
        records = await store.list_schedules(limit=SHOWN_SCHEDULES, arguments=False)  # the page shows none
        shown = await Schedules(self.m, {}).described(records)
        return shown, max(0, await store.count_schedules(None) - len(shown))

    async def jobs(self, request: Request, view: pages.View) -> Response:
        q = request.query_params
        # `tool` (the page's own filter) or `toolName`, list-jobs' name for it
        status, tool = q.get("status") or None, q.get("tool") or q.get("toolName") or None
        if status is not None and status not in pages.STATUSES:
            raise InvalidParams(f"status must be one of {', '.join(pages.STATUSES)}, not {status!r}")
        cursor = q.get("cursor") or None
        page = await self.m.list_jobs(status, tool, PAGE_SIZE, cursor, with_result=False, with_params=False)
        known = {*self.tools, *(view.stats.by_tool if view.stats else {})}
        try:
            schedules = await self._schedules()
        except JobError:
            schedules = [], 0  # the store is down: the jobs read above worked, the banner says why
        return HTMLResponse(pages.jobs_page(page, view, status, tool, known, first=cursor is None, schedules=schedules))

    async def job(self, request: Request, view: pages.View) -> Response:
        job_id = request.path_params["jobId"]
        rec = await self.m.get_record(job_id)
        job, metrics = Job.from_record(shown_result(rec, self.m.settings.max_answer_bytes)), job_metrics(rec)
        page = pages.job_page(job, metrics, view, self.m.expected_duration(rec), rec.stage_history)
        return HTMLResponse(page)

    async def cancel(self, request: Request, view: pages.View) -> Response:
        await self._check_change(request)
        job_id = request.path_params["jobId"]
        await self.m.cancel_job(job_id, "cancelled from the dashboard")
        return RedirectResponse(f"/jobs/{job_id}", status_code=303)

    async def retry(self, request: Request, view: pages.View) -> Response:
        """A new job of the failed (or cancelled) job's principal, with its tool, arguments and task fields."""
        await self._check_change(request)
        rec = await self.m.get_record(request.path_params["jobId"])
        if rec.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
            raise InvalidTransition(rec.id, rec.status.value, "retried", "only a failed or cancelled job is retried")
        task = rec.task
        if task is not None and task.deadline is not None and task.deadline <= self.m.now():
            task = task.model_copy(update={"deadline": None})  # kept, it fails the retry at once ("deadline passed")
        # the failed job's principal's: its owner sees the retry, and its quotas count it
        new_id = await self.m.create_job(rec.tool_name, rec.params, task=task, viewer=Viewer(rec.principal))
        return RedirectResponse(f"/jobs/{new_id}", status_code=303)

    async def _check_change(self, request: Request) -> None:
        check_origin(request)  # a cross-site post costs no read of its body
        try:
            form = await request.form(**FORM_LIMITS)
        except (HTTPException, MultiPartException) as exc:  # past a limit: the rest of the body is never read
            why = exc.detail if isinstance(exc, HTTPException) else exc.message
            raise InvalidParams(f"not a form of this dashboard: {why}") from None
        token = form.get(CSRF_FIELD)
        await self.guard.check_change(request, token if isinstance(token, str) else None)


def shown_result(rec: JobRecord, max_bytes: int) -> JobRecord:
    """The job as its page shows it: its result within `max_bytes` (`within_answer`, as other answers over HTTP show
    it), not whole: a result of up to max_result_bytes was escaped into the page whole, 10 MB of HTML, the event
    loop held 125 ms per view of it."""
    if rec.result is None:
        return rec
    shown = within_answer(rec.result, max_bytes, f"`vibe-jobs jobs show {rec.id}` where its store is")
    return rec if shown is rec.result else rec.changed({"result": shown}, bump=False)


def _page(title: str, text: str, view: pages.View, status: int) -> Response:
    return HTMLResponse(pages.message_page(title, text, view), status_code=status)


async def static(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in STATIC:
        return Response("not found", status_code=404, media_type="text/plain")
    body = resources.files("vibe_jobs.server.http").joinpath("static", name).read_bytes()
    return Response(body, media_type=STATIC[name], headers={"Cache-Control": "max-age=300"})


def add_dashboard(mcp: MCPServer[Any], dashboard: Dashboard) -> None:
    """Mount the dashboard's routes on the MCP server's HTTP app (served with streamable HTTP and SSE)."""
    for route in dashboard.routes():
        mcp.custom_route(route.path, methods=sorted(route.methods or ()))(route.endpoint)


def dashboard_app(dashboard: Dashboard) -> Starlette:
    """The dashboard alone (`vibe-jobs dashboard`), its manager run by the caller: the command opens the store
    before it listens, so that a store that cannot open is its one-line error (opened in the app's lifespan, it
    was uvicorn's logged traceback and exit 3, after the dashboard had said where it served)."""
    return Starlette(routes=dashboard.routes())
