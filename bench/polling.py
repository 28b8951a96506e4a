"""Figure 6: polling efficiency with a simulated clock.

A job of L seconds (5, 30, 120) starts at t=0 and reports steady progress once a second (100*k/L % at
t=k); it finishes at t=L. An agent reads it first at t=0 and then:
  (a) vibe-jobs: follows the pollingRecommendation of the real JobManager.poll (injected clock, memory store);
  (b) the original service's schedule: wait = 1000 ms * min(2^floor(accessCount/3), 10) after each read;
      (b2) the original's advice while running, "check again in 2 s", is shown in the notes;
  (c) naive: reads every second.
Figures: reads until the agent sees the job finished, and the delay between finishing and that read.
Goal: (a) needs fewer reads than (b) and (c), and its delay is <= 10 % of L.

Figure 6b, learned durations: a job of L seconds that reports no progress at all (a black box such as
run-command), read as in (a). Once with no history of its tool, once after 10 completed runs of the tool
(lengths L * 0.9 .. L * 1.08, so the learned p90 is about L): the recommendation clamps to the learned finish.

Run: .venv/bin/python bench/polling.py [--json]
"""

from __future__ import annotations

import math
from collections.abc import Callable

import anyio
import common
from common import Row, row

from vibe_jobs import JobManager, JobStatus, Settings
from vibe_jobs.logs import configure_logging
from vibe_jobs.store import MemoryStore

T0 = 1_700_000_000.0
LENGTHS = (5, 30, 120)
RESULT = {"content": [{"type": "text", "text": "ok"}], "isError": False}


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return T0 + self.t


async def vibe_agent(length: int) -> tuple[int, float]:
    """Reads and delay (s) for an agent that follows vibe-jobs' recommendation."""
    clock = Clock()
    manager = JobManager(MemoryStore(), Settings(), clock=clock)
    job_id = await manager.create_job("work", {"seconds": length})
    await manager.update_job_status(job_id, JobStatus.RUNNING)
    reported, finished, reads, t_read = 0, False, 0, 0.0
    while True:
        while reported + 1 <= min(t_read, length - 1e-9):  # the job's progress reports up to the read
            reported += 1
            clock.t = reported
            await manager.update_progress(job_id, 100 * reported / length, f"step {reported}")
        if t_read >= length and not finished:
            clock.t, finished = length, True
            await manager.set_job_result(job_id, RESULT)
        clock.t = t_read
        msg = await manager.poll(job_id)
        reads += 1
        if msg.rate_limited:
            raise AssertionError(f"an agent following the recommendation was rate-limited at t={t_read}")
        if msg.status is JobStatus.COMPLETED:
            return reads, float(t_read - length)
        assert msg.polling_recommendation is not None
        t_read = (msg.polling_recommendation.next_check_time / 1000) - T0


async def silent_agent(length: int, history: int) -> tuple[int, float]:
    """Reads and delay (s) for a job of `length` s with no progress reports, after `history` runs of its tool."""
    clock = Clock()
    manager = JobManager(MemoryStore(), Settings(), clock=clock)
    for i in range(history):  # earlier runs of the same tool, 0.9 L .. 1.08 L
        done = await manager.create_job("black-box", {})
        await manager.update_job_status(done, JobStatus.RUNNING)
        clock.t += length * (0.9 + 0.02 * i)
        await manager.set_job_result(done, RESULT)
    start = clock.t
    job_id = await manager.create_job("black-box", {})
    await manager.update_job_status(job_id, JobStatus.RUNNING)
    reads, t_read, finished = 0, start, False
    while True:
        if not finished and t_read >= start + length:
            clock.t, finished = start + length, True
            await manager.set_job_result(job_id, RESULT)
        clock.t = t_read
        msg = await manager.poll(job_id)
        reads += 1
        if msg.status is JobStatus.COMPLETED:
            return reads, float(t_read - start - length)
        assert msg.polling_recommendation is not None and not msg.rate_limited
        t_read = (msg.polling_recommendation.next_check_time / 1000) - T0


SILENT_LENGTHS = (10, 45, 100)  # not 2^k - 1 s: a blind backoff (reads at 1, 3, 7, 15, 31 ... s) lands late


def learned_rows() -> list[Row]:
    rows: list[Row] = []
    for length in SILENT_LENGTHS:
        n_reads, n_delay = anyio.run(silent_agent, length, 0)
        h_reads, h_delay = anyio.run(silent_agent, length, 10)
        rows.append(
            row(
                "6b", f"{length} s silent job: delay, learned history vs none", "s", [h_delay],
                peer_name="no history", peer=[n_delay], goal=f"<= {0.1 * length:g} s and below none",
                met=h_delay <= 0.1 * length and h_delay <= n_delay,
                note=f"6b ({length} s): reads {h_reads} with history, {n_reads} without",
            )
        )  # fmt: skip
    return rows


def schedule_agent(length: int, wait_after: Callable[[int], float]) -> tuple[int, float]:
    """Reads and delay for an agent that waits `wait_after(reads so far)` seconds after each read."""
    t, reads = 0.0, 0
    while True:
        reads += 1
        if t >= length:
            return reads, t - length
        t += wait_after(reads)


def original(reads: int) -> float:
    return float(min(2 ** (reads // 3), 10))


def bench_rows(quick: bool) -> list[Row]:
    configure_logging("warning")
    rows: list[Row] = []
    for length in LENGTHS:
        a_reads, a_delay = anyio.run(vibe_agent, length)
        b_reads, b_delay = schedule_agent(length, original)
        b2_reads, b2_delay = schedule_agent(length, lambda _: 2.0)
        c_reads, c_delay = schedule_agent(length, lambda _: 1.0)
        long_poll_reads = math.ceil(length / 50)
        met = a_reads < b_reads and a_reads < c_reads and a_delay <= 0.1 * length
        rows.append(
            row(
                "6",
                f"{length} s job: reads until finished seen",
                "reads",
                [a_reads],
                peer_name="original",
                peer=[b_reads],
                ratio=[a_reads / b_reads],
                ratio_label="of original",
                goal="fewer than (b) and (c); delay <= 10%",
                met=met,
                note=f"6 ({length} s): naive 1 s: {c_reads} reads, delay {c_delay:.1f} s; original's 2 s advice: "
                f"{b2_reads} reads, delay {b2_delay:.1f} s; long-poll (waitSeconds 50): {long_poll_reads} "
                "read(s), delay ~0",
            )
        )
        rows.append(
            row(
                "6",
                f"{length} s job: delay finish -> agent knows",
                "s",
                [a_delay],
                peer_name="original",
                peer=[b_delay],
                goal=f"<= {0.1 * length:g} s",
                met=a_delay <= 0.1 * length,
            )
        )
    return rows + learned_rows()


if __name__ == "__main__":
    common.cli(bench_rows)
