"""Markdown rendering of a `CodeMap`, capped to a number of characters."""

from __future__ import annotations

from vibe_jobs.tools.codemap.model import CodeMap, FileEntry, Symbol
from vibe_jobs.tools.printable import code_span

DEFAULT_MAX_CHARS = 100_000
MAX_DIAGNOSTIC_LINES = 20
_NOTE_RESERVE = 200


def render_markdown(code_map: CodeMap, *, max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """The map as Markdown: summary, per-language table, diagnostics, then each file's symbols.

    At most `max_chars` characters; when files must be left out, a final note says how many.
    """
    head = _header(code_map)
    if len(head) + _NOTE_RESERVE > max_chars:
        return _cut_note(head[: max(max_chars - _NOTE_RESERVE, 0)], len(code_map.files), code_map, max_chars)
    sections = [_file_section(entry) for entry in code_map.files]
    used, kept = len(head), 0
    if used + sum(map(len, sections)) > max_chars:
        while kept < len(sections) and used + len(sections[kept]) <= max_chars - _NOTE_RESERVE:
            used += len(sections[kept])
            kept += 1
    else:
        kept = len(sections)
    body = head + "".join(sections[:kept])
    if kept < len(sections):
        return _cut_note(body, len(sections) - kept, code_map, max_chars)
    if code_map.files_omitted:  # the map itself lists only its first files (the result limit)
        body += f"\n_{code_map.files_omitted:,} more files were mapped but left out of this result (its size limit)._\n"
    return body


def _cut_note(body: str, omitted: int, code_map: CodeMap, max_chars: int) -> str:
    listed = len(code_map.files)
    where = (
        "the structured result lists them all"
        if not code_map.files_omitted
        else f"the structured result lists {listed:,}: {code_map.files_omitted:,} more were left out of it too"
    )
    note = f"\n_Output cut at {max_chars:,} characters: {omitted:,} of {listed:,} files omitted ({where})._\n"
    return (body + note)[:max_chars]


def _header(code_map: CodeMap) -> str:
    lines = [f"# Code map of {code_span(code_map.root)}", "", _totals(code_map), "", *_table(code_map), ""]
    lines += _diagnostics(code_map.diagnostics)
    lines += ["## Files", ""]
    return "\n".join(lines) + "\n"


def _totals(code_map: CodeMap) -> str:
    lines = sum(summary.lines for summary in code_map.languages.values())
    symbols = sum(summary.symbols for summary in code_map.languages.values())
    text = f"{code_map.total_files:,} files, {lines:,} lines, {symbols:,} symbols."
    if code_map.skipped:
        text += " Skipped: " + ", ".join(f"{reason} {count:,}" for reason, count in code_map.skipped.items()) + "."
    if code_map.truncated:
        text += f" **Stopped at maxFiles ({code_map.max_files or code_map.total_files:,} files): more files exist.**"
    return text


def _table(code_map: CodeMap) -> list[str]:
    rows = ["| Language | Files | Lines | Symbols |", "|---|---:|---:|---:|"]
    for language, summary in code_map.languages.items():
        rows.append(f"| {language} | {summary.files:,} | {summary.lines:,} | {summary.symbols:,} |")
    return rows


def _diagnostics(diagnostics: list[str]) -> list[str]:
    if not diagnostics:
        return []
    lines = [f"## Diagnostics ({len(diagnostics)})", ""]
    lines += [f"- {code_span(message)}" for message in diagnostics[:MAX_DIAGNOSTIC_LINES]]  # they name files
    if len(diagnostics) > MAX_DIAGNOSTIC_LINES:
        lines.append(f"- ... {len(diagnostics) - MAX_DIAGNOSTIC_LINES} more in the structured result")
    return [*lines, ""]


def _file_section(entry: FileEntry) -> str:
    lines = [f"### {code_span(entry.path)} ({entry.language}, {entry.lines:,} lines)"]
    for symbol in entry.symbols:
        _symbol_lines(symbol, 0, lines)
    return "\n".join(lines) + "\n\n"


def _symbol_lines(symbol: Symbol, depth: int, out: list[str]) -> None:
    label = symbol.signature or f"{symbol.kind} {symbol.name}"
    out.append(f"{'  ' * depth}- {code_span(label)} L{symbol.line}")
    for child in symbol.children or ():
        _symbol_lines(child, depth + 1, out)
