"""The Toka home: where the log, the kernel secret, the keystore and config live."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
import time
from pathlib import Path

import msgspec

from toka.core.errors import HomeError, InvalidInput
from toka.core.log import backends
from toka.core.log.store import (
    DEFAULT_SCHEMA,
    Store,
    StoreSpec,
    check_schema,
    parse_location,
)
from toka.core.model.keys import (
    KeyPair,
    agent_id_for,
    check_principal,
    public_key_from_pem,
    thumbprint,
)
from toka.core.typed_toml import load_toml

SECRET_BYTES = 32


class Config(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    durability: str = "full"
    checkpoint_interval: int = 1000
    snapshot_every: int = 10
    op_max_age_s: int = 24 * 3600
    op_max_skew_s: int = 300
    store: str = ""
    store_schema: str = DEFAULT_SCHEMA
    store_lock_timeout_s: int = 30
    store_idle_timeout_s: int = 60


DEFAULT_CONFIG = """\
# Toka configuration. Command-line flags override these values.

# "full": every acknowledged operation survives power loss (the WAL is synced in every
# commit; concurrent submissions share one commit).
# "normal": survives a crash of the process, may lose the last commits on power loss.
durability = "full"

# A signed checkpoint every this many events (its state hash costs a full state encode).
checkpoint_interval = 1000

# A state snapshot (for fast start-up) at every this many checkpoints; the last 3 are kept.
snapshot_every = 10

# How old (seconds) a signed operation may be when submitted, and how far in the future.
op_max_age_s = 86400
op_max_skew_s = 300
"""

STORE_CONFIG = """
# The log: a PostgreSQL database shared by every host of this home (no password here:
# libpq reads ~/.pgpass, PGPASSFILE, PGPASSWORD, a service file or a client certificate).
store = {url}
store_schema = {schema}
# How long a writer waits for the log's lock, and how long a writer may sit idle
# inside its transaction before the server ends it (seconds).
store_lock_timeout_s = 30
store_idle_timeout_s = 60
"""


def default_home() -> Path:
    env = os.environ.get("TOKA_HOME")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("toka", appauthor=False))


def write_private(path: Path, data: bytes) -> None:
    """Create a file readable by its owner only; never overwrite an existing one."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def private_dir(path: Path) -> None:
    """A directory only its owner can enter, whatever mode it had or the umask says."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)


def wider_than_private(root: Path) -> list[Path]:
    """The home itself and everything under it that others may read, write or enter
    (directories should be 0700, files 0600)."""
    wide = []
    for path in [root, *sorted(root.rglob("*"))]:
        try:
            mode = path.lstat().st_mode
        except FileNotFoundError:
            continue  # removed meanwhile (a -shm file, a temporary blob)
        if stat.S_IMODE(mode) & 0o077 and not stat.S_ISLNK(mode):
            wide.append(path)
    return wide


class Keystore:
    """Private keys on disk, one 0600 PEM file per principal."""

    def __init__(self, directory: Path):
        self.directory = directory

    def path(self, principal: str) -> Path:
        return self.directory / f"{check_principal(principal)}.key"

    def has(self, principal: str) -> bool:
        return self.path(principal).exists()

    def save(self, principal: str, key: KeyPair) -> None:
        private_dir(self.directory)
        write_private(self.path(principal), key.to_pem())

    def save_agent_key(self, key: KeyPair | None = None) -> tuple[str, KeyPair]:
        """Keep an agent's key pair (a fresh one unless given) under the id it derives."""
        key = key or KeyPair.generate()
        agent_id = agent_id_for(key.public_key)
        if not self.has(agent_id):
            self.save(agent_id, key)
        return agent_id, key

    def load(self, principal: str) -> KeyPair:
        path = self.path(principal)
        try:
            return KeyPair.from_pem(path.read_bytes())
        except FileNotFoundError as exc:
            raise HomeError(f"no private key for {principal!r} in {self.directory}") from exc


MAX_SECRET_BYTES = 16 * 1024


class SecretStore:
    """Values tools may use but the log never holds (an API token for ``http-fetch``'s
    ``secret_headers``): one 0600 file per name in ``HOME/secrets/``. Only names travel
    in operations and events."""

    def __init__(self, directory: Path):
        self.directory = directory

    def path(self, name: str) -> Path:
        from toka.core.model.places import SECRET_NAME_RE  # a home opened to read needs none

        if not isinstance(name, str) or not SECRET_NAME_RE.match(name):
            raise InvalidInput(
                f"invalid secret name {name!r} (a letter or digit, then up to 63 of "
                "letters, digits, _ . -)"
            )
        return self.directory / name

    def set(self, name: str, value: bytes) -> None:
        """Store (or replace) a secret; a value is one line of at most 16 KiB."""
        path = self.path(name)
        value = value.rstrip(b"\r\n")
        if not value:
            raise InvalidInput(f"secret {name}: the value is empty")
        if len(value) > MAX_SECRET_BYTES or b"\n" in value or b"\r" in value or b"\0" in value:
            raise InvalidInput(
                f"secret {name}: the value must be one line of at most {MAX_SECRET_BYTES} bytes"
            )
        private_dir(self.directory)
        aside = path.with_name(f".{name}.{secrets.token_hex(4)}")
        write_private(aside, value)
        os.replace(aside, path)

    def get(self, name: str) -> bytes:
        path = self.path(name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            raise InvalidInput(f"secret {name!r} is not set (toka secret set {name})") from None
        except OSError as exc:
            raise HomeError(f"cannot read secret {name!r}: {exc.strerror or exc}") from None
        with os.fdopen(fd, "rb") as fh:
            return fh.read(MAX_SECRET_BYTES + 1)

    def names(self) -> list[str]:
        from toka.core.model.places import SECRET_NAME_RE

        if not self.directory.is_dir():
            return []
        return sorted(p.name for p in self.directory.iterdir() if SECRET_NAME_RE.match(p.name))

    def remove(self, name: str) -> None:
        try:
            self.path(name).unlink()
        except FileNotFoundError:
            raise InvalidInput(f"secret {name!r} is not set") from None


class Home:
    """Paths and files of one Toka installation."""

    def __init__(
        self,
        root: Path | str | None = None,
        *,
        store: str | None = None,
        store_schema: str | None = None,
    ):
        self.root = Path(root).expanduser() if root is not None else default_home()
        # Where the log is for this invocation, over the config (--store, TOKA_STORE).
        self._store = store or os.environ.get("TOKA_STORE") or None
        self._store_schema = store_schema or os.environ.get("TOKA_STORE_SCHEMA") or None
        self.db_path = self.root / "toka.db"
        self.secret_path = self.root / "kernel.secret"
        self.config_path = self.root / "config.toml"
        self.token_path = self.root / "operator.token"
        self.blobs = self.root / "blobs"
        self.logs = self.root / "logs"  # what servers Toka starts write on stderr
        self.keystore = Keystore(self.root / "keys")
        self.secrets = SecretStore(self.root / "secrets")
        self.kernel_key_path = self.root / "kernel.key"

    def exists(self) -> bool:
        if not self.secret_path.exists():
            return False
        return self.store_spec().is_postgres or self.db_path.exists()

    def store_spec(self) -> StoreSpec:
        """Where this home's log is: the override, else the config, else ``HOME/toka.db``."""
        if self._store:
            return parse_location(self._store, self._store_schema)
        cfg = self.config()
        if cfg.store:
            return parse_location(cfg.store, self._store_schema or cfg.store_schema)
        return StoreSpec("")

    def open_store(
        self, durability: str = "full", *, readonly: bool = False, listen: bool = False
    ) -> Store:
        cfg = self.config()
        return backends.open_store(
            self.store_spec(),
            self.db_path,
            durability,
            readonly=readonly,
            listen=listen,
            timeouts=(cfg.store_lock_timeout_s, cfg.store_idle_timeout_s),
        )

    def store_location(self) -> str:
        spec = self.store_spec()
        if spec.is_postgres:
            from toka.core.log.postgres import redact

            return f"{redact(spec.url)} (schema {spec.schema})"
        return spec.url.removeprefix("sqlite://") or str(self.db_path)

    def require(self) -> None:
        if not self.exists():
            raise HomeError(f"no Toka home at {self.root}: run `toka init` first")

    def secret(self) -> bytes:
        try:
            data = self.secret_path.read_bytes()
        except FileNotFoundError as exc:
            raise HomeError(f"kernel secret missing: {self.secret_path}") from exc
        if len(data) < SECRET_BYTES:
            raise HomeError(
                f"kernel secret {self.secret_path} is shorter than {SECRET_BYTES} bytes"
            )
        return data

    def kernel_key(self) -> KeyPair:
        """The kernel's Ed25519 key that signs checkpoints; created on first need, so homes
        made before checkpoints existed get one too. Never replaced once it exists."""
        path = self.kernel_key_path
        if not path.exists():
            # Written aside and linked into place: a concurrent reader never sees a
            # half-written key, and if another process links first, theirs is the key.
            aside = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
            write_private(aside, KeyPair.generate().to_pem())
            try:
                with contextlib.suppress(FileExistsError):
                    os.link(aside, path)
            finally:
                aside.unlink()
        return KeyPair.from_pem(path.read_bytes())

    def kernel_public_key(self) -> str | None:
        """The checkpoint-signing public key, or None if no checkpoint key exists yet."""
        try:
            data = self.kernel_key_path.read_bytes()
        except FileNotFoundError:
            return None
        return public_key_from_pem(data)

    def configure_store(self, store: StoreSpec) -> None:
        """Keep ``store`` in the config (written once; a different one is refused)."""
        if store.is_postgres:
            from toka.core.log.postgres import has_password

            if has_password(store.url):
                raise InvalidInput(
                    "the store URL holds a password, which would be kept in the config: "
                    "leave it out and let libpq find it (~/.pgpass, PGPASSFILE, PGPASSWORD, "
                    "a service file or a client certificate)"
                )
        if self.config_path.exists():
            current = self.config()
            configured = (
                parse_location(current.store, current.store_schema) if current.store else None
            )
            if configured != store:
                raise HomeError(
                    f"{self.config_path} already names another log; "
                    "edit it, or use a new home for this store"
                )
        else:
            text = DEFAULT_CONFIG + STORE_CONFIG.format(
                url=json.dumps(store.url), schema=json.dumps(store.schema)
            )
            write_private(self.config_path, text.encode())
        self._store, self._store_schema = store.url, store.schema

    def config(self) -> Config:
        try:
            text = self.config_path.read_text()
        except FileNotFoundError:
            return Config()
        cfg = load_toml(text, Config, str(self.config_path))
        if cfg.durability not in ("full", "normal"):
            raise InvalidInput(f"{self.config_path}: durability must be 'full' or 'normal'")
        if cfg.checkpoint_interval < 1:
            raise InvalidInput(f"{self.config_path}: checkpoint_interval must be at least 1")
        if cfg.snapshot_every < 1:
            raise InvalidInput(f"{self.config_path}: snapshot_every must be at least 1")
        if cfg.store:
            parse_location(cfg.store)
        check_schema(cfg.store_schema)
        if cfg.store_lock_timeout_s < 1 or cfg.store_idle_timeout_s < 1:
            raise InvalidInput(
                f"{self.config_path}: store_lock_timeout_s and store_idle_timeout_s "
                "must be at least 1"
            )
        return cfg

    def init(
        self,
        *,
        operator_key: KeyPair | None = None,
        now: float | None = None,
        home_id: str | None = None,
        store: StoreSpec | None = None,
    ) -> bool:
        """Create the home (its log in ``store``: default, the home's SQLite file).
        Returns False (and changes nothing) if it already exists.

        Safe to re-run after an interrupted init: it completes what is missing and
        never replaces a secret, a key or an event.
        """
        # Here, not at the top: reading a home (toka.core.runtime.view) needs no kernel.
        from toka.core.kernel.context import KERNEL, MAX_TTL_S, OPERATOR
        from toka.core.model import events as ev

        private_dir(self.root)
        if store is not None and store.url:
            self.configure_store(store)
        fresh = not self.secret_path.exists()
        log = self.open_store()
        try:
            if log.head()[0] > 0:
                if fresh and self.store_spec().is_postgres:
                    raise HomeError(
                        f"the log at {log.location} already belongs to home "
                        f"{log.meta('home_id')}: join it with `toka init --store URL --join "
                        "FILE` (FILE from `toka home export-kernel` on one of its hosts)"
                    )
                if not self.secret_path.exists() or not self.keystore.has(OPERATOR):
                    raise HomeError(
                        f"{self.root} has a log but its kernel secret or operator key is missing"
                    )
                return False
            if not self.secret_path.exists():
                write_private(self.secret_path, secrets.token_bytes(SECRET_BYTES))
            if not self.keystore.has(OPERATOR):
                self.keystore.save(OPERATOR, operator_key or KeyPair.generate())
            self.kernel_key()
            if not self.config_path.exists():
                write_private(self.config_path, DEFAULT_CONFIG.encode())
            private_dir(self.blobs)
            operator = self.keystore.load(OPERATOR)
            ts = int((time.time() if now is None else now) * 1000)
            home_id = home_id or secrets.token_hex(8)
            genesis = ev.Genesis(home_id, OPERATOR, operator.public_key, ts)
            root = ev.CapabilityGranted(
                jti="gr-2",
                subject=OPERATOR,
                caps=["*:*"],
                issuer=KERNEL,
                parent=None,
                iat=ts // 1000,
                exp=ts // 1000 + MAX_TTL_S,
            )
            with log.write():
                prev = log.append(
                    "0" * 64,
                    1,
                    ts,
                    "log.genesis",
                    KERNEL,
                    None,
                    "genesis",
                    0,
                    ev.encode_payload(genesis),
                )
                log.append(
                    prev,
                    2,
                    ts,
                    "capability.granted",
                    KERNEL,
                    None,
                    "genesis",
                    1,
                    ev.encode_payload(root),
                )
                log.set_meta("home_id", home_id)
        finally:
            log.close()
        if not self.token_path.exists():
            from toka.core.model.state import Grant
            from toka.core.runtime.tokens import TokenAuthority

            grant = Grant(**msgspec.structs.asdict(root))
            token = TokenAuthority(self.secret(), home_id).mint(
                grant, thumbprint(operator.public_key)
            )
            write_private(self.token_path, token.encode())
        return True
