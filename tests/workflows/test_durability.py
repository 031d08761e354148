"""Rollouts survive a killed worker, obey operators live, and replay deterministically."""

from __future__ import annotations

import ast
import asyncio
import json
import os
import signal
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.worker import Replayer

from fleetway.activities.flyway.contract import FlywayInstall
from fleetway.activities.rollouts import Outcome
from fleetway.worker.client.connection import FleetwayClient
from fleetway.worker.config.client import DATA_CONVERTER
from fleetway.worker.dev.stack import PROJECT_ROOT, PostgresServer, TemporalDevServer
from fleetway.workflows.migrate_all import MigrateAllWorkflow
from fleetway.workflows.migrate_all_models import MigrateAllInput, MigrateAllResult, RolloutStatus
from fleetway.workflows.tenant_migration import IN_TASK_MAX_S, TenantMigrationWorkflow
from tests.fleet import FLEETWAY, fleetway, make_fleet
from tests.support import copy_migrations, history, java_pids, schema_exists, wait_until


async def _wait_progress(handle, predicate, timeout: float = 60.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        progress = await handle.query(MigrateAllWorkflow.progress)
        if predicate(progress):
            return progress
        assert loop.time() < deadline, f"condition not reached; last progress {progress}"
        await asyncio.sleep(0.1)


def _slow_migrations(tmp_path: Path, seconds: float) -> Path:
    slow = copy_migrations(tmp_path / "slow")
    (slow / "V6__slow.sql").write_text(f"SELECT pg_sleep({seconds});\n")
    return slow


async def test_rollout_completes_after_the_worker_is_killed_with_sigkill(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer,
    temporal_server: TemporalDevServer, tmp_path: Path,
) -> None:  # fmt: skip
    fleet = make_fleet(postgres, 12)
    fleet.locations = _slow_migrations(tmp_path, 0.5)
    env = fleet.cli_env(temporal_server.address, tmp_path, flyway_install)
    first = subprocess.Popen([FLEETWAY, "worker"], env=env, start_new_session=True)
    handle = (
        await FleetwayClient(client, fleet.task_queue).start(
            MigrateAllInput(parallelism=3, heartbeat_timeout_s=3), rollout_id=f"crash-{uuid.uuid4().hex[:8]}"
        )
    ).handle
    await _wait_progress(handle, lambda p: sum(p.counts.values()) >= 2 and p.in_flight)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    second = subprocess.Popen([FLEETWAY, "worker"], env=env, start_new_session=True)
    try:
        result = await asyncio.wait_for(handle.result(), timeout=150)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=30)

    assert result.status is RolloutStatus.SUCCEEDED
    assert sorted(o.tenant_id for o in result.outcomes) == fleet.tenants
    for tenant in fleet.tenants:
        assert history(postgres, tenant) == [(v, True) for v in ["1", "2", "3", "4", "5", "6"]]


@pytest.mark.parametrize(("engine", "in_task"), [("cli", False), ("jvm", False), ("jvm", True)])
async def test_a_migration_longer_than_the_heartbeat_timeout_succeeds_on_its_first_attempt(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer, tmp_path: Path, engine: str,
    in_task: bool,
) -> None:  # fmt: skip
    fleet = make_fleet(postgres, 1)
    # 3.5x the heartbeat timeout below, and about three renewals of the child's 3 s task.
    fleet.locations = _slow_migrations(tmp_path, 7)
    rollout_id = f"hb-{uuid.uuid4().hex[:8]}"
    timeout_s = 600 if in_task else IN_TASK_MAX_S + 1
    async with fleet.worker(client, flyway_install, engine=engine):
        result = await FleetwayClient(client, fleet.task_queue).run(
            MigrateAllInput(heartbeat_timeout_s=2, flyway_timeout_s=timeout_s), rollout_id=rollout_id
        )
        child = client.get_workflow_handle(f"{rollout_id}/{fleet.tenants[0]}")
        events = [e async for e in child.fetch_history_events()]

    assert result.counts == {Outcome.SUCCEEDED: 1}
    assert history(postgres, fleet.tenants[0]) == [(v, True) for v in ["1", "2", "3", "4", "5", "6"]]
    started = [
        e.activity_task_started_event_attributes
        for e in events
        if e.HasField("activity_task_started_event_attributes")
    ]
    if in_task:
        # One call in the child's task, renewed while Flyway ran: no task timed out, one attempt.
        scheduled = [
            e.activity_task_scheduled_event_attributes.activity_type.name
            for e in events
            if e.HasField("activity_task_scheduled_event_attributes")
        ]
        assert scheduled == ["read_schema_history"]  # Flyway ran in the task; the table was read
        assert len([e for e in events if e.HasField("workflow_task_completed_event_attributes")]) >= 3
        assert not any(e.HasField("workflow_task_timed_out_event_attributes") for e in events)
        assert [o.attempts for o in result.outcomes] == [1]
        assert result.outcomes[0].source == "history"  # it outlived the first task: the table's word
        return
    # The Flyway activity (the only task-queue activity; the audit emit is local), on attempt 1:
    # no heartbeat timeout, no retry.
    assert [a.attempt for a in started] == [1]
    assert not any(e.HasField("activity_task_timed_out_event_attributes") for e in events)


async def test_cancel_from_the_cli_cancels_rollout_and_children_and_leaves_no_jvm(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer,
    temporal_server: TemporalDevServer, tmp_path: Path,
) -> None:  # fmt: skip
    fleet = make_fleet(postgres, 4)
    fleet.locations = _slow_migrations(tmp_path, 60)
    env = fleet.cli_env(temporal_server.address, tmp_path, flyway_install)
    rollout_id = f"cancel-{uuid.uuid4().hex[:8]}"
    async with fleet.worker(client, flyway_install):
        handle = (
            await FleetwayClient(client, fleet.task_queue).start(
                MigrateAllInput(parallelism=2), rollout_id=rollout_id
            )
        ).handle
        await _wait_progress(handle, lambda p: len(p.in_flight) == 2)
        for _ in range(300):
            if len(java_pids(fleet.tenants[0][:7])) >= 2:
                break
            await asyncio.sleep(0.05)
        done = await asyncio.to_thread(fleetway, "cancel", rollout_id, env=env)
        assert done.returncode == 0, done.stderr
        described = await handle.describe()
        children = [
            await client.get_workflow_handle(f"{rollout_id}/{t}").describe() for t in fleet.tenants[:2]
        ]

    assert described.status is WorkflowExecutionStatus.CANCELED
    assert [c.status for c in children] == [WorkflowExecutionStatus.CANCELED] * 2
    assert java_pids(fleet.tenants[0][:7]) == []


async def test_fail_fast_stops_dispatching_and_lets_the_in_flight_tenants_finish(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer, tmp_path: Path
) -> None:
    """The first failure stops dispatch; healthy tenants mid-script finish (only a cancel kills)."""
    fleet = make_fleet(postgres, 5)
    fleet.locations = _slow_migrations(tmp_path, 3)
    broken = fleet.tenants[3]  # dispatched fourth: the first three are mid-migration when it fails
    fleet.break_tenant(broken)
    async with fleet.worker(client, flyway_install):
        result = await FleetwayClient(client, fleet.task_queue).run(
            MigrateAllInput(parallelism=4), rollout_id=f"ff-{uuid.uuid4().hex[:8]}"
        )

    assert result.status is RolloutStatus.FAILED
    assert result.counts == {Outcome.FAILED: 1, Outcome.SUCCEEDED: 3}
    assert [(o.tenant_id, o.error_class) for o in result.failed] == [(broken, "schema_history_corrupt")]
    for tenant in fleet.tenants[:3]:
        assert history(postgres, tenant) == [(v, True) for v in ["1", "2", "3", "4", "5", "6"]]
    assert not schema_exists(postgres, fleet.tenants[4])  # never dispatched after the failure
    assert java_pids(fleet.tenants[0][:7]) == []


async def test_pause_resume_set_parallelism_and_progress_steer_a_running_rollout(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer,
    temporal_server: TemporalDevServer, tmp_path: Path,
) -> None:  # fmt: skip
    fleet = make_fleet(postgres, 8)
    fleet.locations = _slow_migrations(tmp_path, 0.3)
    env = fleet.cli_env(temporal_server.address, tmp_path, flyway_install)
    rollout_id = f"steer-{uuid.uuid4().hex[:8]}"
    async with fleet.worker(client, flyway_install):
        handle = (
            await FleetwayClient(client, fleet.task_queue).start(
                MigrateAllInput(parallelism=1), rollout_id=rollout_id
            )
        ).handle
        await _wait_progress(handle, lambda p: p.dispatched >= 1)
        assert (await asyncio.to_thread(fleetway, "pause", rollout_id, env=env)).returncode == 0
        paused = await _wait_progress(handle, lambda p: p.paused and not p.in_flight)
        status = await asyncio.to_thread(fleetway, "status", rollout_id, env=env)
        assert status.returncode == 3
        assert "paused" in status.stdout
        again = await handle.query(MigrateAllWorkflow.progress)
        assert again.dispatched == paused.dispatched < 8

        assert await handle.execute_update(MigrateAllWorkflow.set_parallelism, 4) == 1
        with pytest.raises(WorkflowUpdateFailedError):
            await handle.execute_update(MigrateAllWorkflow.set_parallelism, 0)
        assert (await handle.query(MigrateAllWorkflow.progress)).parallelism == 4

        assert (await asyncio.to_thread(fleetway, "resume", rollout_id, env=env)).returncode == 0
        result = await handle.result()

    assert result.status is RolloutStatus.SUCCEEDED
    assert result.counts == {Outcome.SUCCEEDED: 8}


async def test_a_rollout_started_paused_dispatches_nothing_until_resumed(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer
) -> None:
    fleet = make_fleet(postgres, 2)
    async with fleet.worker(client, flyway_install):
        handle = (
            await FleetwayClient(client, fleet.task_queue).start(
                MigrateAllInput(start_paused=True), rollout_id=f"held-{uuid.uuid4().hex[:8]}"
            )
        ).handle
        held = await _wait_progress(handle, lambda p: p.paused)
        await asyncio.sleep(1)
        assert (await handle.query(MigrateAllWorkflow.progress)).dispatched == held.dispatched == 0
        await handle.signal(MigrateAllWorkflow.resume)
        result = await handle.result()

    assert result.counts == {Outcome.SUCCEEDED: 2}


async def test_every_operator_handler_is_described_for_the_temporal_ui(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer
) -> None:
    fleet = make_fleet(postgres, 1)
    async with fleet.worker(client, flyway_install):
        handle = (
            await FleetwayClient(client, fleet.task_queue).start(
                MigrateAllInput(), rollout_id=f"meta-{uuid.uuid4().hex[:8]}"
            )
        ).handle
        await handle.result()
        # What the UI reads to list a workflow's handlers.
        metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)

    definition = metadata.definition
    described = {
        kind: {h.name: h.description for h in handlers}
        for kind, handlers in (
            ("signal", definition.signal_definitions),
            ("update", definition.update_definitions),
            ("query", definition.query_definitions),
        )
    }
    assert set(described["signal"]) == {"quiesce", "pause", "resume"}
    assert set(described["update"]) == {
        "set_parallelism", "approve", "reject", "skip_tenant", "retry_tenant", "set_tenant_deadline"
    }  # fmt: skip
    assert '{"tenant": "acme", "deadline_s": 300' in described["update"]["set_tenant_deadline"]
    assert '{"principal": "you@example.com"' in described["update"]["approve"]  # the UI form's input, shown
    assert {"progress", "completions"} <= set(described["query"])
    assert all(
        description
        for kind, handlers in described.items()
        for name, description in handlers.items()
        if not name.startswith("__")
    ), described


async def test_pipeline_starts_a_rollout_with_the_temporal_cli_and_plain_json(
    client: Client,
    flyway_install: FlywayInstall,
    postgres: PostgresServer,
    temporal_server: TemporalDevServer,
) -> None:
    from fleetway.worker.dev.stack import temporal_binary

    fleet = make_fleet(postgres, 2)
    rollout_id = f"cli-{uuid.uuid4().hex[:8]}"
    payload = json.dumps({"action": "migrate", "tenants": fleet.tenants, "parallelism": 2})
    async with fleet.worker(client, flyway_install):
        started = await asyncio.to_thread(
            subprocess.run,
            [str(temporal_binary()), "workflow", "start", "--address", temporal_server.address,
             "--task-queue", fleet.task_queue, "--type", "MigrateAllWorkflow",
             "--workflow-id", rollout_id, "--input", payload],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert started.returncode == 0, started.stderr
        result = await client.get_workflow_handle(rollout_id, result_type=MigrateAllResult).result()

    assert result.status is RolloutStatus.SUCCEEDED
    assert result.counts == {Outcome.SUCCEEDED: 2}


@pytest.mark.parametrize(
    ("payload", "failure"),
    [
        ({"tenants": ["acme", "o'brien", "", "ok_2"]},
         "invalid_tenant_id: 2 tenant ids in the rollout's tenants are invalid: \"o'brien\", ''; "
         "each must match ^[A-Za-z0-9_-]{1,128}$"),
        ({"parallelism": 1000, "migration_set": "sha256:abc"},
         "invalid_input: parallelism: Input should be less than or equal to 256; "
         "migration_set: invalid_input: migration set digest 'sha256:abc' is not sha256:<64 hex digits>"),
        ({"action": "drop"}, "invalid_input: action: Input should be 'migrate', 'validate', 'info', 'baseline' or 'repair'"),
    ],
)  # fmt: skip
async def test_an_invalid_input_from_the_temporal_cli_fails_the_rollout_at_once_with_a_named_error(
    client: Client,
    flyway_install: FlywayInstall,
    postgres: PostgresServer,
    temporal_server: TemporalDevServer,
    payload: dict[str, object],
    failure: str,
) -> None:
    from fleetway.worker.dev.stack import temporal_binary

    fleet = make_fleet(postgres, 1)
    rollout_id = f"bad-{uuid.uuid4().hex[:8]}"
    async with fleet.worker(client, flyway_install):
        started = await asyncio.to_thread(
            subprocess.run,
            [str(temporal_binary()), "workflow", "start", "--address", temporal_server.address,
             "--task-queue", fleet.task_queue, "--type", "MigrateAllWorkflow",
             "--workflow-id", rollout_id, "--input", json.dumps(payload)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert started.returncode == 0, started.stderr
        with pytest.raises(WorkflowFailureError) as ended:
            await asyncio.wait_for(client.get_workflow_handle(rollout_id).result(), 30)

    cause = ended.value.cause
    assert isinstance(cause, ApplicationError) and cause.non_retryable
    assert f"{cause.type}: {cause.message}" == failure


async def test_recorded_histories_replay_without_nondeterminism(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer
) -> None:
    fleet = make_fleet(postgres, 5)
    fleet.break_tenant(fleet.tenants[3])
    rollout_id = f"replay-{uuid.uuid4().hex[:8]}"
    async with fleet.worker(client, flyway_install):
        await FleetwayClient(client, fleet.task_queue).run(
            MigrateAllInput(parallelism=2, continue_on_error=True, continue_as_new_after=2),
            rollout_id=rollout_id,
        )
    histories = [await client.get_workflow_handle(rollout_id).fetch_history()]
    histories += [
        await client.get_workflow_handle(f"{rollout_id}/{t}").fetch_history() for t in fleet.tenants
    ]
    replayer = Replayer(
        workflows=[MigrateAllWorkflow, TenantMigrationWorkflow], data_converter=DATA_CONVERTER
    )
    for recorded in histories:
        await replayer.replay_workflow(recorded)


# An allow-list, not a ban list: a module that is not named here (secrets, pathlib, threading,
# urllib.request, ...) fails the test until someone decides it is deterministic. ``None`` allows any
# name from the module; a set allows those names only (``datetime.timedelta``, never ``datetime.now``).
_ALLOWED: dict[str, set[str] | None] = {
    "__future__": None,
    "asyncio": None,  # tasks, CancelledError: the SDK runs workflow asyncio deterministically
    "collections": None,
    "collections.abc": None,
    "contextlib": {"suppress"},  # exception handling only (a bake's timer running out)
    "dataclasses": None,
    "datetime": {"timedelta"},
    "enum": None,
    "itertools": None,
    "typing": None,
    "pydantic": None,
    "temporalio": {"workflow"},
    "temporalio.common": None,
    "temporalio.exceptions": None,
    "temporalio.workflow": None,
}


def _passed_through(node: ast.With) -> bool:
    return any(
        isinstance(item.context_expr, ast.Call)
        and ast.unparse(item.context_expr.func).endswith("imports_passed_through")
        for item in node.items
    )


def _imports(tree: ast.AST, *, inside: bool = False) -> list[tuple[str, set[str] | None, bool]]:
    """(module, names or None for ``import m``, whether inside ``imports_passed_through()``)."""
    found: list[tuple[str, set[str] | None, bool]] = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, None, inside) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.module, {alias.name for alias in node.names}, inside))
        else:
            found += _imports(node, inside=inside or (isinstance(node, ast.With) and _passed_through(node)))
    return found


def _problems(source: str) -> list[str]:
    problems = []
    for name, names, passed in _imports(ast.parse(source)):
        if name.startswith("fleetway.workflows."):
            continue  # the other workflow modules, held to this same rule
        if name.startswith("fleetway.activities."):
            if not passed:  # models and activity classes enter only through the sandbox's pass-through
                problems.append(f"{name} imported outside workflow.unsafe.imports_passed_through()")
            continue
        if name not in _ALLOWED:
            problems.append(f"{name} is not on the allow-list")
        elif (allowed := _ALLOWED[name]) is not None and (names is None or not names <= allowed):
            problems.append(f"{name}: only {sorted(allowed)} may be imported, not {sorted(names or {'*'})}")
    return problems


@pytest.mark.parametrize("module", sorted((PROJECT_ROOT / "workflows").glob("*.py")), ids=lambda p: p.name)
def test_workflow_modules_import_only_what_is_known_deterministic(module: Path) -> None:
    assert _problems(module.read_text()) == []


def test_the_import_guard_catches_what_a_ban_list_missed() -> None:
    sneaky = (
        "import secrets\nfrom pathlib import Path\nfrom datetime import datetime, timedelta\n"
        "import urllib.request\nimport threading\nfrom fleetway.activities.flyway.cli_engine import FlywayRunner\n"
    )
    assert _problems(sneaky) == [
        "secrets is not on the allow-list",
        "pathlib is not on the allow-list",
        "datetime: only ['timedelta'] may be imported, not ['datetime', 'timedelta']",
        "urllib.request is not on the allow-list",
        "threading is not on the allow-list",
        "fleetway.activities.flyway.cli_engine imported outside workflow.unsafe.imports_passed_through()",
    ]


async def test_a_tenant_locked_by_the_application_is_retried_and_migrates_once_the_lock_goes(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer, tmp_path: Path
) -> None:
    """55P03 (lock_timeout) is retried within the tenant's budget, never the tenant's failure."""
    fleet = make_fleet(postgres, 1)
    (tenant,) = fleet.tenants
    fleet.locations = copy_migrations(tmp_path / "v4", upto=4)
    async with fleet.worker(client, flyway_install):
        await FleetwayClient(client, fleet.task_queue).run(
            MigrateAllInput(), rollout_id=f"v4-{uuid.uuid4().hex[:8]}"
        )
    fleet.locations = copy_migrations(tmp_path / "v5")
    waits: list[int] = []

    def queued() -> bool:
        with psycopg.connect(postgres.dsn, autocommit=True) as conn:
            row = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query ILIKE 'ALTER TABLE accounts%'"
            ).fetchone()
        if row and row[0] not in waits:
            waits.append(row[0])  # each attempt connects anew: a new backend pid
        return len(waits) >= 2

    with psycopg.connect(postgres.dsn) as app:
        app.execute(f'SELECT count(*) FROM "{tenant}".accounts')  # the application's open transaction
        async with fleet.worker(client, flyway_install, lock_timeout_s=1):
            handle = (await FleetwayClient(client, fleet.task_queue).start(MigrateAllInput(), rollout_id=f"lock-{uuid.uuid4().hex[:8]}")).handle  # fmt: skip
            assert await asyncio.to_thread(wait_until, queued, timeout=60, interval=0.05)  # two attempts
            app.rollback()  # the application lets go
            result = await handle.result()

    assert result.status is RolloutStatus.SUCCEEDED, result.failed
    (outcome,) = result.outcomes
    assert outcome.attempts >= 2 and outcome.applied_versions == ["5"]
    assert history(postgres, tenant) == [(v, True) for v in ["1", "2", "3", "4", "5"]]
