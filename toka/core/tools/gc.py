"""Collecting what the home no longer needs: module blobs and compiled modules.

A module blob (``HOME/blobs/<sha256>.wasm``) is referenced while a registered tool
version names it, or a ``tool.register`` waiting for approval does. An effect blob
(``HOME/blobs/<sha256>``: bytes a call read, wrote or fetched) is referenced while an
effect record in the log names it, which is forever; one no record names (a write that
was refused after its bytes were stored) is garbage once it is an hour old, since a
call in flight stores its blobs before its outcome is recorded. A compiled module
(``HOME/cache/*.cwasm``) is worth keeping while its module is referenced and it was
compiled by this wasmtime; anything else there can never be loaded again. Leftovers
of interrupted writes (``.tmp-*``) are garbage too.

:func:`collect` lists the garbage and deletes it only when asked. It holds the blobs
lock exclusively, and registration holds it shared from storing a module until the log
has the registration, so a blob about to be referenced is never taken for garbage.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec

from toka.core.errors import TokaError
from toka.core.log.audit import effect_records
from toka.core.model import ops
from toka.core.runtime import Runtime
from toka.core.tools.modules import blobs_lock
from toka.core.tools.sandbox import cache_key, compiled_key

# A compiled module's partial write, and an effect blob no record names, are left
# alone this long: their writer may be running (a call stores blobs before its outcome).
PARTIAL_CACHE_GRACE_S = 3600
UNNAMED_BLOB_GRACE_S = 3600
_SHA256 = re.compile(r"^[0-9a-f]{64}\Z")


class Garbage(msgspec.Struct, frozen=True):
    path: str
    kind: str  # "module", "effect", "compiled", "partial" or "staged"
    size: int
    why: str


def referenced_modules(rt: Runtime) -> set[str]:
    """The sha256 of every module a tool version or a held registration names."""
    state = rt.state
    wanted = {
        t.module_sha256
        for versions in state.tools.values()
        for t in versions.values()
        if t.module_sha256 is not None
    }
    for approval in state.approvals.values():
        if approval.status != "pending" or approval.op_kind != "tool.register":
            continue
        try:
            held = rt.held_operation(approval)
        except TokaError:
            continue  # unreadable: nothing it names can be kept for it
        if isinstance(held.op, ops.RegisterTool) and held.op.module_sha256:
            wanted.add(held.op.module_sha256)
    return wanted


def referenced_effect_blobs(rt: Runtime) -> set[str]:
    """The sha256 of every blob an effect record in the log names."""
    return {sha256 for _, effect in effect_records(rt.log) for sha256 in effect.blobs()}


def collect(rt: Runtime, *, delete: bool = False) -> list[Garbage]:
    """What the home's blobs and cache hold that nothing needs; deleted if ``delete``."""
    home = rt.home
    with blobs_lock(home.blobs, exclusive=True):
        rt.catch_up()
        wanted = referenced_modules(rt)
        found = [
            *_blob_garbage(home.blobs, wanted, referenced_effect_blobs(rt)),
            *_cache_garbage(home.root / "cache", wanted),
        ]
        if delete:
            for g in found:
                with contextlib.suppress(FileNotFoundError):
                    if g.kind == "staged":
                        shutil.rmtree(g.path)  # removes links inside without following them
                    else:
                        os.unlink(g.path)
    return found


def _files(directory: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(directory) as entries:
            return sorted(
                (e for e in entries if e.is_file(follow_symlinks=False)), key=lambda e: e.name
            )
    except FileNotFoundError:
        return []


def _blob_garbage(blobs: Path, wanted: set[str], named: set[str]) -> Iterator[Garbage]:
    now = time.time()
    for entry in _files(blobs):
        st = entry.stat(follow_symlinks=False)
        size = st.st_size
        if entry.name == ".lock":
            continue
        if entry.name.startswith(".tmp-"):
            # Stores hold the lock shared while they write: under it, nobody is writing.
            yield Garbage(entry.path, "partial", size, "left by an interrupted store")
        elif entry.name.endswith(".wasm") and entry.name.removesuffix(".wasm") not in wanted:
            yield Garbage(entry.path, "module", size, "no tool version or held registration")
        elif (
            _SHA256.match(entry.name)
            and entry.name not in named
            and now - st.st_mtime > UNNAMED_BLOB_GRACE_S
        ):
            yield Garbage(entry.path, "effect", size, "no effect record names it")


def _cache_garbage(cache: Path, wanted: set[str]) -> Iterator[Garbage]:
    now = time.time()
    with contextlib.suppress(FileNotFoundError), os.scandir(cache) as entries:
        for entry in entries:
            # A WASM tool's staged copies, left by a host that died during the call.
            if (
                entry.name.startswith("stage-")
                and entry.is_dir(follow_symlinks=False)
                and now - entry.stat(follow_symlinks=False).st_mtime > PARTIAL_CACHE_GRACE_S
            ):
                yield Garbage(entry.path, "staged", 0, "left by an interrupted staged call")
    for entry in _files(cache):
        st = entry.stat(follow_symlinks=False)
        if entry.name.startswith(".tmp-"):
            if now - st.st_mtime > PARTIAL_CACHE_GRACE_S:
                yield Garbage(entry.path, "partial", st.st_size, "left by an interrupted compile")
            continue
        if not entry.name.endswith(".cwasm"):
            continue
        why = _stale_compiled(Path(entry.path), wanted)
        if why is not None:
            yield Garbage(entry.path, "compiled", st.st_size, why)


def _stale_compiled(path: Path, wanted: set[str]) -> str | None:
    """Why the compiled module at ``path`` can never be loaded again, or None."""
    key = compiled_key(path)
    if key is None:
        return "not a compiled module of this Toka"
    if key[0] not in wanted:
        return "its module is no longer referenced"
    if key != cache_key(key[0]):
        return f"compiled by another wasmtime or engine (wasmtime {key[1]})"
    return None
