"""The `map-codebase` driver: walk, then read and parse files in worker-thread batches.

The work runs in worker threads, off the event loop (compiling the caller's globs too). A cancelled
map stops its thread at the next folder or file (a flag the thread checks), without waiting for the
step or batch; each file has a time budget (`FILE_BUDGET_SECONDS`) and any failure on one file
becomes that file's diagnostic, so one pathological file never fails or freezes the map.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Protocol, TypeVar

import anyio.to_thread

from vibe_jobs.logs import get_logger
from vibe_jobs.tools.codemap.model import CodeMap, FileEntry, LanguageSummary
from vibe_jobs.tools.codemap.safeio import Refused, read_regular
from vibe_jobs.tools.codemap.symbols import Extraction, count_lines, detect_language, extract_symbols
from vibe_jobs.tools.codemap.walk import Walker, WalkResult, looks_binary
from vibe_jobs.tools.printable import printable

Threads = anyio.CapacityLimiter | None
SCAN_END = 10.0
PARSE_END = 95.0
BATCH_FILES = 256
BATCH_SECONDS = 0.05
MAX_FILE_BYTES = 2 * 1024 * 1024
FILE_BUDGET_SECONDS = 1.0
DEFAULT_MAX_FILES = 10_000
MAX_DIAGNOSTICS = 200
MAX_MAP_SYMBOLS = 20_000  # about 15 MB held and 3 MB of JSON: the result keeps room to list every file
REPORT_STEP = 1.0
REPORT_INTERVAL = 0.1

log = get_logger("vibe_jobs.tools.codemap")
T = TypeVar("T")


class Reporter(Protocol):
    """Receives progress: overall percent, a message, the stage and the stage's own percent."""

    async def __call__(self, percent: float, message: str, *, stage: str, sub_progress: float) -> None: ...


@dataclass(frozen=True)
class FileOutcome:
    """What reading and parsing one file gave: an entry, or a reason it was skipped; maybe a note."""

    entry: FileEntry | None = None
    skipped: str | None = None
    diagnostic: str | None = None


def analyse_file(path: str, rel: str, roots: Sequence[Path]) -> FileOutcome:
    """Read one file and extract its symbols; problems become a skip reason or a diagnostic."""
    shown = printable(rel)
    try:
        data = read_regular(path, roots, MAX_FILE_BYTES)
    except Refused as exc:
        return FileOutcome(skipped=exc.reason)
    except OSError as exc:
        return FileOutcome(skipped="unreadable", diagnostic=f"{shown}: cannot read: {exc.strerror or exc}")
    if looks_binary(data):
        return FileOutcome(skipped="binary")
    language = detect_language(rel)
    extraction = _extract(language, data, shown)
    entry = FileEntry(path=shown, language=language, lines=count_lines(data), symbols=extraction.symbols)
    return FileOutcome(entry=entry, diagnostic=f"{shown}: {extraction.error}" if extraction.error else None)


def _extract(language: str, data: bytes, shown: str) -> Extraction:
    try:
        return extract_symbols(language, data, budget=FILE_BUDGET_SECONDS)
    except Exception as exc:  # a bug of ours on one file must not lose the map: the traceback goes to the log
        log.warning("codemap.file_failed", file=shown, error=f"{type(exc).__name__}: {exc}", exc_info=exc)
        return Extraction([], f"symbols left out: {type(exc).__name__}")


def parse_batch(
    files: Sequence[tuple[str, str]], start: int, roots: Sequence[Path], stop: threading.Event
) -> list[FileOutcome]:
    """Analyse files from `start` on: at most `BATCH_FILES` files or `BATCH_SECONDS`, none once `stop` is set."""
    deadline = time.monotonic() + BATCH_SECONDS
    outcomes: list[FileOutcome] = []
    for path, rel in files[start : start + BATCH_FILES]:
        if stop.is_set():
            break
        outcomes.append(analyse_file(path, rel, roots))
        if time.monotonic() >= deadline:
            break
    return outcomes


async def in_thread(
    fn: Callable[..., T], *args: object, stop: threading.Event | None = None, threads: Threads = None
) -> T:
    """Run `fn` in a worker thread of `threads` (the job's: None, the server's own); on cancellation do not wait
    for it, and set `stop` (which it checks)."""
    try:
        return await anyio.to_thread.run_sync(fn, *args, abandon_on_cancel=True, limiter=threads)
    except BaseException:
        if stop is not None:
            stop.set()
        raise


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
        self._symbols = 0
        self._symbols_full = False
        for message in walked.diagnostics:
            self.note(message)

    def note(self, message: str) -> None:
        if len(self.diagnostics) >= MAX_DIAGNOSTICS:
            self._dropped += 1
            return
        self.diagnostics.append(printable(message))
        self._forward(self.diagnostics[-1])

    def add(self, outcome: FileOutcome) -> None:
        if outcome.diagnostic:
            self.note(outcome.diagnostic)
        if outcome.skipped:
            self.skipped[outcome.skipped] += 1
        if outcome.entry is not None:
            self._add_entry(outcome.entry)

    def _add_entry(self, entry: FileEntry) -> None:
        entry = self._within_symbol_cap(entry)
        self.files.append(entry)
        summary = self.languages.setdefault(entry.language, LanguageSummary())
        summary.files += 1
        summary.lines += entry.lines
        summary.symbols += entry.symbol_count()

    def _within_symbol_cap(self, entry: FileEntry) -> FileEntry:
        """The entry, without its symbols once the map holds `MAX_MAP_SYMBOLS` (noted at the first file cut)."""
        count = entry.symbol_count()
        if count and (self._symbols_full or self._symbols + count > MAX_MAP_SYMBOLS):
            if not self._symbols_full:
                limit = f"a map keeps at most {MAX_MAP_SYMBOLS:,} symbols"
                self.note(f"{entry.path} and the files after it are listed without their symbols: {limit}")
            self._symbols_full = True
            return entry.model_copy(update={"symbols": []})
        self._symbols += count
        return entry

    def build(self, root: str, truncated: bool, max_files: int) -> CodeMap:
        if self._dropped:
            self.diagnostics.append(f"... and {self._dropped} more diagnostics")
            self._forward(self.diagnostics[-1])
        languages = dict(sorted(self.languages.items(), key=lambda item: (-item[1].lines, item[0])))
        return CodeMap(
            root=printable(root),
            files=self.files,
            languages=languages,
            total_files=len(self.files),
            skipped=dict(sorted(self.skipped.items())),
            truncated=truncated,
            max_files=max_files,
            diagnostics=self.diagnostics,
        )


async def _scan(
    walker: Walker, progress: _Progress, checkpoint: Callable[[], Awaitable[None]], threads: Threads
) -> WalkResult:
    """Stage "scan": walk in worker-thread steps; the total is unknown, so progress is an estimate."""
    await progress(0.0, "scanning files", stage="scan", sub=0.0, force=True)
    while not await in_thread(walker.step, stop=walker.stop, threads=threads):  # cancelled: ends at its next folder
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
    roots: Sequence[Path],
    builder: _Builder,
    progress: _Progress,
    checkpoint: Callable[[], Awaitable[None]],
    threads: Threads,
) -> None:
    """Stage "parse": analyse files in batches, checking for cancellation between them."""
    done, total = 0, len(files)
    stop = threading.Event()
    while done < total:
        await checkpoint()
        for outcome in await in_thread(parse_batch, files, done, roots, stop, stop=stop, threads=threads):
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
    max_files: int = DEFAULT_MAX_FILES,
    report: Reporter,
    checkpoint: Callable[[], Awaitable[None]],
    diagnostic: Callable[[str], None],
    threads: Threads = None,
    shown_as: str | None = None,
) -> CodeMap:
    """Map the source files below `root`: languages, line counts and top-level symbols. The map names its root
    `shown_as` (None: `root` itself).

    At most `max_files` files are mapped; the result says when more were left out.
    `checkpoint` is awaited between steps and batches (it raises when the job is cancelled);
    `diagnostic` receives notes about unreadable or unparsable files (also kept in the result);
    `threads`, the worker threads to work in (a job's, `JobContext.threads`; None: anyio's default).
    Raises `PatternsRefused` for `include` or `exclude` globs past the walk's limits.
    """
    progress, shown = _Progress(report), str(root) if shown_as is None else shown_as
    walking = partial(Walker, root, roots=roots, include=include, exclude=exclude, max_files=max_files)
    walker = await in_thread(partial(walking, shown_as=shown), threads=threads)
    walked = await _scan(walker, progress, checkpoint, threads)
    builder = _Builder(diagnostic, walked)
    if walked.truncated:
        builder.note(f"stopped at maxFiles={max_files:,} files; more files were not mapped (raise maxFiles for them)")
    await _parse(walked.files, walker.roots, builder, progress, checkpoint, threads)
    return builder.build(shown, walked.truncated, max_files)
