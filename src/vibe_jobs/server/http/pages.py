"""Server-rendered HTML: the jobs table and the job page, readable without JavaScript.

The script (static/dashboard.js) only adds live updates and the cancel confirmation; every figure, row and
action is in the HTML itself. Values are escaped here, in one place (`e`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any
from urllib.parse import urlencode

from vibe_jobs.manager import JobPage
from vibe_jobs.metrics import Statistics
from vibe_jobs.models import Job, JobMetrics
from vibe_jobs.schedules import Schedule
from vibe_jobs.states import JobStatus

STATUSES = [s.value for s in JobStatus]


def e(value: object) -> str:
    return escape("" if value is None else str(value), quote=True)


@dataclass(frozen=True, slots=True)
class View:
    """What every page needs besides its own content."""

    csrf: str
    now: int
    stats: Statistics | None = None
    learned: Mapping[str, Mapping[str, float]] | None = None  # vibe_jobs.durations summary, by key


def duration(ms: int | float | None) -> str:
    if ms is None:
        return ""
    ms = max(0, ms)  # a running job's time, read after the clock stepped back
    s = ms / 1000
    if s < 1:
        return f"{ms:.0f} ms"
    if s < 120:
        return f"{s:.1f} s"
    return f"{s / 60:.0f} min" if s < 7200 else f"{s / 3600:.1f} h"


def when(ms: int | None) -> str:
    if ms is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d} UTC"


def layout(title: str, body: str, view: View) -> str:
    # the icon `data:,` (none): the browser's own ask for /favicon.ico was a 404, a console error on every page
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)} · vibe-jobs</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/static/dashboard.css">
<script src="/static/dashboard.js" defer></script>
</head><body data-csrf="{e(view.csrf)}">
<header><a class="brand" href="/">vibe-jobs</a>{health_banner(view.stats)}</header>
<main>{body}</main>
</body></html>"""


def health_banner(stats: Statistics | None) -> str:
    if stats is None:
        return ""
    h = stats.health
    reasons = "; ".join(h.reasons) or "queue and error rate within limits"
    return f'<p id="health" class="health {e(h.status)}" role="status">Health: <b>{e(h.status)}</b> — {e(reasons)}</p>'


def summary(stats: Statistics | None) -> str:
    if stats is None:
        return ""
    rate = "-" if stats.error_rate_5m is None else f"{stats.error_rate_5m:.0%}"
    cells = [
        ("queue", "Queue depth", stats.queue_depth),
        ("running", "Running", stats.running),
        ("throughput", "Finished / min", stats.throughput_per_minute),
        ("errors", "Error rate (5 min)", rate),
    ]
    items = "".join(
        f'<div class="figure"><span class="label">{e(label)}</span> <b id="fig-{key}">{e(value)}</b>'
        f'<svg class="spark" id="spark-{key}" viewBox="0 0 60 20" aria-hidden="true"></svg></div>'
        for key, label, value in cells
    )
    return f'<section class="figures" aria-label="queue figures">{items}</section>'


def progress_cell(job: Job) -> str:
    value = job.progress_percentage or 0
    stage = job.details.current_stage if job.details else None
    return (
        f'<progress max="100" value="{value:.0f}" aria-label="progress">{value:.0f}%</progress> '
        f'<span class="pct">{value:.0f}%</span> <span class="stage">{e(stage)}</span> '
        f'<span class="msg">{e(job.progress_message)}</span>'
    )


def job_row(job: Job, now: int) -> str:
    age = duration(now - job.created_at)
    ran = duration((job.finished_at or now) - job.started_at) if job.started_at else ""
    return (
        f'<tr data-job="{e(job.id)}" data-status="{e(job.status.value)}">'
        f'<td><span class="status {e(job.status.value)}">{e(job.status.value)}</span></td>'
        f'<td><a href="/jobs/{e(job.id)}">{e(job.tool_name)}</a><br><small>{e(job.id[:12])}</small></td>'
        f'<td>{e(job.priority.value)}</td><td class="progress">{progress_cell(job)}</td>'
        f'<td>{e(age)}{" / " + e(ran) if ran else ""}</td><td class="attempt">{job.attempt}</td></tr>'
    )


def filters(status: str | None, tool: str | None, tools: Iterable[str]) -> str:
    options = "".join(
        f'<option value="{s}"{" selected" if s == status else ""}>{s or "any"}</option>' for s in ["", *STATUSES]
    )
    known = "".join(f'<option value="{e(t)}"></option>' for t in sorted(tools))
    return (
        '<form class="filters" method="get" action="/">'
        f'<label for="f-status">Status</label> <select id="f-status" name="status">{options}</select> '
        f'<label for="f-tool">Tool</label> <input id="f-tool" name="tool" list="tools" value="{e(tool)}">'
        f'<datalist id="tools">{known}</datalist> <button type="submit">Filter</button></form>'
    )


def jobs_page(
    page: JobPage,
    view: View,
    status: str | None,
    tool: str | None,
    tools: Iterable[str],
    first: bool = True,
    schedules: tuple[Sequence[Schedule], int] = ((), 0),
) -> str:
    """`first`: the newest page (no cursor), the only one a new job belongs on; unfiltered, the script adds it live.
    `schedules`: those shown, and how many more the store keeps."""
    rows = "".join(job_row(j, view.now) for j in page.jobs) or '<tr class="empty"><td colspan="6">no jobs</td></tr>'
    more = ""
    if page.next_cursor:
        query = urlencode({k: v for k, v in {"status": status, "tool": tool, "cursor": page.next_cursor}.items() if v})
        more = f'<p><a class="next" rel="next" href="/?{e(query)}">Older jobs →</a></p>'
    live = "1" if first and not status and not tool else "0"
    body = (
        f"<h1>Jobs</h1>{summary(view.stats)}{schedules_table(*schedules)}{learned_table(view.learned)}"
        f"{filters(status, tool, tools)}"
        f'<table id="jobs" data-live-insert="{live}"><caption class="sr">Jobs, newest first</caption><thead><tr>'
        '<th scope="col">Status</th><th scope="col">Tool</th><th scope="col">Priority</th>'
        '<th scope="col">Progress</th><th scope="col">Age / ran</th><th scope="col">Attempt</th>'
        f"</tr></thead><tbody>{rows}</tbody></table>{more}"
    )
    return layout("Jobs", body, view)


def schedules_table(schedules: Sequence[Schedule], more: int = 0) -> str:
    """The schedules, with their last and next firing and the outcome of the job each fired last; `more`: those
    left out."""
    if not schedules:
        return ""
    rows = "".join(
        f'<tr data-schedule="{e(s.schedule_id)}"><td>{e(s.schedule_id)}</td><td>{e(s.tool)}</td>'
        f"<td>{e(s.timing_text())}{' (paused)' if s.paused else ''}</td>"
        f"<td>{e(when(s.last_fired_at))}</td><td>{e(s.last_outcome)}</td><td>{e(when(s.next_fire_at))}</td></tr>"
        for s in schedules
    )
    rest = f"<p>and {more:,} more schedules: <code>vibe-jobs schedules list</code></p>" if more else ""
    return (
        '<details class="schedules" open><summary>Schedules</summary><table id="schedules"><thead><tr>'
        '<th scope="col">Schedule</th><th scope="col">Tool</th><th scope="col">When</th>'
        '<th scope="col">Last fired</th><th scope="col">Last outcome</th><th scope="col">Next</th>'
        f"</tr></thead><tbody>{rows}</tbody></table>{rest}</details>"
    )


def learned_table(learned: Mapping[str, Mapping[str, float]] | None) -> str:
    if not learned:
        return ""
    rows = "".join(
        f"<tr><td>{e(key)}</td><td>{e(v['runs'])}</td><td>{e(duration(v['typicalMs']))}</td>"
        f"<td>{e(duration(v['highMs']))}</td></tr>"
        for key, v in sorted(learned.items())
    )
    return (
        '<details class="learned"><summary>Learned durations</summary><table><thead><tr>'
        '<th scope="col">Tool | operation</th><th scope="col">Runs</th><th scope="col">Typical (mean)</th>'
        f'<th scope="col">High (p90, used by polling)</th></tr></thead><tbody>{rows}</tbody></table></details>'
    )


def pre(value: Any) -> str:
    return f"<pre>{e(json.dumps(value, indent=2, ensure_ascii=False, default=str))}</pre>"


class Html(str):
    """Markup built here with every value escaped (`e`): shown as it is."""


def dl(items: Iterable[tuple[str, object]]) -> str:
    shown = (f"<dt>{e(k)}</dt><dd>{v if isinstance(v, Html) else e(v)}</dd>" for k, v in items if v not in (None, ""))
    return "<dl>" + "".join(shown) + "</dl>"


def job_links(ids: Iterable[str]) -> Html:
    return Html(", ".join(f'<a href="/jobs/{e(i)}">{e(i)}</a>' for i in ids))


def job_page(
    job: Job, metrics: JobMetrics, view: View, expected: int | None = None, history: list[dict[str, Any]] | None = None
) -> str:
    d = job.details
    diags = "".join(f"<li>{e(x)}</li>" for x in (d.diagnostics if d else [])) or "<li>none</li>"
    body = (
        f'<p><a href="/">← all jobs</a></p>'
        f'<h1><span class="tool">{e(job.tool_name)}</span> <small>{e(job.id)}</small></h1>'
        f'<section id="job" data-job="{e(job.id)}" data-status="{e(job.status.value)}" aria-label="state">'
        f'<p>Status: <span class="status {e(job.status.value)}" id="job-status">{e(job.status.value)}</span></p>'
        f'<p class="progress">{progress_cell(job)}</p>{actions(job, view.csrf)}</section>'
        f"<h2>Parameters</h2>{pre(job.shown(result=False)['params'])}"
        f'<h2>Diagnostics</h2><ul id="diagnostics">{diags}</ul>'
        f"{result_section(job)}<h2>Run</h2>{dl(run_facts(job, metrics, expected))}"
        f"{stage_history(history)}"
    )
    return layout(f"Job {job.id[:12]}", body, view)


def run_facts(job: Job, m: JobMetrics, expected: int | None) -> list[tuple[str, object]]:
    learned = " (learned)" if expected is not None and job.estimated_duration is None else ""
    expect = duration(expected) + learned if expected else ""
    return [
        ("Priority", job.priority.value),
        ("Operation type", job.operation_type),
        ("Attempt", job.attempt),
        ("Retries", job.metadata.retry_count if job.metadata else m.retry_count),
        ("Errors", m.error_count),
        ("Duration", duration(m.duration)),
        ("Expected duration", expect),
        ("CPU", f"{m.resource_usage.average_cpu_usage:.0f}% average"),
        ("Peak memory", f"{m.resource_usage.peak_memory_mb:.1f} MB"),
        ("Dependencies", job_links(job.dependencies)),
        ("Created", when(job.created_at)),
        ("Started", when(job.started_at)),
        ("Finished", when(job.finished_at)),
    ]


def result_section(job: Job) -> str:
    if job.result is None:
        return ""
    blocks = job.result.get("content") or []
    texts = [b.get("text", "") for b in blocks if isinstance(b, dict) and b.get("type") == "text"]
    error = ' class="error"' if job.result.get("isError") else ""
    structured = job.result.get("structuredContent")
    return (
        f'<h2>Result</h2><div id="result"{error}>{"".join(f"<pre>{e(t)}</pre>" for t in texts)}'
        f"{pre(structured) if structured is not None else ''}</div>"
    )


def percent(value: object) -> str:
    return f"{value:.0f}%" if isinstance(value, int | float) else ""


def stage_history(history: list[dict[str, Any]] | None) -> str:
    if not history:
        return ""
    rows = "".join(
        f"<tr><td>{e(when(h.get('at')))}</td><td>{e(h.get('stage'))}</td><td>{e(percent(h.get('progress')))}</td></tr>"
        for h in history
    )
    return (
        '<h2>Stage history</h2><table id="stages"><thead><tr><th scope="col">At</th><th scope="col">Stage</th>'
        f'<th scope="col">Progress</th></tr></thead><tbody>{rows}</tbody></table>'
    )


def actions(job: Job, csrf: str) -> str:
    forms = []
    if not job.status.finished:
        forms.append(
            _form(job.id, "cancel", "Cancel job", csrf, confirm="Stop this job? OK stops it; Cancel keeps it running.")
        )
    if job.status in (JobStatus.FAILED, JobStatus.CANCELLED):
        forms.append(_form(job.id, "retry", "Retry as a new job", csrf))
    return f'<div class="actions">{"".join(forms)}</div>' if forms else ""


def _form(job_id: str, action: str, label: str, csrf: str, confirm: str | None = None) -> str:
    ask = f' data-confirm="{e(confirm)}"' if confirm else ""
    return (
        f'<form method="post" action="/jobs/{e(job_id)}/{action}"{ask}>'
        f'<input type="hidden" name="csrf" value="{e(csrf)}"><button type="submit" class="{action}">{e(label)}</button>'
        "</form>"
    )


def message_page(title: str, text: str, view: View) -> str:
    return layout(title, f'<h1>{e(title)}</h1><p role="alert">{e(text)}</p><p><a href="/">← all jobs</a></p>', view)
