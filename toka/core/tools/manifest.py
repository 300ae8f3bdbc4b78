"""Tool manifests (TOML): parsed strictly, checked like the kernel checks a registration.

Every error names the manifest and the key, so ``toka tool register`` says exactly
what to fix; the WASM module is read and pinned (sha256) here, before anything is
signed.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
from collections.abc import Callable
from importlib import resources
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import msgspec

from toka.core.errors import InvalidInput
from toka.core.kernel import tools as rules
from toka.core.model import ops
from toka.core.model.state import ToolFiles
from toka.core.typed_toml import load_toml

DEFAULT_LIMITS = {
    "fuel": 100_000_000,
    "memory_mb": 16,
    "timeout_ms": 1000,
    "max_output_bytes": 64 * 1024,
}
# The native effect tools' defaults: a call may wait on a disk or a server, and moves
# data through blobs rather than its output.
DEFAULT_EFFECT_LIMITS = {
    "timeout_ms": 30_000,
    "max_output_bytes": 256 * 1024,
    "max_bytes": 8 * 1024 * 1024,
}
MAX_MODULE_BYTES = 32 * 1024 * 1024


class ManifestLimits(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    fuel: int | None = None
    memory_mb: int | None = None
    timeout_ms: int | None = None
    max_output_bytes: int | None = None
    max_bytes: int | None = None


class Manifest(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename={"input_schema": "input"}
):
    """A tool manifest (TOML). ``module`` is a path inside the manifest's directory."""

    name: str
    version: str
    description: str
    kind: str
    module: str | None = None
    sha256: str | None = None
    capabilities: list[str] = []
    limits: ManifestLimits = ManifestLimits()
    input_schema: dict[str, Any] | None = None
    # What a call may do to the world (none, read_only, idempotent, external,
    # privileged): the operator's word, never taken from the tool itself.
    side_effect: str = "none"
    # A WASM tool's staged directories: which arguments name its input and output.
    files: ToolFiles | None = None


class LoadedManifest(msgspec.Struct, frozen=True):
    """A validated manifest with its module's bytes (WASM tools) and their sha256."""

    manifest: Manifest
    source: str
    limits: dict[str, int]
    wasm: bytes | None = None
    sha256: str | None = None

    def to_op(self) -> ops.RegisterTool:
        m = self.manifest
        return ops.RegisterTool(
            name=m.name,
            version=m.version,
            description=m.description,
            kind=m.kind,
            module_sha256=self.sha256,
            capabilities=list(m.capabilities),
            limits=dict(self.limits),
            input_schema=m.input_schema,
            # "none" is left out, as registrations before side-effect classes were.
            side_effect=msgspec.UNSET if m.side_effect == "none" else m.side_effect,
            files=msgspec.UNSET if m.files is None else m.files,
        )


def parse_manifest(text: str, source: str) -> Manifest:
    """Parse and strictly type-check a TOML manifest (``source`` names it in errors)."""
    manifest = load_toml(text, Manifest, source)
    if manifest.input_schema is not None:
        try:
            _plain_json("input", manifest.input_schema)
        except InvalidInput as exc:
            raise InvalidInput(f"{source}: {exc.message}") from None
    return manifest


def _plain_json(where: str, value: Any) -> None:
    """TOML has dates and non-finite floats; a JSON Schema may hold neither."""
    if isinstance(value, dict):
        for k, v in value.items():
            _plain_json(f"{where}.{k}", v)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _plain_json(f"{where}[{i}]", v)
    elif isinstance(value, float) and not math.isfinite(value):
        raise InvalidInput(f"{where}: {value} is not a JSON number")
    elif value is not None and not isinstance(value, str | int | float | bool):
        raise InvalidInput(f"{where}: a {type(value).__name__} is not a JSON value")


def manifest_limits(manifest: Manifest) -> dict[str, int]:
    """The manifest's limits with defaults filled in: the four of WASM, or those of the
    native tool named (``kernel.tools.NATIVE_LIMITS``)."""
    given = {k: v for k, v in msgspec.structs.asdict(manifest.limits).items() if v is not None}
    allowed = rules.limits_of(manifest.name, manifest.kind)
    extra = sorted(set(given) - set(allowed))
    if extra and allowed:
        which = f"native tool {manifest.name}" if manifest.kind == "native" else "wasm tool"
        raise InvalidInput(
            f"limits.{extra[0]}: does not apply to a {which} (it has {', '.join(allowed)})"
        )
    effectful = manifest.kind == "native" and "max_bytes" in allowed
    defaults = {**DEFAULT_LIMITS, **DEFAULT_EFFECT_LIMITS} if effectful else DEFAULT_LIMITS
    return {key: given.get(key, defaults[key]) for key in allowed}


def check_module_bytes(wasm: bytes, label: str) -> None:
    if len(wasm) > MAX_MODULE_BYTES:
        raise InvalidInput(f"{label}: {len(wasm)} bytes, over the {MAX_MODULE_BYTES} byte limit")
    if wasm[:4] != b"\x00asm":
        raise InvalidInput(f"{label}: not a WebAssembly binary (a .wasm file; build .wat first)")


def validate_manifest(
    manifest: Manifest, source: str, read_module: Callable[[str], bytes]
) -> LoadedManifest:
    """Check a parsed manifest and read its module; every error names ``source`` and the key."""
    m = manifest
    try:
        limits = manifest_limits(m)
        rules.check_spec(
            m.name,
            m.version,
            m.description,
            m.kind,
            m.capabilities,
            limits,
            m.input_schema,
            m.side_effect,
            msgspec.UNSET if m.files is None else m.files,
        )
    except InvalidInput as exc:
        raise InvalidInput(f"{source}: {exc.message}") from None
    if m.kind == "native":
        if m.module is not None or m.sha256 is not None:
            raise InvalidInput(f"{source}: module/sha256: a native tool has no module")
        return LoadedManifest(m, source, limits)
    if not m.module:
        raise InvalidInput(f"{source}: module: a wasm tool needs a module (path to a .wasm file)")
    _check_module_path(m.module, source)
    if m.sha256 is not None and not rules.SHA256_RE.match(m.sha256):
        raise InvalidInput(f"{source}: sha256: must be 64 lowercase hex digits")
    try:
        wasm = read_module(m.module)
    except OSError as exc:
        raise InvalidInput(
            f"{source}: module: cannot read {m.module}: {exc.strerror or exc}"
        ) from None
    check_module_bytes(wasm, f"{source}: module {m.module}")
    digest = hashlib.sha256(wasm).hexdigest()
    if m.sha256 is not None and not hmac.compare_digest(digest, m.sha256):
        raise InvalidInput(
            f"{source}: sha256: pin mismatch: the manifest pins {m.sha256} but {m.module} "
            f"has sha256 {digest}; refusing the tool"
        )
    return LoadedManifest(m, source, limits, wasm, digest)


def _check_module_path(module: str, source: str) -> None:
    """A module is a file beside its manifest or below it: never absolute, never ``..``."""
    parts = PurePosixPath(module.replace("\\", "/"))
    if parts.is_absolute() or PureWindowsPath(module).drive or ".." in parts.parts:
        raise InvalidInput(
            f"{source}: module: {module!r} must be a path inside the manifest's directory "
            "(relative, without ..)"
        )


def _read_inside(base: Path, rel: str, source: str) -> bytes:
    """Read ``base/rel``, refusing a symlink (anywhere on the way) that leads out of ``base``."""
    root = base.resolve()
    target = (base / rel).resolve()
    if not target.is_relative_to(root):
        raise InvalidInput(
            f"{source}: module: {rel} leads to {target}, outside the manifest's directory "
            f"{root}; refusing the tool"
        )
    fd = os.open(target, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as fh:
        return fh.read(MAX_MODULE_BYTES + 1)  # one byte over is enough to refuse it


def load_manifest(path: Path | str) -> LoadedManifest:
    """Read, parse and validate a manifest file and its module."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"cannot read manifest {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise InvalidInput(f"{path}: not UTF-8 text") from None
    manifest = parse_manifest(text, str(path))
    base = path.parent

    return validate_manifest(manifest, str(path), lambda rel: _read_inside(base, rel, str(path)))


ECHO_MANIFEST = Manifest(
    name="echo",
    version="1.0.0",
    description="Returns its arguments unchanged (native built-in)",
    kind="native",
)


def builtin_manifests() -> list[LoadedManifest]:
    """The native ``echo`` and every manifest shipped in ``toka/tools/``."""
    out = [validate_manifest(ECHO_MANIFEST, "builtin:echo", _no_module)]
    shipped = resources.files("toka.tools")
    for entry in sorted(shipped.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".toml"):
            continue
        source = f"toka/tools/{entry.name}"
        manifest = parse_manifest(entry.read_text(encoding="utf-8"), source)
        out.append(
            validate_manifest(manifest, source, lambda rel: shipped.joinpath(rel).read_bytes())
        )
    return out


def _no_module(rel: str) -> bytes:
    raise FileNotFoundError(rel)
