"""Job resources: `job://{jobId}` (the JobStatusMessage) and `jobs://recent`, with update notifications (those of
`jobs://recent`: `server/recent_feed.py`).

A client subscribed to `job://ID` hears of every state change and of progress (thinned to one update per
`min_interval` per job, the last one always delivered), in both protocol eras: legacy `resources/subscribe`
(answered by `session.send_resource_updated`) and 2026-07-28 `subscriptions/listen` streams (fed through the
SubscriptionBus the hub hands the MCPServer at construction). One background task, started by the first
subscriber, reads the manager's event bus and fans out; a finished job's final update is its last. It never waits on
a client: a listen stream buffers its events (the SDK ends one whose backlog fills), and each connection's legacy
updates go out from a task of its own (`_Outbox`), those waiting coalesced per URI, so a client that stops reading
its stream holds up only itself.

A legacy subscription outlives the request that made it, and a session's token may change meanwhile: the SDK binds
a session to its principal, not to its scopes, so a refreshed token may have lost `admin`. An update goes to a
session only while the viewer of its latest request (`auth.latest_viewer`) may read the job (`Viewer.sees`, the one
rule, on the job's principal noted at subscribe time: no store read per update); a subscription it may no longer
read ends. Past the expiry of a token that read it (an admin's), its updates are withheld, not ended: the client
may have refreshed the token without a request, and its next request says whether it still reads the job.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import anyio
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError
from mcp.server.session import ServerSession
from mcp.server.subscriptions import ResourceUpdated
from mcp.shared.exceptions import MCPError
from mcp_types import EmptyResult, SubscribeRequestParams, SubscriptionsListenRequestParams, UnsubscribeRequestParams
from mcp_types.jsonrpc import INVALID_PARAMS, INVALID_REQUEST
from pydantic import ValidationError

from vibe_jobs.arguments import shown
from vibe_jobs.errors import JobNotFound
from vibe_jobs.events import EventType, JobEvent, Subscription
from vibe_jobs.logs import get_logger
from vibe_jobs.manager import JobManager
from vibe_jobs.server.answers import carried_jobs, carried_status
from vibe_jobs.server.auth import Identity, latest_viewer, noted_viewer
from vibe_jobs.server.control import job_summary
from vibe_jobs.server.recent_feed import RECENT_URI, RecentFeed, ViewerBus
from vibe_jobs.server.sdk import add_request_handler, at_connection_close, connection_of
from vibe_jobs.states import FINAL

log = get_logger("vibe_jobs.resources")

JOB_TEMPLATE = "job://{jobId}"
JOB_PREFIX = "job://"
OWN_SCHEMES = (JOB_PREFIX, "jobs://")  # the URIs of the server's own resources (a proxied upstream's may not take one)
# 2026-07-28 listen streams one principal may hold open (the SDK's cap, 1,024, is for all principals together), and
# resource URIs one stream may name (a job URI is looked up when the stream opens; every URI is kept, and echoed in
# the ack, while it is open)
MAX_LISTEN_STREAMS = 64
MAX_LISTEN_URIS = 256
JOB_DESCRIPTION = (
    "A background job's status as JSON (the JobStatusMessage: status, message, progress, details and, once "
    "finished, result). Reading it is not a poll. Subscribe to hear of each state change and of progress."
)
RECENT_DESCRIPTION = (
    "The most recent jobs, newest first, as JSON: {jobs: [...], nextCursor} (older ones: list-jobs with that "
    "cursor). Subscribe to hear (at most once a second) that jobs you can see were created, changed state or "
    "reported progress."
)


def job_uri(job_id: str) -> str:
    return JOB_PREFIX + job_id


class JobResourceHub:
    """Who listens to which job resource, and the one task that tells them of changes."""

    def __init__(
        self,
        manager: JobManager,
        *,
        min_interval: float = 0.25,
        identity: Identity | None = None,
    ) -> None:
        self.manager, self.min_interval = manager, min_interval
        self.identity = identity or Identity()
        self.bus = ViewerBus(self.identity)  # pass it to MCPServer(subscriptions=...)
        self.recent = RecentFeed(manager, self.bus)
        self._sessions: dict[str, dict[object, ServerSession]] = {}  # uri -> connection -> a session on it
        self._owners: dict[str, str] = {}  # uri of a legacy subscription -> its job's principal
        self._listening: Counter[str] = Counter()  # uri -> open 2026-07-28 listen streams naming it
        self._streams: Counter[str] = Counter()  # principal -> its open listen streams
        self._last_sent: dict[str, float] = {}
        self._due: dict[str, float] = {}  # uri -> when its held-back progress update goes out
        self._outboxes: dict[object, _Outbox] = {}  # connection -> its legacy updates on their way
        self._running = False

    # -- subscribers -----------------------------------------------------------------------

    def wants(self, uri: str) -> bool:
        return uri in self._sessions or self._listening[uri] > 0

    def subscribe_session(self, uri: str, session: ServerSession, principal: str) -> None:
        """`session` hears of the job at `uri`, created by `principal`, while its connection's viewer sees it."""
        if not uri.startswith(JOB_PREFIX):  # only job resources change; others are accepted and stay quiet
            return
        self._sessions.setdefault(uri, {})[connection_of(session)] = session
        self._owners[uri] = principal
        self._watch(session)

    def subscribe_recent(self, session: ServerSession) -> None:
        """`session` hears that `jobs://recent` changed, for the jobs its connection's viewer sees."""
        self.recent.subscribe_session(session)
        self._watch(session)

    def _watch(self, session: ServerSession) -> None:
        at_connection_close(session, "vibe_jobs.resources", self._connection_closed)
        self._ensure_running()

    def _connection_closed(self, connection: object) -> None:
        """A client went away: its legacy subscriptions go with it (the SDK drops sends to it silently, so
        they would stay, and its session in memory, until each job ended)."""
        for uri in [u for u, sessions in self._sessions.items() if connection in sessions]:
            self._drop_session(uri, connection)
        self.recent.drop_session(connection)
        outbox = self._outboxes.pop(connection, None)
        if outbox is not None:  # its sender may wait on a write that will never finish
            outbox.scope.cancel()

    def unsubscribe_session(self, uri: str, session: ServerSession) -> None:
        self._drop_session(uri, connection_of(session))

    def _drop_session(self, uri: str, connection: object) -> None:
        if (outbox := self._outboxes.get(connection)) is not None:
            outbox.pending.pop(uri, None)  # an update still waiting to go is not told once it has unsubscribed
        if uri == RECENT_URI:
            self.recent.drop_session(connection)
            return
        sessions = self._sessions.get(uri, {})
        sessions.pop(connection, None)
        if not sessions:
            self._sessions.pop(uri, None)
            self._owners.pop(uri, None)

    def listen_started(self, uris: list[str], *, recent: bool = False) -> None:
        self._listening.update(uris)
        if recent:
            self.recent.listen_started()
        if uris or recent:
            self._ensure_running()

    def listen_ended(self, uris: list[str], *, recent: bool = False) -> None:
        self._listening.subtract(uris)
        self._listening = +self._listening  # drop zero counts
        if recent:
            self.recent.listen_ended()

    async def visible(self, uri: str, *, unfinished: bool = False) -> bool:
        """Whether the caller may hear of `uri`: a job URI names a job it sees (`unfinished`: that has more to
        tell); other URIs stay quiet anyway."""
        if not uri.startswith(JOB_PREFIX):
            return True
        return await self.principal_of(uri, unfinished=unfinished) is not None

    async def principal_of(self, uri: str, *, unfinished: bool = False) -> str | None:
        """The principal of the job at the job URI `uri` when the caller sees it (`unfinished`: and it has more to
        tell); else None."""
        try:
            rec = await self.manager.get_record(uri[len(JOB_PREFIX) :], self.identity.viewer())
        except JobNotFound:
            return None
        return None if unfinished and rec.status in FINAL else rec.principal

    async def track_listen(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        """Server middleware: while a `subscriptions/listen` stream is open, the job URIs it names are wanted.
        A job URI the caller cannot see (unknown, or another principal's) is dropped from the stream."""
        if ctx.method != "subscriptions/listen":
            return await call_next(ctx)
        principal = self.identity.viewer().principal
        listened = _listened_uris(ctx.params)
        _check_listen(len(listened), self._streams[principal])
        named = list(dict.fromkeys(u for u in listened if u.startswith(JOB_PREFIX)))  # each once, however often
        self._streams[principal] += 1  # before the lookups: concurrent requests cannot all pass one count
        try:
            uris = [uri for uri in named if await self.visible(uri)]
            if len(uris) != len(named):
                ctx = replace(ctx, params=_without_uris(ctx.params, set(named) - set(uris)))
            recent = RECENT_URI in listened
            self.listen_started(uris, recent=recent)
            try:
                return await call_next(ctx)
            finally:
                self.listen_ended(uris, recent=recent)
        finally:
            self._streams[principal] -= 1
            self._streams = +self._streams  # drop zero counts

    def _ensure_running(self) -> None:
        if not self._running:
            events = self.manager.subscribe()  # subscribed now, so no event after this call is missed
            self.manager.task_group.start_soon(self._run, events)
            self._running = True

    # -- the fan-out task ------------------------------------------------------------------

    async def _run(self, events: Subscription) -> None:
        try:
            with events:
                while True:
                    event = await self._next_event(events)
                    if event is not None:
                        await self._on_event(event)
                    await self._flush_due()
        finally:
            self._running = False

    async def _next_event(self, events: Subscription) -> JobEvent | None:
        """The next job event, or None when a held-back progress update falls due first."""
        wait = min(self.recent.due, min(self._due.values(), default=math.inf)) - anyio.current_time()
        with anyio.move_on_after(max(0.0, wait)):
            return await events.__anext__()
        return None

    async def _on_event(self, event: JobEvent) -> None:
        await self.recent.note(event)
        uri = job_uri(event.job_id)
        if event.type is EventType.EXPIRED or not self.wants(uri):
            self._forget(uri)
            return
        if event.type is EventType.PROGRESS:
            self._hold_or_send(uri)
        else:
            self._due[uri] = -math.inf  # a state change goes out at once
        await self._flush_due()
        if event.type is not EventType.PROGRESS and event.status in FINAL:
            self._forget(uri)  # nothing follows a finished job's last update

    def _hold_or_send(self, uri: str) -> None:
        if uri not in self._due:
            self._due[uri] = self._last_sent.get(uri, -math.inf) + self.min_interval

    async def _flush_due(self) -> None:
        now = anyio.current_time()
        for uri in [u for u, at in self._due.items() if at <= now]:
            del self._due[uri]
            self._last_sent[uri] = now
            await self._send(uri)
        for key, session in (await self.recent.flush(now)).items():
            self._post(RECENT_URI, key, session, None)

    def _forget(self, uri: str) -> None:
        self._due.pop(uri, None)
        self._last_sent.pop(uri, None)
        self._sessions.pop(uri, None)  # the job is done (or gone): its legacy subscriptions end
        self._owners.pop(uri, None)

    async def _send(self, uri: str) -> None:
        if self._listening[uri] > 0:
            await self.bus.publish(ResourceUpdated(uri=uri))  # listen streams buffer it: never waits on a client
        owner = self._owners.get(uri)
        for key, session in list(self._sessions.get(uri, {}).items()):
            self._post(uri, key, session, owner)

    def _post(self, uri: str, key: object, session: ServerSession, owner: str | None) -> None:
        """Queue an update of `uri` (of a job of `owner`; None: `jobs://recent`) for the connection `key`, told by
        a task of its own: one client that stops reading holds up only itself."""
        outbox = self._outboxes.get(key)
        if outbox is None:
            outbox = _Outbox(session)
            self.manager.task_group.start_soon(self._deliver, key, outbox)  # first: refused at shutdown, none kept
            self._outboxes[key] = outbox
        outbox.session = session
        outbox.pending.setdefault(uri, owner)  # already waiting: that one, sent after this change, tells of it too

    async def _deliver(self, key: object, outbox: _Outbox) -> None:
        """Tell one connection its pending updates, oldest first, until none is left."""
        with outbox.scope:
            while outbox.pending:
                uri = next(iter(outbox.pending))
                owner = outbox.pending.pop(uri)
                if uri == RECENT_URI or self._may_tell(uri, key, outbox.session, owner):
                    await self._tell(uri, key, outbox.session)
        if self._outboxes.get(key) is outbox:
            del self._outboxes[key]

    def _may_tell(self, uri: str, key: object, session: ServerSession, owner: str | None) -> bool:
        """Whether `session` may hear of `uri` now (its latest request's viewer sees `owner`); a subscription it
        may no longer read ends."""
        viewer = latest_viewer(session)
        if owner is not None and viewer is not None and not viewer.sees(owner) and _lapsed(session, owner):
            return False  # withheld, not withdrawn: its next request may show a refreshed token that reads it
        if owner is None or (viewer is not None and not viewer.sees(owner)):
            log.info("resources.subscription_withdrawn", uri=uri, why="the session's token no longer reads it")
            self._drop_session(uri, key)
            return False
        return True

    async def _tell(self, uri: str, key: object, session: ServerSession) -> None:
        """Send one legacy update, waiting as long as the client's connection takes; a session it cannot reach
        loses its subscription to `uri`."""
        try:
            await session.send_resource_updated(uri)
        except Exception as exc:  # the SDK drops sends on closed connections; anything else: forget it
            log.info("resources.subscriber_dropped", uri=uri, error=repr(exc))
            self._drop_session(uri, key)


class _Outbox:
    """One connection's legacy updates on their way: each URI changed since it was last told, once, oldest first
    (bounded by what it subscribed to), and the latest session to tell them on."""

    def __init__(self, session: ServerSession) -> None:
        self.session = session
        self.pending: dict[str, str | None] = {}  # uri -> its job's principal (None: jobs://recent)
        self.scope = anyio.CancelScope()  # cancelled when the connection closes


def _check_listen(uris: int, open_streams: int) -> None:
    """Refuse a listen stream naming too many resource URIs, or one more for a principal at its cap: one principal
    must not shut the others out of the SDK's streams (1,024 for all), cost a store read per job URI named, or hold
    a request body's worth of URIs (any URI, never told of: 4 MiB, about ten times that in memory) per stream."""
    if uris > MAX_LISTEN_URIS:
        raise MCPError(code=INVALID_PARAMS, message=f"a listen stream names at most {MAX_LISTEN_URIS} resources")
    if open_streams >= MAX_LISTEN_STREAMS:
        message = f"at most {MAX_LISTEN_STREAMS} listen streams may be open per principal; close one first"
        raise MCPError(code=INVALID_REQUEST, message=message)


def _listened_uris(params: Mapping[str, Any] | None) -> list[str]:
    """The resource URIs a listen request names (middleware sees raw params; the handler refuses bad ones)."""
    try:
        parsed = SubscriptionsListenRequestParams.model_validate(params or {})
    except ValidationError:
        return []
    return list(parsed.notifications.resource_subscriptions or ())


def _without_uris(params: Mapping[str, Any] | None, dropped: set[str]) -> dict[str, Any]:
    """Listen params without the `dropped` resource subscriptions."""
    out = dict(params or {})
    notifications = dict(out.get("notifications") or {})
    kept = [u for u in notifications.get("resourceSubscriptions") or () if u not in dropped]
    notifications["resourceSubscriptions"] = kept or None
    out["notifications"] = {k: v for k, v in notifications.items() if v is not None}
    return out


def register_job_resources(mcp: MCPServer[Any], hub: JobResourceHub) -> None:
    """Add the job resources and legacy subscriptions to `mcp`, built with `subscriptions=hub.bus` and
    `hub.track_listen` among its middleware (so 2026-07-28 listen streams reach the hub)."""
    _add_readers(mcp, hub.manager, hub.identity)
    _add_legacy_subscribe(mcp, hub)


def _add_readers(mcp: MCPServer[Any], manager: JobManager, identity: Identity) -> None:
    @mcp.resource(JOB_TEMPLATE, name="job", description=JOB_DESCRIPTION, mime_type="application/json")
    async def read_job(jobId: str, ctx: Context) -> str:
        try:
            msg = await manager.status_message(jobId, viewer=identity.viewer())
        except JobNotFound:
            raise ResourceNotFoundError(f"no job with id {shown(jobId)!r}") from None
        carried = carried_status(msg, ctx.request_context.request, manager.settings.max_answer_bytes)
        return json.dumps(carried.wire(), ensure_ascii=False)  # escaped, a character of 4 bytes took 12 (14 framed)

    @mcp.resource(RECENT_URI, name="recent-jobs", description=RECENT_DESCRIPTION, mime_type="application/json")
    async def read_recent() -> str:  # a static resource gets no context: bounded on every transport
        page = await manager.list_jobs(viewer=identity.viewer(), with_result=False)
        summaries = [job_summary(j) for j in page.jobs]
        jobs, kept = carried_jobs(summaries, True, manager.settings.max_answer_bytes)
        return json.dumps({"jobs": jobs[:kept], "nextCursor": page.first(kept).next_cursor})


def _add_legacy_subscribe(mcp: MCPServer[Any], hub: JobResourceHub) -> None:
    """resources/subscribe and resources/unsubscribe (MCPServer has no public hook for them)."""

    async def subscribe(ctx: ServerRequestContext[Any, Any], params: SubscribeRequestParams) -> EmptyResult:
        uri = str(params.uri)
        if uri == RECENT_URI:
            hub.subscribe_recent(ctx.session)
        if not uri.startswith(JOB_PREFIX):  # other resources do not change: accepted and quiet
            return EmptyResult()
        principal = await hub.principal_of(uri, unfinished=True)
        if principal is not None:  # else accepted and quiet (an unknown job, or one finished: nothing more to tell)
            hub.subscribe_session(uri, ctx.session, principal)
        return EmptyResult()

    async def unsubscribe(ctx: ServerRequestContext[Any, Any], params: UnsubscribeRequestParams) -> EmptyResult:
        hub.unsubscribe_session(str(params.uri), ctx.session)
        return EmptyResult()

    add_request_handler(mcp, "resources/subscribe", SubscribeRequestParams, subscribe)
    add_request_handler(mcp, "resources/unsubscribe", UnsubscribeRequestParams, unsubscribe)


def _lapsed(session: ServerSession, owner: str) -> bool:
    """`session`'s latest request read jobs of `owner` (an admin's token), which has expired since: the client may
    have refreshed it without a request to say so (a streamable-HTTP `GET` stream opened again). Its updates are
    withheld until a request shows the token it holds now; a subscription dropped then stayed dropped, and an
    admin whose token was refreshed, admin still, heard nothing more of the job."""
    noted = noted_viewer(session)
    return noted is not None and noted.viewer.sees(owner)
