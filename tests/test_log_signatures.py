"""Signatures of operations in flight, checked by a child process (``runtime.signatures``).

The child may only vouch for a signature that verifies; what it does not vouch for
(a forged signature, a child that died) is checked again by the kernel pass and
refused as any bad signature is. These tests drive forged operations through
``submit_async`` and the real child process.
"""

from __future__ import annotations

import threading

import msgspec
import pytest
from log_support import make_home, toka_json

from toka.core.errors import BadSignature
from toka.core.model import ed25519_batch, ops
from toka.core.model import events as ev
from toka.core.model.keys import KeyPair, raw_public_key, raw_signature
from toka.core.runtime import Runtime, signatures
from toka.core.runtime.admission import Pending
from toka.core.runtime.client import Client

pytestmark = pytest.mark.stores


@pytest.fixture
def home(tmp_path):
    return make_home(tmp_path / "home")


@pytest.fixture
def every_batch_to_the_child(monkeypatch):
    monkeypatch.setattr(signatures, "WORKER_MIN_BATCH", 1)


def forge(signed: ops.SignedOperation, other: ops.SignedOperation) -> ops.SignedOperation:
    """``signed`` carrying ``other``'s signature: well-formed, but it does not verify."""
    return msgspec.structs.replace(signed, sig=other.sig)


def refusal_payloads(rt: Runtime) -> list[dict]:
    return [msgspec.json.decode(r.payload) for r in rt.log.query(kinds=["operation.rejected"])]


def stream(rt: Runtime, signed: list[ops.SignedOperation]) -> list:
    """Submit all of ``signed`` in flight; each future's outcome or exception."""
    futures = [rt.submit_async(s) for s in signed]
    results = []
    for f in futures:
        try:
            results.append(f.result(30))
        except Exception as exc:
            results.append(exc)
    return results


def test_the_child_checks_batches_and_forged_signatures_are_refused(home, every_batch_to_the_child):
    with Runtime(home) as rt:
        agent, _ = Client(rt).spawn_agent("streamer")
        me = Client(rt, agent)
        work = [me.sign(ops.EmitObservation(agent, {"i": i})) for i in range(200)]
        forged = {17, 90, 151}
        for i in forged:
            work[i] = forge(work[i], work[i + 1])
        results = stream(rt, work)
        assert rt._signatures.by_worker >= 200 - len(forged)
        for i, result in enumerate(results):
            if i in forged:
                assert isinstance(result, BadSignature), i
            else:
                assert result.first(ev.ObservationEmitted).data == {"i": i}
        assert rt.state.agents[agent].observations == 200 - len(forged)
        payloads = refusal_payloads(rt)
        assert [p["code"] for p in payloads] == ["bad_signature"] * 3
        assert not any(p["authenticated"] for p in payloads)
    assert toka_json("verify", "--signatures", home=home.root)["ok"] is True


def test_an_intruders_key_gets_nothing_past_the_child(home, every_batch_to_the_child):
    # The agent's token, stolen; the operations signed with the intruder's key. The
    # child vouches for none of them, and the kernel pass refuses each.
    with Runtime(home) as rt:
        agent, _ = Client(rt).spawn_agent("victim")
        intruder = Client(rt, agent, key=KeyPair.from_seed(b"intruder"), token=rt.token_for(agent))
        results = stream(
            rt, [intruder.sign(ops.EmitObservation(agent, {"i": i})) for i in range(20)]
        )
        assert all(isinstance(r, BadSignature) for r in results)
        assert rt.state.agents[agent].observations == 0


def test_when_the_child_dies_signatures_are_still_checked(home, every_batch_to_the_child, caplog):
    with Runtime(home) as rt:
        agent, _ = Client(rt).spawn_agent("streamer")
        me = Client(rt, agent)
        first = stream(rt, [me.sign(ops.EmitObservation(agent, {"i": i})) for i in range(20)])
        assert all(not isinstance(r, Exception) for r in first)
        worker = rt._signatures._worker
        assert worker is not None
        worker._proc.kill()
        worker._proc.wait()
        work = [me.sign(ops.EmitObservation(agent, {"j": j})) for j in range(40)]
        work[5] = forge(work[5], work[6])
        results = stream(rt, work)
        assert isinstance(results[5], BadSignature)
        assert sum(not isinstance(r, Exception) for r in results) == 39
        assert "signature-checking process stopped" in caplog.text
        assert rt.state.agents[agent].observations == 20 + 39


def test_operations_from_several_threads_each_keep_their_order(home, every_batch_to_the_child):
    with Runtime(home) as rt:
        operator = Client(rt)
        clients = [Client(rt, operator.spawn_agent(f"s-{i}")[0]) for i in range(4)]
        seen: dict[str, list[int]] = {}

        def run(c: Client) -> None:
            outcomes = stream(
                rt, [c.sign(ops.EmitObservation(c.principal, {"i": i})) for i in range(100)]
            )
            seen[c.principal] = [o.first_seq for o in outcomes]

        threads = [threading.Thread(target=run, args=(c,)) for c in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for seqs in seen.values():
            assert seqs == sorted(seqs) and len(seqs) == 100
        assert rt._signatures.by_worker > 0


def test_a_light_load_starts_no_process(home):
    with Runtime(home) as rt:
        agent, _ = Client(rt).spawn_agent("quiet")
        me = Client(rt, agent)
        for i in range(5):
            me.submit_async(ops.EmitObservation(agent, {"i": i})).result(10)
        assert rt._signatures._worker is None
        assert rt._signatures.by_worker == 0
        assert rt.state.agents[agent].observations == 5


def test_the_child_protocol_answers_one_byte_per_signature(home):
    key = KeyPair.from_seed(b"k")
    body = b"signed bytes"
    good = (raw_public_key(key.public_key), raw_signature(key.sign(body)), body)
    tampered = (good[0], good[1], b"other bytes")
    worker = signatures._Worker()
    try:
        assert worker.check([good, tampered, good]) == b"\x01\x00\x01"
        assert worker.check([]) == b""
        assert worker.check([(good[0], bytes(64), b"")]) == b"\x00"
    finally:
        worker.stop()
    assert ed25519_batch.encode_batch([]) == b"\x00\x00\x00\x00"


def test_a_stage_hands_on_every_operation_in_order_even_unchecked_ones(home):
    with Runtime(home) as rt:
        agent, _ = Client(rt).spawn_agent("staged")
        me = Client(rt, agent)
        pending = [Pending(me.sign(ops.EmitObservation(agent, {"i": i}))) for i in range(30)]
        for p in pending:
            rt._precheck(p, defer_signature=True)
        pending[3].signer_key = None  # as for a signer spawned in the same batch
        delivered: list[Pending] = []
        done = threading.Event()

        def deliver(batch: list[Pending]) -> None:
            delivered.extend(batch)
            if len(delivered) == len(pending):
                done.set()

        stage = signatures.SignatureStage(deliver)
        try:
            for p in pending:
                stage.put(p)
            assert done.wait(10)
        finally:
            stage.close()
        assert delivered == pending
        assert [p.authenticated for p in pending] == [i != 3 for i in range(30)]
        assert all(p.signer_key is None for p in pending)


def test_the_child_outlives_a_ctrl_c_and_ends_with_its_parents_pipe():
    import signal

    worker = signatures._Worker()
    try:
        key = KeyPair.from_seed(b"k")
        good = (raw_public_key(key.public_key), raw_signature(key.sign(b"x")), b"x")
        assert worker.check([good]) == b"\x01"  # started and serving
        worker._proc.send_signal(signal.SIGINT)  # what Ctrl-C sends the process group
        assert worker.check([good]) == b"\x01"
    finally:
        worker.stop()
    assert worker._proc.returncode == 0  # ended by its stdin closing, not killed
