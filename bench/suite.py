"""`make bench`: every figure, vibe-jobs against the systems a user would pick instead, in one run, one table.

Creates the peers' virtualenv (.bench-venv) when needed, runs each figure script as a subprocess
(`bench/<figure>.py --json`), prints the single table (figure | vibe-jobs | peer | ratio | goal | met?)
with median [min-max] of the rounds, and writes it as JSON to bench/results/latest.json.

Run: .venv/bin/python bench/suite.py [--quick] [--only throughput,scale,...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from typing import Any

import common
import peers
from common import Row

FIGURES = {  # script -> (timeout full, timeout quick) in seconds
    "polling": (60, 60),
    "scale": (180, 90),
    "roundtrip": (180, 90),
    "call_to_result": (240, 120),
    "concurrency": (240, 120),
    "throughput": (300, 150),
    "push": (120, 60),
}
RESULTS = common.BENCH / "results"


def run_figure(name: str, quick: bool, timeout: float) -> tuple[list[Row], float, str | None]:
    cmd = [sys.executable, str(common.BENCH / f"{name}.py"), "--json", *(["--quick"] if quick else [])]
    began = time.perf_counter()
    try:
        data = peers.run_json(cmd, timeout, {"PYTHONPATH": str(common.ROOT)})
    except (RuntimeError, ValueError, subprocess.TimeoutExpired) as exc:
        return [], time.perf_counter() - began, f"{type(exc).__name__}: {exc}"[-600:]
    rows: list[Row] = data["rows"]
    return rows, time.perf_counter() - began, None


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg": os.getloadavg(),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="a fast smoke run: small sizes, fewer rounds")
    parser.add_argument("--only", default="", help="comma-separated figure scripts to run")
    args = parser.parse_args()
    names = [n for n in FIGURES if not args.only or n in args.only.split(",")]
    began = time.perf_counter()
    peers.ensure()
    report: dict[str, Any] = {"quick": args.quick, "machine": machine(), "peers": peers.versions(), "figures": {}}
    rows: list[Row] = []
    failed = []
    for name in names:
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        fig_rows, seconds, error = run_figure(name, args.quick, FIGURES[name][1 if args.quick else 0])
        report["figures"][name] = {"seconds": round(seconds, 1), "error": error}
        print(f"bench: {name} {'FAILED' if error else 'done'} in {seconds:.1f} s", file=sys.stderr, flush=True)
        if error:
            failed.append(name)
            rows.append(common.row("!", f"{name} failed", "", None, note=f"{name}: {error}"))
        rows += fig_rows
    rows.sort(key=lambda r: r.get("figure", ""))  # stable: figures in order, rows within a figure as measured
    report["rows"] = rows
    report["seconds"] = round(time.perf_counter() - began, 1)
    report["machine"]["loadavg_after"] = os.getloadavg()
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "latest.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    mode = "quick" if args.quick else "full"
    load = ", ".join(f"{x:.1f}" for x in report["machine"]["loadavg"])
    print(f"vibe-jobs bench ({mode}), {report['machine']['cpus']} CPUs, load {load}; peers {report['peers']}")
    print(common.table(rows))
    print(f"total {report['seconds']:.0f} s; JSON: {out.relative_to(common.ROOT)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
