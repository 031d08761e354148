"""MigrateAllWorkflow on the real stack: Temporal dev server, PostgreSQL and Flyway."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowFailureError

from fleetway.activities.audit.events import AuditContext
from fleetway.activities.errors import InvalidInputError
from fleetway.activities.flyway.contract import FlywayInstall
from fleetway.activities.flyway.output import Action, ErrorClass
from fleetway.activities.quiesce import PostgresQuiesceController
from fleetway.activities.rollouts import Outcome
from fleetway.worker.client.connection import FleetwayClient
from fleetway.worker.dev.stack import PostgresServer, free_port
from fleetway.workflows import outcome_ledger
from fleetway.workflows.migrate_all import MigrateAllWorkflow
from fleetway.workflows.migrate_all_models import MigrateAllInput, MigrateAllResult, RolloutStatus
from tests.fleet import Fleet, make_fleet
from tests.kill_loop import fault_migrations
from tests.support import history


async def _rollout(client: Client, fleet: Fleet, request: MigrateAllInput) -> MigrateAllResult:
    return await FleetwayClient(client, fleet.task_queue).run(
        request, rollout_id=f"rollout-{uuid.uuid4().hex[:8]}"
    )


async def test_migrate_all_migrates_sixteen_tenants_and_a_second_rollout_is_a_noop(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer
) -> None:
    fleet = make_fleet(postgres, 16)  # two windows of 8: enough to see the window slide
    async with fleet.worker(client, flyway_install):
        first = await _rollout(client, fleet, MigrateAllInput(parallelism=8))
        second = await _rollout(client, fleet, MigrateAllInput(parallelism=8))

    assert first.status is RolloutStatus.SUCCEEDED
    assert first.counts == {Outcome.SUCCEEDED: 16}
    assert sorted(o.tenant_id for o in first.outcomes) == fleet.tenants
    assert all((o.version_before, o.version_after, o.applied) == ("", "5", 5) for o in first.outcomes)
    assert second.status is RolloutStatus.SUCCEEDED
    assert all((o.version_before, o.version_after, o.applied) == ("5", "5", 0) for o in second.outcomes)
    for tenant in fleet.tenants:
        assert [v for v, _ in history(postgres, tenant)] == ["1", "2", "3", "4", "5"]


async def test_migrate_all_fails_fast_at_the_first_broken_tenant(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer
) -> None:
    fleet = make_fleet(postgres, 6)
    fleet.break_tenant(fleet.tenants[0])
    async with fleet.worker(client, flyway_install):
        result = await _rollout(client, fleet, MigrateAllInput(parallelism=1))

    assert result.status is RolloutStatus.FAILED
    assert result.total == 1
    # What the Temporal UI filters on: the search attributes, and the memo's counts.
    query = (
        f'FleetwayAction = "migrate" AND FleetwayOutcome = "failed" AND WorkflowId = "{result.rollout_id}"'
    )
    for _ in range(100):  # visibility is eventually consistent
        found = [w async for w in client.list_workflows(query)]
        if found:
            break
        await asyncio.sleep(0.1)
    assert [w.id for w in found] == [result.rollout_id]
    memo = await found[0].memo()
    assert memo["status"] == "failed" and memo["counts"] == {"failed": 1}
    assert [(o.tenant_id, o.error_class) for o in result.failed] == [
        (fleet.tenants[0], ErrorClass.SCHEMA_HISTORY_CORRUPT.value)
    ]


async def test_migrate_all_continue_on_error_migrates_the_others_and_reports_the_broken_one(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer
) -> None:
    fleet = make_fleet(postgres, 6)
    broken = fleet.tenants[2]
    fleet.break_tenant(broken)
    async with fleet.worker(client, flyway_install):
        result = await _rollout(client, fleet, MigrateAllInput(parallelism=3, continue_on_error=True))

    assert result.status is RolloutStatus.FAILED
    assert result.counts == {Outcome.SUCCEEDED: 5, Outcome.FAILED: 1}
    assert [(o.tenant_id, o.error_class) for o in result.failed] == [(broken, "schema_history_corrupt")]
    for tenant in fleet.tenants:
        if tenant != broken:
            assert len(history(postgres, tenant)) == 5


async def test_migrate_all_canary_halts_when_failure_ratio_is_exceeded(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer
) -> None:
    fleet = make_fleet(postgres, 10)
    for tenant in fleet.tenants[:2]:
        fleet.break_tenant(tenant)
    async with fleet.worker(client, flyway_install):
        result = await _rollout(
            client, fleet, MigrateAllInput(parallelism=2, canary_count=3, max_failure_ratio=0.1)
        )

    assert result.status is RolloutStatus.HALTED
    assert result.counts[Outcome.FAILED] == 2
    assert result.total < 10


async def test_migrate_all_rerun_failed_runs_exactly_the_failed_tenants(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer
) -> None:
    fleet = make_fleet(postgres, 5)
    broken = fleet.tenants[1]
    fleet.break_tenant(broken)
    async with fleet.worker(client, flyway_install):
        first = await _rollout(client, fleet, MigrateAllInput(continue_on_error=True))
        rerun = await _rollout(client, fleet, MigrateAllInput(rerun_failed_of=first.rollout_id))

    assert [o.tenant_id for o in rerun.outcomes] == [broken]
    assert rerun.status is RolloutStatus.FAILED


async def test_migrate_all_past_its_byte_budgets_names_failures_by_id_and_refuses_a_partial_rerun(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The budgets shrunk so 4 failures overflow them, across continue-as-new (2 dispatches a run).
    fleet = make_fleet(postgres, 6)
    broken = fleet.tenants[1:5]
    for tenant in broken:
        fleet.break_tenant(tenant)
    one_id = len(broken[0]) + 3
    monkeypatch.setattr(outcome_ledger, "FAILED_DETAIL_BUDGET", 1)  # no failure fits in detail
    request = MigrateAllInput(continue_on_error=True, parallelism=1, continue_as_new_after=2)
    async with fleet.worker(client, flyway_install):
        monkeypatch.setattr(outcome_ledger, "FAILED_IDS_BUDGET", 2 * one_id)
        tight = await _rollout(client, fleet, request)
        monkeypatch.setattr(outcome_ledger, "FAILED_IDS_BUDGET", 100 * one_id)
        named = await _rollout(client, fleet, request)
        refused = await _rollout(client, fleet, MigrateAllInput(rerun_failed_of=tight.rollout_id))
        rerun = await _rollout(
            client, fleet, MigrateAllInput(rerun_failed_of=named.rollout_id, continue_on_error=True)
        )

    assert tight.runs >= 3
    assert tight.counts == {Outcome.SUCCEEDED: 2, Outcome.FAILED: 4}
    assert (tight.failed, tight.failed_overflow, tight.failed_lost) == ([], broken[:2], 2)
    assert tight.truncated
    assert (named.failed, named.failed_overflow, named.failed_lost) == ([], broken, 0)
    # Two failures have no name left: a "rerun of the failed tenants" would be partial, so none runs.
    assert (refused.status, refused.total) == (RolloutStatus.FAILED, 0)
    assert any(
        f"rollout {tight.rollout_id!r} had 2 more failed tenants than its result could name" in w
        for w in refused.warnings
    )
    # Exactly the failed tenants ran again (still broken; still past the detail budget, so by id).
    assert rerun.counts == {Outcome.FAILED: 4}
    assert sorted(rerun.failed_overflow) == broken


async def test_migrate_all_continue_as_new_skips_and_repeats_no_tenant(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer
) -> None:
    fleet = make_fleet(postgres, 9)
    async with fleet.worker(client, flyway_install):
        result = await _rollout(
            client, fleet, MigrateAllInput(parallelism=2, page_size=2, continue_as_new_after=3)
        )

    assert result.runs >= 3
    assert result.status is RolloutStatus.SUCCEEDED
    assert sorted(o.tenant_id for o in result.outcomes) == fleet.tenants
    for tenant in fleet.tenants:
        assert [v for v, _ in history(postgres, tenant)] == ["1", "2", "3", "4", "5"]


@pytest.mark.parametrize("action", [Action.VALIDATE, Action.INFO])
async def test_migrate_all_runs_validate_and_info_across_the_fleet(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer, action: Action
) -> None:
    fleet = make_fleet(postgres, 3)
    async with fleet.worker(client, flyway_install):
        await _rollout(client, fleet, MigrateAllInput(tenants=fleet.tenants[:2]))
        result = await _rollout(client, fleet, MigrateAllInput(action=action, continue_on_error=True))

    by_tenant = {o.tenant_id: o for o in result.outcomes}
    if action is Action.INFO:
        assert by_tenant[fleet.tenants[0]].version_after == "5"
        assert by_tenant[fleet.tenants[2]].pending == ["1", "2", "3", "4", "5"]
    else:  # proven intact by their tables, as Flyway's validate (pending ignored) passes on both
        assert by_tenant[fleet.tenants[0]].outcome is Outcome.CURRENT
        never = by_tenant[fleet.tenants[2]]  # no schema yet: Flyway's validate passes there too
        assert never.outcome is Outcome.CURRENT and "5 pending" in never.message


async def test_migrate_all_stops_dispatch_when_quiesce_flag_set_mid_rollout(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer
) -> None:
    from datetime import timedelta

    fleet = make_fleet(postgres, 12)
    async with fleet.worker(client, flyway_install):
        handle = (
            await FleetwayClient(client, fleet.task_queue).start(
                MigrateAllInput(parallelism=2), rollout_id=f"q-{uuid.uuid4().hex[:8]}"
            )
        ).handle
        for _ in range(600):
            progress = await handle.query(MigrateAllWorkflow.progress)
            if sum(progress.counts.values()) >= 1:
                break
            await asyncio.sleep(0.05)
        await fleet.quiesce.set(principal="ops", reason="incident", ttl=timedelta(minutes=5))
        at_set = (await handle.query(MigrateAllWorkflow.progress)).dispatched
        result = await handle.result()

    assert result.status is RolloutStatus.QUIESCED
    # At most the one dispatch whose check was already under way may slip through.
    assert result.total <= at_set + 1
    assert result.total < 12
    assert Outcome.FAILED not in result.counts
    assert Outcome.CANCELED not in result.counts


async def test_migrate_all_fails_open_with_a_warning_when_the_quiesce_store_is_unreachable(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer
) -> None:
    # A real PostgreSQL quiesce store on a port nothing listens on: every check fails to connect.
    fleet = make_fleet(postgres, 3)
    fleet.quiesce = PostgresQuiesceController(
        f"host=127.0.0.1 port={free_port()} user=postgres dbname=postgres"
    )
    async with fleet.worker(client, flyway_install):
        result = await _rollout(client, fleet, MigrateAllInput(parallelism=1))

    # go-bricks fails open: a broken flag store must not freeze every rollout, but it is reported once.
    assert result.status is RolloutStatus.SUCCEEDED
    assert result.counts == {Outcome.SUCCEEDED: 3}
    assert result.warnings == [
        "no principal in the audit context; audit events say <unspecified>",
        "quiesce check failed; dispatch proceeded (fail-open)",
    ]


async def test_migrate_all_stops_with_a_warning_when_the_tenant_source_fails(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer
) -> None:
    fleet = make_fleet(postgres, 2)
    async with fleet.worker(client, flyway_install):
        result = await _rollout(
            client,
            fleet,
            MigrateAllInput(tenant_source="nowhere", audit=AuditContext(principal="ci@example.com")),
        )

    assert result.status is RolloutStatus.FAILED
    assert result.total == 0
    assert result.warnings == [
        "pinning the rollout's set and backends failed; nothing dispatched "
        "(configuration_error: tenant source 'nowhere' is not configured)"
    ]


async def test_rollouts_with_the_in_process_jvm_engine(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer
) -> None:
    fleet = make_fleet(postgres, 12)
    fleet.break_tenant(fleet.tenants[5])
    async with fleet.worker(client, flyway_install, engine="jvm"):
        migrated = await _rollout(client, fleet, MigrateAllInput(parallelism=6, continue_on_error=True))
        validated = await _rollout(
            client,
            fleet,
            # Every tenant through the JVM engine's validate, none proven from its table.
            MigrateAllInput(
                action=Action.VALIDATE, parallelism=6, continue_on_error=True, skip_current=False
            ),
        )
    assert migrated.counts == {Outcome.SUCCEEDED: 11, Outcome.FAILED: 1}
    assert [(o.tenant_id, o.error_class) for o in migrated.failed] == [
        (fleet.tenants[5], ErrorClass.SCHEMA_HISTORY_CORRUPT.value)
    ]
    # Validate checks what was applied; the never-migrated tenant has nothing applied, and the drift
    # read (info) reports all five versions pending for it.
    assert validated.counts == {Outcome.SUCCEEDED: 12}
    pending = {o.tenant_id: o.pending for o in validated.outcomes}
    assert pending[fleet.tenants[5]] == ["1", "2", "3", "4", "5"]
    assert all(pending[t] == [] for t in fleet.tenants if t != fleet.tenants[5])
    for tenant in fleet.tenants[:5] + fleet.tenants[6:]:
        assert [v for v, _ in history(postgres, tenant)] == ["1", "2", "3", "4", "5"]


async def test_a_rerun_of_a_running_rollout_is_refused_at_once_by_name(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer
) -> None:
    fleet = make_fleet(postgres, 2)
    async with fleet.worker(client, flyway_install):
        running = (
            await FleetwayClient(client, fleet.task_queue).start(
                MigrateAllInput(start_paused=True)  # held before its first dispatch: its list not final
            )
        ).handle
        # The library refuses before starting anything; a plain client's start, the workflow itself.
        with pytest.raises(InvalidInputError, match="is still running: its failed tenants are not final"):
            await _rollout(client, fleet, MigrateAllInput(rerun_failed_of=running.id))
        rerun = await asyncio.wait_for(
            client.execute_workflow(
                MigrateAllWorkflow.run,
                MigrateAllInput(rerun_failed_of=running.id),
                id=f"raw-{uuid.uuid4().hex[:8]}",
                task_queue=fleet.task_queue,
            ),
            60,
        )
        await running.terminate("test over")
    assert rerun.status is RolloutStatus.FAILED and rerun.total == 0
    assert any("still running" in w and running.id in w for w in rerun.warnings), rerun.warnings


async def test_a_rerun_of_a_cancelled_rollout_runs_its_failed_and_cancelled_tenants(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer, tmp_path: Path
) -> None:
    """A cancelled rollout has no result; its ledger is read from its history (the rerun query)."""
    fleet = make_fleet(postgres, 5)
    fleet.locations = fault_migrations(tmp_path / "scripts", sleep_s=6)
    broken, *slow = fleet.tenants[:4]  # three windows: the broken one's slot goes to the fourth
    fleet.break_tenant(broken)
    async with fleet.worker(client, flyway_install):
        cancelled = (
            await FleetwayClient(client, fleet.task_queue).start(
                MigrateAllInput(parallelism=3, continue_on_error=True),
                rollout_id=f"rollout-{uuid.uuid4().hex[:8]}",
            )
        ).handle
        async with asyncio.timeout(60):  # the broken one failed; three are inside their 6 s migration
            while (await cancelled.query(MigrateAllWorkflow.progress)).counts.get(Outcome.FAILED) != 1:
                await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)
        await cancelled.cancel()
        with pytest.raises(WorkflowFailureError):
            await cancelled.result()
        rerun = await asyncio.wait_for(
            _rollout(client, fleet, MigrateAllInput(rerun_failed_of=cancelled.id, continue_on_error=True)),
            120,
        )
    assert sorted(o.tenant_id for o in rerun.outcomes) == sorted([broken, *slow])
    assert rerun.counts == {Outcome.SUCCEEDED: 3, Outcome.FAILED: 1}
    assert fleet.tenants[4] not in {o.tenant_id for o in rerun.outcomes}  # never dispatched: not failed
