"""A tenant's state as its ``flyway_schema_history`` shows it: the compact record that leaves a worker.

Shared by the fleet activities (which build it), the rollout (which screens with it) and the CLI
(which draws it); pure models, no I/O, so workflows may import it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from pydantic import BaseModel, Field

from fleetway.activities.flyway.checksums import version_key
from fleetway.activities.wire import CLIENT_INPUT, WIRE_MODEL

__all__ = [
    "LISTED",
    "MAX_SCREENED",
    "FleetState",
    "ReadFleetInput",
    "ReadStatesInput",
    "TenantState",
    "TenantStates",
    "within_budget",
]

LISTED: Final = 20  # versions named per list; the counts cover the rest
MAX_SCREENED: Final = 1000  # tenants per read_tenant_states call (one page)
SCREEN_BUDGET: Final = 768 * 1024  # a page's answer, encoded (see ``within_budget``)


class FleetState(StrEnum):
    """A tenant's one-word state in the fleet picture (worst first). Wire value: never rename."""

    UNREADABLE = "unreadable"  # its server or table could not be read
    UNKNOWN = "unknown"  # readable, but not provable either way (Flyway decides)
    FAILED = "failed"
    TAMPERED = "tampered"
    AHEAD = "ahead"  # applied versions the set does not have
    IGNORED = "ignored"  # a version below the applied one never ran: Flyway's migrate refuses it
    OUTDATED = "outdated"  # a repeatable at an older checksum
    BEHIND = "behind"
    CURRENT = "current"


class TenantState(BaseModel):
    """What one tenant's table shows, compact: no credential, no row text.

    Attributes:
        server: ``host:port`` (tenants with the same key share a server; the rollout's key).
        version: the schema's version as Flyway's ``info`` gives it: the highest applied version
            (an out-of-order hotfix below it, a failed row or a baseline count as Flyway counts them).
        current: a migrate would apply nothing (proven from the table).
        intact: a validate would pass (pending versions allowed).
        pending: versions (and ``R <description>`` repeatables) of the set not applied, first 20.
        ignored: versions below the applied one that never ran (Flyway's ``Ignored``: a plain
            migrate refuses them; ``--out-of-order`` applies one).
        unknown: why neither verdict could be proven ("" when one could).
        applied_by: the tenant's table shows the rollout selection's marker (``--applied-in``).
        read_at: when the table was read (ISO 8601, UTC).
    """

    model_config = WIRE_MODEL

    tenant_id: str
    server: str = ""
    version: str = ""
    current: bool = False
    intact: bool = False
    pending: list[str] = Field(default_factory=list)
    pending_count: int = 0
    failed: list[str] = Field(default_factory=list)
    tampered: list[str] = Field(default_factory=list)
    ahead: list[str] = Field(default_factory=list)
    outdated: list[str] = Field(default_factory=list)
    ignored: list[str] = Field(default_factory=list)
    unknown: str = ""
    unreadable: bool = False
    applied_by: bool = False
    read_at: str = ""

    def reaches(self, version: str) -> bool:
        """Whether the schema is at ``version`` or later for a release gate (``fleetway wait``).

        Flyway's version at least ``version``, no failed row, and no migration at or below it left
        unapplied (pending, or ignored below an out-of-order hotfix): what the application needs.
        """
        if self.unreadable or not self.version or self.failed:
            return False
        wanted = version_key(version)
        if version_key(self.version) < wanted:
            return False
        unapplied = [v for v in (*self.pending, *self.ignored) if not v.startswith("R ")]
        return not any(version_key(v) <= wanted for v in unapplied)

    @property
    def state(self) -> FleetState:
        """The one word for the picture, the worst that applies."""
        if self.unreadable:
            return FleetState.UNREADABLE
        for state, present in (
            (FleetState.FAILED, self.failed),
            (FleetState.TAMPERED, self.tampered),
            (FleetState.AHEAD, self.ahead),
            (FleetState.IGNORED, self.ignored),
            (FleetState.UNKNOWN, self.unknown),
            (FleetState.OUTDATED, self.outdated),
            (FleetState.BEHIND, self.pending_count),
        ):
            if present:
                return state
        return FleetState.CURRENT


class ReadStatesInput(BaseModel):
    """One page of a rollout's tenants to read, judge and (``where``/``applied_marker``) select.

    Attributes:
        applied_marker: a rollout's history marker; a tenant is selected only when its table
            shows a row that rollout applied (``applied_version``: that version's row).
    """

    model_config = WIRE_MODEL

    tenant_ids: list[str] = Field(max_length=MAX_SCREENED)
    secrets_backend: str = "default"
    pinned_secrets: str = ""
    migration_set: str = ""
    where: str = ""
    applied_marker: str = ""
    applied_version: str = ""
    placeholders: dict[str, str] = Field(default_factory=dict)  # the rollout's, for repeatables' checksums
    tenant_source: str = "default"  # where ``${label.KEY}`` values come from


class TenantStates(BaseModel):
    """The page's states in input order, and when the tables were read.

    Attributes:
        migrate_callbacks / validate_callbacks: the set's SQL callbacks that Flyway runs on a migrate
            that applies nothing / on a validate (``afterMigrate.sql`` ...): a tenant proven current
            skipping its run skips them too, so the rollout runs Flyway unless told to skip them.
    """

    model_config = WIRE_MODEL

    read_at: str
    migration_set: str = ""
    states: list[TenantState] = Field(default_factory=list)
    selected: list[bool] = Field(default_factory=list)
    migrate_callbacks: list[str] = Field(default_factory=list)
    validate_callbacks: list[str] = Field(default_factory=list)


def within_budget(page: TenantStates, budget: int = SCREEN_BUDGET) -> TenantStates:
    """The page within ``budget`` encoded bytes: fewer names per list (three, then one).

    The verdicts, the pending count and each list's emptiness (what the rollout decides on, and
    the one-word state) stay; names go only on pages of unusually long ids, versions or descriptions.
    """
    cut = page
    for keep in (3, 1):
        if len(cut.model_dump_json()) <= budget:
            break
        cut = page.model_copy(update={"states": [_cut(s, keep) for s in page.states]})
    return cut


def _cut(state: TenantState, keep: int) -> TenantState:
    lists = ("pending", "failed", "tampered", "ahead", "outdated", "ignored")
    update: dict[str, object] = {name: getattr(state, name)[:keep] for name in lists}
    update["unknown"] = state.unknown[: 60 * keep]
    return state.model_copy(update=update)


class ReadFleetInput(BaseModel):
    """The whole fleet of a tenant source, read for the picture (or a ``wait --at-least`` poll)."""

    model_config = CLIENT_INPUT

    @classmethod
    def from_client(cls, data: object) -> bool:
        """Always a client's input (see ``activities/wire.py``)."""
        return True

    tenant_source: str = "default"
    secrets_backend: str = "default"
    migration_set: str = ""
    selector: str = ""  # a label selector (the wave syntax): only matching tenants are read
    at_least: str = ""
    placeholders: dict[str, str] = Field(default_factory=dict)  # the rollouts', for repeatables' checksums
