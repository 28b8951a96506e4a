"""The texts an agent reads: exact next call and a correct UTC time for nextCheckTime."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from vibe_jobs.models import PollingRecommendation
from vibe_jobs.server.messages import call_hint, started_text, when


@pytest.mark.parametrize("ms", [0, 999, 1_234_567_890_123, 1_795_885_508_355, 1_795_939_199_999])
def test_the_next_check_time_is_shown_as_utc_wall_clock(ms: int) -> None:
    reco = PollingRecommendation(interval=1500, next_check_time=ms)
    at = datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M:%S.%f")[:-3]
    assert when(reco) == f"in 1.5 s (nextCheckTime {ms}, {at} UTC)"


def test_the_call_hint_is_valid_json_arguments() -> None:
    hint = call_hint('odd"id')
    assert hint.startswith("get-job-result with ")
    assert json.loads(hint.removeprefix("get-job-result with ")) == {"jobId": 'odd"id'}
    for job_id in ("0123456789abcdef0123456789abcdef", "j\u00e9", "a b", ""):  # the plain-id shortcut, and not
        assert json.loads(call_hint(job_id).removeprefix("get-job-result with ")) == {"jobId": job_id}


def test_the_started_text_names_the_job_the_next_call_and_the_wait_form() -> None:
    text = started_text("j1", "noop", 1000, 1_795_885_508_355, 50)
    assert 'get-job-result with {"jobId": "j1"} in 1 s (nextCheckTime 1795885508355, ' in text
    assert '{"jobId": "j1", "waitSeconds": 50}' in text
    assert "Do not guess the result." in text
