"""What a rollout did to one tenant, read from the judge itself: ``flyway_schema_history``.

A rollout's report must be the database's truth across every attempt, including attempts whose
result was lost (a killed worker) and attempts that were cancelled or timed out. Flyway's own
report covers one run only, so:

- every script a rollout applies is recorded with ``installed_by`` = the rollout's *history
  marker* (``fleetway:<rollout id>:<run>``, :func:`history_marker`), whichever attempt, worker or
  engine applied it;
- when a tenant's outcome cannot be taken from a single complete Flyway report (a retried,
  failed or cancelled run), the workflow reads the table (:func:`read_history`) and reports what
  it shows: the version before the rollout's first script, the version now, the versions this
  rollout applied and the one that failed.

Must not: hold or log a credential (the target is resolved inside the activity).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Final

import psycopg
from pydantic import BaseModel, Field
from temporalio import activity

from fleetway.activities.database_target import DatabaseTarget, Vendor, check_pg_identifier, libpq_conninfo
from fleetway.activities.errors import (
    ConfigurationError,
    FleetwayError,
    SchemaHistoryUnavailableError,
    UnsafeIdentifierError,
    to_application_error,
)
from fleetway.activities.flyway.states import AppliedRow, schema_version
from fleetway.activities.secrets.providers import SecretsProvider, provider_for, validate_tenant_id
from fleetway.activities.wire import WIRE_MODEL

__all__ = [
    "HistoryRow",
    "HistorySummary",
    "ReadHistoryInput",
    "SchemaHistoryActivities",
    "check_history_marker",
    "history_marker",
    "read_history",
    "summarize_history",
]

_log = logging.getLogger(__name__)

_MARKER: Final = re.compile(r"^fleetway:[A-Za-z0-9._/@:-]{1,90}$")
_UNSAFE: Final = re.compile(r"[^A-Za-z0-9._/@-]")
_ROLLOUT_ID_CHARS: Final = 72
_LIST_CAP: Final = 200


def history_marker(rollout_id: str, first_run_id: str) -> str:
    """The ``installed_by`` value of every script one rollout applies (≤ 100 chars, Flyway's column).

    Names the rollout for a DBA reading the table (its id, unsafe characters replaced, cut to 72
    characters) and stays unique when a rollout id is reused: the first 8 characters of the
    rollout's first run id follow. Pure and deterministic: workflows compute it.
    """
    readable = _UNSAFE.sub("_", rollout_id)[:_ROLLOUT_ID_CHARS] or "_"
    return f"fleetway:{readable}:{first_run_id.replace('-', '')[:8] or '0'}"


def check_history_marker(value: str) -> str:
    """Return ``value`` if it is a marker :func:`history_marker` could have made, else raise.

    Raises:
        UnsafeIdentifierError: not ``fleetway:`` followed by 1..90 safe characters.
    """
    if not _MARKER.fullmatch(value):
        raise UnsafeIdentifierError("installed_by marker must match ^fleetway:[A-Za-z0-9._/@:-]{1,90}$")
    return value


class HistoryRow(BaseModel):
    """One migration row of ``flyway_schema_history``, in installed order ("" version: repeatable)."""

    model_config = WIRE_MODEL

    version: str
    success: bool
    installed_by: str
    description: str = ""
    type: str = "SQL"


class HistorySummary(BaseModel):
    """What the table says one rollout did to one tenant.

    Attributes:
        table_exists: false when Flyway never created its table there (nothing was applied).
        version_before: the schema version before this rollout's first script ("" = empty).
        version_after: the schema version now: the highest version successfully applied (an
            out-of-order hotfix below it does not lower it; a delete marker's row does not count).
        applied: versions this rollout applied successfully, in installed order.
        failed: versions this rollout left as failed rows (non-transactional scripts only: a
            failed transactional script is rolled back and leaves no row).
        repeated: versions with more than one successful row (never expected; reported if seen).
        repeatables: descriptions of the repeatable scripts this rollout (re-)applied.
        repeatables_failed: … and of those that failed, leaving a failed row.
    """

    model_config = WIRE_MODEL

    table_exists: bool
    version_before: str = ""
    version_after: str = ""
    applied: list[str] = Field(default_factory=list)
    failed: list[str] = Field(default_factory=list)
    repeated: list[str] = Field(default_factory=list)
    repeatables: list[str] = Field(default_factory=list)
    repeatables_failed: list[str] = Field(default_factory=list)


def _version(rows: Sequence[HistoryRow]) -> str:
    """The highest version these rows applied successfully, as Flyway orders and deletes them."""
    applied = [r for r in rows if r.success]
    return schema_version(
        [AppliedRow(i, r.version or None, r.description, r.type, None, True) for i, r in enumerate(applied)]
    )


def summarize_history(rows: Sequence[HistoryRow], marker: str) -> HistorySummary:
    """Summarize ``rows`` (installed order) as seen by the rollout whose marker is ``marker``."""
    repeatables = [r for r in rows if not r.version and r.installed_by == marker and r.type != "DELETE"]
    rows = [r for r in rows if r.version]
    ours = [i for i, r in enumerate(rows) if r.installed_by == marker and r.type != "DELETE"]
    first_ours = ours[0] if ours else len(rows)
    after = [r.version for r in rows if r.success and r.type != "DELETE"]
    seen: set[str] = set()
    repeated: list[str] = []
    for version in after:
        if version in seen and version not in repeated:
            repeated.append(version)
        seen.add(version)
    return HistorySummary(
        table_exists=True,
        version_before=_version(rows[:first_ours]),
        version_after=_version(rows),
        applied=[rows[i].version for i in ours if rows[i].success][:_LIST_CAP],
        failed=[rows[i].version for i in ours if not rows[i].success][:_LIST_CAP],
        repeated=repeated[:_LIST_CAP],
        repeatables=[r.description for r in repeatables if r.success][:_LIST_CAP],
        repeatables_failed=[r.description for r in repeatables if not r.success][:_LIST_CAP],
    )


async def read_history(target: DatabaseTarget, marker: str) -> HistorySummary:
    """Read the tenant's ``flyway_schema_history`` and summarize it for ``marker``.

    Raises:
        ConfigurationError: the target is not PostgreSQL (only PostgreSQL is read here).
        UnsafeIdentifierError: unsafe schema name or marker.
        SchemaHistoryUnavailableError: the database could not be reached or refused the read.
    """
    if target.vendor is not Vendor.POSTGRESQL:
        raise ConfigurationError("reading flyway_schema_history is supported for PostgreSQL targets only")
    check_history_marker(marker)
    table = "flyway_schema_history"
    if target.schema_name:
        table = f'"{check_pg_identifier(target.schema_name, field="schema")}".{table}'
    try:
        conninfo = libpq_conninfo(target, application_name="fleetway-history")
        async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
            try:
                # Migrations only: versioned and repeatable rows, not the schema or delete markers.
                cursor = await conn.execute(
                    f"SELECT version, success, installed_by, description, type FROM {table} "
                    "WHERE installed_rank > -1 AND (version IS NOT NULL OR type <> 'SCHEMA') "
                    "ORDER BY installed_rank"
                )
            except psycopg.errors.UndefinedTable:
                return HistorySummary(table_exists=False)
            rows = [
                HistoryRow(
                    version="" if v is None else str(v),
                    success=bool(s),
                    installed_by=str(b),
                    description=str(d),
                    type=str(t),
                )
                for v, s, b, d, t in await cursor.fetchall()
            ]
    except psycopg.Error as exc:
        # The SQLSTATE and type only: a libpq message can echo connection parameters.
        raise SchemaHistoryUnavailableError(
            f"flyway_schema_history unreadable: {type(exc).__name__} (SQLSTATE {exc.sqlstate or 'none'})"
        ) from None
    return summarize_history(rows, marker)


class ReadHistoryInput(BaseModel):
    """Input of ``read_schema_history``: a tenant, its secret backend and the rollout's marker."""

    model_config = WIRE_MODEL

    tenant_id: str = Field(min_length=1, max_length=128)
    secrets_backend: str = "default"
    marker: str
    pinned_secrets: str = ""


class SchemaHistoryActivities:
    """The history-reading activity, bound to the worker's configured secret backends."""

    def __init__(self, secrets: Mapping[str, SecretsProvider]) -> None:
        self._secrets = dict(secrets)

    @activity.defn(name="read_schema_history")
    async def read_schema_history(self, request: ReadHistoryInput) -> HistorySummary:
        """Resolve the tenant's credentials and summarize its schema history for the rollout."""
        try:
            provider = provider_for(self._secrets, request.secrets_backend, pinned=request.pinned_secrets)
            target = await provider.resolve(validate_tenant_id(request.tenant_id))
            return await read_history(target, request.marker)
        except FleetwayError as exc:
            raise to_application_error(exc) from None
