"""`jobs://recent` as a subscribed resource: a subscriber hears that the list changed.

The list is a different resource for each caller (a principal reads its own jobs, an admin every job), so an update
goes only to the subscribers whose viewer sees a job that changed: legacy `resources/subscribe` sessions by the viewer
of their connection's latest request (`auth.latest_viewer`), 2026-07-28 `subscriptions/listen` streams by the viewer
of the request that opened them (`ViewerBus`). Every creation, state change and progress report of a job changes the
list; the updates are thinned to one per `every` seconds (the first at once, the last always delivered): a list of
thousands of busy jobs must not become thousands of notifications a second. A job deleted by retention is not told.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable

import anyio
import anyio.lowlevel
from mcp.server.session import ServerSession
from mcp.server.subscriptions import ResourceUpdated, ServerEvent

from vibe_jobs.errors import JobNotFound, StoreError
from vibe_jobs.events import EventType, JobEvent
from vibe_jobs.identity import Viewer
from vibe_jobs.logs import get_logger
from vibe_jobs.manager import JobManager
from vibe_jobs.server.auth import Identity, latest_viewer
from vibe_jobs.server.sdk import connection_of

log = get_logger("vibe_jobs.resources")

RECENT_URI = "jobs://recent"
RECENT_EVERY = 1.0  # seconds between two updates of jobs://recent
KNOWN_PRINCIPALS = 10_000  # jobs changed elsewhere whose principal is kept (read once each: it never changes)
Listener = Callable[[ServerEvent], None]


class ViewerBus:
    """The in-process `SubscriptionBus` (as the SDK's `InMemorySubscriptionBus`: synchronous fan-out, a raising
    listener skipped) that notes each listen stream's viewer as it subscribes, inside the `subscriptions/listen`
    request: `publish_seen` reaches only the streams whose viewer sees one of the changed jobs' principals."""

    def __init__(self, identity: Identity) -> None:
        self.identity = identity
        self._listeners: dict[object, tuple[Listener, Viewer]] = {}

    async def publish(self, event: ServerEvent) -> None:
        await self._deliver(event, (listener for listener, _ in list(self._listeners.values())))

    async def publish_seen(self, event: ServerEvent, principals: Collection[str]) -> None:
        """Deliver `event` to the streams whose viewer sees a job of one of `principals`."""
        listeners = list(self._listeners.values())
        await self._deliver(event, (ear for ear, viewer in listeners if any(map(viewer.sees, principals))))

    def viewers(self) -> list[Viewer]:
        return [viewer for _, viewer in self._listeners.values()]

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        token = object()
        self._listeners[token] = (listener, self.identity.viewer())

        def unsubscribe() -> None:
            self._listeners.pop(token, None)

        return unsubscribe

    async def _deliver(self, event: ServerEvent, listeners: Iterable[Listener]) -> None:
        for listener in listeners:
            try:
                listener(event)  # a stream's own filter drops an event of a URI it did not ask for
            except Exception:  # one bad listener must not starve the others
                log.exception("resources.listener_raised")
        await anyio.lowlevel.checkpoint()  # a burst of publishes lets the streams drain between events


class RecentFeed:
    """Who is subscribed to `jobs://recent`, the principals whose jobs changed since they last heard, and when
    they hear next (`due`; inf: nothing to tell)."""

    def __init__(self, manager: JobManager, bus: ViewerBus, every: float = RECENT_EVERY) -> None:
        self.manager, self.bus, self.every = manager, bus, every
        self._sessions: dict[object, ServerSession] = {}  # connection -> a session on it
        self._listens = 0  # open listen streams naming jobs://recent
        self._changed: set[str] = set()
        self._known: dict[str, str] = {}  # job id -> principal, of jobs changed by other processes (read once)
        self._last_sent = -math.inf
        self.due = math.inf

    @property
    def wanted(self) -> bool:
        return bool(self._sessions) or self._listens > 0

    def subscribe_session(self, session: ServerSession) -> None:
        self._sessions[connection_of(session)] = session

    def drop_session(self, connection: object) -> None:
        self._sessions.pop(connection, None)

    def listen_started(self) -> None:
        self._listens += 1

    def listen_ended(self) -> None:
        self._listens -= 1

    async def note(self, event: JobEvent) -> None:
        """A job changed: the subscribers who see it hear so at the next `due`."""
        if event.type is EventType.EXPIRED:
            self._known.pop(event.job_id, None)
            return
        if not self.wanted:
            return
        principal = event.principal
        if principal is None:  # a change made by another process
            if self._everyone_told():
                return
            principal = await self._principal_of(event.job_id)
            if principal is None:
                return
        self._changed.add(principal)
        if self.due == math.inf:
            self.due = max(anyio.current_time(), self._last_sent + self.every)

    def _everyone_told(self) -> bool:
        """Whether every subscriber already hears at the next update (so a change need not be read to tell who
        may hear of it: without authentication, or to admins, at most one read per update)."""
        viewers = [latest_viewer(session) for session in self._sessions.values()]
        viewers.extend(self.bus.viewers())
        return bool(self._changed) and all(v is None or any(map(v.sees, self._changed)) for v in viewers)

    async def _principal_of(self, job_id: str) -> str | None:
        """The principal of a job changed by another process (its event does not say): one read a job, not one a
        change (a busy job's progress elsewhere was a read of its whole record at each report)."""
        known = self._known.get(job_id)
        if known is not None:
            return known
        try:
            principal = (await self.manager.get_record(job_id)).principal
        except JobNotFound:
            return None
        except StoreError:  # the store is failing: the hub's one task must not end with it (told at the next change)
            return None
        if len(self._known) >= KNOWN_PRINCIPALS:
            del self._known[next(iter(self._known))]  # the longest known
        self._known[job_id] = principal
        return principal

    async def flush(self, now: float) -> dict[object, ServerSession]:
        """Once `due`: tell the listen streams whose viewer sees a changed job, and answer the legacy sessions to
        tell (by connection; the hub sends, and drops one it cannot reach with `drop_session`)."""
        if self.due > now:
            return {}
        changed, self._changed = self._changed, set()
        self.due, self._last_sent = math.inf, now
        if self._listens > 0:
            await self.bus.publish_seen(ResourceUpdated(uri=RECENT_URI), changed)
        told = {}
        for key, session in self._sessions.items():
            viewer = latest_viewer(session)
            if viewer is not None and any(map(viewer.sees, changed)):
                told[key] = session
        return told
