"""The tables of a shared log, made once per schema, and the server settings it needs."""

from __future__ import annotations

from typing import Any

from toka.core.errors import StoreUnavailable
from toka.core.log.postgres.driver import LOCK_CLASS
from toka.core.log.store import GENESIS_PREV

PG_SCHEMA_VERSION = "1"

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta(
    key text PRIMARY KEY,
    value text NOT NULL
);
CREATE TABLE IF NOT EXISTS events(
    seq bigint PRIMARY KEY CHECK (seq > 0),
    ts bigint NOT NULL,
    kind text NOT NULL,
    principal text NOT NULL,
    grant_jti text,
    op_digest text NOT NULL,
    part integer NOT NULL,
    payload bytea NOT NULL,
    prev_hash text NOT NULL,
    hash text NOT NULL,
    prev_seq bigint GENERATED ALWAYS AS (NULLIF(seq - 1, 0)) STORED,
    UNIQUE (seq, hash),
    -- No fork, no gap: a row can only follow the committed row it names.
    FOREIGN KEY (prev_seq, prev_hash) REFERENCES events(seq, hash),
    -- One genesis.
    CHECK ((seq = 1) = (prev_hash = '{GENESIS_PREV}'))
);
CREATE INDEX IF NOT EXISTS events_rejected ON events(principal, ts)
    WHERE kind = 'operation.rejected';
CREATE TABLE IF NOT EXISTS operations(
    nonce text NOT NULL,
    digest text NOT NULL,
    principal text NOT NULL,
    kind text NOT NULL,
    signed bytea NOT NULL,
    status text NOT NULL,
    first_seq bigint,
    last_seq bigint,
    error_code text,
    error text,
    recorded bigint GENERATED ALWAYS AS IDENTITY,
    PRIMARY KEY (principal, nonce)
);
CREATE INDEX IF NOT EXISTS operations_first_seq ON operations(first_seq);
CREATE TABLE IF NOT EXISTS checkpoints(
    seq bigint PRIMARY KEY REFERENCES events(seq),
    ts bigint NOT NULL,
    head_hash text NOT NULL,
    state_hash text NOT NULL,
    sig text NOT NULL
);
CREATE TABLE IF NOT EXISTS snapshots(
    seq bigint PRIMARY KEY,
    state bytea NOT NULL
);
CREATE TABLE IF NOT EXISTS blobs(
    sha256 text PRIMARY KEY CHECK (sha256 ~ '^[0-9a-f]{{64}}$'),
    data bytea NOT NULL
);
CREATE OR REPLACE FUNCTION refuse_rewrite() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the Toka log is append-only: % on % refused', TG_OP, TG_TABLE_NAME;
END $$;
CREATE OR REPLACE TRIGGER events_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_rewrite();
CREATE OR REPLACE TRIGGER operations_append_only BEFORE UPDATE OR DELETE OR TRUNCATE
    ON operations FOR EACH STATEMENT EXECUTE FUNCTION refuse_rewrite();
CREATE OR REPLACE TRIGGER checkpoints_append_only BEFORE UPDATE OR DELETE OR TRUNCATE
    ON checkpoints FOR EACH STATEMENT EXECUTE FUNCTION refuse_rewrite();
"""


def table_missing(conn: Any, schema: str) -> bool:
    return conn.execute("SELECT to_regclass(%s)", (f"{schema}.events",)).fetchone()[0] is None


def create(conn: Any, schema: str) -> None:
    """Make the tables (once: a current schema is left alone, DDL takes strong locks)."""
    if not table_missing(conn, schema):
        row = conn.execute("SELECT value FROM meta WHERE key = 'pg_schema_version'").fetchone()
        if row is not None and row[0] == PG_SCHEMA_VERSION:
            return
    with conn.transaction():
        # Two hosts initialising at once: one creates, the other finds it done.
        conn.execute("SELECT pg_advisory_xact_lock(%s, 0)", (LOCK_CLASS,))
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        conn.execute(SCHEMA)
        conn.execute(
            "INSERT INTO meta(key, value) VALUES ('pg_schema_version', %s)"
            " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            (PG_SCHEMA_VERSION,),
        )


def check_durability(conn: Any, location: str, durability: str) -> None:
    """Refuse a server that cannot keep what it acknowledges."""
    fsync, fpw, sync = conn.execute(
        "SELECT current_setting('fsync'), current_setting('full_page_writes'),"
        " current_setting('synchronous_commit')"
    ).fetchone()
    for name, value in (("fsync", fsync), ("full_page_writes", fpw)):
        if value == "off":
            raise StoreUnavailable(
                f"the PostgreSQL server at {location} runs with {name}=off: a crash "
                "could lose or corrupt acknowledged operations; Toka will not write to it"
            )
    if sync == "off" and durability == "full":
        raise StoreUnavailable(
            f"the PostgreSQL server at {location} runs with synchronous_commit=off: "
            "an acknowledged operation could be lost in a crash; set it to on "
            "(or run with durability normal, which accepts that)"
        )
