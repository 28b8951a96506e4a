"""`make bench`: every figure, vibe-jobs against the systems a user would pick instead, in one run, one table.

Creates the peers' virtualenv (.bench-venv) when needed, runs each figure script as a subprocess
(`bench/<figure>.py --json`), prints the single table (figure | vibe-jobs | peer | ratio | goal | met?)
with median [min-max] of the rounds, writes it as JSON to bench/results/latest.json, draws it as
bench/results/latest.svg (one panel per figure) and appends a line to bench/results/history.jsonl.

Nothing the bench starts outlives it: each figure runs in a process group of its own with a time-out (and a
deadline its peer runs keep within: a stuck peer is killed after its own time-out and marked "timed out");
at the end the suite looks for any process, PostgreSQL session or schema, or Redis key of this run, removes
what it finds and prints the check.

Exit status: 0 every figure and peer finished; 1 a figure failed or timed out; 3 a peer timed out or failed
(its figure printed without it); 4 something of the run outlived its figure or was still there at the end
(it was removed). The highest
applicable status wins in the order 4, 1, 3.

Run: .venv/bin/python bench/suite.py [--quick] [--only throughput,scale,...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

import common
import peers
import procs
import svg
from common import Row

FIGURES = {  # script -> (timeout full, timeout quick) in seconds: room for a shared machine under load
    "polling": (60, 60),
    "scale": (240, 120),
    "roundtrip": (240, 120),
    "call_to_result": (360, 180),
    "concurrency": (300, 150),
    "throughput": (600, 300),
    "push": (180, 90),
}
RESULTS = common.BENCH / "results"
EXIT_FIGURE_FAILED, EXIT_PEER_UNFINISHED, EXIT_LEFTOVERS = 1, 3, 4


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def run_figure(name: str, quick: bool, timeout: float) -> tuple[list[Row], float, str | None]:
    cmd = [sys.executable, str(common.BENCH / f"{name}.py"), "--json", *(["--quick"] if quick else [])]
    env = {"PYTHONPATH": str(common.ROOT), procs.DEADLINE_ENV: str(time.time() + timeout)}
    began = time.perf_counter()
    try:
        done = procs.run(cmd, timeout, env)
    except procs.TimedOut as exc:
        cleaned = peers.cleanup("clean", tag_prefix())
        error = f"timed out after {timeout:.0f} s (process tree killed; {peers.describe(cleaned)}): {exc.tail}"
        return [], time.perf_counter() - began, error[-600:]
    echo_peer_lines(done.stderr)
    try:
        if done.returncode != 0:
            raise RuntimeError(f"exited {done.returncode}: {done.stderr.strip()[-1500:]}")
        rows: list[Row] = peers.last_json(done.stdout)["rows"]
    except (RuntimeError, ValueError) as exc:
        return [], time.perf_counter() - began, f"{type(exc).__name__}: {exc}"[-600:]
    return rows, time.perf_counter() - began, None


def echo_peer_lines(stderr: str) -> None:
    """Show what the figure said about its peers (time-outs, clean-ups) as it happened."""
    for line in stderr.splitlines():
        if line.startswith("bench: peer") or line.startswith("bench: cleanup"):
            print(line, file=sys.stderr, flush=True)


def tag_prefix() -> str:
    return f"vjb_{procs.run_id()}_"


def machine() -> dict[str, Any]:
    return {
        "host": platform.node(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg": os.getloadavg(),
    }


def versions() -> dict[str, str]:
    """The peers' versions, vibe-jobs' and the commit measured (`+dirty` when src/ has changes)."""
    out = dict(peers.versions())
    git = ["git", "-C", str(common.ROOT)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False)
    dirty = subprocess.run([*git, "status", "--porcelain", "--", "src"], capture_output=True, text=True, check=False)
    out["commit"] = (head.stdout.strip() or "unknown") + ("+dirty" if dirty.stdout.strip() else "")
    out["vibe-jobs"] = _vibe_version()
    return out


def _vibe_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vibe-jobs")
    except PackageNotFoundError:
        return "unknown"


def run_twice(name: str, quick: bool) -> tuple[list[Row], dict[str, Any]]:
    """Run a figure; when it fails or times out, run it once more and say so in its first row's note."""
    limit = FIGURES[name][1 if quick else 0]
    rows, seconds, first_error = run_figure(name, quick, limit)
    error = first_error
    if first_error:
        log(f"{name} failed ({headline(first_error)}); running it once more")
        rows, more, error = run_figure(name, quick, limit)
        seconds += more
    if first_error and rows:
        said = f"{name} failed once and was run again ({headline(first_error)})"
        rows[0]["note"] = "; ".join(filter(None, [said, rows[0].get("note", "")]))
    stray = procs.kill_leftovers(procs.run_id())  # the figure is over: anything of it still alive is stray
    if stray:
        log(f"{name} left {len(stray)} process(es) behind, killed: {list(stray.values())}")
    info = {"seconds": round(seconds, 1), "error": error, "first_error": first_error, "stray": list(stray.values())}
    return rows, info


def headline(error: str) -> str:
    """The line of a figure's error that names it: the last exception line, else the first line."""
    lines = [line.strip(" |+-^") for line in error.strip().splitlines()]
    named = [line for line in lines if re.match(r"[\w.]+(Error|Exception|Timeout|Interrupt)\b", line)]
    return (named[-1] if named else lines[0] if lines else "")[:160]


def run_figures(names: list[str], quick: bool, report: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for name in names:
        log(f"{name} ...")
        fig_rows, info = run_twice(name, quick)
        report["figures"][name] = info
        log(f"{name} {'FAILED' if info['error'] else 'done'} in {info['seconds']:.1f} s")
        if info["error"]:
            rows.append(common.row("!", f"{name} failed", "", None, note=f"{name}: {info['error']}"))
        rows += fig_rows
    rows.sort(key=lambda r: r.get("figure", ""))  # stable: figures in order, rows within a figure as measured
    return rows


def final_check() -> dict[str, Any]:
    """Kill and remove whatever of this run is still there; return what was found."""
    processes = procs.kill_leftovers(procs.run_id())
    procs.reap()
    state = peers.cleanup("check", tag_prefix())
    if state.get("sessions") or state.get("schemas") or state.get("redis_keys"):
        peers.cleanup("clean", tag_prefix())
    return {"processes": [f"{pid} {cmd}" for pid, cmd in processes.items()], **state}


def check_line(found: dict[str, Any]) -> str:
    n_proc, n_sess = len(found.get("processes", [])), len(found.get("sessions", []))
    n_schema, n_keys = len(found.get("schemas", [])), found.get("redis_keys", 0)
    counts = f"{n_proc} process(es), {n_sess} PostgreSQL session(s), {n_schema} schema(s), {n_keys} Redis key(s)"
    if "error" in found:
        return f"end check of run {procs.run_id()}: {counts}; the PostgreSQL/Redis check failed: {found['error']}"
    if n_proc or n_sess or n_schema or n_keys:
        return f"end check of run {procs.run_id()}: LEFT BEHIND (now removed): {counts}: {found}"
    return f"end check of run {procs.run_id()}: nothing left behind ({counts})"


def exit_status(report: dict[str, Any]) -> int:
    found, figures = report["leftovers"], report["figures"].values()
    if found.get("processes") or found.get("sessions") or found.get("schemas") or found.get("redis_keys"):
        return EXIT_LEFTOVERS
    if any(f["stray"] for f in figures):
        return EXIT_LEFTOVERS
    if any(f["error"] for f in figures):
        return EXIT_FIGURE_FAILED
    if any(r.get("peer_status") for r in report["rows"]):
        return EXIT_PEER_UNFINISHED
    return 0


def history_line(report: dict[str, Any]) -> dict[str, Any]:
    m = report["machine"]
    return {
        "time": report["time"], "run": report["run"], "quick": report["quick"], "seconds": report["seconds"],
        "exit": report["exit"], "machine": {k: m[k] for k in ("host", "cpus", "python", "platform")},
        "load": m["loadavg"], "load_after": m["loadavg_after"], "versions": report["versions"],
        "hang": report["hang"], "figures": report["figures"], "rows": report["rows"],
    }  # fmt: skip


def write_results(report: dict[str, Any]) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(report, indent=2) + "\n")
    with (RESULTS / "history.jsonl").open("a") as f:
        f.write(json.dumps(history_line(report)) + "\n")
    (RESULTS / "latest.svg").write_text(svg.render(report))


def print_report(report: dict[str, Any]) -> None:
    mode = "quick" if report["quick"] else "full"
    load = ", ".join(f"{x:.1f}" for x in report["machine"]["loadavg"])
    load_after = ", ".join(f"{x:.1f}" for x in report["machine"]["loadavg_after"])
    print(f"vibe-jobs bench ({mode}), {report['machine']['cpus']} CPUs, load {load} (after: {load_after}); "
          f"versions {', '.join(f'{k} {v}' for k, v in report['versions'].items())}")  # fmt: skip
    print(common.table(report["rows"]))
    print(check_line(report["leftovers"]))
    results = RESULTS.relative_to(common.ROOT)
    print(f"total {report['seconds']:.0f} s; exit {report['exit']}; {results}/latest.json, latest.svg, history.jsonl")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="a fast smoke run: small sizes, fewer rounds")
    parser.add_argument("--only", default="", help="comma-separated figure scripts to run")
    args = parser.parse_args()
    names = [n for n in FIGURES if not args.only or n in args.only.split(",")]
    began = time.perf_counter()
    procs.become_subreaper()
    procs.guard()
    peers.ensure()
    report: dict[str, Any] = {
        "time": datetime.now(UTC).isoformat(timespec="seconds"), "run": procs.run_id(), "quick": args.quick,
        "machine": machine(), "versions": versions(), "hang": os.environ.get("VIBE_JOBS_BENCH_HANG", ""),
        "figures": {},
    }  # fmt: skip
    try:
        report["rows"] = run_figures(names, args.quick, report)
    except (KeyboardInterrupt, SystemExit) as exc:
        procs.kill_all()
        log(f"interrupted ({type(exc).__name__}): the running figure was killed; removing what it held")
        final_check()
        log(check_line(final_check()))
        return 130
    report["leftovers"] = final_check()
    report["seconds"] = round(time.perf_counter() - began, 1)
    report["machine"]["loadavg_after"] = os.getloadavg()
    report["exit"] = exit_status(report)
    write_results(report)
    print_report(report)
    return int(report["exit"])


if __name__ == "__main__":
    sys.exit(main())
