"""A tenant's outcome made to agree with its ``flyway_schema_history`` (workflow side).

Used by ``TenantMigrationWorkflow`` after any run that is not one complete first attempt (a
retry, a failure, a cancel) and by ``MigrateAllWorkflow`` for a child that ended without an
outcome (cancelled, terminated). The read itself is the ``read_schema_history`` activity; what
it found replaces the versions of the outcome. Deterministic: no I/O here.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from fleetway.activities.flyway.schema_history import (
        HistorySummary,
        ReadHistoryInput,
        SchemaHistoryActivities,
    )
    from fleetway.activities.rollouts import Outcome, OutcomeSource, TenantOutcome
    from fleetway.workflows.activity_failures import reraise_cancel

__all__ = ["reconciled", "versions_text"]

_MESSAGE_MAX = 300
_LIST_MAX = 50


def versions_text(versions: list[str]) -> str:
    """``V1`` / ``V1..V5`` for a run of applied versions (installed order), "" for none."""
    if not versions:
        return ""
    return f"V{versions[0]}" if len(versions) == 1 else f"V{versions[0]}..V{versions[-1]}"


def _note(outcome: TenantOutcome) -> str:
    """The schema part of a non-success message: where it stopped and what this rollout applied."""
    applied = versions_text(outcome.applied_versions)
    parts = [f"failed at V{outcome.failed_at}"] if outcome.failed_at else []
    parts.append(f"{applied} applied by this rollout" if applied else "nothing applied by this rollout")
    return "; ".join(parts)


def apply_summary(outcome: TenantOutcome, summary: HistorySummary) -> TenantOutcome:
    """``outcome`` with its versions replaced by what the table says (pure)."""
    failed_at = outcome.failed_at or (summary.failed[-1] if summary.failed else "")
    updated = outcome.model_copy(
        update={
            "version_before": summary.version_before,
            "version_after": summary.version_after,
            "applied_versions": summary.applied[:_LIST_MAX],
            "applied": len(summary.applied),
            "failed_at": failed_at,
            "repeatables": summary.repeatables[:_LIST_MAX],
            "source": OutcomeSource.HISTORY,
        }
    )
    if outcome.outcome is Outcome.SUCCEEDED:
        return updated
    base = outcome.message or outcome.outcome.value
    return updated.model_copy(update={"message": f"{base}; {_note(updated)}"[:_MESSAGE_MAX]})


async def reconciled(
    outcome: TenantOutcome,
    *,
    secrets_backend: str,
    marker: str,
    pinned_secrets: str = "",
    timeout_s: int = 30,
) -> TenantOutcome:
    """Read the tenant's schema history and make ``outcome`` say what it shows.

    When the table cannot be read within ``timeout_s`` (the database is the fault), the outcome
    says so (``source: unknown``) instead of guessing.
    """
    try:
        summary = await workflow.execute_activity_method(
            SchemaHistoryActivities.read_schema_history,
            ReadHistoryInput(
                tenant_id=outcome.tenant_id,
                secrets_backend=secrets_backend,
                marker=marker,
                pinned_secrets=pinned_secrets,
            ),
            schedule_to_close_timeout=timedelta(seconds=timeout_s),
            start_to_close_timeout=timedelta(seconds=20),
            retry_policy=RetryPolicy(
                initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=5)
            ),
        )
    except ActivityError as err:
        reraise_cancel(err)
        cause = err.cause
        reason = cause.message if isinstance(cause, ApplicationError) else type(cause).__name__
        base = outcome.message or outcome.outcome.value
        return outcome.model_copy(
            update={
                "source": OutcomeSource.UNKNOWN,
                "message": f"{base}; schema state unknown ({reason})"[:_MESSAGE_MAX],
            }
        )
    return apply_summary(outcome, summary)
