"""``toka stats``: the event rate and the refusal rate over a window, as text charts."""

from __future__ import annotations

import shutil

from toka.cli.context import Context

# Default bucket lengths, shortest first: the first giving at most DEFAULT_BUCKETS buckets.
NICE_BUCKETS_S = (1, 5, 10, 30, 60, 300, 600, 1800, 3600, 6 * 3600, 86400, 7 * 86400)
DEFAULT_BUCKETS = 60
BARS = "▁▂▃▄▅▆▇█"
LABEL_WIDTH = 10


def register(sub, common) -> None:
    p = sub.add_parser(
        "stats",
        parents=[common],
        help="event rate and refusal rate over a window, as text charts",
        description="Events and refusals (operation.rejected) per bucket over the last "
        "--since, with totals; --json gives the bucketed counts.",
    )
    p.add_argument(
        "--since", default="1h", metavar="DURATION", help="the window: 10m, 1h, 7d (default 1h)"
    )
    p.add_argument(
        "--bucket",
        metavar="DURATION",
        help="the length of one bucket: 10s, 1m, 1h (default: at most 60 buckets)",
    )
    p.set_defaults(handler=cmd_stats)


def default_bucket_s(since_s: int) -> int:
    """The shortest nice bucket length that splits ``since_s`` into at most 60 buckets."""
    for bucket in NICE_BUCKETS_S:
        if -(-since_s // bucket) <= DEFAULT_BUCKETS:
            return bucket
    return NICE_BUCKETS_S[-1]


def cmd_stats(ctx: Context) -> int:
    from toka.core import activity
    from toka.core.errors import InvalidInput

    a = ctx.args
    since_s = _duration(a.since, "--since")
    bucket_s = _duration(a.bucket, "--bucket") if a.bucket else default_bucket_s(since_s)
    try:
        activity.Window.check(since_s * 1000, bucket_s * 1000)
    except InvalidInput as exc:
        given = f"--since {a.since}" + (f" --bucket {a.bucket}" if a.bucket else "")
        raise InvalidInput(f"{given}: {exc.message}") from None
    now_ms = int(ctx.runtime.clock() * 1000)
    window = activity.Window.ending_at(now_ms, since_s * 1000, bucket_s * 1000)
    found = activity.count(ctx.runtime.log, window)
    ctx.emit(_as_json(found, since_s), lambda: chart(found, _columns()))
    return 0


def _duration(text: str, option: str) -> int:
    """``text`` as seconds, more than 0, or InvalidInput naming ``option``."""
    from toka.core.durations import parse_duration
    from toka.core.errors import InvalidInput

    try:
        seconds = parse_duration(text)
    except InvalidInput as exc:
        raise InvalidInput(f"{option}: {exc.message}") from None
    if seconds <= 0:
        raise InvalidInput(f"{option}: must be longer than 0s (got {text!r})")
    return seconds


def _as_json(found, since_s: int) -> dict:
    window = found.window
    return {
        "since_s": since_s,
        "bucket_s": window.bucket_ms // 1000,
        "start_ms": window.start_ms,
        "end_ms": window.end_ms,
        "events": found.total_events,
        "refusals": found.total_refusals,
        "buckets": [
            {"start_ms": start, "events": events, "refusals": refusals}
            for start, events, refusals in zip(
                window.starts(), found.events, found.refusals, strict=True
            )
        ],
    }


def span(seconds: int) -> str:
    """A bucket's length in the largest unit that divides it: ``10s``, ``1m``, ``90s``, ``6h``."""
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _columns() -> int:
    return shutil.get_terminal_size((100, 24)).columns


def sparkline(values: list[int]) -> str:
    """One bar per value, scaled from 0 to the largest: 0 is ▁, anything above it ▂ or more."""
    top = max(values, default=0)
    if top == 0:
        return BARS[0] * len(values)
    return "".join(
        BARS[0] if v == 0 else BARS[max(1, round(v / top * (len(BARS) - 1)))] for v in values
    )


def merged(values: tuple[int, ...], per_mark: int) -> list[int]:
    """Neighbouring buckets summed ``per_mark`` at a time (the last group may be shorter)."""
    return [sum(values[i : i + per_mark]) for i in range(0, len(values), per_mark)]


def chart(found, columns: int) -> str:
    """The two charts, one mark per bucket (or per few buckets, to fit ``columns``)."""
    from toka.cli.output import fmt_s

    window = found.window
    room = max(columns - LABEL_WIDTH - 24, 10)
    per_mark = -(-window.buckets // room)
    mark_ms = window.bucket_ms * per_mark
    lines = [
        f"from {fmt_s(window.start_ms // 1000)} to {fmt_s(window.end_ms // 1000)}, "
        f"{window.buckets} buckets of {span(window.bucket_ms // 1000)}"
        + (f" (one mark: {per_mark} buckets)" if per_mark > 1 else "")
    ]
    for label, values, total in (
        ("events", found.events, found.total_events),
        ("refusals", found.refusals, found.total_refusals),
    ):
        marks = merged(values, per_mark)
        peak = max(marks, default=0)
        lines.append(
            f"{label:<{LABEL_WIDTH}}{sparkline(marks)}  total {total}, "
            f"peak {peak} per {span(mark_ms // 1000)}"
        )
    return "\n".join(lines)
