"""`vibe-jobs call` asks the person at the terminal what a job asks, against the real `vibe-jobs serve` (stdio,
started by `vibe-jobs call --server-cmd`), with typed answers piped in."""

from __future__ import annotations

import os
import select
import shlex
import signal
import subprocess
import sys
import time

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


class Typing:
    """`vibe-jobs call` with its stdin kept open: a person who types only once asked."""

    def __init__(self, tool: str, *args: str) -> None:
        cmd = [sys.executable, "-m", "vibe_jobs", "call", tool, *args, "--server-cmd", shlex.join(SERVER)]
        env = {**os.environ, **BASE_ENV}
        pipe = subprocess.PIPE
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=pipe, stdout=pipe, stderr=pipe, text=True)
        self.seen = ""

    def until_shown(self, text: str, seconds: float = 20) -> None:
        """Read the terminal (stderr) until `text` shows, failing after `seconds`."""
        assert self.proc.stderr is not None
        deadline = time.monotonic() + seconds
        while text not in self.seen:
            left = deadline - time.monotonic()
            assert left > 0, f"{text!r} never shown; the terminal shows:\n{self.seen}"
            if select.select([self.proc.stderr], [], [], left)[0]:
                chunk = os.read(self.proc.stderr.fileno(), 65536).decode()
                assert chunk, f"{text!r} never shown before the call ended:\n{self.seen}"
                self.seen += chunk

    def type(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line)
        self.proc.stdin.flush()

    def end(self) -> tuple[int, str]:
        try:
            out, err = self.proc.communicate(timeout=20)
        finally:
            self.proc.kill()
        self.seen += err
        return self.proc.returncode, out


def test_a_question_the_job_stops_asking_leaves_the_prompt_and_the_call_ends() -> None:
    """The job's question timed out (wait=1) and the job finished, but `vibe-jobs call` sat at the prompt of the
    question nobody waited for, as long as the person typed nothing: the job's end was shown only after they
    answered it. The prompt is left once the job no longer asks, saying so, and the call ends with the job."""
    person = Typing("confirm", "--arg", "wait=1")
    try:
        person.until_shown("The job asks: Delete 312 files?")
        person.until_shown("(the job no longer waits for this answer)")
        person.type("y\n")  # typed late: no question takes it
        code, out = person.end()
    finally:
        person.proc.kill()
    assert code == 0, person.seen
    assert out.strip() == "no answer: timeout"


def test_the_line_typed_for_the_next_question_answers_it() -> None:
    """The first question timed out; the terminal went on showing it and hid the second until the person typed,
    and the thread reading the first question's line took what they typed (refused: no longer asked). Now the
    second question is shown once asked and the line typed for it answers it."""
    person = Typing("two_questions", "--arg", "wait=1")
    try:
        person.until_shown("The job asks: Keep a backup first?  (!decline declines)\n  Confirm (y/n): ")
        person.type("y\n")
        code, out = person.end()
    finally:
        person.proc.kill()
    assert code == 0, person.seen
    assert out.strip() == "first timeout None; second accept confirm=True"
    assert "refused" not in person.seen


def test_ctrl_c_at_a_question_cancels_the_job_and_ends_the_call() -> None:
    """Ctrl-C at the prompt of the job's question cancelled the job (stdin no terminal: no asking first), but the
    call sat at the prompt of the question its job had withdrawn until the person typed a line; it now leaves the
    prompt and ends as the job did."""
    person = Typing("confirm")
    try:
        person.until_shown("Confirm (y/n): ")
        person.proc.send_signal(signal.SIGINT)
        person.until_shown("(confirm) cancelled")
        code, _ = person.end()
    finally:
        person.proc.kill()
    assert code == 1, person.seen
    assert "(the job no longer waits for this answer)" in person.seen
