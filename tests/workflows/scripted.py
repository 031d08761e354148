"""Scripted activities under the real activity names, for the fast tier of workflow tests.

The real workflow code runs on the real Temporal dev server against these: a test holds a
workflow at exactly one await (an activity that blocks until cancelled) or makes a dependency fail
exactly as often as it needs, which real components cannot be scheduled to do.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from fleetway.activities.audit.events import AuditEvent
from fleetway.activities.fleet.selection import selects
from fleetway.activities.fleet.state import ReadStatesInput, TenantState, TenantStates
from fleetway.activities.flyway.output import FlywayOutcome
from fleetway.activities.flyway.request import FlywayRequest
from fleetway.activities.flyway.schema_history import HistorySummary, ReadHistoryInput
from fleetway.activities.postgres.provisioning import CleanupInput, SchemaStep, SeedInput, TenantRoles
from fleetway.activities.quiesce import CheckQuiesceInput, QuiesceStatus
from fleetway.activities.rollouts import RolloutActivities
from fleetway.activities.servers.models import CheckServerInput, HealthState, ServerHealth, ServerKeysInput
from fleetway.activities.tenants.static import ListTenantsInput, TenantPage
from fleetway.activities.tenants.wave_book import PlanChunk, PlanChunkInput, PlanSummary, chunk_plan
from fleetway.activities.tenants.waves import PlannedWave, PlanWavesInput, WavePlan
from fleetway.activities.worker_profile import PinRolloutInput, RolloutPin
from fleetway.workflows.migrate_all import MigrateAllWorkflow
from fleetway.workflows.provision_tenant import ProvisionTenantWorkflow
from fleetway.workflows.tenant_migration import TenantMigrationWorkflow, TenantToolboxWorkflow
from fleetway.workflows.wave_plan import WavePlanWorkflow

SET = "sha256:" + "0" * 64
WAIT = 30.0


class Scripted:
    """Activities under the real names; ``block`` names those that wait until cancelled.

    ``list_page2`` blocks only the second page of the tenant listing (the first is ``tenants[:1]``).
    """

    def __init__(self, tenants: list[str], *, block: set[str], slow: dict[str, float] | None = None) -> None:
        self.tenants = tenants
        self.block = block
        self.slow = slow or {}  # names that take this many seconds (heartbeating), then succeed
        self.started: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self.calls: list[str] = []
        self.cancelled: list[str] = []
        self.flyway_runs: list[FlywayRequest] = []  # every run_flyway* request, in call order
        # What each tenant's table shows to the bulk read (absent: one version pending).
        self.states: dict[str, TenantState] = {}
        self.callbacks: list[str] = []  # the set's every-run SQL callbacks, as the read reports them
        self.screens: list[ReadStatesInput] = []
        self.plan_chunks: list[PlanChunk] = []
        self.failing: dict[str, int] = {}  # tenant -> how many of its next runs fail (script_failed)
        # Each tenant's server key (absent: unknown, never checked) and each server's next checks'
        # verdicts in order (none left: fit); ``checks`` records every check's server.
        self.server_of: dict[str, str] = {}
        self.health: defaultdict[str, list[ServerHealth]] = defaultdict(list)
        self.checks: list[str] = []
        self.keyed: list[list[str]] = []  # each server_keys request's tenants

    async def _step(self, name: str) -> None:
        self.calls.append(name)
        self.started[name].set()
        if name in self.slow:
            for _ in range(int(self.slow[name] / 0.1)):
                if not activity.info().is_local:
                    activity.heartbeat()
                await asyncio.sleep(0.1)
            self.calls.append(f"done:{name}")
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
        return RolloutPin(migration_set=SET)

    @activity.defn(name="failed_tenants_of")
    async def failed_tenants_of(self, rollout_id: str) -> list[str]:
        await self._step("failed_tenants_of")
        return list(self.tenants)

    @activity.defn(name="plan_waves")
    async def plan_waves(self, request: PlanWavesInput) -> WavePlan:
        await self._step("plan_waves")
        return WavePlan(
            waves=[PlannedWave(name=w.name, tenants=list(w.tenants or self.tenants)) for w in request.waves],
            listed=len(self.tenants),
        )

    @activity.defn(name="plan_wave_summary")
    async def plan_wave_summary(self, request: PlanWavesInput) -> PlanSummary:
        """The same plan as ``plan_waves`` (and the same step name), handed to the holder in chunks."""
        await self._step("plan_waves")
        summary, self.plan_chunks = chunk_plan(
            WavePlan(
                waves=[
                    PlannedWave(name=w.name, tenants=list(w.tenants or self.tenants)) for w in request.waves
                ],
                listed=len(self.tenants),
            )
        )
        return summary

    @activity.defn(name="plan_wave_chunk")
    async def plan_wave_chunk(self, request: PlanChunkInput) -> PlanChunk:
        return self.plan_chunks[request.index]

    @activity.defn(name="list_tenants_page")
    async def list_tenants_page(self, request: ListTenantsInput) -> TenantPage:
        if request.cursor is None:
            await self._step("list_page1")
            return TenantPage(tenant_ids=self.tenants[:1], next_cursor="page-2")
        await self._step("list_page2")
        return TenantPage(tenant_ids=self.tenants[1:])

    @activity.defn(name="check_quiesce")
    async def check_quiesce(self, request: CheckQuiesceInput | None = None) -> QuiesceStatus:
        # Only the second check blocks: the first lets one tenant be in flight when the cancel comes.
        await self._step("check_quiesce" if self.calls.count("check_quiesce_ok") else "check_quiesce_ok")
        return QuiesceStatus()

    @activity.defn(name="emit_audit")
    async def emit_audit(self, event: AuditEvent) -> None:
        await self._step(f"emit_audit:{event.type.value}")

    @activity.defn(name="run_flyway")
    async def run_flyway(self, request: FlywayRequest) -> FlywayOutcome:
        self.flyway_runs.append(request)
        await self._step(f"run_flyway:{request.tenant_id}")
        if self.failing.get(request.tenant_id, 0) > 0:  # a script that fails (never retried)
            self.failing[request.tenant_id] -= 1
            raise ApplicationError("script_failed: V1 failed", type="script_failed", non_retryable=True)
        return FlywayOutcome(action=request.action, success=True, applied_versions=["1"], ending_version="1")

    @activity.defn(name="run_flyway_with_options")
    async def run_flyway_with_options(self, request: FlywayRequest) -> FlywayOutcome:
        self.flyway_runs.append(request)
        await self._step(f"run_flyway_with_options:{request.tenant_id}")
        return FlywayOutcome(action=request.action, success=True, applied_versions=["1"], ending_version="1")

    @activity.defn(name="read_tenant_states")
    async def read_tenant_states(self, request: ReadStatesInput) -> TenantStates:
        self.screens.append(request)
        await self._step("read_tenant_states")
        states = [
            self.states.get(t) or TenantState(tenant_id=t, pending=["1"], pending_count=1, intact=True)
            for t in request.tenant_ids
        ]
        states = [s.model_copy(update={"read_at": "2026-12-04T00:00:00+00:00"}) for s in states]
        return TenantStates(
            read_at="2026-12-04T00:00:00+00:00",
            migration_set=SET,
            states=states,
            selected=[selects(request.where, s) for s in states],
            migrate_callbacks=self.callbacks,
            validate_callbacks=self.callbacks,
        )

    @activity.defn(name="server_keys")
    async def server_keys(self, request: ServerKeysInput) -> list[str]:
        self.keyed.append(list(request.tenant_ids))
        await self._step("server_keys")
        return [self.server_of.get(t, "") for t in request.tenant_ids]

    @activity.defn(name="check_server")
    async def check_server(self, request: CheckServerInput) -> ServerHealth:
        self.checks.append(request.server)
        await self._step(f"check_server:{request.server}")
        queue = self.health[request.server]
        return queue.pop(0) if queue else ServerHealth(state=HealthState.OK)

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
            self.pin_rollout, self.failed_tenants_of, self.plan_waves, self.plan_wave_summary,
            self.plan_wave_chunk, self.list_tenants_page,
            self.check_quiesce, self.emit_audit, self.run_flyway, self.run_flyway_with_options,
            self.read_schema_history, self.read_tenant_states, self.server_keys, self.check_server,
            self.create_schema, self.create_roles, self.seed, self.cleanup,
        ]  # fmt: skip


def worker_activities(client: Client, script: Scripted) -> list[Any]:
    """The script's activities, and the plan's reads through the real client to the real holder."""
    reads = RolloutActivities(client)
    return [*script.all(), reads.read_wave_plan, reads.rollout_is_open]


@asynccontextmanager
async def scripted_worker(client: Client, script: Scripted) -> AsyncIterator[str]:
    task_queue = f"cancel-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[
            MigrateAllWorkflow,
            TenantMigrationWorkflow,
            TenantToolboxWorkflow,
            ProvisionTenantWorkflow,
            WavePlanWorkflow,
        ],
        activities=worker_activities(client, script),
    ):
        yield task_queue
