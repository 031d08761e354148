"""Durable audit sinks users can adopt as is: an append-only PostgreSQL table and a JSON-lines file.

Both run on the emitter's background thread (see ``activities/audit/events.py``), so they are plain
synchronous code. Both are idempotent by ``event_id``: PostgreSQL by primary key
(``ON CONFLICT DO NOTHING``), the file by remembering the ids it wrote in this process (a file is
at-least-once across processes; readers dedupe by ``event_id``).
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Final

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from fleetway.activities.audit.events import AuditEvent
from fleetway.activities.database_target import check_pg_identifier
from fleetway.activities.errors import AuditNotWritableError, AuditSinkError
from fleetway.activities.postgres.ddl import ensure_objects_sync, table_identifier

__all__ = ["JsonlAuditSink", "PostgresAuditSink"]

_COLUMNS: Final = (
    "event_id", "type", "target", "principal", "started_at", "completed_at", "outcome", "version",
    "from_state", "to_state", "error_class", "git_sha", "pipeline_run_id", "attributes",
)  # fmt: skip


class PostgresAuditSink:
    """Appends events to an append-only ``table`` that :meth:`install` created once.

    Triggers refuse UPDATE, DELETE and TRUNCATE for every role (dropping the triggers needs the
    table's owner). The sink's own login needs INSERT and SELECT on the table and nothing more:
    it never runs DDL (``fleetway audit init`` does, once, with an owner's credentials), and on
    every (re)connect it checks it may insert, so a role without the grant is named at once
    (:class:`AuditNotWritableError`, a configuration error) instead of failing every event.
    """

    def __init__(self, dsn: str, *, table: str = "fleetway_audit_events") -> None:
        # 51 characters leave room for the trigger and index names derived from the table's.
        self._table = table_identifier(table, what="audit", max_name=51)
        self._dsn = dsn
        self._name = table
        schema, _, name = table.rpartition(".")
        self._function = sql.Identifier(*(s for s in (schema, f"{name}_append_only") if s))
        self._trigger_row = sql.Identifier(f"{name}_no_update_delete")
        self._trigger_stmt = sql.Identifier(f"{name}_no_truncate")
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()

    def install(self, *, grant_to: str = "") -> None:
        """Create the table, its index and append-only triggers (idempotent); grant a writer role.

        Needs an owner's login (the DSN given): CREATE on the schema. ``grant_to``: the role the
        workers' sink logs in as, given INSERT and SELECT on the table and nothing more.
        """
        with psycopg.connect(self._dsn, autocommit=True, connect_timeout=10) as conn:
            ensure_objects_sync(conn, f"fleetway.audit.{self._name}", *self._ddl())
            if grant_to:
                conn.execute(
                    sql.SQL("GRANT INSERT, SELECT ON {} TO {}").format(
                        self._table, sql.Identifier(check_pg_identifier(grant_to, field="audit writer role"))
                    )
                )

    def verify(self) -> None:
        """Connect and check the table exists and this login may insert into it.

        Raises:
            AuditNotWritableError: the table is missing, or the login lacks INSERT on it.
            AuditSinkError: the database could not be reached (retryable).
        """
        with self._lock:
            self._drop()
            self._connection()

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            try:
                conn = psycopg.connect(self._dsn, autocommit=True, connect_timeout=10)
            except psycopg.Error as exc:
                raise AuditSinkError(f"audit sink unreachable ({type(exc).__name__})") from None
            exists, may_insert = conn.execute(
                "SELECT t IS NOT NULL, t IS NOT NULL AND has_table_privilege(t, 'INSERT') "
                "FROM (SELECT to_regclass(%s) AS t) AS found",
                (self._name,),
            ).fetchone() or (False, False)
            if not exists or not may_insert:
                conn.close()
                raise AuditNotWritableError(
                    f"audit table {self._name!r} does not exist: create it once with 'fleetway audit init' "
                    "(an owner's credentials)"
                    if not exists
                    else f"the audit sink's login may not INSERT into {self._name!r}: GRANT INSERT, SELECT "
                    f"ON {self._name} TO <its role> (or 'fleetway audit init --grant-to ROLE')"
                )
            self._conn = conn
        return self._conn

    def _ddl(self) -> list[sql.Composed]:
        t = self._table
        return [
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (event_id TEXT PRIMARY KEY, type TEXT NOT NULL, "
                "target TEXT NOT NULL, principal TEXT NOT NULL, started_at TIMESTAMPTZ, "
                "completed_at TIMESTAMPTZ, outcome TEXT NOT NULL, version TEXT NOT NULL, "
                "from_state TEXT NOT NULL, to_state TEXT NOT NULL, error_class TEXT NOT NULL, "
                "git_sha TEXT NOT NULL, pipeline_run_id TEXT NOT NULL, attributes JSONB NOT NULL, "
                "recorded_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            ).format(t),
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (target, completed_at)").format(
                sql.Identifier(f"{self._name.rpartition('.')[2]}_target_idx"), t
            ),
            sql.SQL(
                "CREATE OR REPLACE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'audit table % is append-only', TG_TABLE_NAME "
                "USING ERRCODE = 'insufficient_privilege'; END $$"
            ).format(self._function),
            sql.SQL(
                "CREATE OR REPLACE TRIGGER {} BEFORE UPDATE OR DELETE ON {} "
                "FOR EACH ROW EXECUTE FUNCTION {}()"
            ).format(self._trigger_row, t, self._function),
            sql.SQL(
                "CREATE OR REPLACE TRIGGER {} BEFORE TRUNCATE ON {} FOR EACH STATEMENT EXECUTE FUNCTION {}()"
            ).format(self._trigger_stmt, t, self._function),
        ]

    def record(self, event: AuditEvent) -> None:
        """Insert the event unless its ``event_id`` is already there. Reconnects once if dropped."""
        data = event.model_dump(mode="python")
        values = [Jsonb(data[c]) if c == "attributes" else data[c] for c in _COLUMNS]
        values[1], values[6] = event.type.value, event.outcome.value
        statement = sql.SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT (event_id) DO NOTHING").format(
            self._table,
            sql.SQL(", ").join(map(sql.Identifier, _COLUMNS)),
            sql.SQL(", ").join(sql.Placeholder() * len(_COLUMNS)),
        )
        with self._lock:
            try:
                self._insert(statement, values)
            except psycopg.OperationalError:
                self._drop()
                self._insert(statement, values)

    def _insert(self, statement: sql.Composed, values: list[Any]) -> None:
        try:
            self._connection().execute(statement, values)
        except psycopg.errors.InsufficientPrivilege:
            raise AuditNotWritableError(
                f"the audit sink's login may no longer INSERT into {self._name!r} (privilege revoked)"
            ) from None

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._drop()


class JsonlAuditSink:
    """Appends one JSON object per line to ``path`` (created 0600), flushed and fsynced per event."""

    def __init__(self, path: Path, *, remember: int = 100_000) -> None:
        self._path = path
        self._remember = remember
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._file = os.fdopen(fd, "a", encoding="utf-8")

    def verify(self) -> None:
        """The file was opened for appending at construction: nothing more to check."""

    def record(self, event: AuditEvent) -> None:
        """Append the event unless this process already wrote its ``event_id``."""
        with self._lock:
            if event.event_id in self._seen:
                return
            self._file.write(json.dumps(event.model_dump(mode="json"), separators=(",", ":")) + "\n")
            self._file.flush()
            os.fsync(self._file.fileno())
            self._seen[event.event_id] = None
            if len(self._seen) > self._remember:
                self._seen.popitem(last=False)

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._file.close()
