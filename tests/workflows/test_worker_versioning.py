"""A rollout crosses a deploy under Worker Versioning: pinned to its build, upgraded at continue-as-new.

Fast tier: the real workflow code on the dev server (Worker Deployments on), two workers of one
deployment with different build ids on one task queue, the build switched with the ``temporal`` CLI
exactly as docs/operations.md shows. The rollout's first run, and every child it started, stay on
build A; its next run (after the continue-as-new) and its children run on build B; then build A is
stopped and the rollout finishes on B alone.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
from temporalio.client import Client
from temporalio.common import VersioningBehavior
from temporalio.worker import Worker

from fleetway.activities.rollouts import Outcome
from fleetway.activities.tenants.waves import WaveSpec
from fleetway.worker.client.connection import FleetwayClient
from fleetway.worker.config.settings import WorkerConfig
from fleetway.worker.dev.stack import TemporalDevServer, temporal_binary
from fleetway.worker.process.versioning import deployment_config
from fleetway.workflows.migrate_all import MigrateAllWorkflow
from fleetway.workflows.migrate_all_models import MigrateAllInput, RolloutStatus, WaveDecision, WaveState
from fleetway.workflows.tenant_migration import TenantMigrationWorkflow
from fleetway.workflows.wave_plan import AutoUpgradingWavePlanWorkflow
from tests.workflows.scripted import SET, WAIT, Scripted, worker_activities

pytestmark = pytest.mark.fast


@asynccontextmanager
async def build(
    client: Client, script: Scripted, queue: str, deployment: str, build_id: str
) -> AsyncIterator[None]:
    config = deployment_config(WorkerConfig(deployment_name=deployment, build_id=build_id))
    async with Worker(
        client,
        task_queue=queue,
        workflows=[MigrateAllWorkflow, TenantMigrationWorkflow, AutoUpgradingWavePlanWorkflow],
        activities=worker_activities(client, script),
        deployment_config=config,
    ):
        yield


async def make_current(server: TemporalDevServer, deployment: str, build_id: str) -> None:
    """``temporal worker deployment set-current-version``, once the build has polled (it registers then)."""
    argv = [
        str(temporal_binary()), "worker", "deployment", "set-current-version", "--address", server.address,
        "--deployment-name", deployment, "--build-id", build_id, "--yes",
    ]  # fmt: skip
    for _ in range(100):
        done = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True, check=False)
        if done.returncode == 0:
            return
        await asyncio.sleep(0.3)
    raise AssertionError(done.stderr)


async def pinned_build(client: Client, workflow_id: str, run_id: str | None = None) -> tuple[str, int]:
    described = await client.get_workflow_handle(workflow_id, run_id=run_id).describe()
    info = described.raw_description.workflow_execution_info.versioning_info
    return info.deployment_version.build_id, info.behavior


async def test_a_rollout_runs_on_its_build_and_moves_to_the_new_one_at_continue_as_new(
    client: Client, temporal_server: TemporalDevServer
) -> None:
    script = Scripted([], block=set())
    queue, deployment = f"ver-{uuid.uuid4().hex[:8]}", f"fleetway-{uuid.uuid4().hex[:8]}"
    request = MigrateAllInput(
        migration_set=SET,
        waves=[
            WaveSpec(name="first", tenants=["t1", "t2"]),
            WaveSpec(name="second", tenants=["t3", "t4"], gate=True),
        ],
        parallelism=1,
        continue_as_new_after=3,  # t1, t2, t3 in the first run; t4 in the next
    )
    async with AsyncExitStack() as old, build(client, script, queue, deployment, "b") as _:
        await old.enter_async_context(build(client, script, queue, deployment, "a"))
        await make_current(temporal_server, deployment, "a")
        rollout = await FleetwayClient(client, queue).start(request, rollout_id=f"ver-{uuid.uuid4().hex[:8]}")
        async with asyncio.timeout(WAIT):  # the first wave ran on build a; the second waits at its gate
            while not any(w.state is WaveState.AWAITING_APPROVAL for w in (await rollout.progress()).waves):
                await asyncio.sleep(0.1)
        first_run = (await rollout.handle.describe()).run_id
        await make_current(temporal_server, deployment, "b")  # the new build takes new work
        await rollout.approve(WaveDecision(principal="ops"))
        async with asyncio.timeout(WAIT):  # the first run drained t3 and continued as new
            while (await rollout.handle.describe()).run_id == first_run:
                await asyncio.sleep(0.1)
        await old.aclose()  # build a is stopped: what is left runs on build b alone
        result = await asyncio.wait_for(rollout.result(), WAIT)

    assert result.status is RolloutStatus.SUCCEEDED and result.counts == {Outcome.SUCCEEDED: 4}
    assert await pinned_build(client, rollout.id, first_run) == ("a", VersioningBehavior.PINNED.value)
    assert (await pinned_build(client, rollout.id))[0] == "b"  # the run after the continue-as-new
    builds = {t: (await pinned_build(client, f"{rollout.id}/{t}"))[0] for t in ("t1", "t2", "t3", "t4")}
    assert builds == {"t1": "a", "t2": "a", "t3": "a", "t4": "b"}  # each child on its parent run's build
    # The plan holder auto-upgrades: it followed the deployment to b, so build a could drain.
    assert await pinned_build(client, f"{rollout.id}//wave-plan") == (
        "b",
        VersioningBehavior.AUTO_UPGRADE.value,
    )
