"""``toka bench kernel --vs-eventsourcing`` through the real CLI, with tiny counts:
the output's structure and that both sides completed every op (never its speed)."""

from __future__ import annotations

import json
import sys

import pytest
from toka_cli import run_toka

from toka.core.errors import MissingExtra

pytest.importorskip("eventsourcing")


def test_vs_eventsourcing_json_counts_every_op():
    proc = run_toka("bench", "kernel", "--vs-eventsourcing", "--ops", "200", "--json", timeout=180)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["ops"] == 200 and data["single_ops"] == 200
    vs = data["vs_eventsourcing"]
    peer = vs["eventsourcing"]
    assert peer["recorder"] == "eventsourcing.sqlite"
    for phase in ("multi", "single"):
        p = peer[phase]
        assert p["ops"] == 200
        assert p["spawns"] + p["schedules"] == 200 and p["spawns"] >= 1
        assert p["events_stored"] == 200  # one event per command, each committed
        assert p["ops_per_s"] > 0
    assert peer["sqlite"]["journal_mode"] == "WAL"
    assert peer["sqlite"]["synchronous"] in ("OFF", "NORMAL", "FULL", "EXTRA")
    assert vs["toka_sqlite"] == {"journal_mode": "WAL", "synchronous": "FULL"}
    assert isinstance(vs["durability_comparable"], bool)
    assert vs["ed25519"]["threads"] == 2 and vs["ed25519"]["verify_per_s"] > 0
    assert set(vs["ratios"]) == {
        "toka_vs_peer_submitters",
        "toka_sync_vs_peer_submitters",
        "toka_vs_peer_single",
        "toka_of_ed25519",
        "toka_single_of_commits",
        "peer_single_of_commits",
    }
    assert all(r > 0 for r in vs["ratios"].values())
    assert vs["commits"]["commits"] == 3000 and vs["commits"]["commits_per_s"] > 0


def test_vs_eventsourcing_text_names_both_rates_and_ratios():
    proc = run_toka("bench", "kernel", "--vs-eventsourcing", "--ops", "200", timeout=180)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "eventsourcing" in out and "synchronous=" in out
    assert "Toka/eventsourcing:" in out and "Ed25519 verification" in out
    assert "Durable commits on this disk" in out


def test_missing_eventsourcing_is_a_missing_extra(monkeypatch):
    from toka.core.bench import peer

    monkeypatch.setitem(sys.modules, "eventsourcing", None)
    with pytest.raises(MissingExtra, match=r"pip install 'toka\[bench\]'"):
        peer.bench_peer(200)
