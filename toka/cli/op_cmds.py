"""``toka op sign`` (offline, never opens the log) and ``toka op submit``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from toka.cli.context import Context

# Global options that may also follow the operation's fields.
_GLOBAL_FLAGS = {"--json": "json"}
_GLOBAL_VALUES = {"--home": "home", "--as": "as_principal"}


def register(sub, common) -> None:
    op = sub.add_parser("op", help="sign an operation offline, submit a signed operation")
    o = op.add_subparsers(dest="op_command", metavar="ACTION", required=True)

    p = o.add_parser(
        "sign",
        parents=[common],
        help="print a signed operation (JSON) without touching the log",
        description="Sign KIND with --FIELD VALUE pairs (values of non-text fields are JSON), "
        "or a whole operation with --op JSON. The key comes from TOKA_KEY or the keystore; "
        "the token from TOKA_TOKEN, or the home's operator.token for the operator.",
        epilog="example: toka op sign task.schedule --agent ag-xxxx --description 'hello' "
        "> op.json",
    )
    p.add_argument("--op", dest="op_json", metavar="JSON", help="the operation as JSON, @FILE or -")
    p.add_argument("--nonce", help="use this nonce (default: a fresh random one)")
    p.add_argument("kind", nargs="?", metavar="KIND", help="e.g. task.schedule, observation.emit")
    p.add_argument("fields", nargs=argparse.REMAINDER, metavar="--FIELD VALUE")
    p.set_defaults(handler=cmd_sign)

    p = o.add_parser(
        "submit",
        parents=[common],
        help="submit a signed operation from FILE (- for stdin); a replay is refused",
    )
    p.add_argument("file", metavar="FILE")
    p.set_defaults(handler=cmd_submit)


def _split_fields(ctx: Context, items: list[str]) -> list[tuple[str, str]]:
    """``--name value`` pairs; global options found among them are applied to ``ctx``."""
    from toka.core.errors import InvalidInput

    pairs: list[tuple[str, str]] = []
    i = 0
    while i < len(items):
        item = items[i]
        if item in _GLOBAL_FLAGS:
            setattr(ctx.args, _GLOBAL_FLAGS[item], True)
            ctx.json = ctx.json or item == "--json"
            i += 1
            continue
        name, eq, inline = item.partition("=")
        if not name.startswith("--") or len(name) < 3:
            raise InvalidInput(f"expected --FIELD VALUE, got {item!r}")
        if eq:
            value = inline
            i += 1
        elif i + 1 < len(items):
            value = items[i + 1]
            i += 2
        else:
            raise InvalidInput(f"{name} needs a value")
        if name in _GLOBAL_VALUES:
            setattr(ctx.args, _GLOBAL_VALUES[name], value)
            continue
        pairs.append((name[2:].replace("-", "_"), value))
    return pairs


def _is_text(field_type: Any) -> bool:
    import msgspec.inspect as mi

    if isinstance(field_type, mi.StrType):
        return True
    if isinstance(field_type, mi.UnionType):
        return all(isinstance(t, mi.StrType | mi.NoneType) for t in field_type.types)
    return False


def build_operation(kind: str, pairs: list[tuple[str, str]]):
    """An Operation of type ``kind`` from ``--field value`` pairs: text fields take the
    value as is, the others parse it as JSON (repeating a list field appends)."""
    import msgspec
    import msgspec.inspect as mi

    from toka.cli.parsing import json_or_text
    from toka.core.errors import InvalidInput
    from toka.core.model.ops import OPERATION_TYPES

    cls = OPERATION_TYPES.get(kind)
    if cls is None:
        raise InvalidInput(
            f"unknown operation kind {kind!r} (known: {', '.join(sorted(OPERATION_TYPES))})"
        )
    info = mi.type_info(cls)
    fields = {f.name: f for f in info.fields}  # type: ignore[attr-defined]
    values: dict[str, Any] = {}
    for name, raw in pairs:
        field = fields.get(name)
        if field is None:
            raise InvalidInput(
                f"{kind} has no field {name!r} (fields: {', '.join(_flag(f) for f in fields)})"
            )
        if _is_text(field.type):
            value: Any = raw
        else:
            value = json_or_text(raw, "--" + name.replace("_", "-"))
        if isinstance(field.type, mi.ListType) and name in values:
            values[name] += value if isinstance(value, list) else [value]
        elif isinstance(field.type, mi.ListType) and not isinstance(value, list):
            values[name] = [value]
        else:
            values[name] = value
    try:
        return msgspec.convert({"type": kind, **values}, cls)
    except msgspec.ValidationError as exc:
        required = [_flag(f.name) for f in fields.values() if f.required]
        raise InvalidInput(
            f"invalid {kind} operation: {exc} (required: {', '.join(required) or 'none'})"
        ) from exc


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _signing_material(ctx: Context, principal: str):
    """The principal's key (TOKA_KEY or keystore) and token (TOKA_TOKEN, or the
    operator's token file); never opens the log."""
    from toka.core.errors import HomeError, InvalidInput
    from toka.core.kernel import OPERATOR
    from toka.core.model.keys import KeyPair, check_principal

    check_principal(principal)
    home = ctx.home
    key_file = os.environ.get("TOKA_KEY")
    if key_file:
        try:
            key = KeyPair.from_pem(Path(key_file).expanduser().read_bytes())
        except OSError as exc:
            raise InvalidInput(f"cannot read TOKA_KEY {key_file}: {exc.strerror}") from exc
    else:
        key = home.keystore.load(principal)
    token = os.environ.get("TOKA_TOKEN")
    if not token:
        if principal != OPERATOR:
            raise InvalidInput(
                f"set TOKA_TOKEN to sign as {principal} "
                f"(the token `toka grant issue {principal} ...` printed)"
            )
        try:
            token = home.token_path.read_text().strip()
        except FileNotFoundError as exc:
            raise HomeError(f"no operator token at {home.token_path}: run `toka init`") from exc
    return key, token


def cmd_sign(ctx: Context) -> int:
    import time

    from toka.cli.parsing import json_value
    from toka.core.errors import InvalidInput
    from toka.core.model import ops

    a = ctx.args
    pairs = _split_fields(ctx, a.fields or [])
    if a.op_json is not None:
        if a.kind is not None or pairs:
            raise InvalidInput("give either --op JSON or KIND with --FIELD VALUE pairs, not both")
        raw = json_value(a.op_json, "--op")
        if not isinstance(raw, dict) or "type" not in raw:
            raise InvalidInput('--op must be a JSON object with a "type" (e.g. "task.schedule")')
        import msgspec

        op = ops.decode_operation(msgspec.json.encode(raw))
    elif a.kind is not None:
        op = build_operation(a.kind, pairs)
    else:
        raise InvalidInput("give the operation: KIND --FIELD VALUE ..., or --op JSON")
    principal = ctx.principal
    key, token = _signing_material(ctx, principal)
    signed = ops.sign(op, principal, token, key, int(time.time() * 1000), a.nonce)
    sys.stdout.buffer.write(signed.to_json() + b"\n")
    return 0


def cmd_submit(ctx: Context) -> int:
    from toka.core.errors import InvalidInput, ReplayedNonce
    from toka.core.model.ops import SignedOperation

    name = ctx.args.file
    try:
        data = sys.stdin.buffer.read() if name == "-" else Path(name).expanduser().read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read {name}: {exc.strerror}") from exc
    signed = SignedOperation.from_json(data.strip())
    outcome = ctx.runtime.submit(signed)
    if outcome.replayed:
        span = (
            f"seq {outcome.first_seq}"
            if outcome.first_seq == outcome.last_seq
            else f"seq {outcome.first_seq}-{outcome.last_seq}"
        )
        raise ReplayedNonce(
            f"refused: operation {signed.nonce} ({signed.kind}) was already applied at {span}; "
            "it is never applied twice"
        )
    result = {
        "op": outcome.op,
        "nonce": outcome.nonce,
        "digest": outcome.digest,
        "seq": outcome.last_seq,
        "first_seq": outcome.first_seq,
        "events": [{"seq": e.seq, "kind": e.kind} for e in outcome.events],
    }
    ctx.emit(result, f"applied {outcome.op} at seq {outcome.last_seq} (nonce {outcome.nonce})")
    return 0
