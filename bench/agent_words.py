"""What an agent reads before its first call, in characters (about 4 to a token): the server's instructions and
tools/list, each tool's description, input and output schema, and the resources' descriptions, from a real
`vibe-jobs serve --store memory://` over stdio (built-in tools, run-command allowed), in both protocol eras.

Run: .venv/bin/python bench/agent_words.py [--mode legacy|auto]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False))


async def measure(mode: str) -> None:
    from mcp import Client, StdioServerParameters
    from mcp.client.stdio import stdio_client

    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT / "src"), "VIBE_JOBS_ALLOWED_COMMANDS": "echo"}
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "vibe_jobs", "serve", "--store", "memory://"], env=env, cwd=str(ROOT)
    )
    with tempfile.TemporaryFile("w+") as errlog:
        async with Client(stdio_client(params, errlog=errlog), mode=mode, read_timeout_seconds=60) as client:
            tools = await client.list_tools()
            resources = await client.list_resources()
            templates = await client.list_resource_templates()
            instructions = client.instructions or ""
    listed = tools.model_dump(mode="json", by_alias=True, exclude_none=True)
    print(f"mode {mode}: instructions {len(instructions)} chars; tools/list {_size(listed['tools'])} chars")
    print(f"{'tool':<18}{'description':>12}{'input':>8}{'output':>8}{'total':>8}")
    for tool in listed["tools"]:
        desc = len(tool.get("description", ""))
        inp, out = _size(tool.get("inputSchema")), _size(tool.get("outputSchema")) if "outputSchema" in tool else 0
        print(f"{tool['name']:<18}{desc:>12}{inp:>8}{out:>8}{_size(tool):>8}")
    described = [r.description or "" for r in resources.resources] + [
        t.description or "" for t in templates.resource_templates
    ]
    print(f"resource descriptions {sum(map(len, described))} chars")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["legacy", "auto"], default="legacy")
    asyncio.run(measure(parser.parse_args().mode))


if __name__ == "__main__":
    main()
