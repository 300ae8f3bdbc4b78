"""The llm behaviour against a fake OpenAI-compatible endpoint on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import msgspec
import pytest
from toka_cli import run_toka

from toka.core import tools
from toka.core.agents.runner import Runner
from toka.core.agents.steps import TaskRun
from toka.core.model import events as ev
from toka.core.runtime import Runtime
from toka.core.runtime.client import Client


class FakeModel:
    """Answers each POST /v1/chat/completions with the next scripted reply."""

    def __init__(self) -> None:
        self.replies: list = []
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append({"path": self.path, **body})
                fake.headers.append(dict(self.headers))
                reply = fake.replies.pop(0) if fake.replies else ("final", "out of script")
                kind, value = reply
                if kind == "sleep":
                    time.sleep(value)
                    kind, value = "final", "too late"
                if kind == "status":
                    self.send_response(value)
                    self.end_headers()
                    self.wfile.write(b"model overloaded")
                    return
                if kind == "raw":
                    data = value
                else:
                    message = (
                        {"role": "assistant", "content": value}
                        if kind == "final"
                        else {"role": "assistant", "content": None, "tool_calls": value}
                    )
                    data = json.dumps({"choices": [{"message": message}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def call(name: str, args: dict, call_id: str = "c1") -> dict:
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(args)},
    }


@pytest.fixture
def model(monkeypatch: pytest.MonkeyPatch):
    fake = FakeModel()
    monkeypatch.setenv("TOKA_LLM_BASE_URL", fake.url)
    monkeypatch.setenv("TOKA_LLM_MODEL", "fake-1")
    yield fake
    fake.close()


@pytest.fixture
def rt(runtime: Runtime) -> Runtime:
    tools.register_builtins(Client(runtime))
    return runtime


def llm_task(rt: Runtime, *caps: str, description: str = "say hi") -> tuple[str, str]:
    agent, _ = Client(rt).spawn_agent("thinker", "llm")
    if caps:
        Client(rt).grant(agent, list(caps), 3600)
    task = Client(rt).schedule(agent, description).first(ev.TaskScheduled).task
    return agent, task


def recorded_replies(rt: Runtime, agent: str) -> list[dict]:
    return [
        msgspec.json.decode(r.payload)["data"]["llm"]
        for r in rt.log.query(kinds=["observation.emitted"], principal=agent)
    ]


def test_tool_calls_become_tool_invocations_and_replies_are_logged(rt: Runtime, model, monkeypatch):
    monkeypatch.setenv("TOKA_LLM_API_KEY", "sk-test")
    model.replies = [("tools", [call("echo", {"text": "hi"})]), ("final", "the echo said hi")]
    agent, task = llm_task(rt, "tool.invoke:tool/echo")
    Runner(rt).run(until_idle=True)

    t = rt.state.tasks[task]
    assert (t.status, t.result) == ("completed", "the echo said hi")
    first, second = model.requests
    assert first["path"] == "/v1/chat/completions" and first["model"] == "fake-1"
    assert [f["function"]["name"] for f in first["tools"]] == ["echo"]  # only what it may call
    assert first["messages"][1] == {"role": "user", "content": "say hi"}
    assert second["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "c1",
        "content": '{"text": "hi"}',
    }
    assert model.headers[0]["Authorization"] == "Bearer sk-test"
    replies = recorded_replies(rt, agent)
    assert [r["turn"] for r in replies] == [1, 2]
    assert replies[0]["message"]["tool_calls"][0]["function"]["name"] == "echo"
    assert [r.principal for r in rt.log.query(kinds=["tool.succeeded"])] == [agent]


class Crash(BaseException):
    pass


def test_a_replayed_task_reads_the_models_replies_from_the_log(rt: Runtime, model, monkeypatch):
    model.replies = [("tools", [call("echo", {"n": 1})]), ("final", "done")]
    agent, task = llm_task(rt, "tool.invoke:tool/echo")
    real_invoke = TaskRun.invoke

    def dies_once(self, *args, **kwargs):
        monkeypatch.setattr(TaskRun, "invoke", real_invoke)
        raise Crash

    monkeypatch.setattr(TaskRun, "invoke", dies_once)
    with pytest.raises(Crash):
        Runner(rt, runner_id="r1").step()
    assert len(model.requests) == 1
    Runner(rt, runner_id="r1").run(until_idle=True)
    assert rt.state.tasks[task].result == "done"
    assert len(model.requests) == 2  # turn 1 came from the log, not from the model
    assert [r["turn"] for r in recorded_replies(rt, agent)] == [1, 2]
    assert rt.replay_check()["ok"] is True


def test_a_refused_tool_call_is_told_to_the_model(rt: Runtime, model):
    model.replies = [("tools", [call("upper", {"text": "x"})]), ("final", "I may not")]
    _, task = llm_task(rt, "tool.invoke:tool/echo")
    Runner(rt).run(until_idle=True)
    told = model.requests[1]["messages"][-1]["content"]
    assert told.startswith("denied: ") and "tool.invoke:tool/upper" in told
    assert rt.state.tasks[task].result == "I may not"


def test_the_model_gets_a_bounded_number_of_turns(rt: Runtime, model, monkeypatch):
    monkeypatch.setenv("TOKA_LLM_MAX_TURNS", "2")
    model.replies = [("tools", [call("echo", {})])] * 3
    _, task = llm_task(rt, "tool.invoke:tool/echo")
    Runner(rt).run(until_idle=True)
    assert rt.state.tasks[task].error == "llm: no final answer after 2 turns"
    assert len(model.requests) == 2


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (("status", 500), "llm: turn 1: the endpoint answered HTTP 500: model overloaded"),
        (("raw", b"<html>"), "llm: turn 1: the reply is not a chat completion"),
        (("sleep", 1.0), "llm: turn 1: no reply within 0.2 s"),
    ],
)
def test_endpoint_failures_fail_the_task_saying_why(rt: Runtime, model, monkeypatch, reply, error):
    monkeypatch.setenv("TOKA_LLM_TIMEOUT", "0.2")
    model.replies = [reply]
    agent, task = llm_task(rt)
    Runner(rt).run(until_idle=True)
    assert rt.state.tasks[task].status == "failed"
    assert rt.state.tasks[task].error.startswith(error)
    assert recorded_replies(rt, agent) == []


def test_an_unreachable_endpoint_fails_the_task(rt: Runtime, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("TOKA_LLM_BASE_URL", f"http://127.0.0.1:{port}/v1")
    monkeypatch.setenv("TOKA_LLM_MODEL", "m")
    _, task = llm_task(rt)
    Runner(rt).run(until_idle=True)
    assert rt.state.tasks[task].error.startswith(
        f"llm: turn 1: cannot reach http://127.0.0.1:{port}"
    )


def test_spawning_an_llm_agent_without_an_endpoint_is_refused(tmp_path):
    home = tmp_path / "home"
    assert run_toka("init", home=home).returncode == 0
    refused = run_toka("agent", "spawn", "x", "--behaviour", "llm", home=home)
    assert refused.returncode == 4
    assert "TOKA_LLM_BASE_URL" in refused.stderr and "TOKA_LLM_MODEL" in refused.stderr
    assert json.loads(run_toka("agent", "list", "--json", home=home).stdout)["agents"] == []
    env = {"TOKA_LLM_BASE_URL": "http://127.0.0.1:9/v1", "TOKA_LLM_MODEL": "m"}
    assert run_toka("agent", "spawn", "x", "--behaviour", "llm", home=home, env=env).returncode == 0


def test_the_model_is_offered_file_tools_with_the_places_it_may_reach_and_uses_them(
    rt: Runtime, model, tmp_path
):
    from toka.core.model import ops

    (tmp_path / "notes.md").write_text("the vault is empty")
    Client(rt).submit(ops.AddMount("ws", str(tmp_path), "ro"))
    model.replies = [
        ("tools", [call("fs-read", {"mount": "ws", "path": "notes.md"})]),
        ("final", "done"),
    ]
    agent, task = llm_task(rt, "tool.invoke:tool/fs-*", "fs.read:mount/ws/**")
    Runner(rt).run(until_idle=True)

    assert rt.state.tasks[task].status == "completed"
    first, second = model.requests
    offered = {f["function"]["name"]: f["function"]["description"] for f in first["tools"]}
    # fs-list and fs-write are covered by tool.invoke:tool/fs-* but reach nowhere.
    assert list(offered) == ["fs-read"]
    assert offered["fs-read"].endswith("(you may reach: fs.read:mount/ws/**)")
    told = json.loads(second["messages"][-1]["content"])
    assert told["content"] == "the vault is empty" and told["path"] == "notes.md"
    (started,) = rt.log.query(kinds=["tool.started"])
    assert started.principal == agent


def test_an_imported_mcp_tool_is_offered_under_a_function_name_and_called_by_it(
    rt: Runtime, model, monkeypatch: pytest.MonkeyPatch, tmp_path
):
    import sys

    from mcp_support import SERVER

    from toka.core.model import ops
    from toka.core.tools.mcp.importing import import_tools

    server = [sys.executable, str(SERVER)]
    Client(rt).submit(ops.RegisterMcpServer("notes", "stdio", command=server))
    import_tools(Client(rt), "notes", ["wordcount"], side_effect="read_only")
    model.replies = [
        ("tools", [call("notes__wordcount", {"text": "one two"})]),
        ("final", "two words"),
    ]
    agent, task = llm_task(rt, "tool.invoke:tool/notes.*")
    Runner(rt).run(until_idle=True)

    assert rt.state.tasks[task].status == "completed"
    first, second = model.requests
    # Chat APIs take [A-Za-z0-9_-] in a function name: the dot is spelled "__".
    assert [f["function"]["name"] for f in first["tools"]] == ["notes__wordcount"]
    told = json.loads(second["messages"][-1]["content"])
    assert told["structured_content"] == {"words": 2}
    (started,) = rt.log.query(kinds=["tool.started"])
    assert (started.principal, started.data().tool) == (agent, "notes.wordcount")
