"""Joining a shared log from another host: the kernel's secrets travel in a file, never
through the database.

Every host of a home must hold the same kernel secret (token MACs) and kernel key
(checkpoint and host-statement signatures), and they must not live in the log's
database: whoever takes the database must not be able to mint a token or sign a
checkpoint. ``export_kernel`` writes them (and the operator's key) to a 0600 file;
``join`` makes a new home on another host from it, against the same log. Agent keys
stay on the host that spawned the agent.
"""

from __future__ import annotations

import stat
from pathlib import Path

import msgspec

from toka.core.errors import HomeError, IntegrityFailure, InvalidInput
from toka.core.kernel.context import OPERATOR
from toka.core.log.store import StoreSpec
from toka.core.model import events as ev
from toka.core.model.keys import KeyPair, thumbprint
from toka.core.runtime.home import Home, private_dir, write_private

BUNDLE_FORMAT = "toka-kernel/1"
WARNING = (
    "SECRET. Whoever holds this file can mint capability tokens, sign checkpoints and act "
    "as the operator of Toka home {home_id}. Keep it 0600, move it only over a channel you "
    "trust (scp, a password manager), and delete it once the other host has joined."
)


class KernelBundle(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    format: str
    warning: str
    home_id: str
    kernel_secret: str  # hex
    kernel_key: str  # PEM
    operator_key: str  # PEM


def export_kernel(home: Home, path: Path) -> KernelBundle:
    """Write the kernel's secrets and the operator's key to ``path`` (0600, never over an
    existing file)."""
    home.require()
    log = home.open_store(readonly=True)
    try:
        home_id = log.meta("home_id") or ""
    finally:
        log.close()
    bundle = KernelBundle(
        BUNDLE_FORMAT,
        WARNING.format(home_id=home_id),
        home_id,
        home.secret().hex(),
        home.kernel_key().to_pem().decode(),
        home.keystore.load(OPERATOR).to_pem().decode(),
    )
    try:
        write_private(path, msgspec.json.format(msgspec.json.encode(bundle)) + b"\n")
    except FileExistsError:
        raise InvalidInput(
            f"{path} exists: the kernel bundle is never written over a file"
        ) from None
    return bundle


def load_bundle(path: Path) -> KernelBundle:
    try:
        st = path.stat()
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror or exc}") from None
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise InvalidInput(
            f"{path} holds the kernel's secrets but others may read it: chmod 600 {path}"
        )
    try:
        bundle = msgspec.json.decode(data, type=KernelBundle)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidInput(f"{path} is not a Toka kernel bundle: {exc}") from None
    if bundle.format != BUNDLE_FORMAT:
        raise InvalidInput(f"{path}: unsupported format {bundle.format!r} (want {BUNDLE_FORMAT})")
    return bundle


def join(home: Home, bundle_path: Path, store: StoreSpec) -> str:
    """Make ``home`` (a new one) a host of the log in ``store``, with the kernel secrets
    of ``bundle_path``. Returns the home id."""
    bundle = load_bundle(bundle_path)
    if home.secret_path.exists():
        raise HomeError(f"{home.root} is already a Toka home: join into a new directory")
    try:
        secret = bytes.fromhex(bundle.kernel_secret)
        kernel_key = KeyPair.from_pem(bundle.kernel_key.encode())
        operator = KeyPair.from_pem(bundle.operator_key.encode())
    except ValueError as exc:
        raise InvalidInput(f"{bundle_path}: a key in the bundle is unreadable: {exc}") from None
    private_dir(home.root)
    home.configure_store(store)
    log = home.open_store()
    try:
        head = log.head()[0]
        if head < 2:
            raise HomeError(
                f"the log at {log.location} is empty: nothing to join "
                "(`toka init --store URL` creates a home there)"
            )
        if log.meta("home_id") != bundle.home_id:
            raise HomeError(
                f"the log at {log.location} belongs to home {log.meta('home_id')}, "
                f"but {bundle_path} is home {bundle.home_id}'s"
            )
        genesis, root = log.record(1), log.record(2)
        assert genesis is not None and root is not None
        data = genesis.data()
        if not isinstance(data, ev.Genesis) or data.operator_key != operator.public_key:
            raise HomeError(f"{bundle_path}: its operator key is not the log's operator's")
        cp = log.latest_checkpoint()
        if cp is not None:
            try:
                cp.check_signature(kernel_key.public_key)
            except IntegrityFailure:
                raise HomeError(
                    f"{bundle_path}: its kernel key did not sign the log's checkpoints"
                ) from None
        grant = root.data()
    finally:
        log.close()
    private_dir(home.root)
    write_private(home.secret_path, secret)
    write_private(home.kernel_key_path, kernel_key.to_pem())
    home.keystore.save(OPERATOR, operator)
    private_dir(home.blobs)
    if not home.token_path.exists():
        from toka.core.model.state import Grant
        from toka.core.runtime.tokens import TokenAuthority

        assert isinstance(grant, ev.CapabilityGranted)
        token = TokenAuthority(secret, bundle.home_id).mint(
            Grant(**msgspec.structs.asdict(grant)), thumbprint(operator.public_key)
        )
        write_private(home.token_path, token.encode())
    return bundle.home_id
