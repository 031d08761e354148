"""A cancel at any await of any workflow ends it CANCELED, with every child cancelled.

The real workflow code on the real Temporal dev server, with scripted activities registered under
the real activity names: one of them blocks (heartbeating, so a cancel reaches it) and the test
cancels the workflow while it awaits exactly that activity. No PostgreSQL or Flyway is needed to
place a cancel at one await; the real-stack tests prove the activities themselves.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.worker import Worker

from activities.audit.events import AuditEvent
from activities.flyway.engine import RunFlywayInput
from activities.flyway.output import FlywayOutcome
from activities.flyway.schema_history import HistorySummary, ReadHistoryInput
from activities.postgres.provisioning import CleanupInput, SchemaStep, SeedInput, TenantRoles
from activities.quiesce import QuiesceStatus
from activities.tenants.static import ListTenantsInput, TenantPage
from activities.tenants.waves import PlannedWave, PlanWavesInput, WavePlan, WaveSpec
from activities.worker_profile import PinRolloutInput, RolloutPin
from workflows.migrate_all import MigrateAllWorkflow
from workflows.migrate_all_models import MigrateAllInput, Progress, RolloutStatus, WaveDecision, WaveState
from workflows.provision_tenant import ProvisionRequest, ProvisionTenantWorkflow
from workflows.tenant_migration import TenantMigrationWorkflow

pytestmark = pytest.mark.fast

_SET = "sha256:" + "0" * 64
_WAIT = 30.0


class Scripted:
    """Activities under the real names; ``block`` names those that wait until cancelled.

    ``list_page2`` blocks only the second page of the tenant listing (the first is ``tenants[:1]``).
    """

    def __init__(self, tenants: list[str], *, block: set[str]) -> None:
        self.tenants = tenants
        self.block = block
        self.started: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self.calls: list[str] = []
        self.cancelled: list[str] = []

    async def _step(self, name: str) -> None:
        self.calls.append(name)
        self.started[name].set()
        if name not in self.block:
            return
        try:
            while True:
                if not activity.info().is_local:
                    activity.heartbeat()
                await asyncio.sleep(0.1)
        except asyncio.CancelledError:
            self.cancelled.append(name)
            raise

    @activity.defn(name="pin_rollout")
    async def pin_rollout(self, request: PinRolloutInput) -> RolloutPin:
        await self._step("pin_rollout")
        return RolloutPin(migration_set=_SET)

    @activity.defn(name="failed_tenants_of")
    async def failed_tenants_of(self, rollout_id: str) -> list[str]:
        await self._step("failed_tenants_of")
        return list(self.tenants)

    @activity.defn(name="plan_waves")
    async def plan_waves(self, request: PlanWavesInput) -> WavePlan:
        await self._step("plan_waves")
        return WavePlan(
            waves=[PlannedWave(name=w.name, tenants=list(self.tenants)) for w in request.waves],
            listed=len(self.tenants),
        )

    @activity.defn(name="list_tenants_page")
    async def list_tenants_page(self, request: ListTenantsInput) -> TenantPage:
        if request.cursor is None:
            await self._step("list_page1")
            return TenantPage(tenant_ids=self.tenants[:1], next_cursor="page-2")
        await self._step("list_page2")
        return TenantPage(tenant_ids=self.tenants[1:])

    @activity.defn(name="check_quiesce")
    async def check_quiesce(self) -> QuiesceStatus:
        # Only the second check blocks: the first lets one tenant be in flight when the cancel comes.
        await self._step("check_quiesce" if self.calls.count("check_quiesce_ok") else "check_quiesce_ok")
        return QuiesceStatus()

    @activity.defn(name="emit_audit")
    async def emit_audit(self, event: AuditEvent) -> None:
        await self._step(f"emit_audit:{event.type.value}")

    @activity.defn(name="run_flyway")
    async def run_flyway(self, request: RunFlywayInput) -> FlywayOutcome:
        await self._step(f"run_flyway:{request.tenant_id}")
        return FlywayOutcome(action=request.action, success=True, applied_versions=["1"], ending_version="1")

    @activity.defn(name="read_schema_history")
    async def read_schema_history(self, request: ReadHistoryInput) -> HistorySummary:
        await self._step("read_schema_history")
        return HistorySummary(table_exists=True)

    @activity.defn(name="provision_create_schema")
    async def create_schema(self, roles: TenantRoles) -> SchemaStep:
        await self._step("provision_create_schema")
        return SchemaStep(owned=True)

    @activity.defn(name="provision_create_roles")
    async def create_roles(self, roles: TenantRoles) -> None:
        await self._step("provision_create_roles")

    @activity.defn(name="provision_seed")
    async def seed(self, request: SeedInput) -> None:
        await self._step("provision_seed")

    @activity.defn(name="provision_cleanup")
    async def cleanup(self, request: CleanupInput) -> None:
        await self._step("provision_cleanup")

    def all(self) -> list[Callable[..., Any]]:
        return [
            self.pin_rollout, self.failed_tenants_of, self.plan_waves, self.list_tenants_page,
            self.check_quiesce, self.emit_audit, self.run_flyway, self.read_schema_history,
            self.create_schema, self.create_roles, self.seed, self.cleanup,
        ]  # fmt: skip


@asynccontextmanager
async def scripted_worker(client: Client, script: Scripted) -> AsyncIterator[str]:
    task_queue = f"cancel-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[MigrateAllWorkflow, TenantMigrationWorkflow, ProvisionTenantWorkflow],
        activities=script.all(),
    ):
        yield task_queue


async def _cancelled(handle: WorkflowHandle[Any, Any]) -> None:
    """Cancel, then require the run to end CANCELED (not failed, not completed)."""
    await handle.cancel()
    with pytest.raises(WorkflowFailureError) as failure:
        await asyncio.wait_for(handle.result(), _WAIT)
    assert isinstance(failure.value.cause, CancelledError), failure.value.cause
    assert (await handle.describe()).status is WorkflowExecutionStatus.CANCELED


async def _until(
    handle: WorkflowHandle[MigrateAllWorkflow, object], check: Callable[[Progress], bool]
) -> None:
    async with asyncio.timeout(_WAIT):
        while not check(await handle.query(MigrateAllWorkflow.progress)):
            await asyncio.sleep(0.05)


async def _status(client: Client, workflow_id: str) -> WorkflowExecutionStatus | None:
    return (await client.get_workflow_handle(workflow_id).describe()).status


# Where the rollout waits, and the input that takes it there.
_ROLLOUT_AWAITS = {
    "pin_rollout": MigrateAllInput(),
    "failed_tenants_of": MigrateAllInput(rerun_failed_of="an-earlier-rollout", migration_set=_SET),
    "plan_waves": MigrateAllInput(waves=[WaveSpec(name="all", rest=True)], migration_set=_SET),
}


@pytest.mark.parametrize("blocked", sorted(_ROLLOUT_AWAITS))
async def test_rollout_ends_canceled_when_cancelled_during_a_start_activity(
    client: Client, blocked: str
) -> None:
    script = Scripted(["alpha", "beta"], block={blocked})
    async with scripted_worker(client, script) as task_queue:
        handle = await client.start_workflow(
            MigrateAllWorkflow.run,
            _ROLLOUT_AWAITS[blocked],
            id=f"cancel-{uuid.uuid4().hex[:8]}",
            task_queue=task_queue,
        )
        await asyncio.wait_for(script.started[blocked].wait(), _WAIT)
        await _cancelled(handle)
    assert not [c for c in script.calls if c.startswith("run_flyway")]  # nothing dispatched after it


@pytest.mark.parametrize("blocked", ["list_page2", "check_quiesce"])
async def test_rollout_cancels_its_in_flight_children_when_cancelled_between_dispatches(
    client: Client, blocked: str
) -> None:
    """Cancelled while listing the next page (or checking the flag) with a tenant mid-run."""
    script = Scripted(["alpha", "beta"], block={blocked, "run_flyway:alpha"})
    rollout_id = f"cancel-{uuid.uuid4().hex[:8]}"
    async with scripted_worker(client, script) as task_queue:
        handle = await client.start_workflow(
            MigrateAllWorkflow.run,
            MigrateAllInput(migration_set=_SET, heartbeat_timeout_s=2, page_size=1),
            id=rollout_id,
            task_queue=task_queue,
        )
        await asyncio.wait_for(script.started["run_flyway:alpha"].wait(), _WAIT)
        await asyncio.wait_for(script.started[blocked].wait(), _WAIT)
        await _cancelled(handle)
        assert await _status(client, f"{rollout_id}/alpha") is WorkflowExecutionStatus.CANCELED
    assert "run_flyway:alpha" in script.cancelled  # the tenant's Flyway activity was stopped
    assert "run_flyway:beta" not in script.calls


async def test_rollout_does_not_open_a_gate_when_cancelled_while_auditing_the_approval(
    client: Client,
) -> None:
    script = Scripted(["alpha", "beta"], block={"emit_audit:rollout.wave_approved"})
    async with scripted_worker(client, script) as task_queue:
        handle = await client.start_workflow(
            MigrateAllWorkflow.run,
            MigrateAllInput(migration_set=_SET, waves=[WaveSpec(name="gated", rest=True, gate=True)]),
            id=f"cancel-{uuid.uuid4().hex[:8]}",
            task_queue=task_queue,
        )
        await _until(handle, lambda p: bool(p.waves) and p.waves[0].state is WaveState.AWAITING_APPROVAL)
        await handle.execute_update(MigrateAllWorkflow.approve, WaveDecision(principal="ops@example.com"))
        await asyncio.wait_for(script.started["emit_audit:rollout.wave_approved"].wait(), _WAIT)
        await _cancelled(handle)
    assert not [c for c in script.calls if c.startswith("run_flyway")]


class _OneBreaks(Scripted):
    """beta fails (a script error) while alpha is still mid-run."""

    @activity.defn(name="run_flyway")
    async def run_flyway(self, request: RunFlywayInput) -> FlywayOutcome:
        self.calls.append(f"run_flyway:{request.tenant_id}")
        if request.tenant_id == "beta":
            await asyncio.wait_for(self.started["alpha-running"].wait(), _WAIT)
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
        result = await client.execute_workflow(
            MigrateAllWorkflow.run,
            MigrateAllInput(
                tenants=["alpha", "beta", "gamma"], migration_set=_SET, parallelism=2, heartbeat_timeout_s=2
            ),
            id=f"failfast-{uuid.uuid4().hex[:8]}",
            task_queue=task_queue,
        )
    assert result.status is RolloutStatus.FAILED
    outcomes = {o.tenant_id: o.outcome.value for o in result.outcomes}
    assert outcomes == {"alpha": "succeeded", "beta": "failed"}
    assert "run_flyway:gamma" not in script.calls  # nothing dispatched after the failure


async def test_provisioning_rolls_back_then_ends_canceled_when_cancelled_mid_step(client: Client) -> None:
    script = Scripted([], block={"provision_create_roles"})
    async with scripted_worker(client, script) as task_queue:
        handle = await client.start_workflow(
            ProvisionTenantWorkflow.run,
            ProvisionRequest(roles=TenantRoles(tenant_id="acme")),
            id=f"provision/{uuid.uuid4().hex[:8]}",
            task_queue=task_queue,
        )
        await asyncio.wait_for(script.started["provision_create_roles"].wait(), _WAIT)
        await _cancelled(handle)
    assert "provision_cleanup" in script.calls
    assert "run_flyway:acme" not in script.calls


async def test_provisioning_ends_canceled_when_cancelled_during_its_quiesce_check(client: Client) -> None:
    script = Scripted([], block={"check_quiesce_ok"})
    async with scripted_worker(client, script) as task_queue:
        handle = await client.start_workflow(
            ProvisionTenantWorkflow.run,
            ProvisionRequest(roles=TenantRoles(tenant_id="acme")),
            id=f"provision/{uuid.uuid4().hex[:8]}",
            task_queue=task_queue,
        )
        await asyncio.wait_for(script.started["check_quiesce_ok"].wait(), _WAIT)
        await _cancelled(handle)
    assert "provision_create_schema" not in script.calls
