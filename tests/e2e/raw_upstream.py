"""An upstream MCP server over stdio written frame by frame, for wire faults the SDK's server never makes:
`garble` writes a line of bytes that are not UTF-8 before its answer; `huge` answers with a line of 70 MB,
`big` with one of 8 MB; `mangled` answers with a result that is not an object (not JSON-RPC); `ts_huge` and
`ts_mangled` do the same with the id last, as the TypeScript SDK writes answers; `asks_badly` makes a request that
is not JSON-RPC and answers with what it was answered; `orphan_exit` starts a child that holds its stdout, writes
the child's pid to the file `pidfile` names and exits without answering; `pid` writes its own pid there; `slow`
answers after 2 s; `ok` answers. With `--stubborn` it outlives its stdin's end and ignores SIGTERM (as some
servers do)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

TOOLS = [
    {"name": name, "description": f"{name} (raw upstream)", "inputSchema": {"type": "object", "properties": {}}}
    for name in ("garble", "huge", "big", "mangled", "ts_huge", "ts_mangled", "asks_badly", "slow", "ok")
] + [
    {
        "name": name,
        "description": f"{name} (raw upstream)",
        "inputSchema": {"type": "object", "properties": {"pidfile": {"type": "string"}}, "required": ["pidfile"]},
    }
    for name in ("orphan_exit", "pid")
]


def send(message: dict[str, object]) -> None:
    sys.stdout.buffer.write(json.dumps(message).encode() + b"\n")
    sys.stdout.buffer.flush()


def answer(request: dict[str, object]) -> None:
    method, rid = request.get("method"), request.get("id")
    if method == "initialize":
        info = {"name": "raw-upstream", "version": "1"}
        result = {"protocolVersion": "2025-11-25", "capabilities": {"tools": {}}, "serverInfo": info}
        send({"jsonrpc": "2.0", "id": rid, "result": result})
    elif method == "tools/list":
        send({"jsonrpc": "2.0", "id": rid, "result": {"tools": TOOLS}})
    elif method == "tools/call":
        name = request["params"]["name"]  # type: ignore[index]
        if name == "garble":
            sys.stdout.buffer.write(b"\xff\xfe\x00garbage\n")
        elif name in ("huge", "big"):
            text = b"x" * ((70 if name == "huge" else 8) * 1024 * 1024)
            line = b'{"jsonrpc":"2.0","id":%d,"result":{"content":[{"type":"text","text":"%s"}],"isError":false}}\n'
            sys.stdout.buffer.write(line % (rid, text))
            sys.stdout.buffer.flush()
            return
        elif name == "mangled":
            send({"jsonrpc": "2.0", "id": rid, "result": "a text where an object belongs"})
            return
        elif name == "ts_huge":  # the TypeScript SDK's order: the id last
            text = b"x" * (70 * 1024 * 1024)
            line = b'{"result":{"content":[{"type":"text","text":"%s"}],"isError":false},"jsonrpc":"2.0","id":%d}\n'
            sys.stdout.buffer.write(line % (text, rid))
            sys.stdout.buffer.flush()
            return
        elif name == "ts_mangled":
            send({"result": "a text where an object belongs", "jsonrpc": "2.0", "id": rid})
            return
        elif name == "asks_badly":
            send({"jsonrpc": "2.0", "id": "up-1", "method": "elicitation/create", "params": "not an object"})
            error: dict[str, object] = wait_for_answer("up-1").get("error", {})  # type: ignore[assignment]
            said = f"answered {error.get('code')}: {error.get('message')}"
            content = [{"type": "text", "text": said}]
            send({"jsonrpc": "2.0", "id": rid, "result": {"content": content, "isError": False}})
            return
        elif name == "orphan_exit":
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])  # inherits stdout
            with open(request["params"]["arguments"]["pidfile"], "w") as out:  # type: ignore[index]
                out.write(str(child.pid))
            os._exit(3)
        elif name == "slow":
            time.sleep(2)
        elif name == "pid":
            with open(request["params"]["arguments"]["pidfile"], "w") as out:  # type: ignore[index]
                out.write(str(os.getpid()))
        content = [{"type": "text", "text": f"after {name}"}]
        send({"jsonrpc": "2.0", "id": rid, "result": {"content": content, "isError": False}})
    elif rid is not None:
        send({"jsonrpc": "2.0", "id": rid, "result": {}})


def wait_for_answer(rid: str) -> dict[str, object]:
    """Read until the answer to our request `rid`, handling what comes before it."""
    while line := sys.stdin.buffer.readline():
        if line.strip():
            message = json.loads(line)
            if message.get("id") == rid and "method" not in message:
                return message  # type: ignore[no-any-return]
            answer(message)
    sys.exit(0)


for line in sys.stdin.buffer:
    if line.strip():
        answer(json.loads(line))
if "--stubborn" in sys.argv:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(600)
