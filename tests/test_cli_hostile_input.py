"""Hostile input through the real ``toka`` command: control bytes, invalid UTF-8, deep
JSON, a world-readable home. Each is refused (exit 4) or shown escaped, never raw, and
the log is left as it was."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from toka_cli import run_toka

TITLE = "\x1b]0;pwned\x07"
CLEAR = "\x1b[2J"
RAW = ("\x1b", "\x07", "\x9b")


def toka_bytes(home: Path, *args: str | bytes, umask: int | None = None):
    """The real command with arguments as raw bytes, as a shell passes them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKA_")}
    env["TOKA_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "toka", *args],
        capture_output=True,
        env=env,
        timeout=60,
        preexec_fn=(lambda: os.umask(umask)) if umask is not None else None,
    )


def events(home: Path) -> list[dict]:
    result = run_toka("events", "list", "--json", home=home)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["events"]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    assert run_toka("init", home=home).returncode == 0
    return home


def spawn(home: Path, name: str) -> str:
    result = run_toka("agent", "spawn", name, "--json", home=home)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["id"]


def test_identifiers_refuse_control_characters_and_change_nothing(home: Path):
    before = events(home)
    for args in (
        ("agent", "spawn", f"evil{TITLE}"),
        ("agent", "spawn", "bidi\u202eexe.txt"),
        ("run", "--until-idle", "--runner-id", f"r{CLEAR}"),
    ):
        result = run_toka(*args, home=home)
        assert result.returncode == 4, (args, result.stderr)
        assert "must not contain control characters (found \\" in result.stderr
        assert not any(ch in result.stderr for ch in RAW)
    after = events(home)
    # The kernel's refusals are on record (operation.rejected); nothing else changed.
    assert [e for e in after if e["kind"] != "operation.rejected"] == before
    assert {e["payload"]["code"] for e in after[len(before) :]} == {"invalid_operation"}


def test_human_output_shows_control_characters_escaped_and_json_exact(home: Path):
    agent = spawn(home, "worker")
    description = f"look{TITLE}here{CLEAR}\nFAKE-ROW\u009b31m"
    scheduled = run_toka("task", "schedule", agent, description, "--json", home=home)
    assert scheduled.returncode == 0, scheduled.stderr
    task = json.loads(scheduled.stdout)["task"]
    for args in (
        ("task", "list"),
        ("task", "list", "--agent", agent),
        ("state",),
        ("events", "list"),
        ("agent", "show", agent),
        ("agent", "show", f"nope{TITLE}"),  # an error quoting the input
        ("agent", "list", f"--bogus{CLEAR}"),  # a usage error quoting the input
    ):
        result = run_toka(*args, home=home)
        out = result.stdout + result.stderr
        assert not any(ch in out for ch in RAW), (args, out)
    listing = run_toka("task", "list", home=home).stdout
    assert "look\\x1b]0;pwned\\x07here\\x1b[2J FAKE-ROW\\x9b31m" in listing
    assert not any(line.startswith("FAKE-ROW") for line in listing.splitlines())
    tasks = json.loads(run_toka("task", "list", "--json", home=home).stdout)["tasks"]
    assert [t["description"] for t in tasks if t["id"] == task] == [description]


def test_malformed_input_is_refused_with_exit_4_not_an_internal_error(home: Path, tmp_path):
    agent = spawn(home, "worker")
    deep = "[" * 10_000 + "]" * 10_000
    bad_utf8 = tmp_path / "bad.json"
    bad_utf8.write_bytes(b'{"text": "\xff\xfe"}')
    before = events(home)
    cases = [
        (("obs", "emit", agent, deep), "observation data is not usable JSON: it is nested"),
        (("obs", "emit", agent, "[" * 65 + "]" * 65), "nested deeper than 64 levels"),
        (("task", "schedule", agent, "x", "--payload", deep), "--payload is not usable JSON"),
        (("task", "schedule", agent, "x", "--payload", f"@{bad_utf8}"), "is not valid UTF-8"),
        (("tool", "invoke", "echo", "--args", f"@{bad_utf8}"), "is not valid UTF-8 (byte 11)"),
        (("agent", "spawn", b"bad\xed\xa0\x80name"), "argument 3 is not valid UTF-8"),
        (("task", "schedule", agent, b"desc \xff"), "argument 4 is not valid UTF-8"),
    ]
    for args, message in cases:
        result = toka_bytes(home, *args)
        err = result.stderr.decode()
        assert result.returncode == 4, (args, err)
        assert message in err, (args, err)
        assert "internal error" not in err
    assert events(home) == before


def test_the_home_is_private_whatever_existed_before_and_info_warns(tmp_path: Path):
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)
    assert toka_bytes(home, "init", umask=0).returncode == 0
    agent = spawn(home, "worker")
    assert (
        toka_bytes(home, "tool", "invoke", "upper", "--args", '{"text": "a"}', umask=0).returncode
        == 0
    )
    assert toka_bytes(home, "obs", "emit", agent, "x", umask=0).returncode == 0
    modes = {p: stat.S_IMODE(p.lstat().st_mode) for p in [home, *home.rglob("*")]}
    assert modes[home] == 0o700
    assert modes[home / "toka.db"] == 0o600
    loose = {str(p.relative_to(tmp_path)): oct(m) for p, m in modes.items() if m & 0o077}
    assert loose == {}
    info = run_toka("info", "--json", home=home)
    assert json.loads(info.stdout)["loose_permissions"] == []
    assert "warning" not in info.stderr

    os.chmod(home, 0o755)
    os.chmod(home / "toka.db", 0o644)
    info = run_toka("info", home=home)
    assert info.returncode == 0
    # (and the -wal and -shm files this very command opened, which take the db's mode)
    assert "toka: warning: others may read or change " in info.stderr
    assert f"{home} (drwxr-xr-x)" in info.stderr and "toka.db (-rw-r--r--)" in info.stderr
    assert "loose permissions    none" not in info.stdout
