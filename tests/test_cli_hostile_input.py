"""Hostile text at the CLI: terminal control bytes, undecodable bytes, deep JSON."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import NamedTuple

import pytest
import wasmtime
from toka_cli import run_toka

from toka.core.errors import ExitCode, InvalidInput
from toka.core.runtime import Runtime
from toka.core.runtime.home import Home

WASM_DIR = Path(__file__).parent / "wasm"
CONTROL = "\x1b]0;owned\x07\x1b[2J"


class World(NamedTuple):
    home: Path
    agent: str


@pytest.fixture
def w(tmp_path) -> World:
    """A fresh home with one agent."""
    home = tmp_path / "home"
    assert run_toka("init", home=home).returncode == 0
    spawned = run_toka("agent", "spawn", "a1", "--json", home=home)
    return World(home, json.loads(spawned.stdout)["id"])


def events(w: World) -> str:
    listed = run_toka("events", "list", "--json", home=w.home)
    assert listed.returncode == 0, listed.stderr
    return listed.stdout


def refused(result, *words: str) -> None:
    """Exit 4 with one clear line: no internal error, no raw control byte."""
    assert result.returncode == ExitCode.INVALID, result.stderr
    assert result.stdout == ""
    assert result.stderr.startswith("toka: error: ") and result.stderr.count("\n") == 1
    assert "internal error" not in result.stderr and "\x1b" not in result.stderr
    for word in words:
        assert word in result.stderr


@pytest.mark.parametrize(
    "name",
    ["evil\x1b]0;title\x07", "a\x1b[2J", "two\nlines", "cr\rover", "csi\x9b2J", "rtl\u202eexe"],
)
def test_names_with_control_characters_are_refused_with_exit_4(w, name):
    refused(run_toka("agent", "spawn", name, home=w.home), "agent name", "unprintable")
    agents = json.loads(run_toka("agent", "list", "--json", home=w.home).stdout)["agents"]
    assert [a["name"] for a in agents] == ["a1"]


def test_a_runner_id_with_control_characters_is_refused(w):
    result = run_toka("run", "--until-idle", "--runner-id", "r\x1b[2J", home=w.home)
    refused(result, "runner id", "\\x1b")


def test_human_output_shows_control_characters_escaped(w):
    agent = w.agent
    assert run_toka("task", "schedule", agent, f"do {CONTROL} it", home=w.home).returncode == 0
    assert run_toka("obs", "emit", agent, f"seen {CONTROL}", home=w.home).returncode == 0
    shown = "\\x1b]0;owned\\x07\\x1b[2J"
    for args in (
        ["task", "list"],
        ["events", "list"],
        ["events", "tail"],
        ["agent", "show", agent],
    ):
        result = run_toka(*args, home=w.home)
        assert result.returncode == 0, result.stderr
        assert "\x1b" not in result.stdout and "\x07" not in result.stdout, args
    assert shown in run_toka("task", "list", home=w.home).stdout
    assert f"seen {shown}" in run_toka("events", "list", home=w.home).stdout
    # Errors that quote what was typed are shown inert too.
    missing = run_toka("agent", "show", f"ag-{CONTROL}", home=w.home)
    assert missing.returncode == ExitCode.INVALID and "\x1b" not in missing.stderr
    assert shown in missing.stderr
    usage = run_toka("agent", f"frob{CONTROL}", home=w.home)
    assert usage.returncode == ExitCode.USAGE and "\x1b" not in usage.stderr


def test_json_output_keeps_control_characters_exactly(w):
    description = f"do {CONTROL}\u202e it"
    assert run_toka("task", "schedule", w.agent, description, home=w.home).returncode == 0
    listed = run_toka("task", "list", "--json", home=w.home)
    assert "\x1b" not in listed.stdout
    assert [t["description"] for t in json.loads(listed.stdout)["tasks"]] == [description]


def test_undecodable_and_too_deep_input_is_refused_and_changes_nothing(w, tmp_path):
    """Through the real argv: bytes that are not UTF-8 reach Python as lone surrogates."""
    agent = w.agent
    deep = "[" * 10_000 + "]" * 10_000
    (tmp_path / "deep.json").write_text(deep)
    (tmp_path / "latin1.json").write_bytes(b'{"text": "caf\xe9"}')
    before = events(w)
    cases = [
        (["obs", "emit", agent, deep], {}, "data nests deeper than 64 levels"),
        (["task", "schedule", agent, "x", "--payload", f"@{tmp_path}/deep.json"], {}, "nests"),
        (["tool", "invoke", "wordcount", "--args", f"@{tmp_path}/latin1.json"], {}, "UTF-8"),
        (["task", "schedule", agent, "x", "--payload", f"@{tmp_path}/latin1.json"], {}, "UTF-8"),
        (["agent", "spawn", "caf\udce9"], {}, "name is not valid UTF-8"),
        (["task", "schedule", agent, "x\udcffy"], {}, "description is not valid UTF-8"),
        (["agent", "list"], {"TOKA_AS": "op\udcff"}, "$TOKA_AS is not valid UTF-8"),
    ]
    for args, env, message in cases:
        refused(run_toka(*args, home=w.home, env=env), message)
    assert events(w) == before


def test_a_signed_operation_nested_too_deeply_is_refused(w, tmp_path):
    signed = run_toka(
        "op", "sign", "observation.emit", "--agent", w.agent, "--data", "[1]", home=w.home
    )
    assert signed.returncode == 0, signed.stderr
    deep = signed.stdout.replace('"data":[1]', '"data":' + "[" * 10_000 + "]" * 10_000)
    (tmp_path / "op.json").write_text(deep)
    before = events(w)
    refused(run_toka("op", "submit", str(tmp_path / "op.json"), home=w.home), "nests too deeply")
    assert events(w) == before


def test_a_capability_with_a_trailing_newline_is_refused(w):
    result = run_toka("grant", "issue", w.agent, f"task.fail:agent/{w.agent}\n", home=w.home)
    assert result.returncode == ExitCode.INVALID, result.stderr


def test_a_refusal_reason_says_its_code_once(w):
    caps = f"observation.emit:agent/{w.agent}"
    grant = run_toka("grant", "issue", w.agent, caps, "--max-ops", "1", "--json", home=w.home)
    token = {"TOKA_TOKEN": json.loads(grant.stdout)["token"]}
    emit = ("--as", w.agent, "obs", "emit", w.agent)
    assert run_toka(*emit, "one", home=w.home, env=token).returncode == 0
    refusal = run_toka(*emit, "two", home=w.home, env=token)
    assert refusal.returncode == ExitCode.DENIED
    assert refusal.stderr.startswith("toka: error: budget: grant ")
    listed = run_toka("events", "list", "--kind", "operation.rejected", home=w.home).stdout
    assert "observation.emit: budget: grant " in listed and "budget: budget" not in listed


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_the_home_and_everything_toka_creates_in_it_is_owner_only(tmp_path, umask):
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    previous = os.umask(umask)
    try:
        assert run_toka("init", home=home).returncode == 0
        agent = json.loads(run_toka("agent", "spawn", "a1", "--json", home=home).stdout)["id"]
        assert run_toka("obs", "emit", agent, "x", home=home).returncode == 0
        exported = run_toka("checkpoint", "export", str(home / "cp.json"), home=home)
        assert exported.returncode == 0, exported.stderr
        runtime = Runtime(Home(home))  # holds the log open: its -wal and -shm files exist
        try:
            runtime.state  # noqa: B018  (reading it opens the WAL)
            made = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [home, *home.rglob("*")]}
        finally:
            runtime.close()
    finally:
        os.umask(previous)
    assert {"toka.db-wal", "toka.db-shm", "cp.json", "config.toml", "keys"} <= set(made)
    dirs = {"home", "keys", "blobs", "cache"}
    assert {n: m for n, m in made.items() if m != (0o700 if n in dirs else 0o600)} == {}
    info = run_toka("info", home=home)
    assert info.returncode == 0 and "warning" not in info.stderr
    (home / "config.toml").chmod(0o644)
    home.chmod(0o755)
    info = run_toka("info", "--json", home=home)
    assert json.loads(info.stdout)["not_private"] == [str(home), str(home / "config.toml")]
    warned = run_toka("info", home=home).stderr
    assert "warning" in warned and str(home / "config.toml") in warned


def test_a_client_refuses_text_that_is_not_unicode_before_signing(runtime, operator):
    """The console and other clients submit without the CLI's argument check."""
    agent, _ = operator.spawn_agent("a1")
    head = runtime.log.head()
    with pytest.raises(InvalidInput, match=r"task\.schedule operation holds text that is not"):
        operator.schedule(agent, "caf\udce9")
    assert runtime.log.head() == head


@pytest.mark.parametrize("depth", [65, 10_000])
def test_a_tool_whose_output_nests_too_deeply_fails_with_bad_output(w, tmp_path, depth):
    wat = (WASM_DIR / "deep.wat").read_text().replace("10000", str(depth))
    wat = wat.replace("10064", str(64 + depth)).replace("20000", str(2 * depth))
    (tmp_path / "deep.wasm").write_bytes(wasmtime.wat2wasm(wat))
    (tmp_path / "deep.toml").write_text(
        'name = "deep"\nversion = "1.0.0"\ndescription = "deep output"\n'
        'kind = "wasm"\nmodule = "deep.wasm"\n'
    )
    assert run_toka("tool", "register", str(tmp_path / "deep.toml"), home=w.home).returncode == 0
    result = run_toka("tool", "invoke", "deep", "--json", home=w.home)
    assert result.returncode == ExitCode.FAILED and "internal error" not in result.stderr
    assert json.loads(result.stdout)["error"]["kind"] == "bad_output"
