"""Shared helpers for the figure scripts: summaries (median, min, max), pairwise ratios, table rows, the CLI.

A figure script defines `measure(quick: bool) -> list[Row]` and ends with `cli(measure)`; run alone it
prints its rows as a table, with `--json` it prints them as one JSON line (what bench/suite.py reads).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypedDict

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
if str(BENCH) not in sys.path:  # figure scripts import each other as top-level modules
    sys.path.insert(0, str(BENCH))

import procs  # noqa: E402 (found through the path set just above)


class Summary(TypedDict):
    median: float
    min: float
    max: float
    n: int


class Row(TypedDict, total=False):
    figure: str
    name: str
    unit: str
    vibe: Summary | None
    peer_name: str | None
    peer: Summary | None
    ratio: Summary | None
    ratio_label: str
    goal: str
    met: bool | None
    note: str
    peer_status: str  # "timed out" / "failed" when the peer did not finish every round


def summary(values: Sequence[float]) -> Summary:
    if not values:
        raise ValueError("no values to summarise")
    return Summary(median=statistics.median(values), min=min(values), max=max(values), n=len(values))


def ratios(num: Sequence[float], den: Sequence[float | None]) -> list[float]:
    """Pairwise ratios num[i] / den[i]: both taken in the same round (rounds where a peer has none are left out)."""
    if len(num) != len(den):
        raise ValueError(f"pairwise ratio needs equal rounds, got {len(num)} and {len(den)}")
    return [a / b for a, b in zip(num, den, strict=True) if b]


def present(values: Sequence[float | None] | None) -> list[float]:
    """The figures a peer has (None marks a round it did not finish)."""
    return [v for v in values or [] if v is not None]


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), nearest rank."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def row(
    figure: str,
    name: str,
    unit: str,
    vibe: Sequence[float] | None,
    *,
    peer_name: str | None = None,
    peer: Sequence[float | None] | None = None,
    ratio: Sequence[float] | None = None,
    ratio_label: str = "",
    goal: str = "",
    met: bool | None = None,
    note: str = "",
    peer_status: str = "",
) -> Row:
    peer_values = present(peer)
    return Row(
        figure=figure, name=name, unit=unit, vibe=summary(vibe) if vibe else None, peer_name=peer_name,
        peer=summary(peer_values) if peer_values else None, ratio=summary(ratio) if ratio else None,
        ratio_label=ratio_label, goal=goal, met=met, note=note, peer_status=peer_status,
    )  # fmt: skip


def median_or_none(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def fmt_value(value: float) -> str:
    if value == int(value) and abs(value) < 1000:
        return str(int(value))
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def fmt_summary(s: Summary | None, unit: str = "") -> str:
    if s is None:
        return "-"
    suffix = f" {unit}" if unit else ""
    if s["n"] <= 1 or s["min"] == s["max"]:
        return f"{fmt_value(s['median'])}{suffix}"
    return f"{fmt_value(s['median'])}{suffix} [{fmt_value(s['min'])}-{fmt_value(s['max'])}]"


def fmt_ratio(s: Summary | None, label: str) -> str:
    if s is None:
        return "-"
    core = f"{s['median']:.2f}x"
    if s["n"] > 1 and s["min"] != s["max"]:
        core += f" [{s['min']:.2f}-{s['max']:.2f}]"
    return f"{core} {label}".rstrip()


def fmt_peer(r: Row) -> str:
    """The peer column: `name: median [min-max]`, or `name: timed out` (figures of earlier rounds kept)."""
    status, figures = r.get("peer_status", ""), r.get("peer")
    text = fmt_summary(figures, r.get("unit", ""))
    if status:
        text = f"{text} ({status} after {figures['n']} round(s))" if figures else status
    return f"{r['peer_name']}: {text}" if r.get("peer_name") else text


def table(rows: Sequence[Row]) -> str:
    """The single table: figure | vibe-jobs | peer | ratio | goal | met?"""
    header = ["fig", "figure", "vibe-jobs (median [min-max])", "peer", "ratio (pairwise)", "goal", "met?"]
    lines: list[list[str]] = []
    for r in rows:
        peer = fmt_peer(r)
        met = r.get("met")
        lines.append(
            [
                r.get("figure", ""),
                r.get("name", ""),
                fmt_summary(r.get("vibe"), r.get("unit", "")),
                peer,
                fmt_ratio(r.get("ratio"), r.get("ratio_label", "")),
                r.get("goal", ""),
                "-" if met is None else ("yes" if met else "NO"),
            ]
        )
    widths = [max(len(header[i]), *(len(line[i]) for line in lines)) if lines else len(header[i]) for i in range(7)]
    out = [" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    out.append("-+-".join("-" * w for w in widths))
    out += [" | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines]
    notes = [f"  [{r.get('figure', '')}] {r['note']}" for r in rows if r.get("note")]
    return "\n".join(out + (["notes:", *notes] if notes else []))


def cli(measure: Callable[[bool], list[Row]]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small sizes, one or two rounds")
    parser.add_argument("--json", action="store_true", help="print the rows as one JSON line")
    args = parser.parse_args()
    procs.guard()
    began = time.perf_counter()
    rows = measure(args.quick)
    if args.json:
        print(json.dumps({"rows": rows, "seconds": time.perf_counter() - began}))
    else:
        print(table(rows))
        print(f"({time.perf_counter() - began:.1f} s)")


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True)
