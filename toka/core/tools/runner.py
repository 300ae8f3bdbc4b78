"""The tool runner: checks an invocation, runs the tool outside the kernel, records it.

A pure tool runs only if the operation would be accepted now (a read-only ``dry_run``
against the current state); the kernel re-checks everything when the run's result is
submitted, and records ``tool.succeeded`` or ``tool.failed``. A tool with an effect
runs only after its intent is in the log, and its outcome is stated by the host
afterwards (``calls``). Replay folds those events and never runs a tool again.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import threading
import weakref
from pathlib import Path
from typing import Any

import msgspec

from toka.core import kernel
from toka.core.errors import (
    AwaitingApproval,
    HomeError,
    IntegrityFailure,
    InvalidInput,
    TokaError,
)
from toka.core.kernel import Ctx
from toka.core.kernel.approvals import requires_approval
from toka.core.kernel.context import value_problem
from toka.core.kernel.effects import still_allowed
from toka.core.kernel.tools import Plan, ToolRun, fuel_left, plan_invocation
from toka.core.model import ops
from toka.core.model.state import OpenCall, Tool, WorldState
from toka.core.runtime import Runtime
from toka.core.runtime.client import Client
from toka.core.tools import calls, staging
from toka.core.tools.effect_tools import CallContext, effect_hmac_key, perform_native
from toka.core.tools.effects import fs
from toka.core.tools.invocation import Invocation
from toka.core.tools.manifest import LoadedManifest, builtin_manifests, load_manifest
from toka.core.tools.mcp import perform as mcp_perform
from toka.core.tools.mcp.connection import Pool
from toka.core.tools.modules import blobs_lock, module_path, read_module, store_module
from toka.core.tools.native import run_native
from toka.core.tools.sandbox import InvalidModule, Limits, ToolFailure, WasmSandbox

WASI_MODULE = "wasi_snapshot_preview1"
_PAGE = 65536

_json = msgspec.json.Encoder(order="sorted")


class Registration(msgspec.Struct, frozen=True):
    name: str
    version: str
    kind: str
    module_sha256: str | None
    seq: int
    pending: str | None = None  # the approval id, when it waits in the approval queue


class ToolRunner:
    """Registers and runs tools for one runtime; owns its WASM sandbox and module cache."""

    _MODULES_KEPT = 64

    def __init__(self, runtime: Runtime, sandbox: WasmSandbox | None = None):
        # Weak: the per-runtime registry below is keyed weakly by the runtime.
        self._runtime = weakref.ref(runtime)
        self._sandbox = sandbox
        self._modules: dict[str, bytes] = {}
        self._hmac_key: bytes | None = None  # hides secret-bearing parts of effect records
        self._lock = threading.Lock()
        self._mcp_pool: Pool | None = None

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

    @property
    def mcp_pool(self) -> Pool:
        """The runtime's connections to MCP servers, closed when it closes."""
        if self._mcp_pool is None:
            with self._lock:
                if self._mcp_pool is None:
                    runtime = self.runtime
                    pool = Pool(runtime.home.secrets, runtime.home.logs)
                    runtime.on_close(pool.close)
                    self._mcp_pool = pool
        return self._mcp_pool

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
        # Shared with other stores, exclusive of `toka gc`: the module is not collected
        # between being stored and the log recording the registration that names it.
        with blobs_lock(rt.home.blobs, exclusive=False):
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

        def decide(state: WorldState, ctx: Ctx) -> Plan | None:
            if requires_approval(state, op, ctx):
                return None  # held: it runs when an approver releases it
            return plan_invocation(state, op, ctx)

        rt = self.runtime
        try:
            plan = rt.dry_run(signed, decide)
        except TokaError:
            # The standard path records the refusal and raises it (or returns the
            # recorded outcome when this exact operation was already applied).
            return self.settle(rt.submit(signed), op)
        if plan is None or plan.effect.side_effect != "none":
            # Held for approval, or a call with an effect: its intent goes first.
            intent = rt.submit(signed)
            started = Invocation.from_outcome(intent, op)
            if started.status == "started" and not intent.replayed and started.call:
                return self.perform(started.call)
            return self.settle(intent, op)
        run = self.run(plan, op.args)
        return Invocation.from_outcome(rt.submit(signed, prepared=run), op, run.stderr)

    def settle(self, outcome: Any, op: ops.InvokeTool) -> Invocation:
        """An invocation's result from its operation's outcome: for a call with an
        effect, how the call stands now (its intent alone says only that it started)."""
        result = Invocation.from_outcome(outcome, op)
        if result.call is not None:
            return calls.result(self.runtime, result.call)
        return result

    def perform(self, call_id: str) -> Invocation:
        """Run the open call ``call_id`` and record its outcome; returns how it ended.

        A call that has ended (or is no longer just started) is not run again."""
        rt = self.runtime
        rt.catch_up()
        call = rt.state.call_table().get(call_id)
        if call is None or call.status != "started":
            return calls.result(rt, call_id)
        op = calls.invocation_of(rt, call)
        stopped = still_allowed(rt.state, call, rt.now_ms())
        if stopped is not None:
            return calls.record(rt, call, ops.CallOutcome(False, None, "refused", stopped))
        return calls.record(rt, call, self.run_call(call, op.args))

    def run_call(self, call: OpenCall, args: Any) -> ops.CallOutcome:
        """Perform a call with an effect: a native effect tool, or a WASM tool's run."""
        rt = self.runtime
        tool = rt.state.tools[call.tool][call.version]
        if tool.kind == "mcp":
            return mcp_perform.perform(rt.state, call, tool, args, rt.home.blobs, self.mcp_pool)
        if tool.kind == "native":
            if self._hmac_key is None:
                self._hmac_key = effect_hmac_key(rt.home.secret())
            home = rt.home
            context = CallContext(
                rt.state, call, tool, args, home.blobs, home.secrets, self._hmac_key, rt.now_ms
            )
            return perform_native(context)
        fuel = fuel_left(rt.state, call.grant, tool)
        if tool.staged is None:
            return _outcome(self.run(Plan(tool, fuel), args))
        return self._run_staged(Plan(tool, fuel), args)

    def _run_staged(self, plan: Plan, args: Any) -> ops.CallOutcome:
        """A WASM tool on staged copies; its outputs written as ``fs-write`` writes."""
        rt, tool = self.runtime, plan.tool
        blobs = rt.home.blobs
        try:
            with staging.staged(rt.state, tool, args, blobs, rt.home.root / "cache") as stage:
                run = self.run(plan, args, stage.preopens)
                if not run.ok or stage.out_dir is None:
                    return _outcome(run, stage.effects)
                try:
                    outputs = staging.collect(stage.out_dir)
                except fs.FsError as exc:  # a link or special file the tool left
                    return _outcome(run, stage.effects, exc)
                try:
                    written = staging.apply(rt.state, args, tool, outputs, blobs)
                except fs.FsError as exc:
                    done = [*stage.effects, *getattr(exc, "effects", [])]
                    return _outcome(run, done, exc)
                return _outcome(run, [*stage.effects, *written])
        except fs.FsError as exc:
            return ops.CallOutcome(
                ok=False,
                error_kind=exc.kind,
                message=exc.message,
                effects=list(getattr(exc, "effects", [])),
            )
        except TokaError as exc:
            return ops.CallOutcome(ok=False, error_kind="refused", message=exc.message)

    def run(self, plan: Plan, args: Any, preopens: tuple = ()) -> ToolRun:
        """Run the planned tool on ``args`` outside the kernel (with staged ``preopens``)."""
        tool = plan.tool
        if tool.kind == "native":
            return run_native(tool, args)
        assert tool.module_sha256 is not None
        wasm = self._module(tool.module_sha256, tool)
        limits = Limits(
            fuel=plan.fuel,
            memory_mb=tool.limits["memory_mb"],
            timeout_ms=tool.limits["timeout_ms"],
            max_output_bytes=tool.limits["max_output_bytes"],
        )
        result = self.sandbox.run(
            wasm, tool.module_sha256, _json.encode(args), limits, name=tool.name, preopens=preopens
        )
        failure = result.failure
        problem = value_problem(result.output) if failure is None else None
        if problem is not None:  # a value the log could not hold (the state's hash)
            failure = ToolFailure("bad_output", f"stdout {problem}")
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
            wasm = read_module(self.runtime.home.blobs, sha256)
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


def _outcome(run: ToolRun, effects: list | None = None, error: Any = None) -> ops.CallOutcome:
    """A run as the outcome of its call, with its effects (and a failure after the run,
    such as an output the host could not write)."""
    ok = run.ok and error is None
    return ops.CallOutcome(
        ok=ok,
        output=run.output if ok else None,
        error_kind=run.error_kind if error is None else error.kind,
        message=run.message if error is None else error.message,
        effects=effects or [],
        fuel_used=run.fuel_used,
        wall_ms=run.wall_ms,
    )


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


def perform(runtime: Runtime, call_id: str) -> Invocation:
    """Run an open call with an effect and record its outcome (``ToolRunner.perform``)."""
    return runner_for(runtime).perform(call_id)


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
        raise AwaitingApproval(approval)


def register(client: Client, manifest: Path | str | LoadedManifest) -> Registration:
    """Register the tool of a manifest file (or an already loaded manifest) as ``client``."""
    loaded = manifest if isinstance(manifest, LoadedManifest) else load_manifest(manifest)
    return runner_for(client.runtime).register(client, loaded)


def register_builtins(client: Client) -> list[str]:
    """Register ``echo`` and the shipped tools not registered yet; returns ``name@version``s."""
    return runner_for(client.runtime).register_builtins(client)
