"""The bench table as a picture (bench/results/latest.svg): one panel per figure, stdlib only.

Each row of a figure gets one axis of its own, from zero, shared by its two bars: vibe-jobs (median, with a
min-max whisker) and the peer it is compared with. A dashed red line marks the goal where the goal names a
value in the row's unit (`>= 50,000 jobs/s`, `<= 10 ms`) or a multiple of the peer (`<= 0.5x FastMCP`,
`ratio <= 1.2`). A peer that timed out or failed is written in its place, in red.

Run: .venv/bin/python bench/svg.py bench/results/latest.json out.svg   (redraws a saved run)
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Iterator
from html import escape
from pathlib import Path
from typing import Any

from common import Row, Summary, fmt_ratio, fmt_summary

WIDTH, PAD, LABEL_W, VALUE_W = 1000, 14, 210, 190
BAR_X, BAR_W = PAD + LABEL_W, WIDTH - 2 * PAD - LABEL_W - VALUE_W
BAR_H, NAME_H, ROW_GAP, TITLE_H = 13, 17, 9, 26
VIBE, PEER, GOAL, BAD, INK, MUTED = "#2f6fb0", "#e39b3a", "#c0392b", "#c0392b", "#222", "#666"
TITLES = {
    "1": "1 · in-process throughput (jobs/s, higher is better)",
    "2": "2 · MCP round trip over stdio (ms, lower is better)",
    "3": "3 · call to result against FastMCP 4 background tasks (lower is better)",
    "4": "4 · concurrency over MCP on streamable HTTP",
    "5": "5 · scale: 100,000 retained jobs against 1,000",
    "6": "6 · polling efficiency (simulated clock; lower is better)",
    "9": "9 · push: finish -> client knows, 30 s job (ms, lower is better)",
    "pg": "PostgreSQL cluster (bench/postgres.py)",
    "!": "figures that failed",
}
GOAL_RE = re.compile(r"(?P<ratio>ratio\s*)?(?P<op>[<>]=)\s*(?P<num>\d[\d,]*(?:\.\d+)?)\s*(?P<rest>\S*)")


def panel_key(figure: str) -> str:
    match = re.match(r"\d+", figure)
    return match.group(0) if match else figure


def goal_lines(r: Row) -> list[tuple[float, str]]:
    """Goal values on the row's axis: absolute ones in the row's unit, and multiples of the peer's median."""
    out = []
    peer: Summary | None = r.get("peer")
    for clause in re.split(r" and |;", r.get("goal", "")):
        m = GOAL_RE.search(clause)
        if not m:
            continue
        num, op = float(m["num"].replace(",", "")), "≥" if m["op"] == ">=" else "≤"
        if m["ratio"] or m["rest"] == "x":
            if peer:
                out.append((num * peer["median"], f"goal {op} {num:g}x"))
        elif m["rest"] and m["rest"] == r.get("unit"):
            out.append((num, f"goal {op} {m['num']}"))
    return out


def text(
    x: float, y: float, body: str, size: int = 11, fill: str = INK, anchor: str = "start", weight: str = ""
) -> str:
    bold = f' font-weight="{weight}"' if weight else ""
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" fill="{fill}" text-anchor="{anchor}"{bold}>'
        f"{escape(body)}</text>"
    )


def bar(y: float, s: Summary, scale: float, color: str, unit: str) -> Iterator[str]:
    """A median bar with its min-max whisker and the value written after it."""

    def x(v: float) -> float:
        return BAR_X + BAR_W * v / scale

    width = max(1.0, x(s["median"]) - BAR_X)
    yield f'<rect x="{BAR_X}" y="{y:.1f}" width="{width:.1f}" height="{BAR_H}" fill="{color}"/>'
    if s["n"] > 1 and s["min"] != s["max"]:
        mid = y + BAR_H / 2
        yield f'<path d="M{x(s["min"]):.1f} {mid:.1f}H{x(s["max"]):.1f}" stroke="{INK}" stroke-width="1"/>'
        for v in (s["min"], s["max"]):
            yield f'<path d="M{x(v):.1f} {mid - 4:.1f}V{mid + 4:.1f}" stroke="{INK}" stroke-width="1"/>'
    yield text(x(max(s["max"], s["median"])) + 6, y + BAR_H - 2, fmt_summary(s, unit), 10, MUTED)


def row_scale(r: Row) -> float:
    values = [g for g, _ in goal_lines(r)]
    for key in ("vibe", "peer"):
        s: Summary | None = r.get(key)  # type: ignore[assignment]
        if s:
            values += [s["max"], s["median"]]
    return max(values, default=1.0) * 1.05 or 1.0


def row_height(r: Row) -> int:
    bars = 1 + bool(r.get("peer_name"))
    return NAME_H + bars * (BAR_H + 4) + ROW_GAP + (8 if len(goal_lines(r)) > 1 else 0)


def draw_row(r: Row, y: float) -> Iterator[str]:
    yield text(PAD, y + 12, f"{r.get('figure', '')}  {r.get('name', '')}", 11, INK)
    if r.get("ratio"):
        ratio = fmt_ratio(r.get("ratio"), r.get("ratio_label", ""))
        yield text(WIDTH - PAD, y + 12, f"ratio {ratio}", 10, MUTED, "end")
    y += NAME_H
    scale, unit = row_scale(r), r.get("unit", "")
    top = y
    if r.get("vibe"):
        yield text(BAR_X - 6, y + BAR_H - 2, "vibe-jobs", 10, VIBE, "end", "bold")
        yield from bar(y, r["vibe"], scale, VIBE, unit)  # type: ignore[arg-type]
    elif r.get("note"):
        yield text(BAR_X, y + BAR_H - 2, r["note"][:150], 10, BAD)
    if r.get("peer_name"):
        y += BAR_H + 4
        yield from draw_peer(r, y, scale, unit)
    for i, (value, label) in enumerate(goal_lines(r)):
        gx = BAR_X + BAR_W * value / scale
        yield f'<path d="M{gx:.1f} {top - 3:.1f}V{y + BAR_H + 3:.1f}" stroke="{GOAL}" stroke-dasharray="4 3"/>'
        ly = top - 4 if i % 2 == 0 else y + BAR_H + 11  # a second goal's label goes below, not over the first
        yield text(gx + 3, ly, label, 9, GOAL)


def draw_peer(r: Row, y: float, scale: float, unit: str) -> Iterator[str]:
    name = str(r.get("peer_name", ""))
    yield text(BAR_X - 6, y + BAR_H - 2, name[:34], 10, PEER, "end", "bold")
    status, peer = r.get("peer_status", ""), r.get("peer")
    if peer:
        yield from bar(y, peer, scale, PEER, unit)
    if status:
        where = BAR_X + (BAR_W * peer["max"] / scale + 150 if peer else 0)
        said = f"{status} after {peer['n']} round(s)" if peer else status
        yield text(where, y + BAR_H - 2, said, 11, BAD, weight="bold")


def panels(rows: list[Row]) -> list[tuple[str, list[Row]]]:
    groups: dict[str, list[Row]] = {}
    for r in rows:
        groups.setdefault(panel_key(r.get("figure", "")), []).append(r)
    return list(groups.items())


def draw_panel(key: str, rows: list[Row], y: float) -> tuple[list[str], float]:
    height = TITLE_H + sum(row_height(r) for r in rows) + 6
    out = [
        f'<rect x="4" y="{y:.1f}" width="{WIDTH - 8}" height="{height}" rx="6" fill="#f6f7f9" stroke="#d9dde3"/>',
        text(PAD, y + 18, TITLES.get(key, f"figure {key}"), 13, INK, weight="bold"),
    ]
    ry = y + TITLE_H
    for r in rows:
        out += draw_row(r, ry)
        ry += row_height(r)
    return out, y + height + 10


def header(report: dict[str, Any]) -> list[str]:
    m, v = report.get("machine", {}), report.get("versions", {})
    load = "/".join(f"{x:.1f}" for x in m.get("loadavg", []))
    after = "/".join(f"{x:.1f}" for x in m.get("loadavg_after", []))
    line = (
        f"{report.get('time', '')} · {m.get('cpus', '?')} CPUs · load {load} -> {after} · commit "
        f"{v.get('commit', '?')} · {report.get('seconds', 0):.0f} s · exit {report.get('exit', '?')}"
    )
    return [
        text(PAD, 24, "vibe-jobs make bench: vibe-jobs next to each peer, one axis per row", 15, INK, weight="bold"),
        text(PAD, 42, line, 11, MUTED),
        f'<rect x="{PAD}" y="52" width="12" height="10" fill="{VIBE}"/>',
        text(PAD + 16, 61, "vibe-jobs (median, whisker min-max)", 10),
        f'<rect x="{PAD + 230}" y="52" width="12" height="10" fill="{PEER}"/>',
        text(PAD + 246, 61, "peer / baseline", 10),
        f'<path d="M{PAD + 350} 51V63" stroke="{GOAL}" stroke-dasharray="4 3"/>',
        text(PAD + 356, 61, "goal", 10, GOAL),
        text(PAD + 400, 61, "red text: the peer timed out or failed", 10, BAD),
    ]


def render(report: dict[str, Any]) -> str:
    body, y = header(report), 76.0
    for key, rows in panels(report.get("rows", [])):
        drawn, y = draw_panel(key, rows, y)
        body += drawn
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{y:.0f}" viewBox="0 0 {WIDTH} {y:.0f}" '
        f'font-family="DejaVu Sans, Helvetica, Arial, sans-serif">\n'
        f'<rect width="100%" height="100%" fill="#fff"/>\n' + "\n".join(body) + "\n</svg>\n"
    )


if __name__ == "__main__":
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("report", type=Path, help="a bench report (bench/results/latest.json)")
    cli.add_argument("svg", type=Path, help="the picture to write")
    args = cli.parse_args()
    args.svg.write_text(render(json.loads(args.report.read_text())))
