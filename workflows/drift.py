"""The drift summary of a validate (or info) rollout: which tenants differ from the repository.

Pure functions over :class:`MigrateAllResult` (safe in workflows and the CLI):

- **tampered**: an applied script's checksum differs from the repository's (someone edited it);
- **lagging**: versions in the repository not applied yet (pending);
- **ahead**: versions applied that the repository does not have (``Future`` in Flyway's info);
- **failed_migrations**: failed rows left in the schema history;
- **unchecked**: the tenant could not be validated at all (unreachable, bad credentials...).
"""

from __future__ import annotations

from collections import Counter
from enum import StrEnum

from pydantic import BaseModel, Field
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from fleetway.activities.flyway.output import Action, ErrorClass
    from fleetway.activities.rollouts import Outcome, TenantOutcome
    from fleetway.activities.wire import WIRE_MODEL
from fleetway.workflows.migrate_all_models import MigrateAllResult

__all__ = ["DriftKind", "DriftSummary", "TenantDrift", "drift_kinds", "render_markdown", "summarize"]


class DriftKind(StrEnum):
    """Published drift kinds (additions only)."""

    TAMPERED = "tampered"
    LAGGING = "lagging"
    AHEAD = "ahead"
    FAILED_MIGRATIONS = "failed_migrations"
    UNCHECKED = "unchecked"
    OUTDATED_REPEATABLES = "outdated_repeatables"  # an applied repeatable differs from the set's


def drift_kinds(outcome: TenantOutcome) -> list[DriftKind]:
    """The kinds of drift one tenant outcome shows (empty: the tenant matches the repository)."""
    kinds = []
    if outcome.tampered or outcome.error_class == ErrorClass.CHECKSUM_MISMATCH.value:
        kinds.append(DriftKind.TAMPERED)
    if outcome.pending:
        kinds.append(DriftKind.LAGGING)
    if outcome.ahead:
        kinds.append(DriftKind.AHEAD)
    if outcome.failed_versions:
        kinds.append(DriftKind.FAILED_MIGRATIONS)
    if outcome.outdated_repeatables:
        kinds.append(DriftKind.OUTDATED_REPEATABLES)
    if outcome.outcome is Outcome.FAILED and not kinds:
        kinds.append(DriftKind.UNCHECKED)
    return kinds


class TenantDrift(BaseModel):
    """One drifted tenant."""

    model_config = WIRE_MODEL

    tenant_id: str
    kinds: list[DriftKind]
    tampered: list[str] = Field(default_factory=list)
    pending: list[str] = Field(default_factory=list)
    ahead: list[str] = Field(default_factory=list)
    failed_versions: list[str] = Field(default_factory=list)
    outdated_repeatables: list[str] = Field(default_factory=list)
    error_class: str = ""


class DriftSummary(BaseModel):
    """Counts per kind plus every drifted tenant of one rollout."""

    model_config = WIRE_MODEL

    rollout_id: str
    action: Action
    total: int
    clean: int
    counts: dict[DriftKind, int]
    tenants: list[TenantDrift]
    truncated: bool = False


def summarize(result: MigrateAllResult) -> DriftSummary:
    """Build the summary from a finished rollout (``truncated`` when not every tenant is listed)."""
    drifted = [
        TenantDrift(
            tenant_id=o.tenant_id,
            kinds=kinds,
            tampered=o.tampered,
            pending=o.pending,
            ahead=o.ahead,
            failed_versions=o.failed_versions,
            outdated_repeatables=o.outdated_repeatables,
            error_class=o.error_class,
        )
        for o in result.outcomes
        if (kinds := drift_kinds(o))
    ]
    counts = Counter(kind for tenant in drifted for kind in tenant.kinds)
    drifted_total = len(drifted)
    if result.drift or result.drifted:
        # The rollout counted every tenant; the kept outcomes may be only the first ones.
        counts = Counter({DriftKind(k): v for k, v in result.drift.items()})
        drifted_total = result.drifted
    return DriftSummary(
        rollout_id=result.rollout_id,
        action=result.action,
        total=result.total,
        clean=result.total - drifted_total,
        counts={k: counts.get(k, 0) for k in DriftKind},
        tenants=sorted(drifted, key=lambda t: t.tenant_id),
        truncated=result.truncated,
    )


def render_markdown(summary: DriftSummary) -> str:
    """A Markdown report a pipeline can attach (GitHub/GitLab render it)."""
    lines = [
        f"## Schema drift — `{summary.rollout_id}`",
        "",
        f"{summary.total} tenants checked ({summary.action.value}): **{summary.clean} clean**, "
        + ", ".join(f"{n} {k.value}" for k, n in summary.counts.items() if n)
        + ("" if any(summary.counts.values()) else "no drift"),
        "",
    ]
    if summary.tenants:
        lines += [
            "| tenant | drift | tampered | pending | ahead | failed | error |",
            "|---|---|---|---|---|---|---|",
        ]
        for t in summary.tenants:
            cells = [
                t.tenant_id,
                ", ".join(k.value for k in t.kinds),
                *(", ".join(v) for v in (t.tampered, t.pending, t.ahead, t.failed_versions)),
                t.error_class,
            ]
            lines.append("| " + " | ".join(f"`{c}`" if c else "" for c in cells) + " |")
    if summary.truncated:
        lines += ["", "_Counts cover every tenant; only the first drifted tenants are listed._"]
    return "\n".join(lines) + "\n"
