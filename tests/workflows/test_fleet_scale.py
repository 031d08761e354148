"""Ring rollouts of the largest fleets we accept: every payload and every run's history bounded.

Fast tier: the real workflow code (the rollout, its wave plan's holder, the children) on the real
dev server; scripted activities stand for the databases, and the wave plan is made by the real
planner over a static source. Most tenants are proven current by the table read, as in a no-op
rollout of a large fleet; a few in each wave run. What is asserted is what Temporal enforces: no
payload over 1 MiB (the server refuses 2 MiB), no run over 10,240 events (its warning threshold).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.worker import Worker

from bench.actions import count_actions
from fleetway.activities.fleet.selection import selects
from fleetway.activities.fleet.state import ReadStatesInput, TenantState, TenantStates
from fleetway.activities.rollouts import Outcome
from fleetway.activities.tenants.static import ListTenantsInput, StaticTenantLister, TenantPage
from fleetway.activities.tenants.wave_book import PlanChunk, PlanChunkInput, PlanSummary, WaveBookActivities
from fleetway.activities.tenants.waves import PlanWavesInput, WavePlanActivities, WaveSpec
from fleetway.worker.client.connection import FleetwayClient
from fleetway.workflows.migrate_all import MigrateAllWorkflow
from fleetway.workflows.migrate_all_models import MigrateAllInput, RolloutStatus
from fleetway.workflows.tenant_migration import TenantMigrationWorkflow
from fleetway.workflows.wave_plan import WavePlanWorkflow, holder_id
from tests.workflows.scripted import SET, Scripted, worker_activities

pytestmark = pytest.mark.fast

PAYLOAD_TARGET = 1024 * 1024
EVENTS_TARGET = 10_240
_CURRENT_AT = "2026-12-06T00:00:00+00:00"


class _LargeFleet(Scripted):
    """A static source paged as asked, the real planner, and tables that prove most tenants current."""

    def __init__(self, tenants: list[str], labels: dict[str, dict[str, str]], behind: set[str]) -> None:
        super().__init__(tenants, block=set())
        self.behind = behind
        source = StaticTenantLister(tenants, labels)
        self.source = source
        self.book = WaveBookActivities(WavePlanActivities({"default": source}))

    @activity.defn(name="list_tenants_page")
    async def list_tenants_page(self, request: ListTenantsInput) -> TenantPage:
        return await self.source.list_page(request.cursor, request.limit)

    @activity.defn(name="plan_wave_summary")
    async def plan_wave_summary(self, request: PlanWavesInput) -> PlanSummary:
        return await self.book.plan_wave_summary(request)

    @activity.defn(name="plan_wave_chunk")
    async def plan_wave_chunk(self, request: PlanChunkInput) -> PlanChunk:
        return await self.book.plan_wave_chunk(request)

    @activity.defn(name="read_tenant_states")
    async def read_tenant_states(self, request: ReadStatesInput) -> TenantStates:
        self.screens.append(request.model_copy(update={"tenant_ids": []}))  # the count, not 1,000 ids
        states = [
            TenantState(
                tenant_id=t, pending=["5"], pending_count=1, intact=True, version="4", read_at=_CURRENT_AT
            )
            if t in self.behind
            else TenantState(tenant_id=t, current=True, intact=True, version="5", read_at=_CURRENT_AT)
            for t in request.tenant_ids
        ]
        return TenantStates(
            read_at=_CURRENT_AT,
            migration_set=SET,
            states=states,
            selected=[selects(request.where, s) for s in states],
        )


def _ids(count: int, length: int) -> list[str]:
    if length == 36:  # UUID-shaped, as many platforms name tenants
        return [str(uuid.UUID(int=i + 1)) for i in range(count)]
    return [f"t{i:07d}".ljust(length, "x") for i in range(count)]


async def _histories(client: Client, workflow_id: str) -> AsyncIterator[tuple[str, list[Any]]]:
    """Every run of ``workflow_id``, first to last, as (run id, events)."""
    handle = client.get_workflow_handle(workflow_id)
    run_id = (await handle.describe()).raw_description.workflow_execution_info.first_run_id
    while run_id:
        events = (await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()).events
        yield run_id, list(events)
        last = events[-1]
        next_run = ""
        if last.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
            next_run = last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
        run_id = next_run


@pytest.mark.parametrize(
    ("count", "length"),
    [(100_000, 128), (50_000, 36)],
    ids=["100k-ids-of-128-chars", "50k-uuids"],
)
async def test_a_ring_rollout_of_the_largest_fleet_stays_within_temporals_limits(
    client: Client, count: int, length: int
) -> None:
    tenants = _ids(count, length)
    labels = {t: {"tier": "internal"} for t in tenants[:100]}
    behind = set(tenants[50:53]) | set(tenants[5_000:5_003]) | set(tenants[-3:])  # three in each wave
    script = _LargeFleet(tenants, labels, behind)
    rollout = f"scale-{uuid.uuid4().hex[:8]}"
    waves = [
        WaveSpec(name="internal", labels="tier=internal"),
        WaveSpec(name="early", percent=10),
        WaveSpec(name="rest", rest=True),
    ]
    task_queue = f"scale-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[MigrateAllWorkflow, TenantMigrationWorkflow, WavePlanWorkflow],
        activities=worker_activities(client, script),
        max_cached_workflows=50,
    ):
        result = await asyncio.wait_for(
            FleetwayClient(client, task_queue).run(
                MigrateAllInput(migration_set=SET, waves=waves, parallelism=8, page_size=1000),
                rollout_id=rollout,
            ),
            600,
        )
        holder = client.get_workflow_handle(holder_id(rollout))
        assert await asyncio.wait_for(holder.result(), 60) == "released by the rollout"

    assert result.status is RolloutStatus.SUCCEEDED, result.warnings
    assert result.counts == {Outcome.CURRENT: count - len(behind), Outcome.SUCCEEDED: len(behind)}
    assert [(w.name, w.planned) for w in result.waves] == [
        ("internal", 100), ("early", (count - 100 + 9) // 10), ("rest", count - 100 - (count - 100 + 9) // 10)
    ]  # fmt: skip

    largest, runs = 0, 0
    for workflow_id in [rollout, holder_id(rollout), *(f"{rollout}/{t}" for t in sorted(behind))]:
        async for run_id, events in _histories(client, workflow_id):
            runs += workflow_id == rollout
            assert len(events) <= EVENTS_TARGET, (workflow_id, run_id, len(events))
            largest = max(largest, *(e.ByteSize() for e in events))
    print(f"\n{count} tenants, ids of {length} chars: largest event {largest} bytes, rollout runs {runs}")
    assert largest <= PAYLOAD_TARGET


async def test_a_rollout_costs_few_actions_per_tenant_with_work_and_almost_none_per_current_one(
    client: Client,
) -> None:
    """Counted from the histories, as the bench counts them (``bench/actions.py``)."""
    tenants = _ids(5_000, 12)
    behind = set(tenants[::50])  # 100 with work
    script = _LargeFleet(tenants, {}, behind)
    task_queue = f"cost-{uuid.uuid4().hex[:8]}"
    rollouts = {}
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[MigrateAllWorkflow, TenantMigrationWorkflow, WavePlanWorkflow],
        activities=worker_activities(client, script),
    ):
        for name, request in {
            "work": MigrateAllInput(migration_set=SET, tenants=sorted(behind), skip_current=False),
            "current": MigrateAllInput(migration_set=SET, page_size=1000),
        }.items():
            rollouts[name] = f"cost-{name}-{uuid.uuid4().hex[:8]}"
            await FleetwayClient(client, task_queue).run(request, rollout_id=rollouts[name])
    work = await count_actions(client, rollouts["work"])
    mixed = await count_actions(client, rollouts["current"])
    per_work = work.per(len(behind))
    per_current = (mixed.total - per_work * len(behind)) / (len(tenants) - len(behind))
    print(f"\nper tenant with work {per_work}: {dict(work.kinds)}")
    print(f"per current tenant {per_current:.4f}: {dict(mixed.kinds)}")
    assert per_work <= 6
    assert per_current <= 0.05
