"""A long-poll that talks back: a job's question goes to the caller as a request on its own call, and
progress notifications keep the call alive.

`Asker` delivers a job's pending question (elicitation or sampling) to a `get-job-result` caller that can
answer it here: its connection carries server-to-client requests (the 2025-11-25 era) and it declared the
capability. The request is related to the long-poll's own request, and the answer goes to the job through
`JobManager.answer` (checked there like any other answer). A caller that cannot answer here is told by
`waitingFor` in the answer (see `messages.waiting_text`).

`Keepalive` sends the job's progress at least every `progress_keepalive_ms`, the unchanged value when the
job reported nothing, so that clients that reset their time-out on progress keep waiting.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio
from mcp.server.mcpserver import Context
from mcp.shared.exceptions import MCPError
from mcp.shared.message import ServerMessageMetadata
from mcp_types import (
    ClientCapabilities,
    CreateMessageRequest,
    CreateMessageResult,
    ElicitationCapability,
    ElicitRequest,
    ElicitResult,
    SamplingCapability,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from vibe_jobs.errors import InvalidParams, JobError
from vibe_jobs.events import JobEvent
from vibe_jobs.logs import get_logger
from vibe_jobs.manager import JobManager
from vibe_jobs.models import JobRecord
from vibe_jobs.questions import ELICIT, SAMPLE, pending_question

log = get_logger("vibe_jobs.server.asking")
MODERN = frozenset(MODERN_PROTOCOL_VERSIONS)
CAPABILITY = {
    ELICIT: ClientCapabilities(elicitation=ElicitationCapability()),
    SAMPLE: ClientCapabilities(sampling=SamplingCapability()),
}


class Asker:
    """Delivers the questions of one job to the caller of one long-poll, each question once."""

    def __init__(self, ctx: Context, manager: JobManager, job_id: str) -> None:
        self.ctx, self.m, self.job_id = ctx, manager, job_id
        self.methods = answerable(ctx)
        self.tried: set[str] = set()

    def wants(self, rec: JobRecord) -> bool:
        """Is there a question this caller can answer on this call (and was not asked already)?"""
        question = pending_question(rec.waiting_for) if not rec.finished else None
        return question is not None and question["method"] in self.methods and question["id"] not in self.tried

    async def deliver(self, rec: JobRecord) -> None:
        question = pending_question(rec.waiting_for)
        assert question is not None
        self.tried.add(question["id"])
        answer = await self._request(question)
        if answer is None:
            return
        try:
            await self.m.answer(self.job_id, answer, request_id=question["id"])
        except InvalidParams as exc:
            log.warning("job.answer_refused", job_id=self.job_id, error=str(exc))
        except JobError as exc:  # answered elsewhere meanwhile, or the job moved on: this answer is not needed
            log.info("job.answer_unused", job_id=self.job_id, reason=str(exc))

    async def _request(self, question: Mapping[str, Any]) -> dict[str, Any] | None:
        session = self.ctx.request_context.session
        meta = ServerMessageMetadata(related_request_id=self.ctx.request_context.request_id)
        try:
            if question["method"] == ELICIT:
                request = ElicitRequest.model_validate({"method": ELICIT, "params": question["params"]})
                result: Any = await session.send_request(request, ElicitResult, metadata=meta)
            else:
                sampling = CreateMessageRequest.model_validate({"method": SAMPLE, "params": question["params"]})
                result = await session.send_request(sampling, CreateMessageResult, metadata=meta)
        except MCPError as exc:  # the client refused (no handler, the person closed it): a decline
            log.info("job.question_refused", job_id=self.job_id, error=str(exc))
            return {"action": "decline"}
        dumped: dict[str, Any] = result.model_dump(by_alias=True, mode="json", exclude_none=True)
        return dumped


def answerable(ctx: Context) -> frozenset[str]:
    """The question methods this caller can answer on its long-poll: none on the 2026-07-28 era (no
    server-to-client requests there; the tasks extension or answer-job carry the answer)."""
    rc = ctx.request_context
    if rc.protocol_version in MODERN or not rc.session.can_send_request:
        return frozenset()
    return frozenset(m for m, cap in CAPABILITY.items() if rc.session.check_client_capability(cap))


class Keepalive:
    """Progress notifications of one long-poll: each change the job reports, and the last value again
    whenever `interval` seconds passed without one."""

    def __init__(self, ctx: Context, interval: float) -> None:
        self.ctx, self.interval = ctx, interval
        self.percent, self.text = 0.0, ""
        self.sent_at = anyio.current_time()

    async def on_event(self, event: JobEvent) -> None:
        if event.progress is None and not event.message:
            return
        self.percent = event.progress if event.progress is not None else self.percent  # never backwards
        stage = f"[{event.stage}] " if event.stage else ""
        self.text = f"{stage}{event.message or ''}".strip()
        await self._send()

    async def run(self) -> None:
        while True:
            await anyio.sleep(max(0.0, self.sent_at + self.interval - anyio.current_time()))
            if anyio.current_time() >= self.sent_at + self.interval:
                await self._send()

    async def _send(self) -> None:
        self.sent_at = anyio.current_time()
        await self.ctx.report_progress(self.percent, 100.0, self.text or None)
