"""`map-codebase` logic: walking (gitignore, skips, symlinks, caps), the driver, rendering."""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

from vibe_jobs.tools.codemap import CodeMap, map_codebase, render_markdown
from vibe_jobs.tools.codemap import mapper as mapper_module
from vibe_jobs.tools.codemap.walk import PatternSet, Walker


def _write(root: Path, files: dict[str, str | bytes]) -> None:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


def _walk(root: Path, roots: Sequence[Path] | None = None, **options: Any) -> list[str]:
    return [rel for _, rel in Walker(root, roots=roots or [root], **options).walk().files]


@dataclass
class Recorder:
    """Collects what `map_codebase` reports; `fail_at` makes the n-th checkpoint raise.

    `after_scan` runs once the walk is done and before any file is read: what an attacker who
    swaps part of the tree at that moment does.
    """

    fail_at: int | None = None
    after_scan: Callable[[], None] | None = None
    reports: list[tuple[float, str, float]] = field(default_factory=list)
    diagnostics: list[str] = field(default_factory=list)
    checkpoints: int = 0

    async def report(self, percent: float, message: str, *, stage: str, sub_progress: float) -> None:
        self.reports.append((percent, stage, sub_progress))
        if stage == "scan" and sub_progress == 100 and self.after_scan is not None:
            self.after_scan()

    async def checkpoint(self) -> None:
        self.checkpoints += 1
        if self.checkpoints == self.fail_at:
            raise Cancelled

    def diagnostic(self, message: str) -> None:
        self.diagnostics.append(message)


class Cancelled(Exception):
    """Stands in for the job runner's cancellation exception."""


async def _map(root: Path, recorder: Recorder | None = None, **options: Any) -> CodeMap:
    rec = recorder or Recorder()
    return await map_codebase(
        root,
        roots=options.pop("roots", [root]),
        report=rec.report,
        checkpoint=rec.checkpoint,
        diagnostic=rec.diagnostic,
        **options,
    )


# --- gitignore patterns -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "path", "is_dir", "expected"),
    [
        ("*.log", "a/b/x.log", False, True),
        ("*.log", "x.txt", False, None),
        ("/top.txt", "top.txt", False, True),
        ("/top.txt", "sub/top.txt", False, None),
        ("logs/", "a/logs", True, True),
        ("logs/", "a/logs", False, None),
        ("docs/*.md", "docs/a.md", False, True),
        ("docs/*.md", "docs/sub/a.md", False, None),
        ("a/**/z.py", "a/z.py", False, True),
        ("a/**/z.py", "a/b/c/z.py", False, True),
        ("**/gen", "x/y/gen", True, True),
        ("out/**", "out/a/b.c", False, True),
        ("out/**", "out", True, None),
        ("file?.c", "file1.c", False, True),
        ("file?.c", "file10.c", False, None),
        ("[ab].txt", "b.txt", False, True),
        ("[!ab].txt", "b.txt", False, None),
        ("\\#hash", "#hash", False, True),
        ("*a*b", "xayb", False, True),
        ("*a*b", "ab", False, True),
        ("*a*b", "ba", False, None),
        ("*a*b", "a/b", False, None),
        ("a*b*c", "abbbc", False, True),
        ("a**b", "azzb", False, True),
        ("**/a*b*", "x/y/azbz", False, True),
        ("[z-a].txt", "[z-a].txt", False, True),
        ("[[x].txt", "[.txt", False, True),
        ("[!a]", "/", False, None),
        ("# comment", "# comment", False, None),
    ],
)
def test_gitignore_pattern_semantics(pattern: str, path: str, is_dir: bool, expected: bool | None) -> None:
    assert PatternSet.parse([pattern]).match(path, is_dir) is expected


def test_gitignore_last_match_wins_and_negation() -> None:
    patterns = PatternSet.parse(["*.log", "!keep.log", "keep.log.d/"])
    assert patterns.match("x.log", False) is True
    assert patterns.match("keep.log", False) is False
    assert PatternSet.parse(["!keep.log", "*.log"]).match("keep.log", False) is True


def test_walk_honours_root_and_nested_gitignore(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            ".gitignore": "*.log\n!keep.log\n/secret.py\ngenerated/\n",
            "a.py": "",
            "debug.log": "",
            "keep.log": "",
            "secret.py": "",
            "pkg/secret.py": "",
            "pkg/generated/x.py": "",
            "pkg/.gitignore": "*.tmp\n!important.log\n",
            "pkg/data.tmp": "",
            "pkg/important.log": "",
            "pkg/other.log": "",
            "top.tmp": "",
        },
    )
    walked = Walker(tmp_path, roots=[tmp_path]).walk()
    assert sorted(rel for _, rel in walked.files) == [
        ".gitignore",
        "a.py",
        "keep.log",
        "pkg/.gitignore",
        "pkg/important.log",
        "pkg/secret.py",
        "top.tmp",
    ]
    assert walked.skipped["gitignored"] == 5


def test_walk_skips_tool_folders_virtualenvs_and_binaries(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "main.py": "",
            ".git/config": "",
            "node_modules/lib/index.js": "",
            "__pycache__/main.cpython-311.pyc": "",
            "build/out.py": "",
            "target/debug/x.rs": "",
            ".venv/lib/x.py": "",
            "myenv/pyvenv.cfg": "home = /usr",
            "myenv/lib/site.py": "",
            "logo.png": "not really a png",
        },
    )
    walked = Walker(tmp_path, roots=[tmp_path]).walk()
    assert [rel for _, rel in walked.files] == ["main.py"]
    assert walked.skipped == {"vcs": 1, "dependencies": 1, "cache": 1, "build": 2, "virtualenv": 2, "binary": 1}


def test_include_and_exclude_globs(tmp_path: Path) -> None:
    _write(tmp_path, {"src/a.py": "", "src/b.ts": "", "src/gen/c.py": "", "tests/t.py": "", "README.md": ""})
    assert _walk(tmp_path, include=["*.py"]) == ["src/a.py", "src/gen/c.py", "tests/t.py"]
    assert _walk(tmp_path, include=["src/"], exclude=["gen/"]) == ["src/a.py", "src/b.ts"]
    assert _walk(tmp_path, exclude=["*.md", "/tests"]) == ["src/a.py", "src/b.ts", "src/gen/c.py"]


def test_symlinks_followed_inside_roots_only(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    _write(root, {"real/inner.py": "", "target.py": ""})
    _write(outside, {"leak.py": "", "dir/leak2.py": ""})
    (root / "alias.py").symlink_to(root / "target.py")
    (root / "zlinkdir").symlink_to(root / "real", target_is_directory=True)
    (root / "escape.py").symlink_to(outside / "leak.py")
    (root / "escape_dir").symlink_to(outside / "dir", target_is_directory=True)
    (root / "dangling.py").symlink_to(root / "missing.py")
    walked = Walker(root, roots=[root]).walk()
    assert [rel for _, rel in walked.files] == ["alias.py", "target.py", "real/inner.py"]
    assert walked.skipped == {"symlink-outside-roots": 2, "already-visited": 1, "broken-symlink": 1}
    # With both directories allowed, the escaping links are followed.
    both = _walk(root, roots=[root, outside])
    assert "escape.py" in both
    assert "escape_dir/leak2.py" in both


def test_symlink_loop_terminates(tmp_path: Path) -> None:
    _write(tmp_path, {"a/b/file.py": ""})
    (tmp_path / "a" / "b" / "loop").symlink_to(tmp_path / "a", target_is_directory=True)
    (tmp_path / "a" / "self").symlink_to(tmp_path / "a" / "self")
    walked = Walker(tmp_path, roots=[tmp_path]).walk()
    assert [rel for _, rel in walked.files] == ["a/b/file.py"]
    assert walked.skipped["already-visited"] == 1


# --- the driver ---------------------------------------------------------------------------------


async def test_map_codebase_collects_files_languages_and_progress(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "app.py": "class A:\n    def m(self): pass\n\ndef f(): pass\n",
            "web/ui.ts": "export function render(): void {}\nexport interface P {}\n",
            "README.md": "# hi\n",
            "data.bin.txt": b"text\0with nul",
        },
    )
    recorder = Recorder()
    code_map = await _map(tmp_path, recorder)
    assert [(f.path, f.language, f.lines) for f in code_map.files] == [
        ("README.md", "Markdown", 1),
        ("app.py", "Python", 4),
        ("web/ui.ts", "TypeScript", 2),
    ]
    assert code_map.languages["Python"].model_dump() == {"files": 1, "lines": 4, "symbols": 3}
    assert code_map.languages["TypeScript"].symbols == 2
    assert code_map.skipped == {"binary": 1}
    assert (code_map.total_files, code_map.truncated, code_map.diagnostics) == (3, False, [])
    stages = [stage for _, stage, _ in recorder.reports]
    assert stages[0] == "scan"
    assert stages[-1] == "parse"
    assert recorder.reports[-1] == (95.0, "parse", 100.0)
    percents = [percent for percent, _, _ in recorder.reports]
    assert percents == sorted(percents)


async def test_a_map_works_in_the_jobs_threads_when_the_servers_are_all_taken(tmp_path: Path) -> None:
    """Given the job's threads (`JobContext.threads`), a map never waits for anyio's default pool, which the
    server's own blocking work shares (every token of it borrowed here)."""
    _write(tmp_path, {"app.py": "def f(): pass\n"})
    default = anyio.to_thread.current_default_thread_limiter()
    holders = [object() for _ in range(int(default.total_tokens))]
    for holder in holders:
        default.acquire_on_behalf_of_nowait(holder)
    try:
        with anyio.fail_after(10):
            code_map = await _map(tmp_path, threads=anyio.CapacityLimiter(1))
    finally:
        for holder in holders:
            default.release_on_behalf_of(holder)
    assert [f.path for f in code_map.files] == ["app.py"]


async def test_reports_are_throttled_on_many_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path, {f"m{i}.py": f"def f{i}(): pass\n" for i in range(500)})
    monkeypatch.setattr(mapper_module, "BATCH_FILES", 1)
    monkeypatch.setattr(mapper_module, "REPORT_INTERVAL", 3600.0)
    recorder = Recorder()
    code_map = await _map(tmp_path, recorder)
    assert code_map.total_files == 500
    parse_reports = [r for r in recorder.reports if r[1] == "parse"]
    assert recorder.checkpoints >= 500
    assert len(parse_reports) <= 86  # at most one per percent of the 10..95 range (+ the final one)


async def test_max_files_caps_and_notes_it(tmp_path: Path) -> None:
    _write(tmp_path, {f"f{i:02}.py": "x = 1\n" for i in range(10)})
    recorder = Recorder()
    code_map = await _map(tmp_path, recorder, max_files=4)
    assert [f.path for f in code_map.files] == ["f00.py", "f01.py", "f02.py", "f03.py"]
    assert (code_map.truncated, code_map.max_files) == (True, 4)
    assert any("maxFiles=4" in message for message in code_map.diagnostics)
    assert recorder.diagnostics == code_map.diagnostics
    assert (await _map(tmp_path, max_files=10)).truncated is False


async def test_cancellation_from_checkpoint_propagates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path, {f"f{i:02}.py": "x = 1\n" for i in range(20)})
    analysed: list[str] = []
    original = mapper_module.analyse_file

    def counting(path: str, rel: str, roots: Sequence[Path]) -> mapper_module.FileOutcome:
        analysed.append(rel)
        return original(path, rel, roots)

    monkeypatch.setattr(mapper_module, "analyse_file", counting)
    monkeypatch.setattr(mapper_module, "BATCH_FILES", 1)
    recorder = Recorder(fail_at=6)  # one checkpoint after the scan, then one per (one-file) batch
    with pytest.raises(Cancelled):
        await _map(tmp_path, recorder)
    assert 0 < len(analysed) < 20


async def test_unreadable_and_unparsable_files_become_diagnostics(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "looped.py": "x = 1\n",
            "broken.py": "def f(:\n    pass\n",
            "latin.js": b"var s = '\xe9';\n",
            "regex.py": 'import re\nPAT = "\\d+"\n\ndef g(): pass\n',
            "ok.py": "def h(): pass\n",
        },
    )

    def loop() -> None:  # found as a file, then it became a symbolic link to itself
        (tmp_path / "looped.py").unlink()
        (tmp_path / "looped.py").symlink_to(tmp_path / "looped.py")

    recorder = Recorder(after_scan=loop)
    code_map = await _map(tmp_path, recorder)
    assert [f.path for f in code_map.files] == ["broken.py", "latin.js", "ok.py", "regex.py"]
    assert code_map.skipped == {"unreadable": 1}
    broken = code_map.files[0]
    assert (broken.lines, broken.symbols) == (2, [])
    assert [f.symbols[0].name for f in code_map.files[2:]] == ["h", "g"]
    assert sorted(code_map.diagnostics) == sorted(recorder.diagnostics)
    assert sorted(code_map.diagnostics) == [
        "broken.py: syntax error at line 1: invalid syntax",
        "latin.js: not valid UTF-8 (byte 9)",
        "looped.py: cannot read: Too many levels of symbolic links",
    ]


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can read anything")
async def test_permission_denied_file_is_a_diagnostic(tmp_path: Path) -> None:
    _write(tmp_path, {"locked.py": "x = 1\n"})
    (tmp_path / "locked.py").chmod(0)
    code_map = await _map(tmp_path)
    assert code_map.files == []
    assert code_map.diagnostics == ["locked.py: cannot read: Permission denied"]


# --- rendering and the wire format --------------------------------------------------------------


async def test_render_lists_table_and_symbols(tmp_path: Path) -> None:
    _write(tmp_path, {"app.py": "class A:\n    def m(self, x: int) -> int: ...\n", "b.go": "func Run() {}\n"})
    text = render_markdown(await _map(tmp_path))
    assert "| Python | 1 | 2 | 2 |" in text
    assert "| Go | 1 | 1 | 1 |" in text
    assert "### `app.py` (Python, 2 lines)\n- `class A` L1\n  - `def m(self, x: int) -> int` L2\n" in text
    assert "- `func Run()` L1" in text
    assert "omitted" not in text


async def test_render_caps_output_and_says_what_was_cut(tmp_path: Path) -> None:
    _write(tmp_path, {f"mod{i:03}.py": "".join(f"def fn_{j}(): pass\n" for j in range(20)) for i in range(50)})
    code_map = await _map(tmp_path)
    text = render_markdown(code_map, max_chars=4000)
    assert len(text) <= 4000
    shown = text.count("### `mod")
    assert 0 < shown < 50
    assert f"{50 - shown:,} of 50 files omitted" in text
    assert len(render_markdown(code_map, max_chars=10_000_000)) > 4000


async def test_wire_format_uses_camel_case(tmp_path: Path) -> None:
    _write(tmp_path, {"a.py": "def f(): pass\n"})
    wire = (await _map(tmp_path)).model_dump(by_alias=True, exclude_none=True)
    assert wire["totalFiles"] == 1
    assert wire["files"][0]["symbols"][0] == {"kind": "function", "name": "f", "signature": "def f()", "line": 1}
    assert CodeMap.model_validate(wire).total_files == 1


# --- hostile trees --------------------------------------------------------------------------------


async def test_a_file_name_that_is_not_utf8_is_shown_escaped_and_the_result_encodes(tmp_path: Path) -> None:
    fd = os.open(os.fsencode(tmp_path) + b"/\xff_bad.py", os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, b"def odd(): pass\n")
    os.close(fd)
    os.mkdir(os.fsencode(tmp_path) + b"/dir\xfe")
    _write(tmp_path, {"ok.py": "x = 1\n"})
    fd = os.open(os.fsencode(tmp_path) + b"/dir\xfe/inner.py", os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, b"def inner(): pass\n")
    os.close(fd)
    code_map = await _map(tmp_path)
    assert sorted(f.path for f in code_map.files) == ["\\xff_bad.py", "dir\\xfe/inner.py", "ok.py"]
    assert json.loads(code_map.model_dump_json(by_alias=True))["totalFiles"] == 3
    render_markdown(code_map).encode("utf-8")


async def test_a_directory_swapped_for_a_link_outside_the_roots_is_not_read(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    _write(root, {"sub/x.py": "def inside(): pass\n", "top.py": "def top(): pass\n"})
    _write(outside, {"x.py": "def leaked(): pass\n"})

    def swap() -> None:
        (root / "sub").rename(root / "sub.old")
        (root / "sub").symlink_to(outside, target_is_directory=True)

    code_map = await _map(root, Recorder(after_scan=swap))
    assert [f.path for f in code_map.files] == ["top.py"]
    assert code_map.skipped == {"symlink-outside-roots": 1}
    assert "leaked" not in code_map.model_dump_json()


async def test_a_file_swapped_for_a_link_outside_the_roots_is_not_read(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    _write(root, {"a.py": "def a(): pass\n", "b.py": "def b(): pass\n"})
    _write(outside, {"secret.py": "def leaked(): pass\n"})

    def swap() -> None:
        (root / "a.py").unlink()
        (root / "a.py").symlink_to(outside / "secret.py")

    code_map = await _map(root, Recorder(after_scan=swap))
    assert [f.path for f in code_map.files] == ["b.py"]
    assert code_map.skipped == {"symlink-outside-roots": 1}
    assert "leaked" not in code_map.model_dump_json()


def test_a_directory_swapped_while_walking_is_not_listed(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    _write(root, {"sub/x.py": ""})
    _write(outside, {"leaked-name.py": ""})
    walker = Walker(root, roots=[root])
    walker.step(budget=1)  # the root is listed; sub/ waits on the stack
    (root / "sub").rename(root / "sub.old")
    (root / "sub").symlink_to(outside, target_is_directory=True)
    walked = walker.walk()
    assert walked.files == []
    assert walked.skipped == {"symlink-outside-roots": 1}


async def test_a_fifo_swapped_in_does_not_hang_the_map(tmp_path: Path) -> None:
    _write(tmp_path, {"a.py": "def a(): pass\n", "b.py": "def b(): pass\n", ".gitignore": "*.log\n"})

    def swap() -> None:
        (tmp_path / "a.py").unlink()
        os.mkfifo(tmp_path / "a.py")

    began = time.monotonic()
    code_map = await _map(tmp_path, Recorder(after_scan=swap))
    assert time.monotonic() - began < 5
    assert [f.path for f in code_map.files] == [".gitignore", "b.py"]
    assert code_map.skipped == {"special": 1}


def test_a_fifo_named_gitignore_does_not_hang_the_walk(tmp_path: Path) -> None:
    _write(tmp_path, {"a.py": ""})
    os.mkfifo(tmp_path / ".gitignore")
    walked = Walker(tmp_path, roots=[tmp_path]).walk()
    assert [rel for _, rel in walked.files] == ["a.py"]
    assert walked.diagnostics == ["cannot read .gitignore: not a regular file"]


@pytest.mark.skipif(not os.path.exists("/proc/kmsg"), reason="needs /proc/kmsg")
def test_proc_files_are_not_read() -> None:
    """/proc files report size 0: they are listed with no lines, and /proc/kmsg is never read (it blocks)."""
    outcome = mapper_module.analyse_file("/proc/kmsg", "kmsg", [Path("/proc")])
    assert outcome.entry is not None and outcome.entry.lines == 0


async def test_cancelling_a_map_stops_its_worker_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path, {f"m{i:04}.py": "def f(): pass\n" for i in range(400)})
    monkeypatch.setattr(mapper_module, "BATCH_FILES", 10_000)
    monkeypatch.setattr(mapper_module, "BATCH_SECONDS", 3600.0)  # one batch: only the stop flag can end it early
    analysed: list[str] = []
    first, release, batch_over = threading.Event(), threading.Event(), threading.Event()
    analyse, parse_batch = mapper_module.analyse_file, mapper_module.parse_batch

    def held(path: str, rel: str, roots: Sequence[Path]) -> mapper_module.FileOutcome:
        analysed.append(rel)
        first.set()
        release.wait(10)  # the first file is still being read when the job is cancelled
        return analyse(path, rel, roots)

    def watched(*args: Any) -> list[mapper_module.FileOutcome]:
        try:
            return parse_batch(*args)
        finally:
            batch_over.set()

    monkeypatch.setattr(mapper_module, "analyse_file", held)
    monkeypatch.setattr(mapper_module, "parse_batch", watched)
    with anyio.fail_after(5):  # the cancel does not wait for the batch
        async with anyio.create_task_group() as tg:
            tg.start_soon(_map, tmp_path)
            await anyio.to_thread.run_sync(first.wait)
            tg.cancel_scope.cancel()
    release.set()
    assert await anyio.to_thread.run_sync(batch_over.wait, 10), "the worker thread went on"
    assert analysed == ["m0000.py"], "the worker read on after the cancel"


async def test_a_pathological_file_is_a_diagnostic_and_the_map_goes_on(tmp_path: Path) -> None:
    deep = "def f(x=" + "+".join(["1"] * 900) + "):\n    pass\n"  # ast.unparse recurses too deep
    _write(tmp_path, {"deep.py": deep, "fine.py": "def fine(): pass\n"})
    code_map = await _map(tmp_path)
    assert [(f.path, [s.name for s in f.symbols]) for f in code_map.files] == [("deep.py", []), ("fine.py", ["fine"])]
    ((message,),) = [[d for d in code_map.diagnostics if d.startswith("deep.py:")]]
    assert "RecursionError" in message and len(message) < 300


async def test_a_file_over_its_time_budget_is_a_diagnostic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mapper_module, "FILE_BUDGET_SECONDS", 0.0)
    _write(tmp_path, {"many.js": "/* c */ 'x';\n" * 5000, "small.js": "function f() {}\n"})
    code_map = await _map(tmp_path)
    assert [f.path for f in code_map.files] == ["many.js", "small.js"]
    assert code_map.diagnostics == ["many.js: symbols left out: reading them took over 0 s"]


def test_a_hostile_glob_cannot_freeze_the_walk(tmp_path: Path) -> None:
    """`*a*a*...*b` against a long name of `a`s backtracks through every split in a plain translation."""
    _write(tmp_path, {"a" * 200 + ".py": "", "dir/" + "a" * 120 + "/x.py": ""})
    hostile = "*a" * 15 + "*b"
    began = time.monotonic()
    walked = Walker(tmp_path, roots=[tmp_path], include=[hostile, "**/" + hostile], exclude=[hostile + "/"]).walk()
    assert time.monotonic() - began < 1.0
    assert walked.files == []


async def test_a_map_keeps_a_bounded_number_of_symbols_and_lists_every_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Symbols were kept without bound (six 2 MiB Go files: 1.2 GB of server memory, a result that listed no file):
    past 20,000, the files after are listed with their line counts and without symbols."""
    # the count is the subject, not the time: on a loaded machine a file's 1 s budget ran out (f03.go: 0 symbols)
    monkeypatch.setattr(mapper_module, "FILE_BUDGET_SECONDS", 60.0)
    _write(tmp_path, {f"f{i:02}.go": "func a()\n" * 2_000 for i in range(11)})
    code_map = await _map(tmp_path)
    assert [(f.path, f.lines, len(f.symbols)) for f in code_map.files] == [
        *((f"f{i:02}.go", 2_000, 2_000) for i in range(10)),
        ("f10.go", 2_000, 0),
    ]
    message = "f10.go and the files after it are listed without their symbols: a map keeps at most 20,000 symbols"
    assert code_map.diagnostics == [message]
    assert code_map.languages["Go"].symbols == 20_000


# --- bounded patterns, a walk that stops ----------------------------------------------------------

HOSTILE_GLOB = "x" + "*y" * 500  # about 8 ms to compile: ~13 us a character in a plain alternation


def test_globs_past_the_limits_are_refused_naming_the_argument(tmp_path: Path) -> None:
    """300 KB of globs were compiled on the event loop: every client of the server waited ~4 s."""
    hostile = [f"{HOSTILE_GLOB}{i}" for i in range(20)]
    message = r"exclude: 20 patterns of 20,\d{3} characters; at most 1,000 patterns of 16,384 characters together"
    with pytest.raises(ValueError, match=message):
        Walker(tmp_path, roots=[tmp_path], exclude=hostile)
    with pytest.raises(ValueError, match="include: 1,001 patterns"):
        Walker(tmp_path, roots=[tmp_path], include=["*.py"] * 1_001)
    assert Walker(tmp_path, roots=[tmp_path], include=["*.py"] * 1_000, exclude=hostile[:16]).walk().files == []


async def test_globs_are_compiled_off_the_event_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path, {"a.py": "", "b.log": ""})
    compiled_on: list[str] = []
    compile_ = re.compile

    def watched(pattern: Any, flags: int = 0) -> Any:
        if isinstance(pattern, str) and "marker" in pattern:
            compiled_on.append(threading.current_thread().name)
        return compile_(pattern, flags)

    monkeypatch.setattr(re, "compile", watched)
    code_map = await _map(tmp_path, include=["*.py", "*.log"], exclude=["marker*.py", "*.log"])
    assert [f.path for f in code_map.files] == ["a.py"]
    assert compiled_on and threading.main_thread().name not in compiled_on


def test_a_gitignore_is_honoured_up_to_its_limits_and_says_so(tmp_path: Path) -> None:
    """Each .gitignore (up to 1 MiB) became one regex: 200 KB of hostile patterns took 2.7 s to compile."""
    patterns = "".join(f"/f{i}.py\n" for i in range(1_200))
    _write(tmp_path, {".gitignore": "# comment\n\n" + patterns, "f999.py": "", "f1000.py": "", "f1199.py": ""})
    walked = Walker(tmp_path, roots=[tmp_path]).walk()
    assert [rel for _, rel in walked.files] == [".gitignore", "f1000.py", "f1199.py"]
    limits = "at most 1,000 patterns of 16,384 characters together"
    assert walked.diagnostics == [f".gitignore: 200 more patterns ignored ({limits})"]
    _write(tmp_path, {"sub/.gitignore": "".join(f"{HOSTILE_GLOB}{i}\n" for i in range(30)) + "*.py\n"})
    walked = Walker(tmp_path / "sub", roots=[tmp_path]).walk()
    assert walked.diagnostics == [f".gitignore: 15 more patterns ignored ({limits})"]


def test_escaped_trailing_spaces_in_a_gitignore_are_kept(tmp_path: Path) -> None:
    _write(tmp_path, {".gitignore": "a\\  \nb   \n", "a ": "", "b": "", "b ": ""})
    assert _walk(tmp_path) == [".gitignore", "b "]


async def test_cancelling_a_map_stops_its_walk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The walk's thread had no stop flag: a cancelled map went on compiling every folder's .gitignore."""
    _write(tmp_path, {f"d{i:02}/{name}": "*.log\n" for i in range(40) for name in (".gitignore", "m.py")})
    read_from: list[str] = []
    first, release, step_over = threading.Event(), threading.Event(), threading.Event()
    parse, step = PatternSet.parse, Walker.step

    def held(lines: Any, base: str = "") -> PatternSet:
        if base:  # a folder's .gitignore: the first is still being read when the job is cancelled
            read_from.append(base)
            first.set()
            release.wait(10)
        return parse(lines, base)

    def watched(walker: Walker, *args: Any) -> bool:
        try:
            return step(walker, *args)
        finally:
            step_over.set()

    monkeypatch.setattr(PatternSet, "parse", held)
    monkeypatch.setattr(Walker, "step", watched)
    with anyio.fail_after(5):  # the cancel does not wait for the step
        async with anyio.create_task_group() as tg:
            tg.start_soon(_map, tmp_path)
            await anyio.to_thread.run_sync(first.wait)
            tg.cancel_scope.cancel()
    release.set()
    assert await anyio.to_thread.run_sync(step_over.wait, 10), "the walk's thread went on"
    assert read_from == ["d00/"], "the walk went on after the cancel"


async def test_a_root_gone_before_the_walk_is_named_as_the_caller_gave_it(tmp_path: Path) -> None:
    """A directory removed between the call's check and the walk was refused by its resolved path: the operator's
    root, which a principal is not told (the map itself names the directory as given)."""
    root = tmp_path / "secret-root"
    with pytest.raises(NotADirectoryError) as refused:
        await _map(root / "pkg", roots=[root], shown_as="pkg")
    assert str(refused.value) == "'pkg' is not a directory"
