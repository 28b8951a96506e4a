"""`vibe-jobs call`'s questions at the terminal: what a job asks (a tool's or an upstream's words) is shown escaped,
so its escape sequences do not drive the operator's terminal (clear the screen, set its title)."""

from __future__ import annotations

import io

from vibe_jobs.cli.ask import TerminalAsker

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
