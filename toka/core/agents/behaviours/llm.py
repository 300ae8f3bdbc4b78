"""``llm``: an agent driven by a chat model behind an OpenAI-compatible endpoint.

Configuration (environment of the runner):

- ``TOKA_LLM_BASE_URL``: the API base, e.g. ``http://127.0.0.1:8080/v1``; requests go
  to ``<base>/chat/completions``;
- ``TOKA_LLM_MODEL``: the model name;
- ``TOKA_LLM_API_KEY``: sent as ``Authorization: Bearer ...`` if set;
- ``TOKA_LLM_TIMEOUT`` (seconds, default 60) and ``TOKA_LLM_MAX_TURNS`` (default 8).

Each turn sends the conversation and the tools the agent may invoke (the registered
tools its grants cover, described by their input schemas, in the OpenAI ``tools``
format). The model's reply is recorded in the log as an observation by the agent
(``{"llm": {"turn", "model", "message"}}``) before anything acts on it, so a replay
reads the reply back and never calls the model. Each ``tool_calls`` entry becomes a
``tool.invoke`` by the agent; its output (or the refusal, or the tool's failure) goes
back to the model as the tool message. A reply without tool calls completes the task
with its text. The task fails, saying why, when the endpoint errs or times out, or
when the model has not answered within the turn limit.
"""

from __future__ import annotations

import json
import os
from typing import Any

from toka.core.agents.steps import TaskRun
from toka.core.errors import Denied, InvalidInput, TokaError
from toka.core.model import caps as capmod

DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MAX_TURNS = 8
MAX_TOOL_CALLS_PER_TURN = 16
MAX_REPLY_BYTES = 1024 * 1024
MAX_TOOL_RESULT_CHARS = 16_000
SYSTEM_PROMPT = (
    "You are {name}, an agent (id {id}) in the Toka runtime. Do the task you are given. "
    "Use the tools when they help; every call is checked against your capabilities and "
    "recorded. When you are done, reply with the final answer as plain text and no tool calls."
)
_NOT_CONFIGURED = (
    "the llm behaviour needs an OpenAI-compatible chat completions endpoint: set "
    "TOKA_LLM_BASE_URL (e.g. http://127.0.0.1:8080/v1) and TOKA_LLM_MODEL "
    "(and TOKA_LLM_API_KEY if the endpoint needs a key)"
)


class LlmError(Exception):
    """The model endpoint could not give a usable reply."""


class LlmConfig:
    def __init__(
        self, base_url: str, model: str, api_key: str | None, timeout_s: float, turns: int
    ):
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key
        self.timeout_s = timeout_s
        self.max_turns = turns

    @classmethod
    def from_env(cls) -> LlmConfig:
        base = os.environ.get("TOKA_LLM_BASE_URL", "").strip()
        model = os.environ.get("TOKA_LLM_MODEL", "").strip()
        if not base or not model:
            raise InvalidInput(_NOT_CONFIGURED)
        if not base.startswith(("http://", "https://")):
            raise InvalidInput(f"TOKA_LLM_BASE_URL must be an http(s) URL, not {base!r}")
        return cls(
            base,
            model,
            os.environ.get("TOKA_LLM_API_KEY") or None,
            _number("TOKA_LLM_TIMEOUT", DEFAULT_TIMEOUT_S, float, 0.1, 3600),
            _number("TOKA_LLM_MAX_TURNS", DEFAULT_MAX_TURNS, int, 1, 100),
        )


def _number(var: str, default: Any, kind: type, low: float, high: float) -> Any:
    text = os.environ.get(var, "").strip()
    if not text:
        return default
    try:
        value = kind(text)
    except ValueError:
        raise InvalidInput(f"{var} must be a number, not {text!r}") from None
    if not low <= value <= high:
        raise InvalidInput(f"{var} must be between {low} and {high}")
    return value


def chat(config: LlmConfig, messages: list[dict], tools: list[dict]) -> dict[str, Any]:
    """One chat completion; returns the assistant message (role, content, tool_calls)."""
    import urllib.error
    import urllib.request

    body: dict[str, Any] = {"model": config.model, "messages": messages, "temperature": 0}
    if tools:
        body["tools"] = tools
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if config.api_key:
        headers["Authorization"] = f"Bearer {config.api_key}"
    request = urllib.request.Request(
        f"{config.base_url}/chat/completions",
        data=json.dumps(body).encode(),
        headers=headers,
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=config.timeout_s) as response:
            raw = response.read(MAX_REPLY_BYTES + 1)
    except urllib.error.HTTPError as exc:
        detail = exc.read(300).decode(errors="replace").strip()
        raise LlmError(f"the endpoint answered HTTP {exc.code}: {detail[:200]}") from None
    except TimeoutError:
        raise LlmError(f"no reply within {config.timeout_s:g} s") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, TimeoutError):
            raise LlmError(f"no reply within {config.timeout_s:g} s") from None
        raise LlmError(f"cannot reach {config.base_url}: {reason}") from None
    if len(raw) > MAX_REPLY_BYTES:
        raise LlmError(f"the reply is over {MAX_REPLY_BYTES} bytes")
    try:
        reply = json.loads(raw)
        message = reply["choices"][0]["message"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise LlmError(f"the reply is not a chat completion: {raw[:200]!r}") from None
    return _clean_message(message)


def _clean_message(message: Any) -> dict[str, Any]:
    """Keep what the conversation needs, and check its shape."""
    if not isinstance(message, dict):
        raise LlmError("the reply's message is not an object")
    content = message.get("content")
    if content is not None and not isinstance(content, str):
        raise LlmError("the reply's content is not text")
    calls = []
    for call in message.get("tool_calls") or []:
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise LlmError(f"malformed tool call in the reply: {str(call)[:200]}")
        arguments = fn.get("arguments")
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments if arguments is not None else {})
        calls.append(
            {
                "id": str(call.get("id") or f"call-{len(calls)}"),
                "type": "function",
                "function": {"name": fn["name"], "arguments": arguments},
            }
        )
    out: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        out["tool_calls"] = calls
    return out


# The capability action behind each built-in that reaches places (files, URLs).
PLACE_ACTIONS = {
    "fs-read": "fs.read",
    "fs-list": "fs.list",
    "fs-write": "fs.write",
    "http-fetch": "net.http",
}


def function_name(tool: str) -> str:
    """A tool's name as a function name the chat API accepts (no ``.``: an MCP tool
    ``notes.add_note`` is offered as ``notes__add_note``)."""
    return tool.replace(".", "__", 1)


def tool_named(state: Any, function: str) -> str:
    """The tool a function name the model called stands for (see ``function_name``)."""
    if function in state.tools or "__" not in function:
        return function
    dotted = function.replace("__", ".", 1)
    return dotted if dotted in state.tools else function


def offered_tools(task: TaskRun) -> list[dict[str, Any]]:
    """The registered tools the agent's grants let it invoke, as OpenAI function tools."""
    state = task.state
    now_s = task.runtime.now_ms() // 1000
    granted = [c for g in state.active_grants(task.agent.id, now_s) for c in g.caps]
    out = []
    for name in sorted(state.tools):
        tool = state.latest_tool(name)
        if tool is None:
            continue
        needed = [f"tool.invoke:tool/{name}", *tool.capabilities]
        if capmod.uncovered(granted, needed):
            continue
        description = tool.description
        action = PLACE_ACTIONS.get(name) if tool.kind == "native" else None
        if action is not None:
            # A file or HTTP tool is of use only where a grant lets the agent reach.
            reach = [c for c in granted if capmod.action_matches(c, action)]
            if not reach:
                continue
            description += f" (you may reach: {' '.join(sorted(set(reach)))})"
        out.append(
            {
                "type": "function",
                "function": {
                    "name": function_name(name),
                    "description": description,
                    "parameters": tool.input_schema or {"type": "object"},
                },
            }
        )
    return out


class Llm:
    name = "llm"
    summary = "a chat model (OpenAI-compatible endpoint) whose tool calls become tool.invoke"

    def check_ready(self) -> None:
        LlmConfig.from_env()

    def run(self, task: TaskRun) -> None:
        try:
            config = LlmConfig.from_env()
        except InvalidInput as exc:
            task.fail(f"llm: {exc.message}")
        prompt = task.description
        if task.payload is not None:
            prompt += "\n\nInput:\n" + json.dumps(task.payload, indent=2)
        messages: list[dict[str, Any]] = [
            {
                "role": "system",
                "content": SYSTEM_PROMPT.format(name=task.agent.name, id=task.agent.id),
            },
            {"role": "user", "content": prompt},
        ]
        tools = offered_tools(task)
        for turn in range(1, config.max_turns + 1):

            def ask(turn: int = turn) -> dict[str, Any]:
                message = chat(config, messages, tools)
                return {"llm": {"turn": turn, "model": config.model, "message": message}}

            try:
                message = task.remember(ask)["llm"]["message"]
            except LlmError as exc:
                task.fail(f"llm: turn {turn}: {exc}")
            messages.append(message)
            calls = message.get("tool_calls") or []
            if not calls:
                task.complete(message.get("content") or "")
            for call in calls[:MAX_TOOL_CALLS_PER_TURN]:
                messages.append(
                    {"role": "tool", "tool_call_id": call["id"], "content": self._call(task, call)}
                )
            for call in calls[MAX_TOOL_CALLS_PER_TURN:]:
                messages.append(
                    {
                        "role": "tool",
                        "tool_call_id": call["id"],
                        "content": f"error: at most {MAX_TOOL_CALLS_PER_TURN} tool calls per turn",
                    }
                )
        task.fail(f"llm: no final answer after {config.max_turns} turns")

    @staticmethod
    def _call(task: TaskRun, call: dict[str, Any]) -> str:
        """Run one tool call as a ``tool.invoke``; what to tell the model about it."""
        name = tool_named(task.state, call["function"]["name"])
        try:
            args = json.loads(call["function"]["arguments"] or "{}")
        except ValueError as exc:
            return f"error: the arguments are not valid JSON: {exc}"
        try:
            result = task.invoke(name, args)
        except Denied as exc:
            return f"denied: {exc.message}"
        except TokaError as exc:
            return f"error: {exc.reason}"
        if not result.ok:
            assert result.error is not None
            return f"tool failed: {result.error.kind}: {result.error.message}"
        text = json.dumps(result.output)
        return text if len(text) <= MAX_TOOL_RESULT_CHARS else text[:MAX_TOOL_RESULT_CHARS] + "…"
