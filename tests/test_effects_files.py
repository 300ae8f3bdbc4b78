"""The file tools' escape matrix through the real ``toka tool invoke``: what the kernel
refuses before anything runs, what the host refuses while running, and what is recorded."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from effects_support import Toka, leaks

from toka.core.errors import ExitCode

SECRET = b"outside-the-mount 5e4c1d9b-secret"
READ = "tool.invoke:tool/fs-read"
WRITE = "tool.invoke:tool/fs-write"
LIST = "tool.invoke:tool/fs-list"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    """The mounted tree (``ws``, read-write); ``outside/secret.txt`` sits next to it."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_bytes(SECRET)
    root = tmp_path / "ws"
    (root / "docs" / "a").mkdir(parents=True)
    (root / "docs" / "a" / "b.md").write_text("deep doc\n")
    (root / "docs-private").mkdir()
    (root / "docs-private" / "x").write_text("private\n")
    (root / "docs-public.md").write_text("public\n")
    (root / "out").mkdir()
    return root


@pytest.fixture
def toka(tmp_path: Path, ws: Path) -> Toka:
    t = Toka(tmp_path / "home")
    t.ok("mount", "add", "ws", str(ws), "--mode", "rw")
    return t


def rejected_reasons(toka: Toka) -> list[tuple[str, str]]:
    return [
        (e["payload"]["code"], e["payload"]["reason"]) for e in toka.events("operation.rejected")
    ]


def test_dot_dot_absolute_and_empty_segments_are_refused_before_anything_runs(
    toka: Toka, tmp_path: Path
) -> None:
    agent = toka.agent(
        "climber", "fs.read:mount/ws/**", "fs.list:mount/ws/**", "fs.write:mount/ws/**"
    )
    toka.js("grant", "issue", agent, READ, LIST, WRITE)
    secret_path = str(tmp_path / "outside" / "secret.txt")
    calls = [
        ("fs-read", {"mount": "ws", "path": "../outside/secret.txt"}, "'..'"),
        ("fs-read", {"mount": "ws", "path": "docs/../../outside/secret.txt"}, "'..'"),
        ("fs-read", {"mount": "ws", "path": secret_path}, ""),
        ("fs-read", {"mount": "ws", "path": "docs//a/b.md"}, ""),
        ("fs-list", {"mount": "ws", "path": "docs/.."}, "'..'"),
        ("fs-write", {"mount": "ws", "path": "out/../../outside/secret.txt", "content": "x"}, ""),
    ]
    for who in (None, agent):
        for tool, args, named in calls:
            done = toka.refused(ExitCode.INVALID, tool, args, as_=who)
            assert named in done.stderr, (tool, args, done.stderr)
    kinds = toka.kinds()
    assert "tool.started" not in kinds and "tool.failed" not in kinds
    assert (tmp_path / "outside" / "secret.txt").read_bytes() == SECRET
    assert leaks(toka.home, SECRET) == []


def test_links_hard_links_and_fifos_fail_the_call_refused_and_leak_nothing(
    toka: Toka, ws: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    (ws / "abs-link").symlink_to(outside / "secret.txt")
    (ws / "rel-link").symlink_to("../outside/secret.txt")
    (ws / "docs" / "linkdir").symlink_to("../../outside")
    os.link(outside / "secret.txt", ws / "hard")
    os.mkfifo(ws / "fifo")
    agent = toka.agent("prober", "fs.read:mount/ws/**", "fs.list:mount/ws/**", READ, LIST)
    calls = [
        ("fs-read", "abs-link"),
        ("fs-read", "rel-link"),
        ("fs-read", "docs/linkdir/secret.txt"),
        ("fs-list", "docs/linkdir"),
        ("fs-read", "hard"),
        ("fs-read", "fifo"),  # the subprocess's timeout fails the test if this blocks
    ]
    for who in (None, agent):
        for tool, path in calls:
            done = toka.invoke(tool, {"mount": "ws", "path": path}, as_=who)
            assert SECRET.decode() not in done.stdout + done.stderr, path
            result = json.loads(done.stdout)
            assert result["ok"] is False and result["error"]["kind"] == "refused", (path, result)
            assert result["effects"] == []
    assert leaks(toka.home, SECRET) == []
    events = json.dumps(toka.events())
    assert SECRET.decode() not in events
    # The scan finds what was read: the file read below is in the blobs, and so its
    # absence above means something.
    marker = b"inside-the-mount 0b7d read"
    (ws / "docs" / "fine.md").write_bytes(marker)
    assert toka.outcome("fs-read", {"mount": "ws", "path": "docs/fine.md"}, as_=agent)["ok"]
    assert leaks(toka.home, marker) == [f"blobs/{sha(marker)}"]


def test_a_symlink_swapped_in_at_the_mount_root_is_refused(toka: Toka, tmp_path: Path) -> None:
    lent = tmp_path / "lent"
    lent.mkdir()
    (lent / "secret.txt").write_text("the lent copy\n")
    toka.ok("mount", "add", "lent", str(lent), "--mode", "rw")
    assert toka.outcome("fs-read", {"mount": "lent", "path": "secret.txt"})["ok"]

    agent = toka.agent("lender", "fs.*:mount/lent/**", READ, LIST, WRITE)
    lent.rename(tmp_path / "lent-before")
    lent.symlink_to(tmp_path / "outside", target_is_directory=True)
    for who in (None, agent):
        for tool, args in [
            ("fs-read", {"mount": "lent", "path": "secret.txt"}),
            ("fs-list", {"mount": "lent"}),
            ("fs-write", {"mount": "lent", "path": "secret.txt", "content": "overwritten"}),
        ]:
            result = toka.failed("refused", tool, args, as_=who)
            assert SECRET.decode() not in json.dumps(result)
    assert (tmp_path / "outside" / "secret.txt").read_bytes() == SECRET
    assert leaks(toka.home, SECRET) == []


def test_docs_star_stays_within_one_segment(toka: Toka) -> None:
    agent = toka.agent("prefix", "fs.read:mount/ws/docs*", READ)
    public = toka.outcome("fs-read", {"mount": "ws", "path": "docs-public.md"}, as_=agent)
    assert public["output"]["content"] == "public\n"
    for path in ("docs-private/x", "docs/a/b.md"):
        done = toka.refused(ExitCode.DENIED, "fs-read", {"mount": "ws", "path": path}, as_=agent)
        assert f"does not cover fs.read:mount/ws/{path}" in done.stderr
        code, reason = rejected_reasons(toka)[-1]
        assert code == "not_covered" and reason.endswith(f"fs.read:mount/ws/{path}")


def test_docs_double_star_covers_the_tree_below_docs_only(toka: Toka) -> None:
    agent = toka.agent("tree", "fs.read:mount/ws/docs/**", READ)
    deep = toka.outcome("fs-read", {"mount": "ws", "path": "docs/a/b.md"}, as_=agent)
    assert deep["output"]["content"] == "deep doc\n"
    for path in ("docs-private/x", "docs-public.md"):
        toka.refused(ExitCode.DENIED, "fs-read", {"mount": "ws", "path": path}, as_=agent)
    assert [code for code, _ in rejected_reasons(toka)] == ["not_covered", "not_covered"]


def test_a_write_through_a_dangling_link_is_refused_and_creates_nothing(
    toka: Toka, ws: Path, tmp_path: Path
) -> None:
    (ws / "out" / "rel").symlink_to("../../outside/planted-rel")
    (ws / "out" / "abs").symlink_to(tmp_path / "outside" / "planted-abs")
    agent = toka.agent("writer", "fs.write:mount/ws/out/**", WRITE)
    for who in (None, agent):
        for name in ("rel", "abs"):
            args = {"mount": "ws", "path": f"out/{name}", "content": "planted"}
            result = toka.failed("refused", "fs-write", args, as_=who)
            assert result["effects"] == []
            assert not (tmp_path / "outside" / f"planted-{name}").exists()
            assert (ws / "out" / name).is_symlink()
    assert sorted(p.name for p in (tmp_path / "outside").iterdir()) == ["secret.txt"]


def test_a_write_outside_the_granted_directory_is_refused_and_audited(toka: Toka, ws: Path) -> None:
    agent = toka.agent("scribe", "fs.write:mount/ws/out/**", WRITE)
    inside = {"mount": "ws", "path": "out/notes/today.md", "content": "inside"}
    assert toka.outcome("fs-write", inside, as_=agent)["ok"]
    assert (ws / "out" / "notes" / "today.md").read_text() == "inside"

    for path in ("notes.md", "out-x/notes.md", "docs/a/b.md"):
        args = {"mount": "ws", "path": path, "content": "outside"}
        toka.refused(ExitCode.DENIED, "fs-write", args, as_=agent)
        code, reason = rejected_reasons(toka)[-1]
        assert code == "not_covered" and reason.endswith(f"fs.write:mount/ws/{path}")
    assert not (ws / "notes.md").exists() and not (ws / "out-x").exists()
    assert (ws / "docs" / "a" / "b.md").read_text() == "deep doc\n"
    assert toka.kinds().count("tool.started") == 1


def test_a_read_only_mount_refuses_writes_even_for_the_operator_and_grants_of_them(
    toka: Toka, tmp_path: Path
) -> None:
    shelf = tmp_path / "shelf"
    shelf.mkdir()
    (shelf / "book.md").write_text("kept\n")
    toka.ok("mount", "add", "shelf", str(shelf), "--mode", "ro")
    assert toka.outcome("fs-read", {"mount": "shelf", "path": "book.md"})["ok"]
    for path in ("book.md", "new.md"):
        args = {"mount": "shelf", "path": path, "content": "changed"}
        done = toka.refused(ExitCode.DENIED, "fs-write", args)
        assert "read-only" in done.stderr
    assert sorted(p.name for p in shelf.iterdir()) == ["book.md"]
    assert (shelf / "book.md").read_text() == "kept\n"

    agent = toka.js("agent", "spawn", "vandal")["id"]
    for cap in ("fs.write:mount/shelf/**", "fs.write:mount/shelf/book.md"):
        done = toka("grant", "issue", agent, cap, WRITE, "--json")
        assert done.returncode == ExitCode.DENIED, done.stderr
        assert "read-only" in done.stderr
    grants = toka.js("grant", "list", "--subject", agent)["grants"]
    assert not [c for g in grants for c in g["caps"] if c.startswith("fs.write")]


def test_compare_and_swap_conflicts_on_a_stale_hash_and_a_retry_is_unchanged(
    toka: Toka, ws: Path
) -> None:
    target = ws / "out" / "cas.txt"
    target.write_text("v1")
    stale = {"mount": "ws", "path": "out/cas.txt", "content": "v2", "if_sha256": sha(b"v0")}
    result = toka.failed("conflict", "fs-write", stale)
    assert result["effects"] == []
    assert target.read_text() == "v1"

    fresh = {**stale, "if_sha256": sha(b"v1")}
    first = toka.outcome("fs-write", fresh)
    assert first["ok"] and first["output"]["changed"] is True
    assert target.read_text() == "v2"
    # The same call again (its hash now stale): what it asked for is already there.
    again = toka.outcome("fs-write", fresh)
    assert again["ok"] and again["output"]["changed"] is False
    (effect,) = again["effects"]
    assert (effect["before_sha256"], effect["after_sha256"]) == (sha(b"v2"), sha(b"v2"))
    assert effect["changed"] is False
    assert target.read_text() == "v2"


def test_verify_blobs_names_the_event_whose_blob_was_altered_or_deleted(
    toka: Toka, ws: Path
) -> None:
    read = toka.outcome("fs-read", {"mount": "ws", "path": "docs/a/b.md"})
    write = toka.outcome("fs-write", {"mount": "ws", "path": "out/w.txt", "content": "written"})
    listed = toka.outcome("fs-list", {"mount": "ws", "path": "docs"})
    assert read["ok"] and write["ok"] and listed["ok"]
    checked = toka.js("verify", "--blobs")
    assert checked["ok"] is True and checked["blobs_checked"] == 3
    assert toka.js("replay", "--check")["seq"] >= listed["seq"]

    blob = toka.home / "blobs" / sha(b"written")
    blob.write_bytes(b"altered")
    done = toka("verify", "--blobs", "--json")
    assert done.returncode == ExitCode.INTEGRITY
    assert json.loads(done.stdout)["first_bad_seq"] == write["seq"]
    assert "altered" in done.stderr and f"event {write['seq']}" in done.stderr
    blob.write_bytes(b"written")
    assert toka.js("verify", "--blobs")["ok"] is True

    (toka.home / "blobs" / sha(b"deep doc\n")).unlink()
    done = toka("verify", "--blobs", "--json")
    assert done.returncode == ExitCode.INTEGRITY
    assert json.loads(done.stdout)["first_bad_seq"] == read["seq"]
    assert "missing" in done.stderr
    assert toka.js("verify")["ok"] is True  # the chain itself is intact


def test_effects_list_and_show_give_the_intent_caps_and_the_effects(toka: Toka, ws: Path) -> None:
    (ws / "out" / "f.txt").write_text("before")
    write = toka.outcome("fs-write", {"mount": "ws", "path": "out/f.txt", "content": "after"})
    failed = toka.failed("refused", "fs-read", {"mount": "ws", "path": "docs"})

    calls = {c["call"]: c for c in toka.js("effects", "list", "--all")["calls"]}
    assert toka.js("effects", "list")["calls"] == []  # none open
    row = calls[write["call"]]
    assert (row["tool"], row["side_effect"], row["status"], row["principal"]) == (
        "fs-write@1.0.0",
        "idempotent",
        "succeeded",
        "operator",
    )
    assert row["caps"] == ["fs.write:mount/ws/out/f.txt"]
    assert calls[failed["call"]]["caps"] == ["fs.read:mount/ws/docs"]
    assert calls[failed["call"]]["status"] == "failed"

    shown = toka.js("effects", "show", write["call"])
    assert shown["intent"]["caps"] == ["fs.write:mount/ws/out/f.txt"]
    assert shown["outcome_seq"] == write["seq"] and shown["ok"] is True
    assert shown["effects"] == [
        {
            "effect": "fs.written",
            "mount": "ws",
            "path": "out/f.txt",
            "before_sha256": sha(b"before"),
            "after_sha256": sha(b"after"),
            "size": 5,
            "changed": True,
        }
    ]
    assert shown["blobs"] == [sha(b"after")]
    failure = toka.js("effects", "show", failed["call"])
    assert failure["ok"] is False and failure["error"]["kind"] == "refused"
