"""The docs tell the truth where it can be checked: every environment variable the code reads is in the README's
configuration table with the default the code has, docs/architecture.md names files and functions that exist, and
every `vibe-jobs ...` command the docs show has the subcommands and flags it uses."""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from vibe_jobs.cli.main import build_parser
from vibe_jobs.settings import ENV_VARS, Settings

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "vibe_jobs"
# Named in src/ but set by vibe-jobs, not read as configuration: the marker run-command gives its children.
NOT_CONFIGURATION = {"VIBE_JOBS_RUN_ID"}
# Defaults the table words instead of giving a value (a path of the user's machine, "the start directory").
WORDED = ("<", "the start directory", "none")


def configuration_rows() -> dict[str, str]:
    """The README's configuration table: each variable named in a row's first cell, with its default cell."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) < 3 or not cells[0].startswith("`"):
            continue
        names = re.findall(r"`([A-Z][A-Z0-9_]+)`", cells[0])
        defaults = cells[1].split(" / ") if len(names) > 1 else [cells[1]]
        assert len(defaults) in (1, len(names)), f"README row of {names}: one default each, or one for all"
        for name, default in zip(names, defaults * len(names) if len(defaults) == 1 else defaults, strict=True):
            rows[name] = default.strip().strip("`").replace("\\|", "|")
    return rows


def variables_in_source() -> set[str]:
    found: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        found |= set(re.findall(r"\b(?:VIBE_JOBS|JOB_MANAGER)_[A-Z0-9_]*[A-Z0-9]\b", path.read_text()))
    return found - NOT_CONFIGURATION


def test_every_variable_the_code_reads_is_in_the_configuration_table() -> None:
    missing = sorted(variables_in_source() - set(configuration_rows()))
    assert not missing, f"README's configuration table lacks {missing}"


def test_the_table_gives_each_setting_the_default_the_code_has() -> None:
    """A documented default given as the variable's value changes nothing (its unit is the variable's)."""
    rows, defaults = configuration_rows(), Settings.from_env({})
    for var, (name, _parse) in ENV_VARS.items():
        shown = rows[var]
        if not shown or any(word in shown for word in WORDED):
            continue
        given = getattr(Settings.from_env({var: shown}), name)
        assert given == getattr(defaults, name), f"README says {var} defaults to {shown!r}: that is not the default"


def test_the_settings_without_a_documented_value_default_to_none() -> None:
    rows, defaults = configuration_rows(), Settings.from_env({})
    for var, (name, _parse) in ENV_VARS.items():
        if rows[var] in ("", "none"):
            assert getattr(defaults, name) in (None, ()), f"README gives {var} no default, the code has one"


def named_file(path: str) -> Path | None:
    """`path` under src/vibe_jobs/, or the one file whose path ends so (the page's Stores part names
    `link.py` of store/sqlite/ in its paragraph)."""
    if (PACKAGE / path).is_file():
        return PACKAGE / path
    candidates = [found for found in PACKAGE.rglob(path) if found.is_file()]
    return candidates[0] if len(candidates) == 1 else None


def test_the_architecture_page_names_files_and_functions_that_exist() -> None:
    """Each `path.py` (`name`, ...) of docs/architecture.md: the file is under src/vibe_jobs/ and defines each name."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    wrong: list[str] = []
    for match in re.finditer(r"`([\w/]+\.py)`\s*\(([^()]*)\)", text):
        found, names = named_file(match.group(1)), re.findall(r"`(\w+)`", match.group(2))
        if found is None:
            wrong.append(f"{match.group(1)}: no such file")
            continue
        source = found.read_text()
        wrong += [
            f"{match.group(1)}: no {name}"
            for name in names
            if not re.search(rf"^\s*(?:async def|def|class)\s+{name}\b|^\s*{name}\b[^=\n]*=", source, re.M)
        ]
    assert not wrong, f"docs/architecture.md names what is not there: {wrong}"


def test_the_code_speaks_of_what_and_why_and_its_micro_benchmark_figures_live_in_bench() -> None:
    """Issue 14: figures such as "~25 µs each" or "2.7 us per eviction" in src move to bench/MEASUREMENTS.md."""
    figure = re.compile(r"\d(?:[.,]\d+)?\s?(?:µs|us|ns)\b|\d[\d,.]*\s?jobs/s\b")
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in sorted((ROOT / "src" / "vibe_jobs").rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if figure.search(line)
    ]
    assert not found, "micro-benchmark figures in the code (move them to bench/MEASUREMENTS.md):\n" + "\n".join(found)


def test_the_configuration_table_says_where_a_sqlite_url_s_file_is() -> None:
    """`sqlite:///tmp/jobs.db` is `tmp/jobs.db` under the working directory, not /tmp (a newcomer's store appeared
    in ./tmp/): the table says which URL is relative and which absolute, and the code reads each so."""
    from vibe_jobs.store.sqlite.store import parse_url

    row = configuration_rows()
    text = (ROOT / "README.md").read_text()
    assert "VIBE_JOBS_STORE" in row
    for url, path in (("sqlite:///jobs.db", "jobs.db"), ("sqlite:////var/lib/jobs.db", "/var/lib/jobs.db")):
        assert f"`{url}`" in text, f"README's configuration table does not show {url}"
        assert parse_url(url)[0] == path


def test_an_invalid_value_stops_start_up_as_the_configuration_section_shows() -> None:
    """The section's example line and exit code are what `vibe-jobs serve` gives; an empty value, or one with
    spaces around it, is taken as the section says."""
    section = (ROOT / "README.md").read_text().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    example = re.search(r"\(`(vibe-jobs: (\w+)='([^']*)' is invalid: [^`]*?)(?:, \.\.\.)?`\)", section)
    assert example, "the configuration section shows no example of an invalid value"
    line, var, raw = example.groups()
    serve = [sys.executable, "-m", "vibe_jobs", "serve", "--store", "memory://"]
    for value in (raw, "", f" {Settings().max_concurrent} "):
        done = subprocess.run(
            serve, capture_output=True, text=True, timeout=60, input="", env={**os.environ, var: value}
        )
        if value == raw:
            assert done.returncode == 2 and done.stderr.splitlines() == [done.stderr.strip()], done.stderr
            assert done.stderr.startswith(line), done.stderr
        else:
            assert done.returncode == 0, (value, done.stderr)


PAGES = [ROOT / "README.md", ROOT / "THREAT_MODEL.md", *sorted((ROOT / "docs").glob("*.md"))]


def commands_shown() -> list[list[str]]:
    """Each `vibe-jobs ...` of the docs: a line of a shell block, or inline code; without its comment or pipe."""
    found = []
    for page in PAGES:
        text = page.read_text()
        found += re.findall(r"^(vibe-jobs .*)$", text, re.M) + re.findall(r"`(vibe-jobs [^`\n]*)`", text)
    return [shlex.split(line.split(" | ")[0].replace("[", " ").replace("]", " "), comments=True) for line in found]


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    found = [action.choices for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    return dict(found[0]) if found else {}


def wrong_words(words: list[str]) -> list[str]:
    """The words of `vibe-jobs WORDS` no parser takes: a subcommand that is not one (`pause|resume|delete` names
    three), a flag its (sub)command lacks; a flag's value is skipped, and so is what follows `--` (the upstream)."""
    parser, wrong, rest = build_parser(), [], iter(words)
    for word in rest:
        if word == "--":
            break
        if word.startswith("-"):
            action = parser._option_string_actions.get(word.split("=")[0])
            if action is None:
                wrong.append(word)
            elif action.nargs is None and "=" not in word:
                next(rest, None)
        elif (choices := subcommands(parser)) and word != "...":
            if not all(name in choices for name in word.split("|")):
                return [*wrong, word]
            parser = choices[word.split("|")[0]]
    return wrong


def test_every_command_the_docs_show_uses_subcommands_and_flags_that_exist() -> None:
    shown = commands_shown()
    wrong = {" ".join(words): bad for words in shown if (bad := wrong_words(words[1:]))}
    assert len(shown) > 30, "the docs' commands were not found"
    assert not wrong, f"the docs show commands vibe-jobs does not take: {wrong}"
