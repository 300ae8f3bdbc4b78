"""Prometheus exposition of the tally (prometheus-client, imported only here, lazily).

One private ``CollectorRegistry`` per server: the counters and gauges are computed from
the log at each scrape (a custom collector), the commit histograms are measured in this
process when it commits (``observe_commits``).
"""

from __future__ import annotations

import socket
import threading
from typing import TYPE_CHECKING, Any

from toka.core.endpoints import is_loopback, parse_host_port
from toka.core.errors import InvalidInput, MissingExtra, TokaError
from toka.core.log.follow import HasLog
from toka.core.metrics.live import LiveTally

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from toka.core.runtime import Runtime

DEFAULT_LISTEN = "127.0.0.1:9464"
LOOPBACK_WARNING = (
    "metrics on {address} are reachable beyond this machine: they reveal tool names "
    "and activity (keep them on loopback, or behind a firewall or an authenticating proxy)"
)
COMMIT_SECONDS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
COMMIT_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def require_client():
    """prometheus_client, with ``_created`` series off; MissingExtra without the extra."""
    try:
        import prometheus_client
    except ImportError:
        raise MissingExtra("metrics need prometheus-client: pip install 'toka[metrics]'") from None
    prometheus_client.disable_created_metrics()
    return prometheus_client


# -- where to listen ------------------------------------------------------------------


def resolve(host: str, port: int) -> str:
    """The address ``host`` binds to (what prometheus-client binds: the first found)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise InvalidInput(f"cannot listen on {host!r}: {exc.strerror}") from None
    return str(infos[0][4][0])


# -- the collector --------------------------------------------------------------------


class TallyCollector:
    """A prometheus-client collector that reads a ``LiveTally`` at each scrape."""

    def __init__(self, live: LiveTally):
        self.live = live

    def describe(self) -> list:
        return []  # the families are built at scrape time; nothing to check at register

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        with self.live.lock:
            tally = self.live.tally
            head = self.live.head()
            operations = sorted(tally.operations.items())
            tool_calls = sorted(tally.tool_calls.items())
            unlogged = tally.refusals_unlogged
            agents = tally.agents_by_status()
            tasks = tally.open_tasks_by_status()
            approvals = tally.pending_approvals()
            folded = tally.seq
        ops = CounterMetricFamily(
            "toka_operations",
            "Operations by kind, outcome (accepted, pending, refused, approved, denied) "
            "and refusal code, counted from the log",
            labels=["op", "outcome", "code"],
        )
        for key, n in operations:
            ops.add_metric([key.op, key.outcome, key.code], n)
        yield ops
        yield CounterMetricFamily(
            "toka_refusals_unlogged",
            "Refusals kept out of the log by its rate limit (reported by the next logged one)",
            value=unlogged,
        )
        calls = CounterMetricFamily(
            "toka_tool_calls",
            "Tool calls by tool and outcome (succeeded, unknown, or the failure's kind)",
            labels=["tool", "outcome"],
        )
        for key, n in tool_calls:
            calls.add_metric([key.tool, key.outcome], n)
        yield calls
        yield GaugeMetricFamily("toka_log_head_seq", "The log's last sequence number", head)
        yield GaugeMetricFamily(
            "toka_follower_lag_events",
            "Events in the log not yet counted by this process's metrics",
            head - folded,
        )
        yield _by_status(
            GaugeMetricFamily("toka_agents", "Agents by status", labels=["status"]), agents
        )
        yield _by_status(
            GaugeMetricFamily("toka_tasks_open", "Open tasks by status", labels=["status"]), tasks
        )
        yield GaugeMetricFamily(
            "toka_approvals_pending", "Operations waiting for an approver", approvals
        )


def _by_status(metric, counts: dict[str, int]):
    for status, n in counts.items():
        metric.add_metric([status], n)
    return metric


class CommitObserver:
    """Commit latency and batch size, from a Runtime's ``commit_observer`` hook."""

    def __init__(self, registry: CollectorRegistry):
        from prometheus_client import Histogram

        self.seconds = Histogram(
            "toka_commit_duration_seconds",
            "Time to decide, append and commit one batch of operations (with its sync)",
            buckets=COMMIT_SECONDS_BUCKETS,
            registry=registry,
        )
        self.batch = Histogram(
            "toka_commit_batch_operations",
            "Operations committed together in one transaction",
            buckets=COMMIT_BATCH_BUCKETS,
            registry=registry,
        )
        self._runtime: Runtime | None = None

    def __call__(self, operations: int, seconds: float) -> None:
        self.seconds.observe(seconds)
        self.batch.observe(operations)

    def attach(self, runtime: Runtime) -> None:
        if runtime.commit_observer is not None:
            raise TokaError("this runtime's commits are already observed")
        runtime.commit_observer = self
        self._runtime = runtime

    def detach(self) -> None:
        if self._runtime is not None and self._runtime.commit_observer is self:
            self._runtime.commit_observer = None
        self._runtime = None


# -- snapshots ------------------------------------------------------------------------


def snapshot(registry: CollectorRegistry) -> dict[str, Any]:
    """Every family of ``registry`` as JSON-ready data: what a scrape would read now."""
    families = []
    for metric in registry.collect():
        families.append(
            {
                "name": metric.name,
                "type": metric.type,
                "help": metric.documentation,
                "samples": [
                    {"name": s.name, "labels": dict(s.labels), "value": _number(s.value)}
                    for s in metric.samples
                ],
            }
        )
    return {"metrics": families}


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def render_text(data: dict[str, Any]) -> str:
    """A snapshot for people: each family, then its samples one a line."""
    lines = []
    for family in data["metrics"]:
        lines.append(f"{family['name']} ({family['type']}): {family['help']}")
        for s in family["samples"]:
            labels = " ".join(f"{k}={v}" for k, v in s["labels"].items() if v != "")
            lines.append(f"  {s['name']}{' ' + labels if labels else ''}  {s['value']}")
    return "\n".join(lines)


def read_metrics(home: HasLog) -> dict[str, Any]:
    """The metrics of ``home``'s log now, once (``toka metrics``): a snapshot."""
    prometheus_client = require_client()
    live = LiveTally(home)
    try:
        live.start()
        registry = prometheus_client.CollectorRegistry(auto_describe=False)
        registry.register(TallyCollector(live))
        return snapshot(registry)
    finally:
        live.close()


# -- the server -----------------------------------------------------------------------


class MetricsServer:
    """A running ``/metrics`` endpoint; ``close()`` stops it and its follower."""

    def __init__(
        self,
        registry: CollectorRegistry,
        live: LiveTally,
        observer: CommitObserver | None,
        warning: str | None,
    ):
        self.registry = registry
        self.live = live
        self.observer = observer
        self.warning: str | None = warning
        self.host = ""
        self.port = 0
        self._httpd: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        if self.observer is not None:
            self.observer.detach()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join()
        self.live.close()

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_metrics_server(
    home: HasLog,
    listen: str = DEFAULT_LISTEN,
    *,
    runtime: Runtime | None = None,
    interval: float = 0.25,
) -> MetricsServer:
    """Serve the metrics of ``home``'s log at ``http://LISTEN/metrics`` until ``close()``.

    Folds the whole log before it returns (the first scrape is complete), then follows
    it every ``interval`` seconds. With ``runtime``, also observes its commits (latency
    and batch size). ``warning`` is set (for the caller to show) when the address is
    not loopback. Raises InvalidInput for a bad address, TokaError if it cannot bind."""
    prometheus_client = require_client()
    host, port = parse_host_port(listen, "--listen", example=DEFAULT_LISTEN)
    address = resolve(host, port)
    warning = None if is_loopback(address) else LOOPBACK_WARNING.format(address=listen)
    registry = prometheus_client.CollectorRegistry(auto_describe=False)
    live = LiveTally(home)
    observer = CommitObserver(registry) if runtime is not None else None
    server = MetricsServer(registry, live, observer, warning)
    try:
        registry.register(TallyCollector(live))
        try:
            httpd, thread = prometheus_client.start_http_server(port, host, registry)
        except OSError as exc:
            raise TokaError(f"cannot listen on {listen}: {exc.strerror or exc}") from None
        server._httpd, server._thread = httpd, thread
        server.host, server.port = address, httpd.server_address[1]
        live.start()
        if runtime is not None and observer is not None:
            observer.attach(runtime)
        live.follow(interval)
    except BaseException:
        server.close()
        raise
    return server
