"""Rebuild the WASM tools shipped with Toka.

For every ``<name>.wat`` in this directory: assemble it with
``wasmtime.wat2wasm`` into ``<name>.wasm`` and rewrite the ``sha256 = "..."``
line of ``<name>.toml`` to the digest of the new module.

    python -m toka.tools.build          # rebuild and re-pin
    python -m toka.tools.build --check  # verify only; exit 1 if anything is stale
"""

from __future__ import annotations

import argparse
import hashlib
import pathlib
import re
import sys
import tomllib

TOOLS_DIR = pathlib.Path(__file__).resolve().parent
_SHA_LINE = re.compile(r'^sha256\s*=\s*"[^"\n]*"[ \t]*$', re.MULTILINE)


def assemble(wat_path: pathlib.Path) -> bytes:
    import wasmtime

    return bytes(wasmtime.wat2wasm(wat_path.read_text(encoding="utf-8")))


def build_tool(wat_path: pathlib.Path, *, check: bool = False) -> list[str]:
    """Build one tool; returns a list of problems (``check``) or of files changed."""
    name = wat_path.stem
    manifest_path = wat_path.with_suffix(".toml")
    wasm_path = wat_path.with_suffix(".wasm")
    if not manifest_path.exists():
        raise SystemExit(f"{wat_path.name}: missing manifest {manifest_path.name}")
    manifest_text = manifest_path.read_text(encoding="utf-8")
    manifest = tomllib.loads(manifest_text)
    if manifest.get("name") != name:
        raise SystemExit(f"{manifest_path.name}: name must be {name!r}")
    if manifest.get("kind") != "wasm" or manifest.get("module") != wasm_path.name:
        raise SystemExit(
            f'{manifest_path.name}: expected kind = "wasm", module = "{wasm_path.name}"'
        )

    wasm = assemble(wat_path)
    digest = hashlib.sha256(wasm).hexdigest()
    new_manifest, count = _SHA_LINE.subn(f'sha256 = "{digest}"', manifest_text)
    if count != 1:
        raise SystemExit(f'{manifest_path.name}: expected exactly one `sha256 = "..."` line')

    notes: list[str] = []
    old_wasm = wasm_path.read_bytes() if wasm_path.exists() else None
    if old_wasm != wasm:
        notes.append(f"{wasm_path.name} is stale" if check else f"wrote {wasm_path.name}")
        if not check:
            wasm_path.write_bytes(wasm)
    if new_manifest != manifest_text:
        notes.append(
            f"{manifest_path.name} sha256 is stale" if check else f"pinned {manifest_path.name}"
        )
        if not check:
            manifest_path.write_text(new_manifest, encoding="utf-8")
    return notes


def build_all(directory: pathlib.Path = TOOLS_DIR, *, check: bool = False) -> list[str]:
    notes: list[str] = []
    for wat_path in sorted(directory.glob("*.wat")):
        notes.extend(build_tool(wat_path, check=check))
    return notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="verify only, write nothing")
    parser.add_argument("--dir", type=pathlib.Path, default=TOOLS_DIR, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    notes = build_all(args.dir, check=args.check)
    for note in notes:
        print(note)
    if args.check and notes:
        return 1
    if not notes:
        print("all tools up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
