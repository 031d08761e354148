"""The deployment quiesce flag: one switch that stops every rollout's dispatching.

Semantics (go-bricks ``quiesce``): one row per scope (``global``); ``set`` takes a principal, a
reason and a TTL (zero means 30 min, more than 2 h is clamped, negative is an error) and renews
an active flag; reads treat ``now >= expires_at`` as released (no sweeper); ``clear`` works on an
active or expired-but-uncleared flag. The PostgreSQL controller uses the database clock, so
workers with skewed clocks agree. Must not: log a DSN.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Final, Protocol

import psycopg
from psycopg import sql
from pydantic import BaseModel
from temporalio import activity

from fleetway.activities.audit.events import UNSPECIFIED_PRINCIPAL, AuditEvent, AuditEventType, AuditOutcome
from fleetway.activities.backend_identity import check_backend
from fleetway.activities.database_target import check_pg_identifier
from fleetway.activities.errors import (
    FleetwayError,
    InvalidQuiesceTtlError,
    QuiesceBackendError,
    QuiesceNotSetError,
    QuiesceStoreNotWritableError,
    to_application_error,
)
from fleetway.activities.postgres.ddl import ensure_objects, table_identifier
from fleetway.activities.wire import WIRE_MODEL

__all__ = [
    "DEFAULT_TTL",
    "GLOBAL_SCOPE",
    "MAX_TTL",
    "CheckQuiesceInput",
    "MemoryQuiesceController",
    "PostgresQuiesceController",
    "QuiesceActivities",
    "QuiesceController",
    "QuiesceStatus",
    "effective_ttl",
    "quiesce_audit_event",
]

GLOBAL_SCOPE: Final = "global"
DEFAULT_TTL: Final = timedelta(minutes=30)
MAX_TTL: Final = timedelta(hours=2)


class QuiesceStatus(BaseModel):
    """A full snapshot of one scope's flag."""

    model_config = WIRE_MODEL

    scope: str = GLOBAL_SCOPE
    active: bool = False
    expired: bool = False
    cleared: bool = False
    set_by: str = ""
    reason: str = ""
    set_at: datetime | None = None
    expires_at: datetime | None = None
    cleared_by: str = ""
    cleared_at: datetime | None = None


def quiesce_audit_event(status: QuiesceStatus) -> AuditEvent:
    """The ``quiesce.set`` / ``quiesce.cleared`` event for a snapshot returned by set or clear."""
    cleared = status.cleared or not status.active
    moment = status.cleared_at if cleared else status.set_at
    return AuditEvent(
        event_id=f"{'quiesce.cleared' if cleared else 'quiesce.set'}/{status.scope}/{uuid.uuid4()}",
        type=AuditEventType.QUIESCE_CLEARED if cleared else AuditEventType.QUIESCE_SET,
        target=status.scope,
        principal=status.cleared_by if cleared else status.set_by,
        started_at=moment,
        completed_at=moment,
        outcome=AuditOutcome.SUCCESS,
        attributes={
            "quiesce.reason": status.reason,
            "quiesce.expires_at": status.expires_at.isoformat() if status.expires_at else "",
        },
    )


def effective_ttl(ttl: timedelta) -> timedelta:
    """Zero becomes :data:`DEFAULT_TTL`, anything over :data:`MAX_TTL` is clamped.

    Raises:
        InvalidQuiesceTtlError: ``ttl`` is negative.
    """
    if ttl < timedelta(0):
        raise InvalidQuiesceTtlError("quiesce ttl must not be negative")
    if ttl == timedelta(0):
        return DEFAULT_TTL
    return min(ttl, MAX_TTL)


def _principal(principal: str) -> str:
    return principal.strip() or UNSPECIFIED_PRINCIPAL


class QuiesceController(Protocol):
    """Reads and writes the quiesce flag of one scope."""

    @property
    def description(self) -> str:
        """Which store, without a credential: the same on every worker a rollout may run on."""
        ...

    async def status(self) -> QuiesceStatus:
        """Return the current snapshot (expired flags read as not active)."""
        ...

    async def set(self, *, principal: str, reason: str, ttl: timedelta) -> QuiesceStatus:
        """Set or renew the flag."""
        ...

    async def clear(self, *, principal: str) -> QuiesceStatus:
        """Clear an active or expired-but-uncleared flag."""
        ...


def _snapshot(row: tuple[object, ...] | None, now: datetime, scope: str) -> QuiesceStatus:
    if row is None:
        return QuiesceStatus(scope=scope)
    active, set_by, reason, set_at, expires_at, cleared_by, cleared_at = row
    assert isinstance(expires_at, datetime)  # noqa: S101 - NOT NULL column
    raised = bool(active)
    return QuiesceStatus(
        scope=scope,
        active=raised and now < expires_at,
        expired=raised and now >= expires_at,
        cleared=not raised,
        set_by=str(set_by or ""),
        reason=str(reason or ""),
        set_at=set_at,
        expires_at=expires_at,
        cleared_by=str(cleared_by or ""),
        cleared_at=cleared_at,
    )


class MemoryQuiesceController:
    """In-process flag, for tests and single-process embedding."""

    def __init__(self, scope: str = GLOBAL_SCOPE) -> None:
        self._scope = scope
        self._row: tuple[object, ...] | None = None
        self.description = "memory (this process only)"

    async def status(self) -> QuiesceStatus:
        """See :class:`QuiesceController`."""
        return _snapshot(self._row, datetime.now(UTC), self._scope)

    async def set(self, *, principal: str, reason: str, ttl: timedelta) -> QuiesceStatus:
        """See :class:`QuiesceController`."""
        now = datetime.now(UTC)
        self._row = (True, _principal(principal), reason, now, now + effective_ttl(ttl), "", None)
        return await self.status()

    async def clear(self, *, principal: str) -> QuiesceStatus:
        """See :class:`QuiesceController`."""
        if self._row is None or not self._row[0]:
            raise QuiesceNotSetError("no quiesce flag to clear")
        self._row = (False, *self._row[1:5], _principal(principal), datetime.now(UTC))
        return await self.status()


class PostgresQuiesceController:
    """The flag as a row in a control-plane table; single statements keep concurrent operators safe.

    The table is created once by :meth:`install` (``fleetway quiesce init``, an owner's login);
    operators' logins need SELECT, INSERT and UPDATE on it, workers' logins SELECT only, and
    nobody here runs DDL: a missing table or grant is named (:class:`QuiesceStoreNotWritableError`).
    """

    def __init__(self, dsn: str, *, table: str = "fleetway_quiesce", scope: str = GLOBAL_SCOPE) -> None:
        self._table = table_identifier(table, what="quiesce")
        self._dsn = dsn
        self._table_name = table
        self._scope = scope

    async def install(self, *, grant_to: str = "", grant_read_to: str = "") -> None:
        """Create the table (idempotent); grant operators' and workers' roles what each needs."""
        async with await psycopg.AsyncConnection.connect(
            self._dsn, autocommit=True, connect_timeout=10
        ) as conn:
            await ensure_objects(
                conn,
                f"fleetway.quiesce.{self._table_name}",
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (scope TEXT PRIMARY KEY, active BOOLEAN NOT NULL, "
                    "set_by TEXT NOT NULL, reason TEXT NOT NULL, set_at TIMESTAMPTZ NOT NULL, "
                    "expires_at TIMESTAMPTZ NOT NULL, cleared_by TEXT, cleared_at TIMESTAMPTZ)"
                ).format(self._table),
            )
            for role, rights in ((grant_to, "SELECT, INSERT, UPDATE"), (grant_read_to, "SELECT")):
                if role:
                    await conn.execute(
                        sql.SQL(f"GRANT {rights} ON {{}} TO {{}}").format(
                            self._table, sql.Identifier(check_pg_identifier(role, field="quiesce role"))
                        )
                    )

    @property
    def description(self) -> str:
        """Which store this is, without a credential: what a rollout pins (``backend_identity``)."""
        info = psycopg.conninfo.conninfo_to_dict(self._dsn)
        where = f"{info.get('host', '')}:{info.get('port', 5432)}/{info.get('dbname', '')}"
        return f"postgres {where} table {self._table_name} scope {self._scope}"

    async def _execute(
        self, query: sql.Composed, params: tuple[object, ...]
    ) -> tuple[tuple[object, ...] | None, datetime]:
        try:
            async with await psycopg.AsyncConnection.connect(
                self._dsn, autocommit=True, connect_timeout=10
            ) as conn:
                row = await (await conn.execute(query, params)).fetchone()
        except psycopg.errors.UndefinedTable:
            raise QuiesceStoreNotWritableError(
                f"quiesce table {self._table_name!r} does not exist: create it once with "
                "'fleetway quiesce init' (an owner's credentials)"
            ) from None
        except psycopg.errors.InsufficientPrivilege:
            raise QuiesceStoreNotWritableError(
                f"this login may not use quiesce table {self._table_name!r}: operators need SELECT, INSERT, "
                "UPDATE, workers SELECT ('fleetway quiesce init --grant-to ROLE --grant-read-to ROLE')"
            ) from None
        except psycopg.Error as exc:
            raise QuiesceBackendError(f"quiesce table access failed ({type(exc).__name__})") from None
        if row is None:
            return None, datetime.now(UTC)  # no row: nothing is compared with the clock
        *columns, now = row
        assert isinstance(now, datetime)  # noqa: S101 - the now() column
        return tuple(columns), now

    # now() rides in the same statement: one round trip, and the database clock decides expiry.
    _COLUMNS: Final = "active, set_by, reason, set_at, expires_at, cleared_by, cleared_at, now()"

    async def status(self) -> QuiesceStatus:
        """See :class:`QuiesceController`."""
        query = sql.SQL("SELECT " + self._COLUMNS + " FROM {} WHERE scope = %s").format(self._table)
        row, now = await self._execute(query, (self._scope,))
        return _snapshot(row, now, self._scope)

    async def set(self, *, principal: str, reason: str, ttl: timedelta) -> QuiesceStatus:
        """See :class:`QuiesceController`."""
        query = sql.SQL(
            "INSERT INTO {} AS q (scope, active, set_by, reason, set_at, expires_at) "
            "VALUES (%s, true, %s, %s, now(), now() + %s) ON CONFLICT (scope) DO UPDATE SET "
            "active = true, set_by = excluded.set_by, reason = excluded.reason, set_at = excluded.set_at, "
            "expires_at = excluded.expires_at, cleared_by = NULL, cleared_at = NULL RETURNING "
            + self._COLUMNS
        ).format(self._table)
        row, now = await self._execute(
            query, (self._scope, _principal(principal), reason, effective_ttl(ttl))
        )
        return _snapshot(row, now, self._scope)

    async def clear(self, *, principal: str) -> QuiesceStatus:
        """See :class:`QuiesceController`.

        Raises:
            QuiesceNotSetError: never set, or already cleared.
        """
        query = sql.SQL(
            "UPDATE {} SET active = false, cleared_by = %s, cleared_at = now() "
            "WHERE scope = %s AND active RETURNING " + self._COLUMNS
        ).format(self._table)
        row, now = await self._execute(query, (_principal(principal), self._scope))
        if row is None:
            raise QuiesceNotSetError("no quiesce flag to clear")
        return _snapshot(row, now, self._scope)


class CheckQuiesceInput(BaseModel):
    """Which store the rollout pinned ("": none pinned, any worker's store answers)."""

    model_config = WIRE_MODEL

    pinned: str = ""


class QuiesceActivities:
    """The quiesce-check activity that rollouts run before each dispatch."""

    def __init__(self, controller: QuiesceController) -> None:
        self._controller = controller

    @activity.defn(name="check_quiesce")
    async def check_quiesce(self, request: CheckQuiesceInput | None = None) -> QuiesceStatus:
        """Return the flag's snapshot; the workflow fails open if the store fails.

        A worker whose store is not the one the rollout pinned refuses, retryably
        (``worker_config_mismatch``): the check moves to a worker that reads the pinned store,
        so a worker deployed without ``quiesce.dsn`` never runs a guarded rollout unguarded.
        """
        try:
            if request is not None:
                check_backend("quiesce store", "default", self._controller, request.pinned)
            return await self._controller.status()
        except FleetwayError as exc:
            raise to_application_error(exc) from None
