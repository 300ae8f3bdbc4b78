"""``toka tool ...`` and ``toka bench tool``: the JSON contract and the exit codes."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import wasmtime

from toka.cli.main import main
from toka.core.errors import ExitCode

WASM_DIR = Path(__file__).parent / "wasm"
TEXT_SCHEMA = """
[input]
type = "object"
required = ["text"]
additionalProperties = false

[input.properties.text]
type = "string"
"""


@pytest.fixture
def toka(tmp_path, capsys, monkeypatch):
    """Run ``toka ARGS`` in-process on a fresh home; returns (exit code, stdout, stderr)."""
    home = tmp_path / "home"
    monkeypatch.setenv("TOKA_HOME", str(home))

    def run(*args: str):
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    run.home = home
    return run


def js(result) -> dict:
    code, out, err = result
    assert code == 0, err
    return json.loads(out)


def write_tool(directory: Path, wat: str, *, name: str | None = None, extra: str = "") -> Path:
    name = name or wat
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.wasm").write_bytes(
        wasmtime.wat2wasm((WASM_DIR / f"{wat}.wat").read_text())
    )
    manifest = directory / f"{name}.toml"
    manifest.write_text(
        f'name = "{name}"\nversion = "1.0.0"\ndescription = "from {wat}.wat"\n'
        f'kind = "wasm"\nmodule = "{name}.wasm"\n{extra}\n'
    )
    return manifest


def tool_events(toka) -> list[dict]:
    events = js(toka("events", "list", "--json"))["events"]
    return [e for e in events if e["kind"] in ("tool.succeeded", "tool.failed")]


def test_init_registers_the_shipped_tools_and_each_one_works(toka) -> None:
    init = js(toka("init", "--json"))
    assert init["tools_registered"] == [
        "echo@1.0.0",
        "fs-list@1.0.0",
        "fs-read@1.0.0",
        "fs-write@1.0.0",
        "http-fetch@1.0.0",
        "stats@1.0.0",
        "upper@1.0.0",
        "wordcount@1.0.0",
    ]
    listed = js(toka("tool", "list", "--json"))["tools"]
    assert [(t["name"], t["kind"]) for t in listed] == [
        ("echo", "native"),
        ("fs-list", "native"),
        ("fs-read", "native"),
        ("fs-write", "native"),
        ("http-fetch", "native"),
        ("stats", "wasm"),
        ("upper", "wasm"),
        ("wordcount", "wasm"),
    ]
    samples = {
        "echo": ({"message": "hi"}, {"message": "hi"}),
        "wordcount": (
            {"text": "héllo wide\nworld"},
            {"bytes": 17, "chars": 16, "lines": 1, "words": 3},
        ),
        "upper": ({"text": "Toka, tools!"}, {"text": "TOKA, TOOLS!"}),
        "stats": ({"numbers": [4, -2, 9]}, {"count": 3, "sum": 11, "min": -2, "max": 9}),
    }
    for name, (args, expected) in samples.items():
        result = js(toka("tool", "invoke", name, "--args", json.dumps(args), "--json"))
        assert result["ok"] is True and result["error"] is None
        assert result["output"] == expected, name
    again = js(toka("init", "--json"))
    assert again["created"] is False and again["tools_registered"] == []
    assert again["head_seq"] == init["head_seq"] + len(samples)


def test_invoke_prints_the_outcome_and_exits_by_it(toka, tmp_path: Path) -> None:
    js(toka("init", "--json"))
    js(toka("tool", "register", str(write_tool(tmp_path / "t", "exit7")), "--json"))
    ok = js(toka("tool", "invoke", "echo", "--args", '{"a": 1}', "--json"))
    assert {k: ok[k] for k in ("ok", "output", "error")} == {
        "ok": True,
        "output": {"a": 1},
        "error": None,
    }
    assert isinstance(ok["seq"], int)

    code, out, _ = toka("tool", "invoke", "exit7", "--json")
    assert code == ExitCode.FAILED
    failed = json.loads(out)
    assert failed["ok"] is False and failed["output"] is None
    assert failed["error"]["kind"] == "exit" and failed["error"]["exit_code"] == 7
    assert failed["seq"] == ok["seq"] + 1

    code, out, err = toka("tool", "invoke", "exit7")
    assert code == ExitCode.FAILED and out == ""
    assert "failed (exit): module exited with status 7" in err
    assert [e["kind"] for e in tool_events(toka)] == [
        "tool.succeeded",
        "tool.failed",
        "tool.failed",
    ]
    assert js(toka("verify", "--json"))["ok"] is True


def test_schema_invalid_arguments_exit_4_and_nothing_runs(toka) -> None:
    js(toka("init", "--json"))
    for bad in ('{"text": 5}', '{"txt": "a"}', "[1, 2]"):
        code, out, err = toka("tool", "invoke", "wordcount", "--args", bad, "--json")
        assert code == ExitCode.INVALID, err
        assert out == ""
        assert "arguments do not match the input schema of wordcount@1.0.0" in err
    code, _, err = toka("tool", "invoke", "wordcount", "--args", "{not json")
    assert code == ExitCode.INVALID and "--args is not valid JSON" in err
    assert tool_events(toka) == []
    operator_grant = js(toka("grant", "list", "--json"))["grants"][0]
    assert operator_grant["usage"]["tool_calls"] == 0


def test_agent_without_the_capability_is_refused_with_exit_3_and_nothing_runs(toka) -> None:
    js(toka("init", "--json"))
    agent = js(toka("agent", "spawn", "scout", "--json"))["id"]
    code, out, err = toka("--as", agent, "tool", "invoke", "wordcount", "--args", '{"text": "x"}')
    assert code == ExitCode.DENIED
    assert out == "" and "does not cover tool.invoke:tool/wordcount" in err
    assert tool_events(toka) == []
    rejected = js(toka("events", "list", "--kind", "operation.rejected", "--json"))["events"]
    assert rejected[-1]["payload"]["op"] == "tool.invoke"
    assert rejected[-1]["payload"]["code"] == "not_covered"

    js(toka("grant", "issue", agent, "tool.invoke:tool/wordcount", "--json"))
    result = js(
        toka("--as", agent, "tool", "invoke", "wordcount", "--args", '{"text": "x y"}', "--json")
    )
    assert result["output"]["words"] == 2
    assert [e["principal"] for e in tool_events(toka)] == [agent]
    assert js(toka("verify", "--json"))["ok"] is True


def test_args_from_a_file_and_from_stdin(toka, tmp_path: Path, monkeypatch) -> None:
    js(toka("init", "--json"))
    args_file = tmp_path / "args.json"
    args_file.write_text('{"text": "from a file"}')
    assert js(toka("tool", "invoke", "upper", "--args", f"@{args_file}", "--json"))["output"] == {
        "text": "FROM A FILE"
    }
    monkeypatch.setattr(sys, "stdin", io.StringIO('{"text": "piped"}'))
    assert js(toka("tool", "invoke", "upper", "--args", "-", "--json"))["output"] == {
        "text": "PIPED"
    }


def test_register_show_and_versions(toka, tmp_path: Path) -> None:
    js(toka("init", "--json"))
    manifest = write_tool(tmp_path / "t", "echo", name="shout", extra=TEXT_SCHEMA)
    reg = js(toka("tool", "register", str(manifest), "--json"))
    assert (reg["name"], reg["version"], reg["kind"]) == ("shout", "1.0.0", "wasm")
    assert len(reg["module_sha256"]) == 64

    code, _, err = toka("tool", "register", str(manifest))
    assert code == ExitCode.INVALID and "shout@1.0.0 is already registered" in err

    manifest.write_text(manifest.read_text().replace('"1.0.0"', '"1.1.0"'))
    js(toka("tool", "register", str(manifest), "--json"))
    shown = js(toka("tool", "show", "shout", "--json"))
    assert shown["latest"] == "1.1.0"
    assert [v["version"] for v in shown["versions"]] == ["1.0.0", "1.1.0"]
    assert shown["versions"][0]["input_schema"]["required"] == ["text"]
    assert shown["versions"][0]["limits"]["memory_mb"] == 16
    code, out, _ = toka("tool", "show", "shout")
    assert code == 0 and "shout@1.1.0 (latest)  [wasm]" in out
    result = js(
        toka("tool", "invoke", "shout", "--version", "1.0.0", "--args", '{"text": "a"}', "--json")
    )
    assert result["version"] == "1.0.0"
    code, _, err = toka("tool", "show", "nothing")
    assert code == ExitCode.INVALID and "unknown tool 'nothing'" in err


def test_sha256_pin_mismatch_is_refused_by_the_cli(toka, tmp_path: Path) -> None:
    js(toka("init", "--json"))
    manifest = write_tool(tmp_path / "t", "echo", name="pinned", extra=f'sha256 = "{"ab" * 32}"')
    code, out, err = toka("tool", "register", str(manifest), "--json")
    assert code == ExitCode.INVALID and out == ""
    assert "sha256: pin mismatch" in err
    assert "pinned" not in [t["name"] for t in js(toka("tool", "list", "--json"))["tools"]]


def _peak_rss_mib(home: Path, *args: str) -> tuple[int, int]:
    """Run ``toka ARGS`` in a child process; its exit code and peak RSS (MiB)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKA_")}
    env["TOKA_HOME"] = str(home)
    child = subprocess.Popen(
        [sys.executable, "-m", "toka", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    return child.returncode, usage.ru_maxrss // 1024


def test_memory_grower_hits_the_cap_while_the_host_process_stays_small(
    toka, tmp_path: Path
) -> None:
    js(toka("init", "--json"))
    grower = write_tool(tmp_path / "t", "memgrow", extra="[limits]\nmemory_mb = 16")
    js(toka("tool", "register", str(grower), "--json"))
    base_code, base_rss = _peak_rss_mib(toka.home, "tool", "invoke", "echo", "--json")
    code, rss = _peak_rss_mib(toka.home, "tool", "invoke", "memgrow", "--json")
    assert (base_code, code) == (0, ExitCode.FAILED)
    # Uncapped, the module would touch up to 4 GiB; capped, the host grows by ~16 MiB.
    assert rss < base_rss + 64, (base_rss, rss)
    failed = tool_events(toka)[-1]["payload"]
    assert failed["error_kind"] == "memory" and "16 MiB" in failed["message"]


def test_bench_tool_reports_sandbox_and_invocation_costs(toka) -> None:
    result = js(toka("bench", "tool", "--calls", "20", "--warmup", "2", "--json"))
    assert result["calls"] == 20 and result["invocation"]["calls"] == 20
    for section in (result, result["invocation"]):
        assert 0 < section["p50_ms"] <= section["p99_ms"]
        assert section["calls_per_s"] > 0
    assert not toka.home.exists()  # a scratch home; the user's home is untouched


def test_gc_lists_what_nothing_needs_and_removes_it_only_when_asked(toka, tmp_path: Path):
    js(toka("init", "--json"))
    blobs, cache = toka.home / "blobs", toka.home / "cache"

    def files() -> set[str]:
        return {p.name for p in blobs.iterdir()} | {p.name for p in cache.iterdir()}

    js(toka("tool", "invoke", "upper", "--args", '{"text": "a"}', "--json"))  # compiles
    registered = files()
    # A registration waiting for approval keeps its module (and its compiled module).
    agent = js(toka("agent", "spawn", "registrar", "--json"))["id"]
    js(toka("grant", "issue", agent, "tool.register:tool/held", "--approve", "--json"))
    manifest = write_tool(tmp_path / "t", "echo", name="held")
    held = js(toka("--as", agent, "tool", "register", str(manifest), "--json"))["pending"]
    needed = files()
    [held_blob] = [name for name in needed - registered if name.endswith(".wasm")]
    orphan = blobs / f"{'ab' * 32}.wasm"
    orphan.write_bytes(b"\0asm\1\0\0\0")
    partial = blobs / ".tmp-interrupted.wasm"
    partial.write_bytes(b"\0asm")
    junk = cache / f"{'cd' * 32}.cwasm"
    junk.write_bytes(b"not a compiled module")
    garbage = {(orphan.name, "module"), (partial.name, "partial"), (junk.name, "compiled")}

    dry = js(toka("gc", "--json"))
    assert {(Path(g["path"]).name, g["kind"]) for g in dry["garbage"]} == garbage
    assert dry["deleted"] is False and dry["bytes"] == sum(g["bytes"] for g in dry["garbage"])
    assert orphan.exists() and partial.exists() and junk.exists()
    code, out, _ = toka("gc")
    assert code == 0 and "a dry run, `toka gc --delete` removes them" in out

    assert js(toka("gc", "--delete", "--json"))["deleted"] is True
    assert files() == needed
    assert js(toka("tool", "invoke", "upper", "--args", '{"text": "b"}', "--json"))["ok"]

    js(toka("approvals", "deny", held, "--json"))  # nothing names the held module now
    again = js(toka("gc", "--delete", "--json"))["garbage"]
    assert {(Path(g["path"]).name, g["kind"]) for g in again} == {
        (held_blob, "module"),
        *((name, "compiled") for name in needed - registered - {held_blob}),
    }
    assert files() == registered
    assert toka("gc")[1] == "nothing to collect\n"
