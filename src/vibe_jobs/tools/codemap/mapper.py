"""The `map-codebase` driver: walk, then read and parse files in worker-thread batches."""

from __future__ import annotations

import threading
import time
import warnings
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import anyio.to_thread

from vibe_jobs.tools.codemap.model import CodeMap, FileEntry, LanguageSummary
from vibe_jobs.tools.codemap.symbols import count_lines, detect_language, extract_symbols
from vibe_jobs.tools.codemap.walk import Walker, WalkResult, looks_binary

SCAN_END = 10.0
PARSE_END = 95.0
BATCH_FILES = 256
BATCH_SECONDS = 0.05
MAX_FILE_BYTES = 2 * 1024 * 1024
MAX_DIAGNOSTICS = 200
REPORT_STEP = 1.0
REPORT_INTERVAL = 0.1

# `warnings.catch_warnings` swaps process-wide state: serialise it between our worker threads.
_WARNINGS_LOCK = threading.Lock()


class Reporter(Protocol):
    """Receives progress: overall percent, a message, the stage and the stage's own percent."""

    async def __call__(self, percent: float, message: str, *, stage: str, sub_progress: float) -> None: ...


@dataclass(frozen=True)
class FileOutcome:
    """What reading and parsing one file gave: an entry, or a reason it was skipped; maybe a note."""

    entry: FileEntry | None = None
    skipped: str | None = None
    diagnostic: str | None = None


def analyse_file(path: str, rel: str) -> FileOutcome:
    """Read one file and extract its symbols; problems become a skip reason or a diagnostic."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        return FileOutcome(skipped="unreadable", diagnostic=f"{rel}: cannot read: {exc.strerror or exc}")
    if len(data) > MAX_FILE_BYTES:
        return FileOutcome(skipped="too-large")
    if looks_binary(data):
        return FileOutcome(skipped="binary")
    language = detect_language(rel)
    extraction = extract_symbols(language, data)
    entry = FileEntry(path=rel, language=language, lines=count_lines(data), symbols=extraction.symbols)
    return FileOutcome(entry=entry, diagnostic=f"{rel}: {extraction.error}" if extraction.error else None)


def parse_batch(files: Sequence[tuple[str, str]], start: int) -> list[FileOutcome]:
    """Analyse files from `start` on, stopping after `BATCH_FILES` files or `BATCH_SECONDS`."""
    deadline = time.monotonic() + BATCH_SECONDS
    outcomes: list[FileOutcome] = []
    with _WARNINGS_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. SyntaxWarning for invalid escapes in parsed sources
        for path, rel in files[start : start + BATCH_FILES]:
            outcomes.append(analyse_file(path, rel))
            if time.monotonic() >= deadline:
                break
    return outcomes


class _Progress:
    """Forwards progress at most every `REPORT_STEP` percent or `REPORT_INTERVAL` seconds."""

    def __init__(self, report: Reporter) -> None:
        self._report = report
        self._percent = float("-inf")
        self._at = float("-inf")

    async def __call__(self, percent: float, message: str, *, stage: str, sub: float, force: bool = False) -> None:
        now = time.monotonic()
        if not force and percent - self._percent < REPORT_STEP and now - self._at < REPORT_INTERVAL:
            return
        self._percent, self._at = percent, now
        await self._report(round(percent, 2), message, stage=stage, sub_progress=round(sub, 2))


class _Builder:
    """Collects file outcomes into the pieces of a `CodeMap`."""

    def __init__(self, diagnostic: Callable[[str], None], walked: WalkResult) -> None:
        self._forward = diagnostic
        self.files: list[FileEntry] = []
        self.languages: dict[str, LanguageSummary] = {}
        self.skipped: Counter[str] = Counter(walked.skipped)
        self.diagnostics: list[str] = []
        self._dropped = 0
        for message in walked.diagnostics:
            self.note(message)

    def note(self, message: str) -> None:
        if len(self.diagnostics) >= MAX_DIAGNOSTICS:
            self._dropped += 1
            return
        self.diagnostics.append(message)
        self._forward(message)

    def add(self, outcome: FileOutcome) -> None:
        if outcome.diagnostic:
            self.note(outcome.diagnostic)
        if outcome.skipped:
            self.skipped[outcome.skipped] += 1
        if outcome.entry is not None:
            self._add_entry(outcome.entry)

    def _add_entry(self, entry: FileEntry) -> None:
        self.files.append(entry)
        summary = self.languages.setdefault(entry.language, LanguageSummary())
        summary.files += 1
        summary.lines += entry.lines
        summary.symbols += entry.symbol_count()

    def build(self, root: str, truncated: bool) -> CodeMap:
        if self._dropped:
            self.diagnostics.append(f"... and {self._dropped} more diagnostics")
            self._forward(self.diagnostics[-1])
        languages = dict(sorted(self.languages.items(), key=lambda item: (-item[1].lines, item[0])))
        return CodeMap(
            root=root,
            files=self.files,
            languages=languages,
            total_files=len(self.files),
            skipped=dict(sorted(self.skipped.items())),
            truncated=truncated,
            diagnostics=self.diagnostics,
        )


async def _scan(walker: Walker, progress: _Progress, checkpoint: Callable[[], Awaitable[None]]) -> WalkResult:
    """Stage "scan": walk in worker-thread steps; the total is unknown, so progress is an estimate."""
    await progress(0.0, "scanning files", stage="scan", sub=0.0, force=True)
    while not await anyio.to_thread.run_sync(walker.step):
        await checkpoint()
        found = len(walker.result.files)
        share = found / (found + 2000)
        await progress(SCAN_END * share, f"found {found} files", stage="scan", sub=100 * share)
    await checkpoint()
    found = len(walker.result.files)
    await progress(SCAN_END, f"found {found} files", stage="scan", sub=100.0, force=True)
    return walker.result


async def _parse(
    files: Sequence[tuple[str, str]],
    builder: _Builder,
    progress: _Progress,
    checkpoint: Callable[[], Awaitable[None]],
) -> None:
    """Stage "parse": analyse files in batches, checking for cancellation between them."""
    done, total = 0, len(files)
    while done < total:
        await checkpoint()
        for outcome in await anyio.to_thread.run_sync(parse_batch, files, done):
            builder.add(outcome)
            done += 1
        share = done / total
        percent = SCAN_END + (PARSE_END - SCAN_END) * share
        await progress(percent, f"parsed {done}/{total} files", stage="parse", sub=100 * share, force=done == total)
    await checkpoint()


async def map_codebase(
    root: Path,
    *,
    roots: Sequence[Path],
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    max_files: int | None = None,
    report: Reporter,
    checkpoint: Callable[[], Awaitable[None]],
    diagnostic: Callable[[str], None],
) -> CodeMap:
    """Map the source files below `root`: languages, line counts and top-level symbols.

    `checkpoint` is awaited between steps and batches (it raises when the job is cancelled);
    `diagnostic` receives notes about unreadable or unparsable files (also kept in the result).
    """
    progress = _Progress(report)
    walker = Walker(root, roots=roots, include=include, exclude=exclude, max_files=max_files)
    walked = await _scan(walker, progress, checkpoint)
    builder = _Builder(diagnostic, walked)
    if walked.truncated:
        builder.note(f"stopped after max_files={max_files} files; more files were not mapped")
    await _parse(walked.files, builder, progress, checkpoint)
    return builder.build(str(root), walked.truncated)
