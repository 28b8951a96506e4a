"""An upstream MCP server for the proxy's talk-back with several callers: `hold` logs a line, reports progress
and waits until `release` is called; `noisy` logs its argument (a secret of its caller); `ask` elicits a PIN
naming its topic; `askdefault` elicits a code with a default its own field refuses; `bigask` elicits with a message
of `size` characters; `roots` waits until `release` is called, then answers with the roots its client (the proxy)
gives it; `linger` answers at once and logs its argument later, as a background task of a server may: once the next
`hold` is in flight (which waits until that line is written)."""

from __future__ import annotations

import asyncio

import anyio
from mcp.server.mcpserver import Context, MCPServer
from pydantic import BaseModel, Field

mcp: MCPServer = MCPServer("talkback-test-upstream")
released = anyio.Event()
next_hold = anyio.Event()
lingering: list[asyncio.Task[None]] = []


@mcp.tool(name="hold")
async def hold(ctx: Context) -> str:
    global next_hold
    next_hold.set()
    next_hold = anyio.Event()
    while lingering:  # the lines of calls that ended before this one, written (on the wire) before its own
        await lingering.pop()
    await ctx.info("holding")
    await ctx.report_progress(1, 2, "holding")  # the job's progress: its caller sees the call is in flight
    await released.wait()
    return "held"


@mcp.tool(name="release")
async def release() -> str:
    global released
    released.set()
    released = anyio.Event()
    return "released"


@mcp.tool(name="noisy")
async def noisy(secret: str, ctx: Context) -> str:
    for _ in range(3):
        await ctx.info(f"processing {secret}")
    return "done"


@mcp.tool(name="linger")
async def linger(secret: str, ctx: Context) -> str:
    session, after = ctx.session, next_hold

    async def later() -> None:
        await after.wait()
        await session.send_log_message(level="info", data=f"finishing {secret}")  # no call of ours runs now

    lingering.append(asyncio.get_running_loop().create_task(later()))
    return "lingering"


class Pin(BaseModel):
    pin: str


@mcp.tool(name="ask")
async def ask(topic: str, ctx: Context) -> str:
    answer = await ctx.elicit(f"please give the PIN for {topic}", Pin)
    return f"got {answer.action} {getattr(answer, 'data', None)}"


class Code(BaseModel):
    code: str = Field("", min_length=4)  # a default its own field refuses: a server's slip the proxy must bear


@mcp.tool(name="askdefault")
async def askdefault(ctx: Context) -> str:
    answer = await ctx.elicit("please give the code", Code)
    return f"got {answer.action} {getattr(answer, 'data', None)}"


@mcp.tool(name="bigask")
async def bigask(size: int, ctx: Context) -> str:
    answer = await ctx.elicit("m" * size, Pin)
    return f"got {answer.action}"


@mcp.tool(name="roots")
async def roots(ctx: Context) -> str:
    await ctx.report_progress(1, 2, "holding")
    await released.wait()
    listed = await ctx.session.list_roots()
    return "roots: " + " ".join(str(root.uri) for root in listed.roots)


if __name__ == "__main__":
    mcp.run()
