"""An upstream MCP server over stdio written frame by frame, for wire faults the SDK's server never makes:
`garble` writes a line of bytes that are not UTF-8 before its answer; `huge` answers with a line of 70 MB,
`big` with one of 8 MB; `mangled` answers with a result that is not an object (not JSON-RPC); `ts_huge` and
`ts_mangled` do the same with the id last, as the TypeScript SDK writes answers; `ok` answers."""

from __future__ import annotations

import json
import sys

TOOLS = [
    {"name": name, "description": f"{name} (raw upstream)", "inputSchema": {"type": "object", "properties": {}}}
    for name in ("garble", "huge", "big", "mangled", "ts_huge", "ts_mangled", "ok")
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
        content = [{"type": "text", "text": f"after {name}"}]
        send({"jsonrpc": "2.0", "id": rid, "result": {"content": content, "isError": False}})
    elif rid is not None:
        send({"jsonrpc": "2.0", "id": rid, "result": {}})


for line in sys.stdin.buffer:
    if line.strip():
        answer(json.loads(line))
