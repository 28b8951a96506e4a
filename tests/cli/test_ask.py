"""`vibe-jobs call`'s questions at the terminal: what a job asks (a tool's or an upstream's words) is shown escaped,
so its escape sequences do not drive the operator's terminal (clear the screen, set its title)."""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Callable

from vibe_jobs.cli.ask import Left, Lines, TerminalAsker

ESCAPES = "\x1b]0;owned\x07\x1b[2J"


def test_a_question_s_words_reach_the_terminal_escaped() -> None:
    out, inp = io.StringIO(), io.StringIO("y\nhello\n")
    asker = TerminalAsker(out, inp)
    schema = {"type": "object", "properties": {"ok": {"type": "boolean", "title": f"Sure?{ESCAPES}"}}}
    assert asker.elicit(f"Delete 312 files?{ESCAPES}", schema) == {"action": "accept", "content": {"ok": True}}
    params = {"systemPrompt": f"be brief{ESCAPES}", "messages": [{"role": "user", "content": {"text": ESCAPES}}]}
    assert asker.sample(params) == "hello"
    shown = out.getvalue()
    assert "\x1b" not in shown and "\x07" not in shown, shown
    assert "Delete 312 files?\\x1b]0;owned\\x07\\x1b[2J" in shown and "\n  system: be brief" in shown


def left_reading(lines: Lines) -> tuple[threading.Thread, list[str]]:
    """A question's reader in readline, then left (the job stopped asking it): its thread, and what it took."""
    left, took = threading.Event(), list[str]()
    reader = threading.Thread(target=_take, args=(lines, left, took))
    reader.start()
    with lines.changed:
        lines.changed.wait_for(lambda: lines.reading)
    left.set()
    lines.wake()
    return reader, took


def _take(lines: Lines, left: threading.Event, took: list[str], prompt: Callable[[], object] | None = None) -> None:
    try:
        took.append(lines.take(left, prompt))
    except Left:
        took.append("left")


def test_a_line_read_for_a_question_left_goes_to_the_prompt_asked_since() -> None:
    """The job stopped asking while the question's line was being read, and asked another: the line typed at the
    new prompt answers it (the old question's thread went on reading and took it)."""
    read_end, write_end = os.pipe()
    with os.fdopen(read_end) as inp, os.fdopen(write_end, "w") as typing:
        lines = Lines(inp)
        old, took = left_reading(lines)
        answered: list[str] = []
        new = threading.Thread(target=_take, args=(lines, threading.Event(), answered))
        new.start()
        with lines.changed:
            lines.changed.wait_for(lambda: lines.waiting == 1)  # the new prompt waits
        typing.write("yes\n")
        typing.flush()
        old.join()
        new.join()
    assert took == ["left"] and answered == ["yes\n"]


def test_a_line_typed_while_no_prompt_waits_answers_nothing() -> None:
    """A line typed after the question was left and before another was asked was meant for the one left: it does
    not answer the next question, whose prompt the person has not seen yet."""
    read_end, write_end = os.pipe()
    with os.fdopen(read_end) as inp, os.fdopen(write_end, "w") as typing:
        lines = Lines(inp)
        old, took = left_reading(lines)
        typing.write("late\n")
        typing.flush()
        old.join()
        typing.write("next\n")
        typing.flush()
        assert took == ["left"] and lines.take(threading.Event()) == "next\n"


def test_a_line_kept_for_a_question_left_before_it_took_it_answers_nothing() -> None:
    """The line read for a left question was kept for the prompt asked since, and that question was left too before
    it took the line (review helper-155): the line stayed, and answered the question asked after, at once, though
    the person typed it for one no longer asked."""
    read_end, write_end = os.pipe()
    with os.fdopen(read_end) as inp, os.fdopen(write_end, "w") as typing:
        lines = Lines(inp)
        old, took = left_reading(lines)
        second, answered = threading.Event(), list[str]()
        new = threading.Thread(target=_take, args=(lines, second, answered))
        new.start()
        with lines.changed:
            lines.changed.wait_for(lambda: lines.waiting == 1)  # the second prompt waits
        second.set()  # left, not woken: it looks again when the line read for the first is handed over
        typing.write("for the second\n")
        typing.flush()
        old.join()
        new.join()
        typing.write("for the third\n")
        typing.flush()
        assert took == ["left"] and answered == ["left"]
        assert lines.take(threading.Event()) == "for the third\n"


def test_a_number_field_takes_only_a_finite_number() -> None:
    """`nan`, `inf` and `1e999` were taken as numbers (review helper-151): the client sent null (JSON has no such
    number), and the server's refusal read "got None", the person never told what was wrong with what they typed."""
    out, inp = io.StringIO(), io.StringIO("nan\ninf\n1e999\n-Infinity\n2.5\n")
    schema = {"type": "object", "properties": {"ratio": {"type": "number"}}, "required": ["ratio"]}
    assert TerminalAsker(out, inp).elicit("Which ratio?", schema) == {"action": "accept", "content": {"ratio": 2.5}}
    assert out.getvalue().count("give a finite number") == 4, out.getvalue()


def test_a_prompt_the_terminal_does_not_take_holds_up_no_one_else() -> None:
    """The prompt was written holding the reader's lock (review helper-155): while stderr took no output (a paused
    pipe), waking the questions to look, which the client does on its event loop when a job stops asking, waited
    for the write, and so did every other question."""
    read_end, write_end = os.pipe()
    with os.fdopen(read_end) as inp, os.fdopen(write_end, "w") as typing:
        lines = Lines(inp)
        showing, shown = threading.Event(), threading.Event()

        def stuck_prompt() -> None:
            showing.set()
            shown.wait()

        left, took = threading.Event(), list[str]()
        asking = threading.Thread(target=_take, args=(lines, left, took), kwargs={"prompt": stuck_prompt})
        asking.start()
        try:
            assert showing.wait(10)
            woken = threading.Thread(target=lines.wake)
            woken.start()
            woken.join(10)
            assert not woken.is_alive(), "wake() waited for a prompt the terminal did not take"
        finally:
            left.set()
            shown.set()
            asking.join(10)
        assert took == ["left"]
        typing.write("typed after\n")
        typing.flush()
        assert lines.take(threading.Event()) == "typed after\n" and not lines.waiting
