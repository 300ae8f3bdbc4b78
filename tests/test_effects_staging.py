"""WASM tools with staged files, registered and invoked through the real ``toka``: copies
in, outputs collected without following what the guest planted, places checked at intent."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from effects_support import Toka, leaks, staged_tool

from toka.core.errors import ExitCode

SECRET = b"outside-the-mount 8c2e-staged-secret"
COPY = "tool.invoke:tool/stagecopy"
COPY_FILES = 'input = "source"\noutput = "target"'  # stagecopy's [files]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def place(path: str, mount: str = "ws") -> dict[str, str]:
    return {"mount": mount, "path": path}


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    """The mounted tree (``ws``, read-write): ``src/in.txt``; the secret sits outside it."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_bytes(SECRET)
    root = tmp_path / "ws"
    (root / "src").mkdir(parents=True)
    (root / "src" / "in.txt").write_text("copy me")
    (root / "private").mkdir()
    (root / "private" / "in.txt").write_text("not granted")
    return root


@pytest.fixture
def toka(tmp_path: Path, ws: Path) -> Toka:
    t = Toka(tmp_path / "home")
    t.ok("mount", "add", "ws", str(ws), "--mode", "rw")
    tools = tmp_path / "tools"
    t.ok("tool", "register", str(staged_tool(tools, "stagecopy", COPY_FILES)))
    t.ok("tool", "register", str(staged_tool(tools, "stagelink", 'output = "target"')))
    return t


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def no_stage_left(toka: Toka) -> bool:
    return not list((toka.home / "cache").glob("stage-*"))


def test_a_staged_copy_lands_under_the_output_place_and_each_file_is_an_effect(
    toka: Toka, ws: Path
) -> None:
    args = {"source": place("src"), "target": place("dst")}
    result = toka.outcome("stagecopy", args)
    assert result["ok"] is True, result["error"]
    assert result["output"] == {"copied": 7, "write_in": 63}  # 63: EPERM, /in is read-only
    assert files_under(ws / "dst") == ["copy.txt", "sub", "sub/copy.txt"]
    assert (ws / "dst" / "copy.txt").read_text() == "copy me"
    assert (ws / "dst" / "sub" / "copy.txt").read_text() == "copy me"
    assert files_under(ws / "src") == ["in.txt"]  # nothing written into the input

    digest = sha(b"copy me")
    assert [(e["effect"], e["path"]) for e in result["effects"]] == [
        ("fs.read", "src/in.txt"),
        ("fs.written", "dst/copy.txt"),
        ("fs.written", "dst/sub/copy.txt"),
    ]
    assert result["effects"][0]["sha256"] == digest
    assert {e["after_sha256"] for e in result["effects"][1:]} == {digest}
    shown = toka.js("effects", "show", result["call"])
    assert shown["intent"]["caps"] == ["fs.read:mount/ws/src/**", "fs.write:mount/ws/dst/**"]
    assert shown["side_effect"] == "idempotent"
    assert toka.js("verify", "--blobs")["ok"] is True
    assert no_stage_left(toka)


def test_an_agent_with_the_two_places_granted_copies(toka: Toka, ws: Path) -> None:
    agent = toka.agent("copier", "fs.read:mount/ws/src/**", "fs.write:mount/ws/dst/**", COPY)
    args = {"source": place("src/in.txt"), "target": place("dst")}
    result = toka.outcome("stagecopy", args, as_=agent)
    assert result["ok"] is True and result["output"]["copied"] == 7
    assert (ws / "dst" / "copy.txt").read_text() == "copy me"


def test_a_link_planted_in_out_fails_the_call_and_nothing_is_written(toka: Toka, ws: Path) -> None:
    result = toka.failed("refused", "stagelink", {"target": place("dst")})
    assert "/out/evil" in result["error"]["message"]
    assert result["effects"] == []
    assert not (ws / "dst").exists()
    passwd = Path("/etc/passwd").read_bytes()
    first_line = passwd.splitlines()[0]
    assert leaks(toka.home, passwd) == [] and leaks(toka.home, first_line) == []
    assert first_line.decode() not in json.dumps(result)
    assert no_stage_left(toka)


def test_a_hard_link_in_the_staged_input_fails_the_call_refused(
    toka: Toka, ws: Path, tmp_path: Path
) -> None:
    (ws / "src" / "in.txt").unlink()
    os.link(tmp_path / "outside" / "secret.txt", ws / "src" / "in.txt")
    for source in (place("src"), place("src/in.txt")):
        result = toka.failed("refused", "stagecopy", {"source": source, "target": place("dst")})
        assert result["effects"] == []
        assert SECRET.decode() not in json.dumps(result)
    assert not (ws / "dst").exists()
    assert leaks(toka.home, SECRET) == []
    assert no_stage_left(toka)


def test_a_symlink_in_the_staged_input_is_never_given_to_the_guest(
    toka: Toka, ws: Path, tmp_path: Path
) -> None:
    (ws / "src" / "in.txt").unlink()
    (ws / "src" / "in.txt").symlink_to(tmp_path / "outside" / "secret.txt")
    result = toka.outcome("stagecopy", {"source": place("src"), "target": place("dst")})
    assert result["ok"] is False  # the guest found no /in/in.txt
    assert SECRET.decode() not in json.dumps(result)
    assert not (ws / "dst").exists()
    assert leaks(toka.home, SECRET) == []
    refused = toka.failed(
        "refused", "stagecopy", {"source": place("src/in.txt"), "target": place("dst")}
    )
    assert refused["effects"] == []


def test_an_output_place_on_a_read_only_mount_is_refused_at_intent(
    toka: Toka, tmp_path: Path
) -> None:
    shelf = tmp_path / "shelf"
    shelf.mkdir()
    toka.ok("mount", "add", "shelf", str(shelf), "--mode", "ro")
    args = {"source": place("src"), "target": place("out", mount="shelf")}
    done = toka.refused(ExitCode.DENIED, "stagecopy", args)
    assert "read-only" in done.stderr
    assert "tool.started" not in toka.kinds()
    assert files_under(shelf) == []


def test_places_outside_the_grant_are_refused_at_intent(toka: Toka, ws: Path) -> None:
    agent = toka.agent(
        "narrow",
        "fs.read:mount/ws/sr*",
        "fs.read:mount/ws/src/*",
        "fs.read:mount/ws/src/in.txt/**",
        "fs.write:mount/ws/dst/**",
        COPY,
    )
    # Staging copies the whole tree a place names: a grant of the name itself (sr*), or
    # of the names in it (src/*), does not cover the tree (src/**).
    for source, target, needed in [
        (place("src"), place("dst"), "fs.read:mount/ws/src/**"),
        (place("private"), place("dst"), "fs.read:mount/ws/private/**"),
        (place("src/in.txt"), place("elsewhere"), "fs.write:mount/ws/elsewhere/**"),
        (place("src/in.txt"), place("dst-x"), "fs.write:mount/ws/dst-x/**"),
    ]:
        args = {"source": source, "target": target}
        done = toka.refused(ExitCode.DENIED, "stagecopy", args, as_=agent)
        assert f"does not cover {needed}" in done.stderr, done.stderr
        assert toka.events("operation.rejected")[-1]["payload"]["code"] == "not_covered"
    assert "tool.started" not in toka.kinds()
    assert sorted(p.name for p in ws.iterdir()) == ["private", "src"]

    ok = toka.outcome(
        "stagecopy", {"source": place("src/in.txt"), "target": place("dst")}, as_=agent
    )
    assert ok["ok"] is True


def test_a_manifest_with_files_but_no_side_effect_is_refused(toka: Toka, tmp_path: Path) -> None:
    manifest = staged_tool(tmp_path / "none", "stagecopy", COPY_FILES, side_effect="none")
    manifest.write_text(manifest.read_text().replace('name = "stagecopy"', 'name = "quiet"'))
    done = toka("tool", "register", str(manifest), "--json")
    assert done.returncode == ExitCode.INVALID, done.stderr
    assert "side_effect" in done.stderr
    assert "quiet" not in [t["name"] for t in toka.js("tool", "list")["tools"]]
