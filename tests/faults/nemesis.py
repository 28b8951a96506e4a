"""The nemesis: faults on a seeded random schedule, each logged when it begins and when it is healed.

Cluster faults (`run_cluster`), one every `gap` seconds (uniform), several at once when they overlap:
  kill-worker   SIGKILL a worker; start a new one 0.2-2 s later
  kill-replica  SIGKILL a `serve` replica; start a new one on the same port 0.2-2 s later
  stop-worker   SIGSTOP a worker for 1.3-3 leases (its jobs must be taken over), then SIGCONT
  cut-worker    reset a worker's database connections and refuse new ones, mostly for 1.3-3 leases,
                sometimes for a blip (0.1-0.8 of a lease: nothing should be taken over), then heal
  restart-pg    stop PostgreSQL (-m fast or -m immediate), leave it down 0.2-3 s, start it again
The first five faults are one of each kind (in a seeded order), so even a short run has them all; then
kinds are drawn by WEIGHTS. At least one worker and one replica stay unfaulted, and PostgreSQL
restarts one at a time.
The SQLite flavour (`run_sqlite`): `kills` faults, each 1.5-3 s apart, one of:
  kill-server   SIGKILL the server; start a new one at once
  kill-store    SIGKILL the server's SQLite store process (the server starts another for its next op; writes
                whose answers died with it are read back, `store/sqlite/store.py`)
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field

import anyio
import anyio.to_thread

from tests.faults.history import HistoryWriter
from tests.faults.pgcluster import PgCluster
from tests.faults.procs import Slot
from tests.faults.proxy import Proxies

WEIGHTS = {"kill-worker": 3, "stop-worker": 2, "cut-worker": 2, "kill-replica": 2, "restart-pg": 1}


@dataclass
class Nemesis:
    history: HistoryWriter
    rng: random.Random
    lease: float
    workers: list[Slot] = field(default_factory=list)
    replicas: list[Slot] = field(default_factory=list)
    pg: PgCluster | None = None
    proxies: Proxies | None = None
    proxy_port: dict[str, int] = field(default_factory=dict)
    busy: set[str] = field(default_factory=set)
    _next_id: int = 0
    _first: list[str] = field(default_factory=list)  # kinds still to inject once each, in order

    def __post_init__(self) -> None:
        self._first = self.rng.sample(list(WEIGHTS), len(WEIGHTS))

    def _begin(self, what: str, target: str, pid: int = 0, **values: object) -> int:
        self._next_id += 1
        self.busy.add(target)
        self.history.emit("nemesis", "fault-start", None, fault=self._next_id, what=what, target=target, pid=pid,
                          **values)  # fmt: skip
        return self._next_id

    def _end(self, fault: int, target: str, **values: object) -> None:
        self.history.emit("nemesis", "fault-end", None, fault=fault, target=target, **values)
        self.busy.discard(target)

    async def kill(self, what: str, slot: Slot, down: float) -> None:
        fault = self._begin(what, slot.name, slot.pid)
        await anyio.to_thread.run_sync(slot.kill)
        await anyio.sleep(down)
        slot.start()
        await self._until_listening(slot)
        self._end(fault, slot.name, new_pid=slot.pid)

    @staticmethod
    async def _until_listening(slot: Slot, seconds: float = 120) -> None:
        """Until the replacement serves (bounded). One that exits as it starts (PostgreSQL down then) is logged
        and started again by the harness's monitor, so this only waits for the port."""
        with anyio.fail_after(seconds):
            while True:
                if await anyio.to_thread.run_sync(slot.listening):
                    return
                await anyio.sleep(0.1)  # nothing announces that a port opened: poll it, bounded

    async def pause(self, slot: Slot, seconds: float) -> None:
        fault = self._begin("stop-worker", slot.name, slot.pid, seconds=seconds)
        slot.signal(signal.SIGSTOP)
        try:
            await anyio.sleep(seconds)
        finally:
            slot.signal(signal.SIGCONT)
            self._end(fault, slot.name)

    async def cut(self, slot: Slot, seconds: float) -> None:
        assert self.proxies is not None
        port = self.proxy_port[slot.name]
        fault = self._begin("cut-worker", slot.name, slot.pid, seconds=seconds)
        try:
            reset = await anyio.to_thread.run_sync(self.proxies.cut, port)
            self.history.emit("nemesis", "cut", None, fault=fault, reset=reset)
            await anyio.sleep(seconds)
        finally:
            await anyio.to_thread.run_sync(self.proxies.heal, port)
            self._end(fault, slot.name)

    async def restart_pg(self, mode: str, down: float) -> None:
        assert self.pg is not None
        pg = self.pg
        fault = self._begin("restart-pg", "postgres", mode=mode, down=down)
        try:
            await anyio.to_thread.run_sync(pg.shutdown, mode)
            self.history.emit("nemesis", "pg-down", None, fault=fault)
            await anyio.sleep(down)
        finally:
            await anyio.to_thread.run_sync(pg.start)
            self._end(fault, "postgres")

    # -- schedules ---------------------------------------------------------------------------

    def _free(self, slots: list[Slot]) -> list[Slot]:
        """Slots a fault may hit now: not under a fault, and never the last unfaulted one."""
        free = [s for s in slots if s.name not in self.busy]
        return free if len(free) >= 2 else []

    def _pick(self) -> Callable[[], Coroutine[None, None, None]] | None:
        """The next fault to inject, or None when its kind has no target now (a first-round kind is kept)."""
        what = self._first[0] if self._first else self.rng.choices(list(WEIGHTS), weights=list(WEIGHTS.values()))[0]
        fault = self._plan(what)
        if fault is not None and self._first:
            self._first.pop(0)
        return fault

    def _plan(self, what: str) -> Callable[[], Coroutine[None, None, None]] | None:
        rng = self.rng
        if what == "restart-pg":
            if "postgres" in self.busy or self.pg is None:
                return None
            mode, down = rng.choice(("fast", "immediate")), rng.uniform(0.2, 3.0)
            return lambda: self.restart_pg(mode, down)
        free = self._free(self.replicas if what == "kill-replica" else self.workers)
        if not free:
            return None
        slot, down, lasting = rng.choice(free), rng.uniform(0.2, 2.0), self.lease * rng.uniform(1.3, 3.0)
        if what in ("kill-worker", "kill-replica"):
            return lambda: self.kill(what, slot, down)
        if what == "stop-worker":
            return lambda: self.pause(slot, lasting)
        seconds = lasting if rng.random() < 0.7 else self.lease * rng.uniform(0.1, 0.8)
        return lambda: self.cut(slot, seconds)

    async def run_cluster(self, seconds: float, gap: tuple[float, float] = (1.5, 5.0)) -> None:
        """Inject faults for `seconds`, then wait until every fault is healed."""
        deadline = anyio.current_time() + seconds
        async with anyio.create_task_group() as tg:
            while (left := deadline - anyio.current_time()) > 0:
                await anyio.sleep(min(left, self.rng.uniform(*gap)))
                fault = self._pick() if anyio.current_time() < deadline else None
                if fault is not None:
                    tg.start_soon(fault)

    async def run_sqlite(self, server: Slot, kills: int, gap: tuple[float, float] = (1.5, 3.0)) -> None:
        for i in range(kills):
            await anyio.sleep(self.rng.uniform(*gap))
            if i % 2:  # every other one: the two kinds alike in number, whatever the seed
                await self.kill_store(server)
            else:
                await self.kill("kill-server", server, 0.0)

    async def kill_store(self, server: Slot) -> None:
        pid = await anyio.to_thread.run_sync(server.store_process)
        if pid is None:
            return  # between two store processes (one was just killed): nothing to kill now
        fault = self._begin("kill-store", server.name, pid, server_pid=server.pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        self._end(fault, server.name)
