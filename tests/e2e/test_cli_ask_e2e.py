"""`vibe-jobs call` asks the person at the terminal what a job asks, against the real `vibe-jobs serve` (stdio,
started by `vibe-jobs call --server-cmd`), with typed answers piped in."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

import pytest

from tests.e2e.conftest import BASE_ENV, ROOT, SERVER


def vibe_jobs_call(tool: str, typed: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "vibe_jobs", "call", tool, "--server-cmd", shlex.join(SERVER)]
    env = {**os.environ, **BASE_ENV}
    return subprocess.run(cmd, cwd=ROOT, env=env, input=typed, capture_output=True, text=True, timeout=50)


@pytest.mark.parametrize(
    ("typed", "out"), [("red, blue\n", "red,blue"), ("purple\ngreen\n", "green"), ("\nred\n", "red")]
)
def test_a_multi_select_field_shows_its_choices_and_takes_them_comma_separated(typed: str, out: str) -> None:
    """An array-of-enum field showed `(array)` and took the typed text as one string, which the server refused
    each time (three refusals, exit 1): nobody could answer it at the terminal."""
    done = vibe_jobs_call("pick_colours", typed)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == out
    assert "red|green|blue" in done.stderr and "comma separated" in done.stderr
    assert ("choose from red, green, blue" in done.stderr) == typed.startswith("purple")


def test_a_sampling_question_whose_content_is_a_list_of_blocks_is_shown() -> None:
    """A message whose content is a list of blocks crashed `vibe-jobs call` (AttributeError, exit 2)."""
    done = vibe_jobs_call("sample_blocks", "a reply\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "accept a reply"
    assert "user: first block" in done.stderr and "second block" in done.stderr


def test_vibe_jobs_call_tells_the_person_why_an_answer_was_refused() -> None:
    """An answer the server refused (50, out of 0..10) was asked for again without a word; the reason was shown
    only at the third refusal, as the error the call ended with."""
    done = vibe_jobs_call("ask_count", "50\n\n5\n\n")  # count, then the optional label
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "5"
    refused = done.stderr.index("Your answer was refused: ")
    assert "'count' must be at most 10, got 50" in done.stderr[refused:]
    assert done.stderr.count("The job asks: How many (0-10)?") == 2
    assert refused < done.stderr.rindex("The job asks: How many (0-10)?")
