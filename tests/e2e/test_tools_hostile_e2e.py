"""The built-in tools against hostile file trees and children, over the real server in both protocol eras.

What a file name, a file's content or a command's fate can do to the answer a person or an agent reads:
the Markdown map must stay the map (no name or signature closes its code span and turns into HTML or a
link), `.gitignore` and `exclude` must hide what they name whatever bytes the name holds, and a command's
summary must say how it ended.
"""

from __future__ import annotations

import json
import os
import sys
import time
import unicodedata
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import MODES, ROOT, on_a_terminal
from tests.e2e.test_builtin_tools import _serve_stdio_and_close, finish, server, write_tree
from tests.e2e.test_jobs_e2e import read, start, texts

pytestmark = [pytest.mark.timeout(90), pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux")]

HTML = "<img src=x onerror=alert(1)>"


def write_bytes(root: Path, rel: bytes, data: bytes) -> None:
    path = os.path.join(os.fsencode(root), rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as file:
        file.write(data)


async def mapped(mode: str, root: Path, **args: Any) -> tuple[str, dict[str, Any]]:
    """Map `root` to its end: (the Markdown text, the structured map)."""
    async with server(mode, root) as client:
        job_id = await start(client, "map-codebase", {"path": str(root), **args})
        result, body = await finish(client, job_id)
    assert body["status"] == "completed", texts(result)
    return texts(result), body["result"]["structuredContent"]


@pytest.mark.parametrize("mode", MODES)
async def test_no_file_name_or_signature_breaks_out_of_the_markdown_map(mode: str, tmp_path: Path) -> None:
    """A name or a signature holding backticks closed its one-backtick (or two-backtick) code span, and what
    followed was read as Markdown: raw HTML, a link or an image (a tracking pixel) in the rendered map. So was a
    file name in a diagnostic line, which had no code span at all."""
    root = tmp_path / "root"
    write_tree(
        root,
        {
            f"tick`` {HTML} ``.py": "def e():\n    pass\n",
            "sig.py": f'def g(a="`` {HTML} ``"):\n    pass\n',
            f"{HTML}.py": "def broken(:\n",
            "![pixel](http:evil.example)": "",
        },
    )
    text, code_map = await mapped(mode, root)
    assert f"### ``` tick`` {HTML} ``.py ``` (Python, 2 lines)" in text, text
    assert f"- ``` def g(a='`` {HTML} ``') ``` L1" in text, text
    diagnostic = next(line for line in text.splitlines() if "syntax error" in line)
    assert diagnostic.startswith(f"- `{HTML}.py: syntax error") and diagnostic.endswith("`"), diagnostic
    assert "### `![pixel](http:evil.example)` (other, 0 lines)" in text, text
    assert f"\n# Code map of `{root}`\n" in text, text
    assert len(code_map["files"]) == 4


@pytest.mark.parametrize("mode", MODES)
async def test_gitignore_and_exclude_hide_names_holding_a_newline(mode: str, tmp_path: Path) -> None:
    """`secret/**` (and `**` alone) matched a name up to a newline only: `secret/a\\nb.py` was mapped and listed,
    its name and symbols shown, though the .gitignore (or the exclude glob) named its whole folder."""
    root = tmp_path / "root"
    write_tree(root, {".gitignore": "secret/**\n", "keep.py": "def kept():\n    pass\n"})
    write_bytes(root, b"secret/a\nb.py", b"def hidden():\n    pass\n")
    write_bytes(root, b"private/c\nd.py", b"def also_hidden():\n    pass\n")
    write_tree(root, {"nested/.gitignore": "**\n"})
    write_bytes(root, b"nested/e\nf.py", b"def nested_hidden():\n    pass\n")
    text, code_map = await mapped(mode, root, exclude=["private/**"])
    assert [entry["path"] for entry in code_map["files"]] == [".gitignore", "keep.py"], code_map["files"]
    assert "hidden" not in text, text


@pytest.mark.parametrize("mode", MODES)
async def test_a_command_killed_by_a_signal_says_so_not_exit_code_none(mode: str, tmp_path: Path) -> None:
    """A command that died of a signal completed with the text "`sh -c ...` exited with code None"."""
    async with server(mode, tmp_path, allowed="sh") as client:
        job_id = await start(client, "run-command", {"command": ["sh", "-c", "echo bye; kill -9 $$"]})
        result, body = await finish(client, job_id)
    assert body["status"] == "completed", texts(result)
    outcome = body["result"]["structuredContent"]
    assert (outcome["exitCode"], outcome["signal"]) == (None, 9)
    summary = texts(result).split("\n")[1]
    assert summary.startswith("`sh -c echo bye; kill -9 $$` was killed by signal 9 (SIGKILL) after "), summary
    assert "None" not in summary


@pytest.mark.parametrize("mode", MODES)
async def test_a_command_s_output_stays_output_in_the_markdown_of_its_result(mode: str, tmp_path: Path) -> None:
    """The output's tails were put in the result's text as they were: a client that renders Markdown showed a
    command's `# heading`, links and raw HTML (a tracking pixel) as such, and output holding a fence of its own
    could not be fenced by three backticks."""
    printed = f"# not a heading\n```\n{HTML}\n![pixel](http:evil.example)\n"
    async with server(mode, tmp_path, allowed="printf") as client:
        job_id = await start(client, "run-command", {"command": ["printf", "%s", printed]})
        result, body = await finish(client, job_id)
    assert body["status"] == "completed", texts(result)
    text = texts(result)
    assert f"stdout (tail):\n````\n{printed}````\n\nstderr (tail):\n```\n```" in text, text
    assert body["result"]["structuredContent"]["stdoutTail"] == printed


async def test_a_source_file_with_a_late_nul_byte_gets_a_diagnostic_without_a_line_none(tmp_path: Path) -> None:
    """A NUL past the binary sniff (8 KiB) reached the parser, whose error has no line: "syntax error at line
    None: source code string cannot contain null bytes"."""
    root = tmp_path / "root"
    write_bytes(root, b"late.py", b"def f():\n    pass\n" + b"#" * 9000 + b"\0\n")
    _, code_map = await mapped("auto", root)
    assert code_map["diagnostics"] == ["late.py: syntax error: source code string cannot contain null bytes"]


@pytest.mark.parametrize("mode", MODES)
async def test_progress_redrawn_with_carriage_returns_becomes_the_job_s_message(mode: str, tmp_path: Path) -> None:
    """Progress drawn in place (`\\r`, as git, pip, curl and tqdm draw it) was no line end: the job's message kept
    "started sh" for the whole run, and 64 KiB of redraws later became one line beginning with the oldest."""
    script = "printf 'step 1\\r'; printf 'step 2\\r'; exec sleep 30"
    async with server(mode, tmp_path, allowed="sh") as client:
        job_id = await start(client, "run-command", {"command": ["sh", "-c", script]})
        deadline = time.monotonic() + 15
        _, body = await read(client, job_id, waitSeconds=0.2)
        while body.get("message") != "step 2" and time.monotonic() < deadline:
            _, body = await read(client, job_id, waitSeconds=0.2)
        await client.call_tool("cancel-job", {"jobId": job_id})
        _, ended = await finish(client, job_id)
    assert body.get("message") == "step 2", body.get("message")
    assert ended["details"]["diagnostics"][:2] == ["stdout: step 1", "stdout: step 2"], ended["details"]


def test_a_root_that_is_a_symbolic_link_loop_stops_start_up_naming_the_variable(tmp_path: Path) -> None:
    """`VIBE_JOBS_ROOTS` naming a link to itself stopped `serve` with a traceback ("RuntimeError: Symlink loop")."""
    (tmp_path / "loop").symlink_to("loop")
    done = _serve_stdio_and_close({"VIBE_JOBS_ROOTS": str(tmp_path / "loop")})
    assert done.returncode == 2 and done.stdout == "", done.stderr
    assert "VIBE_JOBS_ROOTS=" in done.stderr and "is not a directory" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr


# --- `vibe-jobs call` on a terminal ---------------------------------------------------------------


def call_on_a_terminal(root: Path, *call_args: str, columns: int = 60) -> tuple[int, bytes]:
    """Run `vibe-jobs call` (which starts the real server over stdio) with stdout and stderr on a terminal:
    its exit code and all it drew there."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src"),
        "VIBE_JOBS_LOG_LEVEL": "warning",
        "VIBE_JOBS_STORE": "memory://",
        "VIBE_JOBS_ROOTS": str(root),
        "VIBE_JOBS_ALLOWED_COMMANDS": "printf,sh",
        "COLUMNS": str(columns),
    }
    return on_a_terminal([sys.executable, "-m", "vibe_jobs", "call", *call_args], root, env, quiet=40)


def test_a_result_s_tabs_reach_the_terminal_as_tabs(tmp_path: Path) -> None:
    """On a terminal the result was escaped whole, tabs too: `git status` read `\\tmodified:   README.md`."""
    command = json.dumps({"command": ["printf", "\\tmodified:   README.md\\n\\x1b]0;PWNED\\x07"]})
    code, seen = call_on_a_terminal(tmp_path, "run-command", "--json", command)
    assert code == 0, seen
    assert b"stdout (tail):\r\n```\r\n\tmodified:   README.md\r\n" in seen, seen
    assert b"\x1b]0;" not in seen and b"\x07" not in seen, seen


def test_the_bar_fits_the_terminal_when_the_message_is_wide_characters(tmp_path: Path) -> None:
    """The bar was cut to the terminal's width in characters, but a CJK character takes two columns: the bar
    wrapped, and each redraw (which clears one line) left a line behind."""
    wide = "漢字" * 30
    code, seen = call_on_a_terminal(
        tmp_path, "run-command", "--json", json.dumps({"command": ["sh", "-c", f"echo {wide}; sleep 2"]})
    )
    assert code == 0, seen
    bars = [drawn.decode() for drawn in seen.split(b"\r\x1b[K") if drawn.startswith(b"[")]
    drawn = [bar for bar in bars if "漢" in bar]
    assert drawn, bars
    assert all(columns(bar) <= 59 for bar in drawn), [columns(bar) for bar in drawn]
    assert all(columns(bar) >= 58 for bar in drawn), [columns(bar) for bar in drawn]  # cut, not dropped


def columns(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


@pytest.mark.parametrize("mode", MODES)
async def test_a_long_poll_begins_with_the_job_s_last_line(mode: str, tmp_path: Path) -> None:
    """A long-poll told only of changes after it began: a command that printed "compiling" and then worked in
    silence showed `vibe-jobs call` (which follows by long-poll) no message and no stage until it ended."""
    notes: list[str | None] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        notes.append(message)

    async with server(mode, tmp_path, allowed="sh") as client:
        job_id = await start(client, "run-command", {"command": ["sh", "-c", "echo compiling; exec sleep 30"]})
        deadline = time.monotonic() + 15
        _, body = await read(client, job_id, waitSeconds=0.2)
        while body.get("message") != "compiling" and time.monotonic() < deadline:
            _, body = await read(client, job_id, waitSeconds=0.2)
        args = {"jobId": job_id, "waitSeconds": 1}
        await client.call_tool("get-job-result", args, progress_callback=on_progress)
        await client.call_tool("cancel-job", {"jobId": job_id})
    assert body.get("message") == "compiling", body
    assert notes and notes[0] == "[running] compiling", notes


async def test_a_gitignore_saved_with_a_byte_order_mark_hides_its_first_pattern(tmp_path: Path) -> None:
    """Git skips a UTF-8 byte order mark at the start of a .gitignore (as Windows editors save it); the map read
    it as part of the first pattern, so `secret/` hid nothing and its files were mapped."""
    root = tmp_path / "root"
    write_bytes(root, b".gitignore", b"\xef\xbb\xbfsecret/\n*.log\n")
    write_tree(root, {"secret/keys.py": "def private():\n    pass\n", "app.py": "def public():\n    pass\n"})
    _, code_map = await mapped("legacy", root)
    assert [entry["path"] for entry in code_map["files"]] == [".gitignore", "app.py"], code_map["files"]


async def test_links_to_special_files_and_link_loops_are_counted_as_what_they_are(tmp_path: Path) -> None:
    """A link to a FIFO or a device was counted as a "broken-symlink", and a link loop as a "special" file."""
    root = tmp_path / "root"
    write_tree(root, {"app.py": "def public():\n    pass\n"})
    os.mkfifo(root / "pipe.py")
    (root / "to-pipe.py").symlink_to("pipe.py")
    (root / "to-null.py").symlink_to(os.devnull)
    (root / "loop.py").symlink_to("loop.py")
    (root / "dangling.py").symlink_to("missing.py")
    _, code_map = await mapped("auto", root)
    assert [entry["path"] for entry in code_map["files"]] == ["app.py"], code_map["files"]
    assert code_map["skipped"] == {"broken-symlink": 2, "special": 3}, code_map["skipped"]


async def test_a_gitignore_that_cannot_be_read_is_named_with_the_reason_in_words(tmp_path: Path) -> None:
    """The diagnostic gave the skip counter's name: "cannot read sub/.gitignore: special"."""
    root = tmp_path / "root"
    write_tree(root, {"app.py": "", "big/.gitignore": "x\n" * 600_000, "link/app.py": ""})
    os.mkfifo(root / "app.py.fifo")
    (root / "fifo").mkdir()
    os.mkfifo(root / "fifo" / ".gitignore")
    (root / "link" / ".gitignore").symlink_to(tmp_path / "outside")
    (tmp_path / "outside").write_text("*\n")
    _, code_map = await mapped("auto", root)
    assert sorted(code_map["diagnostics"]) == [
        "cannot read big/.gitignore: larger than 1,048,576 bytes",
        "cannot read fifo/.gitignore: not a regular file",
        "cannot read link/.gitignore: a link out of the allowed roots",
    ], code_map["diagnostics"]
