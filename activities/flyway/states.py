"""Flyway's ``info`` states and ``validate`` errors over a tenant's table and a set (Flyway 12.4.0).

Pure. A line-for-line port of what decides each migration's state and each validation error:
``MigrationInfoServiceImpl.refresh``/``current``, ``BaseAppliedMigration.getState``,
``ResolvedMigration.getState`` and ``MigrationInfoImpl.validate`` (``flyway-core``, tag
``flyway-12.4.0``), under the settings fleetway runs Flyway with: no target, no ``outOfOrder``, and
validate's ignore patterns ``*:pending,*:future`` (Flyway's own ``validateOnMigrate`` ones). Where
Flyway itself would refuse (a row type it does not know, a version it cannot parse, two delete
markers for one version) :class:`FlywayRefuses` is raised. ``tests/conformance`` holds every rule
here to the real binary on generated fleets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from fleetway.activities.flyway.checksums import version_key

__all__ = [
    "AppliedRow",
    "FlywayRefuses",
    "Info",
    "InfoEntry",
    "RepairPlan",
    "Resolved",
    "State",
    "flyway_info",
    "repair_plan",
    "schema_version",
]

_CORE_TYPES: Final = frozenset(
    {"SCHEMA", "BASELINE", "DELETE", "SQL", "JDBC", "SCRIPT", "UNDO_SCRIPT", "CUSTOM"}
)
_SYNTHETIC: Final = frozenset({"SCHEMA", "BASELINE", "DELETE"})
_NO_DESCRIPTION: Final = "<< no description >>"
_Version = tuple[int, ...]


class FlywayRefuses(Exception):
    """Flyway would refuse to read this table or set at all (its ``info`` fails).

    Not a ``FleetwayError``: it never leaves the reader, which answers "unknown" instead.
    """


class State(StrEnum):
    """A migration's state, as Flyway's JSON names it (``MigrationState.displayName``)."""

    PENDING = "Pending"
    BELOW_BASELINE = "Below Baseline"
    BASELINE_IGNORED = "Ignored (Baseline)"
    BASELINE = "Baseline"
    IGNORED = "Ignored"
    MISSING_SUCCESS = "Missing"
    MISSING_FAILED = "Failed (Missing)"
    SUCCESS = "Success"
    FAILED = "Failed"
    OUT_OF_ORDER = "Out of Order"
    FUTURE_SUCCESS = "Future"
    FUTURE_FAILED = "Failed (Future)"
    OUTDATED = "Outdated"
    SUPERSEDED = "Superseded"
    DELETED = "Deleted"

    @property
    def applied(self) -> bool:
        """Whether Flyway counts the state as applied (``MigrationState.isApplied``)."""
        return self not in _NOT_APPLIED

    @property
    def failed(self) -> bool:
        """Whether Flyway counts the state as failed (``MigrationState.isFailed``)."""
        return self in (State.FAILED, State.MISSING_FAILED, State.FUTURE_FAILED)


_NOT_APPLIED: Final = frozenset({State.PENDING, State.BELOW_BASELINE, State.BASELINE_IGNORED, State.IGNORED})


@dataclass(frozen=True)
class AppliedRow:
    """One row of ``flyway_schema_history`` with ``installed_rank > -1`` (what Flyway reads)."""

    rank: int
    version: str | None
    description: str
    type: str
    checksum: int | None
    success: bool


@dataclass(frozen=True)
class Resolved:
    """One script of the set: a versioned one (``version``) or a repeatable (``version`` None).

    ``checksum`` is what Flyway records (a repeatable's after placeholder replacement; None when
    that cannot be computed here), ``equivalent`` a repeatable's raw checksum (Flyway accepts both).
    """

    version: str | None
    description: str
    checksum: int | None
    equivalent: int | None = None
    checksum_known: bool = True

    def matches(self, checksum: int | None) -> bool | None:
        """``ResolvedMigrationImpl.checksumMatches``; None when the answer needs the unknown checksum."""
        if self.equivalent is not None and checksum == self.equivalent:
            return True
        if not self.checksum_known:
            return None
        return checksum == self.checksum


@dataclass
class _Applied:
    row: AppliedRow
    key: _Version | None
    deleted: bool = False
    out_of_order: bool = False


@dataclass(frozen=True)
class InfoEntry:
    """One entry of ``info``: a row (``rank``), or a script no row stands for (``rank`` None).

    ``issue`` is the validate error code the entry gives ("" for none).
    """

    version: str | None
    description: str
    state: State
    type: str = "SQL"
    rank: int | None = None
    issue: str = ""

    @property
    def key(self) -> str:
        """``<version>`` as Flyway prints it (``_`` read as ``.``), or ``R <description>``."""
        return self.version.replace("_", ".") if self.version else f"R {self.description}"


@dataclass
class Info:
    """Every entry and the schema's current version; ``undecided`` names what needs an unknown checksum."""

    entries: list[InfoEntry] = field(default_factory=list)
    current: str = ""
    undecided: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        """Validate as fleetway runs it would pass."""
        return not any(e.issue for e in self.entries)


def _key(version: str | None) -> _Version | None:
    if version is None:
        return None
    if version.lower() in {"current", "next", "latest"}:
        raise FlywayRefuses(f"a row's version {version[:20]!a} is a keyword")
    try:
        return version_key(version)
    except ValueError:
        raise FlywayRefuses(f"a row's version {version[:20]!a} is not numeric") from None


def flyway_info(rows: list[AppliedRow], versioned: list[Resolved], repeatables: list[Resolved]) -> Info:
    """What ``info`` and ``validate`` say of ``rows`` (installed order) against the set.

    Raises:
        FlywayRefuses: Flyway's ``info`` would fail on this table.
    """
    for row in rows:
        if row.type not in _CORE_TYPES:
            raise FlywayRefuses(f"a row of type {row.type[:20]!a} Flyway does not know")
    ctx = _Context(versioned, repeatables)
    info = Info()
    applied_versioned = ctx.applied_versioned(rows)
    applied_repeatable = ctx.applied_repeatable(rows)
    ctx.place(applied_versioned)
    paired: set[_Version] = set()
    for a in applied_versioned:
        # Versioned rows pair with a script by (version, type): every script of a set is SQL.
        resolved = ctx.resolved_versioned.get(a.key) if a.row.type == "SQL" and a.key is not None else None
        if resolved is not None and not a.deleted and a.key is not None:
            paired.add(a.key)
        info.entries.append(ctx.entry(a, resolved, info))
    for key, resolved in sorted(ctx.resolved_versioned.items()):
        if key not in paired:
            info.entries.append(ctx.pending_versioned(resolved, key))
    ctx.latest_runs(applied_repeatable)
    _repeatable_entries(ctx, applied_repeatable, info)
    info.current = ctx.current(info.entries)
    return info


def _repeatable_entries(ctx: _Context, applied: list[_Applied], info: Info) -> None:
    """Each repeatable row's entry, then a pending entry for each script its latest row does not match."""
    current: set[str] = set()
    for a in applied:
        resolved = ctx.resolved_repeatable.get(a.row.description)  # by description, whatever the type
        if (
            resolved is not None
            and not a.deleted
            and a.row.type != "DELETE"
            and a.row.rank == ctx.latest.get(a.row.description)
        ):
            matches = resolved.matches(a.row.checksum)
            if matches is None:
                info.undecided.append(f"R {a.row.description}")
            elif matches:
                current.add(a.row.description)
        info.entries.append(ctx.entry(a, resolved, info))
    for description, resolved in sorted(ctx.resolved_repeatable.items()):
        if description not in current:
            info.entries.append(InfoEntry(None, resolved.description, State.PENDING))


@dataclass(frozen=True)
class RepairPlan:
    """What Flyway's ``repair`` would change in a table (``DbRepair``), by migration key.

    ``undecided`` names a repeatable whose realignment needs a checksum only a run can compute.
    """

    remove_failed: list[str] = field(default_factory=list)
    mark_deleted: list[str] = field(default_factory=list)
    realign: list[str] = field(default_factory=list)
    undecided: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.remove_failed or self.mark_deleted or self.realign)


def repair_plan(rows: list[AppliedRow], versioned: list[Resolved], repeatables: list[Resolved]) -> RepairPlan:
    """What ``repair`` would do: remove failed rows, mark missing ones deleted, realign the rest.

    Unlike validate it realigns rows validate never checks: a NULL checksum, a row at or below a
    baseline, a repeatable recorded with its raw checksum (``DbRepair``'s alignment step).

    Raises:
        FlywayRefuses: Flyway's ``info`` (and so its repair) would fail on this table.
    """
    plan = RepairPlan(remove_failed=[_entry_key(r) for r in rows if not r.success])
    kept = [r for r in rows if r.success]
    info = flyway_info(kept, versioned, repeatables)
    resolved_versioned = {version_key(r.version or ""): r for r in versioned}
    resolved_repeatable = {r.description: r for r in repeatables}
    states = {e.rank: e.state for e in info.entries if e.rank is not None}
    for row in kept:
        state = states.get(row.rank)
        if row.type in _SYNTHETIC or row.type == "UNDO_SCRIPT" or state is None:
            continue
        if state in (State.MISSING_SUCCESS, State.MISSING_FAILED, State.FUTURE_FAILED):
            plan.mark_deleted.append(_entry_key(row))  # FUTURE_SUCCESS: the default ``*:future`` spares it
            continue
        if row.version is not None:
            resolved = resolved_versioned.get(_key(row.version) or ()) if row.type == "SQL" else None
            if resolved is not None and (
                row.checksum != resolved.checksum
                or row.description != resolved.description
                or row.type != "SQL"
            ):
                plan.realign.append(_entry_key(row))
        elif (resolved := resolved_repeatable.get(row.description)) is not None:
            raw_only = row.checksum is not None and row.checksum == resolved.equivalent
            if raw_only and not resolved.checksum_known:
                plan.undecided.append(_entry_key(row))
            elif raw_only and row.checksum != resolved.checksum:
                plan.realign.append(_entry_key(row))
    return plan


def _entry_key(row: AppliedRow) -> str:
    return row.version.replace("_", ".") if row.version is not None else f"R {row.description}"


def schema_version(rows: list[AppliedRow]) -> str:
    """Flyway's ``current`` version of a table, from its rows alone ("" for none).

    The highest version among versioned rows, failed and baseline rows included, delete markers and
    the rows they mark left out; an unreadable version is skipped, never guessed.
    """
    try:
        applied = _Context([], []).applied_versioned(rows)
    except FlywayRefuses:
        return ""
    best: tuple[_Version, str] | None = None
    for a in applied:
        if a.key is None or a.deleted or a.row.type == "DELETE" or a.row.version is None:
            continue
        if best is None or a.key > best[0]:
            best = (a.key, a.row.version)
    return best[1] if best else ""


class _Context:
    """``MigrationInfoContext`` and the refresh steps that fill it."""

    def __init__(self, versioned: list[Resolved], repeatables: list[Resolved]) -> None:
        self.resolved_versioned = {version_key(r.version or ""): r for r in versioned}
        self.resolved_repeatable = {r.description: r for r in repeatables}
        self.last_resolved: _Version | None = max(self.resolved_versioned, default=None)
        self.last_applied: _Version | None = None
        self.applied_baseline: _Version | None = None
        self.latest: dict[str, int] = {}

    def applied_versioned(self, rows: list[AppliedRow]) -> list[_Applied]:
        """``getAppliedVersionedMigrations``: delete markers applied, baselines noted."""
        found: list[_Applied] = []
        for row in rows:
            key = _key(row.version)
            if key is None:
                continue
            if row.type == "BASELINE" and (self.applied_baseline is None or key > self.applied_baseline):
                self.applied_baseline = key
            if row.type == "DELETE" and row.success:
                for earlier in reversed(found):
                    if earlier.row.type not in _SYNTHETIC and earlier.key == key:
                        if earlier.deleted:
                            raise FlywayRefuses(f"two delete markers for version {row.version}")
                        earlier.deleted = True
                        break
                continue
            found.append(_Applied(row, key))
        return found

    @staticmethod
    def applied_repeatable(rows: list[AppliedRow]) -> list[_Applied]:
        """``getAppliedRepeatableMigrations``: versionless rows; a delete marks its description's latest."""
        found: list[_Applied] = []
        for row in rows:
            if row.version is not None:
                continue
            found.append(_Applied(row, None))
            if row.type == "DELETE" and row.success:
                for earlier in reversed(found):
                    if earlier.row.type not in _SYNTHETIC and earlier.row.description == row.description:
                        earlier.deleted = True
                        break
        return found

    def place(self, applied: list[_Applied]) -> None:
        """``updateContextFromAppliedVersionedMigrations``: the last applied version, out-of-order flags."""
        for a in applied:
            if a.key is None:
                continue
            if self.last_applied is None or a.key > self.last_applied:
                if a.row.type != "DELETE" and not a.deleted:
                    self.last_applied = a.key
            else:
                a.out_of_order = True

    def latest_runs(self, applied: list[_Applied]) -> None:
        """``getLatestRepeatableRuns``: each description's highest rank."""
        for a in applied:
            rank = self.latest.get(a.row.description)
            if rank is None or a.row.rank > rank:
                self.latest[a.row.description] = a.row.rank

    def entry(self, a: _Applied, resolved: Resolved | None, info: Info) -> InfoEntry:
        """The row's entry: its state and the validate error it gives."""
        state = self._state(a, resolved, info)
        issue = self._issue(a, resolved, state, info)
        return InfoEntry(a.row.version, a.row.description, state, a.row.type, a.row.rank, issue)

    def _state(self, a: _Applied, resolved: Resolved | None, info: Info) -> State:
        """``MigrationInfoImpl.getState`` for a row (``BaseAppliedMigration.getState``)."""
        row = a.row
        if a.deleted:
            return State.DELETED
        if row.type == "DELETE":
            return State.SUCCESS
        if row.type == "BASELINE":
            return State.BASELINE
        latest = a.key is not None or self.latest.get(row.description) in (None, row.rank)
        if resolved is None and latest:
            if row.type == "SCHEMA":
                return State.SUCCESS
            if a.key is None or (self.last_resolved is not None and a.key < self.last_resolved):
                return State.MISSING_SUCCESS if row.success else State.MISSING_FAILED
            return State.FUTURE_SUCCESS if row.success else State.FUTURE_FAILED
        if not row.success:
            return State.FAILED
        if row.type == "SCHEMA":
            return State.SUCCESS
        if a.key is None:
            if row.rank != self.latest.get(row.description):
                return State.SUPERSEDED
            matches = resolved.matches(row.checksum) if resolved is not None else None
            if matches is None:
                return State.SUCCESS  # undecided: flyway_info has named it
            return State.SUCCESS if matches else State.OUTDATED
        return State.OUT_OF_ORDER if a.out_of_order else State.SUCCESS

    def pending_versioned(self, resolved: Resolved, key: _Version) -> InfoEntry:
        """``ResolvedMigration.getState`` for a script without a row (no ``B`` scripts in a set)."""
        baseline = self.applied_baseline if self.last_applied is not None else None
        if baseline is not None and key < baseline:
            state = State.BELOW_BASELINE
        elif baseline is not None and key == baseline:
            state = State.BASELINE_IGNORED
        elif self.last_applied is not None and key < self.last_applied:
            state = State.IGNORED
        else:
            state = State.PENDING
        issue = "RESOLVED_VERSIONED_MIGRATION_NOT_APPLIED" if state is State.IGNORED else ""
        return InfoEntry(resolved.version, resolved.description, state, issue=issue)

    def _issue(self, a: _Applied, resolved: Resolved | None, state: State, info: Info) -> str:
        """``MigrationInfoImpl.validate`` under ``*:pending,*:future`` for a row's entry."""
        row, versioned = a.row, a.key is not None
        if state in (State.DELETED, State.FUTURE_SUCCESS):
            return ""
        if state.failed and state is not State.FUTURE_FAILED:
            return "FAILED_VERSIONED_MIGRATION" if versioned else "FAILED_REPEATABLE_MIGRATION"
        if (
            resolved is None
            and row.type not in _SYNTHETIC
            and row.type != "UNDO_SCRIPT"
            and state not in (State.SUPERSEDED, State.FUTURE_SUCCESS, State.FUTURE_FAILED)
        ):
            return f"APPLIED_{'VERSIONED' if versioned else 'REPEATABLE'}_MIGRATION_NOT_RESOLVED"
        if resolved is None or row.type in ("DELETE", "UNDO_SCRIPT"):
            return ""
        if (
            versioned
            and self.applied_baseline is not None
            and a.key is not None
            and a.key <= self.applied_baseline
        ):
            return ""  # at or below the baseline: never checked
        if row.type != "SQL":
            return "TYPE_MISMATCH"
        if (versioned or state not in (State.OUTDATED, State.SUPERSEDED)) and row.checksum is not None:
            # ``isChecksumMatching``: the recorded checksum only, never the raw equivalent; NULL matches.
            if not resolved.checksum_known:
                if row.checksum != resolved.equivalent or resolved.equivalent is None:
                    info.undecided.append(InfoEntry(row.version, row.description, state).key)
            elif resolved.checksum != row.checksum:
                return "CHECKSUM_MISMATCH"
        expected = resolved.description or _NO_DESCRIPTION  # an empty description is stored as the marker
        if row.description != expected:
            return "DESCRIPTION_MISMATCH"
        return ""

    @staticmethod
    def current(entries: list[InfoEntry]) -> str:
        """``MigrationInfoServiceImpl.current``: the highest applied version (failed and baselines count)."""
        best: tuple[_Version, str] | None = None
        for e in entries:
            if e.version is None or e.rank is None or not e.state.applied:
                continue
            if e.state is State.DELETED or e.type == "DELETE":
                continue
            key = version_key(e.version)
            if best is None or key > best[0]:
                best = (key, e.version)
        return best[1] if best else ""
