"""Ed25519 signatures checked in batches, by a process of its own (``python -m`` this).

The runtime starts it for operations in flight (``toka.core.runtime.signatures``).
It reads batches on stdin and answers each with one byte per signature, 1 if it
verifies and 0 if not; it exits when stdin closes (the parent closed it, or died). It imports libsodium and nothing
of Toka's, so it starts in a few tens of milliseconds.

A batch is ``<count:u32>`` then, per signature, ``<public key:32><signature:64>
<length:u32><signed bytes>``, all little-endian.
"""

from __future__ import annotations

import signal
import struct
import sys
from collections.abc import Iterable
from typing import BinaryIO

import nacl.bindings
import nacl.exceptions

_COUNT = struct.Struct("<I")
KEY_BYTES, SIG_BYTES = 32, 64


def encode_batch(items: Iterable[tuple[bytes, bytes, bytes]]) -> bytes:
    """One request: ``items`` are (raw public key, raw signature, signed bytes)."""
    parts = [b""]
    n = 0
    for key, sig, body in items:
        parts += (key, sig, _COUNT.pack(len(body)), body)
        n += 1
    parts[0] = _COUNT.pack(n)
    return b"".join(parts)


def _read_exactly(stream: BinaryIO, n: int) -> bytes | None:
    data = stream.read(n)
    return data if data is not None and len(data) == n else None


def verdicts(stream: BinaryIO) -> bytes | None:
    """Read one batch from ``stream`` and check it; None at the end of the stream."""
    head = _read_exactly(stream, _COUNT.size)
    if head is None:
        return None
    (count,) = _COUNT.unpack(head)
    out = bytearray(count)
    for i in range(count):
        fixed = _read_exactly(stream, KEY_BYTES + SIG_BYTES + _COUNT.size)
        if fixed is None:
            return None
        (length,) = _COUNT.unpack_from(fixed, KEY_BYTES + SIG_BYTES)
        body = _read_exactly(stream, length) if length else b""
        if body is None:
            return None
        try:
            nacl.bindings.crypto_sign_open(
                fixed[KEY_BYTES : KEY_BYTES + SIG_BYTES] + body, fixed[:KEY_BYTES]
            )
            out[i] = 1
        except (nacl.exceptions.CryptoError, ValueError, TypeError):
            pass
    return bytes(out)


def main() -> None:
    # The parent decides when this ends (it closes stdin): Ctrl-C in the terminal
    # reaches the whole process group, and must not take the checks away mid-batch.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while (answer := verdicts(stdin)) is not None:
        stdout.write(answer)
        stdout.flush()


if __name__ == "__main__":
    main()
