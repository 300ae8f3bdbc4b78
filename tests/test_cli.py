"""The headless CLI: a full operator session, the JSON contract, exit codes, refusals."""

from __future__ import annotations

import json
import os
import stat
import sys

import pytest
from toka_cli import run_toka

from toka.cli.main import main
from toka.core.errors import ExitCode


@pytest.fixture
def toka(tmp_path, capsys, monkeypatch):
    """Run ``toka ARGS`` in-process on a fresh home; returns (exit code, stdout, stderr)."""
    home = tmp_path / "home"
    monkeypatch.setenv("TOKA_HOME", str(home))

    def run(*args: str, env: dict[str, str] | None = None):
        for k, v in (env or {}).items():
            monkeypatch.setenv(k, v)
        try:
            code = main(list(args))
        finally:
            for k in env or {}:
                monkeypatch.delenv(k)
        out, err = capsys.readouterr()
        return code, out, err

    run.home = home
    return run


def js(result) -> dict:
    code, out, err = result
    assert code == 0, err
    return json.loads(out)


def test_operator_session_lands_every_action_in_the_log(toka):
    assert js(toka("init", "--json"))["created"] is True
    agent = js(toka("agent", "spawn", "scout", "--json"))["id"]
    task = js(toka("task", "schedule", agent, "survey", "--payload", '{"depth": 2}', "--json"))
    js(toka("agent", "pause", agent, "--json"))
    js(toka("agent", "resume", agent, "--json"))
    grant = js(
        toka("grant", "issue", agent, f"task.schedule:agent/{agent}", "--ttl", "2h", "--json")
    )
    assert grant["jti"] and grant["token"].count(".") == 2
    revoked = js(toka("grant", "revoke", grant["jti"], "--json"))
    assert revoked["revoked"] == [grant["jti"]]
    js(toka("obs", "emit", agent, '{"cpu": 0.5}', "--json"))
    done = js(toka("--as", agent, "task", "complete", task["task"], "--result", '"ok"', "--json"))
    assert done["status"] == "completed"

    events = js(toka("events", "list", "--json"))["events"]
    by_kind = [(e["kind"], e["principal"]) for e in events]
    assert by_kind == [
        ("log.genesis", "kernel"),
        ("capability.granted", "kernel"),
        *[("tool.registered", "operator")] * 8,  # init registers the built-in tools
        ("agent.spawned", "operator"),
        ("capability.granted", "operator"),
        ("task.scheduled", "operator"),
        ("agent.paused", "operator"),
        ("agent.resumed", "operator"),
        ("capability.granted", "operator"),
        ("capability.revoked", "operator"),
        ("observation.emitted", "operator"),
        ("task.completed", agent),
    ]
    state = js(toka("state", "--json"))
    assert state["counts"]["tasks"]["completed"] == 1
    assert js(toka("verify", "--json"))["ok"] is True
    assert js(toka("replay", "--check", "--json"))["state_hash"] == state["state_hash"]
    past = js(toka("state", "--at", "4", "--json"))
    assert past["seq"] == 4 and past["counts"]["tasks"]["scheduled"] == 0


def test_init_twice_changes_nothing(toka):
    first = js(toka("init", "--json"))
    before = (toka.home / "toka.db").read_bytes()
    code, out, err = toka("init", "--json")
    assert code == 0 and json.loads(out)["created"] is False
    assert "already initialized" in err
    assert json.loads(out)["home_id"] == first["home_id"]
    assert (toka.home / "toka.db").read_bytes() == before


def test_init_creates_private_secret_and_keys(toka):
    js(toka("init", "--json"))
    for path in (
        toka.home / "kernel.secret",
        toka.home / "keys" / "operator.key",
        toka.home / "operator.token",
    ):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert len((toka.home / "kernel.secret").read_bytes()) >= 32


def test_agent_list_and_show_json(toka):
    js(toka("init", "--json"))
    agent = js(toka("agent", "spawn", "a1", "--behaviour", "echo", "--json"))["id"]
    agents = js(toka("agent", "list", "--json"))["agents"]
    assert [(a["id"], a["behaviour"], a["status"]) for a in agents] == [(agent, "echo", "running")]
    shown = js(toka("agent", "show", agent, "--json"))
    assert shown["agent"]["id"] == agent and len(shown["grants"]) == 1


def test_denied_by_capability_exits_3_and_changes_nothing(toka):
    js(toka("init", "--json"))
    agent = js(toka("agent", "spawn", "a1", "--json"))["id"]
    before = js(toka("state", "--json"))["counts"]
    code, out, err = toka("--as", agent, "agent", "terminate", agent)
    assert code == ExitCode.DENIED and out == ""
    assert err.startswith("toka: error:") and "does not cover" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert js(toka("state", "--json"))["counts"] == before
    rejected = js(toka("events", "list", "--kind", "operation.rejected", "--json"))["events"]
    assert rejected[0]["principal"] == agent


def test_forged_token_in_env_exits_3(toka):
    js(toka("init", "--json"))
    agent = js(toka("agent", "spawn", "a1", "--json"))["id"]
    token = (toka.home / "operator.token").read_text()
    head, body, sig = token.split(".")
    forged = f"{head}.{body}.{sig[:-4]}AAAA"
    code, _, err = toka("agent", "pause", agent, env={"TOKA_TOKEN": forged})
    assert code == ExitCode.DENIED and "token rejected" in err
    assert js(toka("agent", "show", agent, "--json"))["agent"]["status"] == "running"


def test_foreign_key_in_env_exits_3(toka, tmp_path):
    from toka.core.model.keys import KeyPair

    js(toka("init", "--json"))
    agent = js(toka("agent", "spawn", "a1", "--json"))["id"]
    key_file = tmp_path / "stolen.key"
    key_file.write_bytes(KeyPair.generate().to_pem())
    code, _, err = toka("agent", "pause", agent, env={"TOKA_KEY": str(key_file)})
    assert code == ExitCode.DENIED and "signature" in err
    assert js(toka("agent", "show", agent, "--json"))["agent"]["status"] == "running"


def test_revoked_token_in_env_exits_3(toka):
    js(toka("init", "--json"))
    agent = js(toka("agent", "spawn", "a1", "--json"))["id"]
    grant = js(toka("grant", "issue", agent, f"task.schedule:agent/{agent}", "--json"))
    js(toka("grant", "revoke", grant["jti"], "--json"))
    code, _, err = toka(
        "--as", agent, "task", "schedule", agent, "x", env={"TOKA_TOKEN": grant["token"]}
    )
    assert code == ExitCode.DENIED and "revoked" in err
    assert js(toka("task", "list", "--json"))["tasks"] == []


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["task", "schedule", "ag-nosuch", "x"], ExitCode.INVALID),
        (["task", "schedule", "AGENT", "x", "--payload", "{not json"], ExitCode.INVALID),
        (["grant", "issue", "AGENT", "bogus"], ExitCode.INVALID),
        (["grant", "issue", "AGENT", "task.fail:*", "--ttl", "soon"], ExitCode.INVALID),
        (["agent", "show", "ag-nosuch"], ExitCode.INVALID),
        (["state", "--at", "999"], ExitCode.INVALID),
        (["agent", "resume", "AGENT"], ExitCode.INVALID),
    ],
)
def test_bad_input_exits_4_with_one_line(toka, args, code):
    js(toka("init", "--json"))
    agent = js(toka("agent", "spawn", "a1", "--json"))["id"]
    before = js(toka("state", "--json"))["counts"]
    result, out, err = toka(*[agent if a == "AGENT" else a for a in args])
    assert result == code, err
    assert out == "" and err.startswith("toka: error:") and err.count("\n") == 1
    assert js(toka("state", "--json"))["counts"] == before


def test_commands_before_init_explain_what_to_do(toka):
    code, _, err = toka("agent", "list")
    assert code == ExitCode.FAILED and "toka init" in err


def test_usage_error_exits_2(toka):
    with pytest.raises(SystemExit) as info:
        toka("agent", "frobnicate")
    assert info.value.code == ExitCode.USAGE


def test_python_dash_m_and_no_textual_on_headless_path(tmp_path):
    home = tmp_path / "home"
    assert run_toka("init", home=home).returncode == 0
    probe = (
        "import sys; from toka.cli.main import main; rc = main(['agent', 'list', '--json']); "
        "print('TEXTUAL' if any(m == 'textual' or m.startswith('textual.') for m in sys.modules)"
        " else 'CLEAN', file=sys.stderr); raise SystemExit(rc)"
    )
    import subprocess

    env = {**os.environ, "TOKA_HOME": str(home)}
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"agents": []}
    assert result.stderr.strip().endswith("CLEAN")
    via_m = run_toka("agent", "list", "--json", home=home)
    assert via_m.returncode == 0 and json.loads(via_m.stdout) == {"agents": []}
