"""A long-poll that talks back: a job's question goes to the caller as a request on its own call, and
progress notifications keep the call alive.

`Asker` delivers a job's pending question (elicitation or sampling) to a `get-job-result` caller that
declared the capability, the way its era allows: on 2025-11-25 a server-to-client request related to the
long-poll's own request, whose answer goes to the job at once; the request stays outstanding past that long-poll
(a person may take longer than it lasts) until it is answered, the job no longer asks the question or the
connection closes, and a later long-poll of the connection waits for it instead of asking again
(`server/outstanding.py`); on 2026-07-28 (no server-to-client requests)
the call answers `input_required` with the question in `inputRequests`, and the client's retry of the same
call carries the answer in `inputResponses` (`take_responses`). Either way the answer goes to the job through
`JobManager.answer`, checked there like any other. A caller that cannot answer is told by `waitingFor` in
the answer (see `messages.waiting_text`).

An answer given on the call and refused (it fails the question's checks, or is no ElicitResult /
CreateMessageResult at all) is remembered for the caller's connection (`refusal`): the long-poll answers with
the reason in `waitingFor.answerRefused`, and the next long-poll that asks the same elicitation again says why.
On 2026-07-28 the retry whose `inputResponses` is refused answers so too (not an error); as no connection
outlives its request in that era, the question asked again there does not repeat why.

A request the client answers with an error saying it could not take it (`NOT_TAKEN`: invalid params, say a schema
it cannot read; method not found; invalid request) was never shown to anyone: it is no decline. The question
stays open, is not put to that connection again (`not_taken`; `Asker.wants`), and the long-poll answers with it
in `waitingFor.notDelivered` and a text saying answer-job answers it. In the 2026-07-28 era no such error reaches
the server: `inputResponses` hold results only, and a client that cannot take a question fails its own call.

`Keepalive` sends the job's progress at least every `progress_keepalive_ms`, the unchanged value when the
job reported nothing, so that clients that reset their time-out on progress keep waiting.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

import anyio
from mcp.server.mcpserver import Context
from mcp.server.session import ServerSession
from mcp.shared.exceptions import MCPError, NoBackChannelError
from mcp.shared.message import ServerMessageMetadata
from mcp_types import (
    CONNECTION_CLOSED,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    ClientCapabilities,
    CreateMessageRequest,
    CreateMessageResult,
    ElicitationCapability,
    ElicitRequest,
    ElicitResult,
    InputRequiredResult,
    InputResponses,
    SamplingCapability,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

from vibe_jobs.errors import InvalidParams, JobError, NotWaiting
from vibe_jobs.events import EventType, JobEvent, job_event
from vibe_jobs.identity import Viewer
from vibe_jobs.logs import get_logger
from vibe_jobs.manager import JobManager
from vibe_jobs.models import JobRecord
from vibe_jobs.questions import ELICIT, SAMPLE, first_version, open_question, response_to_pending
from vibe_jobs.server.auth import latest_viewer
from vibe_jobs.server.outstanding import Outstanding, outstanding, put
from vibe_jobs.server.sdk import connection_state
from vibe_jobs.states import FINAL

log = get_logger("vibe_jobs.server.asking")
REFUSED = "vibe_jobs.answer_refused"  # in the connection's state: (question id, why its last answer was refused)
MAX_REASON_CHARS = 1_000
NOT_TAKEN_KEY = "vibe_jobs.questions_not_taken"  # in the connection's state: {question id: why it could not take it}
MAX_NOT_TAKEN = 1_000  # questions remembered per connection (the oldest forgotten first: it is asked once more)
# a client's error reply to a question's request that says it could not take the request (nobody was asked); its
# other errors (sampling's -1 "User rejected", an internal error) are a decline, as before
NOT_TAKEN = {INVALID_REQUEST: "invalid request", METHOD_NOT_FOUND: "method not found", INVALID_PARAMS: "invalid params"}
PROGRESS_GAP_SECONDS = 0.1  # a long-poll's progress notifications: at most ten a second, the latest never dropped
MOOT_CHECK_SECONDS = 3_600.0  # an outstanding request's watch on its question: one wait at most this long
MODERN = frozenset(MODERN_PROTOCOL_VERSIONS)
# 2026-07-28: the questions one long-poll asks (`input_required` rounds of one call, the client's retries carrying
# the answers), counted in the requestState the client echoes: the SDK client raises past 10 rounds of one call, so
# a job asking its eleventh question within one long-poll failed the caller's get-job-result. Past these the
# long-poll answers the job's status (waitingFor shows the question) and the caller's next long-poll asks it.
MAX_ROUNDS = 4
CAPABILITY = {
    ELICIT: ClientCapabilities(elicitation=ElicitationCapability()),
    SAMPLE: ClientCapabilities(sampling=SamplingCapability()),
}


class Asker:
    """Delivers the questions of one job to the caller of one long-poll, each question once (and not at all while
    the caller's connection has it outstanding from an earlier long-poll)."""

    def __init__(self, ctx: Context, manager: JobManager, job_id: str) -> None:
        self.ctx, self.m, self.job_id = ctx, manager, job_id
        self.methods = answerable(ctx)
        self.version = ctx.request_context.protocol_version
        self.modern = self.version in MODERN
        self.rounds = rounds_of(ctx.request_state) if self.modern else 0
        self.tried: set[str] = set()

    def wants(self, rec: JobRecord) -> bool:
        """Is there a question this caller can answer on this call (and was not asked already)? Not one its
        protocol version has no request for (a 2025-06-18 client refused a multi-select, and that was taken as
        a decline), nor one this connection answered with an error saying it could not take it (`NOT_TAKEN`):
        `waitingFor` shows it, and answer-job answers it."""
        question = open_question(rec)
        if question is None or question["method"] not in self.methods or question["id"] in self.tried:
            return False
        if not_taken(self.ctx.request_context.session, question["id"]) is not None:  # it said it cannot take it
            return False
        if self.rounds >= MAX_ROUNDS:  # this call asked enough: its next long-poll asks (a call of its own)
            return False
        return self.version is None or self.modern or self.version >= first_version(question)

    def input_required(self, rec: JobRecord) -> InputRequiredResult | None:
        """On 2026-07-28: the question as this call's `input_required` answer (the client retries with it)."""
        question = open_question(rec)
        if not self.modern or question is None:
            return None
        return InputRequiredResult(
            input_requests={question["id"]: _request_of(question)}, request_state=str(self.rounds + 1)
        )

    def deliver(self, rec: JobRecord) -> Outstanding:
        """Put the job's question to the caller as a request related to this call, unless this connection has it
        outstanding already (asked by an earlier long-poll): either way that request, which outlives this call
        until it is answered, the question ends or the connection closes (`server/outstanding.py`)."""
        question = open_question(rec)
        assert question is not None
        self.tried.add(question["id"])
        key = (self.job_id, question["id"])
        session = self.ctx.request_context.session
        if (found := outstanding(session, key)) is not None:
            return found
        return put(session, key, self.m.task_group, partial(self._ask, question))

    async def _ask(self, question: Mapping[str, Any]) -> None:
        """Ask and feed the reply to the job; the request is withdrawn (cancelled) once the job no longer asks
        this question (answered elsewhere, timed out, the job ended)."""
        async with anyio.create_task_group() as tg:

            async def until_moot() -> None:
                await self._until_moot(question["id"])
                tg.cancel_scope.cancel()

            tg.start_soon(until_moot)
            answer = await self._request(question)
            if answer is not None:
                await self._answer(question["id"], answer)
            tg.cancel_scope.cancel()

    async def _until_moot(self, question_id: str) -> None:
        """Return once the job no longer asks question `question_id` (or cannot be read)."""

        def moot(rec: JobRecord) -> bool:
            question = open_question(rec)
            return question is None or question["id"] != question_id

        try:
            while not moot(await self.m.wait(self.job_id, MOOT_CHECK_SECONDS, stop=moot)):
                pass
        except JobError as exc:  # the job went away (or cannot be read now): the request is withdrawn
            log.info("job.question_moot", job_id=self.job_id, reason=str(exc))

    async def _answer(self, question_id: str, answer: dict[str, Any]) -> None:
        """Feed the reply to the job, for the viewer of the connection's latest request: one whose token was
        refreshed without `admin` since it was asked answers no other principal's job (as if it were unknown)."""
        viewer = latest_viewer(self.ctx.request_context.session)
        try:
            await self.m.answer(self.job_id, answer, request_id=question_id, viewer=viewer)
        except InvalidParams as exc:
            self._refused(question_id, str(exc))
        except JobError as exc:  # answered elsewhere meanwhile, or the job moved on: this answer is not needed
            log.info("job.answer_unused", job_id=self.job_id, reason=str(exc))

    async def _request(self, question: Mapping[str, Any]) -> dict[str, Any] | None:
        session = self.ctx.request_context.session
        meta = ServerMessageMetadata(related_request_id=self.ctx.request_context.request_id)
        request = _request_of(question, refusal(self.ctx.request_context.session, question["id"]))
        try:
            if isinstance(request, ElicitRequest):
                result: Any = await session.send_request(request, ElicitResult, metadata=meta)
            else:
                result = await session.send_request(request, CreateMessageResult, metadata=meta)
        except MCPError as exc:
            if isinstance(exc, NoBackChannelError) or exc.code == CONNECTION_CLOSED:  # no answer, no decline
                log.info("job.question_undelivered", job_id=self.job_id, error=str(exc))
                return None
            if exc.code in NOT_TAKEN:  # nobody was asked: no decline; left to answer-job, not asked here again
                self._not_taken(question, exc)
                return None
            # the client refused (no handler, the person closed it): a decline
            log.info("job.question_refused", job_id=self.job_id, error=str(exc))
            return {"action": "decline"}
        except ValidationError as exc:  # a reply that is no ElicitResult / CreateMessageResult: refused, as
            # one that fails our own checks is (the question stays open)
            self._refused(question["id"], _reply_problem(exc))
            return None
        dumped: dict[str, Any] = result.model_dump(by_alias=True, mode="json", exclude_none=True)
        return dumped

    def _refused(self, question_id: str, reason: str) -> None:
        remember_refusal(self.ctx.request_context.session, self.job_id, question_id, reason)

    def _not_taken(self, question: Mapping[str, Any], exc: MCPError) -> None:
        """Remember, for this connection, that its client could not take `question` (logged: the code, never the
        client's message, which may quote the question)."""
        log.warning(
            "job.question_not_taken",
            job_id=self.job_id,
            request_id=question["id"],
            method=question["method"],
            code=exc.code,
            reason=NOT_TAKEN[exc.code],
        )
        said = f": {exc.message}" if exc.message else ""
        why = f"it answered the {question['method']} request with error {exc.code} ({NOT_TAKEN[exc.code]}{said})"
        table: dict[str, str] = connection_state(self.ctx.request_context.session).setdefault(NOT_TAKEN_KEY, {})
        table[question["id"]] = why[:MAX_REASON_CHARS]
        while len(table) > MAX_NOT_TAKEN:
            del table[next(iter(table))]


def rounds_of(state: str | None) -> int:
    """The questions a 2026-07-28 long-poll's earlier rounds asked, from the requestState its client echoes (ours, or
    anything a client made up: read as none, or as many as it says, which only ends the long-poll sooner)."""
    return int(state) if state is not None and 0 < len(state) <= 6 and state.isascii() and state.isdigit() else 0


def not_taken(session: ServerSession, question_id: str | None) -> str | None:
    """Why this client's connection could not take question `question_id` (it answered its request with an error
    of `NOT_TAKEN`), if it could not: it is not put to the connection again."""
    table = connection_state(session).get(NOT_TAKEN_KEY) or {}
    return table.get(question_id) if question_id is not None else None


def remember_refusal(session: ServerSession, job_id: str, question_id: str, reason: str) -> None:
    """Remember, for `session`'s connection, why its answer to question `question_id` was refused (`refusal`)."""
    log.warning("job.answer_refused", job_id=job_id, error=reason)
    connection_state(session)[REFUSED] = (question_id, reason[:MAX_REASON_CHARS])


def refusal(session: ServerSession, question_id: str | None) -> str | None:
    """Why the last answer this client's connection gave to question `question_id` was refused, if it was."""
    refused = connection_state(session).get(REFUSED)
    return refused[1] if refused is not None and refused[0] == question_id else None


def _reply_problem(exc: ValidationError) -> str:
    """What is wrong with a client's reply, in one line (the first of pydantic's errors, where it is)."""
    first = exc.errors()[0]
    where = ".".join(map(str, first.get("loc") or ())) or "the reply"
    return f"the reply is no {exc.title}: {where}: {first.get('msg')}"


def _request_of(question: Mapping[str, Any], refused: str | None = None) -> ElicitRequest | CreateMessageRequest:
    """The question as its MCP request; an elicitation whose last answer was refused says why first."""
    params = question["params"]
    if refused is not None and question["method"] == ELICIT:
        params = {**params, "message": f"Your last answer was refused ({refused}). {params['message']}"}
    wire = {"method": question["method"], "params": params}
    return (
        ElicitRequest.model_validate(wire)
        if question["method"] == ELICIT
        else CreateMessageRequest.model_validate(wire)
    )


def answerable(ctx: Context) -> frozenset[str]:
    """The question methods this caller can answer on its long-poll: those it declared the capability of
    (elicitation: form mode, the only one a job asks in), on 2025-11-25 only when its connection carries
    server-to-client requests."""
    rc = ctx.request_context
    if rc.protocol_version not in MODERN and not rc.session.can_send_request:
        return frozenset()
    declared = frozenset(m for m, cap in CAPABILITY.items() if rc.session.check_client_capability(cap))
    return declared if takes_forms(rc.session.client_capabilities) else declared - {ELICIT}


def takes_forms(capabilities: ClientCapabilities | None) -> bool:
    """Does a client take form-mode elicitation: it declared `form`, or `elicitation: {}` (an empty object means
    form mode, says the spec). One that declared only `url` must not be sent a form."""
    elicitation = capabilities.elicitation if capabilities is not None else None
    return elicitation is not None and (elicitation.form is not None or elicitation.url is None)


async def take_responses(
    manager: JobManager, ctx: Context, job_id: str, responses: InputResponses | None, viewer: Viewer | None
) -> bool:
    """A 2026-07-28 retry's `inputResponses`: each the answer to the question its key names, from `viewer`
    (another principal's job answers as an unknown id, its question untouched). A key the job no longer waits
    on is ignored (answered elsewhere, or the job moved on); a wrong answer is refused, as one on a 2025-11-25
    long-poll's request is (`refusal`): True then, and the call answers with the reason."""
    if not responses:
        return False
    rec = await manager.get_record(job_id, viewer)  # one read, whatever number of keys the request names
    if (found := response_to_pending(rec, responses)) is None:
        log.info("job.answer_unused", job_id=job_id, keys=len(responses))
        return False
    key, response = found
    answer = response.model_dump(by_alias=True, mode="json", exclude_none=True)
    try:
        await manager.answer(job_id, answer, request_id=key, viewer=viewer)
    except NotWaiting:
        log.info("job.answer_unused", job_id=job_id, request_id=key)
    except InvalidParams as exc:
        remember_refusal(ctx.request_context.session, job_id, key, str(exc))
        return True
    return False


class Keepalive:
    """Progress notifications of one long-poll: each change the job reports, at most one every
    `PROGRESS_GAP_SECONDS` (the latest of a burst is sent at the end of the gap), and the last value again
    whenever `interval` seconds passed without one."""

    def __init__(self, ctx: Context, interval: float) -> None:
        self.ctx, self.interval = ctx, interval
        self.percent, self.text = 0.0, ""
        self.sent_at = anyio.current_time()
        self.held = False  # a change came within the gap: the run loop sends it when the gap is over
        self._changed = anyio.Event()

    async def begin(self, rec: JobRecord) -> None:
        """Tell where the unfinished job stands as a wait of the long-poll begins (`JobManager.wait`'s `on_start`,
        read once subscribed, so no change is missed between): a command that printed its last line before was
        otherwise shown nothing until its next line (or its end); after a question, what changed meanwhile."""
        if rec.status not in FINAL:
            await self.on_event(job_event(EventType.PROGRESS, rec), at_once=True)

    async def on_event(self, event: JobEvent, *, at_once: bool = False) -> None:
        if event.progress is None and not event.message:
            return
        self.percent = event.progress if event.progress is not None else self.percent  # never backwards
        stage = f"[{event.stage}] " if event.stage else ""
        self.text = f"{stage}{event.message or ''}".strip()
        if at_once or anyio.current_time() >= self.sent_at + PROGRESS_GAP_SECONDS:
            await self._send()
        else:  # a job reporting thousands of times a second sent as many notifications, each a line to the client
            self.held = True
            self._changed.set()

    async def run(self) -> None:
        while True:
            due = self.sent_at + (PROGRESS_GAP_SECONDS if self.held else self.interval)
            with anyio.move_on_after(max(0.0, due - anyio.current_time())):
                await self._changed.wait()
            self._changed = anyio.Event()
            if anyio.current_time() >= self.sent_at + (PROGRESS_GAP_SECONDS if self.held else self.interval):
                await self._send()

    async def _send(self) -> None:
        self.sent_at, self.held = anyio.current_time(), False
        await self.ctx.report_progress(self.percent, 100.0, self.text or None)
