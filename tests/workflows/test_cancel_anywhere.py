"""A cancel at any await of any workflow ends it CANCELED, with every child cancelled.

The real workflow code on the real Temporal dev server, with scripted activities registered under
the real activity names: one of them blocks (heartbeating, so a cancel reaches it) and the test
cancels the workflow while it awaits exactly that activity. No PostgreSQL or Flyway is needed to
place a cancel at one await; the real-stack tests prove the activities themselves.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError, CancelledError

from fleetway.activities.flyway.output import FlywayOutcome
from fleetway.activities.flyway.request import FlywayRequest
from fleetway.activities.postgres.provisioning import TenantRoles
from fleetway.activities.servers.models import HealthState, ServerHealth
from fleetway.activities.tenants.waves import WaveSpec
from fleetway.worker.client.connection import FleetwayClient
from fleetway.workflows.migrate_all import MigrateAllWorkflow
from fleetway.workflows.migrate_all_models import (
    MigrateAllInput,
    Progress,
    RolloutStatus,
    WaveDecision,
    WaveState,
)
from fleetway.workflows.provision_tenant import ProvisionRequest, ProvisionTenantWorkflow
from fleetway.workflows.wave_plan import holder_id
from tests.workflows.scripted import SET, WAIT, Scripted, scripted_worker

pytestmark = pytest.mark.fast


async def _cancelled(handle: WorkflowHandle[Any, Any]) -> None:
    """Cancel, then require the run to end CANCELED (not failed, not completed)."""
    await handle.cancel()
    with pytest.raises(WorkflowFailureError) as failure:
        await asyncio.wait_for(handle.result(), WAIT)
    assert isinstance(failure.value.cause, CancelledError), failure.value.cause
    assert (await handle.describe()).status is WorkflowExecutionStatus.CANCELED


async def _until(
    handle: WorkflowHandle[MigrateAllWorkflow, object], check: Callable[[Progress], bool]
) -> None:
    async with asyncio.timeout(WAIT):
        while not check(await handle.query(MigrateAllWorkflow.progress)):
            await asyncio.sleep(0.05)


async def _status(client: Client, workflow_id: str) -> WorkflowExecutionStatus | None:
    return (await client.get_workflow_handle(workflow_id).describe()).status


# Where the rollout waits, and the input that takes it there.
_ROLLOUT_AWAITS = {
    "pin_rollout": MigrateAllInput(),
    "failed_tenants_of": MigrateAllInput(rerun_failed_of="an-earlier-rollout", migration_set=SET),
    "plan_waves": MigrateAllInput(waves=[WaveSpec(name="all", rest=True)], migration_set=SET),
}


@pytest.mark.parametrize("blocked", sorted(_ROLLOUT_AWAITS))
async def test_rollout_ends_canceled_when_cancelled_during_a_start_activity(
    client: Client, blocked: str
) -> None:
    script = Scripted(["alpha", "beta"], block={blocked})
    async with scripted_worker(client, script) as task_queue:
        # A raw start: the scripted worker answers for "an-earlier-rollout", which the library
        # would look up (and refuse) before starting.
        handle = await client.start_workflow(
            MigrateAllWorkflow.run,
            _ROLLOUT_AWAITS[blocked],
            id=f"cancel-{uuid.uuid4().hex[:8]}",
            task_queue=task_queue,
        )
        await asyncio.wait_for(script.started[blocked].wait(), WAIT)
        await _cancelled(handle)
        if blocked == "plan_waves":  # the plan's holder stops planning and ends with the rollout
            holder = client.get_workflow_handle(holder_id(handle.id))
            assert await asyncio.wait_for(holder.result(), WAIT) == "released while planning"
    assert not [c for c in script.calls if c.startswith("run_flyway")]  # nothing dispatched after it


@pytest.mark.parametrize("blocked", ["list_page2", "check_quiesce"])
async def test_rollout_cancels_its_in_flight_children_when_cancelled_between_dispatches(
    client: Client, blocked: str
) -> None:
    """Cancelled while listing the next page (or checking the flag) with a tenant mid-run."""
    script = Scripted(["alpha", "beta"], block={blocked, "run_flyway:alpha"})
    rollout_id = f"cancel-{uuid.uuid4().hex[:8]}"
    async with scripted_worker(client, script) as task_queue:
        handle = (
            await FleetwayClient(client, task_queue).start(
                MigrateAllInput(migration_set=SET, heartbeat_timeout_s=2, page_size=1), rollout_id=rollout_id
            )
        ).handle
        await asyncio.wait_for(script.started["run_flyway:alpha"].wait(), WAIT)
        await asyncio.wait_for(script.started[blocked].wait(), WAIT)
        await _cancelled(handle)
        assert await _status(client, f"{rollout_id}/alpha") is WorkflowExecutionStatus.CANCELED
    assert "run_flyway:alpha" in script.cancelled  # the tenant's Flyway activity was stopped
    assert "run_flyway:beta" not in script.calls


async def test_rollout_does_not_open_a_gate_when_cancelled_while_auditing_the_approval(
    client: Client,
) -> None:
    script = Scripted(["alpha", "beta"], block={"emit_audit:rollout.wave_approved"})
    async with scripted_worker(client, script) as task_queue:
        handle = (
            await FleetwayClient(client, task_queue).start(
                MigrateAllInput(migration_set=SET, waves=[WaveSpec(name="gated", rest=True, gate=True)]),
                rollout_id=f"cancel-{uuid.uuid4().hex[:8]}",
            )
        ).handle
        await _until(handle, lambda p: bool(p.waves) and p.waves[0].state is WaveState.AWAITING_APPROVAL)
        await handle.execute_update(MigrateAllWorkflow.approve, WaveDecision(principal="ops@example.com"))
        await asyncio.wait_for(script.started["emit_audit:rollout.wave_approved"].wait(), WAIT)
        await _cancelled(handle)
    assert not [c for c in script.calls if c.startswith("run_flyway")]


class _OneBreaks(Scripted):
    """beta fails (a script error) while alpha is still mid-run."""

    @activity.defn(name="run_flyway")
    async def run_flyway(self, request: FlywayRequest) -> FlywayOutcome:
        self.calls.append(f"run_flyway:{request.tenant_id}")
        if request.tenant_id == "beta":
            await asyncio.wait_for(self.started["alpha-running"].wait(), WAIT)
            raise ApplicationError("beta breaks", type="script_failed", non_retryable=True)
        self.started["alpha-running"].set()
        for _ in range(40):  # still running when beta fails; heartbeats, so a cancel would reach it
            activity.heartbeat()
            await asyncio.sleep(0.1)
        return FlywayOutcome(action=request.action, success=True, applied_versions=["1"], ending_version="1")


async def test_fail_fast_drains_healthy_tenants_instead_of_cancelling_them(client: Client) -> None:
    """The first failure stops dispatching; a tenant mid-run finishes its run (only cancel kills)."""
    script = _OneBreaks(["alpha", "beta", "gamma"], block=set())
    async with scripted_worker(client, script) as task_queue:
        result = await FleetwayClient(client, task_queue).run(
            MigrateAllInput(
                tenants=["alpha", "beta", "gamma"], migration_set=SET, parallelism=2, heartbeat_timeout_s=2
            ),
            rollout_id=f"failfast-{uuid.uuid4().hex[:8]}",
        )
    assert result.status is RolloutStatus.FAILED
    outcomes = {o.tenant_id: o.outcome.value for o in result.outcomes}
    assert outcomes == {"alpha": "succeeded", "beta": "failed"}
    assert "run_flyway:gamma" not in script.calls  # nothing dispatched after the failure


@pytest.mark.parametrize(
    ("blocked", "never_reached"),
    [("provision_create_roles", "run_flyway:acme"), ("check_quiesce_ok", "provision_create_schema")],
)
async def test_provisioning_rolls_back_then_ends_canceled_when_cancelled_mid_step(
    client: Client, blocked: str, never_reached: str
) -> None:
    """Cancelled during a step or during its quiesce check: cleanup runs, then the run ends CANCELED."""
    script = Scripted([], block={blocked})
    async with scripted_worker(client, script) as task_queue:
        handle = await client.start_workflow(
            ProvisionTenantWorkflow.run,
            ProvisionRequest(roles=TenantRoles(tenant_id="acme")),
            id=f"provision/{uuid.uuid4().hex[:8]}",
            task_queue=task_queue,
        )
        await asyncio.wait_for(script.started[blocked].wait(), WAIT)
        await _cancelled(handle)
    assert "provision_cleanup" in script.calls
    assert never_reached not in script.calls


_SERVER_A, _SERVER_B = "10.0.0.1:5432", "10.0.0.2:5432"


@pytest.mark.parametrize(
    "blocked", ["server_keys", f"check_server:{_SERVER_B}", "emit_audit:rollout.server_held"]
)
async def test_rollout_cancels_cleanly_during_a_server_key_read_check_or_hold_audit(
    client: Client, blocked: str
) -> None:
    """The server gate's awaits: keys (nothing dispatched yet), a check and a hold's audit (alpha mid-run)."""
    script = Scripted(["alpha", "beta"], block={blocked, "run_flyway:alpha"})
    script.server_of = {"alpha": _SERVER_A, "beta": _SERVER_B}
    script.health[_SERVER_B] = [
        ServerHealth(state=HealthState.OVER, why="3 sessions wait on locks (max 0)")
    ] * 10
    rollout_id = f"cancel-{uuid.uuid4().hex[:8]}"
    async with scripted_worker(client, script) as task_queue:
        handle = (
            await FleetwayClient(client, task_queue).start(
                MigrateAllInput(migration_set=SET, heartbeat_timeout_s=2, tenants=["alpha", "beta"]),
                rollout_id=rollout_id,
            )
        ).handle
        await asyncio.wait_for(script.started[blocked].wait(), WAIT)
        if blocked != "server_keys":
            await asyncio.wait_for(script.started["run_flyway:alpha"].wait(), WAIT)
        await _cancelled(handle)
        if blocked != "server_keys":
            assert await _status(client, f"{rollout_id}/alpha") is WorkflowExecutionStatus.CANCELED
    assert "run_flyway:beta" not in script.calls
    assert blocked in script.cancelled
