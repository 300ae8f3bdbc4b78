"""The native built-ins with an effect: ``fs-read``, ``fs-list``, ``fs-write``, ``http-fetch``.

Each performs one open call (its intent is in the log) and returns the outcome the
host states for it: an output, an effect record per thing touched, and the bytes in
blobs (stored before the outcome names them). A failure in the world (a link, a
missing file, a compare-and-swap that did not match, a refused redirect, a timeout)
is an outcome like any other, never an exception.

Secrets stay out of the log: ``secret_headers`` and ``secret_query`` name secrets in
``HOME/secrets/`` whose values are sent (as headers, as query parameters) but never
recorded; in the effect records a URL's query, and the body of a request that
carried a secret, are only an HMAC under a key derived from the kernel secret. (The
arguments the caller wrote are its signed operation's, kept as signed.)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlencode

from toka.core.errors import InvalidInput, InvalidOperation, TokaError
from toka.core.kernel import effects as effect_rules
from toka.core.kernel.derive import asked_limit, call_timeout_ms
from toka.core.kernel.places import host_key
from toka.core.model import events as ev
from toka.core.model import places
from toka.core.model.ops import CallOutcome
from toka.core.model.state import OpenCall, Tool, WorldState
from toka.core.runtime.home import SecretStore
from toka.core.tools.effects import fs
from toka.core.tools.effects.blobs import blob_ref, store_blob

MAX_LIST_ENTRIES = 10_000
MAX_REDIRECTS = 10


class CallContext(NamedTuple):
    """What performing one call needs: the state it runs against and the home's stores."""

    state: WorldState
    call: OpenCall
    tool: Tool
    args: dict[str, Any]
    blobs: Path
    secrets: SecretStore
    hmac_key: bytes  # derived from the kernel secret: hides secret-bearing parts
    now_ms: Callable[[], int]  # the runtime's clock


def effect_hmac_key(kernel_secret: bytes) -> bytes:
    return hmac.new(kernel_secret, b"toka-effect-hmac", hashlib.sha256).digest()


def _failed(kind: str, message: str, effects: list[Any] | None = None) -> CallOutcome:
    return CallOutcome(ok=False, error_kind=kind, message=message, effects=effects or [])


def _limit(c: CallContext) -> int:
    """The call's data cap: the tool's, or less if the arguments ask for less."""
    return asked_limit(c.tool, c.args, "max_bytes")


class Place(NamedTuple):
    """A place a call names: the mount, its host directory, the path and its segments."""

    mount: str
    root: str
    path: str
    parts: list[str]


def mounted_place(state: WorldState, place: Any) -> Place:
    """``{"mount": M, "path": P}`` as a Place, or InvalidOperation (the kernel checked it
    at the intent; the mount may have been removed since)."""
    if not isinstance(place, dict) or not isinstance(place.get("mount"), str):
        raise InvalidOperation("a place must be {'mount': ..., 'path': ...}")
    mount = state.mount_table().get(place["mount"])
    if mount is None:
        raise InvalidOperation(f"mount {place['mount']!r} was removed after the call started")
    path = place.get("path", "")
    return Place(mount.name, mount.path, path, places.path_segments(path))


def _place(c: CallContext) -> Place:
    return mounted_place(c.state, c.args)


def fs_read(c: CallContext) -> CallOutcome:
    name, root, path, parts = _place(c)
    got = fs.read_file(root, parts, _limit(c))
    sha256 = store_blob(c.blobs, got.data, got.sha256)
    ref = blob_ref(sha256, got.data)
    output = {
        "mount": name,
        "path": path,
        "size": got.size,
        "sha256": sha256,
        "encoding": ref["encoding"],
        "content": ref,
    }
    return CallOutcome(ok=True, output=output, effects=[ev.FileRead(name, path, got.size, sha256)])


def fs_list(c: CallContext) -> CallOutcome:
    name, root, path, parts = _place(c)
    listing = fs.list_dir(root, parts, MAX_LIST_ENTRIES)
    sha256 = store_blob(c.blobs, listing.canonical())
    entries = [
        {"name": e.name, "type": e.type, **({"size": e.size} if e.size is not None else {})}
        for e in listing.entries
    ]
    output = {"mount": name, "path": path, "entries": entries}
    effect = ev.DirListed(name, path, len(entries), sha256)
    return CallOutcome(ok=True, output=output, effects=[effect])


def _content(args: dict[str, Any]) -> bytes:
    content = args.get("content", "")
    text = "".join(content) if isinstance(content, list) else content
    if not isinstance(text, str) or (
        isinstance(content, list) and not all(isinstance(p, str) for p in content)
    ):
        raise InvalidOperation("arguments.content must be a string or a list of strings")
    if args.get("encoding", "utf-8") == "base64":
        try:
            return base64.b64decode(text, validate=True)
        except binascii.Error as exc:
            raise InvalidOperation(f"arguments.content is not base64: {exc}") from None
    return text.encode("utf-8")


def fs_write(c: CallContext) -> CallOutcome:
    name, root, path, parts = _place(c)
    data = _content(c.args)
    if_sha256 = c.args.get("if_sha256")
    if len(data) <= c.tool.limits["max_bytes"]:
        store_blob(c.blobs, data)  # before the file: the record will name these bytes
    try:
        done = fs.write_file(root, parts, data, if_sha256=if_sha256, max_bytes=_limit(c))
    except ValueError as exc:  # a malformed if_sha256
        raise InvalidOperation(f"arguments.if_sha256: {exc}") from None
    effect = ev.FileWritten(
        name, path, done.before_sha256, done.after_sha256, done.size, done.changed
    )
    output = {
        "mount": name,
        "path": path,
        "size": done.size,
        "sha256": done.after_sha256,
        "before_sha256": done.before_sha256,
        "changed": done.changed,
    }
    return CallOutcome(ok=True, output=output, effects=[effect])


def _secrets(c: CallContext, argument: str) -> dict[str, str]:
    """``{header or query parameter: value}`` for the secrets ``argument`` names."""
    named = c.args.get(argument) or {}
    out: dict[str, str] = {}
    for key, secret in named.items():
        value = c.secrets.get(secret)
        try:
            out[key] = value.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput(f"secret {secret!r} is not UTF-8 text") from None
    return out


def _url_with(url: str, query: dict[str, str]) -> str:
    """The canonical URL to send, with secret query parameters added (never logged)."""
    sent = places.parse_url(url).url()
    if not query:
        return sent
    extra = urlencode(sorted(query.items()))
    return f"{sent}&{extra}" if "?" in sent else f"{sent}?{extra}"


def _hop_checker(c: CallContext) -> Callable[[str, str], str | None]:
    """Why a redirect's next hop may not be made, or None: the kernel's own test of an
    effect record (``effects.covers``), asked before the hop instead of after it, and
    whether the call may still be performed at all (``effects.still_allowed``)."""

    def check(method: str, url: str) -> str | None:
        try:
            needed = places.http_resource(method, url)
        except TokaError as exc:
            return exc.message
        if not effect_rules.covers(c.state, c.call, needed):
            return f"the caller's grant does not cover {needed}"
        # A hop is a new request: a grant revoked meanwhile stops it, as at the start.
        return effect_rules.still_allowed(c.state, c.call, c.now_ms())

    return check


def _host_allowed(c: CallContext) -> Callable[[str, int], bool]:
    table = c.state.host_table()

    def allowed(host: str, port: int) -> bool:
        try:
            return host_key(places.canonical_host(host), port) in table
        except TokaError:
            return False

    return allowed


def _hmac(c: CallContext, data: bytes) -> str:
    return hmac.new(c.hmac_key, data, hashlib.sha256).hexdigest()


def _hop_effect(c: CallContext, hop: Any, body: bytes | None, secret: bool) -> ev.UrlFetched:
    url = places.parse_url(hop.url)
    request_sha256 = request_hmac = None
    if body:
        if secret:
            request_hmac = _hmac(c, body)
        else:
            request_sha256 = store_blob(c.blobs, body)
    return ev.UrlFetched(
        method=hop.method,
        url=url.without_query(),
        query_hmac=_hmac(c, url.query.encode()) if url.query else None,
        status=hop.status,
        headers=dict(hop.headers),
        request_sha256=request_sha256,
        request_hmac=request_hmac,
        response_sha256=store_blob(c.blobs, hop.body),
        size=len(hop.body),
        address=hop.address,
        ms=round(hop.elapsed_ms, 3),
    )


def _request_body(args: dict[str, Any]) -> bytes | None:
    if "body_base64" in args:
        try:
            return base64.b64decode(args["body_base64"], validate=True)
        except (binascii.Error, TypeError) as exc:
            raise InvalidOperation(f"arguments.body_base64 is not base64: {exc}") from None
    body = args.get("body")
    return body.encode("utf-8") if isinstance(body, str) else None


def http_fetch(c: CallContext) -> CallOutcome:
    from toka.core.tools.effects import http  # http.client and ssl: only when fetching

    args = c.args
    method = str(args.get("method", "GET")).upper()
    headers = dict(args.get("headers") or {})
    secret = _secrets(c, "secret_headers")
    secret_query = _secrets(c, "secret_query")
    overlap = {h.lower() for h in headers} & {h.lower() for h in secret}
    if overlap:
        raise InvalidOperation(f"header {sorted(overlap)[0]} is given both plainly and as a secret")
    body = _request_body(args)
    redirects = args.get("follow_redirects", 0)
    if not isinstance(redirects, int) or isinstance(redirects, bool):
        raise InvalidOperation("arguments.follow_redirects must be an integer")
    try:
        fetched = http.fetch(
            method,
            _url_with(args["url"], secret_query),
            headers={**headers, **secret},
            body=body,
            timeout_s=call_timeout_ms(c.tool, args) / 1000,
            max_bytes=_limit(c),
            max_redirects=max(0, min(redirects, MAX_REDIRECTS)),
            check_hop=_hop_checker(c),
            host_allowed=_host_allowed(c),
            keep_headers_same_origin=frozenset(h.lower() for h in secret),
        )
    except http.FetchError as exc:
        effects = [
            _hop_effect(c, h, body if i == 0 else None, bool(secret))
            for i, h in enumerate(exc.hops)
        ]
        return _failed(exc.kind, exc.message, effects)
    effects = [
        _hop_effect(c, h, body if i == 0 else None, bool(secret or secret_query))
        for i, h in enumerate(fetched.hops)
    ]
    last, final = fetched.hops[-1], effects[-1]
    ref = blob_ref(final.response_sha256, last.body)
    output = {
        "status": last.status,
        "url": final.url,
        "headers": dict(last.headers),
        "size": final.size,
        "sha256": final.response_sha256,
        "encoding": ref["encoding"],
        "body": ref,
    }
    return CallOutcome(ok=True, output=output, effects=effects)


EFFECT_TOOLS: dict[str, Callable[[CallContext], CallOutcome]] = {
    "fs-read": fs_read,
    "fs-list": fs_list,
    "fs-write": fs_write,
    "http-fetch": http_fetch,
}


def perform_native(c: CallContext) -> CallOutcome:
    """Perform one call of a native effect tool; every failure becomes the outcome."""
    t0 = time.perf_counter()
    run = EFFECT_TOOLS.get(c.tool.name)
    try:
        if run is None:
            raise InvalidOperation(f"this build has no native effect tool {c.tool.name!r}")
        if not isinstance(c.args, dict):
            raise InvalidOperation("the arguments must be an object")
        outcome = run(c)
    except fs.FsError as exc:
        outcome = _failed(exc.kind, exc.message)
    except TokaError as exc:
        outcome = _failed("refused" if exc.code != "not_found" else "not_found", exc.message)
    except OSError as exc:
        outcome = _failed("io", f"{type(exc).__name__}: {exc}")
    wall_ms = (time.perf_counter() - t0) * 1000.0
    return CallOutcome(
        ok=outcome.ok,
        output=outcome.output,
        error_kind=outcome.error_kind,
        message=outcome.message,
        effects=outcome.effects,
        wall_ms=round(wall_ms, 3),
    )
