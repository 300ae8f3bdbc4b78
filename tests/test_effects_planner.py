"""An agent that reads a file, fetches a URL and writes a report, as an operator sets it up.

The README's planner example, through the real CLI: a mount, a private host allowed,
a grant that names places, a planner task run by ``toka run``. The log holds each
call's intent before its effect, the effects with their blobs, and verifies and
replays; a write outside the granted place is refused (exit 3) and audited.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from http_support import serving
from toka_cli import run_toka


def toka_json(home: Path, *args: str) -> dict:
    result = run_toka(*args, "--json", home=home)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_a_planner_reads_fetches_and_writes_a_report_every_effect_on_record(tmp_path: Path):
    home, demo = tmp_path / "home", tmp_path / "demo"
    (demo / "docs").mkdir(parents=True)
    notes = "# Notes\nAll systems nominal.\n"
    (demo / "docs" / "notes.md").write_text(notes)
    toka_json(home, "init")
    toka_json(home, "mount", "add", "ws", str(demo), "--mode", "rw")
    agent = toka_json(home, "agent", "spawn", "reporter", "--behaviour", "planner")["id"]
    with serving() as server:
        toka_json(home, "net", "allow", f"127.0.0.1:{server.port}")
        caps = [
            "tool.invoke:tool/fs-*",
            "tool.invoke:tool/http-fetch",
            "fs.read:mount/ws/**",
            "fs.write:mount/ws/out/**",
            f"net.http:GET/http/127.0.0.1/{server.port}/**",
        ]
        toka_json(home, "grant", "issue", agent, *caps, "--ttl", "1h")
        plan = {
            "steps": [
                {"tool": "fs-read", "args": {"mount": "ws", "path": "docs/notes.md"}},
                {"tool": "http-fetch", "args": {"url": server.url("/status")}},
                {
                    "tool": "fs-write",
                    "args": {
                        "mount": "ws",
                        "path": "out/report.md",
                        "content": ["# Report\n", "$steps.1.content", "$steps.2.body"],
                    },
                },
            ]
        }
        task = toka_json(home, "task", "schedule", agent, "report", "--payload", json.dumps(plan))
        toka_json(home, "run", "--until-idle")

        report = (demo / "out" / "report.md").read_text()
        assert report == "# Report\n" + notes + "hello "  # the test server answers "hello "
        tasks = toka_json(home, "task", "list")["tasks"]
        assert [t["status"] for t in tasks if t["id"] == task["task"]] == ["completed"]

        log = toka_json(home, "events", "list", "--limit", "1000")["events"]
        kinds = [(e["kind"], e["principal"]) for e in log if e["kind"].startswith("tool.")]
        calls = [("tool.started", agent), ("tool.succeeded", "kernel")] * 3
        assert kinds[-6:] == calls  # each intent is committed before its effect's record
        started = [e["payload"] for e in log if e["kind"] == "tool.started"]
        assert [s["caps"] for s in started] == [
            ["fs.read:mount/ws/docs/notes.md"],
            [f"net.http:GET/http/127.0.0.1/{server.port}/status"],
            ["fs.write:mount/ws/out/report.md"],
        ]
        effects = [
            e["payload"]["effects"][0]
            for e in log
            if e["kind"] == "tool.succeeded" and "call" in e["payload"]
        ]
        assert [e["effect"] for e in effects] == ["fs.read", "net.fetched", "fs.written"]
        written = effects[2]
        assert written["before_sha256"] is None
        assert written["after_sha256"] == hashlib.sha256(report.encode()).hexdigest()
        # The bytes read, fetched and written are blobs the log names by hash.
        blobs = home / "blobs"
        for sha256 in (
            effects[0]["sha256"],
            effects[1]["response_sha256"],
            written["after_sha256"],
        ):
            assert hashlib.sha256((blobs / sha256).read_bytes()).hexdigest() == sha256
        # The log holds hashes, not the file's text: the content was put back for the agent.
        assert notes not in json.dumps([e for e in log if e["kind"] == "tool.succeeded"])

        assert toka_json(home, "verify", "--blobs", "--signatures")["blobs_checked"] == 3
        assert toka_json(home, "replay", "--check")["ok"] is True

        outside = {"mount": "ws", "path": "docs/notes.md", "content": "overwritten"}
        refused = run_toka(
            "--as", agent, "tool", "invoke", "fs-write", "--args", json.dumps(outside), home=home
        )
        assert refused.returncode == 3, refused.stderr
        assert "fs.write:mount/ws/docs/notes.md" in refused.stderr
        assert (demo / "docs" / "notes.md").read_text() == notes
        rejected = toka_json(home, "events", "list", "--kind", "operation.rejected")["events"]
        assert rejected[-1]["principal"] == agent
        assert rejected[-1]["payload"]["code"] == "not_covered"
        assert "fs.write:mount/ws/docs/notes.md" in rejected[-1]["payload"]["reason"]
