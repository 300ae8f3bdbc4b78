"""``toka verify``, ``toka replay`` and ``toka checkpoint export``: is the log intact?"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from toka.cli.context import Context


def register(sub, common) -> None:
    p = sub.add_parser(
        "verify",
        parents=[common],
        help="verify the log: every event is what its signed operation decides, the hash "
        "chain, signed checkpoints and operation records",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="check the hash chain, checkpoints and records only, without deciding every "
        "operation again (much faster; does not catch a rewrite whose chain was recomputed)",
    )
    p.add_argument(
        "--signatures",
        action="store_true",
        help="also re-verify every operation signature with the keys recorded in the log",
    )
    p.add_argument(
        "--against",
        metavar="FILE",
        help="a checkpoint exported earlier: detect truncation or rollback of the log",
    )
    p.add_argument(
        "--blobs",
        action="store_true",
        help="also hash again every blob an effect record names (what calls read, wrote, fetched)",
    )
    p.set_defaults(handler=cmd_verify)

    p = sub.add_parser("replay", parents=[common], help="rebuild state from the log")
    p.add_argument(
        "--check",
        action="store_true",
        help="rebuild from genesis (no snapshots); the state hash must match every "
        "checkpoint and the live state",
    )
    p.set_defaults(handler=cmd_replay)

    cp = sub.add_parser("checkpoint", help="export a signed checkpoint of the log head")
    c = cp.add_subparsers(dest="checkpoint_command", metavar="ACTION", required=True)
    p = c.add_parser(
        "export",
        parents=[common],
        help="sign the current head and write it with the kernel public key to FILE",
    )
    p.add_argument("file", metavar="FILE", help="where to write it (- for stdout)")
    p.set_defaults(handler=cmd_export)


@contextmanager
def _progress(label: str) -> Iterator[Callable[[int, int], None] | None]:
    """A progress bar on stderr when it is a terminal; nothing when piped."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _failure(ctx: Context, exc) -> None:
    """With --json, the failure is data too: the first bad sequence number."""
    if ctx.json:
        ctx.emit({"ok": False, "first_bad_seq": exc.seq, "error": exc.message})


def cmd_verify(ctx: Context) -> int:
    from toka.core.errors import IntegrityFailure
    from toka.core.log import audit
    from toka.core.log.checkpoints import ExportedCheckpoint

    home = ctx.home
    home.require()
    exported = ExportedCheckpoint.load(Path(ctx.args.against)) if ctx.args.against else None
    interval = home.config().checkpoint_interval
    # The log is read directly, not through a Runtime: a damaged log must be reported
    # with the seq where it breaks, not fail while the state is being loaded.
    log = home.open_store(readonly=True)
    try:
        with log.read(), _progress("verifying") as progress:
            result = audit.verify_log(
                log,
                home.kernel_public_key(),
                signatures=ctx.args.signatures,
                progress=progress,
                decisions=not ctx.args.quick,
                checkpoint_interval=None if ctx.args.quick else interval,
            )
            if exported is not None:
                result.update(audit.check_against(log, exported, home.kernel_public_key()))
            if ctx.args.blobs:
                result.update(audit.check_blobs(log, home.blobs, progress))
    except IntegrityFailure as exc:
        _failure(ctx, exc)
        raise
    finally:
        log.close()
    result["first_bad_seq"] = None

    def human() -> str:
        parts = [
            f"ok: {result['events']} events, chain verified to seq {result['head_seq']}",
            f"{result['checkpoints']} signed checkpoints",
            f"{result['operations']} operation records",
        ]
        if ctx.args.signatures:
            parts.append(f"{result['signatures_checked']} signatures")
        if not ctx.args.quick:
            parts.append(f"{result['decisions_checked']} operations decided again")
        if ctx.args.blobs:
            parts.append(f"{result['blobs_checked']} blobs hashed again")
        text = ", ".join(parts)
        if exported is not None:
            text += f"\nconsistent with the exported checkpoint at seq {result['against_seq']}"
        return text

    ctx.emit(result, human)
    return 0


def cmd_replay(ctx: Context) -> int:
    from toka.core.errors import IntegrityFailure

    rt = ctx.runtime
    if ctx.args.check:
        try:
            with _progress("replaying") as progress:
                result = rt.replay_check(progress)
        except IntegrityFailure as exc:
            _failure(ctx, exc)
            raise
        ctx.emit(
            result,
            f"ok: replay from genesis reaches seq {result['seq']}, matches "
            f"{result['checkpoints']} checkpoints and the live state hash "
            f"{result['state_hash'][:16]}",
        )
        return 0
    st = rt.replay()
    ctx.emit(
        {"seq": st.seq, "state_hash": st.state_hash()},
        f"replayed to seq {st.seq}, state hash {st.state_hash()[:16]}",
    )
    return 0


def cmd_export(ctx: Context) -> int:
    from toka.cli.output import info
    from toka.core.errors import InvalidInput

    exported = ctx.runtime.export_checkpoint()
    data = exported.to_json()
    cp = exported.checkpoint
    if ctx.args.file == "-":
        sys.stdout.buffer.write(data)
        return 0
    path = Path(ctx.args.file).expanduser()
    try:
        # Owner-only like everything else Toka writes (it may well be written in the home).
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
    except OSError as exc:
        raise InvalidInput(f"cannot write {path}: {exc.strerror}") from exc
    summary = {
        "file": str(path),
        "seq": cp.seq,
        "head_hash": cp.head_hash,
        "state_hash": cp.state_hash,
        "public_key": exported.public_key,
    }
    if not ctx.json:
        info(f"keep {path} somewhere the log's host cannot rewrite it")
    ctx.emit(summary, f"exported the checkpoint at seq {cp.seq} to {path}")
    return 0
