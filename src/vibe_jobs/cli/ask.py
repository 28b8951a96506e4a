"""`vibe-jobs call` asks the person at the terminal what a job asks (elicitation), or for the model's reply
(sampling): the answers go back through `vibe_jobs.client.call_and_wait`'s `on_elicit` / `on_sample`.

Prompts go to stderr and answers are read a line at a time from stdin (the terminal, or a pipe). An empty
line takes a field's default; a multi-select field (an array of choices) takes its choices comma separated;
`!decline` declines the question, end of input cancels it. A question the job stops asking while the person is
at its prompt (it timed out, was answered elsewhere, the job ended) is left (`vibe_jobs.client.answer_job` cancels
it), and the line typed next goes to what is asked next: every question reads its lines through one reader of
the input (`Lines`), not a thread of its own that went on reading for a question nobody asked any more.
"""

from __future__ import annotations

import json
import math
import sys
import threading
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, TextIO, TypeVar

import anyio
import anyio.to_thread

from vibe_jobs.tools.printable import printable_lines

DECLINE = "!decline"
T = TypeVar("T")
YES, NO = {"y", "yes", "true", "1"}, {"n", "no", "false", "0"}


class Refused(Exception):
    """The person declined (or input ended)."""

    def __init__(self, action: str) -> None:
        super().__init__(action)
        self.action = action


class Left(Exception):
    """The question was left (its asker cancelled): its thread stops at its next line."""


class Lines:
    """The lines of one input, read by one thread at a time and taken in turn: a line read for a question that was
    left meanwhile goes to the question asked since, whose prompt waits for it (two threads each reading the
    terminal gave a typed line to either), and is dropped when none waits (typed for no question shown)."""

    def __init__(self, inp: TextIO) -> None:
        self.inp = inp
        self.ready: deque[str] = deque()
        self.reading = self.ended = False
        self.waiting = 0  # prompts waiting for the line being read
        self.changed = threading.Condition()

    def take(self, left: threading.Event, prompt: Callable[[], object] | None = None) -> str:
        """The next line ('' once input ended), after `prompt()` (shown once this waits: a line typed at it is this
        one's); raises Left once `left` is set (`wake` wakes it to look)."""
        with self.changed:
            self.waiting += 1  # before the prompt shows: a line read from then on may be this one's
        try:
            if prompt is not None:
                prompt()  # not under the lock: a terminal that takes no output holds up only this question
        except BaseException:
            with self.changed:
                self.waiting -= 1
                if not self.waiting:  # a line kept for this prompt, which never showed: typed for none shown
                    self.ready.clear()
            raise
        with self.changed:
            try:
                while self.reading and not self.ready and not left.is_set():
                    self.changed.wait()
            finally:
                self.waiting -= 1
            if left.is_set():
                if not self.waiting:  # a line kept for this prompt, left before it took it: typed for none shown
                    self.ready.clear()
                raise Left
            if self.ready or self.ended:
                return self.ready.popleft() if self.ready else ""
            self.reading = True
        text: str | None = None
        try:
            text = self.inp.readline()
        finally:  # one step: a waiter woken before the line is kept would read past it
            with self.changed:
                self.reading, self.ended = False, text == ""
                self.changed.notify_all()
                gone = left.is_set()
                if gone and text and self.waiting:  # read for a question left meanwhile: the one asked since
                    self.ready.append(text)
        if gone:
            raise Left
        return text

    def wake(self) -> None:
        with self.changed:
            self.changed.notify_all()


_lines: weakref.WeakKeyDictionary[TextIO, Lines] = weakref.WeakKeyDictionary()


def lines_of(inp: TextIO) -> Lines:
    """The one reader of `inp` for every question asked in this process."""
    if (found := _lines.get(inp)) is None:
        found = _lines[inp] = Lines(inp)
    return found


class TerminalAsker:
    def __init__(self, out: TextIO | None = None, inp: TextIO | None = None) -> None:
        self.out, self.inp = out or sys.stderr, inp or sys.stdin
        self.lines, self.left = lines_of(self.inp), threading.Event()

    async def on_elicit(self, message: str, schema: dict[str, Any]) -> dict[str, Any]:
        return await self._asking(lambda asker: asker.elicit(message, schema))

    async def on_sample(self, params: dict[str, Any]) -> dict[str, Any] | str:
        return await self._asking(lambda asker: asker.sample(params))

    async def _asking(self, ask: Callable[[TerminalAsker], T]) -> T:
        """Run `ask` (it reads the terminal) in a thread, with an asker of its own; cancelled, the question is
        left: its thread takes no further line, and the person is told."""
        asker = TerminalAsker(self.out, self.inp)  # its `left` is this question's alone
        try:
            return await anyio.to_thread.run_sync(ask, asker, abandon_on_cancel=True)
        except anyio.get_cancelled_exc_class():
            asker.left.set()
            self.lines.wake()
            self.say("\n  (the job no longer waits for this answer)")
            raise

    def elicit(self, message: str, schema: Mapping[str, Any]) -> dict[str, Any]:
        self.say(f"\nThe job asks: {message}  ({DECLINE} declines)")
        required = set(schema.get("required") or ())
        try:
            content = {}
            for name, prop in (schema.get("properties") or {}).items():
                value = self.field(name, prop, name in required)
                if value is not None:
                    content[name] = value
        except Refused as exc:
            return {"action": exc.action}
        return {"action": "accept", "content": content}

    def sample(self, params: Mapping[str, Any]) -> dict[str, Any] | str:
        self.say("\nThe job asks for a model reply (sampling):")
        if params.get("systemPrompt"):
            self.say(f"  system: {params['systemPrompt']}")
        for message in params.get("messages") or ():
            self.say(f"  {message.get('role')}: {shown_content(message.get('content'))}")
        try:
            return self.line("reply: ")
        except Refused as exc:
            return {"action": exc.action}

    def field(self, name: str, prop: Mapping[str, Any], required: bool) -> Any:
        kind, default = prop.get("type"), prop.get("default")
        choices = choices_of(prop.get("items") if kind == "array" else prop)
        hint = "y/n" if kind == "boolean" else "|".join(map(str, choices)) if choices else kind
        if kind == "array":
            hint = f"any of {hint}, comma separated"
        shown = f" [{default}]" if default is not None else ""
        while True:
            text = self.line(f"  {prop.get('title') or name} ({hint}){shown}: ")
            if not text:
                if default is not None or not required:
                    return default
                self.say("  an answer is required")
                continue
            try:
                return convert(text, kind, choices)
            except ValueError as exc:
                self.say(f"  {exc}")

    def line(self, prompt: str) -> str:
        def show() -> None:
            self.out.write(printable_lines(prompt))
            self.out.flush()

        text = self.lines.take(self.left, show)
        if not text:
            raise Refused("cancel")
        if text.strip() == DECLINE:
            raise Refused("decline")
        return text.strip()

    def say(self, text: str) -> None:
        """A line to the operator's terminal: what the job asks (the tool's or an upstream's words) escaped."""
        self.out.write(printable_lines(text) + "\n")
        self.out.flush()


def choices_of(prop: Any) -> list[Any]:
    """The values a field (or a multi-select's items) may take: its enum, or the consts of its oneOf / anyOf."""
    if not isinstance(prop, Mapping):
        return []
    options = prop.get("oneOf") or prop.get("anyOf") or ()
    return list(prop.get("enum") or [o.get("const") for o in options if isinstance(o, Mapping) and "const" in o])


def shown_content(content: Any) -> str:
    """A sampling message's content as the terminal shows it: a block's text, each block of a list in turn."""
    blocks = content if isinstance(content, list) else [content]
    shown = [b["text"] if isinstance(b, Mapping) and isinstance(b.get("text"), str) else json.dumps(b) for b in blocks]
    return "\n    ".join(shown)


def convert(text: str, kind: Any, choices: list[Any]) -> Any:
    if kind == "array":
        picked = [part.strip() for part in text.split(",") if part.strip()]
        if choices and any(p not in choices for p in picked):
            raise ValueError(f"choose from {', '.join(map(str, choices))}, comma separated")
        return picked
    if kind == "boolean":
        if text.lower() in YES | NO:
            return text.lower() in YES
        raise ValueError("answer y or n")
    value: Any = int(text) if kind == "integer" else float(text) if kind == "number" else text
    if kind == "number" and not math.isfinite(value):  # JSON has none: the client sent null, refused as "got None"
        raise ValueError("give a finite number")
    if choices and value not in choices:
        raise ValueError(f"choose one of {', '.join(map(str, choices))}")
    return value
