"""A running job asks (JobContext.elicit / sample), waits with status running, and resumes with the answer,
on every store with the scheduler a deployment on it uses. The MCP delivery is tested end to end in
tests/e2e/test_talkback_e2e.py; here the core rule: what is stored, what is accepted, what a time-out, a
restart and the job's own time-out do to a waiting job."""

from __future__ import annotations

import threading
from typing import Any, Literal

import anyio
import pytest
from pydantic import BaseModel, Field, field_validator, model_validator

from tests.engine import test_scheduler
from tests.engine.test_scheduler import WAIT, Backend, FakeClock, finished
from vibe_jobs import InvalidParams, JobManager, JobRecord, JobStatus, Settings, TaskSpec
from vibe_jobs.context import JobContext
from vibe_jobs.errors import NotWaiting
from vibe_jobs.jobtool import make_spec
from vibe_jobs.questions import (
    Elicitation,
    Sample,
    check_answer,
    elicit_request,
    elicitation,
    elicitation_schema,
    sample_request,
)
from vibe_jobs.store import open_store

backend = test_scheduler.backend  # the fixture: every store, with the scheduler a deployment on it uses


class Choice(BaseModel):
    confirm: bool
    mode: Literal["fast", "safe"] = "safe"
    note: str | None = None


async def ask_body(job: JobContext, wait: float = 30.0) -> str:
    answer = await job.elicit("Delete 312 files?", Choice, timeout_seconds=wait)
    if answer.data is None:
        return f"no: {answer.action}"
    return f"{answer.data.confirm}/{answer.data.mode}"


async def sample_body(job: JobContext) -> list[str]:
    out = []
    for i in range(2):
        reply = await job.sample(f"q{i}", max_tokens=10)
        out.append(reply.text or reply.action)
    return out


def ask_in_thread(job: JobContext) -> str:
    """A sync job tool asking as the README says it reports: the same calls, without `await`."""
    answer = job.elicit("Delete 312 files?", Choice, timeout_seconds=30)
    assert isinstance(answer, Elicitation)  # typed for `await`: the check narrows it for a type checker
    reply = job.sample("Why?", max_tokens=10) if answer.accepted else None
    assert reply is None or isinstance(reply, Sample)
    return f"{answer.action} {answer.data} {reply.text if reply else None}"


ASK = make_spec(ask_body, name="ask")
SAMPLE = make_spec(sample_body, name="sample")


async def until_asked(m: JobManager, job_id: str, before: str | None = None) -> dict[str, Any]:
    """The job's question once it asks one (a different one than `before`)."""

    def asking(rec: JobRecord) -> bool:
        return rec.waiting_for is not None and "answer" not in rec.waiting_for and rec.waiting_for["id"] != before

    rec = await m.wait(job_id, WAIT, stop=asking)
    assert asking(rec), rec
    assert rec.waiting_for is not None and rec.status is JobStatus.RUNNING
    return rec.waiting_for


async def test_a_job_waits_running_and_resumes_with_the_checked_answer(backend: Backend) -> None:
    async with backend.running([ASK]) as (m, _):
        job_id = await m.create_job("ask")
        question = await until_asked(m, job_id)
        assert question["method"] == "elicitation/create"
        msg = await m.status_message(job_id)
        assert msg.status is JobStatus.RUNNING and msg.waiting_for is not None
        assert msg.waiting_for["message"] == "Delete 312 files?" and msg.waiting_for["requestId"] == question["id"]
        with pytest.raises(InvalidParams, match="field 'mode' must be one of"):
            await m.answer(job_id, {"action": "accept", "content": {"confirm": True, "mode": "reckless"}})
        with pytest.raises(NotWaiting):
            await m.answer(job_id, {"action": "accept", "content": {"confirm": True}}, request_id="another")
        await m.answer(job_id, {"confirm": True, "mode": "fast"}, action="accept")
        with pytest.raises(NotWaiting):  # the first answer wins
            await m.answer(job_id, {"confirm": False}, action="accept")
        done = await finished(m, job_id)
    assert done.status is JobStatus.COMPLETED and done.result is not None
    assert done.result["content"][0]["text"] == "True/fast" and done.waiting_for is None


async def test_a_declined_or_unanswered_question_is_a_value(backend: Backend) -> None:
    async with backend.running([ASK]) as (m, _):
        declined = await m.create_job("ask")
        await until_asked(m, declined)
        await m.answer(declined, None, action="decline")
        timed_out = await m.create_job("ask", {"wait": 0.2})
        results = [(await finished(m, j)).result for j in (declined, timed_out)]
    assert [r["content"][0]["text"] for r in results if r] == ["no: decline", "no: timeout"]


async def test_sampling_answers_come_back_in_order(backend: Backend) -> None:
    async with backend.running([SAMPLE]) as (m, _):
        job_id = await m.create_job("sample")
        first = await until_asked(m, job_id)
        assert first["params"]["messages"][0]["content"]["text"] == "q0" and first["params"]["maxTokens"] == 10
        await m.answer(job_id, "one", action="accept")
        second = await until_asked(m, job_id, before=first["id"])
        reply = {"role": "assistant", "content": {"type": "text", "text": "two"}, "model": "m"}
        await m.answer(job_id, reply, request_id=second["id"])
        done = await finished(m, job_id)
    assert done.result is not None and done.result["structuredContent"] == {"result": ["one", "two"]}


async def test_waiting_does_not_count_against_the_time_out(backend: Backend) -> None:
    async with backend.running([ASK]) as (m, _):
        job_id = await m.create_job("ask", task=TaskSpec(timeout_seconds=0.5))
        await until_asked(m, job_id)
        await anyio.sleep(0.8)  # the subject: wall time passes beyond the time-out while the job waits
        assert (await m.get_record(job_id)).status is JobStatus.RUNNING
        await m.answer(job_id, {"confirm": False}, action="accept")
        done = await finished(m, job_id)
    assert done.status is JobStatus.COMPLETED and done.result is not None
    assert done.result["content"][0]["text"] == "False/safe"


async def test_a_sync_job_tool_asks_and_gets_its_answers_without_await(backend: Backend) -> None:
    """A sync tool's `job.elicit(...)` and `job.sample(...)` made a coroutine nobody awaited: nothing was asked, and
    the tool failed on the coroutine ("'coroutine' object has no attribute 'accepted'")."""
    async with backend.running([make_spec(ask_in_thread, name="ask_sync")]) as (m, _):
        job_id = await m.create_job("ask_sync")
        question = await until_asked(m, job_id)
        await m.answer(job_id, {"confirm": True}, action="accept")
        await until_asked(m, job_id, before=question["id"])
        await m.answer(job_id, "to make room", action="accept")
        done = await finished(m, job_id)
    assert done.status is JobStatus.COMPLETED and done.result is not None, done
    assert done.result["content"][0]["text"] == "accept confirm=True mode='safe' note=None to make room"


async def test_a_sync_job_tool_waiting_for_an_answer_is_cancelled_and_its_thread_ends(backend: Backend) -> None:
    ended, raised = threading.Event(), list[BaseException]()

    def ask_until_cancelled(job: JobContext) -> str:
        try:
            return str(job.elicit("Delete 312 files?", Choice, timeout_seconds=30))
        except BaseException as exc:
            raised.append(exc)
            raise
        finally:
            ended.set()

    async with backend.running([make_spec(ask_until_cancelled, name="ask_sync")]) as (m, _):
        job_id = await m.create_job("ask_sync")
        await until_asked(m, job_id)
        await m.cancel_job(job_id, "no longer needed")
        done = await finished(m, job_id)
        assert await anyio.to_thread.run_sync(ended.wait, 10), "the tool's thread still waits for an answer"
    assert done.status is JobStatus.CANCELLED and done.waiting_for is None
    assert [type(exc) for exc in raised] == [anyio.get_cancelled_exc_class()], raised  # the job's cancel, as is


async def test_cancel_while_waiting_ends_the_job_and_its_question(backend: Backend) -> None:
    async with backend.running([ASK]) as (m, _):
        job_id = await m.create_job("ask")
        await until_asked(m, job_id)
        await m.cancel_job(job_id, "no longer needed")
        done = await finished(m, job_id)
        with pytest.raises(NotWaiting):
            await m.answer(job_id, {"confirm": True}, action="accept")
    assert done.status is JobStatus.CANCELLED and done.waiting_for is None


async def test_an_answer_after_the_cancel_was_asked_is_refused_while_the_job_stops(backend: Backend) -> None:
    """The cancel wins: an answer given while a cancelled job is still stopping (here its clean-up holds it; in a
    cluster, until the process running it hears of the cancel) is refused naming the cancel, not accepted with "the
    job resumes", and the question is no longer shown."""
    release = anyio.Event()

    async def slow_to_stop(job: JobContext) -> str:
        try:
            return await ask_body(job)
        finally:
            with anyio.CancelScope(shield=True):
                await release.wait()

    async with backend.running([make_spec(slow_to_stop, name="slow-to-stop")]) as (m, _):
        job_id = await m.create_job("slow-to-stop")
        await until_asked(m, job_id)
        await m.cancel_job(job_id, "no longer needed")
        try:
            with pytest.raises(NotWaiting, match="being cancelled: its question is withdrawn"):
                await m.answer(job_id, {"confirm": True}, action="accept")
            msg = await m.status_message(job_id)  # nor is it shown to be answered
            assert msg.status is JobStatus.RUNNING and msg.waiting_for is None
        finally:
            release.set()
        done = await finished(m, job_id)
    assert done.status is JobStatus.CANCELLED and done.waiting_for is None


async def test_a_question_asked_after_the_cancel_is_answered_cancel_at_once(backend: Backend) -> None:
    """A job whose clean-up asks (in a shielded scope, after its cancel was asked for) can be answered by nobody:
    the question is withdrawn with the cancel. It waited until its time-out or the grace period abandoned the run;
    it is answered "cancel" at once, and nothing is shown as waiting."""
    actions: list[str] = []

    async def asks_in_clean_up(job: JobContext) -> str:
        try:
            return await ask_body(job)
        finally:
            with anyio.CancelScope(shield=True):
                actions.append((await job.elicit("Keep the partial output?", Choice, timeout_seconds=600)).action)

    async with backend.running([make_spec(asks_in_clean_up, name="asks-in-clean-up")]) as (m, _):
        job_id = await m.create_job("asks-in-clean-up")
        await until_asked(m, job_id)
        await m.cancel_job(job_id, "no longer needed")
        done = await finished(m, job_id)
    assert actions == ["cancel"]
    assert done.status is JobStatus.CANCELLED and done.waiting_for is None


async def lone_surrogate_body(job: JobContext) -> str:
    answer = await job.elicit("Go on? \ud800", Choice)
    return answer.action


async def nan_body(job: JobContext) -> str:
    tool_use = {"type": "tool_use", "id": "t1", "name": "calc", "input": {"x": float("nan")}}
    reply = await job.sample([{"role": "assistant", "content": tool_use}, "go on"], max_tokens=5)
    return reply.action


@pytest.mark.parametrize("body", [lone_surrogate_body, nan_body])
async def test_a_question_json_cannot_carry_fails_its_job_naming_it(backend: Backend, body: Any) -> None:
    """A question with a lone surrogate or a NaN in it could be shown to no client: the job failed with the
    encoder's UnicodeEncodeError or ValueError; it fails with a refusal that names the question."""
    async with backend.running([make_spec(body, name="odd")]) as (m, _):
        done = await finished(m, await m.create_job("odd"))
    assert done.status is JobStatus.FAILED and done.result is not None, done
    text = done.result["content"][0]["text"]
    assert "the question must be JSON-serialisable" in text and done.waiting_for is None, text


async def test_a_stored_question_ends_with_an_interrupted_run(backend: Backend) -> None:
    """After a restart the waiting job is recovered like any interrupted job: a retry_safe one runs again
    (and asks again), another fails; the old question is gone either way."""
    clock, store = FakeClock(), backend.store
    now = int(clock.now * 1000)
    question = elicit_request("old question?", Choice)
    await store.open()
    for job_id, tool in (("safe", "ask-safe"), ("fragile", "ask")):
        rec = JobRecord(job_id, tool, {}, JobStatus.RUNNING, now - 10_000, now - 5000, owner="dead:1", attempt=1)
        rec.started_at, rec.waiting_for = now - 5000, {"id": "old", **question, "askedAt": now - 4000}
        await store.insert(rec)
    tools = [make_spec(ask_body, name="ask-safe", retry_safe=True), ASK]
    async with backend.running(tools, Settings(), clock) as (m, _):
        again = await until_asked(m, "safe", before="old")
        fragile = await finished(m, "fragile")
        await m.answer("safe", {"confirm": True}, action="accept")
        safe = await finished(m, "safe")
    assert again["params"]["message"] == "Delete 312 files?"
    assert fragile.status is JobStatus.FAILED and fragile.waiting_for is None
    assert safe.status is JobStatus.COMPLETED and safe.attempt == 2


# -- the shapes --------------------------------------------------------------------------------


def test_elicitation_schema_is_flat_and_refuses_nesting() -> None:
    schema = elicitation_schema(Choice)
    assert schema["required"] == ["confirm"]
    assert schema["properties"]["mode"]["enum"] == ["fast", "safe"]
    assert schema["properties"]["note"]["type"] == "string"  # Optional[str] is a string that may be left out

    class Nested(BaseModel):
        inner: Choice

    with pytest.raises(InvalidParams, match="'inner' must be a string, number"):
        elicitation_schema(Nested)
    with pytest.raises(InvalidParams, match="object schema"):
        elicitation_schema({"type": "string"})


def test_answers_are_checked_against_the_question() -> None:
    question = {"id": "q", **elicit_request("ok?", {"type": "object", "properties": {"n": {"type": "integer"}}})}
    assert check_answer(question, {"action": "accept", "content": {"n": 3}}) == {
        "action": "accept",
        "content": {"n": 3},
    }
    assert check_answer(question, {"action": "cancel"}) == {"action": "cancel"}
    for bad, problem in [({"n": True}, "must be integer"), ({"n": 1.5}, "must be integer"), ({"m": 1}, "unknown")]:
        with pytest.raises(InvalidParams, match=problem):
            check_answer(question, {"action": "accept", "content": bad})
    bounded = {"id": "b", **elicit_request("how?", {"type": "object", "properties": {
        "x": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "minItems": 1, "maxItems": 2},
        "name": {"type": "string", "minLength": 2},
    }})}  # fmt: skip
    for bad, problem in [({"x": 0}, "'x' must be more than 0"), ({"x": 1}, "'x' must be less than 1"),
                         ({"tags": []}, "at least 1 items"), ({"tags": ["a", "b", "c"]}, "at most 2 items"),
                         ({"name": "a"}, "at least 2 characters long")]:  # fmt: skip
        with pytest.raises(InvalidParams, match=problem):
            check_answer(bounded, {"action": "accept", "content": bad})
    fits = {"x": 0.5, "tags": ["a"], "name": "ab"}
    assert check_answer(bounded, {"action": "accept", "content": fits}) == {"action": "accept", "content": fits}
    sampled = {"id": "s", **sample_request("hi", max_tokens=5)}
    assert check_answer(sampled, "hello")["content"] == {"type": "text", "text": "hello"}
    with pytest.raises(InvalidParams, match="sampling answer"):
        check_answer(sampled, {"role": "assistant"})
    # what a job could not read (a TypeError in the job) or would misread: refused while the question is open
    text_hi = {"type": "text", "text": "hi"}
    refused: list[tuple[dict[str, Any], str]] = [
        ({"content": {"type": "text", "text": 5}}, "text block's text must be a string, not 5"),
        ({"content": []}, "the list is empty"),
        ({"content": [3]}, "an object with a type"),
        ({"content": {"type": "image", "data": "x"}}, "image block's mimeType must be a string"),
        ({"content": text_hi, "role": "user"}, "role must be 'assistant'"),
        ({"content": text_hi, "model": {"x": 1}}, "model must be a string"),
    ]
    for bad, problem in refused:
        with pytest.raises(InvalidParams, match=problem):
            check_answer(sampled, {"action": "accept", **bad})
    reply = {"action": "accept", "content": [{"type": "text", "text": "a"}, {"type": "image", "data": "AA==",
             "mimeType": "image/png"}], "model": "m1", "stopReason": "endTurn"}  # fmt: skip
    assert check_answer(sampled, reply)["model"] == "m1"
    with pytest.raises(InvalidParams, match="max_tokens"):
        sample_request("hi", max_tokens=0)


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
async def test_another_replica_takes_the_answer(backend: Backend) -> None:
    """On PostgreSQL the question is in the shared store: a replica that does not run the job answers it,
    and the job (running in another process) resumes with that answer."""
    async with backend.running([ASK]) as (m, _):
        job_id = await m.create_job("ask")
        await until_asked(m, job_id)
        other = JobManager(open_store(backend.store.url), Settings())
        async with other:
            msg = await other.status_message(job_id)
            assert msg.waiting_for is not None and msg.waiting_for["message"] == "Delete 312 files?"
            await other.answer(job_id, {"confirm": True}, action="accept")
        done = await finished(m, job_id)
    assert done.result is not None and done.result["content"][0]["text"] == "True/safe"


class Code4(BaseModel):
    code: str = Field(pattern=r"^[0-9]{4}$")


async def code_body(job: JobContext) -> str:
    answer = await job.elicit("Code?", Code4)
    return answer.data.code if answer.data is not None else answer.action


CODE = make_spec(code_body, name="code")


async def test_an_answer_its_model_refuses_is_refused_here_and_asked_again_when_given_elsewhere(
    backend: Backend,
) -> None:
    """The flat check cannot test a pattern: such an answer failed the job. In the job's process its model
    refuses the answer (the question stays); given in another process (a replica, where the model is not
    known), the job asks again, saying why."""
    async with backend.running([CODE]) as (m, _):
        job_id = await m.create_job("code")
        first = await until_asked(m, job_id)
        with pytest.raises(InvalidParams, match="does not fit Code4"):
            await m.answer(job_id, {"code": "12a4"}, action="accept")
        elsewhere = JobManager(m.store, m.settings)  # another process's manager: it has no check for the question
        await elsewhere.answer(job_id, {"code": "12a4"}, action="accept")
        again = await until_asked(m, job_id, before=first["id"])
        said = again["params"]["message"]
        assert said.startswith("The last answer did not fit (the accepted answer does not fit Code4"), said
        await m.answer(job_id, {"code": "1234"}, action="accept")
        done = await finished(m, job_id)
    assert done.status is JobStatus.COMPLETED and done.result is not None
    assert done.result["content"][0]["text"] == "1234"


class Buggy(BaseModel):
    word: str

    @field_validator("word")
    @classmethod
    def no_type(cls, value: str) -> str:
        if value == "type":
            raise TypeError("validator bug")  # not a ValueError: pydantic passes it through
        return value


async def buggy_body(job: JobContext) -> str:
    answer = await job.elicit("Word?", Buggy)
    return answer.data.word if answer.data is not None else answer.action


async def test_an_answer_check_that_raises_something_else_refuses_the_answer_and_the_question_stays(
    backend: Backend,
) -> None:
    """A validator raising TypeError escaped answer-job (an internal error) and every long-poll that delivered
    the answer; now the answer is refused naming it, and the job goes on waiting."""
    async with backend.running([make_spec(buggy_body, name="buggy")]) as (m, _):
        job_id = await m.create_job("buggy")
        asked = await until_asked(m, job_id)
        with pytest.raises(InvalidParams, match="the job's check of the answer failed: TypeError: validator bug"):
            await m.answer(job_id, {"word": "type"}, action="accept")
        assert (await m.get_record(job_id)).waiting_for == asked
        await m.answer(job_id, {"word": "fine"}, action="accept")
        done = await finished(m, job_id)
    assert done.result is not None and done.result["content"][0]["text"] == "fine"


class Seven(BaseModel):
    a: int
    b: int
    c: int
    d: int
    e: int
    f: int
    g: int


class Whole(BaseModel):
    low: int
    high: int

    @model_validator(mode="after")
    def ordered(self) -> Whole:
        if self.low > self.high:
            raise ValueError("low is above high")
        return self


def test_an_answer_its_model_refuses_is_told_why_by_the_one_rule_of_validation_errors() -> None:
    """The refusal is logs.without_input's rule (questions.py had a copy of it): no value quoted, a problem of
    the whole answer named `content`, at most five problems and how many more (all of them were listed)."""
    with pytest.raises(InvalidParams) as whole:
        elicitation({"action": "accept", "content": {"low": 5, "high": 1}}, Whole)
    assert str(whole.value) == "the accepted answer does not fit Whole: content: Value error, low is above high"
    with pytest.raises(InvalidParams) as seven:
        elicitation({"action": "accept", "content": {"a": "SECRET-VALUE"}}, Seven)
    said = str(seven.value)
    assert said.startswith("the accepted answer does not fit Seven: a: Input should be a valid integer"), said
    assert said.endswith("; e: Field required; and 2 more") and "SECRET-VALUE" not in said, said


async def nan_wait_body(job: JobContext) -> str:
    answer = await job.elicit("Delete 312 files?", Choice, timeout_seconds=float("nan"))
    return answer.action


@pytest.mark.parametrize("backend", ["memory"], indirect=True)
async def test_a_question_whose_time_out_is_no_number_of_seconds_fails_its_job_naming_it(backend: Backend) -> None:
    """`elicit(..., timeout_seconds=nan)` stored the question (clients were shown it), then failed the job with
    anyio's "deadline cannot be NaN" (review helper-151): refused before it is asked, naming the argument."""
    async with backend.running([make_spec(nan_wait_body, name="nan_wait")]) as (m, _):
        done = await finished(m, await m.create_job("nan_wait"))
    assert done.status is JobStatus.FAILED and done.result is not None, done
    text = done.result["content"][0]["text"]
    assert "timeout_seconds must be a number of seconds, 0 or more, not nan" in text, text
    assert done.waiting_for is None
