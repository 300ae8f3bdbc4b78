"""Input schemas and manifests that attack the invoker or the registry.

A schema's regexes run in linear time, its arguments are checked before the write
lock and in bounded work, a schema that cannot be resolved is refused when its tool
is registered, and a manifest's module lives inside the manifest's directory.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import test_tools_cli
from test_tools import write_tool
from toka_cli import run_toka

from toka.core import tools
from toka.core.errors import ExitCode, InvalidOperation
from toka.core.model import ops

js = test_tools_cli.js
toka = test_tools_cli.toka  # the fixture: `toka ARGS` in-process on a fresh home

GREEDY = """
[input]
type = "object"
[input.properties.s]
type = "string"
pattern = "^(a+)+$"
"""
HOSTILE = {"s": "a" * 40 + "!"}  # minutes of backtracking for Python's re


def test_a_backtracking_pattern_is_matched_in_linear_time(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert run_toka("init", home=home).returncode == 0
    manifest = write_tool(tmp_path / "t", "echo", name="greedy", extra=GREEDY)
    assert run_toka("tool", "register", str(manifest), home=home).returncode == 0
    args = json.dumps(HOSTILE)

    done = run_toka("tool", "invoke", "greedy", "--args", args, home=home)
    assert done.returncode == ExitCode.INVALID
    assert "does not match '^(a+)+$' (at $.s)" in done.stderr

    # The same arguments as a signed operation, decided by the kernel.
    signed = run_toka("op", "sign", "tool.invoke", "--tool", "greedy", "--args", args, home=home)
    assert signed.returncode == 0, signed.stderr
    (tmp_path / "op.json").write_text(signed.stdout)
    done = run_toka("op", "submit", str(tmp_path / "op.json"), home=home)
    assert done.returncode == ExitCode.INVALID
    assert "does not match '^(a+)+$'" in done.stderr
    ok = run_toka("tool", "invoke", "greedy", "--args", '{"s": "aaa"}', home=home)
    assert ok.returncode == 0 and json.loads(ok.stdout) == {"s": "aaa"}


def test_checking_arguments_never_holds_the_write_lock(
    tmp_path: Path, runtime, operator, monkeypatch
) -> None:
    """While a hostile invocation's arguments are being checked, another process writes."""
    tools.register(operator, write_tool(tmp_path / "t", "echo", name="greedy", extra=GREEDY))
    import jsonschema.exceptions

    checking, writer_done = threading.Event(), threading.Event()
    real_best_match = jsonschema.exceptions.best_match

    def held_best_match(errors, *args, **kwargs):
        checking.set()
        writer_done.wait(120)
        return real_best_match(errors, *args, **kwargs)

    monkeypatch.setattr(jsonschema.exceptions, "best_match", held_best_match)
    signed = operator.sign(ops.InvokeTool("greedy", HOSTILE, "1.0.0"))
    refused: list[Exception] = []

    def submit() -> None:
        try:
            runtime.submit(signed)
        except Exception as exc:
            refused.append(exc)

    submitter = threading.Thread(target=submit)
    submitter.start()
    assert checking.wait(60)
    try:
        other = run_toka("agent", "spawn", "bystander", home=runtime.home.root, timeout=120)
    finally:
        writer_done.set()
        submitter.join(120)
    assert other.returncode == 0, other.stderr
    assert "database is locked" not in other.stderr
    assert len(refused) == 1 and isinstance(refused[0], InvalidOperation)
    assert "does not match '^(a+)+$'" in refused[0].message
    runtime.catch_up()
    assert [a.name for a in runtime.state.agents.values()] == ["bystander"]


def _exploding_schema(levels: int) -> str:
    """Each level tries the next twice: 2**levels evaluations for a value that fails."""
    lines = ['[input]\n"$ref" = "#/$defs/d0"']
    for i in range(levels):
        lines.append(
            f'[input."$defs".d{i}]\nanyOf = [{{"$ref" = "#/$defs/d{i + 1}"}}, '
            f'{{"$ref" = "#/$defs/d{i + 1}"}}]'
        )
    lines.append(f'[input."$defs".d{levels}]\ntype = "integer"')
    return "\n".join(lines)


def test_an_exploding_schema_costs_the_invoker_at_most_the_tools_time_limit(
    tmp_path: Path, operator
) -> None:
    manifest = write_tool(
        tmp_path / "t",
        "echo",
        name="blowup",
        limits={"timeout_ms": 50},
        extra=_exploding_schema(40),
    )
    tools.register(operator, manifest)
    with pytest.raises(InvalidOperation, match="too costly to check"):
        tools.invoke_as(operator, "blowup", "not a number")
    assert tools.invoke_as(operator, "blowup", 7).output == 7


def test_the_work_bound_decides_the_same_way_on_every_check(
    tmp_path: Path, operator, monkeypatch
) -> None:
    """Without a time limit (a re-decision), the work bound refuses, in the same words."""
    from toka.core.kernel import schemas
    from toka.core.kernel import tools as rules

    monkeypatch.setattr(schemas, "MAX_STEPS", 2000)
    manifest = write_tool(
        tmp_path / "t",
        "echo",
        name="blowup",
        limits={"timeout_ms": 60_000},
        extra=_exploding_schema(20),
    )
    tools.register(operator, manifest)
    tool = operator.runtime.state.latest_tool("blowup")
    words = set()
    for _ in range(2):
        with pytest.raises(InvalidOperation) as refused:
            tools.invoke_as(operator, "blowup", "not a number")
        words.add(refused.value.message)
        with pytest.raises(InvalidOperation) as refused:
            rules.check_args(tool, "not a number")
        words.add(refused.value.message)
    assert words == {
        "arguments of blowup@1.0.0: the arguments are too costly to check: "
        "it takes more than 2000 schema keywords"
    }


UNRESOLVABLE = {
    "a reference to the root": ('[input]\n"$ref" = "#"', "input.$ref: '#' leads back to itself"),
    "a -> b -> a": (
        '[input]\n"$ref" = "#/$defs/a"\n'
        '[input."$defs".a]\n"$ref" = "#/$defs/b"\n'
        '[input."$defs".b]\nallOf = [{"$ref" = "#/$defs/a"}]',
        "input.$defs.a.$ref: '#/$defs/b' leads back to itself",
    ),
    "a dangling reference": (
        '[input.properties.x]\n"$ref" = "#/$defs/nope"',
        "input.properties.x.$ref: '#/$defs/nope' does not resolve",
    ),
    "a remote reference": (
        '[input.properties.x]\n"$ref" = "http://127.0.0.1:9/schema.json"',
        "input.properties.x.$ref: only local references",
    ),
    "a backreference": (
        '[input.properties.x]\npattern = "(a)\\\\1"',
        "input.properties.x.pattern: pattern '(a)\\\\1' cannot be used",
    ),
    "a lookahead": (
        '[input.patternProperties]\n"^(?!x)" = {}',
        "input.patternProperties: pattern '^(?!x)' cannot be used",
    ),
}


@pytest.mark.parametrize("case", UNRESOLVABLE)
def test_an_unresolvable_schema_is_refused_at_register_naming_the_ref(
    toka, tmp_path: Path, case: str
) -> None:
    js(toka("init", "--json"))
    schema, expected = UNRESOLVABLE[case]
    manifest = write_tool(tmp_path / "t", "echo", name="bad", extra=schema)
    code, out, err = toka("tool", "register", str(manifest), "--json")
    assert code == ExitCode.INVALID and out == ""
    assert expected in err
    assert "bad" not in [t["name"] for t in js(toka("tool", "list", "--json"))["tools"]]


def test_a_recursive_schema_that_reaches_into_the_arguments_registers(toka, tmp_path: Path) -> None:
    js(toka("init", "--json"))
    tree = (
        '[input]\ntype = "object"\n[input.properties.children]\ntype = "array"\n'
        '[input.properties.children.items]\n"$ref" = "#"\n'
        '[input.properties.name]\ntype = "string"\npattern = "^\\\\u0041"'
    )
    manifest = write_tool(tmp_path / "t", "echo", name="tree", extra=tree)
    js(toka("tool", "register", str(manifest), "--json"))
    good = {"name": "Ann", "children": [{"name": "Al", "children": []}]}
    assert js(toka("tool", "invoke", "tree", "--args", json.dumps(good), "--json"))["ok"]
    bad = {"children": [{"children": [{"name": "bob"}]}]}
    code, _, err = toka("tool", "invoke", "tree", "--args", json.dumps(bad))
    assert code == ExitCode.INVALID
    assert "'bob' does not match" in err and "$.children[0].children[0].name" in err


def test_a_tool_registered_with_an_endless_schema_before_is_refused_cleanly(
    tmp_path: Path, operator, monkeypatch
) -> None:
    """Old logs may hold such tools: invoking them is refused, never an internal error."""
    from toka.core.kernel import tools as rules

    monkeypatch.setattr(rules, "check_input_schema", lambda schema: None)
    for name, schema in [
        ("loop", '[input]\n"$ref" = "#"'),
        ("dangle", UNRESOLVABLE["a dangling reference"][0]),
    ]:
        tools.register(operator, write_tool(tmp_path / name, "echo", name=name, extra=schema))
    monkeypatch.undo()
    with pytest.raises(InvalidOperation, match="nests more than 100 schema keywords"):
        tools.invoke_as(operator, "loop", {})
    with pytest.raises(InvalidOperation, match="does not resolve"):
        tools.invoke_as(operator, "dangle", {"x": 1})


# -- where a manifest's module may live ------------------------------------------------


def _point_module_at(manifest: Path, module: str) -> None:
    text = manifest.read_text().replace('module = "mod.wasm"', f'module = "{module}"')
    manifest.write_text(text)


@pytest.mark.parametrize("where", ["parent", "absolute", "symlink"])
def test_a_module_outside_the_manifests_directory_is_refused(
    toka, tmp_path: Path, where: str
) -> None:
    js(toka("init", "--json"))
    elsewhere = write_tool(tmp_path / "elsewhere", "echo", name="mod").parent / "mod.wasm"
    manifest = write_tool(tmp_path / "tools" / "sub", "echo", name="mod")
    (manifest.parent / "mod.wasm").unlink()
    module = {
        "parent": "../../elsewhere/mod.wasm",
        "absolute": str(elsewhere),
        "symlink": "link.wasm",
    }[where]
    (manifest.parent / "link.wasm").symlink_to(elsewhere)
    _point_module_at(manifest, module)
    code, out, err = toka("tool", "register", str(manifest), "--json")
    assert code == ExitCode.INVALID and out == ""
    assert f"{manifest}: module: " in err and "manifest's directory" in err
    assert "mod" not in [t["name"] for t in js(toka("tool", "list", "--json"))["tools"]]


def test_a_module_in_a_subdirectory_or_linked_inside_registers(toka, tmp_path: Path) -> None:
    js(toka("init", "--json"))
    manifest = write_tool(tmp_path / "tools", "echo", name="mod")
    (manifest.parent / "lib").mkdir()
    (manifest.parent / "mod.wasm").rename(manifest.parent / "lib" / "mod.wasm")
    (manifest.parent / "link.wasm").symlink_to(manifest.parent / "lib" / "mod.wasm")
    _point_module_at(manifest, "lib/mod.wasm")
    assert js(toka("tool", "register", str(manifest), "--json"))["version"] == "1.0.0"
    manifest.write_text(
        manifest.read_text()
        .replace('module = "lib/mod.wasm"', 'module = "link.wasm"')
        .replace('version = "1.0.0"', 'version = "1.0.1"')
    )
    assert js(toka("tool", "register", str(manifest), "--json"))["version"] == "1.0.1"
