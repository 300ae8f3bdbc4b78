"""Tools: manifests, the kernel's rules for registering and invoking them, and the tool runner.

A tool is registered by a signed ``tool.register`` operation built from a TOML
manifest; its WASM module is stored content-addressed under the home, so it keeps
working when the original file is gone. Invoking a tool is a signed ``tool.invoke``
operation. The runner checks it against the current state without writing, runs
the tool outside the kernel (in the WASM sandbox, or in-process for the native
built-ins), then submits the operation with the run's result; the kernel re-checks
everything and records ``tool.succeeded`` or ``tool.failed``. Replay folds those
events and never runs a tool again.

jsonschema and wasmtime are imported lazily: the kernel imports this module.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import math
import os
import re
import tempfile
import threading
import time
import tomllib
import weakref
from collections.abc import Callable
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from toka.core import kernel
from toka.core.errors import (
    BudgetExhausted,
    HomeError,
    IntegrityFailure,
    InvalidInput,
    InvalidOperation,
    NotFound,
    TokaError,
)
from toka.core.model import caps as capmod
from toka.core.model import events as ev
from toka.core.model import ops
from toka.core.model.state import Grant, Tool, WorldState
from toka.core.tools.sandbox import FAILURE_KINDS, InvalidModule, Limits, WasmSandbox

if TYPE_CHECKING:
    from toka.core.runtime import Outcome, Runtime
    from toka.core.runtime.client import Client

KINDS = ("wasm", "native")
NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
VERSION_RE = re.compile(r"^(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
DEFAULT_LIMITS = {
    "fuel": 100_000_000,
    "memory_mb": 16,
    "timeout_ms": 1000,
    "max_output_bytes": 64 * 1024,
}
# Sane maxima: a tool may not take the host down by asking for more.
MAX_LIMITS = {
    "fuel": 100_000_000_000,
    "memory_mb": 512,
    "timeout_ms": 60_000,
    "max_output_bytes": 1024 * 1024,
}
NATIVE_LIMITS = ("max_output_bytes",)
MAX_SCHEMA_BYTES = 64 * 1024
MAX_ARGS_BYTES = 256 * 1024
MAX_MODULE_BYTES = 32 * 1024 * 1024
MAX_MESSAGE = 2000
WASI_MODULE = "wasi_snapshot_preview1"
_PAGE = 65536

_json = msgspec.json.Encoder(order="sorted")


# -- native built-ins ---------------------------------------------------------------


def _echo(args: Any) -> Any:
    return args


NATIVE_TOOLS: dict[str, Callable[[Any], Any]] = {"echo": _echo}


# -- manifests ----------------------------------------------------------------------


class ManifestLimits(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    fuel: int | None = None
    memory_mb: int | None = None
    timeout_ms: int | None = None
    max_output_bytes: int | None = None


class Manifest(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename={"input_schema": "input"}
):
    """A tool manifest (TOML). ``module`` is relative to the manifest file."""

    name: str
    version: str
    description: str
    kind: str
    module: str | None = None
    sha256: str | None = None
    capabilities: list[str] = []
    limits: ManifestLimits = ManifestLimits()
    input_schema: dict[str, Any] | None = None


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
        )


def _msgspec_problem(exc: msgspec.ValidationError) -> str:
    """``Expected `int`, got `str` - at `$.limits.fuel``` -> ``limits.fuel: expected `int`...``."""
    text = str(exc)
    where = ""
    m = re.search(r" - at `\$\.?(.*)`$", text)
    if m:
        where, text = m.group(1), text[: m.start()]
    text = text.replace(" | null", "")  # TOML has no null: "absent" is the None
    text = text.replace("Object contains unknown field", "unknown key")
    text = text.replace("Object missing required field", "missing required key")
    return f"{where}: {text}" if where else text


def parse_manifest(text: str, source: str) -> Manifest:
    """Parse and strictly type-check a TOML manifest (``source`` names it in errors)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"{source}: not valid TOML: {exc}") from None
    try:
        manifest = msgspec.convert(raw, Manifest)
    except msgspec.ValidationError as exc:
        raise InvalidInput(f"{source}: {_msgspec_problem(exc)}") from None
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
    """The manifest's limits with defaults filled in: all four for WASM, output only for native."""
    given = {k: v for k, v in msgspec.structs.asdict(manifest.limits).items() if v is not None}
    if manifest.kind == "native":
        extra = sorted(set(given) - set(NATIVE_LIMITS))
        if extra:
            raise InvalidInput(
                f"limits.{extra[0]}: does not apply to a native tool (only max_output_bytes does)"
            )
        return {
            "max_output_bytes": given.get("max_output_bytes", DEFAULT_LIMITS["max_output_bytes"])
        }
    return {**DEFAULT_LIMITS, **given}


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
        check_spec(m.name, m.version, m.description, m.kind, m.capabilities, limits, m.input_schema)
    except InvalidInput as exc:
        raise InvalidInput(f"{source}: {exc.message}") from None
    if m.kind == "native":
        if m.module is not None or m.sha256 is not None:
            raise InvalidInput(f"{source}: module/sha256: a native tool has no module")
        return LoadedManifest(m, source, limits)
    if not m.module:
        raise InvalidInput(f"{source}: module: a wasm tool needs a module (path to a .wasm file)")
    if m.sha256 is not None and not SHA256_RE.match(m.sha256):
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

    def read_module(rel: str) -> bytes:
        with (base / rel).open("rb") as fh:
            return fh.read(MAX_MODULE_BYTES + 1)  # one byte over is enough to refuse it

    return validate_manifest(manifest, str(path), read_module)


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


# -- the kernel's rules ---------------------------------------------------------------


def check_spec(
    name: str,
    version: str,
    description: str,
    kind: str,
    capabilities: list[str],
    limits: dict[str, int],
    input_schema: dict[str, Any] | None,
) -> None:
    """Validate a tool's registration fields (shared by manifests and the kernel)."""
    if not NAME_RE.match(name):
        raise InvalidOperation(
            f"name: {name!r} is not a tool name (lowercase letter, then up to 63 of a-z 0-9 _ -)"
        )
    if not VERSION_RE.match(version):
        raise InvalidOperation(
            f"version: {version!r} is not MAJOR.MINOR.PATCH (numbers without leading zeros)"
        )
    size = len(description.encode())
    if not description.strip() or size > kernel.MAX_DESCRIPTION_BYTES:
        raise InvalidOperation(
            f"description: must be non-empty and at most {kernel.MAX_DESCRIPTION_BYTES} bytes"
        )
    if kind not in KINDS:
        raise InvalidOperation(f"kind: {kind!r} is not one of {', '.join(KINDS)}")
    if kind == "native" and name not in NATIVE_TOOLS:
        raise InvalidOperation(
            f"name: there is no native tool {name!r} (native tools: {', '.join(NATIVE_TOOLS)})"
        )
    if len(capabilities) > capmod.MAX_CAPS:
        raise InvalidOperation(f"capabilities: more than {capmod.MAX_CAPS}")
    for cap in capabilities:
        try:
            capmod.parse(cap)
        except InvalidInput as exc:
            raise InvalidOperation(f"capabilities: {exc.message}") from None
    _check_limits(kind, limits)
    if input_schema is not None:
        check_schema(input_schema)


def _check_limits(kind: str, limits: dict[str, int]) -> None:
    allowed = NATIVE_LIMITS if kind == "native" else tuple(MAX_LIMITS)
    for key in limits:
        if key not in allowed:
            raise InvalidOperation(f"limits.{key}: unknown or not applicable to a {kind} tool")
    for key in allowed:
        if key not in limits:
            raise InvalidOperation(f"limits.{key}: missing")
        value = limits[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidOperation(f"limits.{key}: must be an integer")
        if not 1 <= value <= MAX_LIMITS[key]:
            raise InvalidOperation(f"limits.{key}: {value} is outside 1..{MAX_LIMITS[key]}")


def check_schema(schema: Any) -> None:
    """The input schema must itself be a valid JSON Schema, small and self-contained."""
    if not isinstance(schema, dict):
        raise InvalidOperation("input: a JSON Schema here must be an object (a TOML table)")
    try:
        size = len(_json.encode(schema))
    except (TypeError, msgspec.EncodeError) as exc:
        raise InvalidOperation(f"input: not JSON-encodable: {exc}") from None
    if size > MAX_SCHEMA_BYTES:
        raise InvalidOperation(f"input: schema is {size} bytes, over the {MAX_SCHEMA_BYTES} limit")
    _check_refs(schema, "input")
    from jsonschema.exceptions import SchemaError

    cls = _validator_class(schema)
    try:
        cls.check_schema(schema)
    except SchemaError as exc:
        where = ".".join(str(p) for p in exc.absolute_path)
        at = f"input.{where}" if where else "input"
        raise InvalidOperation(f"{at}: not a valid JSON Schema: {exc.message}") from None


def _check_refs(value: Any, where: str) -> None:
    """Refuse references that would make validation fetch anything outside the schema."""
    if isinstance(value, dict):
        for k, v in value.items():
            if k in ("$ref", "$dynamicRef", "$recursiveRef") and not (
                isinstance(v, str) and v.startswith("#")
            ):
                raise InvalidOperation(
                    f"{where}.{k}: only local references (#...) are allowed, not {v!r}"
                )
            _check_refs(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_refs(v, f"{where}[{i}]")


def _validator_class(schema: dict[str, Any]) -> Any:
    """The validator of the schema's ``$schema`` dialect; draft 2020-12 when it names none."""
    from jsonschema.validators import Draft202012Validator, validator_for

    if "$schema" not in schema:
        return Draft202012Validator
    cls = validator_for(schema, default=None)
    if cls is None:
        raise InvalidOperation(
            f"input.$schema: unsupported JSON Schema dialect {schema['$schema']!r}"
        )
    return cls


@lru_cache(maxsize=256)
def _validator(schema_json: bytes) -> Any:
    from referencing import Registry

    schema = msgspec.json.decode(schema_json)
    return _validator_class(schema)(schema, registry=Registry())


def check_args(tool: Tool, args: Any) -> None:
    """Arguments must be JSON, within the size limit, and match the tool's input schema."""
    try:
        size = len(_json.encode(args))
    except (TypeError, msgspec.EncodeError) as exc:
        raise InvalidOperation(f"tool arguments are not JSON-encodable: {exc}") from None
    if size > MAX_ARGS_BYTES:
        raise InvalidOperation(
            f"tool arguments are {size} bytes, over the {MAX_ARGS_BYTES} byte limit"
        )
    if tool.input_schema is None:
        return
    from jsonschema.exceptions import best_match

    error = best_match(_validator(_json.encode(tool.input_schema)).iter_errors(args))
    if error is not None:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        raise InvalidOperation(
            f"arguments do not match the input schema of {tool.name}@{tool.version}: "
            f"{_shorten(error.message)} (at $" + where + ")"
        )


def _shorten(text: str, limit: int = 300) -> str:
    """Schema errors quote the offending value, which may be as big as the arguments."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ToolRun(msgspec.Struct, frozen=True):
    """What running a tool did, computed outside the kernel and handed to it as ``ctx.outcome``."""

    tool: str
    version: str
    ok: bool
    output: Any
    error_kind: str | None
    message: str
    exit_code: int | None
    fuel_used: int
    wall_ms: float
    stderr: str = ""


class Plan(msgspec.Struct, frozen=True):
    """What an accepted invocation will run: the tool version and the fuel it may burn."""

    tool: Tool
    fuel: int


def resolve(state: WorldState, name: str, version: str | None) -> Tool | None:
    if version is not None:
        return state.tools.get(name, {}).get(version)
    return state.latest_tool(name)


def _tool_budget(state: WorldState, grant: Grant, tool: Tool) -> int:
    """Refuse past the tool-call and fuel budgets; returns the fuel this call may use."""
    fuel = tool.limits.get("fuel", 0)
    for link in state.grant_chain(grant.jti):
        calls = link.budgets.max_tool_calls
        if calls is not None and link.usage.tool_calls >= calls:
            raise BudgetExhausted(
                f"budget: grant {link.jti} has used {link.usage.tool_calls} of {calls} tool calls"
            )
        limit = link.budgets.max_fuel
        if limit is not None and tool.kind == "wasm":
            left = limit - link.usage.fuel
            if left <= 0:
                raise BudgetExhausted(
                    f"budget: grant {link.jti} has used {link.usage.fuel} of {limit} fuel"
                )
            fuel = min(fuel, left)
    return fuel


def plan_invocation(
    state: WorldState, op: ops.InvokeTool, ctx: kernel.Ctx, ran_version: str | None = None
) -> Plan:
    """Every check of a ``tool.invoke`` that needs no run: capability, tool, task, args, budget.

    The runner calls this read-only before running anything; the decider calls it again
    at commit time with the version that actually ran.
    """
    required = kernel.required_caps(state, op)
    tool = resolve(state, op.tool, op.version or ran_version)
    if tool is not None:
        required += [c for c in tool.capabilities if c not in required]
    grant = kernel.authorize(state, ctx, required)
    if tool is None:
        if op.version is not None and op.tool in state.tools:
            raise NotFound(f"tool {op.tool} has no version {op.version}")
        raise NotFound(f"unknown tool {op.tool!r}")
    if op.task is not None:
        task = state.tasks.get(op.task)
        if task is None:
            raise NotFound(f"unknown task {op.task!r}")
        if task.status not in ("scheduled", "started"):
            raise InvalidOperation(f"task {task.id} is already {task.status}")
    check_args(tool, op.args)
    return Plan(tool, _tool_budget(state, grant, tool))


@kernel.decider(ops.RegisterTool)
def _register(state: WorldState, op: ops.RegisterTool, ctx: kernel.Ctx) -> list[msgspec.Struct]:
    kernel.authorize(state, ctx, kernel.required_caps(state, op))
    check_spec(
        op.name, op.version, op.description, op.kind, op.capabilities, op.limits, op.input_schema
    )
    if op.kind == "wasm":
        if op.module_sha256 is None or not SHA256_RE.match(op.module_sha256):
            raise InvalidOperation("module_sha256: a wasm tool needs its module's sha256 (64 hex)")
    elif op.module_sha256 is not None:
        raise InvalidOperation("module_sha256: a native tool has no module")
    versions = state.tools.get(op.name, {})
    if op.version in versions:
        raise InvalidOperation(
            f"tool {op.name}@{op.version} is already registered; a changed tool needs a new version"
        )
    kinds = {t.kind for t in versions.values()}
    if kinds and op.kind not in kinds:
        raise InvalidOperation(
            f"tool {op.name} is a {kinds.pop()} tool; a {op.kind} tool cannot take its name"
        )
    return [
        ev.ToolRegistered(
            name=op.name,
            version=op.version,
            description=op.description,
            kind=op.kind,
            module_sha256=op.module_sha256,
            capabilities=list(op.capabilities),
            limits=dict(op.limits),
            input_schema=op.input_schema,
        )
    ]


@kernel.decider(ops.InvokeTool)
def _invoke(state: WorldState, op: ops.InvokeTool, ctx: kernel.Ctx) -> list[msgspec.Struct]:
    run = ctx.outcome
    if run is not None and not isinstance(run, ToolRun):
        raise InvalidOperation("tool.invoke: the prepared outcome is not a tool run")
    if run is not None and op.version is not None and run.version != op.version:
        raise InvalidOperation(f"tool.invoke: ran version {run.version}, not {op.version}")
    plan = plan_invocation(state, op, ctx, run.version if run is not None else None)
    if run is None:
        raise InvalidOperation(
            "tool invocations go through the tool runner (`toka tool invoke`, or "
            "toka.core.tools.invoke), which runs the tool and records its outcome"
        )
    if run.tool != op.tool:
        raise InvalidOperation(f"tool.invoke: the run is of {run.tool}, not {op.tool}")
    if run.fuel_used > plan.fuel:
        raise BudgetExhausted(
            f"budget: the run used {run.fuel_used} fuel; only {plan.fuel} remain in the grant"
        )
    tool = plan.tool
    if run.ok:
        return [
            ev.ToolSucceeded(
                tool.name, tool.version, run.output, run.fuel_used, run.wall_ms, op.task
            )
        ]
    kind = run.error_kind if run.error_kind in FAILURE_KINDS else "trap"
    return [
        ev.ToolFailed(
            tool=tool.name,
            version=tool.version,
            error_kind=kind,
            message=run.message[:MAX_MESSAGE],
            fuel_used=run.fuel_used,
            wall_ms=run.wall_ms,
            exit_code=run.exit_code,
            task=op.task,
        )
    ]


# -- the runner -----------------------------------------------------------------------


class ToolError(msgspec.Struct, frozen=True):
    kind: str
    message: str
    exit_code: int | None = None


class Invocation(msgspec.Struct, frozen=True):
    """The recorded result of one invocation, as the CLI and console report it."""

    ok: bool
    output: Any
    error: ToolError | None
    seq: int
    tool: str
    version: str
    fuel_used: int
    wall_ms: float
    stderr: str = ""
    replayed: bool = False
    pending: str | None = None  # the approval id, when it waits in the approval queue

    def to_dict(self) -> dict[str, Any]:
        return msgspec.to_builtins(self)

    @classmethod
    def from_outcome(cls, outcome: Outcome, op: ops.InvokeTool, stderr: str = "") -> Invocation:
        if outcome.pending is not None:
            return cls(
                ok=False,
                tool=op.tool,
                version=op.version or "",
                output=None,
                error=None,
                seq=outcome.last_seq,
                fuel_used=0,
                wall_ms=0.0,
                replayed=outcome.replayed,
                pending=outcome.pending,
            )
        for e in outcome.events:
            p = e.payload
            if not isinstance(p, ev.ToolSucceeded | ev.ToolFailed):
                continue
            failed = isinstance(p, ev.ToolFailed)
            return cls(
                ok=not failed,
                tool=p.tool,
                version=p.version,
                output=None if failed else p.output,
                error=ToolError(p.error_kind, p.message, p.exit_code) if failed else None,
                seq=e.seq,
                fuel_used=p.fuel_used,
                wall_ms=p.wall_ms,
                stderr=stderr,
                replayed=outcome.replayed,
            )
        raise TokaError(f"operation {outcome.digest[:12]} recorded no tool outcome")


class Registration(msgspec.Struct, frozen=True):
    name: str
    version: str
    kind: str
    module_sha256: str | None
    seq: int
    pending: str | None = None  # the approval id, when it waits in the approval queue


def module_path(home_blobs: Path, sha256: str) -> Path:
    return home_blobs / f"{sha256}.wasm"


def store_module(blobs: Path, wasm: bytes, sha256: str) -> Path:
    """Write the module content-addressed (atomically, 0600); a good copy is left alone."""
    path = module_path(blobs, sha256)
    try:
        if hashlib.sha256(path.read_bytes()).hexdigest() == sha256:
            return path
    except FileNotFoundError:
        pass
    blobs.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=blobs, prefix=".tmp-", suffix=".wasm")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(wasm)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


class ToolRunner:
    """Registers and runs tools for one runtime; owns its WASM sandbox and module cache."""

    _MODULES_KEPT = 64

    def __init__(self, runtime: Runtime, sandbox: WasmSandbox | None = None):
        # Weak: the per-runtime registry below is keyed weakly by the runtime.
        self._runtime = weakref.ref(runtime)
        self._sandbox = sandbox
        self._modules: dict[str, bytes] = {}
        self._lock = threading.Lock()

    @property
    def runtime(self) -> Runtime:
        runtime = self._runtime()
        if runtime is None:
            raise HomeError("the runtime of this tool runner is gone")
        return runtime

    @property
    def sandbox(self) -> WasmSandbox:
        """One sandbox per runtime; compiled modules are cached on disk under an HMAC key."""
        if self._sandbox is None:
            with self._lock:
                if self._sandbox is None:
                    home = self.runtime.home
                    key = hmac.new(home.secret(), b"wasm-cache", hashlib.sha256).digest()
                    self._sandbox = WasmSandbox(cache_dir=home.root / "cache", cache_key=key)
        return self._sandbox

    # -- registration ---------------------------------------------------------------

    def check_module(self, loaded: LoadedManifest) -> None:
        """Refuse a module that could never run: invalid, foreign imports, no _start, too big."""
        assert loaded.wasm is not None and loaded.sha256 is not None
        import wasmtime

        source = loaded.source
        try:
            module = self.sandbox.compile(loaded.wasm, loaded.sha256)
        except (InvalidModule, ValueError) as exc:
            raise InvalidInput(f"{source}: module: {exc}") from None
        for imp in module.imports:
            if imp.module != WASI_MODULE:
                raise InvalidInput(
                    f"{source}: module imports {imp.module}::{imp.name}; "
                    f"a tool may import only {WASI_MODULE}"
                )
        start = [e for e in module.exports if e.name == "_start"]
        if not start or not isinstance(start[0].type, wasmtime.FuncType):
            raise InvalidInput(f"{source}: module does not export `_start` (a WASI command module)")
        cap = loaded.limits["memory_mb"] * 1024 * 1024
        for exp in module.exports:
            if isinstance(exp.type, wasmtime.MemoryType) and exp.type.limits.min * _PAGE > cap:
                raise InvalidInput(
                    f"{source}: module starts with {exp.type.limits.min} memory pages, "
                    f"over limits.memory_mb = {loaded.limits['memory_mb']}"
                )

    def register(self, client: Client, loaded: LoadedManifest) -> Registration:
        """Submit a signed ``tool.register``; the module is stored before the log records it."""
        if loaded.wasm is not None:
            self.check_module(loaded)
        signed = client.sign(loaded.to_op())
        rt = self.runtime
        try:
            rt.dry_run(signed, lambda state, ctx: kernel.apply(state, signed.op, ctx))
            accepted = True
        except TokaError:
            accepted = False
        if accepted:
            self._store(loaded)
        outcome = rt.submit(signed)  # a refusal is recorded here and raised
        if not accepted:
            self._store(loaded)  # the state changed since the dry run and it was accepted
        _raise_if_pending(client, outcome.pending)
        m = loaded.manifest
        return Registration(
            m.name, m.version, m.kind, loaded.sha256, outcome.last_seq, outcome.pending
        )

    def _store(self, loaded: LoadedManifest) -> None:
        if loaded.wasm is not None:
            assert loaded.sha256 is not None
            store_module(self.runtime.home.blobs, loaded.wasm, loaded.sha256)

    def register_builtins(self, client: Client) -> list[str]:
        """Register ``echo`` and the shipped WASM tools that are not registered yet."""
        done = []
        for loaded in builtin_manifests():
            m = loaded.manifest
            if m.version in self.runtime.state.tools.get(m.name, {}):
                continue
            self.register(client, loaded)
            done.append(f"{m.name}@{m.version}")
        return done

    # -- invocation -----------------------------------------------------------------

    def invoke(self, signed: ops.SignedOperation) -> Invocation:
        """Check, run and record one signed ``tool.invoke``.

        Nothing runs unless the operation would be accepted now; a refusal is recorded
        like any refused operation and raised. A tool failure is not an error: it is
        recorded as ``tool.failed`` and returned with ``ok=False``. Under a grant marked
        ``approve`` the operation is queued and returned with ``pending`` set; the tool
        runs when an approver releases it (``approvals.approve``).
        """
        op = signed.op
        if not isinstance(op, ops.InvokeTool):
            raise InvalidInput(f"expected a tool.invoke operation, got {signed.kind}")
        from toka.core import approvals

        def decide(state: WorldState, ctx: kernel.Ctx) -> Plan | None:
            if approvals.requires_approval(state, op, ctx):
                return None  # held: it runs when an approver releases it
            return plan_invocation(state, op, ctx)

        rt = self.runtime
        try:
            plan = rt.dry_run(signed, decide)
        except TokaError:
            # The standard path records the refusal and raises it (or returns the
            # recorded outcome when this exact operation was already applied).
            return Invocation.from_outcome(rt.submit(signed), op)
        if plan is None:
            return Invocation.from_outcome(rt.submit(signed), op)
        run = self.run(plan, op.args)
        return Invocation.from_outcome(rt.submit(signed, prepared=run), op, run.stderr)

    def run(self, plan: Plan, args: Any) -> ToolRun:
        """Run the planned tool on ``args`` outside the kernel."""
        tool = plan.tool
        if tool.kind == "native":
            return _run_native(tool, args)
        assert tool.module_sha256 is not None
        wasm = self._module(tool.module_sha256, tool)
        limits = Limits(
            fuel=plan.fuel,
            memory_mb=tool.limits["memory_mb"],
            timeout_ms=tool.limits["timeout_ms"],
            max_output_bytes=tool.limits["max_output_bytes"],
        )
        result = self.sandbox.run(
            wasm, tool.module_sha256, _json.encode(args), limits, name=tool.name
        )
        failure = result.failure
        message = ""
        if failure is not None:
            message = failure.message
            if result.stderr.strip():
                message += f"; stderr: {result.stderr.strip()[:500]}"
        return ToolRun(
            tool=tool.name,
            version=tool.version,
            ok=failure is None,
            output=result.output if failure is None else None,
            error_kind=failure.kind if failure is not None else None,
            message=message,
            exit_code=failure.exit_code if failure is not None else None,
            fuel_used=result.fuel_used,
            wall_ms=result.wall_ms,
            stderr=result.stderr,
        )

    def _module(self, sha256: str, tool: Tool) -> bytes:
        wasm = self._modules.get(sha256)
        if wasm is not None:
            return wasm
        path = module_path(self.runtime.home.blobs, sha256)
        try:
            wasm = path.read_bytes()
        except FileNotFoundError:
            raise HomeError(
                f"tool {tool.name}@{tool.version}: its module {path} is missing from the home"
            ) from None
        if hashlib.sha256(wasm).hexdigest() != sha256:
            raise IntegrityFailure(
                f"tool {tool.name}@{tool.version}: module {path} does not match its sha256; "
                "refusing to run it"
            )
        # Compile (or load from the cache) now, so the run's recorded wall time is the run's;
        # an invalid module is reported by the run itself.
        with contextlib.suppress(ValueError):
            self.sandbox.compile(wasm, sha256)
        with self._lock:
            if len(self._modules) >= self._MODULES_KEPT:
                self._modules.pop(next(iter(self._modules)))
            self._modules[sha256] = wasm
        return wasm


def _run_native(tool: Tool, args: Any) -> ToolRun:
    t0 = time.perf_counter()
    fn = NATIVE_TOOLS.get(tool.name)
    kind: str | None = None
    message = ""
    output = None
    if fn is None:
        kind, message = "trap", f"this build has no native tool {tool.name!r}"
    else:
        try:
            output = fn(args)
            size = len(_json.encode(output))
            limit = tool.limits["max_output_bytes"]
            if size > limit:
                kind, message, output = "output_too_large", f"output exceeded {limit} bytes", None
        except Exception as exc:
            kind, message, output = "trap", f"{type(exc).__name__}: {exc}", None
    wall_ms = (time.perf_counter() - t0) * 1000.0
    return ToolRun(tool.name, tool.version, kind is None, output, kind, message, None, 0, wall_ms)


_RUNNERS: weakref.WeakKeyDictionary[Any, ToolRunner] = weakref.WeakKeyDictionary()
_RUNNERS_LOCK = threading.Lock()


def runner_for(runtime: Runtime) -> ToolRunner:
    """The runtime's tool runner (one per runtime, so its sandbox and caches are shared)."""
    with _RUNNERS_LOCK:
        runner = _RUNNERS.get(runtime)
        if runner is None:
            runner = _RUNNERS[runtime] = ToolRunner(runtime)
        return runner


def invoke(runtime: Runtime, signed: ops.SignedOperation) -> Invocation:
    """Check, run and record one signed ``tool.invoke`` (see ``ToolRunner.invoke``)."""
    return runner_for(runtime).invoke(signed)


def invoke_as(
    client: Client,
    tool: str,
    args: Any = None,
    *,
    version: str | None = None,
    task: str | None = None,
) -> Invocation:
    """Sign a ``tool.invoke`` as ``client``'s principal and run it."""
    signed = client.sign(ops.InvokeTool(tool, args, version, task))
    result = invoke(client.runtime, signed)
    _raise_if_pending(client, result.pending)
    return result


def _raise_if_pending(client: Client, approval: str | None) -> None:
    """Honour ``Client.raise_pending`` (set by commands that print one result)."""
    if approval is not None and client.raise_pending:
        from toka.core.errors import AwaitingApproval

        raise AwaitingApproval(approval)


def register(client: Client, manifest: Path | str | LoadedManifest) -> Registration:
    """Register the tool of a manifest file (or an already loaded manifest) as ``client``."""
    loaded = manifest if isinstance(manifest, LoadedManifest) else load_manifest(manifest)
    return runner_for(client.runtime).register(client, loaded)


def register_builtins(client: Client) -> list[str]:
    """Register ``echo`` and the shipped tools not registered yet; returns ``name@version``s."""
    return runner_for(client.runtime).register_builtins(client)
