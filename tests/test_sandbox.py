"""The WASM sandbox (toka.core.tools.sandbox), exercised directly with hostile modules.

The modules live in tests/wasm/*.wat and are assembled here with
wasmtime.wat2wasm. Timing is only ever checked against generous upper bounds
that prove a limit fired.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import subprocess
import sys
import threading
import time
import tomllib

import pytest

from toka.core.tools.sandbox import InvalidModule, Limits, SandboxResult, WasmSandbox

wasmtime = pytest.importorskip("wasmtime")

REPO = pathlib.Path(__file__).resolve().parent.parent
WAT_DIR = pathlib.Path(__file__).resolve().parent / "wasm"
TOOLS_DIR = REPO / "toka" / "tools"

# Fuel high enough that only the deadline can stop an infinite loop.
NO_FUEL_LIMIT = 10**15
SANITY_S = 10.0

_assembled: dict[str, tuple[bytes, str]] = {}


def module(name: str) -> tuple[bytes, str]:
    """Assemble tests/wasm/<name>.wat; returns (wasm bytes, sha256 hex)."""
    if name not in _assembled:
        wasm = bytes(wasmtime.wat2wasm((WAT_DIR / f"{name}.wat").read_text()))
        _assembled[name] = (wasm, hashlib.sha256(wasm).hexdigest())
    return _assembled[name]


@pytest.fixture(scope="module")
def sandbox() -> WasmSandbox:
    return WasmSandbox()


def run(sb: WasmSandbox, name: str, stdin: bytes = b"", **limits: int) -> SandboxResult:
    wasm, sha = module(name)
    return sb.run(wasm, sha, stdin, Limits(**limits))


def rss_bytes() -> int:
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    pytest.skip("no /proc/self/status")


# -- import hygiene -------------------------------------------------------------


def test_importing_the_sandbox_does_not_load_wasmtime_or_textual() -> None:
    code = (
        "import sys, toka.core.tools.sandbox; "
        "print(sorted(m for m in ('wasmtime', 'textual') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


# -- well-behaved modules ---------------------------------------------------------


def test_echo_round_trips_json_from_stdin(sandbox: WasmSandbox) -> None:
    payload = {"text": "héllo wörld", "n": [1, 2, 3], "nested": {"ok": True}}
    r = run(sandbox, "echo", json.dumps(payload).encode())
    assert r.ok, r.failure
    assert r.failure is None
    assert r.output == payload
    assert 0 < r.fuel_used < Limits().fuel
    assert r.stderr == ""
    assert r.wall_ms > 0


def test_200_sequential_calls_all_succeed(sandbox: WasmSandbox) -> None:
    wasm, sha = module("echo")
    limits = Limits()
    for i in range(200):
        r = sandbox.run(wasm, sha, json.dumps({"i": i}).encode(), limits)
        assert r.ok, (i, r.failure)
        assert r.output == {"i": i}


def test_a_released_sandbox_rebuilds_its_engine_on_the_next_call() -> None:
    sb = WasmSandbox()
    assert run(sb, "echo", b'{"a": 1}').output == {"a": 1}
    sb.release()
    assert run(sb, "echo", b'{"a": 2}').output == {"a": 2}
    assert sb.stats["compiled"] == 2


def test_proc_exit_zero_is_success(sandbox: WasmSandbox) -> None:
    r = run(sandbox, "exit0")
    assert r.ok, r.failure
    assert r.output == [1, 2, 3]


def test_stderr_is_captured_and_truncated(sandbox: WasmSandbox) -> None:
    r = run(sandbox, "stderr")
    assert r.ok, r.failure
    assert r.output == {"ok": True}
    assert r.stderr == "E" * Limits().max_stderr_bytes
    r = run(sandbox, "stderr", max_stderr_bytes=10)
    assert r.ok
    assert r.stderr == "E" * 10


# -- limits -----------------------------------------------------------------------


def test_infinite_loop_times_out(sandbox: WasmSandbox) -> None:
    t0 = time.monotonic()
    r = run(sandbox, "loop", fuel=NO_FUEL_LIMIT, timeout_ms=200)
    elapsed = time.monotonic() - t0
    assert not r.ok
    assert r.failure is not None
    assert r.failure.kind == "timeout"
    assert r.output is None
    assert elapsed < SANITY_S


def test_infinite_loop_runs_out_of_fuel(sandbox: WasmSandbox) -> None:
    r = run(sandbox, "loop", fuel=1_000_000, timeout_ms=60_000)
    assert not r.ok
    assert r.failure is not None
    assert r.failure.kind == "out_of_fuel"
    assert r.fuel_used == 1_000_000


def test_memory_grower_hits_the_cap_and_host_rss_stays_bounded(sandbox: WasmSandbox) -> None:
    run(sandbox, "memgrow")  # warm up (compilation, allocator pools)
    before = rss_bytes()
    for memory_mb in (16, 64, 64, 64):
        r = run(sandbox, "memgrow", memory_mb=memory_mb)
        assert not r.ok
        assert r.failure is not None
        assert r.failure.kind == "memory", r.failure
        assert f"{memory_mb} MiB" in r.failure.message
    assert rss_bytes() - before < 200 * 1024 * 1024


def test_initial_memory_above_the_cap_is_a_memory_failure(sandbox: WasmSandbox) -> None:
    r = run(sandbox, "bigmemory", memory_mb=16)
    assert not r.ok
    assert r.failure is not None
    assert r.failure.kind == "memory"
    # ... and the same module runs under a cap that fits it
    r = run(sandbox, "bigmemory", memory_mb=64)
    assert r.failure is not None
    assert r.failure.kind == "bad_output"  # it ran, but wrote nothing


def test_unbounded_recursion_traps_with_stack_overflow(sandbox: WasmSandbox) -> None:
    r = run(sandbox, "recursion")
    assert not r.ok
    assert r.failure is not None
    assert r.failure.kind == "trap"
    assert "stack overflow" in r.failure.message


def test_ordinary_trap_is_not_mistaken_for_memory(sandbox: WasmSandbox) -> None:
    r = run(sandbox, "divzero")
    assert r.failure is not None
    assert r.failure.kind == "trap"
    assert "divide by zero" in r.failure.message


def test_output_flood_is_output_too_large(sandbox: WasmSandbox) -> None:
    t0 = time.monotonic()
    r = run(sandbox, "flood", fuel=NO_FUEL_LIMIT, timeout_ms=200)
    assert time.monotonic() - t0 < SANITY_S
    assert not r.ok
    assert r.failure is not None
    assert r.failure.kind == "output_too_large"
    assert r.output is None


def test_ten_megabytes_of_output_is_output_too_large(sandbox: WasmSandbox) -> None:
    before = rss_bytes()
    r = run(sandbox, "flood10mb")
    assert r.failure is not None
    assert r.failure.kind == "output_too_large"
    assert "65536" in r.failure.message
    assert rss_bytes() - before < 200 * 1024 * 1024


def test_output_exactly_at_the_limit_is_accepted(sandbox: WasmSandbox) -> None:
    payload = json.dumps({"pad": "x" * 200}).encode()
    assert run(sandbox, "echo", payload, max_output_bytes=len(payload)).ok
    r = run(sandbox, "echo", payload, max_output_bytes=len(payload) - 1)
    assert r.failure is not None
    assert r.failure.kind == "output_too_large"


def test_sleeping_in_poll_oneoff_is_refused(sandbox: WasmSandbox) -> None:
    t0 = time.monotonic()
    r = run(sandbox, "sleep", timeout_ms=200)
    assert time.monotonic() - t0 < SANITY_S
    assert r.ok, r.failure
    assert r.output == {"poll_errno": 52}  # ENOSYS instead of a 60 s host-side sleep


# -- exit status and output ---------------------------------------------------------


def test_proc_exit_seven_is_exit_failure(sandbox: WasmSandbox) -> None:
    r = run(sandbox, "exit7")
    assert not r.ok
    assert r.failure is not None
    assert r.failure.kind == "exit"
    assert r.failure.exit_code == 7
    assert r.output is None


def test_non_json_output_is_bad_output(sandbox: WasmSandbox) -> None:
    r = run(sandbox, "notjson")
    assert not r.ok
    assert r.failure is not None
    assert r.failure.kind == "bad_output"
    assert r.output is None


# -- isolation --------------------------------------------------------------------


def test_no_file_system_access_through_any_descriptor(sandbox: WasmSandbox) -> None:
    r = run(sandbox, "files")
    assert r.ok, r.failure
    report = r.output
    assert isinstance(report, dict)
    for key in ("path_open", "path_open_abs", "path_open_dot"):
        assert len(report[key]) == 11  # fds 0..10
        assert all(errno != 0 for errno in report[key]), (key, report[key])
    assert len(report["fd_read"]) == 8  # fds 3..10
    assert all(errno != 0 for errno in report["fd_read"])
    assert all(errno != 0 for errno in report["prestat"])  # no preopened directories
    assert report["opened"] == 0
    assert report["read_ok"] == 0


def test_environment_and_arguments_are_not_inherited(
    sandbox: WasmSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOKA_SANDBOX_SECRET", "must-not-leak")
    assert os.environ  # the host does have an environment
    r = run(sandbox, "environ")
    assert r.ok, r.failure
    assert r.output == {
        "environ_count": 0,
        "environ_bytes": 0,
        "argc": 1,
        "argv_bytes": len("tool") + 1,
        "argv0": "tool",
    }
    wasm, sha = module("environ")
    r = sandbox.run(wasm, sha, b"", Limits(), name="wordcount")
    assert r.ok
    assert r.output["argc"] == 1
    assert r.output["argv0"] == "wordcount"


def test_imports_outside_wasi_do_not_link(sandbox: WasmSandbox) -> None:
    r = run(sandbox, "badimport")
    assert r.failure is not None
    assert r.failure.kind == "trap"
    assert "env::system" in r.failure.message


def test_module_without_start_is_a_trap(sandbox: WasmSandbox) -> None:
    r = run(sandbox, "nostart")
    assert r.failure is not None
    assert r.failure.kind == "trap"
    assert "_start" in r.failure.message


# -- integrity and caching ------------------------------------------------------------


def test_sha256_mismatch_raises(sandbox: WasmSandbox) -> None:
    wasm, sha = module("echo")
    other = hashlib.sha256(wasm + b"x").hexdigest()
    with pytest.raises(ValueError, match="sha256"):
        sandbox.compile(wasm, other)
    with pytest.raises(ValueError, match="sha256"):
        sandbox.run(wasm, other, b"{}", Limits())
    # the in-memory cache does not let a wrong pin through either
    sandbox.compile(wasm, sha)
    with pytest.raises(ValueError):
        sandbox.run(wasm[:-1] + b"\x00", sha, b"{}", Limits())


def test_text_or_garbage_is_not_compiled(sandbox: WasmSandbox) -> None:
    text = (WAT_DIR / "echo.wat").read_bytes()  # wasmtime.Module would parse WAT text
    sha = hashlib.sha256(text).hexdigest()
    with pytest.raises(InvalidModule):
        sandbox.compile(text, sha)
    r = sandbox.run(text, sha, b"{}", Limits())
    assert r.failure is not None
    assert r.failure.kind == "trap"
    garbage = b"\x00asm\x01\x00\x00\x00\xff\xff"
    r = sandbox.run(garbage, hashlib.sha256(garbage).hexdigest(), b"{}", Limits())
    assert r.failure is not None
    assert r.failure.kind == "trap"


def test_invalid_limits_are_rejected(sandbox: WasmSandbox) -> None:
    wasm, sha = module("echo")
    for bad in (Limits(memory_mb=0), Limits(timeout_ms=0), Limits(fuel=-1)):
        with pytest.raises(ValueError):
            sandbox.run(wasm, sha, b"{}", bad)


def test_short_cache_key_is_refused(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ValueError):
        WasmSandbox(cache_dir=tmp_path, cache_key=b"short")


def test_disk_cache_round_trip_and_tampering(tmp_path: pathlib.Path) -> None:
    key = b"k" * 32
    wasm, sha = module("echo")

    first = WasmSandbox(cache_dir=tmp_path, cache_key=key)
    first.compile(wasm, sha)
    assert first.stats["compiled"] == 1
    files = list(tmp_path.glob("*.cwasm"))
    assert len(files) == 1
    cache_file = files[0]
    assert sha not in cache_file.name  # named from sha256(sha + version + config)

    second = WasmSandbox(cache_dir=tmp_path, cache_key=key)
    assert second.run(wasm, sha, b'{"a": 1}', Limits()).output == {"a": 1}
    assert second.stats == {"compiled": 0, "memory_hits": 0, "disk_hits": 1, "disk_rejected": 0}

    # flip one byte of the serialized native code: the MAC no longer matches
    blob = bytearray(cache_file.read_bytes())
    blob[-100] ^= 0x01
    cache_file.write_bytes(bytes(blob))
    third = WasmSandbox(cache_dir=tmp_path, cache_key=key)
    assert third.run(wasm, sha, b'{"b": 2}', Limits()).output == {"b": 2}
    assert third.stats["disk_rejected"] == 1
    assert third.stats["disk_hits"] == 0
    assert third.stats["compiled"] == 1
    assert cache_file.read_bytes() != bytes(blob)  # rewritten with a good entry

    fourth = WasmSandbox(cache_dir=tmp_path, cache_key=key)
    fourth.compile(wasm, sha)
    assert fourth.stats["disk_hits"] == 1

    # a different key (another installation) does not trust this file
    stranger = WasmSandbox(cache_dir=tmp_path, cache_key=b"z" * 32)
    stranger.compile(wasm, sha)
    assert stranger.stats["disk_rejected"] == 1
    assert stranger.stats["compiled"] == 1


def test_disk_cache_refuses_a_valid_entry_of_another_module(tmp_path: pathlib.Path) -> None:
    key = b"k" * 32
    echo, echo_sha = module("echo")
    exit0, exit0_sha = module("exit0")
    sb = WasmSandbox(cache_dir=tmp_path, cache_key=key)
    sb.compile(echo, echo_sha)
    echo_file = next(tmp_path.glob("*.cwasm"))
    sb.compile(exit0, exit0_sha)
    exit0_file = next(p for p in tmp_path.glob("*.cwasm") if p != echo_file)
    # swap a genuine, correctly MACed entry in under the other module's name
    echo_file.write_bytes(exit0_file.read_bytes())
    fresh = WasmSandbox(cache_dir=tmp_path, cache_key=key)
    r = fresh.run(echo, echo_sha, b'{"c": 3}', Limits())
    assert r.output == {"c": 3}  # really echo, not exit0
    assert fresh.stats["disk_rejected"] == 1


def test_disk_cache_needs_a_key(tmp_path: pathlib.Path) -> None:
    wasm, sha = module("echo")
    sb = WasmSandbox(cache_dir=tmp_path)
    assert sb.run(wasm, sha, b"[]", Limits()).ok
    assert list(tmp_path.iterdir()) == []


# -- concurrency -------------------------------------------------------------------------


def test_concurrent_calls_from_many_threads(sandbox: WasmSandbox) -> None:
    echo, echo_sha = module("echo")
    loop, loop_sha = module("loop")
    errors: list[object] = []
    timeouts: list[str] = []

    def echo_worker(worker: int) -> None:
        for i in range(25):
            payload = {"worker": worker, "i": i}
            r = sandbox.run(echo, echo_sha, json.dumps(payload).encode(), Limits())
            if r.output != payload:
                errors.append((payload, r))

    def loop_worker() -> None:
        r = sandbox.run(loop, loop_sha, b"", Limits(fuel=NO_FUEL_LIMIT, timeout_ms=200))
        timeouts.append(r.failure.kind if r.failure else "ok")

    threads = [threading.Thread(target=echo_worker, args=(w,)) for w in range(8)]
    threads += [threading.Thread(target=loop_worker) for _ in range(2)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(SANITY_S)
    assert time.monotonic() - t0 < SANITY_S
    assert errors == []
    assert timeouts == ["timeout", "timeout"]


# -- shipped tools ------------------------------------------------------------------------


def tool(name: str) -> tuple[bytes, str, dict]:
    manifest = tomllib.loads((TOOLS_DIR / f"{name}.toml").read_text())
    wasm = (TOOLS_DIR / manifest["module"]).read_bytes()
    return wasm, manifest["sha256"], manifest


def run_tool(sb: WasmSandbox, name: str, args: object) -> SandboxResult:
    wasm, sha, manifest = tool(name)
    return sb.run(wasm, sha, json.dumps(args).encode(), Limits(**manifest["limits"]), name=name)


@pytest.mark.parametrize("name", ["wordcount", "upper", "stats"])
def test_shipped_tool_manifest_pins_its_module(name: str) -> None:
    wasm, sha, manifest = tool(name)
    assert manifest["name"] == name
    assert manifest["kind"] == "wasm"
    assert manifest["capabilities"] == []
    assert hashlib.sha256(wasm).hexdigest() == sha
    assert manifest["input"]["type"] == "object"
    assert set(manifest["limits"]) <= set(Limits.__struct_fields__)


def test_shipped_tools_are_built_from_their_sources() -> None:
    from toka.tools import build

    assert build.build_all(check=True) == []


def test_wordcount(sandbox: WasmSandbox) -> None:
    text = "The quick  brown fox\njumps over\tthe lazy dög 🦊\n"
    r = run_tool(sandbox, "wordcount", {"text": text})
    assert r.ok, (r.failure, r.stderr)
    assert r.output == {
        "bytes": len(text.encode()),
        "chars": len(text),
        "lines": 2,
        "words": 10,
    }
    assert run_tool(sandbox, "wordcount", {"text": ""}).output == {
        "bytes": 0,
        "chars": 0,
        "lines": 0,
        "words": 0,
    }


def test_upper(sandbox: WasmSandbox) -> None:
    text = 'hello, "world"\\ é\n\t\x01 ok'
    r = run_tool(sandbox, "upper", {"text": text})
    assert r.ok, (r.failure, r.stderr)
    assert r.output == {"text": 'HELLO, "WORLD"\\ é\n\t\x01 OK'}


def test_stats(sandbox: WasmSandbox) -> None:
    numbers = [-7, -5, 2**63 - 1, 3, 0, 1]  # partial sums stay within int64
    r = run_tool(sandbox, "stats", {"numbers": numbers})
    assert r.ok, (r.failure, r.stderr)
    assert r.output == {"count": 6, "sum": sum(numbers), "min": -7, "max": 2**63 - 1}
    r = run_tool(sandbox, "stats", {"numbers": []})
    assert r.output == {"count": 0, "sum": 0, "min": None, "max": None}


def test_tools_reject_bad_input_with_exit_code_2(sandbox: WasmSandbox) -> None:
    for name, args in [
        ("wordcount", {"text": 5}),
        ("upper", {"txt": "a"}),
        ("stats", {"numbers": [1, 2.5]}),
        ("stats", {"numbers": [2**63 - 1, 1]}),  # sum overflows int64
    ]:
        r = run_tool(sandbox, name, args)
        assert r.failure is not None, (name, args)
        assert r.failure.kind == "exit"
        assert r.failure.exit_code == 2
        assert r.stderr.strip()
