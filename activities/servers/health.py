"""One cheap look at a tenant's database server: does it answer, and is it fit for a migration now.

Connects with a tenant's own login (the rollout names the tenant, never the secret), read-only,
with short timeouts, and reads only what the rollout's thresholds ask for. A server that does not
answer, refuses connections or is shutting down is ``unreachable``; one that answers a login
problem of its own (a missing database, a bad password) is fit: that is the tenant's to report.
"""

from __future__ import annotations

from typing import Final

import psycopg

from fleetway.activities.database_target import DatabaseTarget, libpq_conninfo, server_key
from fleetway.activities.servers.models import HealthState, ServerControls, ServerHealth

__all__ = ["check_health"]

_CONNECT_TIMEOUT_S: Final = 5
_STATEMENT_TIMEOUT_MS: Final = 5000
# The server is not there for anyone: connection failures, shutdown, starting up, full.
_UNREACHABLE: Final = ("08", "57P01", "57P02", "57P03", "53")
# Client slots left: what a new session (a tenant's Flyway run) can still get.
_FREE_CONNECTIONS: Final = (
    "SELECT current_setting('max_connections')::int "
    "- current_setting('superuser_reserved_connections')::int "
    "- (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')"
)
# On a replica: WAL it has received and not yet replayed (a paused or slow replay).
_REPLAY_BEHIND: Final = (
    "SELECT pg_is_in_recovery(), "
    "coalesce(pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()), 0)::bigint"
)
_JUDGED: Final = (HealthState.OK, HealthState.OVER)  # the primary answered: its replica counts too
_LOCK_WAITERS: Final = "SELECT count(DISTINCT pid) FROM pg_locks WHERE NOT granted"
# Bytes of WAL the slowest replica has not replayed; replicas whose position this login cannot
# see (no pg_read_all_stats) are counted apart, so an invisible lag is never read as zero.
_REPLICA_LAG: Final = (
    "SELECT coalesce(max(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)), 0)::bigint, "
    "count(*) FILTER (WHERE replay_lsn IS NULL) FROM pg_stat_replication"
)


Conn = psycopg.AsyncConnection[tuple[object, ...]]


def _refused(exc: psycopg.Error) -> ServerHealth:
    state = exc.sqlstate or ""
    if not state or state.startswith(_UNREACHABLE):
        # The SQLSTATE and type only: a libpq message can echo connection parameters.
        return ServerHealth(
            state=HealthState.UNREACHABLE,
            why=f"does not answer: {type(exc).__name__} (SQLSTATE {state or 'none'})",
        )
    return ServerHealth(state=HealthState.OK, why=f"answered (SQLSTATE {state})")


async def _connect(target: DatabaseTarget) -> Conn:
    conninfo = libpq_conninfo(target, application_name="fleetway-health", connect_timeout=_CONNECT_TIMEOUT_S)
    conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
    await conn.execute(f"SET statement_timeout = {_STATEMENT_TIMEOUT_MS}")
    return conn


async def check_health(target: DatabaseTarget, controls: ServerControls) -> ServerHealth:
    """Connect and measure what ``controls`` asks; never raises for the server's own state."""
    replica = (
        controls.replicas.get(server_key(target)) if controls.max_replica_lag_bytes is not None else None
    )
    try:
        conn = await _connect(target)
    except psycopg.Error as exc:
        return _refused(exc)
    async with conn:
        try:
            health = await _measure(conn, controls, lag_here=replica is None)
        except psycopg.OperationalError as exc:
            return _refused(exc)
    if replica is None or controls.max_replica_lag_bytes is None or health.state not in _JUDGED:
        return health
    return await _on_replica(target, replica, controls.max_replica_lag_bytes, health)


async def _on_replica(target: DatabaseTarget, replica: str, limit: int, health: ServerHealth) -> ServerHealth:
    """Add the replica's own replay lag (bytes received and not replayed) to ``health``."""
    host, port = replica.rsplit(":", 1)
    over = [health.why] if health.why and health.state is HealthState.OVER else []
    try:
        async with await _connect(target.model_copy(update={"host": host, "port": int(port)})) as conn:
            row = await (await conn.execute(_REPLAY_BEHIND)).fetchone()
    except psycopg.Error as exc:  # the primary is fine; its replica cannot be judged: wait for it
        over.append(
            f"replica {replica} does not answer ({type(exc).__name__}, SQLSTATE {exc.sqlstate or 'none'})"
        )
        return health.model_copy(update={"state": HealthState.OVER, "why": "; ".join(over)})
    recovering, lag = (bool(row[0]), int(row[1])) if row else (False, 0)  # type: ignore[call-overload]
    if not recovering:
        return ServerHealth(
            state=HealthState.BROKEN, why=f"replica {replica} is not in recovery (not a replica)"
        )
    if lag > limit:
        over.append(f"replica {replica} replay {lag} bytes behind (max {limit})")
    state = HealthState.OVER if over else HealthState.OK
    return health.model_copy(update={"state": state, "why": "; ".join(over), "replica_lag_bytes": lag})


class _BrokenCheckError(Exception):
    """The check itself cannot work as configured (the rollout stops and says why)."""


async def _measure(conn: Conn, controls: ServerControls, *, lag_here: bool) -> ServerHealth:
    measured: dict[str, object] = {}
    over: list[str] = []
    try:
        if controls.max_lock_waiters is not None:
            measured["lock_waiters"] = waiters = await _lock_waiters(conn)
            if waiters > controls.max_lock_waiters:
                over.append(f"{waiters} sessions wait on locks (max {controls.max_lock_waiters})")
        if controls.max_replica_lag_bytes is not None and lag_here:
            lag, hidden = await _replica_lag(conn)
            measured["replica_lag_bytes"] = lag
            if hidden:
                over.append(f"{hidden} replicas' replay position not visible (grant pg_read_all_stats)")
            elif lag > controls.max_replica_lag_bytes:
                over.append(f"replica replay {lag} bytes behind (max {controls.max_replica_lag_bytes})")
        if controls.min_free_connections is not None:
            row = await (await conn.execute(_FREE_CONNECTIONS)).fetchone()
            measured["free_connections"] = free = int(row[0]) if row else 0  # type: ignore[call-overload]
            if free < controls.min_free_connections:
                over.append(f"{free} connections free (min {controls.min_free_connections})")
        if controls.probe_sql and controls.probe_max is not None:
            measured["probe"] = value = await _probe(conn, controls.probe_sql)
            if value > controls.probe_max:
                over.append(f"health probe {value:g} over {controls.probe_max:g}")
    except _BrokenCheckError as exc:
        return ServerHealth(state=HealthState.BROKEN, why=str(exc))
    state = HealthState.OVER if over else HealthState.OK
    return ServerHealth.model_validate({"state": state, "why": "; ".join(over), **measured})


async def _lock_waiters(conn: Conn) -> int:
    row = await (await conn.execute(_LOCK_WAITERS)).fetchone()
    return int(row[0]) if row else 0  # type: ignore[call-overload]


async def _replica_lag(conn: Conn) -> tuple[int, int]:
    try:
        row = await (await conn.execute(_REPLICA_LAG)).fetchone()
    except psycopg.errors.ObjectNotInPrerequisiteState:  # a replica itself has no WAL position
        raise _BrokenCheckError("replica lag asked of a server in recovery (a replica)") from None
    return (int(row[0]), int(row[1])) if row else (0, 0)  # type: ignore[call-overload]


async def _probe(conn: Conn, query: str) -> float:
    try:
        rows = await (await conn.execute(query)).fetchall()
    except psycopg.errors.QueryCanceled:
        raise _BrokenCheckError("health probe ran past 5 s") from None
    except psycopg.OperationalError:
        raise
    except psycopg.DatabaseError as exc:
        raise _BrokenCheckError(f"health probe failed (SQLSTATE {exc.sqlstate})") from None
    value = _number(rows)
    if value is None:
        raise _BrokenCheckError("health probe must return one row of one number")
    return value


def _number(rows: list[tuple[object, ...]]) -> float | None:
    if len(rows) != 1 or len(rows[0]) != 1:
        return None
    value = rows[0][0]
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
