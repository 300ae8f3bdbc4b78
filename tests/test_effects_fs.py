"""The host's file hands (toka.core.tools.effects.fs) against a hostile filesystem.

Each test builds a mount directory and, beside it, an ``outside`` directory holding a
secret; whatever is planted in the mount, the secret's bytes must never come back and
nothing outside may change.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import stat
import threading
from pathlib import Path

import pytest

from toka.core.tools.effects import fs
from toka.core.tools.effects.fs import (
    Entry,
    FsError,
    file_sha256,
    list_dir,
    read_file,
    write_file,
)

SECRET = b"the secret outside the mount\n"
BIG = 1 << 20


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def mount(tmp_path: Path) -> Path:
    root = tmp_path / "mount"
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "a.md").write_bytes(b"hello\n")
    return root


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    out = tmp_path / "outside"
    out.mkdir()
    (out / "secret").write_bytes(SECRET)
    (out / "a.md").write_bytes(SECRET)
    return out


def refused(call, *args, **kwargs) -> FsError:
    with pytest.raises(FsError) as info:
        call(*args, **kwargs)
    assert info.value.kind == "refused", info.value.message
    return info.value


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def temp_files(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.startswith(".toka-")]


# Ordinary files.


def test_read_returns_bytes_size_hash_and_mtime(mount: Path) -> None:
    got = read_file(str(mount), ["docs", "a.md"], BIG)
    assert got.data == b"hello\n"
    assert got.size == 6
    assert got.sha256 == sha(b"hello\n")
    assert got.mtime_ns == (mount / "docs" / "a.md").stat().st_mtime_ns


def test_read_nested_directories(mount: Path) -> None:
    (mount / "docs" / "x" / "y").mkdir(parents=True)
    (mount / "docs" / "x" / "y" / "z.txt").write_bytes(b"deep")
    assert read_file(str(mount), ["docs", "x", "y", "z.txt"], BIG).data == b"deep"


def test_list_sorts_entries_and_gives_file_sizes(mount: Path) -> None:
    (mount / "b.txt").write_bytes(b"12345")
    listing = list_dir(str(mount), [], 100)
    assert listing.entries == (Entry("b.txt", "file", 5), Entry("docs", "dir"))
    assert list_dir(str(mount), ["docs"], 100).entries == (Entry("a.md", "file", 6),)


def test_listing_canonical_is_deterministic_json_with_its_hash(mount: Path) -> None:
    (mount / "z").write_bytes(b"")
    (mount / "é").write_bytes(b"1")
    listing = list_dir(str(mount), [], 100)
    assert listing.canonical() == list_dir(str(mount), [], 100).canonical()
    assert json.loads(listing.canonical()) == {
        "entries": [
            {"name": "docs", "size": None, "type": "dir"},
            {"name": "z", "size": 0, "type": "file"},
            {"name": "é", "size": 1, "type": "file"},
        ]
    }
    assert listing.sha256 == sha(listing.canonical())


def test_list_shows_a_symlink_as_symlink_without_following_it(mount: Path, outside: Path) -> None:
    (mount / "out").symlink_to(outside)
    (mount / "dangling").symlink_to(mount / "nowhere")
    listing = list_dir(str(mount), [], 100)
    assert Entry("out", "symlink") in listing.entries
    assert Entry("dangling", "symlink") in listing.entries
    assert all(e.name != "secret" for e in listing.entries)


def test_list_hides_the_size_of_a_hard_linked_file(mount: Path, outside: Path) -> None:
    os.link(outside / "secret", mount / "hl")
    assert Entry("hl", "file", None) in list_dir(str(mount), [], 100).entries


def test_list_names_that_are_not_utf8_as_other(mount: Path) -> None:
    os.close(os.open(os.fsencode(mount) + b"/bad\xff", os.O_CREAT | os.O_WRONLY, 0o644))
    listing = list_dir(str(mount), [], 100)
    assert Entry("bad\\xff", "other") in listing.entries
    json.loads(listing.canonical())


def test_write_creates_a_file_with_mode_0644(mount: Path) -> None:
    got = write_file(str(mount), ["docs", "new.md"], b"new", if_sha256=None, max_bytes=BIG)
    assert got == fs.FileWritten(None, sha(b"new"), 3, 0o644, changed=True)
    path = mount / "docs" / "new.md"
    assert path.read_bytes() == b"new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_write_replaces_and_keeps_the_permission_bits(mount: Path) -> None:
    path = mount / "docs" / "a.md"
    path.chmod(0o600)
    got = write_file(str(mount), ["docs", "a.md"], b"v2", if_sha256=None, max_bytes=BIG)
    assert (got.before_sha256, got.after_sha256, got.changed) == (sha(b"hello\n"), sha(b"v2"), True)
    assert path.read_bytes() == b"v2"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_write_modes_do_not_depend_on_the_umask(mount: Path) -> None:
    (mount / "shared").write_bytes(b"old")
    (mount / "shared").chmod(0o666)
    previous = os.umask(0o077)
    try:
        write_file(str(mount), ["fresh"], b"x", if_sha256=None, max_bytes=BIG)
        write_file(str(mount), ["shared"], b"new", if_sha256=None, max_bytes=BIG)
    finally:
        os.umask(previous)
    assert stat.S_IMODE((mount / "fresh").stat().st_mode) == 0o644
    assert stat.S_IMODE((mount / "shared").stat().st_mode) == 0o666


def test_write_fsyncs_the_file_and_then_its_directory(
    mount: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    write_file(str(mount), ["docs", "a.md"], b"v2", if_sha256=None, max_bytes=BIG)
    assert synced == ["file", "dir"]


def test_write_creates_missing_directories(mount: Path) -> None:
    write_file(str(mount), ["new", "deep", "f.txt"], b"x", if_sha256=None, max_bytes=BIG)
    assert (mount / "new" / "deep" / "f.txt").read_bytes() == b"x"
    assert stat.S_IMODE((mount / "new").stat().st_mode) & 0o700 == 0o700


def test_write_without_make_dirs_is_not_found_for_a_missing_directory(mount: Path) -> None:
    with pytest.raises(FsError) as info:
        write_file(str(mount), ["no", "f"], b"x", if_sha256=None, max_bytes=BIG, make_dirs=False)
    assert info.value.kind == "not_found"
    assert not (mount / "no").exists()


def test_file_sha256_is_the_hash_or_none_when_absent(mount: Path) -> None:
    assert file_sha256(str(mount), ["docs", "a.md"]) == sha(b"hello\n")
    assert file_sha256(str(mount), ["docs", "nope"]) is None
    assert file_sha256(str(mount), ["nodir", "nope"]) is None


def test_read_of_a_missing_file_is_not_found(mount: Path) -> None:
    for parts in (["docs", "nope.md"], ["nodir", "a.md"]):
        with pytest.raises(FsError) as info:
            read_file(str(mount), parts, BIG)
        assert info.value.kind == "not_found"
        assert info.value.message.startswith("/".join(parts) + ": ")


def test_messages_name_the_mount_relative_path_never_the_host_path(
    mount: Path, outside: Path
) -> None:
    (mount / "docs" / "link.md").symlink_to(outside / "secret")
    e = refused(read_file, str(mount), ["docs", "link.md"], BIG)
    assert e.message == "docs/link.md: is a symbolic link; links are not followed"
    assert str(mount) not in e.message and str(outside) not in e.message


# Links and special files: the escape matrix.


@pytest.mark.parametrize("target", ["absolute", "relative"])
def test_a_symlink_out_is_refused_for_read_and_hash(
    mount: Path, outside: Path, target: str
) -> None:
    dest = outside / "secret" if target == "absolute" else Path("../../outside/secret")
    (mount / "docs" / "evil").symlink_to(dest)
    assert (mount / "docs" / "evil").read_bytes() == SECRET  # a naive open would leak
    refused(read_file, str(mount), ["docs", "evil"], BIG)
    refused(file_sha256, str(mount), ["docs", "evil"])


def test_a_symlink_to_a_file_inside_is_still_refused(mount: Path) -> None:
    (mount / "docs" / "alias.md").symlink_to("a.md")
    refused(read_file, str(mount), ["docs", "alias.md"], BIG)
    e = refused(write_file, str(mount), ["docs", "alias.md"], b"x", if_sha256=None, max_bytes=BIG)
    assert "write through" in e.message
    assert (mount / "docs" / "a.md").read_bytes() == b"hello\n"
    assert (mount / "docs" / "alias.md").is_symlink()


@pytest.mark.parametrize("where", ["inside", "outside"])
def test_a_symlinked_directory_is_refused_for_every_operation(
    mount: Path, outside: Path, where: str
) -> None:
    (mount / "link").symlink_to(mount / "docs" if where == "inside" else outside)
    e = refused(read_file, str(mount), ["link", "a.md"], BIG)
    assert e.message == "link/a.md: link is a symbolic link; links are not followed"
    refused(list_dir, str(mount), ["link"], 100)
    refused(file_sha256, str(mount), ["link", "a.md"])
    refused(write_file, str(mount), ["link", "new.md"], b"x", if_sha256=None, max_bytes=BIG)
    refused(write_file, str(mount), ["link", "sub", "n"], b"x", if_sha256=None, max_bytes=BIG)
    assert not (outside / "new.md").exists() and not (mount / "docs" / "new.md").exists()
    assert not (outside / "sub").exists()
    assert (outside / "a.md").read_bytes() == SECRET


@pytest.mark.parametrize("suffix", ["", "/"])
def test_a_symlink_swapped_in_at_the_mount_root_is_refused(
    tmp_path: Path, outside: Path, suffix: str
) -> None:
    root = tmp_path / "root"
    root.symlink_to(outside)
    e = refused(read_file, str(root) + suffix, ["secret"], BIG)
    assert "mount root is a symbolic link" in e.message
    refused(list_dir, str(root) + suffix, [], 100)
    refused(write_file, str(root) + suffix, ["n"], b"x", if_sha256=None, max_bytes=BIG)
    assert not (outside / "n").exists()


def test_a_mount_root_that_is_missing_or_a_file_is_refused(tmp_path: Path) -> None:
    refused(list_dir, str(tmp_path / "missing"), [], 100)
    (tmp_path / "file").write_bytes(b"")
    refused(list_dir, str(tmp_path / "file"), [], 100)
    refused(list_dir, "relative/root", [], 100)


def test_a_hard_link_to_an_outside_file_is_refused(mount: Path, outside: Path) -> None:
    os.link(outside / "secret", mount / "docs" / "hl")
    e = refused(read_file, str(mount), ["docs", "hl"], BIG)
    assert "hard link (2 names)" in e.message
    refused(file_sha256, str(mount), ["docs", "hl"])
    refused(write_file, str(mount), ["docs", "hl"], b"x", if_sha256=None, max_bytes=BIG)
    assert (outside / "secret").read_bytes() == SECRET
    assert (mount / "docs" / "hl").stat().st_nlink == 2


def _in_thread(call, *args, **kwargs) -> BaseException | None:
    """Run ``call`` on a thread; what it raised, or fail the test if it is still blocked."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call(*args, **kwargs)
            outcome.append(None)
        except BaseException as e:
            outcome.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive(), "the call blocked"
    return outcome[0]


@pytest.mark.timeout(30)
def test_a_fifo_is_refused_without_blocking(mount: Path) -> None:
    os.mkfifo(mount / "docs" / "pipe")
    for call, args in (
        (read_file, (str(mount), ["docs", "pipe"], BIG)),
        (file_sha256, (str(mount), ["docs", "pipe"])),
    ):
        e = _in_thread(call, *args)
        assert isinstance(e, FsError) and e.kind == "refused" and "FIFO" in e.message
    e = _in_thread(write_file, str(mount), ["docs", "pipe"], b"x", if_sha256=None, max_bytes=BIG)
    assert isinstance(e, FsError) and e.kind == "refused"
    assert stat.S_ISFIFO((mount / "docs" / "pipe").stat().st_mode)
    assert Entry("pipe", "other") in list_dir(str(mount), ["docs"], 100).entries


def test_a_socket_file_is_refused(mount: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(mount / "docs")  # a short path: UNIX socket names are limited
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind("sock")
        e = refused(read_file, str(mount), ["docs", "sock"], BIG)
        assert "socket" in e.message
        refused(write_file, str(mount), ["docs", "sock"], b"x", if_sha256=None, max_bytes=BIG)
    assert Entry("sock", "other") in list_dir(str(mount), ["docs"], 100).entries


def test_a_device_file_is_refused_without_being_opened(
    mount: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    try:
        os.mknod(mount / "docs" / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("creating a device needs CAP_MKNOD")
    opened: list[object] = []
    real_open = os.open

    def recording_open(path, *args, **kwargs):
        opened.append(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", recording_open)
    e = refused(read_file, str(mount), ["docs", "null"], BIG)
    assert "character device" in e.message
    assert "null" not in opened


def test_a_write_through_a_dangling_link_creates_nothing(mount: Path, outside: Path) -> None:
    (mount / "docs" / "dangling").symlink_to(outside / "planted")
    e = refused(write_file, str(mount), ["docs", "dangling"], b"x", if_sha256=None, max_bytes=BIG)
    assert "dangling" in e.message
    assert not (outside / "planted").exists()
    assert (mount / "docs" / "dangling").is_symlink()


def test_a_write_whose_target_is_a_directory_is_refused(mount: Path) -> None:
    e = refused(write_file, str(mount), ["docs"], b"x", if_sha256=None, max_bytes=BIG)
    assert "directory" in e.message
    assert (mount / "docs").is_dir()
    refused(write_file, str(mount), [], b"x", if_sha256=None, max_bytes=BIG)


def test_a_read_of_a_directory_and_a_listing_of_a_file_are_refused(mount: Path) -> None:
    refused(read_file, str(mount), ["docs"], BIG)
    refused(list_dir, str(mount), ["docs", "a.md"], 100)
    refused(read_file, str(mount), ["docs", "a.md", "x"], BIG)


@pytest.mark.parametrize("bad", ["a/b", "..", ".", "", "a\0b"])
def test_a_segment_that_is_not_one_name_is_refused(mount: Path, bad: str) -> None:
    refused(read_file, str(mount), ["docs", bad], BIG)
    refused(write_file, str(mount), [bad, "f"], b"x", if_sha256=None, max_bytes=BIG)


# Races: the decision is on what was opened.


def test_a_file_swapped_for_a_link_after_the_check_is_refused(
    mount: Path, outside: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_stat = os.stat

    def stat_then_swap(path, *args, **kwargs):
        st = real_stat(path, *args, **kwargs)
        if path == "a.md" and not (mount / "docs" / "a.md").is_symlink():
            os.unlink(mount / "docs" / "a.md")
            os.symlink(outside / "secret", mount / "docs" / "a.md")
        return st

    monkeypatch.setattr(os, "stat", stat_then_swap)
    refused(read_file, str(mount), ["docs", "a.md"], BIG)


def test_a_file_swapped_for_a_hard_link_after_the_check_is_refused(
    mount: Path, outside: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_stat = os.stat

    def stat_then_swap(path, *args, **kwargs):
        st = real_stat(path, *args, **kwargs)
        if path == "a.md" and real_stat(outside / "secret").st_nlink == 1:
            os.unlink(mount / "docs" / "a.md")
            os.link(outside / "secret", mount / "docs" / "a.md")
        return st

    monkeypatch.setattr(os, "stat", stat_then_swap)
    e = refused(read_file, str(mount), ["docs", "a.md"], BIG)
    assert "hard link" in e.message


@pytest.mark.timeout(30)
def test_a_fifo_swapped_in_after_the_check_does_not_block(
    mount: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_stat = os.stat

    def stat_then_swap(path, *args, **kwargs):
        st = real_stat(path, *args, **kwargs)
        if path == "a.md" and stat.S_ISREG(real_stat(mount / "docs" / "a.md").st_mode):
            os.unlink(mount / "docs" / "a.md")
            os.mkfifo(mount / "docs" / "a.md")
        return st

    monkeypatch.setattr(os, "stat", stat_then_swap)
    e = _in_thread(read_file, str(mount), ["docs", "a.md"], BIG)
    assert isinstance(e, FsError) and e.kind == "refused" and "FIFO" in e.message


def test_a_link_planted_at_the_target_before_the_rename_is_replaced_not_followed(
    mount: Path, outside: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_replace = os.replace

    def plant_then_replace(src, dst, *args, **kwargs):
        os.symlink(outside / "secret", mount / "docs" / "new.md")
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", plant_then_replace)
    write_file(str(mount), ["docs", "new.md"], b"mine", if_sha256=None, max_bytes=BIG)
    assert (outside / "secret").read_bytes() == SECRET
    assert not (mount / "docs" / "new.md").is_symlink()
    assert (mount / "docs" / "new.md").read_bytes() == b"mine"


@pytest.mark.timeout(120)
def test_reads_racing_a_directory_swapped_for_a_symlink_never_see_outside(
    mount: Path, outside: Path
) -> None:
    docs, parked = mount / "docs", mount / "parked"
    stop = threading.Event()
    swaps = 0

    def swapper() -> None:
        nonlocal swaps
        while not stop.is_set():
            os.rename(docs, parked)
            os.symlink(outside, docs)
            os.unlink(docs)
            os.rename(parked, docs)
            swaps += 1

    thread = threading.Thread(target=swapper, daemon=True)
    thread.start()
    seen: dict[str, int] = {}
    try:
        for _ in range(3000):
            try:
                got = read_file(str(mount), ["docs", "a.md"], BIG)
            except FsError as e:
                seen[e.kind] = seen.get(e.kind, 0) + 1
                continue
            assert got.data == b"hello\n"
            seen["read"] = seen.get("read", 0) + 1
    finally:
        stop.set()
        thread.join(timeout=10)
    assert swaps > 0
    assert set(seen) <= {"read", "refused", "not_found"}


# Compare-and-swap and idempotence.


def test_a_matching_if_sha256_writes(mount: Path) -> None:
    got = write_file(str(mount), ["docs", "a.md"], b"v2", if_sha256=sha(b"hello\n"), max_bytes=BIG)
    assert got.changed and got.before_sha256 == sha(b"hello\n")
    assert (mount / "docs" / "a.md").read_bytes() == b"v2"


def test_a_mismatched_if_sha256_is_a_conflict_naming_both_hashes(mount: Path) -> None:
    wrong = sha(b"something else")
    with pytest.raises(FsError) as info:
        write_file(str(mount), ["docs", "a.md"], b"v2", if_sha256=wrong, max_bytes=BIG)
    assert info.value.kind == "conflict"
    assert wrong in info.value.message and sha(b"hello\n") in info.value.message
    assert (mount / "docs" / "a.md").read_bytes() == b"hello\n"
    assert temp_files(mount / "docs") == []


def test_an_empty_if_sha256_on_an_existing_file_is_a_conflict(mount: Path) -> None:
    with pytest.raises(FsError) as info:
        write_file(str(mount), ["docs", "a.md"], b"v2", if_sha256="", max_bytes=BIG)
    assert info.value.kind == "conflict"
    assert (mount / "docs" / "a.md").read_bytes() == b"hello\n"
    got = write_file(str(mount), ["docs", "b.md"], b"b", if_sha256="", max_bytes=BIG)
    assert got.before_sha256 is None and got.changed


def test_a_hash_if_sha256_on_an_absent_file_conflicts_and_creates_no_directory(
    mount: Path,
) -> None:
    with pytest.raises(FsError) as info:
        write_file(str(mount), ["new", "f"], b"x", if_sha256=sha(b"x0"), max_bytes=BIG)
    assert info.value.kind == "conflict" and "no file" in info.value.message
    assert not (mount / "new").exists()


def test_identical_content_is_unchanged_and_the_file_untouched(mount: Path) -> None:
    path = mount / "docs" / "a.md"
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    before = path.stat()
    got = write_file(str(mount), ["docs", "a.md"], b"hello\n", if_sha256=None, max_bytes=BIG)
    assert got == fs.FileWritten(sha(b"hello\n"), sha(b"hello\n"), 6, 0o644, changed=False)
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_a_retried_write_after_the_first_landed_succeeds_unchanged(mount: Path) -> None:
    old = sha(b"hello\n")
    first = write_file(str(mount), ["docs", "a.md"], b"v2", if_sha256=old, max_bytes=BIG)
    again = write_file(str(mount), ["docs", "a.md"], b"v2", if_sha256=old, max_bytes=BIG)
    assert first.changed and not again.changed
    assert again.after_sha256 == sha(b"v2")
    created = write_file(str(mount), ["n"], b"n", if_sha256="", max_bytes=BIG)
    retried = write_file(str(mount), ["n"], b"n", if_sha256="", max_bytes=BIG)
    assert created.changed and not retried.changed


def test_a_malformed_if_sha256_is_a_value_error(mount: Path) -> None:
    with pytest.raises(ValueError):
        write_file(str(mount), ["docs", "a.md"], b"x", if_sha256="abc", max_bytes=BIG)


# Failures leave nothing behind.


def test_the_temp_file_is_removed_when_the_rename_fails(
    mount: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_replace = os.replace

    def plant_then_replace(src, dst, *args, **kwargs):
        # A non-empty directory appears at the target between the check and the rename.
        (mount / "docs" / "new.md" / "inner").mkdir(parents=True)
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", plant_then_replace)
    e = refused(write_file, str(mount), ["docs", "new.md"], b"x", if_sha256=None, max_bytes=BIG)
    assert "directory" in e.message
    assert temp_files(mount / "docs") == []


def test_the_temp_file_is_removed_when_fsync_fails(
    mount: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(FsError) as info:
        write_file(str(mount), ["docs", "a.md"], b"v2", if_sha256=None, max_bytes=BIG)
    assert info.value.kind == "io"
    assert temp_files(mount / "docs") == []
    assert (mount / "docs" / "a.md").read_bytes() == b"hello\n"


def test_no_descriptor_is_left_open_on_success_or_refusal(mount: Path, outside: Path) -> None:
    (mount / "docs" / "evil").symlink_to(outside / "secret")
    os.mkfifo(mount / "docs" / "pipe")
    before = open_fds()
    for _ in range(3):
        read_file(str(mount), ["docs", "a.md"], BIG)
        list_dir(str(mount), ["docs"], 100)
        write_file(str(mount), ["docs", "w"], os.urandom(8), if_sha256=None, max_bytes=BIG)
        for parts in (["docs", "evil"], ["docs", "pipe"], ["docs", "nope"], ["nodir", "x"]):
            with pytest.raises(FsError):
                read_file(str(mount), parts, BIG)
        with pytest.raises(FsError):
            read_file(str(mount), ["docs", "a.md"], 2)
        with pytest.raises(FsError):
            list_dir(str(mount), ["docs"], 1)
    assert open_fds() == before


# Limits.


def test_read_over_max_bytes_is_too_large(mount: Path) -> None:
    assert read_file(str(mount), ["docs", "a.md"], 6).data == b"hello\n"
    with pytest.raises(FsError) as info:
        read_file(str(mount), ["docs", "a.md"], 5)
    assert info.value.kind == "too_large"


def test_a_file_already_over_the_limit_is_not_read(
    mount: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open(mount / "huge", "wb") as f:
        f.truncate(64 * BIG)
    reads: list[int] = []
    real_read = os.read

    def counting_read(fd: int, n: int) -> bytes:
        reads.append(n)
        return real_read(fd, n)

    monkeypatch.setattr(os, "read", counting_read)
    with pytest.raises(FsError) as info:
        read_file(str(mount), ["huge"], BIG)
    assert info.value.kind == "too_large" and reads == []


def test_a_file_growing_after_the_size_check_is_too_large(
    mount: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fstat = os.fstat

    def fstat_then_grow(fd: int) -> os.stat_result:
        st = real_fstat(fd)
        with open(mount / "docs" / "a.md", "ab") as f:
            f.write(b"x" * 100)
        return st

    monkeypatch.setattr(os, "fstat", fstat_then_grow)
    with pytest.raises(FsError) as info:
        read_file(str(mount), ["docs", "a.md"], 10)
    assert info.value.kind == "too_large"


def test_write_over_max_bytes_is_too_large_before_anything_is_touched(mount: Path) -> None:
    assert write_file(str(mount), ["ok"], b"12345", if_sha256=None, max_bytes=5).changed
    with pytest.raises(FsError) as info:
        write_file(str(mount), ["new", "f"], b"123456", if_sha256=None, max_bytes=5)
    assert info.value.kind == "too_large"
    assert not (mount / "new").exists()


def test_list_over_max_entries_is_too_large(mount: Path) -> None:
    for i in range(3):
        (mount / f"f{i}").write_bytes(b"")
    assert len(list_dir(str(mount), [], 4).entries) == 4
    with pytest.raises(FsError) as info:
        list_dir(str(mount), [], 3)
    assert info.value.kind == "too_large"
