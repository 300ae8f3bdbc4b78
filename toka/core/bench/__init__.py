"""Benchmarks of the kernel path and of replay, on scratch homes (never the user's).

``kernel``: signed, capability-checked operations submitted through one shared
Runtime by several submitters at once, each an agent with its own key and token;
then the same with every submitter waiting for each outcome before sending the
next (``sync_*``), and by one such submitter alone (``single_*``). Operations are
signed before the clock starts: what is measured is what the runtime does with them
(token and signature checks, the kernel, the hash chain, the commit and its sync at
the chosen durability), and latency runs from submission to acknowledgement.

The headline figure has each submitter keep ``window`` operations in flight
(``Runtime.submit_async``), as a client streaming work does. A submitter that waits
for every outcome is bound by latency instead: its next operation cannot start
before the last one is on disk. Measured on a 2-vCPU VM with ``full`` durability,
one cycle of 4 waiting submitters took about 0.8 ms, its steps one after the other:
checking the 4 signatures (Ed25519 through libsodium, about 50 us each, off the
GIL, 2 at a time) and gathering them, about 0.3 ms; deciding and writing them in one
transaction, about 0.17 ms; the sync of the WAL inside the commit, about 0.25 ms;
the wake-ups. With operations in flight, batches grow while the disk syncs, and the
interpreter is what bounds throughput: their signatures are checked in batches by a
child process (``runtime.signatures``), and what is left holds the GIL, about 70 us
per operation sampled with ``py-spy --gil`` (the commit thread about 47, the
submitters 16, the signature stage 5). A quarter of the commit thread's share is
the checkpoint every ``checkpoint_interval`` events: a full-state hash (and every
``snapshot_every``-th time a snapshot), a few ms on a state of 10,000 tasks, which
is also what bounds p99.

``replay``: a rebuild from genesis (no snapshots) of a large log, as the runtime's
rebuilds do it (``fold.fold_log``: every link checked, every event folded), next to a
plain scan of the same rows, the floor any replay pays.
"""

from __future__ import annotations

import contextlib
import secrets
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from toka.core.bench.stats import percentile, run_together
from toka.core.errors import InvalidInput
from toka.core.log.fold import fold_log
from toka.core.log.store import parse_location
from toka.core.model import events as ev
from toka.core.model import ops
from toka.core.model.keys import KeyPair
from toka.core.runtime import Outcome, Runtime
from toka.core.runtime.client import Client
from toka.core.runtime.home import Home

Progress = Callable[[str], None]


@contextlib.contextmanager
def _scratch_home(store: str | None = None, checkpoint_interval: int | None = None):
    """A throwaway home: its log in a temporary SQLite file, or in a fresh schema of the
    PostgreSQL database ``store`` (dropped afterwards)."""
    spec = None
    if store is not None:
        spec = parse_location(store, f"toka_bench_{secrets.token_hex(4)}")
        if not spec.is_postgres:
            raise InvalidInput(
                "the bench makes its own SQLite log; --store takes a postgresql:// URL "
                "(the bench runs in a scratch schema there, dropped afterwards)"
            )
    with tempfile.TemporaryDirectory(prefix="toka-bench-") as scratch:
        home = Home(Path(scratch) / "home")
        try:
            home.init(store=spec)
            if checkpoint_interval is not None:
                with home.config_path.open("a") as config:
                    config.write(f"checkpoint_interval = {checkpoint_interval}\n")
            yield home
        finally:
            if spec is not None:
                from toka.core.log.postgres import drop_log

                drop_log(spec.url, spec.schema)


class _Submitter:
    """One agent's work: it completes its own tasks and emits observations."""

    def __init__(self, runtime: Runtime, agent: str, n: int):
        self.client = Client(runtime, agent, token=runtime.token_for(agent, []))
        operator = Client(runtime, token=runtime.token_for("operator", []))
        tasks = []
        n_tasks = n // 2
        scheduled = runtime.submit_many(
            [operator.sign(ops.ScheduleTask(agent, f"bench task {i}")) for i in range(n_tasks)]
        )
        for result in scheduled:
            tasks.append(result.first(ev.TaskScheduled).task)  # type: ignore[union-attr]
        self.plan: list[ops.Operation] = []
        for i in range(n):
            if i % 2 == 1 and tasks:
                self.plan.append(ops.CompleteTask(tasks.pop(), {"i": i}))
            else:
                self.plan.append(ops.EmitObservation(agent, {"i": i, "bench": True}))
        self.work: list[ops.SignedOperation] = []
        self.latencies: list[float] = []
        self.errors = 0

    def run(self, runtime: Runtime, start: threading.Barrier, window: int) -> None:
        """Submit the work with up to ``window`` operations in flight (1: wait for each)."""
        clock = time.perf_counter
        start.wait()
        if window <= 1:
            for signed in self.work:
                t0 = clock()
                self._count(runtime.submit(signed), t0)
            return
        in_flight: deque = deque()
        for signed in self.work:
            if len(in_flight) >= window:
                t0, future = in_flight.popleft()
                self._count(future.result(), t0)
            in_flight.append((clock(), runtime.submit_async(signed)))
        while in_flight:
            t0, future = in_flight.popleft()
            self._count(future.result(), t0)

    def _count(self, outcome: Outcome, t0: float) -> None:
        self.latencies.append(time.perf_counter() - t0)
        if outcome.replayed:
            self.errors += 1


def _sign_all(workers: list[_Submitter]) -> None:
    """Sign every planned operation before the clock starts, taking turns between the
    submitters: live clients sign just before they submit, so nonces (time first)
    arrive in about the order they were signed, and the bench keeps that order."""
    for step in zip(*(w.plan for w in workers), strict=True):
        for w, op in zip(workers, step, strict=True):
            w.work.append(w.client.sign(op))


def _kernel_phase(
    submitters: int, n_ops: int, durability: str, window: int = 1, store: str | None = None
) -> dict[str, Any]:
    with _scratch_home(store) as home, Runtime(home, durability=durability) as rt:
        operator = Client(rt)
        per = max(1, n_ops // submitters)
        workers = []
        for i in range(submitters):
            agent, _ = operator.spawn_agent(f"bench-{i}", "manual", key=KeyPair.generate())
            workers.append(_Submitter(rt, agent, per))
        _sign_all(workers)
        barrier = threading.Barrier(submitters + 1)
        threads = [
            threading.Thread(target=w.run, args=(rt, barrier, window), name=f"bench-{i}")
            for i, w in enumerate(workers)
        ]
        elapsed = run_together(threads, barrier)
        head = rt.state.seq
    latencies = [x for w in workers for x in w.latencies]
    done = len(latencies)
    return {
        "ops": done,
        "ops_per_s": round(done / elapsed, 1),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 3),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 3),
        "seconds": round(elapsed, 3),
        "head_seq": head,
    }


def bench_kernel(
    ops_count: int = 20_000,
    submitters: int = 4,
    durability: str = "full",
    window: int = 8,
    progress: Progress | None = None,
    store: str | None = None,
) -> dict[str, Any]:
    """Throughput and latency of signed, checked, durable submissions by ``submitters``
    threads sharing one Runtime, each with ``window`` operations in flight
    (``ops_per_s``/``p50_ms``/``p99_ms``); then each waiting for every outcome
    (``sync_*``); then one submitter waiting for every outcome (``single_*``)."""
    if ops_count < submitters or submitters < 1:
        raise InvalidInput("--ops must be at least --submitters, and --submitters at least 1")
    if window < 1:
        raise InvalidInput("--window must be at least 1")
    phases = {}
    for name, n, depth, what in (
        ("", submitters, window, f"{submitters} submitters, {window} in flight each"),
        ("sync_", submitters, 1, f"{submitters} submitters, each waiting for every outcome"),
        ("single_", 1, 1, "1 submitter, waiting for every outcome"),
    ):
        if progress:
            progress(f"{what}: {ops_count} ops, durability {durability}")
        phases[name] = _kernel_phase(n, ops_count, durability, depth, store)
    data: dict[str, Any] = {
        "store": "postgresql" if store else "sqlite",
        "durability": durability,
        "ops": phases[""]["ops"],
        "submitters": submitters,
        "window": window,
    }
    for name, phase in phases.items():
        for key in ("ops_per_s", "p50_ms", "p99_ms"):
            data[name + key] = phase[key]
    data["single_ops"] = phases["single_"]["ops"]
    return data


def build_log(
    runtime: Runtime, events: int, *, chunk: int = 2000, progress: Progress | None = None
) -> None:
    """Append at least ``events`` events of realistic traffic (observations mostly,
    tasks scheduled and completed) in large batches. The next batch is signed on a
    thread pool while the current one commits."""
    operator = Client(runtime)
    agents = [operator.spawn_agent(f"replay-{i}", "manual")[0] for i in range(4)]
    operator = Client(runtime, token=runtime.token_for("operator", []))
    clients = [Client(runtime, a, token=runtime.token_for(a, [])) for a in agents]
    open_tasks: list[list[str]] = [[] for _ in agents]
    planned = runtime.state.seq
    counter = 0

    def plan() -> list[tuple[Client, ops.Operation]]:
        nonlocal planned, counter
        specs: list[tuple[Client, ops.Operation]] = []
        for _ in range(min(chunk, events - planned)):
            i, k = counter, counter % len(agents)
            if i % 10 == 0:
                specs.append((operator, ops.ScheduleTask(agents[k], f"task {i}", {"n": i})))
            elif i % 10 == 5 and open_tasks[k]:
                specs.append((clients[k], ops.CompleteTask(open_tasks[k].pop(), {"n": i})))
            else:
                specs.append((clients[k], ops.EmitObservation(agents[k], {"n": i, "ok": True})))
            counter += 1
        planned += len(specs)
        return specs

    def sign_all(specs: list[tuple[Client, ops.Operation]]) -> list[ops.SignedOperation]:
        return [client.sign(op) for client, op in specs]

    with ThreadPoolExecutor(2, thread_name_prefix="toka-sign") as pool:

        def sign_async(specs):
            half = len(specs) // 2
            return [pool.submit(sign_all, specs[:half]), pool.submit(sign_all, specs[half:])]

        pending = sign_async(plan())
        while runtime.state.seq < events:
            signed = [s for f in pending for s in f.result()]
            if not signed:
                pending = sign_async(plan())
                continue
            pending = sign_async(plan())
            for result in runtime.submit_many(signed):
                if isinstance(result, Exception):
                    raise result
                if result.op == "task.schedule":
                    task = result.first(ev.TaskScheduled)
                    open_tasks[agents.index(task.agent)].append(task.task)
            if progress:
                progress(f"built {runtime.state.seq} events")


def bench_replay(
    events: int = 200_000, progress: Progress | None = None, store: str | None = None
) -> dict[str, Any]:
    """Time a rebuild from genesis of a log of at least ``events`` events against a raw
    ``SELECT * FROM events ORDER BY seq`` scan of the same rows."""
    if events < 10:
        raise InvalidInput("--events must be at least 10")
    with _scratch_home(store) as home, Runtime(home, durability="normal") as rt:
        t0 = time.perf_counter()
        build_log(rt, events, progress=progress)
        build_s = time.perf_counter() - t0
        n = rt.state.seq
        live_hash = rt.state.state_hash()
        if progress:
            progress("scanning")
        t0 = time.perf_counter()
        rows = rt.log.raw_scan()
        scan_s = time.perf_counter() - t0
        if progress:
            progress("replaying from genesis")
        t0 = time.perf_counter()
        state, _ = fold_log(rt.log)
        replay_s = time.perf_counter() - t0
    if state.state_hash() != live_hash:
        raise RuntimeError("replay reached a different state than the live runtime")
    events_per_s = n / replay_s
    scan_per_s = rows / scan_s
    return {
        "store": "postgresql" if store else "sqlite",
        "events": n,
        "events_per_s": round(events_per_s, 1),
        "raw_scan_rows_per_s": round(scan_per_s, 1),
        "ratio": round(events_per_s / scan_per_s, 3),
        "replay_s": round(replay_s, 3),
        "build_s": round(build_s, 3),
    }


def bench_verify(events: int = 200_000, progress: Progress | None = None) -> dict[str, Any]:
    """Time ``toka verify`` on a log of at least ``events`` events: the default (every
    operation decided again), ``--quick`` (chain, checkpoints, records) and both with
    ``--signatures``."""
    if events < 10:
        raise InvalidInput("--events must be at least 10")
    with _scratch_home() as home, Runtime(home, durability="normal") as rt:
        build_log(rt, events, progress=progress)
        n = rt.state.seq
        timings: dict[str, float] = {}
        for name, quick, signatures in (
            ("quick", True, False),
            ("default", False, False),
            ("quick_signatures", True, True),
            ("default_signatures", False, True),
        ):
            if progress:
                progress(f"verify {name.replace('_', ' + ')}")
            t0 = time.perf_counter()
            rt.verify(quick=quick, signatures=signatures)
            timings[name] = round(time.perf_counter() - t0, 2)
    return {"events": n, "seconds": timings}
