"""One tenant's state against a set, decided from its ``flyway_schema_history`` alone, as Flyway decides it.

Pure. The table and the set go through :func:`flyway_info` (Flyway's own rules, ported); the verdict
is what Flyway's ``info`` and ``validate`` would say: the version (the highest applied, as Flyway's
``current``), each list (failed, tampered, ahead, outdated, pending, ignored), *intact* (validate as
fleetway runs it passes, and nothing is failed, ahead, outdated or ignored) and *current* (intact and
nothing pending: a migrate would apply nothing). *Unknown* only where the table and the set cannot
say what Flyway would (docs/rollouts.md lists each case): the tenant then goes to Flyway.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from fleetway.activities.fleet.state import LISTED, TenantState
from fleetway.activities.flyway.checksums import SetMigrations, repeatable_checksum
from fleetway.activities.flyway.states import (
    AppliedRow,
    FlywayRefuses,
    Info,
    RepairPlan,
    Resolved,
    State,
    flyway_info,
    repair_plan,
)
from fleetway.activities.postgres.bulk_history import TenantHistory

__all__ = ["judge", "repair_needed"]

_MISMATCHES: Final = frozenset({"CHECKSUM_MISMATCH", "DESCRIPTION_MISMATCH", "TYPE_MISMATCH"})
_AHEAD: Final = frozenset({State.MISSING_SUCCESS, State.FUTURE_SUCCESS})


def _resolved(migrations: SetMigrations, values: Mapping[str, str]) -> tuple[list[Resolved], list[Resolved]]:
    versioned = [Resolved(m.version, m.description, m.checksum) for m in migrations.versioned.values()]
    repeatables = []
    for m in migrations.repeatables.values():
        replaced = repeatable_checksum(m, values)
        known = replaced is not None
        repeatables.append(Resolved(None, m.description, replaced, m.checksum, checksum_known=known))
    return versioned, repeatables


def judge(history: TenantHistory, migrations: SetMigrations, values: Mapping[str, str]) -> TenantState:
    """The tenant's state against ``migrations``; ``values``: the placeholder values its run gets."""
    base: dict[str, object] = {"tenant_id": history.tenant_id, "server": history.server}
    if history.unreadable:
        return TenantState(**base, unreadable=True, unknown=history.unreadable[:200])
    if migrations.unknown:
        return TenantState(**base, unknown=migrations.unknown[:200])
    rows = [AppliedRow(r.rank, r.version, r.description, r.type, r.checksum, r.success) for r in history.rows]
    try:
        info = flyway_info(rows, *_resolved(migrations, values))
    except FlywayRefuses as exc:
        return TenantState(**base, unknown=f"Flyway would refuse this table: {exc}"[:200])
    return _state(history, info, base)


def repair_needed(history: TenantHistory, migrations: SetMigrations, values: Mapping[str, str]) -> RepairPlan:
    """What Flyway's ``repair`` would change in this table against the set (nothing: an empty plan).

    Raises:
        FlywayRefuses: Flyway would refuse the table or the set (its repair decides, or fails).
    """
    if migrations.unknown:
        raise FlywayRefuses(migrations.unknown)
    rows = [AppliedRow(r.rank, r.version, r.description, r.type, r.checksum, r.success) for r in history.rows]
    return repair_plan(rows, *_resolved(migrations, values))


def _state(history: TenantHistory, info: Info, base: dict[str, object]) -> TenantState:
    entries = info.entries
    outdated = [e.description for e in entries if e.state is State.OUTDATED]
    failed = [e.key for e in entries if e.state.failed]
    ahead = [e.key for e in entries if e.state in _AHEAD]
    ignored = [e.key for e in entries if e.state is State.IGNORED]
    tampered = [e.key for e in entries if e.issue in _MISMATCHES]
    pending = [
        e.key for e in entries if e.state is State.PENDING and (e.version or e.description not in outdated)
    ]
    unknown = ""
    if info.undecided:
        unknown = f"{info.undecided[0]}: its checksum needs a placeholder value only a Flyway run has"
    intact = info.valid and not (failed or ahead or outdated or ignored or unknown)
    return TenantState(
        **base,
        version=info.current,
        current=intact and not pending and history.table_exists,
        intact=intact,
        pending=pending[:LISTED],
        pending_count=len(pending),
        failed=failed[:LISTED],
        tampered=tampered[:LISTED],
        ahead=ahead[:LISTED],
        outdated=outdated[:LISTED],
        ignored=ignored[:LISTED],
        unknown=unknown[:200],
    )
