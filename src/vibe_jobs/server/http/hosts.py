"""DNS rebinding: every HTTP route answers only under the host names it is served as.

The SDK checks Host and Origin on its own MCP endpoints (/mcp, /sse). The dashboard, its live events,
/metrics and the job pages are routes of the same app, and a web page whose name was rebound to
127.0.0.1 reaches them too: as far as the browser knows it is same-origin, so it could read every job
and post the dashboard's forms with the CSRF token read from a page. This middleware applies the same
check, with the same settings (`auth.transport_security`), to every request: 421 for a Host that is not
allowed, 403 for an Origin that is not. The probes and /metrics (`UNCHECKED`) are left open: they carry
figures, no job data, and container probes, load balancers and Prometheus call them by addresses nobody
can list beforehand (a pod's IP).
"""

from __future__ import annotations

from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

UNCHECKED = frozenset({"/healthz", "/readyz", "/health", "/metrics"})


class HostCheck:
    def __init__(self, app: ASGIApp, security: TransportSecuritySettings) -> None:
        self.app = app
        self.check = TransportSecurityMiddleware(security)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in UNCHECKED:
            refused = await self.check.validate_request(Request(scope), is_post=False)
            if refused is not None:
                await refused(scope, receive, send)
                return
        await self.app(scope, receive, send)
