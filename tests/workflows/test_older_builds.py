"""A worker of an older build on the same queue never runs a tenant whose run carries Flyway options.

Not in the fast tier: the older build fails the child's workflow task (a type it lacks), and the
server's retry backoff before the current worker takes it costs about 20 s.
"""

from __future__ import annotations

import asyncio
import uuid

from temporalio.client import Client
from temporalio.worker import Worker

from fleetway.activities.flyway.options import FlywayOptions
from fleetway.worker.client.connection import FleetwayClient
from fleetway.workflows.migrate_all import MigrateAllWorkflow
from fleetway.workflows.migrate_all_models import MigrateAllInput, RolloutStatus
from fleetway.workflows.tenant_migration import TenantMigrationWorkflow, TenantToolboxWorkflow
from tests.fleet import separate_client
from tests.workflows.scripted import SET, WAIT, Scripted


async def test_an_older_build_never_takes_a_run_with_options(client: Client) -> None:
    """A worker without the toolbox names (an older build) leaves the tenant waiting, never runs it plain."""
    task_queue = f"older-{uuid.uuid4().hex[:8]}"
    older, current = Scripted(["a"], block=set()), Scripted(["a"], block=set())
    older_activities = [a for a in older.all() if a != older.run_flyway_with_options]
    request = MigrateAllInput(tenants=["a"], migration_set=SET, flyway=FlywayOptions(target="2"))
    async with Worker(
        client, task_queue=task_queue, workflows=[MigrateAllWorkflow, TenantMigrationWorkflow],
        activities=older_activities,
    ):  # fmt: skip
        handle = (
            await FleetwayClient(client, task_queue).start(
                request, rollout_id=f"older-{uuid.uuid4().hex[:8]}"
            )
        ).handle
        for _ in range(100):
            if (await handle.query(MigrateAllWorkflow.progress)).in_flight == ["a"]:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1)  # the child's tasks are offered to the older build meanwhile
        assert older.flyway_runs == []
        async with Worker(
            await separate_client(client), task_queue=task_queue,
            workflows=[MigrateAllWorkflow, TenantMigrationWorkflow, TenantToolboxWorkflow], activities=current.all(),
        ):  # fmt: skip
            result = await asyncio.wait_for(handle.result(), WAIT)

    assert result.status is RolloutStatus.SUCCEEDED
    assert older.flyway_runs == []
    assert [(r.tenant_id, r.flyway.target) for r in current.flyway_runs] == [("a", "2")]
