"""A rollout started again under an id that already ran reports that, not "succeeded".

Fast tier: the real workflow code on the real dev server, started the way a pipeline's client does
with the SDK's default id reuse policy (the ``fleetway`` CLI refuses such an id before it starts).
"""

from __future__ import annotations

import uuid

import pytest
from temporalio.client import Client

from fleetway.activities.errors import RolloutIdReusedError
from fleetway.worker.client.connection import FleetwayClient
from fleetway.workflows.migrate_all import MigrateAllWorkflow
from fleetway.workflows.migrate_all_models import MigrateAllInput, RolloutStatus
from tests.workflows.scripted import SET, Scripted, scripted_worker

pytestmark = pytest.mark.fast


async def test_a_rollout_id_used_before_fails_the_new_run_and_runs_nothing_again(client: Client) -> None:
    script = Scripted(["alpha", "beta"], block=set())
    rollout_id = f"reuse-{uuid.uuid4().hex[:8]}"
    request = MigrateAllInput(tenants=["alpha", "beta"], migration_set=SET, parallelism=1)
    async with scripted_worker(client, script) as task_queue:
        library = FleetwayClient(client, task_queue)
        first = await library.run(request, rollout_id=rollout_id)
        with pytest.raises(RolloutIdReusedError, match="already used by run"):  # the library refuses it
            await library.start(request, rollout_id=rollout_id)
        # A plain client (the SDK's default reuse policy) starts it anyway: the workflow says so.
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
        result = await FleetwayClient(client, task_queue).run(
            MigrateAllInput(migration_set=SET, parallelism=1, page_size=1000),
            rollout_id=f"dupes-{uuid.uuid4().hex[:8]}",
        )
    assert result.status is RolloutStatus.SUCCEEDED, result.warnings
    assert sorted((o.tenant_id, o.outcome.value) for o in result.outcomes) == [
        ("alpha", "skipped"),
        ("alpha", "succeeded"),
        ("beta", "succeeded"),
    ]


async def test_the_library_joins_a_running_rollout_when_asked_and_refuses_it_otherwise(
    client: Client,
) -> None:
    """The rollout id is the idempotency key: a pipeline step retried joins the rollout it started."""
    script = Scripted(["alpha"], block={"list_page1"})  # held while listing: running
    rollout_id = f"join-{uuid.uuid4().hex[:8]}"
    async with scripted_worker(client, script) as task_queue:
        library = FleetwayClient(client, task_queue)
        first = await library.start(MigrateAllInput(migration_set=SET), rollout_id=rollout_id)
        joined = await library.start(
            MigrateAllInput(migration_set=SET, parallelism=2), rollout_id=rollout_id, join=True
        )
        with pytest.raises(RolloutIdReusedError, match=r"\(running\).*fleetway cancel"):
            await library.start(MigrateAllInput(migration_set=SET), rollout_id=rollout_id)
        first_run = (await first.handle.describe()).run_id
        assert (await joined.handle.describe()).run_id == first_run
        await first.handle.terminate("test over")
