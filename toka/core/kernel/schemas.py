"""Tool input schemas: what a registration must hold, and validation in bounded work.

A schema is checked once, when its tool is registered: it is small, nests at most
``MAX_SCHEMA_DEPTH`` deep, refers only inside itself (nothing is ever fetched), every
reference resolves, no chain of references and in-place applicators (``allOf``,
``not``, ``if``...) leads back where it started without reaching into the arguments
(validation would never end), and every regex compiles in RE2.

Arguments are validated by jsonschema with two changes that bound the cost of any
schema. Every regex runs in RE2, which matches in time linear in the text (no
backtracking: ``^(a+)+$`` costs what ``^a+$`` does). Every keyword evaluated is
counted: past ``MAX_STEPS`` keywords, or ``MAX_DEPTH`` nested ones, the arguments are
refused as too costly to check. Both bounds count work, not time, so a decision is
the same on every replay; the runtime adds the tool's own time limit when it checks
arguments before the write lock (``expired``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any, NamedTuple

import msgspec

from toka.core.errors import InvalidOperation

MAX_SCHEMA_BYTES = 64 * 1024
MAX_SCHEMA_DEPTH = 64  # nested objects and arrays in the schema document
MAX_STEPS = (
    500_000  # keywords evaluated for one validation (a 256 KiB array of numbers is ~130,000)
)
MAX_DEPTH = 100  # keywords nested inside one another (each level costs a few stack frames)
RE2_MAX_MEM = 8 * 1024 * 1024

_json = msgspec.json.Encoder(order="sorted")

# Keywords whose value is a schema applied to the same instance (they never reach into
# it, so a cycle through them alone would recurse forever), and those that apply a
# schema to a part of the instance (a cycle through one ends with the arguments).
_IN_PLACE_ONE = ("not", "if", "then", "else")
_IN_PLACE_LIST = ("allOf", "anyOf", "oneOf")
_IN_PLACE_MAP = ("dependentSchemas", "dependencies")
_DESCEND_ONE = (
    "items",
    "additionalItems",
    "additionalProperties",
    "contains",
    "propertyNames",
    "unevaluatedItems",
    "unevaluatedProperties",
    "contentSchema",
)
_DESCEND_LIST = ("items", "prefixItems")
_DESCEND_MAP = ("properties", "patternProperties")
_DEFINITIONS = ("$defs", "definitions")
_REFS = ("$ref", "$dynamicRef", "$recursiveRef")
_REFUSED_DIALECTS = ("http://json-schema.org/draft-03/schema",)


# -- registration ------------------------------------------------------------------


class _Place(NamedTuple):
    label: str  # input.a.b, as errors name it
    pointer: str  # the JSON pointer, #/a/b


def check_input_schema(schema: Any) -> None:
    """Refuse an input schema that is invalid, remote, unresolvable, endless or not RE2."""
    if not isinstance(schema, dict):
        raise InvalidOperation("input: a JSON Schema here must be an object (a TOML table)")
    try:
        size = len(_json.encode(schema))
    except (TypeError, msgspec.EncodeError, RecursionError) as exc:
        raise InvalidOperation(f"input: not JSON-encodable: {exc}") from None
    if size > MAX_SCHEMA_BYTES:
        raise InvalidOperation(f"input: schema is {size} bytes, over the {MAX_SCHEMA_BYTES} limit")
    places = _places(schema)
    _check_refs(schema, "input")
    from jsonschema.exceptions import SchemaError

    cls = validator_class(schema)
    try:
        cls.check_schema(schema)
    except SchemaError as exc:
        where = ".".join(str(p) for p in exc.absolute_path)
        at = f"input.{where}" if where else "input"
        raise InvalidOperation(f"{at}: not a valid JSON Schema: {exc.message}") from None
    _check_graph(schema, cls, places)


def _places(schema: dict[str, Any]) -> dict[int, _Place]:
    """Where each object and array of the schema sits."""
    places: dict[int, _Place] = {}
    todo: list[tuple[Any, str, str, int]] = [(schema, "input", "#", 1)]
    while todo:
        value, label, pointer, depth = todo.pop()
        if depth > MAX_SCHEMA_DEPTH:
            raise InvalidOperation(f"{label}: the schema nests deeper than {MAX_SCHEMA_DEPTH}")
        places.setdefault(id(value), _Place(label, pointer))
        if isinstance(value, dict):
            for k, v in value.items():
                if isinstance(v, dict | list):
                    escaped = str(k).replace("~", "~0").replace("/", "~1")
                    todo.append((v, f"{label}.{k}", f"{pointer}/{escaped}", depth + 1))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                if isinstance(v, dict | list):
                    todo.append((v, f"{label}[{i}]", f"{pointer}/{i}", depth + 1))
    return places


def _check_refs(value: Any, where: str) -> None:
    """Refuse references that would make validation fetch anything outside the schema."""
    todo = [(value, where)]
    while todo:
        value, where = todo.pop()
        if isinstance(value, dict):
            for k, v in value.items():
                if k in _REFS and not (isinstance(v, str) and v.startswith("#")):
                    raise InvalidOperation(
                        f"{where}.{k}: only local references (#...) are allowed, not {v!r}"
                    )
                todo.append((v, f"{where}.{k}"))
        elif isinstance(value, list):
            todo.extend((v, f"{where}[{i}]") for i, v in enumerate(value))


def validator_class(schema: dict[str, Any]) -> Any:
    """The validator of the schema's ``$schema`` dialect; draft 2020-12 when it names none."""
    from jsonschema.validators import Draft202012Validator, validator_for

    if "$schema" not in schema:
        return Draft202012Validator
    dialect = schema["$schema"]
    cls = validator_for(schema, default=None)
    if cls is None or (isinstance(dialect, str) and dialect.rstrip("#") in _REFUSED_DIALECTS):
        raise InvalidOperation(f"input.$schema: unsupported JSON Schema dialect {dialect!r}")
    return cls


class _Edge(msgspec.Struct, frozen=True):
    target: int
    label: str  # where the keyword is, e.g. input.$defs.a.$ref
    ref: str | None  # the reference followed, if this edge is one


def _check_graph(schema: dict[str, Any], cls: Any, places: dict[int, _Place]) -> None:
    """Walk every schema reachable from the root, following references as jsonschema does."""
    import referencing.jsonschema
    from referencing import Registry
    from referencing.exceptions import Unresolvable

    spec = referencing.jsonschema.specification_with(
        cls.META_SCHEMA.get("$id") or cls.META_SCHEMA.get("$schema", ""),
        default=referencing.jsonschema.DRAFT202012,
    )
    root = Registry().resolver_with_root(spec.create_resource(schema))
    edges: dict[int, list[_Edge]] = {}
    todo: list[tuple[Any, Any]] = [(schema, root)]
    while todo:
        node, resolver = todo.pop()
        if not isinstance(node, dict) or id(node) in edges:
            continue
        label = places[id(node)].label
        out = edges[id(node)] = []
        if node is not schema:
            if "$schema" in node:
                raise InvalidOperation(
                    f"{label}.$schema: only the root of an input schema may name a dialect"
                )
            resolver = resolver.in_subresource(spec.create_resource(node))
        _check_patterns(node, label)

        for k in _REFS:
            ref = node.get(k)
            if not isinstance(ref, str):
                continue
            try:
                resolved = resolver.lookup(ref)
            except Unresolvable:
                raise InvalidOperation(
                    f"{label}.{k}: {ref!r} does not resolve inside the schema"
                ) from None
            target = resolved.contents
            if not isinstance(target, dict | bool) or (
                isinstance(target, dict) and id(target) not in places
            ):
                raise InvalidOperation(f"{label}.{k}: {ref!r} does not point at a schema")
            if isinstance(target, dict):
                out.append(_Edge(id(target), f"{label}.{k}", ref))
                todo.append((target, resolved.resolver))
        for k in _IN_PLACE_ONE:
            _follow(todo, out, node.get(k), f"{label}.{k}", resolver, in_place=True)
        for k in _IN_PLACE_LIST:
            for i, child in enumerate(_listed(node.get(k))):
                _follow(todo, out, child, f"{label}.{k}[{i}]", resolver, in_place=True)
        for k in _IN_PLACE_MAP:
            for name, child in _mapped(node.get(k)):
                _follow(todo, out, child, f"{label}.{k}.{name}", resolver, in_place=True)
        for k in _DESCEND_ONE:
            _follow(todo, out, node.get(k), "", resolver, in_place=False)
        for k in _DESCEND_LIST:
            for child in _listed(node.get(k)):
                _follow(todo, out, child, "", resolver, in_place=False)
        for k in (*_DESCEND_MAP, *_DEFINITIONS):
            for _, child in _mapped(node.get(k)):
                _follow(todo, out, child, "", resolver, in_place=False)
    _check_cycles(edges, places)


def _follow(
    todo: list[tuple[Any, Any]],
    out: list[_Edge],
    child: Any,
    where: str,
    resolver: Any,
    *,
    in_place: bool,
) -> None:
    if isinstance(child, dict):
        if in_place:
            out.append(_Edge(id(child), where, None))
        todo.append((child, resolver))


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _mapped(value: Any) -> list[tuple[str, Any]]:
    return list(value.items()) if isinstance(value, dict) else []


def _check_cycles(edges: dict[int, list[_Edge]], places: dict[int, _Place]) -> None:
    """Refuse a cycle of in-place edges: validating it would never reach into the arguments."""
    done: set[int] = set()
    for start in edges:
        if start in done:
            continue
        path: list[_Edge] = []  # the edges taken from ``start`` to the node on top
        on_path = {start: 0}
        stack = [iter(edges.get(start, []))]
        while stack:
            edge = next(stack[-1], None)
            if edge is None:
                stack.pop()
                left = path.pop().target if path else start
                on_path.pop(left, None)
                done.add(left)
                continue
            if edge.target in on_path:
                loop = [*path[on_path[edge.target] :], edge]
                ref = next(e for e in loop if e.ref is not None)
                route = " -> ".join(
                    [places[edge.target].pointer, *(places[e.target].pointer for e in loop)]
                )
                raise InvalidOperation(
                    f"{ref.label}: {ref.ref!r} leads back to itself without reaching into "
                    f"the arguments ({route}); validating against it would never end"
                )
            if edge.target in done:
                continue
            path.append(edge)
            on_path[edge.target] = len(path)
            stack.append(iter(edges.get(edge.target, [])))


def _check_patterns(node: dict[str, Any], label: str) -> None:
    pattern = node.get("pattern")
    if isinstance(pattern, str):
        _compile_or_refuse(pattern, f"{label}.pattern")
    properties = node.get("patternProperties")
    if isinstance(properties, dict):
        for pattern in properties:
            _compile_or_refuse(pattern, f"{label}.patternProperties")


def _compile_or_refuse(pattern: str, label: str) -> None:
    try:
        compile_re2(pattern)
    except InvalidOperation as exc:
        raise InvalidOperation(f"{label}: {exc.message}") from None


# -- regexes -------------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def compile_re2(pattern: str) -> Any:
    """``pattern`` compiled by RE2 (linear-time matching); refused if RE2 cannot run it."""
    import re2

    options = re2.Options()
    options.log_errors = False
    options.max_mem = RE2_MAX_MEM
    try:
        return re2.compile(_ecma_escapes(pattern), options)
    except (re2.error, UnicodeEncodeError) as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise InvalidOperation(
            f"pattern {pattern!r} cannot be used: Toka matches schema patterns with RE2, "
            f"in linear time, which does not support it ({reason}; no backreferences "
            "or lookaround)"
        ) from None


def _ecma_escapes(pattern: str) -> str:
    r"""JSON Schema patterns are ECMA 262, where ``\uXXXX`` is a character; RE2 spells it
    ``\x{XXXX}``."""
    if "\\u" not in pattern:
        return pattern
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        hexes = pattern[i + 2 : i + 6]
        if ch == "\\" and pattern[i + 1 : i + 2] == "u" and re.fullmatch("[0-9A-Fa-f]{4}", hexes):
            out.append(f"\\x{{{hexes}}}")
            i += 6
        elif ch == "\\":
            out.append(pattern[i : i + 2])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


class _RE2Module:
    """What jsonschema's keyword modules see as ``re``: searches run in RE2."""

    def __getattr__(self, name: str) -> Any:
        return getattr(re, name)

    @staticmethod
    def search(pattern: str, string: str) -> Any:
        try:
            return compile_re2(pattern).search(string)
        except UnicodeEncodeError:
            raise InvalidOperation("the arguments hold text that is not valid Unicode") from None


@functools.cache
def _install_re2() -> None:
    """jsonschema looks its regexes up through the module global ``re`` of these modules
    (``pattern``, ``patternProperties``, ``additionalProperties``,
    ``unevaluatedProperties``); a backtracking regex must never run on arguments."""
    from jsonschema import _keywords, _legacy_keywords, _utils

    for module in (_keywords, _legacy_keywords, _utils):
        module.re = _RE2Module()  # type: ignore[attr-defined]


# -- validation ----------------------------------------------------------------------


class _TooCostly(Exception):
    pass


class _Work:
    """The work one validation has done so far."""

    __slots__ = ("depth", "expired", "steps")

    def __init__(self, expired: Callable[[], bool] | None):
        self.steps = 0
        self.depth = 0
        self.expired = expired


_WORK: ContextVar[_Work | None] = ContextVar("toka_schema_work", default=None)


def _counted(keyword: Callable[..., Any]) -> Callable[..., Iterator[Any]]:
    def run(validator: Any, value: Any, instance: Any, schema: Any) -> Iterator[Any]:
        work = _WORK.get()
        if work is None:
            yield from keyword(validator, value, instance, schema) or ()
            return
        work.steps += 1
        if work.steps > MAX_STEPS:
            raise _TooCostly(f"it takes more than {MAX_STEPS} schema keywords")
        if work.depth >= MAX_DEPTH:
            raise _TooCostly(f"it nests more than {MAX_DEPTH} schema keywords deep")
        if work.expired is not None and work.steps % 64 == 0 and work.expired():
            raise _TooCostly("it takes longer than the tool's time limit")
        work.depth += 1
        try:
            yield from keyword(validator, value, instance, schema) or ()
        finally:
            work.depth -= 1

    return run


@functools.cache
def _bounded(cls: Any) -> Any:
    from jsonschema.validators import extend

    _install_re2()
    return extend(cls, {k: _counted(fn) for k, fn in cls.VALIDATORS.items()})


@functools.lru_cache(maxsize=64)
def _validator(schema_json: bytes) -> Any:
    from jsonschema.validators import Draft202012Validator, validator_for
    from referencing import Registry

    schema = msgspec.json.decode(schema_json)
    cls = validator_for(schema, default=Draft202012Validator)
    return _bounded(cls)(schema, registry=Registry())


def first_error(
    schema: dict[str, Any], args: Any, expired: Callable[[], bool] | None = None
) -> Any:
    """The most relevant way ``args`` fails ``schema`` (a jsonschema error), or None.

    Raises ``InvalidOperation`` when the arguments cannot be checked within the bounds
    (or before ``expired()``), or the schema cannot be resolved."""
    from jsonschema.exceptions import best_match
    from referencing.exceptions import Unresolvable

    _install_re2()
    validator = _validator(_json.encode(schema))
    token = _WORK.set(_Work(expired))
    try:
        return best_match(validator.iter_errors(args))
    except _TooCostly as exc:
        raise InvalidOperation(f"the arguments are too costly to check: {exc}") from None
    except RecursionError:
        raise InvalidOperation("the arguments nest too deeply to check") from None
    except Unresolvable as exc:
        raise InvalidOperation(f"the input schema does not resolve: {exc}") from None
    finally:
        _WORK.reset(token)
