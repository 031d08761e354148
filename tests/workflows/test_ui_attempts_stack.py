"""A tenant whose Flyway call keeps failing says so in the Temporal UI: its attempt, and why the last failed.

Real Flyway (the JVM engine, run in the child's task), real PostgreSQL, the real worker: the test
holds a lock on the tenant's ``flyway_schema_history`` as an application's long transaction would,
so each attempt ends in ``lock_timeout`` and is retried; the child's current details (what the UI
shows, read through the same built-in query) name the attempt and the failure. Then the lock goes,
the tenant migrates, and its table and outcome agree.
"""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from fleetway.activities.flyway.contract import FlywayInstall
from fleetway.activities.flyway.options import FlywayOptions
from fleetway.activities.rollouts import Outcome
from fleetway.worker.client.connection import FleetwayClient
from fleetway.worker.dev.stack import PostgresServer
from fleetway.workflows.migrate_all_models import MigrateAllInput, RolloutStatus
from tests.fleet import make_fleet
from tests.support import history


async def _current_details(client: Client, workflow_id: str) -> str:
    """The workflow's current details ("" while it is not started yet)."""
    try:
        metadata = await client.get_workflow_handle(workflow_id).query(
            "__temporal_workflow_metadata", result_type=WorkflowMetadata
        )
    except RPCError as err:
        if err.status is RPCStatusCode.NOT_FOUND:
            return ""
        raise
    return str(metadata.current_details)


@pytest.mark.timeout(300)
async def test_a_retried_tenant_shows_its_attempt_and_its_last_failure_while_it_runs(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer
) -> None:
    fleet = make_fleet(postgres, 1)
    (tenant,) = fleet.tenants
    library = FleetwayClient(client, fleet.task_queue)
    async with fleet.worker(client, flyway_install, engine="jvm", lock_timeout_s=1.0):
        first = MigrateAllInput(tenants=[tenant], flyway=FlywayOptions(target="2"))
        assert (await library.run(first)).status is RolloutStatus.SUCCEEDED
        with psycopg.connect(postgres.dsn) as held:
            held.execute(f'LOCK TABLE "{tenant}".flyway_schema_history IN ACCESS EXCLUSIVE MODE')
            rollout = await library.start(
                MigrateAllInput(tenants=[tenant], retry_budget_s=180, skip_current=False)
            )
            child = f"{rollout.id}/{tenant}"
            async with asyncio.timeout(90):
                while "attempt 2 failed" not in (shown := await _current_details(client, child)):
                    await asyncio.sleep(0.5)
        result = await asyncio.wait_for(rollout.result(), 120)
        after = await _current_details(client, child)

    assert "running Flyway **migrate** in the child's task, attempt 3" in shown, shown
    assert "attempt 2 failed: **lock_timeout**" in shown, shown
    (outcome,) = result.outcomes
    assert outcome.outcome is Outcome.SUCCEEDED and outcome.attempts >= 3
    assert after.startswith("**succeeded**: 2 → 5"), after  # the running line gives way to the end
    # The table agrees: each script applied once, no failed row left by the refused attempts.
    assert history(postgres, tenant) == [(v, True) for v in ("1", "2", "3", "4", "5")]
