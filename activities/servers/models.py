"""What a rollout knows of its tenants' database servers: the controls, a server's health, a hold.

Pure models (no I/O) shared by the server activities, the rollout and the CLI. A server key is
``host:port``; it never carries a login, so it may live in workflow history.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Final

from pydantic import BaseModel, Field, field_validator, model_validator

from fleetway.activities.fleet.state import MAX_SCREENED
from fleetway.activities.wire import CLIENT_INPUT, WIRE_MODEL

__all__ = [
    "PROBE_SQL_MAX",
    "CheckServerInput",
    "HealthState",
    "HoldKind",
    "ServerControls",
    "ServerHealth",
    "ServerHold",
    "ServerKeysInput",
]

PROBE_SQL_MAX: Final = 2000
_SERVER_KEY: Final = re.compile(r"[A-Za-z0-9._-]{1,253}:\d{1,5}")


# Functions a read-only transaction still runs that act on the server or other sessions.
_SIDE_EFFECTS: Final = re.compile(
    r"\b(pg_terminate_backend|pg_cancel_backend|pg_reload_conf|pg_rotate_logfile|pg_switch_wal|"
    r"pg_create_restore_point|pg_promote|pg_wal_replay_pause|pg_wal_replay_resume|pg_log_backend_memory_contexts|"
    r"set_config|pg_advisory_\w*lock\w*|pg_try_advisory_\w*|pg_notify|dblink\w*|lo_import|lo_export|"
    r"pg_file_write|pg_read_file|pg_read_binary_file|pg_ls_dir|pg_stat_reset\w*)\s*\(",
    re.IGNORECASE,
)


class ServerControls(BaseModel):
    """How a rollout treats the servers its tenants live on (docs/servers.md).

    Attributes:
        per_server: at most this many of the rollout's tenants in flight on one server (None:
            only the rollout's window limits them).
        checks: check a server before dispatching to it (reachable, and under the thresholds
            below); an unreachable server is parked, one over a threshold is held.
        check_every_s: a server found healthy is not checked again for this long.
        max_lock_waiters: hold a server while more sessions than this wait on a lock (pg_locks).
        max_replica_lag_bytes: hold a primary while a streaming replica's replay is this far behind
            (pg_stat_replication; needs ``pg_read_all_stats`` for the tenants' login). None: off.
        replicas: ``host:port`` of a server → ``host:port`` of its replica: that server's lag is
            read on the replica itself (WAL received, not yet replayed), with the tenant's login.
        min_free_connections: hold a server while fewer client connections than this are free
            (``max_connections`` minus reserved slots minus client sessions). None: off.
        probe_sql: a query returning one number; the server is held while it exceeds ``probe_max``.
        park_limit_s: a server parked this long ends its undispatched tenants ``target_unreachable``
            (None: the rollout's retry budget, the time a dispatched tenant would have retried it).
    """

    model_config = CLIENT_INPUT

    per_server: int | None = Field(default=None, ge=1, le=256)
    checks: bool = True
    check_every_s: int = Field(default=5, ge=1, le=300)
    max_lock_waiters: int | None = Field(default=None, ge=0)
    max_replica_lag_bytes: int | None = Field(default=None, ge=0)
    replicas: dict[str, str] = Field(default_factory=dict, max_length=10000)
    min_free_connections: int | None = Field(default=None, ge=1, le=10000)
    probe_sql: str = Field(default="", max_length=PROBE_SQL_MAX)
    probe_max: float | None = None
    park_limit_s: int | None = Field(default=None, ge=10, le=7 * 86400)

    @field_validator("probe_sql")
    @classmethod
    def _one_query(cls, value: str) -> str:
        text = value.strip().rstrip(";").strip()
        if not text:
            return ""
        if ";" in text:
            raise ValueError("probe_sql must be one query (no ';' inside)")
        if text.split(None, 1)[0].lower() not in {"select", "with", "values"}:
            raise ValueError("probe_sql must be a SELECT, WITH or VALUES query returning one number")
        if called := _SIDE_EFFECTS.search(text):
            # The session is read-only (the server refuses any write); these act beyond the data.
            raise ValueError(f"probe_sql may not call {called.group(1).lower()}(): it acts on the server")
        return text

    @field_validator("replicas")
    @classmethod
    def _server_keys(cls, value: dict[str, str]) -> dict[str, str]:
        for key in (*value, *value.values()):
            if not _SERVER_KEY.fullmatch(key):
                raise ValueError(f"replicas: {key[:80]!r} is not host:port")
        return {k.lower(): v.lower() for k, v in value.items()}

    @model_validator(mode="after")
    def _probe_pairs(self) -> ServerControls:
        if bool(self.probe_sql) != (self.probe_max is not None):
            raise ValueError("probe_sql and probe_max go together")
        return self

    @property
    def thresholds(self) -> list[str]:
        """The thresholds a check applies, for the plan and the docs."""
        return [
            name
            for name, value in (
                ("lock waiters", self.max_lock_waiters),
                ("replica lag", self.max_replica_lag_bytes),
                ("free connections", self.min_free_connections),
                ("probe", self.probe_max),
            )
            if value is not None
        ]


class HoldKind(StrEnum):
    """Why no tenant goes to a server now. Wire value: never rename."""

    PARKED = "parked"  # it does not answer (or refuses connections): probed until it does
    HELD = "held"  # it answers, but a threshold is exceeded: checked until it is not


class ServerHold(BaseModel):
    """A server the rollout does not dispatch to, since when and why (shown by ``status``)."""

    model_config = WIRE_MODEL

    server: str
    kind: HoldKind
    since: str  # ISO 8601, UTC
    since_s: float  # the same instant in epoch seconds (workflow time)
    why: str
    queued: int = 0  # its tenants waiting in this run (a view; not carried)


class ServerKeysInput(BaseModel):
    """Tenants whose server keys the rollout needs (credentials stay in the activity)."""

    model_config = WIRE_MODEL

    tenant_ids: list[str] = Field(max_length=MAX_SCREENED)
    secrets_backend: str = "default"
    pinned_secrets: str = ""


class CheckServerInput(BaseModel):
    """Check ``server`` through the login of ``tenant_id`` (a reference, never the secret)."""

    model_config = WIRE_MODEL

    server: str
    tenant_id: str
    secrets_backend: str = "default"
    pinned_secrets: str = ""
    controls: ServerControls = ServerControls()


class HealthState(StrEnum):
    """A check's verdict. Wire value: never rename."""

    OK = "ok"
    UNREACHABLE = "unreachable"  # park it
    OVER = "over"  # hold it
    BROKEN = "broken"  # the check itself cannot work (a bad probe): the rollout stops


class ServerHealth(BaseModel):
    """What one check found; ``why`` names the measure and its threshold."""

    model_config = WIRE_MODEL

    state: HealthState
    why: str = ""
    lock_waiters: int | None = None
    replica_lag_bytes: int | None = None
    free_connections: int | None = None
    probe: float | None = None
