"""One tenant's state against a set, decided from its ``flyway_schema_history`` alone (issue 25).

Pure. The verdict can only be *current* (migrate would apply nothing), *intact* (validate would
pass; pending versions allowed) or neither, never *failed*: anything not provable goes to Flyway
exactly as before. Current means every versioned migration of the set (above a baseline row) is
applied exactly once, successfully, with Flyway's checksum and description; every repeatable's
latest row carries its latest checksum; no failed row; nothing applied that the set lacks; no row
of a kind this reader does not model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from fleetway.activities.fleet.state import LISTED, TenantState
from fleetway.activities.flyway.checksums import SetMigrations, repeatable_checksum, version_key
from fleetway.activities.postgres.bulk_history import AppliedScript, TenantHistory

__all__ = ["judge"]

_MODELLED: Final = frozenset({"SQL", "BASELINE"})


def _matches(row: AppliedScript, checksum: int | None, description: str) -> bool:
    return checksum is not None and row.checksum == checksum and row.description == description


def judge(history: TenantHistory, migrations: SetMigrations, values: Mapping[str, str]) -> TenantState:
    """The tenant's state against ``migrations``; ``values``: its per-tenant placeholder values."""
    base = {"tenant_id": history.tenant_id, "server": history.server, "version": history.version}
    if history.unreadable:
        return TenantState(**base, unreadable=True, unknown=history.unreadable[:200])
    if migrations.unknown:
        return TenantState(**base, unknown=migrations.unknown[:200])
    found = _Findings()
    baseline = found.scan_rows(history.applied)
    found.versioned(history, migrations, baseline)
    found.repeatables(history, migrations, values)
    trouble = bool(found.failed or found.tampered or found.ahead or found.outdated or found.unknown)
    return TenantState(
        **base,
        current=not trouble and not found.pending and history.table_exists,
        intact=not trouble and history.table_exists,
        pending=found.pending[:LISTED],
        pending_count=len(found.pending),
        failed=found.failed[:LISTED],
        tampered=found.tampered[:LISTED],
        ahead=found.ahead[:LISTED],
        outdated=found.outdated[:LISTED],
        unknown=found.unknown[:200],
    )


class _Findings:
    """What :func:`judge` finds, list by list (the first reason for ``unknown`` wins)."""

    def __init__(self) -> None:
        self.pending: list[str] = []
        self.failed: list[str] = []
        self.tampered: list[str] = []
        self.ahead: list[str] = []
        self.outdated: list[str] = []
        self.unknown = ""

    def doubt(self, why: str) -> None:
        self.unknown = self.unknown or why

    def scan_rows(self, applied: list[AppliedScript]) -> tuple[int, ...]:
        """Failed rows and rows of kinds not modelled; returns the baseline version (``()``: none)."""
        baseline: tuple[int, ...] = ()
        for row in applied:
            if not row.success:
                self.failed.append(row.key.removeprefix("V"))
            elif row.type not in _MODELLED or row.successes > 1:
                self.doubt(f"{row.key}: a {row.type} row this reader does not model")
            elif row.type == "BASELINE" and row.key.startswith("V"):
                baseline = max(baseline, version_key(row.key[1:]))
        return baseline

    def versioned(self, history: TenantHistory, migrations: SetMigrations, baseline: tuple[int, ...]) -> None:
        """Applied versions against the set's, then the set's versions not applied."""
        rows = {a.key: a for a in history.applied}
        for row in history.applied:
            if not row.key.startswith("V") or row.type != "SQL":
                continue
            migration = migrations.versioned.get(version_key(row.key[1:]))
            if migration is None:
                self.ahead.append(row.key[1:])  # Flyway: Future above the set's latest, Missing below
            elif row.success and not _matches(row, migration.checksum, migration.description):
                self.tampered.append(migration.version)
        current = version_key(history.version) if history.version else ()
        for key, migration in sorted(migrations.versioned.items()):
            if key <= baseline or f"V{migration.version}" in rows or _applied_as(rows, key):
                continue
            self.pending.append(migration.version)
            if key < current:  # Flyway reports it Ignored: validate and migrate both refuse it
                self.doubt(f"version {migration.version} is pending below the applied version")

    def repeatables(
        self, history: TenantHistory, migrations: SetMigrations, values: Mapping[str, str]
    ) -> None:
        """Each repeatable's latest row against its checksum now; repeatables the set lacks."""
        rows = {a.key: a for a in history.applied}
        for description, migration in sorted(migrations.repeatables.items()):
            row = rows.get(f"R {description}")
            checksum = repeatable_checksum(migration, values)
            if checksum is None:
                self.doubt(f"repeatable {migration.script!r}: checksum not reproducible here")
            elif row is None:
                self.pending.append(f"R {description}")
            elif row.success and row.checksum not in {checksum, migration.checksum}:
                self.outdated.append(description)  # the raw checksum also matches (Flyway's equivalent)
        for key in rows:
            if key.startswith("R ") and key[2:] not in migrations.repeatables:
                self.ahead.append(key)


def _applied_as(rows: Mapping[str, AppliedScript], key: tuple[int, ...]) -> bool:
    """Whether a row holds this version under another spelling (``1.0`` for ``1``)."""
    return any(k.startswith("V") and version_key(k[1:]) == key for k in rows)
