"""Nightly validation: a real Temporal Schedule runs validate over a fleet with a tampered, a lagging and
an ahead tenant; the drift summary (table, JSON, Markdown, memo) names each."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from temporalio.client import Client, ScheduleActionStartWorkflow
from temporalio.service import RPCError

from fleetway.activities.flyway.cli_engine import FlywayRunner
from fleetway.activities.flyway.contract import FlywayInstall, FlywaySettings
from fleetway.activities.flyway.output import Action
from fleetway.activities.flyway.request import FlywayRequest
from fleetway.activities.rollouts import Outcome
from fleetway.worker.cli.schedules import latest_run_id
from fleetway.worker.dev.stack import PostgresServer, TemporalDevServer
from fleetway.workflows.migrate_all_models import MigrateAllInput, MigrateAllResult
from tests.fleet import fleetway, make_fleet
from tests.support import activity_calls, copy_migrations


async def test_schedule_runs_validate_and_the_drift_summary_names_each_drifted_tenant(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer, temporal_server: TemporalDevServer,
    tmp_path: Path,
) -> None:  # fmt: skip
    fleet = make_fleet(postgres, 4)
    clean, tampered, lagging, ahead = fleet.tenants
    upto3 = copy_migrations(tmp_path / "upto3", upto=3)
    plus6 = copy_migrations(tmp_path / "plus6")
    (plus6 / "V6__hotfix.sql").write_text("CREATE TABLE hotfix (id int);")
    for tenant, locations in (
        (clean, fleet.locations),
        (tampered, fleet.locations),
        (lagging, upto3),
        (ahead, plus6),
    ):
        await FlywayRunner(flyway_install, FlywaySettings(locations=(locations,))).run(
            FlywayRequest(action=Action.MIGRATE), fleet.target(tenant)
        )
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:  # someone edited applied script V2
        conn.execute(
            f'UPDATE "{tampered}".flyway_schema_history SET checksum = checksum + 1 WHERE version = %s',
            ("2",),
        )

    env = fleet.cli_env(temporal_server.address, tmp_path, flyway_install)
    schedule_id = f"nightly-{fleet.task_queue}"
    async with fleet.worker(client, flyway_install):
        created = await asyncio.to_thread(fleetway, "schedule", "create", "--id", schedule_id, env=env)
        assert created.returncode == 0 and created.stdout.startswith(f"created {schedule_id}"), created.stderr
        again = await asyncio.to_thread(fleetway, "schedule", "create", "--id", schedule_id, env=env)
        assert again.stdout.startswith(f"updated {schedule_id}")  # idempotent
        described = await client.get_schedule_handle(schedule_id).describe()
        (calendar,) = described.schedule.spec.calendars  # the server stores "0 2 * * *" structured
        assert (calendar.hour[0].start, calendar.minute[0].start) == (2, 0)
        assert described.schedule.spec.time_zone_name == "UTC"
        assert described.schedule.policy.overlap.name == "SKIP"
        assert described.schedule.policy.catchup_window == timedelta(hours=1)
        assert (
            await asyncio.to_thread(fleetway, "schedule", "trigger", "--id", schedule_id, env=env)
        ).returncode == 0
        run_id = None
        for _ in range(100):
            run_id = await latest_run_id(client, schedule_id)
            if run_id:
                break
            await asyncio.sleep(0.1)
        assert run_id and run_id.startswith(f"{schedule_id}-run")
        result = await client.get_workflow_handle(run_id, result_type=MigrateAllResult).result()
        listed = await asyncio.to_thread(fleetway, "schedule", "list", "-o", "json", env=env)
        as_json = await asyncio.to_thread(fleetway, "drift", "--schedule", schedule_id, "-o", "json", env=env)
        markdown = await asyncio.to_thread(fleetway, "drift", run_id, "-o", "markdown", env=env)
        text = await asyncio.to_thread(fleetway, "drift", run_id, env=env)
        memo = await (client.get_workflow_handle(run_id)).describe()
        # The drift read rides in the validate activity: one call for the tampered tenant; the clean
        # and the lagging ones are proven intact by their tables, with no child at all.
        events = (await client.get_workflow_handle(f"{run_id}/{tampered}").fetch_history()).events
        flyway_calls = activity_calls(events)
        with pytest.raises(RPCError):
            await client.get_workflow_handle(f"{run_id}/{clean}").describe()
        deleted = await asyncio.to_thread(fleetway, "schedule", "delete", "--id", schedule_id, env=env)

    assert result.action is Action.VALIDATE and result.total == 4
    assert flyway_calls == ["run_flyway"]
    outcomes = {o.tenant_id: o.outcome for o in result.outcomes}
    assert outcomes[clean] is outcomes[lagging] is Outcome.CURRENT  # read from the table, nightly too
    assert any(row["id"] == schedule_id for row in json.loads(listed.stdout))
    assert as_json.returncode == 1  # drift found
    summary = json.loads(as_json.stdout)
    by_tenant = {t["tenant_id"]: t for t in summary["tenants"]}
    assert set(by_tenant) == {tampered, lagging, ahead}
    assert by_tenant[tampered]["kinds"] == ["tampered"] and by_tenant[tampered]["tampered"] == ["2"]
    assert by_tenant[lagging]["kinds"] == ["lagging"] and by_tenant[lagging]["pending"] == ["4", "5"]
    assert by_tenant[ahead]["kinds"] == ["ahead"] and by_tenant[ahead]["ahead"] == ["6"]
    assert summary["clean"] == 1 and summary["counts"] == {
        "tampered": 1,
        "lagging": 1,
        "ahead": 1,
        "failed_migrations": 0,
        "unchecked": 0,
        "outdated_repeatables": 0,
    }
    assert f"| `{tampered}` | `tampered` | `2` |" in markdown.stdout and "**1 clean**" in markdown.stdout
    assert lagging in text.stdout and "lagging=1" in text.stdout
    assert (await memo.memo())["drift"] == {
        "tampered": 1,
        "lagging": 1,
        "ahead": 1,
        "failed_migrations": 0,
        "unchecked": 0,
        "outdated_repeatables": 0,
    }
    assert deleted.returncode == 0


def test_a_migrate_schedule_is_refused_before_anything_is_contacted() -> None:
    env = {**os.environ, "FLEETWAY_TEMPORAL__ADDRESS": "127.0.0.1:1"}  # nothing listens there
    done = fleetway("schedule", "create", "--id", "never", "--action", "migrate", env=env)
    assert done.returncode == 2
    assert (
        done.stderr.strip()
        == "configuration_error: a schedule runs validate or info; migrate is started by a pipeline"
    )


async def test_a_schedule_validates_a_placeholder_set_with_the_rollouts_placeholders(
    client: Client, temporal_server: TemporalDevServer, tmp_path: Path
) -> None:
    """Flyway fills placeholders into repeatables' checksums: the nightly validate must pass them too."""
    env = {**os.environ, "FLEETWAY_TEMPORAL__ADDRESS": temporal_server.address}
    schedule_id = f"nightly-placeholders-{tmp_path.name}"
    done = fleetway("schedule", "create", "--id", schedule_id, "--placeholder", "region=eu", env=env)
    assert done.returncode == 0, done.stderr
    described = await client.get_schedule_handle(schedule_id).describe()
    action = described.schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    (request,) = await client.data_converter.decode(action.args, [MigrateAllInput])
    assert request.action is Action.VALIDATE and request.flyway.placeholders == {"region": "eu"}
    await client.get_schedule_handle(schedule_id).delete()
