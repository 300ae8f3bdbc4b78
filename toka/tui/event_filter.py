"""The Events pane filter: ``kind:task.* agent:ag-x principal:operator free text``."""

from __future__ import annotations

from typing import NamedTuple

from toka.core.model.events import EventRecord, kind_matches

KEYS = ("kind", "agent", "principal")
HELP = (
    "kind:PREFIX (e.g. kind:task or kind:tool.failed, repeatable)  agent:ID  principal:NAME  "
    "and any other words: text the payload contains (case-sensitive)"
)


class EventFilter(NamedTuple):
    """Which events to show. Empty fields match everything."""

    kinds: tuple[str, ...] = ()
    agent: str | None = None
    principal: str | None = None
    text: str | None = None

    @classmethod
    def parse(cls, query: str) -> EventFilter:
        """Read a filter typed by the operator; words without a known ``key:`` are text."""
        kinds: list[str] = []
        agent = principal = None
        words: list[str] = []
        for word in query.split():
            key, sep, value = word.partition(":")
            if not sep or key not in KEYS or not value:
                words.append(word)
            elif key == "kind":
                kinds.append(value if "." in value or value.endswith("*") else value + ".*")
            elif key == "agent":
                agent = value
            else:
                principal = value
        return cls(tuple(kinds), agent, principal, " ".join(words) or None)

    def __bool__(self) -> bool:
        return bool(self.kinds or self.agent or self.principal or self.text)

    def describe(self) -> str:
        parts = [f"kind:{k}" for k in self.kinds]
        if self.agent:
            parts.append(f"agent:{self.agent}")
        if self.principal:
            parts.append(f"principal:{self.principal}")
        if self.text:
            parts.append(repr(self.text))
        return " ".join(parts)

    def query_args(self) -> dict:
        """The part of the filter the log's query can do itself."""
        return {"kinds": list(self.kinds) or None, "principal": self.principal, "text": self.text}

    def matches(self, record: EventRecord) -> bool:
        if self.kinds and not any(kind_matches(k, record.kind) for k in self.kinds):
            return False
        if self.principal and record.principal != self.principal:
            return False
        if self.text and self.text.encode() not in record.payload:
            return False
        return self.matches_agent(record)

    def matches_agent(self, record: EventRecord) -> bool:
        """By or about the agent: its id signed the event or appears in the payload."""
        if not self.agent:
            return True
        return record.principal == self.agent or self.agent.encode() in record.payload
