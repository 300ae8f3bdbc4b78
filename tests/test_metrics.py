"""Metrics: counted from the log by following it, served to Prometheus, printed once.

Expected numbers come from the scenario itself and from the log read independently
(events and the operations table, not the metrics' own fold); the server is the real
one, scraped over HTTP and parsed with prometheus-client's own parser. The tests about
the log run on SQLite and on PostgreSQL (``stores``).
"""

from __future__ import annotations

import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from toka_cli import run_toka

from toka.core import approvals, tools
from toka.core.errors import InvalidOperation, MissingExtra, NotFound, TokaError
from toka.core.metrics import read_metrics, start_metrics_server
from toka.core.model import events as ev
from toka.core.model import ops
from toka.core.runtime import Runtime
from toka.core.runtime.client import Client
from toka.core.runtime.home import Home

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
# What a process measures of its own commits, not what the log says.
PROCESS_LOCAL = ("toka_commit_",)


def run_scenario(rt: Runtime, operator: Client) -> dict[str, str]:
    """Agents, tasks, refusals, tool calls and approvals; returns the ids it made."""
    tools.register_builtins(operator)
    a, _ = operator.spawn_agent("a")
    b, _ = operator.spawn_agent("b")
    c, _ = operator.spawn_agent("c")
    operator.pause(b)
    operator.terminate(c)
    t1, t2, t3 = (operator.schedule(a, f"task {i}").first(ev.TaskScheduled).task for i in range(3))
    operator.complete(t1, "done")
    operator.fail(t2, "no")
    with pytest.raises(NotFound):
        operator.pause("ag-404")
    with pytest.raises(InvalidOperation):
        operator.schedule(c, "for a terminated agent")
    assert tools.invoke_as(operator, "echo", {"hi": 1}).ok
    assert tools.invoke_as(operator, "wordcount", {"text": "one two"}).ok
    limit = rt.state.tools["echo"]["1.0.0"].limits["max_output_bytes"]
    failed = tools.invoke_as(operator, "echo", "x" * limit)
    assert failed.error is not None and failed.error.kind == "output_too_large"
    gated, _ = operator.spawn_agent("gated")
    operator.grant(gated, [f"task.schedule:agent/{a}"], 3600, approve=True)
    held = [Client(rt, gated).schedule(a, f"held {i}").pending for i in range(2)]
    approvals.approve(operator, held[0])
    return {"a": a, "b": b, "c": c, "gated": gated, "t3": t3, "held": held[1]}


def from_log(rt: Runtime) -> Samples:
    """The counters, computed from the log's events and operations table."""
    rt.catch_up()
    operations: Counter = Counter()
    calls: Counter = Counter()
    for row in rt.log.operations():
        if row.status == "applied":
            first = rt.log.record(row.first_seq)
            outcome = "pending" if first.kind == "operation.pending" else "accepted"
            operations[(row.kind, outcome, "")] += 1
    for r in rt.log.records():
        p = r.data()
        if r.kind == "operation.rejected":
            operations[(p.op, "refused", p.code)] += 1
        elif r.kind in ("operation.approved", "operation.denied"):
            operations[(p.op_kind, r.kind.removeprefix("operation."), "")] += 1
        elif r.kind == "tool.failed":
            calls[(p.tool, p.error_kind)] += 1
        elif r.kind in ("tool.succeeded", "tool.unknown"):
            calls[(p.tool, r.kind.removeprefix("tool."))] += 1
    out: Samples = {}
    for (op, outcome, code), n in operations.items():
        out[("toka_operations_total", labels(op=op, outcome=outcome, code=code))] = n
    for (tool, outcome), n in calls.items():
        out[("toka_tool_calls_total", labels(tool=tool, outcome=outcome))] = n
    return out


def labels(**kw: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(kw.items()))


def parse(text: str) -> Samples:
    return {
        (s.name, labels(**s.labels)): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=10) as response:
        return parse(response.read().decode())


def named(samples: Samples, *names: str) -> Samples:
    return {k: v for k, v in samples.items() if k[0] in names}


def from_log_only(samples: Samples) -> Samples:
    return {k: v for k, v in samples.items() if not k[0].startswith(PROCESS_LOCAL)}


def scrape_until(url: str, done, timeout: float = 20.0) -> Samples:
    """Scrape until ``done(samples)`` holds (the follower has caught up), at most ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(url)
        if done(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.02)


@pytest.mark.stores
def test_a_scrape_counts_what_the_log_holds(runtime: Runtime, operator: Client):
    ids = run_scenario(runtime, operator)
    with start_metrics_server(runtime.home, "127.0.0.1:0", runtime=runtime) as server:
        assert server.warning is None
        samples = scrape(server.url)
    counters = named(samples, "toka_operations_total", "toka_tool_calls_total")
    assert counters == from_log(runtime)
    # ...and what the scenario did, spelled out.
    op = "toka_operations_total"
    assert samples[(op, labels(op="agent.spawn", outcome="accepted", code=""))] == 4
    assert samples[(op, labels(op="agent.pause", outcome="refused", code="not_found"))] == 1
    refused_schedule = labels(op="task.schedule", outcome="refused", code="invalid_operation")
    assert samples[(op, refused_schedule)] == 1
    assert samples[(op, labels(op="task.schedule", outcome="pending", code=""))] == 2
    assert samples[(op, labels(op="task.schedule", outcome="approved", code=""))] == 1
    assert samples[(op, labels(op="op.approve", outcome="accepted", code=""))] == 1
    calls = "toka_tool_calls_total"
    assert samples[(calls, labels(tool="echo", outcome="succeeded"))] == 1
    assert samples[(calls, labels(tool="echo", outcome="output_too_large"))] == 1
    assert samples[(calls, labels(tool="wordcount", outcome="succeeded"))] == 1
    # Gauges, against the runtime's own state.
    state = runtime.state
    for status in ("running", "paused", "terminated"):
        n = sum(1 for agent in state.agents.values() if agent.status == status)
        assert samples[("toka_agents", labels(status=status))] == n
    assert samples[("toka_agents", labels(status="paused"))] == 1
    assert state.tasks[ids["t3"]].status == "scheduled"
    open_tasks = sum(1 for t in state.tasks.values() if t.status == "scheduled")
    assert samples[("toka_tasks_open", labels(status="scheduled"))] == open_tasks == 2
    assert samples[("toka_approvals_pending", ())] == len(approvals.pending(state)) == 1
    assert samples[("toka_log_head_seq", ())] == state.seq
    assert samples[("toka_follower_lag_events", ())] == 0


def test_no_label_carries_an_identifier(runtime: Runtime, operator: Client):
    ids = run_scenario(runtime, operator)
    with start_metrics_server(runtime.home, "127.0.0.1:0") as server:
        samples = scrape(server.url)
    values = {value for _, pairs in samples for _, value in pairs}
    identifiers = set(ids.values()) | set(runtime.state.principals) | set(runtime.state.grants)
    identifiers |= {row.nonce for row in runtime.log.operations()}
    assert values and not values & identifiers


@pytest.mark.stores
def test_the_server_follows_the_log_and_times_this_processs_commits(
    runtime: Runtime, operator: Client
):
    run_scenario(runtime, operator)
    with start_metrics_server(runtime.home, "127.0.0.1:0", runtime=runtime) as server:
        before = scrape(server.url)
        assert before[("toka_commit_batch_operations_count", ())] == 0
        agent, _ = operator.spawn_agent("later")  # one commit of one operation
        batch = [operator.sign(ops.EmitObservation(agent, i)) for i in range(3)]
        assert not any(isinstance(o, TokaError) for o in runtime.submit_many(batch))  # one of 3
        emitted = (
            "toka_operations_total",
            labels(op="observation.emit", outcome="accepted", code=""),
        )
        after = scrape_until(
            server.url,
            lambda s: s.get(emitted) == 3 and s[("toka_follower_lag_events", ())] == 0,
        )
    assert emitted not in before and after.get(emitted) == 3
    assert named(after, "toka_operations_total", "toka_tool_calls_total") == from_log(runtime)
    assert after[("toka_log_head_seq", ())] == runtime.state.seq
    assert after[("toka_follower_lag_events", ())] == 0
    assert after[("toka_commit_batch_operations_count", ())] == 2
    assert after[("toka_commit_batch_operations_sum", ())] == 4
    assert after[("toka_commit_batch_operations_bucket", (("le", "2.0"),))] == 1
    assert after[("toka_commit_duration_seconds_count", ())] == 2
    assert runtime.commit_observer is None  # detached on close


@pytest.mark.stores
def test_a_restarted_server_in_a_new_process_gives_the_same_counters(
    runtime: Runtime, operator: Client
):
    run_scenario(runtime, operator)
    with start_metrics_server(runtime.home, "127.0.0.1:0", runtime=runtime) as server:
        first = from_log_only(scrape(server.url))
    with ServedByCli(runtime.home.root, "--listen", "127.0.0.1:0") as served:
        assert not any("warning" in line for line in served.stderr)
        again = scrape(served.url)
    assert again == first
    assert named(again, "toka_operations_total") == named(
        from_log(runtime), "toka_operations_total"
    )


@pytest.mark.stores
def test_toka_metrics_json_agrees_with_a_scrape(runtime: Runtime, operator: Client):
    run_scenario(runtime, operator)
    with start_metrics_server(runtime.home, "127.0.0.1:0") as server:
        scraped = scrape(server.url)
    result = run_toka("metrics", "--json", home=runtime.home.root)
    assert result.returncode == 0, result.stderr
    printed = {
        (s["name"], labels(**s["labels"])): s["value"]
        for family in json.loads(result.stdout)["metrics"]
        for s in family["samples"]
    }
    assert printed == scraped
    text = run_toka("metrics", home=runtime.home.root)
    assert text.returncode == 0, text.stderr
    assert "toka_tool_calls_total tool=echo outcome=output_too_large  1" in text.stdout


def test_read_metrics_counts_a_log_left_by_a_closed_runtime(home: Home):
    with Runtime(home) as rt:
        operator = Client(rt)
        operator.spawn_agent("a")
        with pytest.raises(NotFound):
            operator.pause("ag-404")
    samples = {
        (s["name"], labels(**s["labels"])): s["value"]
        for family in read_metrics(home)["metrics"]
        for s in family["samples"]
    }
    assert (
        samples[("toka_operations_total", labels(op="agent.spawn", outcome="accepted", code=""))]
        == 1
    )
    refused = labels(op="agent.pause", outcome="refused", code="not_found")
    assert samples[("toka_operations_total", refused)] == 1


def test_listening_beyond_loopback_warns_that_metrics_reveal_activity(home: Home):
    with ServedByCli(home.root, "--listen", "0.0.0.0:0") as served:
        assert scrape(served.url.replace("0.0.0.0", "127.0.0.1"))
    warnings = [line for line in served.stderr if "warning" in line]
    assert warnings and "reveal tool names" in warnings[0]


@pytest.mark.parametrize("listen", ["9464", "localhost", "127.0.0.1:70000", ":9464", "host:port"])
def test_a_malformed_listen_address_is_refused_by_name(home: Home, listen: str):
    result = run_toka("metrics", "serve", "--listen", listen, home=home.root)
    assert result.returncode == 4
    assert f"--listen {listen!r}: expected HOST:PORT" in result.stderr


def test_an_address_in_use_is_a_clear_error(home: Home):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_toka("metrics", "serve", "--listen", f"127.0.0.1:{port}", home=home.root)
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_without_the_extra_metrics_ask_for_it(home: Home, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # `import` now fails
    with pytest.raises(MissingExtra, match=r"toka\[metrics\]"):
        start_metrics_server(home, "127.0.0.1:0")
    with pytest.raises(MissingExtra, match=r"toka\[metrics\]"):
        read_metrics(home)


def test_headless_commands_do_not_import_prometheus_client():
    code = (
        "import sys\n"
        "from toka.cli.main import main\n"
        "try:\n    main(['metrics', '--help'])\nexcept SystemExit:\n    pass\n"
        "print('prometheus_client' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"


class ServedByCli:
    """``toka metrics serve ARGS`` in a subprocess, up once it prints its URL."""

    def __init__(self, home: Path, *args: str):
        keep = ("TOKA_STORE", "TOKA_STORE_SCHEMA")
        env = {k: v for k, v in os.environ.items() if not k.startswith("TOKA_") or k in keep}
        env["TOKA_HOME"] = str(home)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "toka", "metrics", "serve", *args],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        self.stderr: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.url = self._wait_for_url(timeout=30)

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def _wait_for_url(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            self.stderr.append(line)
            if "serving http://" in line:
                return line.split("serving ", 1)[1]
        self.close()
        raise AssertionError(f"toka metrics serve did not start: {self.stderr}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # our own child, by its pid
            self.proc.wait(timeout=30)
        assert self.proc.returncode in (0, -15), self.stderr

    def __enter__(self) -> ServedByCli:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def test_a_runner_serves_the_latency_and_size_of_its_own_commits(home: Home):
    """Commits happen in the runner's process: there, and only there, the histograms
    have samples."""
    with Runtime(home) as rt:
        operator = Client(rt)
        agent, _ = operator.spawn_agent("worker", "echo")
        operator.schedule(agent, "a job")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKA_")}
    runner = subprocess.Popen(
        [sys.executable, "-m", "toka", "--home", str(home.root), "run", "--metrics", "127.0.0.1:0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        url = None
        for line in runner.stderr:  # bounded by the test timeout
            if "metrics at " in line:
                url = line.split("metrics at ", 1)[1].strip()
                break
        assert url, "the runner printed no metrics address"
        deadline = time.monotonic() + 30
        while True:
            samples = scrape(url)
            done = samples.get(("toka_tasks_open", (("status", "scheduled"),)), 1) == 0
            if done and samples.get(("toka_commit_batch_operations_count", ()), 0) >= 2:
                break
            assert time.monotonic() < deadline, samples
            time.sleep(0.1)
        assert samples[("toka_commit_duration_seconds_count", ())] >= 2
    finally:
        runner.terminate()
        runner.wait(30)
