"""`toka store copy` between SQLite files, and what it refuses (PostgreSQL: test_store_postgres)."""

from __future__ import annotations

import json

from log_support import make_home, populate
from toka_cli import run_toka


def test_a_copy_verifies_and_its_home_reads_the_same_history(tmp_path):
    home = make_home(tmp_path / "home", checkpoint_interval=10)
    populate(home, tasks=6)
    dst = tmp_path / "copy" / "toka.db"
    dst.parent.mkdir()
    result = run_toka("store", "copy", str(home.db_path), str(dst), "--json", home=home.root)
    assert result.returncode == 0, result.stderr
    copied = json.loads(result.stdout)
    assert copied["verify"]["ok"] and copied["copied"]["checkpoints"] >= 2
    same = run_toka(
        "--store", str(dst), "events", "list", "--limit", "500", "--json", home=home.root
    )
    original = run_toka("events", "list", "--limit", "500", "--json", home=home.root)
    assert json.loads(same.stdout) == json.loads(original.stdout)


def test_copy_refuses_what_it_cannot_do_and_writes_nothing(tmp_path):
    home = make_home(tmp_path / "home")
    src = str(home.db_path)
    cases = {
        (src, src): "SRC and DST are the same log",
        (src, str(tmp_path / "missing" / "toka.db")): "does not exist",
        (str(tmp_path / "none.db"), str(tmp_path / "x.db")): "is not a SQLite log",
        (src, "mysql://db/toka"): "unsupported store",
        (src, src.replace("toka.db", "other.db") + "x"): None,
    }
    for (a, b), message in cases.items():
        result = run_toka("store", "copy", a, b, home=home.root)
        if message is None:
            assert result.returncode == 0, result.stderr
            again = run_toka("store", "copy", a, b, home=home.root)
            assert again.returncode == 4 and "already holds a log" in again.stderr
        else:
            assert result.returncode == 4 and message in result.stderr, (a, b, result.stderr)
    assert not (tmp_path / "x.db").exists()
