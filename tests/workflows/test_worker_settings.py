"""Workers on one queue configured differently: a rollout's safety controls mean the same on each.

Real stack: two workers built from settings as deployed (one with ``quiesce.dsn``, one without),
the real PostgreSQL quiesce table, real Flyway. The issue this guards: with the unconfigured
worker holding the rollout, every tenant was migrated under an operator's quiesce flag.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

from pydantic import SecretStr
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError
from temporalio.worker import Worker

from fleetway.activities.flyway.contract import FlywayInstall
from fleetway.activities.quiesce import PostgresQuiesceController
from fleetway.activities.rollouts import Outcome
from fleetway.activities.secrets.providers import StaticSecretsProvider
from fleetway.activities.tenants.static import StaticTenantLister
from fleetway.worker.client.connection import FleetwayClient
from fleetway.worker.config.backends import quiesce_store_named
from fleetway.worker.config.settings import QuiesceConfig, Settings
from fleetway.worker.dev.stack import PostgresServer
from fleetway.worker.process.run import build_worker
from fleetway.workflows.migrate_all_models import MigrateAllInput, RolloutStatus
from tests.fleet import Fleet, make_fleet, separate_client
from tests.support import history, schema_exists

WAIT = 120


def _guarded(fleet: Fleet, address: str, table: str) -> Settings:
    settings = fleet.settings(address)
    return settings.model_copy(
        update={"quiesce": QuiesceConfig(dsn=SecretStr(fleet.postgres.dsn), table=table)}
    )


async def _refusals_of(handle: WorkflowHandle[Any, Any], activity: str) -> int:
    """The attempt count of ``activity`` while it is pending (0 when it is not, or no such workflow yet)."""
    try:
        described = await handle.describe()
    except RPCError:
        return 0
    pending = described.raw_description.pending_activities
    return max((p.attempt for p in pending if p.activity_type.name == activity), default=0)


async def test_a_worker_without_the_quiesce_store_never_runs_a_guarded_rollout_unguarded(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer
) -> None:
    fleet = make_fleet(postgres, 6)
    address = client.service_client.config.target_host
    table = f"q_{uuid.uuid4().hex[:8]}"
    guarded = _guarded(fleet, address, table)
    store = PostgresQuiesceController(postgres.dsn, table=table)
    await store.install()
    await store.set(principal="ops", reason="incident", ttl=timedelta(hours=1))
    # What the CLI pins when it starts a rollout: the store its own `quiesce set` wrote.
    named = quiesce_store_named(guarded)
    assert named == store.description and "password" not in named

    wiring = {
        "secrets": {"default": StaticSecretsProvider({t: fleet.target(t) for t in fleet.tenants})},
        "tenant_sources": {"default": StaticTenantLister(fleet.tenants)},
        "flyway_install": flyway_install,
    }
    bare = build_worker(client, fleet.settings(address), **wiring)  # type: ignore[arg-type]
    async with bare:
        handle = (
            await FleetwayClient(client, fleet.task_queue).start(
                MigrateAllInput(parallelism=3, quiesce_store=named),
                rollout_id=f"guarded-{uuid.uuid4().hex[:8]}",
            )
        ).handle
        # Only the bare worker polls: it refuses to pin the rollout, again and again.
        async with asyncio.timeout(WAIT):
            while await _refusals_of(handle, "pin_rollout") < 2:
                await asyncio.sleep(0.3)
        assert not any(schema_exists(postgres, t) for t in fleet.tenants)

        # The guarded worker joins; the bare one still holds the rollout's workflow tasks (sticky).
        other = build_worker(await separate_client(client), guarded, **wiring)  # type: ignore[arg-type]
        async with other:
            result = await asyncio.wait_for(handle.result(), WAIT)
    assert result.status is RolloutStatus.QUIESCED, result.warnings
    assert not any(schema_exists(postgres, t) for t in fleet.tenants)
    events = (await handle.fetch_history()).events
    remote_checks = [
        e
        for e in events
        if e.HasField("activity_task_scheduled_event_attributes")
        and e.activity_task_scheduled_event_attributes.activity_type.name == "check_quiesce"
    ]
    assert remote_checks, "the bare worker's own check was not moved to the guarded worker"

    # Cleared in the same store, the same two workers migrate the fleet.
    await store.clear(principal="ops")
    again = build_worker(client, fleet.settings(address), **wiring)  # type: ignore[arg-type]
    async with again, build_worker(await separate_client(client), guarded, **wiring):  # type: ignore[arg-type]
        result = await FleetwayClient(client, fleet.task_queue).run(
            MigrateAllInput(parallelism=3, quiesce_store=named), rollout_id=f"guarded-{uuid.uuid4().hex[:8]}"
        )
    assert result.status is RolloutStatus.SUCCEEDED and result.counts == {Outcome.SUCCEEDED: 6}
    assert all([v for v, _ in history(postgres, t)] == ["1", "2", "3", "4", "5"] for t in fleet.tenants)


async def test_a_rollout_no_worker_can_guard_stops_rather_than_runs_unguarded(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer
) -> None:
    """Pinned to a store no worker reads (the guarded workers are gone): dispatch stops, by name."""
    fleet = make_fleet(postgres, 2)
    address = client.service_client.config.target_host
    table = f"q_{uuid.uuid4().hex[:8]}"
    store = PostgresQuiesceController(postgres.dsn, table=table)
    await store.install()
    wiring = {
        "secrets": {"default": StaticSecretsProvider({t: fleet.target(t) for t in fleet.tenants})},
        "tenant_sources": {"default": StaticTenantLister(fleet.tenants)},
        "flyway_install": flyway_install,
    }
    async with build_worker(client, fleet.settings(address), **wiring):  # type: ignore[arg-type]
        result = await asyncio.wait_for(
            FleetwayClient(client, fleet.task_queue).run(
                MigrateAllInput(quiesce_store=store.description, retry_budget_s=3),
                rollout_id=f"unguarded-{uuid.uuid4().hex[:8]}",
            ),
            WAIT,
        )
    assert result.status is RolloutStatus.FAILED
    assert any("quiesce store" in w for w in result.warnings), result.warnings
    assert not any(schema_exists(postgres, t) for t in fleet.tenants)


async def test_a_tenant_call_refused_by_a_misconfigured_worker_moves_to_one_that_serves_it(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer
) -> None:
    """The child's in-task Flyway call, refused (another secret backend), runs on the right worker.

    Every workflow task is held by a worker whose secret backend is described differently from
    the pinned one; the worker configured as pinned polls activities only. Before, the refused
    call retried in the task on the wrong worker for the tenant's whole budget.
    """
    fleet = make_fleet(postgres, 3)
    address = client.service_client.config.target_host
    targets = {t: fleet.target(t) for t in fleet.tenants}
    sources = {"default": StaticTenantLister(fleet.tenants)}
    pinned = build_worker(
        await separate_client(client), fleet.settings(address),
        secrets={"default": StaticSecretsProvider(targets)}, tenant_sources=sources, flyway_install=flyway_install,
    )  # fmt: skip
    # Another backend: one more tenant in it, so it is described differently from the pinned one.
    other = StaticSecretsProvider({**targets, "elsewhere": fleet.target(fleet.tenants[0])})
    misconfigured = build_worker(
        client, fleet.settings(address), secrets={"default": other}, tenant_sources=sources,
        flyway_install=flyway_install,
    )  # fmt: skip
    rollout = f"moves-{uuid.uuid4().hex[:8]}"
    async with pinned:  # the rollout is pinned by the worker configured as it needs, then paused
        handle = (
            await FleetwayClient(client, fleet.task_queue).start(
                MigrateAllInput(parallelism=3, start_paused=True), rollout_id=rollout
            )
        ).handle
        async with asyncio.timeout(WAIT):
            while not await _completed(handle, "pin_rollout"):
                await asyncio.sleep(0.2)
    # The same activities on a third runtime (one worker per queue and runtime), without workflows.
    config: Any = {**pinned.config(), "client": await separate_client(client), "workflows": []}
    async with misconfigured, Worker(**config):
        await handle.signal("resume")
        result = await asyncio.wait_for(handle.result(), WAIT)
    assert result.status is RolloutStatus.SUCCEEDED and result.counts == {Outcome.SUCCEEDED: 3}, (
        result.warnings
    )
    assert all([v for v, _ in history(postgres, t)] == ["1", "2", "3", "4", "5"] for t in fleet.tenants)
    for tenant in fleet.tenants:  # each call was refused in the task, then run from the task queue
        events = (await client.get_workflow_handle(f"{rollout}/{tenant}").fetch_history()).events
        assert any(
            e.HasField("activity_task_scheduled_event_attributes")
            and e.activity_task_scheduled_event_attributes.activity_type.name.startswith("run_flyway")
            for e in events
        ), tenant


async def _completed(handle: WorkflowHandle[Any, Any], activity: str) -> bool:
    events = (await handle.fetch_history()).events
    scheduled = {
        e.event_id
        for e in events
        if e.HasField("activity_task_scheduled_event_attributes")
        and e.activity_task_scheduled_event_attributes.activity_type.name == activity
    }
    return any(
        e.HasField("activity_task_completed_event_attributes")
        and e.activity_task_completed_event_attributes.scheduled_event_id in scheduled
        for e in events
    )
