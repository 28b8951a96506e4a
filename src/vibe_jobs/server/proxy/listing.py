"""An upstream's tool list, as much of it as the SDK's client can take.

The SDK's client checks a `tools/list` answer whole, against the negotiated protocol version's shapes and its own
`Tool` model: one tool it cannot take (an `inputSchema` that is no object, an icon's `sizes` written as one text as
drafts had it, a hint that is no bool) fails the whole list, and the proxy served none of that upstream's tools
(it did not start). `Sieve` sits on the messages coming from the upstream: it notes the version the upstream
answered `initialize` with and takes out of each tool list the tools that the same checks refuse, each logged
(`proxy.tool_unusable`, with its name and why), so that the client reads the rest.
"""

from __future__ import annotations

from typing import Any

from mcp.shared.message import SessionMessage
from mcp_types import JSONRPCResponse, Tool
from mcp_types.methods import validate_server_result
from pydantic import ValidationError

from vibe_jobs.arguments import shown
from vibe_jobs.logs import get_logger
from vibe_jobs.tools.printable import shortened

log = get_logger("vibe_jobs.server.proxy")

FALLBACK_VERSION = "2025-11-25"  # what the SDK's client checks against before a version is known


class Sieve:
    """Takes the tools the SDK's client cannot take out of the tool lists one upstream answers."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.version = FALLBACK_VERSION

    def __call__(self, item: SessionMessage | Exception) -> SessionMessage | Exception:
        if isinstance(item, SessionMessage) and isinstance(message := item.message, JSONRPCResponse):
            result = message.result
            if isinstance(version := result.get("protocolVersion"), str) and "serverInfo" in result:
                self.version = version  # an initialize answer: the version every later answer is checked against
            elif isinstance(tools := result.get("tools"), list):
                result["tools"] = [tool for tool in tools if self._usable(tool)]
        return item

    def _usable(self, tool: Any) -> bool:
        try:
            validate_server_result("tools/list", self.version, {"tools": [tool]})
            Tool.model_validate(tool, by_name=False)
        except (ValidationError, ValueError, KeyError, TypeError) as exc:
            name = tool.get("name") if isinstance(tool, dict) else None
            log.warning("proxy.tool_unusable", upstream=self.upstream, tool=repr(shown(str(name))), why=_why(exc))
            return False
        return True


def _why(exc: Exception) -> str:
    """The first problem a check found, in a line (a pydantic error names the field and what it expected)."""
    if isinstance(exc, ValidationError) and (errors := exc.errors()):
        first = errors[0]
        loc = first["loc"]
        where = ".".join(str(part) for part in (loc[2:] if loc[:1] == ("tools",) else loc))  # past ("tools", 0)
        return shortened(f"{where}: {first['msg']}")
    return shortened(f"{type(exc).__name__}: {exc}")
