"""Grants through the real ``toka`` command: issue, and the same status and use wherever shown."""

from __future__ import annotations

import json
import time

import pytest
from toka_cli import run_toka


@pytest.fixture
def toka(tmp_path):
    """``toka ARGS`` in a subprocess on a fresh home; returns stdout, asserting exit 0."""
    home = tmp_path / "home"

    def run(*args: str) -> str:
        done = run_toka(*args, home=home)
        assert done.returncode == 0, done.stderr
        return done.stdout

    run("init")
    return run


def js(toka, *args: str) -> dict:
    return json.loads(toka(*args, "--json"))


def shown_grants(text: str) -> dict[str, list[str]]:
    """The rows of ``agent show``'s grants table, by jti."""
    header, *rows = text.split("\ngrants:\n", 1)[1].splitlines()
    assert header.split()[:3] == ["JTI", "STATUS", "EXPIRES"]
    return {row.split()[0]: row.split(maxsplit=4) for row in rows}


def test_agent_show_and_grant_list_agree_on_revoked_ancestors_and_expiry(toka):
    lead = js(toka, "agent", "spawn", "lead")["id"]
    helper = js(toka, "agent", "spawn", "helper")["id"]
    parent = js(toka, "grant", "issue", lead, f"observation.emit:agent/{lead}", "cap.grant:*")
    child = js(
        toka,
        "--as",
        lead,
        "grant",
        "issue",
        helper,
        f"observation.emit:agent/{lead}",
        "--ttl",
        "30m",
    )
    brief = js(toka, "grant", "issue", helper, f"observation.emit:agent/{helper}", "--ttl", "1s")
    assert child["parent"] == parent["jti"]
    toka("grant", "revoke", parent["jti"])
    time.sleep(max(0.0, brief["exp"] - time.time()) + 0.05)

    listed = {
        g["jti"]: g["status"] for g in js(toka, "grant", "list", "--subject", helper)["grants"]
    }
    assert listed[child["jti"]] == "revoked"  # through its parent
    assert listed[brief["jti"]] == "expired"
    shown = shown_grants(toka("agent", "show", helper))
    assert {jti: row[1] for jti, row in shown.items()} == listed
    everyone = [g["status"] for g in js(toka, "grant", "list")["grants"]]
    counted = js(toka, "state")["counts"]["grants"]
    assert counted == {s: everyone.count(s) for s in ("active", "expired", "revoked")}
    assert counted["expired"] >= 1


def test_agent_show_prints_use_against_each_budget_and_counts_without_one(toka):
    agent = js(toka, "agent", "spawn", "counter")["id"]
    grant = js(toka, "grant", "issue", agent, "tool.invoke:tool/wordcount", "--max-tool-calls", "2")
    toka("--as", agent, "tool", "invoke", "wordcount", "--args", '{"text": "a b"}')

    shown = shown_grants(toka("agent", "show", agent))
    used = js(toka, "agent", "show", agent)
    fuel = next(g for g in used["grants"] if g["jti"] == grant["jti"])["usage"]["fuel"]
    assert fuel > 0
    assert shown[grant["jti"]][4].endswith(f"  ops 1, calls 1/2, fuel {fuel}")
    base = next(jti for jti in shown if jti != grant["jti"])
    assert shown[base][4].endswith("  ops 0")  # no budget, nothing used: ops still shows


def test_grant_issue_prints_the_grant_and_its_token(toka):
    agent = js(toka, "agent", "spawn", "reader")["id"]
    out = toka("grant", "issue", agent, f"observation.emit:agent/{agent}", "task.fail:*")
    first, token = out.splitlines()
    jti = js(toka, "grant", "list", "--subject", agent)["grants"][-1]["jti"]
    assert first == f"granted {jti} to {agent}: observation.emit:agent/{agent} task.fail:*"
    assert token.count(".") == 2  # a JWT
