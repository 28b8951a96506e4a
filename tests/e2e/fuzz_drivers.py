"""Synchronous raw JSON-RPC drivers of one long-lived real server (stdio and streamable HTTP), for the
property tests in test_fuzz.py: Hypothesis calls a plain function per example, so these talk to the
server with blocking I/O and a deadline per answer."""

from __future__ import annotations

import itertools
import json
import os
import re
import select
import subprocess
import sys
from typing import Any

import httpx2 as httpx

from tests.e2e.conftest import BASE_ENV, ROOT, free_port, stop, wait_for_port

INIT = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "fuzz", "version": "1"}}
TOOLS = "tests.e2e.hostile_tools"


def server_env(root: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""), **BASE_ENV, "VIBE_JOBS_ROOTS": root,
        "VIBE_JOBS_ALLOWED_COMMANDS": "true", "VIBE_JOBS_LOG_LEVEL": "error",
    }  # fmt: skip


class Answered(Exception):
    """The server broke a property (named in the message)."""


class StdioDriver:
    """The real server over stdio, one process for many examples."""

    def __init__(self, root: str, errlog: Any) -> None:
        cmd = [sys.executable, "-m", "vibe_jobs", "serve", "--store", "memory://", "--tools", TOOLS]
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=server_env(root), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errlog
        )
        self.ids = itertools.count(1_000_000)
        self.buffer = b""
        assert "result" in self.request("initialize", INIT)
        self.send_frame(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}).encode())

    def alive(self) -> bool:
        return self.proc.poll() is None

    def send_frame(self, frame: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(frame.replace(b"\n", b" ") + b"\n")
        self.proc.stdin.flush()

    def next_message(self, seconds: float = 15.0) -> dict[str, Any]:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buffer:
            ready, _, _ = select.select([fd], [], [], seconds)
            chunk = os.read(fd, 1 << 20) if ready else b""
            if not chunk:
                raise Answered("no answer (the server is silent or gone)")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        message: dict[str, Any] = json.loads(line)  # every line on stdout is JSON-RPC
        return message

    def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        request_id = next(self.ids)
        frame = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params or {}}
        self.send_frame(json.dumps(frame).encode())
        return self.until_answer(request_id)[1]

    def until_answer(self, request_id: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """(the other messages seen first, the answer to `request_id`)."""
        others: list[dict[str, Any]] = []
        while True:
            message = self.next_message()
            if message.get("id") == request_id and ("result" in message or "error" in message):
                return others, message
            others.append(message)

    def exchange(self, frame: bytes) -> list[dict[str, Any]]:
        """Send a raw frame, then a ping: the messages that came before the ping's answer."""
        self.send_frame(frame)
        ping_id = next(self.ids)
        self.send_frame(json.dumps({"jsonrpc": "2.0", "id": ping_id, "method": "ping"}).encode())
        others, pong = self.until_answer(ping_id)
        if pong.get("result") != {}:
            raise Answered(f"the ping after the frame was not answered: {pong}")
        return others

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class HttpDriver:
    """The real server over streamable HTTP, one process for many examples, one session."""

    HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}

    def __init__(self, root: str, errlog: Any) -> None:
        self.port = free_port()
        cmd = [sys.executable, "-m", "vibe_jobs", "serve", "--store", "memory://", "--tools", TOOLS]
        cmd += ["--transport", "streamable-http", "--port", str(self.port)]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=server_env(root), stdout=subprocess.DEVNULL, stderr=errlog)
        wait_for_port(self.port, self.proc)
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.http = httpx.Client(timeout=15)
        self.ids = itertools.count(1_000_000)
        response = self.post(json.dumps({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": INIT}).encode())
        self.headers: dict[str, str] = {**self.HEADERS, "mcp-session-id": response.headers["mcp-session-id"]}
        self.headers["mcp-protocol-version"] = "2025-11-25"
        self.post(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}).encode())

    def alive(self) -> bool:
        return self.proc.poll() is None

    def post(self, frame: bytes) -> httpx.Response:
        return self.http.post(self.url, content=frame, headers=getattr(self, "headers", self.HEADERS))

    def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        request_id = next(self.ids)
        frame = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params or {}}
        response = self.post(json.dumps(frame).encode())
        for message in messages_of(response):
            if message.get("id") == request_id:
                return message
        raise Answered(f"no answer to {method}: HTTP {response.status_code} {response.text[:300]}")

    def exchange(self, frame: bytes) -> list[dict[str, Any]]:
        response = self.post(frame)
        if response.status_code >= 500:
            raise Answered(f"HTTP {response.status_code}: {response.text[:300]}")
        found = messages_of(response)
        if self.request("ping").get("result") != {}:
            raise Answered("the ping after the frame was not answered")
        return found

    def close(self) -> None:
        self.http.close()
        stop(self.proc)


# What ends a line of server-sent events, and nothing else: not str.splitlines, which splits at U+0085, U+2028...
# too, which a JSON message carries raw (as the real client, httpx2's EventSource, reads them).
SSE_LINE_END = re.compile(r"\r\n|\r|\n")


def messages_of(response: httpx.Response) -> list[dict[str, Any]]:
    """The JSON-RPC messages of an HTTP answer (a JSON body or server-sent events)."""
    text = response.text
    if "text/event-stream" in response.headers.get("content-type", ""):
        lines = SSE_LINE_END.split(text)
        return [json.loads(line[5:]) for line in lines if line.startswith("data:") and line[5:].strip()]
    if not text.strip():
        return []
    body = json.loads(text)
    return body if isinstance(body, list) else [body]
