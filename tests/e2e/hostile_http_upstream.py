"""A hostile streamable-HTTP upstream (argv[1]: the port), written request by request with the standard library.

Tools: `ok` answers at once; `big` answers a valid result of 65 MiB of text with its `Content-Length`; `big_stream`
the same without one (the body ends when the connection closes), so that only reading it shows its size; `big_gzip`
the same answer gzip-compressed (`Content-Encoding: gzip`, about 65 KiB on the wire); `misaddressed` answers its
call in the POST's JSON body, under another request's id (its own plus 1000); `refused` refuses its call with HTTP
400 and a JSON-RPC error under the id `server-error`, as the Python SDK 1.x writes its transport's errors; `null_id`
answers its call (HTTP 200) with a JSON-RPC error under the id null, as a server that could not read the request's id
does; `forget` answers, then forgets the session (as a restarted server has), so that each later request of it is
answered HTTP 404 with a JSON-RPC error, as the Python SDK's server answers an unknown session. Review helper-150:
`swarm` answers 400,000 empty text blocks (10 MB).
"""

from __future__ import annotations

import gzip
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

OBJECT: dict[str, Any] = {"type": "object", "properties": {}}
TOOLS = [
    {"name": name, "inputSchema": OBJECT}
    for name in ("ok", "big", "big_stream", "big_gzip", "misaddressed", "refused", "null_id", "forget", "swarm")
]
BIG = 65 * 2**20
INFO = {"name": "hostile-http", "version": "1"}
SESSIONS: dict[str, Any] = {"started": 0, "live": None}  # how many began, and the one this server knows


class Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def answer(self, rid: Any, result: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        body = json.dumps({"jsonrpc": "2.0", "id": rid, "result": result}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def refused(self, status: int, message: str, rid: Any = "server-error") -> None:
        error = {"code": -32600, "message": message}
        body = json.dumps({"jsonrpc": "2.0", "id": rid, "error": error}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def empty(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        self.empty(405)  # no listen stream

    def do_DELETE(self) -> None:
        self.empty(200)

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        method, rid = request.get("method"), request.get("id")
        if rid is None:
            self.empty(202)
        elif method == "initialize":
            SESSIONS["started"] += 1
            SESSIONS["live"] = f"s{SESSIONS['started']}"
            result = {"protocolVersion": "2025-11-25", "capabilities": {"tools": {}}, "serverInfo": INFO}
            self.answer(rid, result, {"Mcp-Session-Id": SESSIONS["live"]})
        elif self.headers.get("Mcp-Session-Id") != SESSIONS["live"]:
            self.refused(404, "Session not found", None)
        elif method == "tools/call" and request["params"]["name"] == "forget":
            self.answer(rid, {"content": [{"type": "text", "text": "forgotten"}]})
            SESSIONS["live"] = None
        elif method == "tools/list":
            self.answer(rid, {"tools": TOOLS})
        elif method == "tools/call" and request["params"]["name"] == "big":
            self.answer(rid, {"content": [{"type": "text", "text": "a" * BIG}]})
        elif method == "tools/call" and request["params"]["name"] == "swarm":
            self.answer(rid, {"content": [{"type": "text", "text": ""}] * 400_000})
        elif method == "tools/call" and request["params"]["name"] == "big_gzip":
            self.big_gzip(rid)
        elif method == "tools/call" and request["params"]["name"] == "big_stream":
            self.big_stream(rid)
        elif method == "tools/call" and request["params"]["name"] == "misaddressed":
            self.answer(rid + 1000, {"content": [{"type": "text", "text": "misaddressed done"}]})
        elif method == "tools/call" and request["params"]["name"] == "null_id":
            self.refused(200, "Parse error: the upstream's own reason", None)
        elif method == "tools/call" and request["params"]["name"] == "refused":
            self.refused(400, "Bad Request: the upstream's own reason")
        else:
            self.answer(rid, {"content": [{"type": "text", "text": "ok done"}]})

    def big_gzip(self, rid: Any) -> None:
        answer = {"jsonrpc": "2.0", "id": rid, "result": {"content": [{"type": "text", "text": "a" * BIG}]}}
        body = gzip.compress(json.dumps(answer).encode(), compresslevel=1)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def big_stream(self, rid: Any) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        head = {"jsonrpc": "2.0", "id": rid, "result": {"content": [{"type": "text", "text": ""}]}}
        start, end = json.dumps(head).encode().split(b'""')
        self.wfile.write(start + b'"')
        chunk = b"a" * 2**20
        for _ in range(BIG // len(chunk)):
            self.wfile.write(chunk)
        self.wfile.write(b'"' + end)


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Upstream).serve_forever()
