# mypy: disable-error-code="import-not-found,untyped-decorator"
"""Figure 3 (peer): FastMCP 4 call-to-result over stdio with FastMCP's own client.

Starts bench/peers/fastmcp_server.py, then sequentially: a call of the task-enabled no-op tool (the client
drives the background task to its result: tools/call -> task created -> tasks/get polling) and a call of
the plain no-op tool, `--calls` of each, alternating. Prints one JSON line: milliseconds per call for each.
VIBE_JOBS_BENCH_HANG=fastmcp makes it hang on purpose once connected (the server, its child, still running).

Run: .bench-venv/bin/python bench/peers/fastmcp_call.py --calls 200
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from pathlib import Path

import peerlib
from fastmcp import Client
from fastmcp.client.transports import PythonStdioTransport
from fastmcp_tasks import call_tool_task  # importing it registers the client half: call_tool drives tasks

SERVER = Path(__file__).resolve().parent / "fastmcp_server.py"


async def main(calls: int, warmup: int) -> None:
    logging.disable(logging.CRITICAL)
    peerlib.start_watchdog()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "FASTMCP_CHECK_FOR_UPDATES": "off",
        "FASTMCP_SHOW_SERVER_BANNER": "false",
        "FASTMCP_LOG_LEVEL": "WARNING",
    }
    transport = PythonStdioTransport(str(SERVER), python_cmd=sys.executable, env=env)
    task_ms: list[float] = []
    plain_ms: list[float] = []
    async with Client(transport) as client:
        await peerlib.maybe_hang("fastmcp")
        task = await call_tool_task(client, "noop_task", {})  # raises if the server ran it synchronously
        assert task.task_id and (await task.result()).data == "done"
        for i in range(warmup + calls):
            began = time.perf_counter()
            result = await client.call_tool("noop_task", {})
            took = (time.perf_counter() - began) * 1000
            assert result.data == "done", result
            began = time.perf_counter()
            await client.call_tool("plain_noop", {})
            took_plain = (time.perf_counter() - began) * 1000
            if i >= warmup:
                task_ms.append(took)
                plain_ms.append(took_plain)
    print(json.dumps({"task_ms": task_ms, "plain_ms": plain_ms}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.warmup))
