"""The host's file hands: read, list and write under a mount root without following links.

The kernel has already checked the capability for (mount, path) and refused ``..``,
``.``, absolute paths and empty segments; this module makes sure that what is touched
really is that name under that root, whatever the filesystem holds. Links may be planted
by agents, tools or other users, and names may be swapped while a call runs, so no
decision rests on a path string:

- the root is opened with ``O_DIRECTORY|O_NOFOLLOW`` (a link swapped in at the mount
  root is refused), and every component below it with ``dir_fd=`` its parent and
  ``O_NOFOLLOW``, so a symbolic link anywhere on the way is refused, never followed;
- a file is judged by ``fstat`` on the descriptor actually opened: only a regular file
  with one name (``st_nlink == 1``) is read, hashed or replaced. A hard link may name a
  file outside the mount, and a FIFO, socket or device is not content;
- a write goes to a fresh temporary name in the same directory and is renamed over the
  target with both ``dir_fd``s; rename replaces a link at the destination instead of
  following it.

A stricter ``os.stat(follow_symlinks=False)`` runs first only to give the clearest error
and to avoid opening special files at all; it never grants anything. Every descriptor is
closed on every path. Errors are ``FsError`` with a ``kind`` and a message that names the
mount-relative path, never the host path of the root.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import secrets
import stat
from contextlib import suppress
from typing import Literal, NamedTuple

import msgspec

from toka.core.tools.effects._walk import (
    FsError,
    FsErrorKind,
    check_parts,
    io_error,
    mount_relative,
    open_dirs,
    open_plain_file,
    walk,
)

__all__ = [
    "Entry",
    "EntryType",
    "FileRead",
    "FileWritten",
    "FsError",
    "FsErrorKind",
    "Listing",
    "file_sha256",
    "list_dir",
    "read_file",
    "write_file",
]

EntryType = Literal["file", "dir", "symlink", "other"]

_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_MODE = 0o644
_CHUNK = 1 << 20
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_canonical = msgspec.json.Encoder(order="sorted")


class FileRead(msgspec.Struct, frozen=True):
    """What ``read_file`` saw: the bytes and their size, sha256 and mtime at open."""

    data: bytes
    size: int
    sha256: str
    mtime_ns: int


class Entry(msgspec.Struct, frozen=True):
    """One name in a listing; ``size`` only for a regular file with a single name."""

    name: str
    type: EntryType
    size: int | None = None


class Listing(msgspec.Struct, frozen=True):
    """A directory's entries, sorted by name, never following what they point to."""

    entries: tuple[Entry, ...]

    def canonical(self) -> bytes:
        """Deterministic JSON (sorted keys, entries sorted by name), for a blob."""
        return _canonical.encode(self)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.canonical()).hexdigest()


class FileWritten(msgspec.Struct, frozen=True):
    """The outcome of ``write_file``: the content hashes before (None if absent) and
    after, the size and mode now in place, and whether anything was written."""

    before_sha256: str | None
    after_sha256: str
    size: int
    mode: int
    changed: bool


def read_file(root: str, parts: list[str], max_bytes: int) -> FileRead:
    """Read the regular, single-named file at ``parts`` under ``root``.

    Links are refused wherever they are; so are hard-linked files and special files.
    A file over ``max_bytes`` is ``too_large`` (at most ``max_bytes + 1`` bytes are read,
    so a file growing under us cannot make us read more).
    """
    shown = mount_relative(parts)
    if not parts:
        raise FsError("refused", f"{shown}: is the mount root, a directory; only files are read")
    check_parts(parts, shown)
    with walk(root, parts[:-1], shown) as d, open_plain_file(d, parts[-1], shown) as (fd, st):
        if st.st_size > max_bytes:
            raise _too_large(shown, max_bytes)
        data = _read_at_most(fd, max_bytes + 1, shown)
    if len(data) > max_bytes:
        raise _too_large(shown, max_bytes)
    return FileRead(data, len(data), hashlib.sha256(data).hexdigest(), st.st_mtime_ns)


def list_dir(root: str, parts: list[str], max_entries: int) -> Listing:
    """List the directory at ``parts`` (``[]`` is the mount root), sorted by name.

    Each entry is judged by ``lstat``: a symbolic link is listed as ``symlink`` and never
    followed; FIFOs, sockets and devices are ``other``. A name that is not UTF-8 cannot be
    addressed by a path, so it is listed as ``other`` under its backslash-escaped text.
    More than ``max_entries`` names is ``too_large`` (reading stops there).
    """
    shown = mount_relative(parts)
    check_parts(parts, shown)
    entries: list[Entry] = []
    with walk(root, parts, shown) as d:
        try:
            with os.scandir(d) as names:
                for item in names:
                    if len(entries) == max_entries:
                        raise FsError("too_large", f"{shown}: has more than {max_entries} entries")
                    entry = _entry(d, item.name)
                    if entry is not None:
                        entries.append(entry)
        except OSError as e:
            raise io_error(shown, e) from e
    entries.sort(key=lambda e: e.name)
    return Listing(tuple(entries))


def write_file(
    root: str,
    parts: list[str],
    data: bytes,
    *,
    if_sha256: str | None,
    max_bytes: int,
    make_dirs: bool = True,
) -> FileWritten:
    """Replace (or create) the file at ``parts`` with ``data``, atomically.

    In order: ``len(data) > max_bytes`` is ``too_large`` before anything is touched. The
    existing target, if any, must be a regular file with one name (a link, even a
    dangling one, is refused: a write through it could land outside the mount). If its
    content already equals ``data`` nothing is written and ``changed`` is False; this
    comes before the compare-and-swap, so a retried write whose first attempt landed
    succeeds. Then ``if_sha256``, when given, is checked: a 64-hex sha256 the current
    content must have, or ``""`` for "must not exist"; a mismatch is ``conflict`` and
    nothing is created, not even missing directories. Otherwise the bytes go to a
    temporary name in the same directory (mode 0o644, or the replaced file's permission
    bits), are fsynced, renamed over the target, and the directory is fsynced; the
    temporary file is removed on any failure. Missing directories are created (0o755)
    when ``make_dirs``. The compare-and-swap guards against Toka's own writers; a process
    outside Toka writing the same file in the same instant can still race it.
    """
    shown = mount_relative(parts)
    if not parts:
        raise FsError("refused", f"{shown}: is the mount root, a directory; only files are written")
    check_parts(parts, shown)
    if len(data) > max_bytes:
        raise FsError(
            "too_large", f"{shown}: {len(data)} bytes to write exceed the limit of {max_bytes}"
        )
    if if_sha256 is not None and if_sha256 != "" and not _SHA256_HEX.fullmatch(if_sha256):
        raise ValueError(f"if_sha256 must be a 64-hex sha256 or empty, got {if_sha256!r}")
    after = hashlib.sha256(data).hexdigest()
    try:
        d = open_dirs(root, parts[:-1], shown)
    except FsError as e:
        if e.kind != "not_found" or not make_dirs:
            raise
        # A missing directory means an absent target: check the swap before creating any.
        _check_swap(if_sha256, None, shown)
        d = open_dirs(root, parts[:-1], shown, make_dirs=True)
    try:
        name = parts[-1]
        current = _current(d, name, shown)
        before = current.sha256 if current else None
        mode = current.mode if current else _NEW_FILE_MODE
        if before == after:
            return FileWritten(before, after, len(data), mode, changed=False)
        _check_swap(if_sha256, before, shown)
        _replace(d, name, data, mode, shown)
    finally:
        os.close(d)
    return FileWritten(before, after, len(data), mode, changed=True)


def file_sha256(root: str, parts: list[str]) -> str | None:
    """The sha256 of the file at ``parts`` through the same walk, or None if absent.

    Absent means a missing name anywhere on the path; a link, hard link or special file
    is still refused, so a check before re-running a write sees what the write would.
    """
    shown = mount_relative(parts)
    if not parts:
        raise FsError("refused", f"{shown}: is the mount root, a directory; only files are hashed")
    check_parts(parts, shown)
    try:
        with walk(root, parts[:-1], shown) as d:
            current = _current(d, parts[-1], shown)
    except FsError as e:
        if e.kind == "not_found":
            return None
        raise
    return current.sha256 if current else None


class _Current(NamedTuple):
    """The file a write would replace: its content hash and permission bits."""

    sha256: str
    mode: int


def _current(d: int, name: str, shown: str) -> _Current | None:
    """The file at ``name`` in ``d``, or None if absent; anything but a plain file is refused."""
    try:
        pre = os.stat(name, dir_fd=d, follow_symlinks=False)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise io_error(shown, e) from e
    if stat.S_ISLNK(pre.st_mode):
        raise FsError(
            "refused",
            f"{shown}: is a symbolic link; links are not followed, and a write through one "
            "(even a dangling one) is refused",
        )
    try:
        with open_plain_file(d, name, shown) as (fd, st):
            return _Current(_hash_all(fd, shown), stat.S_IMODE(st.st_mode) & 0o777)
    except FsError as e:
        if e.kind == "not_found":
            return None
        raise


def _entry(d: int, name: str) -> Entry | None:
    try:
        st = os.stat(name, dir_fd=d, follow_symlinks=False)
    except FileNotFoundError:
        return None  # removed since the directory was read: no longer an entry
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return Entry(os.fsencode(name).decode("utf-8", "backslashreplace"), "other")
    if stat.S_ISLNK(st.st_mode):
        return Entry(name, "symlink")
    if stat.S_ISDIR(st.st_mode):
        return Entry(name, "dir")
    if stat.S_ISREG(st.st_mode):
        # A hard-linked file's size is the size of something that may be outside.
        return Entry(name, "file", st.st_size if st.st_nlink == 1 else None)
    return Entry(name, "other")


# Reading and writing bytes.


def _read_at_most(fd: int, limit: int, shown: str) -> bytes:
    chunks: list[bytes] = []
    left = limit
    try:
        while left > 0:
            chunk = os.read(fd, min(left, _CHUNK))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as e:
        raise io_error(shown, e) from e
    return b"".join(chunks)


def _hash_all(fd: int, shown: str) -> str:
    h = hashlib.sha256()
    try:
        while chunk := os.read(fd, _CHUNK):
            h.update(chunk)
    except OSError as e:
        raise io_error(shown, e) from e
    return h.hexdigest()


def _check_swap(if_sha256: str | None, before: str | None, shown: str) -> None:
    if if_sha256 is None:
        return
    if if_sha256 == "" and before is not None:
        raise FsError("conflict", f"{shown}: expected no file, found one with sha256 {before}")
    if if_sha256 != "" and before != if_sha256:
        found = f"sha256 {before}" if before is not None else "no file"
        raise FsError("conflict", f"{shown}: expected sha256 {if_sha256}, found {found}")


def _replace(d: int, name: str, data: bytes, mode: int, shown: str) -> None:
    # A short random name: independent of the target's length, and O_EXCL never
    # reuses (or follows) anything already there.
    tmp = f".toka-{secrets.token_hex(8)}.tmp"
    try:
        fd = os.open(tmp, _TEMP_FLAGS, mode, dir_fd=d)
    except OSError as e:
        raise io_error(shown, e) from e
    try:
        try:
            os.fchmod(fd, mode)  # the umask must not change what is recorded
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, name, src_dir_fd=d, dst_dir_fd=d)
    except BaseException as e:
        with suppress(OSError):
            os.unlink(tmp, dir_fd=d)
        if isinstance(e, OSError):
            if e.errno in (errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST):
                raise FsError(
                    "refused", f"{shown}: is a directory; only regular files are written"
                ) from e
            raise io_error(shown, e) from e
        raise
    try:
        os.fsync(d)  # the rename itself must survive a crash
    except OSError as e:
        raise io_error(shown, e) from e


def _too_large(shown: str, max_bytes: int) -> FsError:
    return FsError("too_large", f"{shown}: is larger than the limit of {max_bytes} bytes")
