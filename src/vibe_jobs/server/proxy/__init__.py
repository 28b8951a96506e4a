"""`vibe-jobs proxy`: any MCP server's tools as background jobs, without changing it.

config (which upstreams), upstream (one live connection, restarted with backoff), schema (an upstream tool's
input schema as a job tool's arguments rule), tools (the job and direct tools), passthrough (resources, prompts,
completions, notifications, roots), talkback (upstream elicitation/sampling during a job), server (all of it).
"""

from vibe_jobs.server.proxy.config import ConfigError, UpstreamSpec, load_config, parse_named, single
from vibe_jobs.server.proxy.server import ProxyServer
from vibe_jobs.server.proxy.upstream import Backoff, UpstreamExited, UpstreamUnavailable

__all__ = [
    "Backoff",
    "ConfigError",
    "ProxyServer",
    "UpstreamExited",
    "UpstreamSpec",
    "UpstreamUnavailable",
    "load_config",
    "parse_named",
    "single",
]
