"""Running the real ``toka`` command in a subprocess, for tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_toka(
    *args: str,
    home: Path | None = None,
    env: dict[str, str] | None = None,
    input: str | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess:
    """Run the real ``toka`` command in a subprocess."""
    # The log's backend for this test (conftest's store_backend) is kept; nothing else.
    keep = ("TOKA_STORE", "TOKA_STORE_SCHEMA")
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("TOKA_") or k in keep}
    if home is not None:
        full_env["TOKA_HOME"] = str(home)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "toka", *args],
        capture_output=True,
        text=True,
        env=full_env,
        input=input,
        timeout=timeout,
    )
