"""A rollout started again under an id that already ran reports that, not "succeeded".

Fast tier: the real workflow code on the real dev server, started the way a pipeline's client does
with the SDK's default id reuse policy (the ``fleetway`` CLI refuses such an id before it starts).
"""

from __future__ import annotations

import uuid

import pytest
from temporalio.client import Client

from fleetway.workflows.migrate_all import MigrateAllWorkflow
from fleetway.workflows.migrate_all_models import MigrateAllInput, RolloutStatus
from tests.workflows.scripted import SET, Scripted, scripted_worker

pytestmark = pytest.mark.fast


async def test_a_rollout_id_used_before_fails_the_new_run_and_runs_nothing_again(client: Client) -> None:
    script = Scripted(["alpha", "beta"], block=set())
    rollout_id = f"reuse-{uuid.uuid4().hex[:8]}"
    request = MigrateAllInput(tenants=["alpha", "beta"], migration_set=SET, parallelism=1)
    async with scripted_worker(client, script) as task_queue:
        first = await client.execute_workflow(
            MigrateAllWorkflow.run, request, id=rollout_id, task_queue=task_queue
        )
        again = await client.execute_workflow(
            MigrateAllWorkflow.run, request, id=rollout_id, task_queue=task_queue
        )
    assert first.status is RolloutStatus.SUCCEEDED
    assert again.status is RolloutStatus.FAILED
    assert any("was used by an earlier rollout" in w for w in again.warnings), again.warnings
    assert [c for c in script.calls if c.startswith("run_flyway")] == ["run_flyway:alpha", "run_flyway:beta"]


async def test_a_tenant_listed_twice_is_still_skipped_once_and_the_rollout_succeeds(client: Client) -> None:
    script = Scripted(["alpha", "alpha", "beta"], block=set())
    async with scripted_worker(client, script) as task_queue:
        result = await client.execute_workflow(
            MigrateAllWorkflow.run,
            MigrateAllInput(migration_set=SET, parallelism=1, page_size=1000),
            id=f"dupes-{uuid.uuid4().hex[:8]}",
            task_queue=task_queue,
        )
    assert result.status is RolloutStatus.SUCCEEDED, result.warnings
    assert sorted((o.tenant_id, o.outcome.value) for o in result.outcomes) == [
        ("alpha", "skipped"),
        ("alpha", "succeeded"),
        ("beta", "succeeded"),
    ]
