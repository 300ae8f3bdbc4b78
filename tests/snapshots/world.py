"""A reproducible Toka world for the console's tests.

Everything that could vary is pinned: the kernel secret, the operator's and agents'
keys, the home id, the clock and every operation's nonce. So the log, its hashes and
the console's screens come out byte-identical on every run.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from unittest import mock

from toka.core import tools
from toka.core.errors import InvalidOperation, NotCovered
from toka.core.model import events as ev
from toka.core.model import ops
from toka.core.model.keys import KeyPair, agent_id_for
from toka.core.model.state import Budgets
from toka.core.runtime import Runtime
from toka.core.runtime.client import Client
from toka.core.runtime.home import Home, write_private
from toka.tui.app import TokaConsole, make_app

T0 = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC: the home is created
T1 = T0 + 3_600.0  # one hour later: everything else, and "now"
HOME_LABEL = "~/toka-demo"
HOME_ID = "5eed0000c0ffee00"
SECRET = bytes(range(32))


class World:
    """A home, a runtime on it with a fixed clock, and the ids of what was seeded."""

    def __init__(self, root: Path):
        self.home = Home(root)
        self.home.root.mkdir(parents=True, mode=0o700)
        write_private(self.home.secret_path, SECRET)
        self.home.init(operator_key=KeyPair.from_seed(b"operator"), now=T0, home_id=HOME_ID)
        self.runtime = Runtime(self.home, durability="normal", clock=lambda: T1)
        self.operator = Client(self.runtime)
        self._nonce = 0
        self.agents: dict[str, str] = {}

    def close(self) -> None:
        self.runtime.close()

    def app(self, **options) -> TokaConsole:
        """The console on this world: fixed home label, not following (nothing races)."""
        app = make_app(self.runtime, home_label=HOME_LABEL, follow=False, **options)
        app.animation_level = "none"
        return app

    # -- seeding with fixed nonces --------------------------------------------------------

    def submit(self, op: ops.Operation, client: Client | None = None):
        self._nonce += 1
        client = client or self.operator
        return self.runtime.submit(client.sign(op, nonce=f"seed-{self._nonce:04d}"))

    def invoke(self, tool: str, args, version: str | None = None, client: Client | None = None):
        """Run a tool as ``toka tool invoke`` does, on a stopped clock: the run's wall time
        is recorded in its event, and so in every hash after it."""
        self._nonce += 1
        client = client or self.operator
        signed = client.sign(ops.InvokeTool(tool, args, version), nonce=f"seed-{self._nonce:04d}")
        with mock.patch("time.perf_counter", return_value=0.0):
            return tools.invoke(self.runtime, signed)

    def as_agent(self, name: str) -> Client:
        return Client(self.runtime, self.agents[name])

    def register_builtin_tools(self) -> None:
        """What ``toka init`` registers, with fixed nonces (modules stored as init does)."""
        for loaded in tools.builtin_manifests():
            if loaded.wasm is not None:
                assert loaded.sha256 is not None
                tools.store_module(self.home.blobs, loaded.wasm, loaded.sha256)
            self.submit(loaded.to_op())

    def spawn(self, name: str, behaviour: str = "manual") -> str:
        key = KeyPair.from_seed(name.encode())
        agent_id = agent_id_for(key.public_key)
        self.home.keystore.save(agent_id, key)
        self.submit(ops.SpawnAgent(name, key.public_key, behaviour))
        self.agents[name] = agent_id
        return agent_id


def first_run_world(root: Path) -> World:
    """A home as ``toka tui`` creates it: genesis, the root grant, the built-in tools."""
    world = World(root)
    world.register_builtin_tools()
    return world


def seeded_world(root: Path) -> World:
    """Three agents in three states, tasks, observations, delegated grants, a refusal."""
    world = first_run_world(root)
    scout = world.spawn("scout")
    archivist = world.spawn("archivist")
    courier = world.spawn("courier", "echo")
    survey = world.submit(ops.ScheduleTask(scout, "survey the incident logs", {"depth": 2}))
    world.submit(ops.ScheduleTask(scout, "summarize last night's alerts"))
    world.submit(ops.ScheduleTask(archivist, "compact the cold storage index"))
    world.submit(ops.EmitObservation(scout, {"cpu": 0.31, "queue": 4}))
    world.submit(ops.EmitObservation(archivist, "disk usage at 71%"))
    delegation = Budgets(max_ops=500, max_tool_calls=40)
    world.submit(
        ops.GrantCapability(scout, ["cap.grant:*", "tool.invoke:tool/*"], 7200, delegation)
    )
    narrower = Budgets(max_ops=50, max_tool_calls=10)
    world.submit(
        ops.GrantCapability(archivist, ["tool.invoke:tool/wordcount"], 1800, narrower),
        world.as_agent("scout"),
    )
    task = survey.first(ev.TaskScheduled).task
    world.submit(ops.CompleteTask(task, {"findings": 3}), world.as_agent("scout"))
    rogue = ops.SpawnAgent("rogue", KeyPair.from_seed(b"rogue").public_key)
    with contextlib.suppress(NotCovered):  # refused, and recorded as operation.rejected
        world.submit(rogue, world.as_agent("courier"))
    world.submit(ops.PauseAgent(archivist))
    world.submit(ops.TerminateAgent(courier, "no longer needed"))
    return world


# Strings an agent might pick to steer the console: each is markup to Rich and Textual
# (a stray closing tag, a style, an action on click, a link), and the console must show
# every one exactly as written.
EVIL = "evil[/]"
PLAIN = "PLAIN[bold]X[/bold]END"
CLICK = "[@click=app.quit]x[/]"
LINK = "[link=https://x]y[/link]"
HOSTILE = (EVIL, PLAIN, CLICK, LINK)
# Terminal control (clear the screen, set the window title): kept out of names, which the
# kernel refuses with control characters, but descriptions, payloads and output may hold it.
CONTROL = "\x1b[2J\x1b]0;pwned\x07"
HOSTILE_SCHEMA = {
    "type": "object",
    "properties": {
        EVIL: {"type": "string", "description": PLAIN, "default": CLICK},
        LINK: {"type": "string", "enum": [EVIL, CLICK]},
        "flag": {"type": "boolean", "description": CLICK},
        "short": {"type": "string", "maxLength": 4, "default": EVIL},  # refused as it comes
    },
    "required": [EVIL],
}


def hostile_world(root: Path) -> World:
    """Agents, tasks, results, observations, reasons, a tool, its output and an approval,
    every one named or filled by an agent that writes markup and terminal control."""
    world = first_run_world(root)
    evil = world.spawn(EVIL)
    plain = world.spawn(PLAIN, behaviour=PLAIN)
    click = world.spawn(CLICK)
    world.spawn(LINK)
    task = world.submit(ops.ScheduleTask(evil, f"{PLAIN} {CONTROL}", {LINK: CLICK}))
    world.submit(ops.ScheduleTask(plain, f"{EVIL} {LINK}"))
    failed = world.submit(ops.ScheduleTask(click, CLICK))
    world.submit(ops.EmitObservation(evil, f"{CLICK} {CONTROL}"))
    world.submit(
        ops.CompleteTask(task.first(ev.TaskScheduled).task, {EVIL: [PLAIN, LINK]}),
        world.as_agent(EVIL),
    )
    world.submit(
        ops.FailTask(failed.first(ev.TaskScheduled).task, f"{CLICK} {CONTROL}"),
        world.as_agent(CLICK),
    )
    world.submit(
        ops.RegisterTool(
            "echo",
            "2.0.0",
            f"{PLAIN} {CONTROL}",
            "native",
            None,
            [],
            {"max_output_bytes": 65536},
            HOSTILE_SCHEMA,
        )
    )
    world.invoke("echo", {EVIL: f"{CLICK} {CONTROL}", LINK: EVIL}, version="2.0.0")
    with contextlib.suppress(InvalidOperation):  # recorded as operation.rejected, naming PLAIN
        world.invoke("echo", {EVIL: "x", LINK: PLAIN}, version="2.0.0")
    world.submit(
        ops.GrantCapability(plain, [f"observation.emit:agent/{plain}"], 3600, approve=True)
    )
    held = world.submit(ops.EmitObservation(plain, {PLAIN: EVIL}), world.as_agent(PLAIN))
    world.submit(ops.DenyOperation(held.first(ev.OperationPending).approval, f"{LINK} {CONTROL}"))
    world.submit(ops.TerminateAgent(click, f"{EVIL} {CONTROL}"))
    return world
