"""The walk under a mount root: each component opened with ``dir_fd`` and ``O_NOFOLLOW``.

Private to ``fs``. Everything here judges what was opened (``fstat``) or, for the error
message only, what the name is at this moment (``lstat``); nothing follows a link.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

FsErrorKind = Literal["refused", "not_found", "conflict", "too_large", "io"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO swapped in after the pre-check must not block the open.
# O_NOCTTY: a terminal swapped in must not become our controlling terminal.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_NEW_DIR_MODE = 0o755


class FsError(Exception):
    """A file effect that did not happen, and why.

    ``kind`` is ``refused`` (it would escape the mount or is not a plain file or
    directory), ``not_found``, ``conflict`` (a compare-and-swap mismatch), ``too_large``
    or ``io`` (any other OS error). ``message`` names the mount-relative path.
    """

    def __init__(self, kind: FsErrorKind, message: str):
        super().__init__(message)
        self.kind: FsErrorKind = kind
        self.message = message


def mount_relative(parts: list[str]) -> str:
    return "/".join(parts) if parts else "."


def check_parts(parts: list[str], shown: str) -> None:
    # The kernel refuses these already; a segment holding "/" would make one os.open
    # resolve several components, and O_NOFOLLOW guards only the last of them.
    for name in parts:
        if not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\0" in name:
            raise FsError("refused", f"{shown}: {name!r} is not a single path segment")


@contextmanager
def walk(root: str, parts: list[str], shown: str) -> Iterator[int]:
    """The directory at ``parts`` under ``root``, open for the ``with`` block."""
    fd = open_dirs(root, parts, shown)
    try:
        yield fd
    finally:
        os.close(fd)


def open_dirs(root: str, parts: list[str], shown: str, *, make_dirs: bool = False) -> int:
    """Open the directory at ``parts`` one component at a time; the caller closes it."""
    fd = _open_root(root, shown)
    try:
        for i, name in enumerate(parts):
            child = _open_dir(fd, name, shown, "/".join(parts[: i + 1]), make_dirs)
            parent, fd = fd, child
            os.close(parent)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_root(root: str, shown: str) -> int:
    if not os.path.isabs(root):
        raise FsError("refused", f"{shown}: the mount root is not an absolute path")
    # A trailing slash makes the kernel follow a link at the last component despite
    # O_NOFOLLOW, so it is stripped.
    path = root.rstrip("/") or "/"
    try:
        return os.open(path, _DIR_FLAGS)
    except OSError as e:
        try:
            st = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            raise FsError("refused", f"{shown}: the mount root does not exist") from e
        except OSError:
            st = None
        if e.errno == errno.ELOOP or (st is not None and stat.S_ISLNK(st.st_mode)):
            raise FsError(
                "refused", f"{shown}: the mount root is a symbolic link; links are not followed"
            ) from e
        if st is not None and not stat.S_ISDIR(st.st_mode):
            raise FsError(
                "refused", f"{shown}: the mount root is {_what(st)}, not a directory"
            ) from e
        raise io_error(shown, e) from e


def _open_dir(parent: int, name: str, shown: str, where: str, make_dirs: bool) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent)
    except FileNotFoundError as e:
        if not make_dirs:
            raise FsError("not_found", f"{shown}: {where} does not exist") from e
    except OSError as e:
        raise _refusal(parent, name, shown, where, e, want_dir=True) from e
    try:
        os.mkdir(name, _NEW_DIR_MODE, dir_fd=parent)
    except FileExistsError:
        pass  # made meanwhile, or something planted: the open below decides which
    except OSError as e:
        raise io_error(shown, e) from e
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent)
    except OSError as e:
        raise _refusal(parent, name, shown, where, e, want_dir=True) from e


@contextmanager
def open_plain_file(d: int, name: str, shown: str) -> Iterator[tuple[int, os.stat_result]]:
    """Open ``name`` in ``d`` for reading if it is a regular file with one name."""
    try:
        pre = os.stat(name, dir_fd=d, follow_symlinks=False)
    except FileNotFoundError as e:
        raise FsError("not_found", f"{shown}: does not exist") from e
    except OSError as e:
        raise io_error(shown, e) from e
    # Special files are refused before opening: opening some devices has effects.
    _require_plain_file(pre, shown)
    try:
        fd = os.open(name, _FILE_FLAGS, dir_fd=d)
    except OSError as e:
        raise _refusal(d, name, shown, "", e, want_dir=False) from e
    try:
        st = os.fstat(fd)
        # The decision: what was opened, whatever the name pointed to a moment ago.
        _require_plain_file(st, shown)
        yield fd, st
    finally:
        os.close(fd)


def _require_plain_file(st: os.stat_result, shown: str) -> None:
    if stat.S_ISLNK(st.st_mode):
        raise FsError("refused", f"{shown}: is a symbolic link; links are not followed")
    if not stat.S_ISREG(st.st_mode):
        raise FsError("refused", f"{shown}: is {_what(st)}; only regular files are used")
    if st.st_nlink != 1:
        raise FsError(
            "refused",
            f"{shown}: is a hard link ({st.st_nlink} names); its other names may be outside "
            "the mount",
        )


def _refusal(d: int, name: str, shown: str, where: str, err: OSError, *, want_dir: bool) -> FsError:
    """Name why opening ``name`` in ``d`` failed, judged by ``lstat`` at this moment."""
    who = f"{where} " if where else ""
    try:
        st: os.stat_result | None = os.stat(name, dir_fd=d, follow_symlinks=False)
    except FileNotFoundError:
        return FsError("not_found", f"{shown}: {who}does not exist")
    except OSError:
        st = None
    if err.errno == errno.ELOOP or (st is not None and stat.S_ISLNK(st.st_mode)):
        return FsError("refused", f"{shown}: {who}is a symbolic link; links are not followed")
    if err.errno == errno.ENOENT:
        # Gone when it was opened, back by the time of lstat (renamed away and back).
        return FsError("not_found", f"{shown}: {who}does not exist")
    if err.errno == errno.ENOTDIR:
        return FsError("refused", f"{shown}: {who}is not a directory")
    if st is not None and want_dir and not stat.S_ISDIR(st.st_mode):
        return FsError("refused", f"{shown}: {who}is {_what(st)}, not a directory")
    if st is not None and not want_dir and not stat.S_ISREG(st.st_mode):
        return FsError("refused", f"{shown}: {who}is {_what(st)}; only regular files are used")
    return io_error(shown, err)


_FILE_TYPES = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISREG, "a regular file"),
    (stat.S_ISLNK, "a symbolic link"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _what(st: os.stat_result) -> str:
    return next((name for test, name in _FILE_TYPES if test(st.st_mode)), "a special file")


def io_error(shown: str, err: OSError) -> FsError:
    # strerror only: the OSError's filename would be the host path or a descriptor.
    return FsError("io", f"{shown}: {err.strerror or 'input/output error'}")
