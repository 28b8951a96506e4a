"""Everything but tools passes through: upstream resources, resource templates, prompts and completions are
listed and served by the proxy as the upstream serves them (next to the proxy's own `job://` resources);
`list_changed` notifications reach the proxy's clients; an upstream's `roots/list` is asked of the client (of the one
user, stdio or HTTP without authentication: with authentication the upstream serves several principals, and
no client's roots, its paths and the directories a filesystem server may touch, are everybody's).

With several upstreams, prompt names carry the upstream's `NAME.` prefix (as tool names do); a resource is
read from the upstream that listed it.
"""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from mcp import MCPError
from mcp.client.session import IncomingMessage
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.session import ServerSession
from mcp_types import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    ClientCapabilities,
    Completion,
    CompletionArgument,
    CompletionContext,
    ListRootsRequest,
    ListRootsResult,
    PromptReference,
    ResourceTemplateReference,
    RootsCapability,
    RootsListChangedNotification,
)
from pydantic import BaseModel

from vibe_jobs.arguments import shown
from vibe_jobs.identity import LOCAL
from vibe_jobs.logs import get_logger
from vibe_jobs.results import json_size
from vibe_jobs.server.auth import Identity
from vibe_jobs.server.proxy.pages import Page, read_pages
from vibe_jobs.server.proxy.upstream import Upstream, UpstreamExited, notification_method
from vibe_jobs.server.resources import OWN_SCHEMES
from vibe_jobs.server.sdk import connection_of

log = get_logger("vibe_jobs.server.proxy")

Handler = Callable[[ServerRequestContext[Any, Any], CallNext], Awaitable[HandlerResult]]
LIST_CHANGED = ("notifications/resources/list_changed", "notifications/prompts/list_changed")
ROOTS_CHANGED = "notifications/roots/list_changed"


class PassThrough:
    """A server middleware serving the upstreams' resources, templates and prompts, plus the hooks that carry
    notifications and roots requests between the upstreams and the proxy's clients."""

    def __init__(self, upstreams: Sequence[Upstream]) -> None:
        self.upstreams = list(upstreams)
        self.sessions: weakref.WeakKeyDictionary[object, ServerSession] = weakref.WeakKeyDictionary()  # by connection
        self.latest: ServerSession | None = None  # the client asked for the upstreams' roots (the local one's)
        self.identity = Identity()
        self.owner: dict[str, Upstream] = {}  # resource URI -> the upstream that listed it
        self.template_owner: dict[str, Upstream] = {}  # URI template -> the upstream that listed it
        self.handlers: dict[str, Handler] = {
            "resources/list": self._list_resources,
            "resources/templates/list": self._list_templates,
            "resources/read": self._read_resource,
            "prompts/list": self._list_prompts,
            "prompts/get": self._get_prompt,
        }
        for upstream in self.upstreams:
            upstream.roots = self.client_roots
            upstream.notify = self.forward_notification

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        handler = self.handlers.get(ctx.method)
        try:
            result = await (handler(ctx, call_next) if handler is not None else call_next(ctx))
        except UpstreamExited as exc:  # the request found the upstream gone; it is being connected again
            raise MCPError(code=INTERNAL_ERROR, message=f"upstream {exc.upstream}: {exc}") from None
        if ctx.method != "initialize":
            await self._seen(ctx.session, roots_changed=ctx.method == ROOTS_CHANGED)
        return result

    async def _seen(self, session: ServerSession, *, roots_changed: bool) -> None:
        """Remember the client; a new one (or its roots/list_changed) tells the upstreams its roots changed,
        so that they ask for them (they reach this client: `client_roots`).

        Roots are relayed on purpose, for clients and upstreams of either era: by the plain request and
        notification, not the SDK's `list_roots()` / `send_roots_list_changed()`, deprecated as of 2026-07-28,
        whose warning reached stderr raw (not as a log line) each time."""
        connection = connection_of(session)
        new = connection not in self.sessions
        self.sessions[connection] = session
        if self.identity.viewer() != LOCAL:  # a principal among several: its roots are its own (review helper-94)
            return
        self.latest = session
        if new or roots_changed:
            for upstream in self.upstreams:
                if upstream.conn is not None:
                    try:
                        await upstream.conn.client.session.send_notification(RootsListChangedNotification())
                    except Exception as exc:  # an upstream going down: it asks again when it is back
                        log.debug("proxy.roots_changed_not_sent", upstream=upstream.spec.label, error=str(exc))

    def install(self, mcp: MCPServer[Any]) -> None:
        """Register what a middleware cannot add: the completion handler (its capability follows it)."""
        mcp.completion()(self._complete)  # type: ignore[no-untyped-call]

    # -- lists: ours, then each upstream's -------------------------------------------------

    # The owners of the latest listing only: kept from every listing, they grew the proxy for ever (an upstream that
    # lists 10 MB of URIs it never listed before, at each client's listing, which its `list_changed` asks for).

    async def _list_resources(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        result = _as_dict(await call_next(ctx))
        owner: dict[str, Upstream] = {}
        for upstream in self._serving("resources"):
            for item in await _pages(upstream, "list_resources", "resources"):
                if str(item["uri"]).startswith(OWN_SCHEMES):  # it would be read in place of ours
                    log.warning("proxy.resource_uri_taken", upstream=upstream.spec.label, uri=shown(item["uri"]))
                    continue
                owner[item["uri"]] = upstream
                result.setdefault("resources", []).append(item)
        self.owner = owner
        return result

    async def _list_templates(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        result = _as_dict(await call_next(ctx))
        owner: dict[str, Upstream] = {}
        for upstream in self._serving("resources"):
            templates = await _pages(upstream, "list_resource_templates", "resourceTemplates")
            for item in templates:
                owner.setdefault(str(item.get("uriTemplate")), upstream)
            result.setdefault("resourceTemplates", []).extend(templates)
        self.template_owner = owner
        return result

    async def _list_prompts(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        result = _as_dict(await call_next(ctx))
        for upstream in self._serving("prompts"):
            for item in await _pages(upstream, "list_prompts", "prompts"):
                result.setdefault("prompts", []).append({**item, "name": upstream.spec.prefixed(item["name"])})
        return result

    # -- reads -----------------------------------------------------------------------------

    async def _read_resource(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        """A URI an upstream listed is read from it; any other is ours (job://, jobs://) first, then each
        upstream's in turn (a URI of an upstream's template). A URI of ours is never asked of an upstream: it
        would answer for a job the proxy refused, and learn its id."""
        uri = str((ctx.params or {}).get("uri", ""))
        if uri.startswith(OWN_SCHEMES):
            return await call_next(ctx)
        if uri in self.owner:
            return await _read(self.owner[uri], uri)
        try:
            return await call_next(ctx)
        except MCPError as exc:
            error = exc
        for upstream in self._serving("resources"):
            try:
                return await _read(upstream, uri)
            except (MCPError, UpstreamExited):  # not its URI, or it is gone (connected again): the next may serve it
                continue
        raise error

    async def _get_prompt(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        params = ctx.params or {}
        found = self._prompt_owner(str(params.get("name", "")))
        if found is None:
            return await call_next(ctx)
        upstream, name = found
        async with upstream.calling() as conn:
            return _as_dict(await conn.client.get_prompt(name, params.get("arguments")))

    async def _complete(
        self,
        ref: PromptReference | ResourceTemplateReference,
        argument: CompletionArgument,
        context: CompletionContext | None,
    ) -> Completion | None:
        if isinstance(ref, PromptReference):
            found = self._prompt_owner(ref.name)
            if found is None:
                return None
            upstream, name = found
            ref = PromptReference(type="ref/prompt", name=name)
        else:
            served = self._serving("completions")
            if not served or ref.uri.startswith(OWN_SCHEMES):  # ours (`job://{jobId}`): the id typed is not theirs
                return None
            listed = self.template_owner.get(ref.uri)  # the upstream that listed the template, once listed
            upstream = listed if listed is not None and listed in served else served[0]
        arguments = context.arguments if context is not None else None
        async with upstream.calling() as conn:  # the argument as MCP sends it: {name, value}
            said = {"name": argument.name, "value": argument.value}
            result = await conn.client.complete(ref, said, context_arguments=arguments)
        return result.completion

    def _prompt_owner(self, name: str) -> tuple[Upstream, str] | None:
        for upstream in self._serving("prompts"):
            prefix = upstream.spec.prefixed("")
            if name.startswith(prefix) and (prefix or len(self.upstreams) == 1):
                return upstream, name[len(prefix) :]
        return None

    def _serving(self, capability: str) -> list[Upstream]:
        return [u for u in self.upstreams if getattr(u.capabilities, capability, None) is not None]

    # -- between the upstreams and the clients ---------------------------------------------

    async def forward_notification(self, message: IncomingMessage) -> None:
        """An upstream's resources/prompts `list_changed` reaches every client the proxy has seen."""
        method = notification_method(message)
        if method in LIST_CHANGED:
            await self.notify_clients(method)

    async def notify_clients(self, method: str) -> None:
        """Send a `list_changed` notification (resources, prompts or tools) to every client the proxy has seen."""
        for session in list(self.sessions.values()):
            try:
                if method == LIST_CHANGED[0]:
                    await session.send_resource_list_changed()
                elif method == LIST_CHANGED[1]:
                    await session.send_prompt_list_changed()
                else:
                    await session.send_tool_list_changed()
            except Exception as exc:  # a client gone: the others still hear it
                log.debug("proxy.notify_failed", method=method, error=str(exc))

    async def client_roots(self) -> ListRootsResult:
        """An upstream's `roots/list`, asked of the client that spoke last (no roots when it has none, and with
        authentication, where the client that spoke last may be any principal's, none: `_seen`)."""
        session = self.latest
        wanted = ClientCapabilities(roots=RootsCapability())
        if session is None or not session.check_client_capability(wanted):
            return ListRootsResult(roots=[])
        try:
            return await session.send_request(ListRootsRequest(), ListRootsResult)
        except Exception as exc:  # the client cannot be asked now (gone, or an era without server requests)
            log.debug("proxy.roots_unavailable", error=str(exc))
            return ListRootsResult(roots=[])


async def _read(upstream: Upstream, uri: str) -> dict[str, Any]:
    async with upstream.calling() as conn:
        return _as_dict(await conn.client.read_resource(uri))


async def _pages(upstream: Upstream, method: str, key: str) -> list[dict[str, Any]]:
    """Every item of an upstream listing (all pages, within `pages.read_pages`' bounds), as wire dicts; a page
    refused as invalid params (the method not served, a cursor refused) ends it."""
    async with upstream.calling() as conn:

        async def page(cursor: str | None) -> Page[dict[str, Any]]:
            try:
                found = await getattr(conn.client, method)(cursor=cursor)
            except MCPError as exc:
                if exc.code == INVALID_PARAMS:
                    return [], None
                raise
            return _as_dict(found).get(key, []), found.next_cursor

        return await read_pages(page, json_size, upstream.spec.label, key)


def _as_dict(result: HandlerResult) -> dict[str, Any]:
    if isinstance(result, BaseModel):
        return result.model_dump(mode="json", by_alias=True, exclude_none=True)
    return dict(result or {})
