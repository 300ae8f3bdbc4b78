"""``toka gc`` and the effects' leftovers: a blob a record names is kept forever; bytes
no record names, and a staged copy a dead host left, go once they are old enough."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from toka_cli import run_toka


def toka_json(home: Path, *args: str) -> dict:
    result = run_toka(*args, "--json", home=home)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_gc_keeps_named_effect_blobs_and_collects_old_unnamed_ones_and_staged_copies(
    tmp_path: Path,
):
    home, ws = tmp_path / "home", tmp_path / "ws"
    ws.mkdir()
    (ws / "a.md").write_text("kept for the audit")
    toka_json(home, "init")
    toka_json(home, "mount", "add", "ws", str(ws))
    read = toka_json(home, "tool", "invoke", "fs-read", "--args", '{"mount":"ws","path":"a.md"}')
    named = home / "blobs" / read["output"]["sha256"]
    hour_ago = time.time() - 2 * 3600
    os.utime(named, (hour_ago, hour_ago))
    unnamed_old, unnamed_new = home / "blobs" / ("ab" * 32), home / "blobs" / ("cd" * 32)
    unnamed_old.write_bytes(b"stored, then its write was refused")
    unnamed_new.write_bytes(b"stored by a call still in flight")
    os.utime(unnamed_old, (hour_ago, hour_ago))
    staged_old = home / "cache" / "stage-dead"
    (staged_old / "in").mkdir(parents=True)
    (staged_old / "in" / "link").symlink_to(ws)  # a tool may plant one: never followed
    os.utime(staged_old, (hour_ago, hour_ago))
    staged_new = home / "cache" / "stage-live"
    staged_new.mkdir()

    dry = toka_json(home, "gc")["garbage"]
    assert {(Path(g["path"]).name, g["kind"]) for g in dry} == {
        (unnamed_old.name, "effect"),
        (staged_old.name, "staged"),
    }
    toka_json(home, "gc", "--delete")
    assert not unnamed_old.exists() and not staged_old.exists()
    assert named.exists() and unnamed_new.exists() and staged_new.exists()
    assert (ws / "a.md").read_text() == "kept for the audit"  # the mount was not emptied
    assert toka_json(home, "verify", "--blobs")["blobs_checked"] == 1
