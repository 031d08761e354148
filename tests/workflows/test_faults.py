"""Fault tests on the real stack, judged by each tenant's ``flyway_schema_history``.

A worker killed with SIGKILL every few seconds, PostgreSQL stopped under a running rollout, and a
cancel during a slow script: each time the report must be what the tables show, and nothing of a
run may outlive it. Marked ``faults`` (slow); CI runs them with the rest.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import psycopg
import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from fleetway.activities.audit.events import Emitter
from fleetway.activities.audit.sinks import JsonlAuditSink
from fleetway.activities.flyway.contract import FlywayInstall
from fleetway.activities.rollouts import Outcome
from fleetway.activities.servers.models import ServerControls
from fleetway.worker.client.connection import FleetwayClient
from fleetway.worker.config.client import connect
from fleetway.worker.config.settings import TemporalConfig
from fleetway.worker.dev.stack import PostgresServer, TemporalDevServer
from fleetway.worker.process.serve import serving
from fleetway.workflows.migrate_all import MigrateAllWorkflow
from fleetway.workflows.migrate_all_models import MigrateAllInput, RolloutStatus
from tests.fleet import fleetway, make_fleet
from tests.kill_loop import fault_migrations, history_rows, kill_loop, report_problems
from tests.support import java_pids, wait_until

pytestmark = pytest.mark.faults

ALL = ["1", "2", "3", "4", "5", "6"]


@pytest.mark.parametrize("engine", ["cli", "jvm"])
async def test_worker_killed_every_few_seconds_the_rollout_completes_and_reports_the_tables(
    flyway_install: FlywayInstall, postgres: PostgresServer, temporal_server: TemporalDevServer,
    tmp_path: Path, engine: str,
) -> None:  # fmt: skip
    # The CLI engine pays a JVM start per run: 30 tenants still take it through five kills or more.
    size = 30 if engine == "cli" else 40
    fleet = make_fleet(postgres, size)
    fleet.locations = fault_migrations(tmp_path / "scripts", sleep_s=0.5)
    env = fleet.cli_env(temporal_server.address, tmp_path, flyway_install)
    audit = f"audit_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {audit}")
    env |= {"FLEETWAY_AUDIT__SINK": "postgres", "FLEETWAY_AUDIT__DSN": postgres.dsn_for(audit)}
    assert fleetway("audit", "init", env=env).returncode == 0  # the owner's step, once

    report = await kill_loop(fleet, env, engine=engine, parallelism=8, kill_every=(3, 6), max_kills=7, seed=7)
    print(report.line())
    with psycopg.connect(postgres.dsn_for(audit)) as conn:
        events = conn.execute(
            "SELECT target, count(*) FROM fleetway_audit_events WHERE type = 'migration.applied' GROUP BY target"
        ).fetchall()
    assert sorted(events) == [(t, 1) for t in sorted(fleet.tenants)]  # the kills lost no event, doubled none

    assert report.kills >= 5, report.line()
    assert report.status == "succeeded", (report.line(), report.misreported)
    assert report.counts == {"succeeded": size}
    assert report.misreported == {}, report.misreported
    assert report.orphans_over_1s == 0, report.line()
    if engine == "cli":
        assert report.orphans_seen > 0  # kills did land on running Flyway processes
    assert report.lost_attempts > 0  # some tenant's Flyway call was lost with a worker and redone


def _running_sleeps(postgres: PostgresServer, marker: str) -> int:
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE %s AND pid <> pg_backend_pid()",
            (f"%pg_sleep({marker})%",),
        ).fetchone()
    return int(row[0]) if row else 0


# The default engine for PostgreSQL only: the retry-by-time rule is the workflow's, the same for
# both engines, and each engine's classification of a refused connection is an engine test.
@pytest.mark.parametrize("engine", ["jvm"])
async def test_postgres_stopped_for_20s_mid_rollout_tenants_retry_and_succeed(
    client: Client, flyway_install: FlywayInstall, tmp_path: Path, engine: str
) -> None:
    own = PostgresServer()  # this test stops its server: never the session's
    own.start()
    try:
        fleet = make_fleet(own, 10)
        fleet.locations = fault_migrations(tmp_path / "scripts", sleep_s=4.25)
        async with fleet.worker(client, flyway_install, engine=engine):
            handle = (
                await FleetwayClient(client, fleet.task_queue).start(
                    MigrateAllInput(parallelism=5, heartbeat_timeout_s=5),
                    rollout_id=f"outage-{uuid.uuid4().hex[:8]}",
                )
            ).handle
            assert await asyncio.to_thread(wait_until, lambda: _running_sleeps(own, "4.25") >= 3, timeout=60)
            await asyncio.to_thread(own.halt, "fast")  # every session ends with 57P01
            await asyncio.sleep(20)
            await asyncio.to_thread(own.start)  # same port, same data
            result = await asyncio.wait_for(handle.result(), timeout=240)

        assert result.status is RolloutStatus.SUCCEEDED, result
        assert result.counts == {Outcome.SUCCEEDED: 10}
        assert result.retry_budget_s == 900
        outcomes = {o.tenant_id: o for o in result.outcomes}
        for tenant in fleet.tenants:
            rows = history_rows(own.dsn, tenant)
            assert report_problems(outcomes[tenant], rows, result.history_marker, expected=ALL) == []
        retried = [o for o in result.outcomes if o.attempts > 1]
        assert len(retried) >= 3  # the ones cut off by the shutdown came back
        assert all(o.source == "history" for o in retried)
    finally:
        own.stop()


@pytest.mark.parametrize("engine", ["cli", "jvm"])
async def test_cancel_during_a_slow_script_leaves_no_process_no_statement_and_a_true_report(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer,
    temporal_server: TemporalDevServer, tmp_path: Path, engine: str,
) -> None:  # fmt: skip
    fleet = make_fleet(postgres, 4)
    fleet.locations = fault_migrations(tmp_path / "scripts", sleep_s=61.5)
    env = fleet.cli_env(temporal_server.address, tmp_path, flyway_install)
    audit_file = tmp_path / "audit.jsonl"
    emitter = Emitter(JsonlAuditSink(audit_file))
    rollout_id = f"cancel-{uuid.uuid4().hex[:8]}"
    loop = asyncio.get_running_loop()
    async with fleet.worker(client, flyway_install, engine=engine, emitter=emitter):
        handle = (
            await FleetwayClient(client, fleet.task_queue).start(
                MigrateAllInput(parallelism=2), rollout_id=rollout_id
            )
        ).handle
        assert await asyncio.to_thread(wait_until, lambda: _running_sleeps(postgres, "61.5") == 2, timeout=90)
        done = await asyncio.to_thread(fleetway, "cancel", rollout_id, env=env)
        cancelled_at = loop.time()
        assert done.returncode == 0, done.stderr
        # Within 5 s of the cancel: no Flyway process, no statement of the rollout.
        assert await asyncio.to_thread(
            wait_until,
            lambda: _running_sleeps(postgres, "61.5") == 0 and not java_pids(fleet.tenants[0][:7]),
            timeout=max(0.1, 5 - (loop.time() - cancelled_at)),
        )
        described = await handle.describe()
        children = [
            await client.get_workflow_handle(f"{rollout_id}/{t}").describe() for t in fleet.tenants[:2]
        ]
        progress = await handle.query(MigrateAllWorkflow.progress)
    assert await asyncio.to_thread(emitter.close, 10)

    assert described.status is WorkflowExecutionStatus.CANCELED
    assert [c.status for c in children] == [WorkflowExecutionStatus.CANCELED] * 2
    reported = {o.tenant_id: o for o in progress.failed}
    assert set(reported) == set(fleet.tenants[:2])
    events = {
        e["target"]: e for e in map(json.loads, audit_file.read_text().splitlines())
        if e["type"] == "migration.applied"
    }  # fmt: skip
    for tenant in fleet.tenants[:2]:
        rows = history_rows(postgres.dsn, tenant)
        assert [v for v, _, _ in rows] == ALL[:5]  # V6 was rolled back by the cancel
        outcome = reported[tenant]
        assert outcome.outcome is Outcome.CANCELED
        assert report_problems(outcome, rows, progress.history_marker) == []
        assert "V1..V5 applied by this rollout" in outcome.message
        event = events[tenant]
        assert event["outcome"] == "canceled"
        assert event["attributes"]["migration.applied_versions"] == "1,2,3,4,5"
        assert event["version"] == "5"


@pytest.mark.parametrize("checks", [False, True], ids=["dispatched", "parked"])
async def test_infrastructure_faults_retry_until_the_time_budget_and_script_failures_never(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer, checks: bool
) -> None:
    """Without server checks the tenant is dispatched and its run retries for the budget; with
    them (the default) its server is parked at once and ends it, undispatched, after the same time."""
    from fleetway.activities.secrets.providers import StaticSecretsProvider
    from fleetway.activities.tenants.static import StaticTenantLister
    from fleetway.worker.process.run import build_worker

    fleet = make_fleet(postgres, 2)
    unreachable, broken = fleet.tenants
    fleet.break_tenant(broken)  # a non-empty schema without history: the tenant's own problem
    targets = {
        unreachable: fleet.target(unreachable).model_copy(update={"port": 1}),
        broken: fleet.target(broken),
    }
    worker = build_worker(
        client, fleet.settings(client.service_client.config.target_host, engine="jvm"),
        secrets={"default": StaticSecretsProvider(targets)},
        tenant_sources={"default": StaticTenantLister(fleet.tenants)}, flyway_install=flyway_install,
    )  # fmt: skip
    async with worker:
        result = await FleetwayClient(client, fleet.task_queue).run(
            MigrateAllInput(
                continue_on_error=True,
                retry_budget_s=20,
                # Parked: the shortest limit (the default, the retry budget, is a fast test's).
                servers=ServerControls(checks=checks, park_limit_s=10),
            ),
            rollout_id=f"budget-{uuid.uuid4().hex[:8]}",
        )

    outcomes = {o.tenant_id: o for o in result.failed}
    assert result.retry_budget_s == 20
    refused = outcomes[unreachable]
    assert refused.error_class == "target_unreachable"
    if checks:
        assert refused.message.startswith("not dispatched: server 127.0.0.1:1 parked since ")
        assert "does not answer" in refused.message and "past the park limit of 10s" in refused.message
        assert refused.attempts == 0 and result.servers[0].server == "127.0.0.1:1"
    else:
        assert "retry budget of 20s spent after" in refused.message
        assert refused.attempts >= 6  # more than the old fixed count of 5: time decides, not a count
        assert refused.source == "unknown"  # nor can its table be read: said, not guessed
    own = outcomes[broken]
    assert own.error_class == "schema_history_corrupt"
    assert own.attempts == 1


@pytest.mark.parametrize("engine", ["cli", "jvm"])
async def test_temporal_server_killed_and_restarted_mid_rollout_the_report_is_the_tables(
    flyway_install: FlywayInstall, postgres: PostgresServer, tmp_path: Path, engine: str
) -> None:
    """The Temporal server is SIGKILLed under a running rollout and comes back 8 s later.

    Its own server (never the session's), persisted to a SQLite file so a restart keeps the
    rollout. Activities finishing while it is down cannot report; workers and the client reconnect;
    the rollout completes, and each tenant's table, not the result, is the judge.
    """
    server = TemporalDevServer(extra_args=("--db-filename", str(tmp_path / "temporal.db")))
    server.start()
    try:
        client = await connect(TemporalConfig(address=server.address))
        fleet = make_fleet(postgres, 12)
        fleet.locations = fault_migrations(tmp_path / "scripts", sleep_s=2.5)
        # Served as the worker process serves it: a poll error the SDK takes as fatal while the
        # server restarts (1 run in ~10 here) rebuilds the worker instead of failing the test.
        async with serving(fleet.worker(client, flyway_install, engine=engine)):
            handle = (
                await FleetwayClient(client, fleet.task_queue).start(
                    MigrateAllInput(parallelism=4, heartbeat_timeout_s=5, continue_on_error=True),
                    rollout_id=f"server-crash-{uuid.uuid4().hex[:8]}",
                )
            ).handle
            sleeping = lambda: _running_sleeps(postgres, "2.5") >= 2  # noqa: E731
            assert await asyncio.to_thread(wait_until, sleeping, timeout=90)
            await asyncio.to_thread(server.crash)
            await asyncio.sleep(8)  # the scripts in flight finish while nobody can hear them
            await asyncio.to_thread(server.start)  # same port, same database file
            result = await asyncio.wait_for(handle.result(), timeout=300)

        assert result.status is RolloutStatus.SUCCEEDED, result
        assert result.counts == {Outcome.SUCCEEDED: 12}
        outcomes = {o.tenant_id: o for o in result.outcomes}
        for tenant in fleet.tenants:
            rows = history_rows(postgres.dsn, tenant)
            assert report_problems(outcomes[tenant], rows, result.history_marker, expected=ALL) == []
        # Attempts in flight lost their completion with the server (4 of 12 in a run here): each was
        # retried and reported from its table, never from the retry's own "nothing to apply".
        assert all(o.source == "history" for o in result.outcomes if o.attempts > 1)
    finally:
        server.stop()
