"""Metrics for Prometheus: counted from the log, so every host agrees and a restart loses nothing.

``tally`` folds the log into counters and gauges (no dependency); ``live`` keeps a
tally current by following the log; ``exporter`` serves it with prometheus-client
(the ``metrics`` extra, imported only when a server or snapshot is made) and measures
the commits of a Runtime it is given, through ``Runtime.commit_observer``.
"""

from toka.core.metrics.exporter import (
    DEFAULT_LISTEN,
    MetricsServer,
    read_metrics,
    render_text,
    start_metrics_server,
)

__all__ = [
    "DEFAULT_LISTEN",
    "MetricsServer",
    "read_metrics",
    "render_text",
    "start_metrics_server",
]
