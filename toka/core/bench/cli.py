"""``toka bench cli``: the wall time of read-only commands as a user runs them.

A scratch home gets a log of at least ``events`` events; then each command runs
``runs`` times in a fresh interpreter (``python -m toka --home H ...``), timed from
the parent, after one unmeasured run (which also writes the bytecode caches). The
baselines split a command's time: ``python -c pass`` is the interpreter's start,
``toka --version`` adds importing the CLI and building its parser, and what the
real commands take beyond that is their own imports, building the runtime, loading
the snapshot and the tail of the log, and the query. One ``agent list`` run under
``python -X importtime`` names the modules whose import costs the most.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from typing import Any

from toka.core.bench import Progress, _scratch_home, build_log
from toka.core.errors import InvalidInput
from toka.core.runtime import Runtime

COMMANDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("python -c pass", ("-c", "pass")),
    ("toka --version", ("-m", "toka", "--version")),
    ("toka agent list", ("-m", "toka", "--home", "{home}", "agent", "list")),
    ("toka task list", ("-m", "toka", "--home", "{home}", "task", "list")),
    (
        "toka events list --limit 50",
        ("-m", "toka", "--home", "{home}", "events", "list", "--limit", "50"),
    ),
)


def _env() -> dict[str, str]:
    """The caller's environment without TOKA_* settings: the scratch home's own config
    (which names its log) is what the commands read. Nor PYTHONDONTWRITEBYTECODE: the
    unmeasured first run writes the bytecode caches a user's runs have (an install
    compiles them; a source checkout writes them on its first run), where with it every
    measured run would compile Toka's sources again."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TOKA_") and k != "PYTHONDONTWRITEBYTECODE"
    }


def _run(argv: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *argv], capture_output=True, text=True, env=env, timeout=600
    )
    return time.perf_counter() - t0, done.returncode, done.stderr


def parse_importtime(stderr: str, top: int = 10) -> list[dict[str, Any]]:
    """The ``top`` modules by cumulative import time from ``-X importtime`` output
    (lines ``import time: self [us] | cumulative | name``)."""
    rows = []
    for line in stderr.splitlines():
        if not line.startswith("import time:"):
            continue
        fields = line[len("import time:") :].split("|")
        if len(fields) != 3 or not fields[0].strip().isdigit():
            continue  # the header line
        name = fields[2].rstrip()
        rows.append(
            {
                "module": name.strip(),
                "depth": (len(name) - len(name.lstrip())) // 2,
                "self_ms": int(fields[0]) / 1000,
                "cumulative_ms": int(fields[1]) / 1000,
            }
        )
    rows.sort(key=lambda r: r["cumulative_ms"], reverse=True)
    return rows[:top]


def _total_import_ms(stderr: str) -> float:
    total = 0
    for line in stderr.splitlines():
        fields = line[len("import time:") :].split("|")
        if line.startswith("import time:") and fields[0].strip().isdigit():
            total += int(fields[0])
    return round(total / 1000, 1)


def bench_cli(
    events: int = 100_000, runs: int = 5, progress: Progress | None = None, store: str | None = None
) -> dict[str, Any]:
    """Median and min wall time of each command in ``COMMANDS`` over ``runs`` fresh
    subprocesses, on a home of at least ``events`` events, and the import profile of
    one ``agent list``."""
    if events < 10:
        raise InvalidInput("--events must be at least 10")
    if runs < 1:
        raise InvalidInput("--runs must be at least 1")
    env = _env()
    with _scratch_home(store) as home:
        with Runtime(home, durability="normal") as rt:
            build_log(rt, events, progress=progress)
            n = rt.state.seq
        where = str(home.root)
        commands: dict[str, dict[str, Any]] = {}
        for label, template in COMMANDS:
            argv = [where if a == "{home}" else a for a in template]
            if progress:
                progress(f"{label}: {runs} runs")
            _run(argv, env)  # unmeasured: bytecode caches, page cache
            times, codes = [], []
            for _ in range(runs):
                seconds, code, _err = _run(argv, env)
                times.append(seconds)
                codes.append(code)
            commands[label] = {
                "argv": ["python", *argv],
                "median_ms": round(statistics.median(times) * 1000, 1),
                "min_ms": round(min(times) * 1000, 1),
                "exit_codes": codes,
            }
        if progress:
            progress("agent list under -X importtime")
        argv = ["-X", "importtime", "-m", "toka", "--home", where, "agent", "list"]
        _, code, stderr = _run(argv, env)
    median = {label: c["median_ms"] for label, c in commands.items()}
    base, version = median["python -c pass"], median["toka --version"]
    return {
        "events": n,
        "runs": runs,
        "store": "postgresql" if store else "sqlite",
        "python": sys.version.split()[0],
        "commands": commands,
        "breakdown_ms": {
            "interpreter_start": base,
            "cli_import_and_parser": round(version - base, 1),
            "agent_list_beyond_version": round(median["toka agent list"] - version, 1),
        },
        "importtime": {
            "command": "toka agent list",
            "exit_code": code,
            "total_self_ms": _total_import_ms(stderr),
            "top_cumulative": parse_importtime(stderr),
        },
    }
