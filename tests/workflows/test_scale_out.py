"""Beyond one worker: two worker processes share one rollout's tenants, and a SIGTERM'd worker
(a graceful deploy) finishes its in-flight tenants and loses nothing."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import uuid
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from fleetway.activities.flyway.contract import FlywayInstall
from fleetway.worker.client.connection import FleetwayClient
from fleetway.worker.dev.stack import PostgresServer, TemporalDevServer
from fleetway.workflows.migrate_all_models import MigrateAllInput, RolloutStatus
from tests.fleet import FLEETWAY, make_fleet
from tests.support import copy_migrations, history
from tests.workflows.test_durability import _wait_progress

VERSIONS = ["1", "2", "3", "4", "5", "6"]


def slow(tmp_path: Path, seconds: float) -> Path:
    locations = copy_migrations(tmp_path / "slow")
    (locations / "V6__slow.sql").write_text(f"SELECT pg_sleep({seconds});\n")
    return locations


async def test_two_worker_processes_share_one_rollout(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer, temporal_server: TemporalDevServer,
    tmp_path: Path,
) -> None:  # fmt: skip
    fleet = make_fleet(postgres, 10)
    fleet.locations = slow(tmp_path, 0.3)
    env = fleet.cli_env(temporal_server.address, tmp_path, flyway_install) | {
        "FLEETWAY_WORKER__MAX_CONCURRENT_ACTIVITIES": "2"
    }
    workers = [subprocess.Popen([FLEETWAY, "worker"], env=env, start_new_session=True) for _ in range(2)]
    rollout_id = f"scale-{uuid.uuid4().hex[:8]}"
    try:
        result = await FleetwayClient(client, fleet.task_queue).run(
            MigrateAllInput(parallelism=4), rollout_id=rollout_id
        )
    finally:
        for proc in workers:
            proc.send_signal(signal.SIGTERM)
        for proc in workers:
            proc.wait(timeout=30)
    assert result.status is RolloutStatus.SUCCEEDED and result.total == 10
    identities = set()
    for tenant in fleet.tenants:
        events = await client.get_workflow_handle(f"{rollout_id}/{tenant}").fetch_history()
        # The Flyway call runs in the child's workflow task: the worker that took the task ran it.
        identities |= {
            e.workflow_task_started_event_attributes.identity
            for e in events.events
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED
        }
        assert history(postgres, tenant) == [(v, True) for v in VERSIONS]
    assert {f"{p.pid}@" for p in workers} == {i.split("@")[0] + "@" for i in identities}  # both did work


@pytest.mark.parametrize("engine", ["cli", "jvm"])
async def test_sigterm_during_a_rollout_drains_the_worker_and_loses_nothing(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer, temporal_server: TemporalDevServer,
    tmp_path: Path, engine: str,
) -> None:  # fmt: skip
    # With the JVM engine the JVM lives in the worker process: it must leave SIGTERM to Python (-Xrs).
    fleet = make_fleet(postgres, 8)
    fleet.locations = slow(tmp_path, 1.0)
    env = fleet.cli_env(temporal_server.address, tmp_path, flyway_install) | {
        "FLEETWAY_WORKER__GRACEFUL_SHUTDOWN_S": "30"
    }
    first = subprocess.Popen([FLEETWAY, "worker", "--engine", engine], env=env, start_new_session=True)
    handle = (await FleetwayClient(client, fleet.task_queue).start(MigrateAllInput(parallelism=3), rollout_id=f"deploy-{uuid.uuid4().hex[:8]}")).handle  # fmt: skip
    await _wait_progress(handle, lambda p: sum(p.counts.values()) >= 1 and len(p.in_flight) >= 2)
    first.send_signal(signal.SIGTERM)  # what a rolling deploy does
    assert await asyncio.to_thread(first.wait, 60) == 0  # graceful: in-flight Flyway runs finished
    second = subprocess.Popen(  # the new version
        [FLEETWAY, "worker", "--engine", engine], env=env, start_new_session=True
    )
    try:
        result = await asyncio.wait_for(handle.result(), timeout=150)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=30)
    assert result.status is RolloutStatus.SUCCEEDED
    assert sorted(o.tenant_id for o in result.outcomes) == fleet.tenants
    for tenant in fleet.tenants:  # every version applied exactly once
        assert history(postgres, tenant) == [(v, True) for v in VERSIONS]
