"""Replies to a job's question that do not fit it, against the real `vibe-jobs serve` in both eras: each is
refused with the reason, the question stays open, and the server answers on (no crash of the call)."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import MODES
from tests.e2e.test_talkback_e2e import connect, finish, result_text, start, until_waiting


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("content", [[], 0, False, ""])
async def test_an_accepted_elicitation_whose_content_is_no_object_is_refused(mode: str, content: object) -> None:
    """`Note` asks for nothing required: an accepted answer whose content was [], 0, false or "" was taken as {}
    (the job resumed with no note) instead of refused."""
    async with connect(mode) as client:
        job_id = await start(client, "ask_note")
        await until_waiting(client, job_id)
        refused = await client.call_tool("answer-job", {"jobId": job_id, "answer": content})
        assert refused.is_error, refused
        assert f"content must be an object of the requested fields, not {content!r}" in str(refused.content)
        assert "waitingFor" in (await until_waiting(client, job_id))
        assert not (await client.call_tool("answer-job", {"jobId": job_id, "answer": {"note": "hi"}})).is_error
        assert result_text(await finish(client, job_id)) == "accept {'note': 'hi'}"
