"""Values that enter the log (payloads, results, observations, tool arguments and
outputs) must stay encodable for ever: a value the state cannot hold is refused where
it enters, and no accepted operation can make a later commit, checkpoint, snapshot or
replay fail."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from log_support import make_home, scalar
from toka_cli import run_toka

from toka.core.errors import TokaError
from toka.core.model import events as ev
from toka.core.model import ops
from toka.core.runtime import Runtime
from toka.core.runtime.client import Client
from toka.core.runtime.home import Home
from toka.core.tools import register_builtins

WASM_DIR = Path(__file__).parent / "wasm"
HUGE = 123456789012345678901234567890


def cli_home(home: Path) -> Path:
    """A home made by ``toka init`` (the built-in tools registered), checkpointing often."""
    make_home(home, checkpoint_interval=2)
    toka_json(home, "init")
    return home


def toka_json(home: Path, *args: str) -> dict:
    result = run_toka(*args, "--json", home=home)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_an_integer_over_64_bits_is_refused_wherever_values_enter(tmp_path: Path):
    home = cli_home(tmp_path / "home")
    agent = toka_json(home, "agent", "spawn", "w")["id"]
    task = toka_json(home, "task", "schedule", agent, "x")["task"]
    big = str(HUGE)
    for args in (
        ("--as", agent, "task", "complete", task, "--result", big),
        ("task", "schedule", agent, "y", "--payload", f'{{"n": {big}}}'),
        ("obs", "emit", agent, f"[{big}]"),
        ("obs", "emit", agent, "-9223372036854775809"),
        ("tool", "invoke", "echo", "--args", f'{{"n": {big}}}'),
    ):
        result = run_toka(*args, home=home)
        assert result.returncode == 4, (args, result.stderr)
        assert "outside the 64 bits a value may use" in result.stderr
    # The largest and smallest integers that fit are values like any other.
    toka_json(home, "obs", "emit", agent, "[18446744073709551615, -9223372036854775808]")
    for _ in range(3):  # through checkpoints, which hash the state
        toka_json(home, "obs", "emit", agent, "1")
    assert toka_json(home, "state")["seq"] > 0
    assert toka_json(home, "replay", "--check")["ok"] is True
    assert toka_json(home, "verify")["ok"] is True


def test_a_tool_output_holding_a_huge_integer_is_a_bad_output_failure(tmp_path: Path):
    import wasmtime

    home = cli_home(tmp_path / "home")
    tool = tmp_path / "tool"
    tool.mkdir()
    (tool / "big.wasm").write_bytes(wasmtime.wat2wasm((WASM_DIR / "bigint.wat").read_text()))
    (tool / "big.toml").write_text(
        'name = "big"\nversion = "1.0.0"\ndescription = "d"\nkind = "wasm"\nmodule = "big.wasm"\n'
    )
    toka_json(home, "tool", "register", str(tool / "big.toml"))
    result = run_toka("tool", "invoke", "big", "--args", "{}", "--json", home=home)
    assert result.returncode == 1, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["error"]["kind"] == "bad_output"
    assert "outside the 64 bits" in outcome["error"]["message"]
    agent = toka_json(home, "agent", "spawn", "w")["id"]
    for n in range(3):  # commits and a checkpoint after the failure
        toka_json(home, "obs", "emit", agent, str(n))
    assert toka_json(home, "replay", "--check")["ok"] is True
    assert toka_json(home, "verify")["ok"] is True


def nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


TEXT = st.text(st.characters(exclude_categories=()), max_size=8)  # surrogates too
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()  # unbounded: huge ones too
    | st.sampled_from([2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 10**40])
    | st.floats()  # nan and the infinities too
    | TEXT
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
) | st.integers(60, 70).map(nested)
WHERE = st.sampled_from(["payload", "result", "observation", "args"])


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(entries=st.lists(st.tuples(WHERE, VALUES), min_size=1, max_size=8))
@example(entries=[("payload", [10**40]), ("result", {"n": 2**64}), ("args", -(2**63) - 1)])
@example(entries=[("payload", float("nan")), ("result", "\ud800"), ("observation", nested(70))])
def test_no_accepted_value_can_break_a_later_commit_checkpoint_snapshot_or_replay(
    tmp_path_factory, entries
):
    home = make_home(Path(tempfile.mkdtemp(dir=tmp_path_factory.getbasetemp())) / "home", 3)
    with Runtime(home) as rt:
        operator = Client(rt)
        register_builtins(operator)
        agent, _ = operator.spawn_agent("worker", "manual")
        as_agent = Client(rt, agent)
        for where, value in entries:
            try:
                if where == "payload":
                    operator.schedule(agent, "t", value)
                elif where == "result":
                    task = operator.schedule(agent, "t").first(ev.TaskScheduled).task
                    as_agent.complete(task, value)
                elif where == "observation":
                    as_agent.observe(agent, value)
                else:
                    operator.submit(ops.InvokeTool("echo", value))
            except TokaError:
                pass  # refused where it entered: fine, as long as what follows works
            operator.observe(agent, "still writable")  # a later commit (and checkpoint)
        live = rt.state.state_hash()
        assert rt.replay().state_hash() == live
        assert rt.replay_check()["ok"] is True
        assert rt.verify()["ok"] is True
    with Runtime(home) as again:  # from the snapshot
        assert again.state.state_hash() == live


def test_an_oversize_operation_is_refused_on_record_and_the_log_still_verifies(tmp_path: Path):
    home = cli_home(tmp_path / "home")
    (tmp_path / "big.json").write_text(json.dumps({"text": "a" * 12_000_000}))
    result = run_toka("tool", "invoke", "echo", "--args", f"@{tmp_path / 'big.json'}", home=home)
    assert result.returncode == 4 and "over the 262144 byte limit" in result.stderr
    [rejected] = toka_json(home, "events", "list", "--kind", "operation.rejected")["events"]
    where = "FROM operations WHERE digest = ?", (rejected["op_digest"],)
    db = Home(home)
    assert scalar(db, f"SELECT length(signed) {where[0]}", where[1]) == 0
    assert "operation is kept by its digest only" in scalar(
        db, f"SELECT error {where[0]}", where[1]
    )
    assert toka_json(home, "verify")["ok"] is True
    assert toka_json(home, "verify", "--signatures")["ok"] is True
