"""Staged directories for a WASM tool: its input copied in read-only, its output collected.

A WASM tool never sees a live directory. Before its run, the file or tree its input
argument names is copied (through the same no-links walk as ``fs-read``, each file
recorded as read) into a fresh directory preopened read-only at ``/in``; an empty one
is preopened writable at ``/out``. After the run, what the tool left in ``/out`` is
collected without following anything it planted: a link, a hard link or a special file
there fails the call and nothing is written. Then each file is written under the
output argument's directory exactly as ``fs-write`` writes (atomically, no links
followed), each recorded as written. wasmtime confines the guest by path only (a hard
link inside a preopen would reach out), which is why the guest gets copies.

The staged directories live under ``HOME/cache`` (owner-only) and are removed after.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from toka.core.model import events as ev
from toka.core.model.state import Tool, WorldState
from toka.core.tools.effect_tools import Place, mounted_place
from toka.core.tools.effects import fs
from toka.core.tools.effects.blobs import store_blob

MAX_FILES = 1000
MAX_BYTES = 64 * 1024 * 1024
GUEST_IN, GUEST_OUT = "/in", "/out"


class Staging(NamedTuple):
    preopens: tuple[tuple[str, str, bool], ...]
    out_dir: Path | None
    effects: list[Any]  # what staging read


def place_of(state: WorldState, args: Any, name: str) -> Place:
    """The place argument ``name`` names (see ``effect_tools.mounted_place``)."""
    return mounted_place(state, args.get(name) if isinstance(args, dict) else None)


def _join(base: str, name: str) -> str:
    return f"{base}/{name}" if base else name


class _Budget:
    def __init__(self) -> None:
        self.files = 0
        self.bytes = 0

    def take(self, size: int) -> None:
        self.files += 1
        self.bytes += size
        if self.files > MAX_FILES or self.bytes > MAX_BYTES:
            raise fs.FsError(
                "too_large", f"more than {MAX_FILES} files or {MAX_BYTES} bytes to stage"
            )


def _stage_tree(src: Place, dest: Path, blobs: Path, budget: _Budget, effects: list) -> None:
    """Copy the directory at ``src`` into ``dest``: regular files and directories only."""
    listing = fs.list_dir(src.root, src.parts, MAX_FILES)
    for entry in listing.entries:
        child = Place(src.mount, src.root, _join(src.path, entry.name), [*src.parts, entry.name])
        if entry.type == "dir":
            (dest / entry.name).mkdir(mode=0o700)
            _stage_tree(child, dest / entry.name, blobs, budget, effects)
        elif entry.type == "file":
            _stage_file(child, dest / entry.name, blobs, budget, effects)
        # links and special files are not staged: the guest sees plain files only


def _stage_file(src: Place, dest: Path, blobs: Path, budget: _Budget, effects: list) -> None:
    got = fs.read_file(src.root, src.parts, MAX_BYTES - budget.bytes)
    budget.take(got.size)
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(got.data)
    effects.append(ev.FileRead(src.mount, src.path, got.size, store_blob(blobs, got.data)))


def _kind_of(place: Place) -> str:
    if not place.parts:
        return "dir"
    parent = fs.list_dir(place.root, place.parts[:-1], MAX_FILES)
    for entry in parent.entries:
        if entry.name == place.parts[-1]:
            return entry.type
    raise fs.FsError("not_found", f"{place.path}: no such file or directory")


@contextlib.contextmanager
def staged(state: WorldState, tool: Tool, args: Any, blobs: Path, work: Path) -> Iterator[Staging]:
    """Stage ``tool``'s input (if it has one) and an empty output; removed on exit.

    Raises ``fs.FsError`` (a link, a missing file, too much to stage) with nothing staged
    left behind; the effects of what was read are in the Staging (and on the error's
    ``effects`` attribute when it fails midway)."""
    files = tool.staged
    assert files is not None
    work.mkdir(parents=True, exist_ok=True, mode=0o700)
    root = Path(tempfile.mkdtemp(prefix="stage-", dir=work))
    effects: list[Any] = []
    try:
        preopens: list[tuple[str, str, bool]] = []
        if files.input is not None:
            src = place_of(state, args, files.input)
            stage_in = root / "in"
            stage_in.mkdir(mode=0o700)
            try:
                kind = _kind_of(src)
                if kind == "dir":
                    _stage_tree(src, stage_in, blobs, _Budget(), effects)
                elif kind == "file":
                    _stage_file(src, stage_in / src.parts[-1], blobs, _Budget(), effects)
                else:
                    raise fs.FsError("refused", f"{src.path}: is a {kind}; only files are staged")
            except fs.FsError as exc:
                exc.effects = effects  # type: ignore[attr-defined]
                raise
            preopens.append((str(stage_in), GUEST_IN, False))
        out_dir = None
        if files.output is not None:
            out_dir = root / "out"
            out_dir.mkdir(mode=0o700)
            preopens.append((str(out_dir), GUEST_OUT, True))
        yield Staging(tuple(preopens), out_dir, effects)
    finally:
        # rmtree removes links the guest planted without following them.
        shutil.rmtree(root, ignore_errors=True)


def collect(out_dir: Path) -> list[tuple[list[str], bytes]]:
    """What the tool left in ``/out``: (relative segments, bytes) of each regular file.

    Walked without following links: a link, a hard link or a special file raises
    ``fs.FsError`` ("refused"), so a planted link never leads the host anywhere."""
    found: list[tuple[list[str], bytes]] = []
    budget = _Budget()

    def walk(parts: list[str]) -> None:
        for entry in fs.list_dir(str(out_dir), parts, MAX_FILES).entries:
            here = [*parts, entry.name]
            if entry.type == "dir":
                walk(here)
            elif entry.type == "file":
                got = fs.read_file(str(out_dir), here, MAX_BYTES - budget.bytes)
                budget.take(got.size)
                found.append((here, got.data))
            else:
                raise fs.FsError(
                    "refused",
                    f"the tool left a {entry.type} at {GUEST_OUT}/{'/'.join(here)}; "
                    "nothing was written",
                )

    walk([])
    return found


def apply(
    state: WorldState, args: Any, tool: Tool, outputs: list[tuple[list[str], bytes]], blobs: Path
) -> list[Any]:
    """Write each collected file under the output place, as ``fs-write`` does; returns
    the write records. Raises ``fs.FsError`` with the records so far on ``effects``."""
    files = tool.staged
    assert files is not None and files.output is not None
    dest = place_of(state, args, files.output)
    written: list[Any] = []
    for rel, data in sorted(outputs):
        path = "/".join([*dest.parts, *rel])
        try:
            store_blob(blobs, data)
            done = fs.write_file(
                dest.root, [*dest.parts, *rel], data, if_sha256=None, max_bytes=MAX_BYTES
            )
        except fs.FsError as exc:
            exc.effects = written  # type: ignore[attr-defined]
            raise
        written.append(
            ev.FileWritten(
                dest.mount, path, done.before_sha256, done.after_sha256, done.size, done.changed
            )
        )
    return written
