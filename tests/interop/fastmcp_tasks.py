"""Interop: FastMCP 4's client (with `fastmcp-tasks`) calls vibe-jobs job tools as SEP-2663 tasks.

Not a pytest module. Run it with a Python that has FastMCP installed (kept out of the project venv):

    python3 -m venv /tmp/fastmcp-venv
    /tmp/fastmcp-venv/bin/pip install 'fastmcp==4.1.4' 'fastmcp-tasks==4.1.4'
    /tmp/fastmcp-venv/bin/python tests/interop/fastmcp_tasks.py [--wire wire.jsonl]

The vibe-jobs server runs from this repository's .venv over stdio, behind a relay (this same file,
`--relay`) that copies every JSON-RPC line to the wire log, so a failure comes with the exchange.
Exit code 0 when every check passed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import threading
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
# this file's name would shadow the `fastmcp_tasks` package when run as a script: drop its folder
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
SERVER = [str(ROOT / ".venv/bin/python"), "-m", "vibe_jobs", "serve", "--store", "memory://"]
SERVER += ["--tools", "tests.e2e.sample_tools"]
ENV = {"PYTHONPATH": str(ROOT), "VIBE_JOBS_LOG_LEVEL": "warning", "VIBE_JOBS_POLL_BASE_MS": "200"}


# -- the relay: stdin/stdout pass-through that logs each line --------------------------------------


def relay(log_path: str, cmd: list[str]) -> int:
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT)
    lock = threading.Lock()
    with open(log_path, "a", encoding="utf-8") as log:

        def pump(src: IO[bytes], dst: IO[bytes], tag: str) -> None:
            for line in iter(src.readline, b""):
                with lock:
                    log.write(f"{tag} {line.decode().rstrip()}\n")
                    log.flush()
                dst.write(line)
                dst.flush()
            if tag == ">>":
                dst.close()

        assert proc.stdin is not None and proc.stdout is not None
        up = threading.Thread(target=pump, args=(sys.stdin.buffer, proc.stdin, ">>"), daemon=True)
        up.start()
        pump(proc.stdout, sys.stdout.buffer, "<<")
        return proc.wait()


# -- the checks -------------------------------------------------------------------------------------


async def run_checks(wire: str) -> list[tuple[str, bool, str]]:
    from fastmcp import Client  # type: ignore[import-not-found,unused-ignore]
    from fastmcp.client.transports import StdioTransport  # type: ignore[import-not-found,unused-ignore]
    from fastmcp.exceptions import ToolError  # type: ignore[import-not-found,unused-ignore]

    # importing fastmcp_tasks registers its tasks client extension on every FastMCP Client
    from fastmcp_tasks import call_tool_task  # type: ignore[import-not-found,unused-ignore]
    from mcp.shared.exceptions import MCPError

    transport = StdioTransport(
        command=sys.executable, args=[__file__, "--relay", wire, "--", *SERVER], env=ENV, cwd=str(ROOT)
    )
    outcomes: list[tuple[str, bool, str]] = []
    asked: list[str] = []

    async def on_elicit(message: str, response_type: Any, params: Any, context: Any) -> dict[str, Any]:
        asked.append(message)  # FastMCP answers a task's input_required through its elicitation handler
        return {"confirm": True}

    async def check(name: str, body: Callable[[], Awaitable[str]]) -> None:
        try:
            outcomes.append((name, True, await body()))
        except Exception as exc:  # an interop report: record every failure, keep going
            outcomes.append((name, False, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))

    async with Client(transport, timeout=60, elicitation_handler=on_elicit) as client:
        session = client.session

        async def negotiated() -> str:
            caps = session.server_capabilities
            exts = caps.extensions if caps else None
            assert exts and "io.modelcontextprotocol/tasks" in exts, exts
            return f"protocol {session.protocol_version}, server extensions {exts}"

        async def transparent() -> str:
            result = await client.call_tool("sleepy", {"seconds": 0.6, "steps": 3})
            assert result.structured_content == {"seconds": 0.6, "steps": 3}, result
            return f"call_tool -> structured_content={result.structured_content} data={result.data!r}"

        async def explicit_handle() -> str:
            task = await call_tool_task(client, "sleepy", {"seconds": 0.4, "steps": 2})
            first = task.create_result
            status = await task.status()
            result = await task.result()
            assert result.structured_content == {"seconds": 0.4, "steps": 2}
            return (
                f"handle taskId={first.task_id} status={first.status} ttlMs={first.ttl_ms} "
                f"pollIntervalMs={first.poll_interval_ms}; tasks/get -> {status.status}; result ok"
            )

        async def cancel() -> str:
            task = await call_tool_task(client, "wait_forever", {})
            await asyncio.sleep(0.3)
            await task.cancel()
            final = await task.wait(timeout=20)
            assert final.status == "cancelled", final
            try:
                await task.result()
            except ToolError as exc:
                return f"cancelled; result() raised ToolError({exc})"
            raise AssertionError("result() of a cancelled task did not raise")

        async def tool_error() -> str:
            try:
                await client.call_tool("explode", {"message": "kaboom"})
            except ToolError as exc:
                assert "kaboom" in str(exc)
                return f"failed job -> completed task with isError result -> ToolError({exc})"
            raise AssertionError("no ToolError")

        async def unknown() -> str:
            from fastmcp_tasks.client import _send_get  # type: ignore[import-not-found,unused-ignore]

            try:
                await _send_get(session, "0" * 32)
            except MCPError as exc:
                assert exc.error.code == -32602, exc.error
                return f"tasks/get unknown -> MCPError {exc.error.code} {exc.error.message!r}"
            raise AssertionError("no error")

        async def elicitation() -> str:
            result = await client.call_tool("confirm", {"question": "Delete 312 files?"})
            assert asked == ["Delete 312 files?"], asked
            assert result.content[0].text == "deleted", result
            return f"input_required -> handler asked {asked[0]!r} -> tasks/update -> {result.content[0].text!r}"

        async def plain() -> str:
            result = await client.call_tool("plain-noop", {})
            return f"plain tool -> {result.structured_content}"

        for name, body in [
            ("negotiation", negotiated), ("call_tool transparently through a task", transparent),
            ("call_tool_task handle + tasks/get", explicit_handle), ("tasks/cancel", cancel),
            ("failing job", tool_error), ("unknown task id", unknown), ("plain tool stays plain", plain),
            ("a job's elicitation answered by the elicitation handler", elicitation),
        ]:  # fmt: skip
            await check(name, body)
    return outcomes


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--relay":
        return relay(sys.argv[2], sys.argv[sys.argv.index("--") + 1 :])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wire", help="keep the JSON-RPC exchange here (JSON lines, >> client, << server)")
    args = parser.parse_args()
    wire = args.wire or tempfile.mkstemp(prefix="fastmcp-wire-", suffix=".log")[1]
    Path(wire).write_text("")
    outcomes = asyncio.run(run_checks(wire))
    import fastmcp  # type: ignore[import-not-found,unused-ignore]
    import fastmcp_tasks  # type: ignore[import-not-found,unused-ignore]

    print(f"fastmcp {fastmcp.__version__}, fastmcp-tasks {fastmcp_tasks.__version__}; wire log: {wire}")
    for name, ok, detail in outcomes:
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}")
    if not all(ok for _, ok, _ in outcomes):
        print("\n--- wire exchange ---")
        for line in Path(wire).read_text().splitlines():
            tag, _, body = line.partition(" ")
            try:
                print(tag, json.dumps(json.loads(body), separators=(",", ":")))
            except ValueError:
                print(line)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
