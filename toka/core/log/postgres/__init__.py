"""The shared log: the same hash-chained rows in a PostgreSQL schema, through psycopg 3.

Runtimes on many hosts append to one linear history. One writer at a time: every
write transaction first takes a transaction-scoped advisory lock (it conflicts with
nothing else, not even autovacuum, and a writer that dies frees it), then reads the
head and appends ``head + 1`` onwards. Commit order is therefore seq order, and a
reader at ``seq > position`` never passes over a row that commits later. The
constraints hold even for a client that skips the lock: ``seq`` is the primary key,
``(seq, hash)`` is unique and every row references its predecessor's ``(seq, hash)``,
so a fork or a gap cannot commit; the tables that make history refuse UPDATE, DELETE
and TRUNCATE.

A lost connection while COMMIT was under way is an unknown outcome
(``CommitUnknown``): the caller looks the batch's operations up by nonce. Followers
``LISTEN`` before their first read and check the head every second besides, so a
missed notification or a reconnect never loses an event.
"""

from toka.core.log.postgres.driver import drop_log, has_password, redact
from toka.core.log.postgres.store import PostgresStore

__all__ = ["PostgresStore", "drop_log", "has_password", "redact"]
