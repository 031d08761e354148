"""One tenant of a rollout: its child workflow, and the outcome however the child ended.

Child ids are ``<rollout_id>/<tenant_id>`` with duplicates rejected, so no tenant runs twice in a
rollout across worker crashes and continue-as-new; a duplicate comes back as ``None`` for the
rollout's state to judge (a tenant listed twice, or a rollout id used before).
"""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import CancelledError, ChildWorkflowError, WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from fleetway.activities.flyway.output import ErrorClass
    from fleetway.activities.flyway.request import FlywayRequest
    from fleetway.activities.rollouts import Outcome, TenantOutcome
    from fleetway.workflows.attributes import (
        ACTION_ATTRIBUTE,
        ROLLOUT_ATTRIBUTE,
        SET_ATTRIBUTE,
        WAVE_ATTRIBUTE,
    )
    from fleetway.workflows.migrate_all_models import MigrateAllInput
    from fleetway.workflows.schema_truth import reconciled
    from fleetway.workflows.tenant_migration import (
        IN_TASK_MAX_S,
        IN_TASK_TIMEOUT,
        TenantMigrationInput,
        TenantMigrationWorkflow,
        TenantToolboxWorkflow,
    )
    from fleetway.workflows.ui_text import DETAILS_BYTES, fit, tenant_summary

__all__ = ["run_tenant"]


async def run_tenant(
    request: MigrateAllInput,
    run: FlywayRequest,
    *,
    server: str = "",
    wave: str = "",
    suffix: str = "",
) -> TenantOutcome | None:
    """The tenant's outcome; for a child that ended without one, what its schema history shows.

    ``run`` is the tenant's Flyway run as the rollout built it; the child carries it unchanged.
    None: a child with this id already exists. The history read happens while the tenant is still
    in flight, so a cancelled rollout waits for it.
    """
    child = TenantMigrationInput(
        run=run,
        audit=request.audit,
        heartbeat_timeout_s=request.heartbeat_timeout_s,
        flyway_in_task=run.timeout_s <= IN_TASK_MAX_S,
    )
    outcome = await _execute_child(child, server=server, wave=wave, suffix=suffix)
    marker = run.installed_by
    if outcome is None or outcome.source is not None or not marker or outcome.outcome is Outcome.SKIPPED:
        return outcome
    try:
        return await reconciled(
            outcome, secrets_backend=run.secrets_backend, marker=marker, pinned_secrets=run.pinned_secrets
        )
    except asyncio.CancelledError:  # cancelled again while reading: keep what we know
        return outcome


def _details(child: TenantMigrationInput, wave: str) -> str:
    named = child.run.migration_set or "the worker's own"
    text = f"rollout `{workflow.info().workflow_id}`, migration set `{named}`"
    return fit(text + (f", wave **{wave}**" if wave else ""), DETAILS_BYTES)


async def _execute_child(
    child: TenantMigrationInput, *, server: str, wave: str, suffix: str
) -> TenantOutcome | None:
    # A run an older build cannot honour (options, baseline, repair) goes to a workflow type it
    # does not have: its task waits for a current worker instead of running without the options.
    toolbox = child.run.needs_current_build
    tenant = child.run.tenant_id
    try:
        return await workflow.execute_child_workflow(
            TenantToolboxWorkflow.run if toolbox else TenantMigrationWorkflow.run,
            child,
            id=f"{workflow.info().workflow_id}/{tenant}{suffix}",  # suffix: an operator's retry
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            parent_close_policy=workflow.ParentClosePolicy.REQUEST_CANCEL,
            cancellation_type=workflow.ChildWorkflowCancellationType.WAIT_CANCELLATION_COMPLETED,
            task_timeout=IN_TASK_TIMEOUT if child.flyway_in_task else None,
            # What the Temporal UI shows of the child at a glance (user metadata, not replayed).
            static_summary=tenant_summary(tenant, child.run.action.value, server),
            static_details=_details(child, wave),
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(ACTION_ATTRIBUTE, child.run.action.value),
                    SearchAttributePair(ROLLOUT_ATTRIBUTE, workflow.info().workflow_id),
                    *([SearchAttributePair(WAVE_ATTRIBUTE, wave)] if wave else []),
                    *(
                        [SearchAttributePair(SET_ATTRIBUTE, child.run.migration_set)]
                        if child.run.migration_set
                        else []
                    ),
                ]
            ),
        )
    except WorkflowAlreadyStartedError:
        return None
    except asyncio.CancelledError:
        return TenantOutcome(tenant_id=tenant, outcome=Outcome.CANCELED, message="cancelled")
    except ChildWorkflowError as err:
        canceled = isinstance(err.cause, CancelledError)
        return TenantOutcome(
            tenant_id=tenant,
            outcome=Outcome.CANCELED if canceled else Outcome.FAILED,
            error_class="" if canceled else ErrorClass.INTERNAL_ERROR.value,
            message="cancelled" if canceled else f"child workflow failed: {type(err.cause).__name__}",
        )
