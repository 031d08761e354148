"""One tenant retried, one skipped, one given a deadline on the real stack while 20 others run on.

Real Flyway (the JVM engine), real PostgreSQL, the real worker: two tenants are held by a lock the
test takes on their ``flyway_schema_history`` (as an application's long transaction would), one
fails on a squatter table the test then removes. The actions go through the library, as the CLI's
do; each is audited with its principal, and the tables judge what happened.
"""

from __future__ import annotations

import asyncio
from contextlib import ExitStack

import psycopg
import pytest
from temporalio.client import Client

from fleetway.activities.audit.events import AuditEventType, Emitter
from fleetway.activities.flyway.contract import FlywayInstall
from fleetway.activities.flyway.options import FlywayOptions
from fleetway.activities.rollouts import Outcome
from fleetway.worker.client.connection import FleetwayClient
from fleetway.worker.dev.stack import PostgresServer
from fleetway.workflows.migrate_all_models import MigrateAllInput, Progress, RolloutStatus, TenantDecision
from tests.fleet import make_fleet
from tests.support import history
from tests.workflows.test_waves import ListSink

ALL = ["1", "2", "3", "4", "5"]  # the demo set


async def _until(rollout: object, done: object, timeout: float = 120) -> Progress:
    async with asyncio.timeout(timeout):
        while True:
            progress: Progress = await rollout.progress()  # type: ignore[attr-defined]
            if done(progress):  # type: ignore[operator]
                return progress
            await asyncio.sleep(0.3)


@pytest.mark.timeout(400)
async def test_one_tenant_retried_one_skipped_one_bounded_while_twenty_others_run_on(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer
) -> None:
    fleet = make_fleet(postgres, 23)
    failed, stuck, skipped, others = fleet.tenants[0], fleet.tenants[1], fleet.tenants[2], fleet.tenants[3:]
    sink = ListSink()
    library = FleetwayClient(client, fleet.task_queue)
    async with fleet.worker(client, flyway_install, emitter=Emitter(sink), engine="jvm"):
        # The two held tenants have a history already (V1, V2): the lock is on its table.
        first = MigrateAllInput(tenants=[stuck, skipped], flyway=FlywayOptions(target="2"))
        assert (await library.run(first)).status is RolloutStatus.SUCCEEDED
        fleet.break_tenant(failed)
        with ExitStack() as locks:
            for tenant in (stuck, skipped):
                conn = locks.enter_context(psycopg.connect(postgres.dsn))
                conn.execute(f'LOCK TABLE "{tenant}".flyway_schema_history IN ACCESS EXCLUSIVE MODE')
            rollout = await library.start(
                MigrateAllInput(parallelism=8, continue_on_error=True, skip_current=False)
            )
            # The failed one failed, the twenty ran; the two held ones keep the rollout open.
            await _until(
                rollout, lambda p: p.counts.get(Outcome.SUCCEEDED, 0) == 20 and p.counts.get(Outcome.FAILED)
            )
            with psycopg.connect(postgres.dsn, autocommit=True) as conn:
                conn.execute(f'DROP TABLE "{failed}".squatter')  # what the operator fixed
            retried = await rollout.retry_tenant(
                TenantDecision(tenant=failed, principal="ops", reason="fixed")
            )
            await _until(rollout, lambda p: p.counts.get(Outcome.SUCCEEDED, 0) == 21)
            bounded = await rollout.set_tenant_deadline(
                TenantDecision(tenant=stuck, deadline_s=3, principal="ops")
            )
            skipping = await rollout.skip_tenant(TenantDecision(tenant=skipped, principal="ops"))
            # Past the deadline, and past the heartbeat that carries each cancel to its call: only then
            # does the application's lock go (released sooner, a call may finish first: then the table
            # says it succeeded, and so does fleetway).
            await asyncio.sleep(10)
        result = await asyncio.wait_for(rollout.result(), 120)

    assert "first in line" in retried and "3s" in bounded and "cancelled" in skipping
    by = {o.tenant_id: o for o in result.outcomes}
    assert by[failed].outcome is Outcome.SUCCEEDED
    assert (by[stuck].outcome, by[stuck].error_class) == (Outcome.FAILED, "deadline_exceeded")
    assert by[skipped].outcome is Outcome.SKIPPED
    assert result.counts == {Outcome.SUCCEEDED: 21, Outcome.FAILED: 1, Outcome.SKIPPED: 1}
    assert result.operator_actions == [
        f"{failed} retried by ops (retry 1): fixed",
        f"{stuck} given 3s more by ops",
        f"{skipped} skipped by ops",
    ]
    kinds = {AuditEventType.TENANT_RETRIED, AuditEventType.TENANT_DEADLINE, AuditEventType.TENANT_SKIPPED}
    audited = [(e.type, e.target, e.principal) for e in sink.events if e.type in kinds]
    assert sorted(audited) == sorted(
        [
            (AuditEventType.TENANT_RETRIED, failed, "ops"),
            (AuditEventType.TENANT_DEADLINE, stuck, "ops"),
            (AuditEventType.TENANT_SKIPPED, skipped, "ops"),
        ]
    )
    # The tables: the retried and the twenty at V6; the held two where they were (their runs stopped).
    for tenant in [failed, *others]:
        assert [v for v, ok in history(postgres, tenant) if ok] == ALL
    for tenant in (stuck, skipped):
        assert history(postgres, tenant) == [("1", True), ("2", True)]
