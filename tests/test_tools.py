"""Tools through the real path: manifests, signed registration, invocation, the log.

Every tool here is registered from a TOML manifest pointing at a module built from
tests/wasm/*.wat, and invoked through toka.core.tools (the same path as the CLI).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

import msgspec
import pytest
import wasmtime

from toka.core import tools
from toka.core.errors import (
    BudgetExhausted,
    HomeError,
    IntegrityFailure,
    InvalidInput,
    InvalidOperation,
    NotCovered,
    NotFound,
)
from toka.core.kernel.tools import MAX_LIMITS
from toka.core.model import events as ev
from toka.core.model import ops
from toka.core.model.state import Budgets
from toka.core.runtime import Runtime
from toka.core.runtime.client import Client
from toka.core.tools import runner as tool_runner
from toka.core.tools.sandbox import WasmSandbox

WASM_DIR = Path(__file__).parent / "wasm"


def build(wat: str) -> bytes:
    return bytes(wasmtime.wat2wasm((WASM_DIR / f"{wat}.wat").read_text()))


def write_tool(
    directory: Path,
    wat: str,
    *,
    name: str | None = None,
    version: str = "1.0.0",
    limits: dict[str, int] | None = None,
    extra: str = "",
    sha256: str | None = None,
) -> Path:
    """A manifest + module in ``directory`` for the WAT module ``wat``; returns the manifest."""
    name = name or wat
    directory.mkdir(parents=True, exist_ok=True)
    wasm = build(wat)
    (directory / f"{name}.wasm").write_bytes(wasm)
    lines = [
        f'name = "{name}"',
        f'version = "{version}"',
        f'description = "test tool built from {wat}.wat"',
        'kind = "wasm"',
        f'module = "{name}.wasm"',
    ]
    if sha256 is not None:
        lines.append(f'sha256 = "{sha256}"')
    lines.append(extra)
    if limits:
        lines.append("[limits]")
        lines += [f"{k} = {v}" for k, v in limits.items()]
    manifest = directory / f"{name}-{version}.toml"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


class SandboxSpy(WasmSandbox):
    """A real sandbox that counts its runs, to prove when nothing ran."""

    def __init__(self) -> None:
        super().__init__()
        self.runs: list[str] = []

    def run(self, wasm, sha256, stdin, limits, *, name="tool", **staged):
        self.runs.append(name)
        return super().run(wasm, sha256, stdin, limits, name=name, **staged)


@pytest.fixture
def spy(runtime: Runtime) -> SandboxSpy:
    sandbox = SandboxSpy()
    tool_runner._RUNNERS[runtime] = tools.ToolRunner(runtime, sandbox)
    return sandbox


def kinds(runtime: Runtime, after: int = 0) -> list[str]:
    return [r.kind for r in runtime.log.records(after=after)]


def payloads(runtime: Runtime, kind: str) -> list[dict[str, Any]]:
    return [msgspec.json.decode(r.payload) for r in runtime.log.records() if r.kind == kind]


def spawn_with(operator: Client, caps: list[str], budgets: Budgets | None = None) -> Client:
    agent, _ = operator.spawn_agent("worker")
    if caps:
        operator.grant(agent, caps, 3600, budgets=budgets)
    return Client(operator.runtime, agent)


def assert_still_serving(runtime: Runtime, operator: Client) -> None:
    """After whatever happened, a normal invocation works and the log verifies."""
    if "echo" not in runtime.state.tools:
        tools.register(operator, tools.validate_manifest(tools.ECHO_MANIFEST, "echo", bytes))
    result = tools.invoke_as(operator, "echo", {"still": "serving"})
    assert result.ok and result.output == {"still": "serving"}
    assert runtime.verify()["ok"]
    assert runtime.replay_check()["ok"]


# -- manifests ----------------------------------------------------------------------


def test_unknown_manifest_key_is_refused_naming_file_and_key(tmp_path: Path) -> None:
    manifest = write_tool(tmp_path, "echo", extra="colour = 'blue'")
    with pytest.raises(InvalidInput, match=r"echo-1\.0\.0\.toml: unknown key `colour`"):
        tools.load_manifest(manifest)


def test_unknown_limit_key_is_refused_naming_the_table(tmp_path: Path) -> None:
    manifest = write_tool(tmp_path, "echo", limits={"cpu_percent": 50})
    with pytest.raises(InvalidInput, match=r"limits: unknown key `cpu_percent`"):
        tools.load_manifest(manifest)


def test_wrong_value_type_names_the_key(tmp_path: Path) -> None:
    manifest = write_tool(tmp_path, "echo", limits={"fuel": '"lots"'})
    with pytest.raises(InvalidInput, match=r"limits\.fuel: Expected `int`, got `str`"):
        tools.load_manifest(manifest)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("name", "Word Count", "name: 'Word Count' is not a tool name"),
        ("name", "tool/../x", "is not a tool name"),
        ("version", "1.0", "version: '1.0' is not MAJOR.MINOR.PATCH"),
        ("version", "1.02.0", "is not MAJOR.MINOR.PATCH"),
        ("kind", "python", "kind: 'python' is not one of wasm, native"),
    ],
)
def test_name_version_and_kind_formats_are_checked(
    tmp_path: Path, field: str, value: str, message: str
) -> None:
    manifest = write_tool(tmp_path, "echo")
    text = manifest.read_text()
    old = {"name": 'name = "echo"', "version": 'version = "1.0.0"', "kind": 'kind = "wasm"'}
    manifest.write_text(text.replace(old[field], f'{field} = "{value}"'))
    with pytest.raises(InvalidInput, match=message):
        tools.load_manifest(manifest)


@pytest.mark.parametrize(
    ("key", "value"),
    [("memory_mb", 1024), ("timeout_ms", 120_000), ("fuel", 0), ("max_output_bytes", 2**30)],
)
def test_limits_outside_sane_maxima_are_refused(tmp_path: Path, key: str, value: int) -> None:
    manifest = write_tool(tmp_path, "echo", limits={key: value})
    with pytest.raises(InvalidInput, match=rf"limits\.{key}: {value} is outside 1\.\."):
        tools.load_manifest(manifest)


def test_input_schema_must_be_a_valid_json_schema(tmp_path: Path) -> None:
    manifest = write_tool(tmp_path, "echo", extra='[input]\ntype = "strnig"')
    with pytest.raises(InvalidInput, match=r"input.*not a valid JSON Schema"):
        tools.load_manifest(manifest)


def test_input_schema_may_not_reference_anything_remote(tmp_path: Path) -> None:
    manifest = write_tool(tmp_path, "echo", extra='[input]\n"$ref" = "https://example.com/s.json"')
    with pytest.raises(InvalidInput, match=r"input\.\$ref: only local references"):
        tools.load_manifest(manifest)


def test_missing_module_file_is_a_clear_error(tmp_path: Path) -> None:
    manifest = write_tool(tmp_path, "echo")
    (tmp_path / "echo.wasm").unlink()
    with pytest.raises(InvalidInput, match=r"module: cannot read echo\.wasm"):
        tools.load_manifest(manifest)


def test_wat_text_is_not_accepted_as_a_module(tmp_path: Path) -> None:
    manifest = write_tool(tmp_path, "echo")
    (tmp_path / "echo.wasm").write_text((WASM_DIR / "echo.wat").read_text())
    with pytest.raises(InvalidInput, match="not a WebAssembly binary"):
        tools.load_manifest(manifest)


# -- registration -------------------------------------------------------------------


def test_sha256_pin_mismatch_is_refused_at_registration(
    runtime: Runtime, operator: Client, tmp_path: Path
) -> None:
    manifest = write_tool(tmp_path, "echo", sha256="0" * 64)
    seq = runtime.state.seq
    with pytest.raises(InvalidInput, match=r"sha256: pin mismatch.*refusing the tool"):
        tools.register(operator, manifest)
    assert runtime.state.tools == {}
    assert runtime.state.seq == seq
    assert not any(runtime.home.blobs.glob("*.wasm"))


def test_matching_sha256_pin_is_accepted(
    runtime: Runtime, operator: Client, tmp_path: Path
) -> None:
    digest = hashlib.sha256(build("echo")).hexdigest()
    reg = tools.register(operator, write_tool(tmp_path, "echo", sha256=digest))
    assert reg.module_sha256 == digest
    assert runtime.state.tools["echo"]["1.0.0"].module_sha256 == digest


def test_module_is_stored_content_addressed_and_survives_the_original(
    runtime: Runtime, operator: Client, tmp_path: Path
) -> None:
    manifest = write_tool(tmp_path / "src", "echo")
    reg = tools.register(operator, manifest)
    blob = runtime.home.blobs / f"{reg.module_sha256}.wasm"
    assert blob.read_bytes() == build("echo")
    assert stat.S_IMODE(blob.stat().st_mode) == 0o600
    for f in (tmp_path / "src").iterdir():
        f.unlink()
    # a fresh process (runtime) on the same home still runs it
    with Runtime(runtime.home) as other:
        result = tools.invoke_as(Client(other), "echo", {"a": [1, 2]})
    assert result.ok and result.output == {"a": [1, 2]}


def test_registration_is_a_signed_logged_operation(
    runtime: Runtime, operator: Client, tmp_path: Path
) -> None:
    tools.register(operator, write_tool(tmp_path, "echo"))
    (event,) = payloads(runtime, "tool.registered")
    assert event["name"] == "echo" and event["kind"] == "wasm"
    assert event["limits"] == tools.DEFAULT_LIMITS
    record = next(r for r in runtime.log.records() if r.kind == "tool.registered")
    assert (record.principal, record.grant) == ("operator", "gr-2")


def test_same_name_and_version_cannot_be_registered_twice(
    runtime: Runtime, operator: Client, tmp_path: Path
) -> None:
    tools.register(operator, write_tool(tmp_path, "echo"))
    again = write_tool(tmp_path / "other", "exit0", name="echo")
    with pytest.raises(InvalidOperation, match=r"echo@1\.0\.0 is already registered"):
        tools.register(operator, again)
    assert (
        runtime.state.tools["echo"]["1.0.0"].module_sha256
        == hashlib.sha256(build("echo")).hexdigest()
    )
    rejected = payloads(runtime, "operation.rejected")
    assert rejected[-1]["op"] == "tool.register"


def test_newest_version_is_invoked_unless_a_version_is_named(
    runtime: Runtime, operator: Client, tmp_path: Path
) -> None:
    tools.register(operator, write_tool(tmp_path / "a", "echo", name="pick", version="1.2.0"))
    tools.register(operator, write_tool(tmp_path / "b", "exit0", name="pick", version="1.10.0"))
    tools.register(operator, write_tool(tmp_path / "c", "echo", name="pick", version="1.9.3"))
    newest = tools.invoke_as(operator, "pick", {"x": 1})
    assert (newest.version, newest.output) == ("1.10.0", [1, 2, 3])
    pinned = tools.invoke_as(operator, "pick", {"x": 1}, version="1.2.0")
    assert (pinned.version, pinned.output) == ("1.2.0", {"x": 1})
    with pytest.raises(NotFound, match=r"has no version 9\.9\.9"):
        tools.invoke_as(operator, "pick", {}, version="9.9.9")


@pytest.mark.parametrize(
    ("wat", "message"),
    [("nostart", "does not export `_start`"), ("badimport", "imports env::system")],
)
def test_modules_that_could_never_run_are_refused_at_registration(
    runtime: Runtime, operator: Client, tmp_path: Path, wat: str, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        tools.register(operator, write_tool(tmp_path, wat))
    assert runtime.state.tools == {}


def test_registering_needs_the_tool_register_capability(
    runtime: Runtime, operator: Client, tmp_path: Path
) -> None:
    agent = spawn_with(operator, ["tool.register:tool/other"])
    with pytest.raises(NotCovered, match=r"tool\.register:tool/echo"):
        tools.register(agent, write_tool(tmp_path, "echo"))
    assert runtime.state.tools == {}
    assert payloads(runtime, "operation.rejected")[-1]["code"] == "not_covered"


def test_kernel_refuses_a_register_operation_with_bad_limits(operator: Client) -> None:
    op = ops.RegisterTool(
        name="raw",
        version="1.0.0",
        description="submitted without a manifest",
        kind="wasm",
        module_sha256="a" * 64,
        capabilities=[],
        limits={**tools.DEFAULT_LIMITS, "memory_mb": 4096},
    )
    with pytest.raises(InvalidOperation, match=r"limits\.memory_mb: 4096 is outside"):
        operator.submit(op)


def test_builtins_register_once(runtime: Runtime, operator: Client) -> None:
    first = tools.register_builtins(operator)
    assert first == [
        "echo@1.0.0",
        "fs-list@1.0.0",
        "fs-read@1.0.0",
        "fs-write@1.0.0",
        "http-fetch@1.0.0",
        "stats@1.0.0",
        "upper@1.0.0",
        "wordcount@1.0.0",
    ]
    seq = runtime.state.seq
    assert tools.register_builtins(operator) == []
    assert runtime.state.seq == seq


def test_native_echo_returns_its_arguments(runtime: Runtime, operator: Client) -> None:
    tools.register_builtins(operator)
    args = {"message": "hi", "n": [1, 2.5, None, True]}
    result = tools.invoke_as(operator, "echo", args)
    assert result.ok and result.output == args
    assert payloads(runtime, "tool.succeeded")[-1]["output"] == args


# -- invocation ---------------------------------------------------------------------


def test_success_is_recorded_with_output_fuel_and_time(
    runtime: Runtime, operator: Client, tmp_path: Path
) -> None:
    tools.register(operator, write_tool(tmp_path, "echo"))
    result = tools.invoke_as(operator, "echo", {"q": "ok"})
    assert result.ok and result.output == {"q": "ok"}
    (event,) = payloads(runtime, "tool.succeeded")
    assert event["output"] == {"q": "ok"}
    assert event["fuel_used"] == result.fuel_used > 0
    assert event["wall_ms"] > 0
    assert result.seq == runtime.state.seq


def test_a_bare_invoke_operation_is_refused(
    runtime: Runtime, operator: Client, spy: SandboxSpy, tmp_path: Path
) -> None:
    tools.register(operator, write_tool(tmp_path, "echo"))
    with pytest.raises(InvalidOperation, match="tool invocations go through the tool runner"):
        operator.submit(ops.InvokeTool("echo", {}))
    assert spy.runs == []
    assert payloads(runtime, "tool.succeeded") == []
    assert payloads(runtime, "operation.rejected")[-1]["op"] == "tool.invoke"


def test_agent_without_the_invoke_capability_is_refused_and_nothing_runs(
    runtime: Runtime, operator: Client, spy: SandboxSpy, tmp_path: Path
) -> None:
    tools.register(operator, write_tool(tmp_path, "echo"))
    agent = spawn_with(operator, ["tool.invoke:tool/other"])
    with pytest.raises(NotCovered, match=r"tool\.invoke:tool/echo"):
        tools.invoke_as(agent, "echo", {})
    assert spy.runs == []
    assert payloads(runtime, "tool.succeeded") == payloads(runtime, "tool.failed") == []
    assert payloads(runtime, "operation.rejected")[-1]["code"] == "not_covered"
    # with the capability it runs
    operator.grant(agent.principal, ["tool.invoke:tool/echo"], 3600)
    assert tools.invoke_as(agent, "echo", {"a": 1}).ok
    assert spy.runs == ["echo"]


def test_manifest_capabilities_are_required_of_the_invoker(
    runtime: Runtime, operator: Client, spy: SandboxSpy, tmp_path: Path
) -> None:
    extra = 'capabilities = ["observation.emit:agent/*"]'
    tools.register(operator, write_tool(tmp_path, "echo", extra=extra))
    agent = spawn_with(operator, ["tool.invoke:tool/echo"])
    with pytest.raises(NotCovered, match=r"observation\.emit:agent/\*"):
        tools.invoke_as(agent, "echo", {})
    assert spy.runs == []


def test_schema_invalid_arguments_are_refused_before_running(
    runtime: Runtime, operator: Client, spy: SandboxSpy, tmp_path: Path
) -> None:
    schema = (
        '[input]\ntype = "object"\nrequired = ["text"]\n[input.properties.text]\ntype = "string"'
    )
    tools.register(operator, write_tool(tmp_path, "echo", extra=schema))
    with pytest.raises(InvalidOperation, match=r"1 is not of type 'string' \(at \$\.text\)"):
        tools.invoke_as(operator, "echo", {"text": 1})
    with pytest.raises(InvalidOperation, match="'text' is a required property"):
        tools.invoke_as(operator, "echo", {})
    assert spy.runs == []
    assert payloads(runtime, "tool.succeeded") == payloads(runtime, "tool.failed") == []
    assert tools.invoke_as(operator, "echo", {"text": "fine"}).output == {"text": "fine"}


def test_unknown_tool_is_not_found(operator: Client) -> None:
    with pytest.raises(NotFound, match="unknown tool 'ghost'"):
        tools.invoke_as(operator, "ghost", {})


def test_tool_call_budget_is_enforced_before_running(
    runtime: Runtime, operator: Client, spy: SandboxSpy, tmp_path: Path
) -> None:
    tools.register(operator, write_tool(tmp_path, "echo"))
    agent = spawn_with(operator, ["tool.invoke:tool/echo"], Budgets(max_tool_calls=2))
    assert tools.invoke_as(agent, "echo", 1).ok
    assert tools.invoke_as(agent, "echo", 2).ok
    with pytest.raises(BudgetExhausted, match=r"budget: .* has used 2 of 2 tool calls"):
        tools.invoke_as(agent, "echo", 3)
    assert spy.runs == ["echo", "echo"]
    assert payloads(runtime, "operation.rejected")[-1]["code"] == "budget"


def test_fuel_budget_caps_the_run_and_then_refuses(
    runtime: Runtime, operator: Client, spy: SandboxSpy, tmp_path: Path
) -> None:
    tools.register(operator, write_tool(tmp_path, "loop", limits={"timeout_ms": 60_000}))
    agent = spawn_with(operator, ["tool.invoke:tool/loop"], Budgets(max_fuel=50_000))
    result = tools.invoke_as(agent, "loop", {})
    assert not result.ok and result.error is not None
    assert result.error.kind == "out_of_fuel"
    assert result.fuel_used == 50_000
    grant = next(g for g in runtime.state.grants.values() if g.budgets.max_fuel)
    assert grant.usage.fuel == 50_000 and grant.usage.tool_calls == 1
    with pytest.raises(BudgetExhausted, match="50000 of 50000 fuel"):
        tools.invoke_as(agent, "loop", {})
    assert len(spy.runs) == 1


def test_resubmitting_a_recorded_invocation_returns_it_without_running_again(
    runtime: Runtime, operator: Client, spy: SandboxSpy, tmp_path: Path
) -> None:
    tools.register(operator, write_tool(tmp_path, "echo"))
    signed = operator.sign(ops.InvokeTool("echo", {"once": True}))
    first = tools.invoke(runtime, signed)
    again = tools.invoke(runtime, signed)
    assert again.replayed and again.seq == first.seq and again.output == {"once": True}
    assert spy.runs == ["echo"]
    assert len(payloads(runtime, "tool.succeeded")) == 1


def test_replay_never_reruns_a_tool(
    runtime: Runtime, operator: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tools.register(operator, write_tool(tmp_path, "echo"))
    tools.register(operator, write_tool(tmp_path, "exit7"))
    tools.invoke_as(operator, "echo", {"n": 1})
    tools.invoke_as(operator, "exit7", {})

    def forbidden(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a tool ran during replay")

    monkeypatch.setattr(WasmSandbox, "run", forbidden)
    monkeypatch.setattr(tool_runner, "run_native", forbidden)
    with Runtime(runtime.home) as fresh:
        assert fresh.state.state_hash() == runtime.state.state_hash()
        assert fresh.replay_check()["ok"]
        op_grant = fresh.state.grants["gr-2"]
        assert op_grant.usage.tool_calls == 2


def test_invocation_under_an_approve_grant_runs_only_once_approved(
    runtime: Runtime, operator: Client, spy: SandboxSpy, tmp_path: Path
) -> None:
    from toka.core import approvals

    tools.register(operator, write_tool(tmp_path, "echo"))
    agent, _ = operator.spawn_agent("careful")
    operator.grant(agent, ["tool.invoke:tool/echo"], 3600, approve=True)
    result = tools.invoke_as(Client(runtime, agent), "echo", {"held": True})
    assert result.pending is not None and not result.ok
    assert spy.runs == []
    assert payloads(runtime, "tool.succeeded") == []
    approvals.approve(operator, result.pending)
    assert spy.runs == ["echo"]
    (succeeded,) = [r for r in runtime.log.records() if r.kind == "tool.succeeded"]
    assert succeeded.principal == agent
    assert msgspec.json.decode(succeeded.payload)["output"] == {"held": True}
    assert runtime.replay_check()["ok"]


def test_compiled_modules_are_reused_across_processes(
    runtime: Runtime, operator: Client, tmp_path: Path
) -> None:
    tools.register(operator, write_tool(tmp_path, "echo"))  # compiles and caches on disk
    assert any((runtime.home.root / "cache").glob("*.cwasm"))
    with Runtime(runtime.home) as other:
        assert tools.invoke_as(Client(other), "echo", {"n": 1}).ok
        stats = tools.runner_for(other).sandbox.stats
    assert stats["compiled"] == 0 and stats["disk_hits"] == 1


def test_native_output_over_its_limit_is_output_too_large(
    runtime: Runtime, operator: Client
) -> None:
    tools.register_builtins(operator)
    limit = runtime.state.tools["echo"]["1.0.0"].limits["max_output_bytes"]
    result = tools.invoke_as(operator, "echo", "x" * limit)
    assert result.error is not None and result.error.kind == "output_too_large"
    assert payloads(runtime, "tool.failed")[-1]["error_kind"] == "output_too_large"


def test_tampered_module_blob_is_refused_and_nothing_runs(
    runtime: Runtime, operator: Client, spy: SandboxSpy, tmp_path: Path
) -> None:
    reg = tools.register(operator, write_tool(tmp_path, "echo"))
    (runtime.home.blobs / f"{reg.module_sha256}.wasm").write_bytes(build("exit0"))
    with pytest.raises(IntegrityFailure, match="does not match its sha256"):
        tools.invoke_as(operator, "echo", {})
    assert spy.runs == []
    (runtime.home.blobs / f"{reg.module_sha256}.wasm").unlink()
    with pytest.raises(HomeError, match="is missing from the home"):
        tools.invoke_as(operator, "echo", {})


def test_task_reference_must_be_an_open_task(
    runtime: Runtime, operator: Client, tmp_path: Path
) -> None:
    tools.register(operator, write_tool(tmp_path, "echo"))
    with pytest.raises(NotFound, match="unknown task 'tk-404'"):
        tools.invoke_as(operator, "echo", {}, task="tk-404")
    agent, _ = operator.spawn_agent("w")
    task = operator.schedule(agent, "count words").first(ev.TaskScheduled).task
    result = tools.invoke_as(operator, "echo", {}, task=task)
    assert payloads(runtime, "tool.succeeded")[-1]["task"] == task
    assert result.ok


# -- hostile modules ----------------------------------------------------------------


def hostile(
    runtime: Runtime, operator: Client, tmp_path: Path, wat: str, **limits: int
) -> tools.Invocation:
    """Register ``wat`` as a tool and invoke it once; the failure must land in the log."""
    tools.register(operator, write_tool(tmp_path, wat, limits=limits or None))
    result = tools.invoke_as(operator, wat, {})
    if not result.ok:
        failed = payloads(runtime, "tool.failed")[-1]
        assert result.error is not None
        assert failed["tool"] == wat
        assert failed["error_kind"] == result.error.kind
        assert failed["exit_code"] == result.error.exit_code
        assert kinds(runtime)[-1] == "tool.failed"
    return result


def test_infinite_loop_stops_at_the_timeout(
    runtime: Runtime, operator: Client, tmp_path: Path
) -> None:
    result = hostile(runtime, operator, tmp_path, "loop", fuel=MAX_LIMITS["fuel"], timeout_ms=200)
    assert result.error is not None and result.error.kind == "timeout"
    assert "200 ms" in result.error.message
    assert_still_serving(runtime, operator)


def test_infinite_loop_runs_out_of_fuel(runtime: Runtime, operator: Client, tmp_path: Path) -> None:
    result = hostile(runtime, operator, tmp_path, "loop", fuel=2_000_000, timeout_ms=60_000)
    assert result.error is not None and result.error.kind == "out_of_fuel"
    assert result.fuel_used == 2_000_000
    assert_still_serving(runtime, operator)


def test_memory_grower_hits_the_cap(runtime: Runtime, operator: Client, tmp_path: Path) -> None:
    result = hostile(runtime, operator, tmp_path, "memgrow", memory_mb=8)
    assert result.error is not None and result.error.kind == "memory"
    assert "8 MiB" in result.error.message
    assert_still_serving(runtime, operator)


def test_unbounded_recursion_traps(runtime: Runtime, operator: Client, tmp_path: Path) -> None:
    result = hostile(runtime, operator, tmp_path, "recursion")
    assert result.error is not None and result.error.kind == "trap"
    assert "stack overflow" in result.error.message
    assert_still_serving(runtime, operator)


def test_module_opening_files_through_any_descriptor_sees_nothing(
    runtime: Runtime, operator: Client, tmp_path: Path
) -> None:
    result = hostile(runtime, operator, tmp_path, "files")
    assert result.ok, result.error
    report = result.output
    for key in ("path_open", "path_open_abs", "path_open_dot"):
        assert len(report[key]) == 11 and all(errno != 0 for errno in report[key])
    assert all(errno != 0 for errno in report["fd_read"] + report["prestat"])
    assert report["opened"] == 0 and report["read_ok"] == 0
    assert_still_serving(runtime, operator)


def test_module_reading_its_environment_sees_none(
    runtime: Runtime, operator: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOKA_PROBE_SECRET", "must-not-leak")
    assert os.environ
    result = hostile(runtime, operator, tmp_path, "environ")
    assert result.ok, result.error
    assert result.output["environ_count"] == 0 and result.output["environ_bytes"] == 0
    assert result.output["argc"] == 1 and result.output["argv0"] == "environ"
    assert "must-not-leak" not in json.dumps(payloads(runtime, "tool.succeeded"))
    assert_still_serving(runtime, operator)


def test_output_flood_is_cut_at_the_limit(
    runtime: Runtime, operator: Client, tmp_path: Path
) -> None:
    result = hostile(runtime, operator, tmp_path, "flood", max_output_bytes=4096, timeout_ms=300)
    assert result.error is not None and result.error.kind == "output_too_large"
    assert "4096 bytes" in result.error.message
    assert result.output is None
    record = [r for r in runtime.log.records() if r.kind == "tool.failed"][-1]
    assert len(record.payload) < 4096
    assert_still_serving(runtime, operator)


def test_non_json_output_is_bad_output(runtime: Runtime, operator: Client, tmp_path: Path) -> None:
    result = hostile(runtime, operator, tmp_path, "notjson")
    assert result.error is not None and result.error.kind == "bad_output"
    assert "not valid JSON" in result.error.message
    assert_still_serving(runtime, operator)


def test_non_zero_exit_is_exit_with_its_code(
    runtime: Runtime, operator: Client, tmp_path: Path
) -> None:
    result = hostile(runtime, operator, tmp_path, "exit7")
    assert result.error is not None and result.error.kind == "exit"
    assert result.error.exit_code == 7
    assert payloads(runtime, "tool.failed")[-1]["exit_code"] == 7
    assert_still_serving(runtime, operator)


def test_every_failure_kind_lands_in_one_verifiable_log(
    runtime: Runtime, operator: Client, tmp_path: Path
) -> None:
    cases = {
        "loop": {"fuel": 1_000_000},
        "memgrow": {"memory_mb": 4},
        "recursion": {},
        "flood": {"max_output_bytes": 1024, "timeout_ms": 200},
        "notjson": {},
        "exit7": {},
    }
    for wat, limits in cases.items():
        hostile(runtime, operator, tmp_path / wat, wat, **limits)
    failed = [p["error_kind"] for p in payloads(runtime, "tool.failed")]
    assert failed == ["out_of_fuel", "memory", "trap", "output_too_large", "bad_output", "exit"]
    assert runtime.state.grants["gr-2"].usage.tool_calls == len(cases)
    assert_still_serving(runtime, operator)
