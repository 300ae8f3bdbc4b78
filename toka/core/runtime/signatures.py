"""Signatures of operations in flight, checked off the commit thread's interpreter.

Why a process: a thread that checks a signature lets go of the GIL while libsodium
works and must win it back after. Next to a thread busy in Python (the commit
thread deciding a batch) it waits for the interpreter's switch interval at every
signature: measured on a 2-vCPU VM, one such thread checked 263 signatures/s beside a
busy Python thread, against 18,000/s alone. A child process has an interpreter of its
own: it checks a whole batch on the other core while the commit thread decides the
batch before, and the parent pays one hand-over per batch instead of one per signature.

The child is an accelerator, never the authority: it can only mark an operation
authenticated when the signature verifies. Whatever it does not vouch for (a signature
that fails, a batch it did not answer, a child that could not start or died) goes on
unmarked, and the kernel pass checks the signature itself, in the commit thread, and
refuses it with the usual error (``Runtime._process``).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import toka
from toka.core.errors import InvalidInput, TokaError
from toka.core.model import ed25519_batch
from toka.core.model.keys import raw_public_key, raw_signature
from toka.core.runtime.admission import Pending, signature_holds

log = logging.getLogger(__name__)

# A batch at least this large goes to the child; a smaller one is checked here, in
# this stage's thread (a light load never starts a process).
WORKER_MIN_BATCH = 8


class SignatureStage:
    """Operations from ``Runtime.submit_async`` pass here on their way to the commit
    pipeline, in the order they were submitted; each batch is handed on (``deliver``)
    once its signatures are checked."""

    def __init__(self, deliver: Callable[[list[Pending]], None]):
        self._deliver = deliver
        self._cond = threading.Condition(threading.Lock())
        self._queue: list[Pending] = []
        self._closing = False
        self._worker: _Worker | None = None
        self._use_worker = True  # until the child cannot start, or dies
        self.by_worker = 0  # signatures the child vouched for (tests and benches read it)
        self._thread = threading.Thread(target=self._run, name="toka-signatures", daemon=True)
        self._thread.start()

    def put(self, pending: Pending) -> None:
        with self._cond:
            if self._closing:
                raise TokaError("the runtime is closing; the operation was not submitted")
            self._queue.append(pending)
            self._cond.notify()

    def close(self) -> None:
        """Hand on everything queued, then stop (and stop the child)."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join()
        if self._worker is not None:
            self._worker.stop()
            self._worker = None

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                batch, self._queue = self._queue, []
            try:
                self._check([p for p in batch if p.signer_key is not None])
            except Exception:  # whatever is left unmarked, the kernel pass checks
                log.exception("checking a batch of signatures failed")
            self._deliver(batch)

    def _check(self, todo: list[Pending]) -> None:
        if not todo:
            return
        worker = self._worker_for(len(todo))
        if worker is not None:
            items, sent = [], []
            for p in todo:
                try:
                    items.append(
                        (raw_public_key(p.signer_key), raw_signature(p.signed.sig), p.body)
                    )  # type: ignore[arg-type]
                    sent.append(p)
                except (ValueError, InvalidInput):  # malformed: the kernel pass refuses it
                    self._mark(p, False)
            answer = worker.check(items)
            if answer is not None:
                for p, ok in zip(sent, answer, strict=True):
                    self._mark(p, bool(ok))
                self.by_worker += sum(answer)
                return
            log.warning("the signature-checking process stopped; checking in-process")
            self._use_worker = False
            self._worker = None
            todo = sent
        for p in todo:
            self._mark(p, signature_holds(p.signed, p.signer_key, p.body))  # type: ignore[arg-type]

    @staticmethod
    def _mark(p: Pending, verified: bool) -> None:
        p.signer_key = None
        if verified:
            p.authenticated = True

    def _worker_for(self, n: int) -> _Worker | None:
        if self._worker is None and self._use_worker and n >= WORKER_MIN_BATCH:
            try:
                self._worker = _Worker()
            except OSError as exc:
                log.warning("cannot start the signature-checking process (%s)", exc)
                self._use_worker = False
        return self._worker


class _Worker:
    """The child process (``toka.core.model.ed25519_batch``) and its pipes."""

    def __init__(self) -> None:
        env = dict(os.environ)
        # The child imports the same Toka as this process, installed or not.
        root = str(Path(toka.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        self._proc = subprocess.Popen(
            [sys.executable, "-m", ed25519_batch.__name__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # never onto the operator's terminal
            env=env,
        )

    def check(self, items: list[tuple[bytes, bytes, bytes]]) -> bytes | None:
        """One byte per (raw key, raw signature, signed bytes), 1 if it verifies; None
        if the child is gone (it is then stopped)."""
        if not items:
            return b""
        request = ed25519_batch.encode_batch(items)
        try:
            assert self._proc.stdin is not None and self._proc.stdout is not None
            self._proc.stdin.write(request)
            self._proc.stdin.flush()
            answer = self._proc.stdout.read(len(items))
        except (OSError, ValueError):
            answer = b""
        if len(answer) != len(items):
            self.stop()
            return None
        return answer

    def stop(self) -> None:
        for stream in (self._proc.stdin, self._proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        try:
            self._proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
