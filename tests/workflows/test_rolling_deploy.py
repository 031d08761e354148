"""Two worker builds on one task queue: what a newer build writes never fails an older one's rollout.

Fast tier: the real workflow code on the real dev server. The "newer build" is a worker whose
activities return payloads with a field this build's models do not have, as a release that adds a
field would; the "older build" runs the workflows.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from fleetway.activities.flyway.request import FlywayRequest
from fleetway.activities.tenants.static import ListTenantsInput
from fleetway.activities.worker_profile import PinRolloutInput
from fleetway.worker.client.connection import FleetwayClient
from fleetway.workflows.migrate_all import MigrateAllWorkflow
from fleetway.workflows.migrate_all_models import MigrateAllInput, RolloutStatus
from fleetway.workflows.tenant_migration import TenantMigrationWorkflow
from tests.fleet import separate_client
from tests.workflows.scripted import SET, WAIT, Scripted

pytestmark = pytest.mark.fast

_NEW = {"field_from_a_newer_build": {"nested": [1, 2]}}


class _NewerBuild(Scripted):
    """Activities of a release whose results carry a field this build does not know."""

    @activity.defn(name="pin_rollout")
    async def pin_rollout(self, request: PinRolloutInput) -> dict[str, Any]:  # type: ignore[override]
        return {"migration_set": SET, **_NEW}

    @activity.defn(name="list_tenants_page")
    async def list_tenants_page(self, request: ListTenantsInput) -> dict[str, Any]:  # type: ignore[override]
        return {"tenant_ids": self.tenants, "next_cursor": None, **_NEW}

    @activity.defn(name="run_flyway")
    async def run_flyway(self, request: FlywayRequest) -> dict[str, Any]:  # type: ignore[override]
        self.calls.append(f"run_flyway:{request.tenant_id}")
        return {"action": request.action.value, "success": True, "applied_versions": ["1"], **_NEW}


async def test_an_older_build_runs_a_rollout_on_results_a_newer_build_wrote(client: Client) -> None:
    task_queue = f"deploy-{uuid.uuid4().hex[:8]}"
    newer = _NewerBuild(["alpha", "beta"], block=set())
    older = Scripted([], block=set())  # its local activities run inside its workflow tasks
    older_workflows = Worker(
        client,
        task_queue=task_queue,
        workflows=[MigrateAllWorkflow, TenantMigrationWorkflow],
        # The Flyway call runs inside the child's workflow task: the newer build's call answers
        # there, its result decoded by the older workflow code.
        activities=[older.check_quiesce, older.emit_audit, newer.run_flyway],
        no_remote_activities=True,  # every regular activity runs on the newer build
    )
    newer_activities = Worker(await separate_client(client), task_queue=task_queue, activities=newer.all())
    async with older_workflows, newer_activities:
        result = await FleetwayClient(client, task_queue).run(
            MigrateAllInput(), rollout_id=f"deploy-{uuid.uuid4().hex[:8]}"
        )
    assert result.status is RolloutStatus.SUCCEEDED, result.warnings
    assert sorted(o.tenant_id for o in result.outcomes) == ["alpha", "beta"]
    assert sorted(c for c in newer.calls if c.startswith("run_")) == ["run_flyway:alpha", "run_flyway:beta"]


async def test_a_client_start_with_a_misspelt_field_fails_at_once_by_name(client: Client) -> None:
    async with Worker(
        client, task_queue=(queue := f"deploy-{uuid.uuid4().hex[:8]}"), workflows=[MigrateAllWorkflow]
    ):
        handle = await client.start_workflow(
            "MigrateAllWorkflow", {"paralelism": 3}, id=f"typo-{uuid.uuid4().hex[:8]}", task_queue=queue
        )
        with pytest.raises(WorkflowFailureError) as failure:
            await asyncio.wait_for(handle.result(), WAIT)
    cause = failure.value.cause
    assert (
        isinstance(cause, ApplicationError)
        and cause.type == "invalid_input"
        and "paralelism" in cause.message
    )


async def test_a_continued_run_an_older_build_cannot_read_waits_for_a_newer_one(client: Client) -> None:
    """A newer build's continue-as-new input fails only the task (retried), never the rollout."""
    queue = f"deploy-{uuid.uuid4().hex[:8]}"
    async with Worker(client, task_queue=queue, workflows=[MigrateAllWorkflow]):
        handle = await client.start_workflow(
            "MigrateAllWorkflow",
            {"carry": {"runs": 3}, "option_of_a_newer_build": True},
            id=f"newer-{uuid.uuid4().hex[:8]}",
            task_queue=queue,
        )
        async with asyncio.timeout(WAIT):
            while True:
                described = await handle.describe()
                task = described.raw_description.pending_workflow_task
                if task.attempt >= 2:
                    break
                await asyncio.sleep(0.2)
    assert described.status is not None and described.status.name == "RUNNING"
    await handle.terminate("test over")
