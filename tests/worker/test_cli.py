"""The real ``fleetway`` CLI as a process, against the real stack."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from fleetway.activities.flyway.contract import FlywayInstall
from fleetway.activities.quiesce import PostgresQuiesceController
from fleetway.activities.sets.digest import scan_set
from fleetway.worker.config.settings import SetsConfig
from fleetway.worker.dev.stack import PROJECT_ROOT, PostgresServer, TemporalDevServer, free_port
from fleetway.workflows.migrate_all import MigrateAllWorkflow
from fleetway.workflows.migrate_all_models import MigrateAllResult, RolloutStatus
from tests.fleet import FLEETWAY, fleetway, make_fleet
from tests.support import DEMO_MIGRATIONS, copy_migrations, history, schema_exists


async def test_cli_migrate_streams_ndjson_and_exits_by_outcome(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer,
    temporal_server: TemporalDevServer, tmp_path: Path,
) -> None:  # fmt: skip
    fleet = make_fleet(postgres, 3)
    fleet.break_tenant(fleet.tenants[2])
    env = fleet.cli_env(temporal_server.address, tmp_path, flyway_install)
    async with fleet.worker(client, flyway_install):
        ok = await asyncio.to_thread(
            fleetway, "migrate", "--tenant", fleet.tenants[0], "--tenant", fleet.tenants[1],
            "--principal", "ci", "-o", "ndjson", env=env,
        )  # fmt: skip
        bad = await asyncio.to_thread(fleetway, "migrate", "--continue-on-error", "-o", "ndjson", env=env)

    lines = [json.loads(line) for line in ok.stdout.splitlines()]
    assert ok.returncode == 0, ok.stderr
    assert [line["event"] for line in lines] == ["tenant_complete", "tenant_complete", "summary"]
    assert {line["tenant_id"] for line in lines[:2]} == set(fleet.tenants[:2])
    assert lines[-1]["status"] == "succeeded"
    assert lines[-1]["migration_set"] == scan_set([DEMO_MIGRATIONS])[0].digest == lines[0]["migration_set"]
    assert bad.returncode == 1
    failed = [
        json.loads(line) for line in bad.stdout.splitlines() if '"failed"' in line and "tenant_id" in line
    ]
    assert [(f["tenant_id"], f["error_class"]) for f in failed] == [
        (fleet.tenants[2], "schema_history_corrupt")
    ]


async def test_cli_dry_run_shows_pending_versions_and_changes_nothing(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer,
    temporal_server: TemporalDevServer, tmp_path: Path,
) -> None:  # fmt: skip
    fleet = make_fleet(postgres, 2)
    env = fleet.cli_env(temporal_server.address, tmp_path, flyway_install)
    async with fleet.worker(client, flyway_install):
        done = await asyncio.to_thread(fleetway, "migrate", "--dry-run", env=env)

    assert done.returncode == 0, done.stderr
    assert done.stdout.count("would apply 1, 2, 3, 4, 5") == 2
    assert not any(schema_exists(postgres, t) for t in fleet.tenants)


def test_cli_rejects_an_invalid_tenant_id_with_exit_two_and_starts_nothing(
    postgres: PostgresServer,
    temporal_server: TemporalDevServer,
    flyway_install: FlywayInstall,
    tmp_path: Path,
) -> None:
    fleet = make_fleet(postgres, 1)
    env = fleet.cli_env(temporal_server.address, tmp_path, flyway_install)
    done = fleetway("migrate", "--tenant", "acme; DROP", "--tenant", "ok_1", "--tenant", "bad id", env=env)
    (tenants_file := tmp_path / "tenants.txt").write_text("ok_2\nbad id\n")
    from_file = fleetway("migrate", "--tenants-file", str(tenants_file), env=env)
    big = fleetway("migrate", "--parallelism", "9", "--rollout-id", "x", "-o", "bogus", env=env)
    assert done.returncode == from_file.returncode == 2
    assert done.stderr == (
        "invalid_tenant_id: 2 tenant ids in the rollout's tenants are invalid: 'acme; DROP', 'bad id'; "
        "each must match ^[A-Za-z0-9_-]{1,128}$\n"
    )
    assert from_file.stderr == (
        f"invalid_tenant_id: tenant id in tenants file {str(tenants_file)!r} is invalid: 'bad id'; "
        "each must match ^[A-Za-z0-9_-]{1,128}$\n"
    )
    assert big.returncode == 2 and "Traceback" not in big.stderr


async def test_cli_list_tenants_answers_from_the_workers_source_not_the_clis(
    client: Client, postgres: PostgresServer, temporal_server: TemporalDevServer,
    flyway_install: FlywayInstall, tmp_path: Path,
) -> None:  # fmt: skip
    fleet = make_fleet(postgres, 3)
    env = fleet.cli_env(temporal_server.address, tmp_path, flyway_install)
    env["FLEETWAY_TENANTS__TENANTS"] = json.dumps(["someone_else"])  # the CLI's own, different source
    nobody = await asyncio.to_thread(fleetway, "list-tenants", env=env)
    async with fleet.worker(client, flyway_install):
        text = await asyncio.to_thread(fleetway, "list-tenants", env=env)
        as_json = await asyncio.to_thread(fleetway, "list-tenants", "-o", "json", env=env)
    local = await asyncio.to_thread(fleetway, "list-tenants", "--local", env=env)

    assert text.stdout.split() == fleet.tenants
    assert json.loads(as_json.stdout) == {"tenants": fleet.tenants, "duplicates": [], "pages": 1}
    assert "tenant source static: 3 tenants" in text.stderr
    assert local.stdout.split() == ["someone_else"]
    assert nobody.returncode == 6  # unavailable: no worker answered (the same command works later)
    assert nobody.stderr.strip() == (
        f"worker_unavailable: no worker polls task queue {fleet.task_queue!r} (start one with: fleetway worker)"
    )


async def test_cli_pushes_a_set_and_a_store_only_worker_rolls_it_out_by_digest(
    client: Client, postgres: PostgresServer, temporal_server: TemporalDevServer,
    flyway_install: FlywayInstall, tmp_path: Path,
) -> None:  # fmt: skip
    fleet = make_fleet(postgres, 2)
    release = copy_migrations(tmp_path / "release", upto=4)
    env = fleet.cli_env(temporal_server.address, tmp_path, flyway_install) | {
        "FLEETWAY_SETS__STORE": "dir", "FLEETWAY_SETS__DIR": str(tmp_path / "store"),
    }  # fmt: skip
    local = await asyncio.to_thread(fleetway, "migrations", "digest", str(release), env=env)
    pushed = await asyncio.to_thread(fleetway, "migrations", "push", str(release), env=env)
    digest = pushed.stdout.strip()
    store_only = SetsConfig(store="dir", dir=tmp_path / "store", cache=tmp_path / "cache")
    async with fleet.worker(client, flyway_install, locations=[], sets=store_only):
        done = await asyncio.to_thread(fleetway, "migrate", "--migrations", digest, "-o", "json", env=env)
        stale = await asyncio.to_thread(
            fleetway, "migrate", "--migrations", str(DEMO_MIGRATIONS), "--tenant", fleet.tenants[0],
            "--detach", env=env,
        )  # fmt: skip
        await client.get_workflow_handle(stale.stdout.strip()).cancel()

    assert (local.returncode, pushed.returncode, done.returncode) == (0, 0, 0), done.stderr
    assert local.stdout.strip() == digest and digest.startswith("sha256:")
    assert "4 files, 4 new" in pushed.stderr
    result = json.loads(done.stdout)
    assert result["migration_set"] == digest
    assert {(o["version_after"], o["migration_set"]) for o in result["outcomes"]} == {("4", digest)}
    assert f"task queue      {fleet.task_queue}" in done.stderr
    assert f"migration set   {digest} (given by digest)" in done.stderr
    assert "secret backend  static: 2 tenants in memory" in done.stderr
    assert "warning: this CLI's secret backend is 'file: " in done.stderr
    for tenant in fleet.tenants:
        assert [v for v, _ in history(postgres, tenant)] == ["1", "2", "3", "4"]
    assert "warning: the worker that answered cannot run sha256:" in stale.stderr
    assert f"dir:{tmp_path / 'store'}" in stale.stderr and "migration_set_mismatch" in stale.stderr


def test_cli_worker_refuses_a_migrations_folder_that_would_apply_nothing(
    postgres: PostgresServer,
    temporal_server: TemporalDevServer,
    flyway_install: FlywayInstall,
    tmp_path: Path,
) -> None:
    fleet = make_fleet(postgres, 1)
    env = fleet.cli_env(temporal_server.address, tmp_path, flyway_install)
    (tmp_path / "empty").mkdir()
    answers = {}
    for folder in (tmp_path / "missing", tmp_path / "empty"):
        env["FLEETWAY_FLYWAY__LOCATIONS"] = json.dumps([str(folder)])
        for engine in ("cli", "jvm"):
            answers[folder.name, engine] = fleetway("worker", "--engine", engine, env=env, timeout=60)

    for (name, _), done in answers.items():
        problem = "does not exist" if name == "missing" else "holds no .sql script"
        assert done.returncode == 2
        assert done.stderr.startswith("migration_set_invalid: ") and problem in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


def test_cli_worker_without_a_migration_set_refuses_to_start_even_beside_the_demo_set(
    postgres: PostgresServer,
    temporal_server: TemporalDevServer,
    flyway_install: FlywayInstall,
    tmp_path: Path,
) -> None:
    """No default set: a worker with a forgotten setting never rolls the demo schema onto anyone."""
    env = make_fleet(postgres, 1).cli_env(temporal_server.address, tmp_path, flyway_install)
    del env["FLEETWAY_FLYWAY__LOCATIONS"]
    done = subprocess.run(
        [FLEETWAY, "worker"],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (PROJECT_ROOT / "migrations" / "demo").is_dir()  # what the old default pointed at
    assert done.returncode == 2
    assert done.stderr.startswith("migration_set_invalid: no migrations folder is configured")
    assert "FLEETWAY_FLYWAY__LOCATIONS" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_cli_worker_without_flyway_jars_refuses_to_start_and_fetches_nothing(
    postgres: PostgresServer,
    temporal_server: TemporalDevServer,
    flyway_install: FlywayInstall,
    tmp_path: Path,
) -> None:
    """The production worker never runs Maven: no ``flyway.lib_dir``, one line naming the setting."""
    env = make_fleet(postgres, 1).cli_env(temporal_server.address, tmp_path, flyway_install)
    del env["FLEETWAY_FLYWAY__LIB_DIR"]
    env["PATH"] = "/usr/bin:/bin"  # and no Maven anywhere in reach (it would fail loudly if called)
    done = fleetway("worker", env=env, timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith("flyway_install_missing: ") and "FLEETWAY_FLYWAY__LIB_DIR" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_cli_quiesce_refuses_the_deployment_flag_without_a_shared_store(tmp_path: Path) -> None:
    """A flag in the CLI's own memory would print ACTIVE and stop no worker: refused instead."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETWAY_")}
    for args in (["set", "--reason", "freeze", "--by", "ops"], ["clear", "--by", "ops"], ["status"]):
        done = fleetway("quiesce", *args, env=env, timeout=60)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert done.stderr.startswith("quiesce_store_missing: ") and "FLEETWAY_QUIESCE__DSN" in done.stderr
        assert "ACTIVE" not in done.stdout and len(done.stderr.strip().splitlines()) == 1


def test_cli_quiesce_set_status_clear_round_trip_on_postgres(
    postgres: PostgresServer,
    temporal_server: TemporalDevServer,
    flyway_install: FlywayInstall,
    tmp_path: Path,
) -> None:
    fleet = make_fleet(postgres, 1)
    env = fleet.cli_env(temporal_server.address, tmp_path, flyway_install)
    env["FLEETWAY_QUIESCE__DSN"] = postgres.dsn
    env["FLEETWAY_QUIESCE__TABLE"] = f"ops_{fleet.task_queue.replace('-', '_')}"

    missing = fleetway("quiesce", "set", "--reason", "r", "--by", "alice", env=env)
    assert missing.returncode == 2 and missing.stderr.startswith("quiesce_store_not_writable: ")
    assert "fleetway quiesce init" in missing.stderr  # no DDL but the explicit step's
    init = fleetway("quiesce", "init", env=env)
    assert init.returncode == 0 and "quiesce table ready" in init.stderr, init.stderr
    fraction = fleetway("quiesce", "set", "--reason", "r", "--ttl", "1.5h", "--by", "alice", env=env)
    set_ = fleetway("quiesce", "set", "--reason", "incident 42", "--ttl", "45m", "--by", "alice", env=env)
    status = fleetway("quiesce", "status", "-o", "json", env=env)
    cleared = fleetway("quiesce", "clear", "--by", "bob", env=env)
    again = fleetway("quiesce", "clear", "--by", "bob", env=env)

    # One duration grammar with a wave's bake: no fractions, refused before anything is set.
    assert (
        fraction.returncode == 2 and "invalid_quiesce_ttl" in fraction.stderr and "1h30m" in fraction.stderr
    )
    assert set_.returncode == 0, set_.stderr
    assert 'state=ACTIVE set_by="alice" reason="incident 42"' in set_.stdout
    snapshot = json.loads(status.stdout)
    assert snapshot["active"] is True
    assert cleared.returncode == 0 and "state=cleared" in cleared.stdout
    assert again.returncode == 5 and "quiesce_not_set" in again.stderr
    assert postgres.superuser_password not in set_.stdout + set_.stderr + status.stdout


async def test_cli_tenants_file_canary_halt_detach_and_the_quiesced_exit_code(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer,
    temporal_server: TemporalDevServer, tmp_path: Path,
) -> None:  # fmt: skip
    fleet = make_fleet(postgres, 6)
    fleet.break_tenant(fleet.tenants[0])
    table = f"q_{fleet.task_queue.replace('-', '_')}"
    store = PostgresQuiesceController(postgres.dsn, table=table)
    await store.install()
    fleet.quiesce = store
    env = fleet.cli_env(temporal_server.address, tmp_path, flyway_install)
    env |= {"FLEETWAY_QUIESCE__DSN": postgres.dsn, "FLEETWAY_QUIESCE__TABLE": table}
    tenants_file = tmp_path / "tenants.json"
    tenants_file.write_text(json.dumps(fleet.tenants[:4]))
    detached_id = f"detached-{fleet.task_queue}"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return fleetway(*args, "--principal", "ci", env=env)

    async with fleet.worker(client, flyway_install):
        halted = await asyncio.to_thread(
            cli, "migrate", "--tenants-file", str(tenants_file), "--parallelism", "1",
            "--canary", "2", "--max-failure-ratio", "0.1", "-o", "json",
        )  # fmt: skip
        detached = await asyncio.to_thread(
            cli, "migrate", "--tenant", fleet.tenants[5], "--detach", "--rollout-id", detached_id
        )
        await client.get_workflow_handle(detached_id).result()
        status = await asyncio.to_thread(fleetway, "status", detached_id, "-o", "json", env=env)
        assert fleetway("quiesce", "set", "--reason", "freeze", "--by", "ops", env=env).returncode == 0
        quiesced = await asyncio.to_thread(cli, "migrate", "--tenant", fleet.tenants[4], "-o", "ndjson")
        assert fleetway("quiesce", "clear", "--by", "ops", env=env).returncode == 0

    # Canary of 2 from the file: one of the two failed (ratio 0.5 > 0.1), so it halted there: exit 1.
    assert halted.returncode == 1, halted.stderr
    result = json.loads(halted.stdout)
    assert (result["status"], result["counts"]) == ("halted", {"failed": 1, "succeeded": 1})
    assert not any(schema_exists(postgres, t) for t in fleet.tenants[2:4])
    # Detached: the id on stdout, exit 0 at once; the rollout ran; status reports it by outcome.
    assert (detached.returncode, detached.stdout.strip()) == (0, detached_id)
    assert "no worker polls" not in detached.stderr
    assert status.returncode == 0 and json.loads(status.stdout)["status"] == "succeeded"
    # The global flag set: nothing dispatched, "quiesced" is exit 3, not a failure.
    assert quiesced.returncode == 3, quiesced.stderr
    summary = json.loads(quiesced.stdout.splitlines()[-1])
    assert (summary["status"], summary["total"]) == ("quiesced", 0)
    assert not schema_exists(postgres, fleet.tenants[4])


_SIGINT_DEFAULT_EXEC = "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])"


async def test_ctrl_c_on_an_attached_rollout_detaches_and_the_rollout_runs_on(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer,
    temporal_server: TemporalDevServer, tmp_path: Path,
) -> None:  # fmt: skip
    fleet = make_fleet(postgres, 2)
    fleet.locations = copy_migrations(tmp_path / "slow")
    (fleet.locations / "V6__slow.sql").write_text("SELECT pg_sleep(3);\n")
    env = fleet.cli_env(temporal_server.address, tmp_path, flyway_install)
    rollout_id = f"ctrlc-{fleet.task_queue}"
    async with fleet.worker(client, flyway_install):
        # Ctrl-C as a terminal delivers it: SIGINT at its default even when this suite runs as a
        # background job (which starts with SIGINT ignored, and children inherit that).
        proc = subprocess.Popen(
            [sys.executable, "-c", _SIGINT_DEFAULT_EXEC, FLEETWAY, "migrate", "--principal", "ci",
             "--parallelism", "1", "--rollout-id", rollout_id],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            handle = client.get_workflow_handle(rollout_id, result_type=MigrateAllResult)
            for _ in range(200):  # attached and following
                with contextlib.suppress(RPCError):
                    if (await handle.query(MigrateAllWorkflow.progress)).in_flight:
                        break
                await asyncio.sleep(0.1)
            proc.send_signal(signal.SIGINT)
            _, stderr = await asyncio.to_thread(proc.communicate, timeout=30)
            result = await handle.result()
        finally:
            proc.kill()  # never leave a CLI behind when an assertion above fails
            proc.wait()

    assert proc.returncode == 130, stderr
    assert f"detached from {rollout_id}; it keeps running" in stderr
    assert "Traceback" not in stderr
    assert result.status is RolloutStatus.SUCCEEDED and result.total == 2  # Ctrl-C never cancels a rollout


async def test_a_rollout_started_where_no_worker_listens_says_so(
    client: Client, postgres: PostgresServer, temporal_server: TemporalDevServer,
    flyway_install: FlywayInstall, tmp_path: Path,
) -> None:  # fmt: skip
    fleet = make_fleet(postgres, 1)  # its task queue has never had a worker
    env = fleet.cli_env(temporal_server.address, tmp_path, flyway_install)
    rollout_id = f"lonely-{fleet.task_queue}"
    done = await asyncio.to_thread(
        fleetway, "migrate", "--principal", "ci", "--detach", "--rollout-id", rollout_id, env=env
    )
    await client.get_workflow_handle(rollout_id).terminate("test cleanup")

    assert done.returncode == 0, done.stderr
    assert f"warning: no worker polls task queue '{fleet.task_queue}'" in done.stderr
    assert "fleetway worker" in done.stderr


async def test_cli_shows_the_databases_own_message_for_a_failed_script(
    client: Client, postgres: PostgresServer, temporal_server: TemporalDevServer,
    flyway_install: FlywayInstall, tmp_path: Path,
) -> None:  # fmt: skip
    fleet = make_fleet(postgres, 2)
    fleet.locations = copy_migrations(tmp_path / "broken", upto=2)
    (fleet.locations / "V3__broken.sql").write_text("CREATE TABLE ok (id int);\nSELEC 1;\n")
    env = fleet.cli_env(temporal_server.address, tmp_path, flyway_install)
    async with fleet.worker(client, flyway_install):
        lines = await asyncio.to_thread(
            fleetway, "migrate", "--tenant", fleet.tenants[0], "--principal", "ci", "-o", "ndjson", env=env
        )
        table = await asyncio.to_thread(
            fleetway, "migrate", "--tenant", fleet.tenants[1], "--principal", "ci", env=env
        )

    (failed,) = [json.loads(line) for line in lines.stdout.splitlines() if '"tenant_complete"' in line]
    assert lines.returncode == table.returncode == 1
    assert (failed["error_class"], failed["failed_at"]) == ("script_failed", "3")
    assert failed["db_message"] == 'ERROR: syntax error at or near "SELEC"'
    assert failed["message"].startswith(
        "flyway migrate failed: script_failed: FAILED_VERSIONED_MIGRATION in "
    )
    assert f'{fleet.tenants[1]} V3: ERROR: syntax error at or near "SELEC"\n' in table.stdout


def test_cli_answers_in_one_named_line_when_temporal_is_unreachable(tmp_path: Path) -> None:
    port = free_port()
    env = dict(os.environ) | {
        "FLEETWAY_TEMPORAL__ADDRESS": f"127.0.0.1:{port}",
        "FLEETWAY_FLYWAY__LOCATIONS": json.dumps([str(DEMO_MIGRATIONS)]),  # a worker needs its set first
        "FLEETWAY_FLYWAY__LIB_DIR": str(tmp_path),  # and its jars (checked before Temporal, not loaded)
    }
    for argv in (["status", "r-1"], ["cancel", "r-1"], ["pause", "r-1"], ["migrate", "--tenant", "acme"],
                 ["list-tenants"], ["worker"]):  # fmt: skip
        done = fleetway(*argv, env=env, timeout=60)
        assert done.returncode == 6, argv  # unavailable, not a usage error: the same command works later
        assert done.stderr.splitlines()[-1] == (
            f"temporal_unavailable: cannot reach Temporal at 127.0.0.1:{port} (connection refused); "
            "set temporal.address (FLEETWAY_TEMPORAL__ADDRESS or TEMPORAL_ADDRESS)"
        ), argv
        assert "Traceback" not in done.stderr and "RuntimeError" not in done.stderr


async def test_cli_steering_a_rollout_no_worker_serves_is_bounded_and_says_why(
    client: Client, postgres: PostgresServer, temporal_server: TemporalDevServer,
    flyway_install: FlywayInstall, tmp_path: Path,
) -> None:  # fmt: skip
    fleet = make_fleet(postgres, 2)
    env = fleet.cli_env(temporal_server.address, tmp_path, flyway_install)
    queue = fleet.task_queue
    started = await asyncio.to_thread(fleetway, "migrate", "--principal", "ci", "--detach", env=env)
    rollout = started.stdout.strip()
    status = await asyncio.to_thread(fleetway, "status", rollout, env=env, timeout=30)
    pause = await asyncio.to_thread(fleetway, "pause", rollout, env=env, timeout=30)
    resize = await asyncio.to_thread(fleetway, "set-parallelism", rollout, "2", env=env, timeout=30)
    cancel = await asyncio.to_thread(fleetway, "cancel", rollout, env=env, timeout=30)
    async with fleet.worker(client, flyway_install):  # a worker arrives: the recorded cancel takes effect
        for _ in range(300):
            if (
                await client.get_workflow_handle(rollout).describe()
            ).status is not WorkflowExecutionStatus.RUNNING:
                break
            await asyncio.sleep(0.1)
    ended = await asyncio.to_thread(fleetway, "pause", rollout, env=env, timeout=30)
    unknown = await asyncio.to_thread(fleetway, "status", "no-such-rollout", env=env, timeout=30)

    assert started.returncode == 0 and "no worker polls task queue" in started.stderr
    assert status.returncode == 0
    # No worker ever ran the rollout's first task: the server knows only that it runs.
    assert (
        status.stdout == f"{rollout}: running (progress unavailable: no worker polls task queue {queue!r})\n"
    )
    assert pause.returncode == 0 and "the pause is recorded and takes effect when one does" in pause.stderr
    assert resize.returncode == 6
    assert (
        resize.stderr
        == f"worker_unavailable: no worker polls task queue {queue!r}; set-parallelism needs one to answer\n"
    )
    assert cancel.returncode == 0 and "the cancel is recorded and takes effect when one does" in cancel.stderr
    assert (await client.get_workflow_handle(rollout).describe()).status is WorkflowExecutionStatus.CANCELED
    assert ended.returncode == 5  # refused: the rollout is not running
    assert (
        ended.stderr
        == f"rollout_not_running: rollout {rollout!r} has ended (canceled); pause acts on running rollouts only\n"
    )
    assert unknown.returncode == 4  # not found
    assert unknown.stderr == "rollout_not_found: no rollout 'no-such-rollout' in namespace 'default'\n"


def test_cli_ndjson_stdout_stays_json_when_the_server_goes_away(tmp_path: Path) -> None:
    server = TemporalDevServer()
    server.start()
    try:
        env = dict(os.environ) | {"FLEETWAY_TEMPORAL__ADDRESS": server.address, "FLEETWAY_TEMPORAL__TASK_QUEUE": "nobody",
                                  "FLEETWAY_TENANTS__TENANTS": '["acme"]'}  # fmt: skip
        proc = subprocess.Popen(
            [FLEETWAY, "migrate", "-o", "ndjson", "--paused", "--principal", "ci"], env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert proc.stderr is not None
        for line in proc.stderr:  # following now
            if line.startswith("started "):
                break
    finally:
        server.stop()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 6
    assert all(json.loads(line) for line in out.splitlines())  # only JSON on stdout, whatever happens
    assert err.splitlines()[-1].startswith("temporal_unavailable: the Temporal server stopped answering")
    assert "WARN" not in out and "Traceback" not in err


def test_settings_prints_each_effective_value_with_its_source_and_never_a_secret(tmp_path: Path) -> None:
    config = tmp_path / "fleetway.toml"
    config.write_text('[flyway]\nengine = "cli"\n[worker]\nmax_concurrent_activities = 3\n')
    secret = "hunter2-" + uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLEETWAY_", "TEMPORAL_"))} | {
        "FLEETWAY_CONFIG": str(config),
        "FLEETWAY_WORKER__MAX_CONCURRENT_ACTIVITIES": "5",  # the environment beats the file
        "TEMPORAL_ADDRESS": "10.0.0.1:7233",
        "FLEETWAY_SECRETS__VAULT__TOKEN": secret,
    }

    done = fleetway("settings", "-o", "json", env=env)
    text = fleetway("settings", env=env)

    assert done.returncode == 0, done.stderr
    rows = {row["key"]: row for row in json.loads(done.stdout)}
    assert rows["temporal.address"] == {
        "key": "temporal.address", "env": "FLEETWAY_TEMPORAL__ADDRESS",
        "value": "10.0.0.1:7233", "source": "environment (TEMPORAL_ADDRESS)",
    }  # fmt: skip
    assert (rows["flyway.engine"]["value"], rows["flyway.engine"]["source"]) == ("cli", f"file ({config})")
    assert rows["worker.max_concurrent_activities"]["value"] == "5"
    assert rows["worker.max_concurrent_activities"]["source"].startswith("environment")
    assert (rows["temporal.task_queue"]["value"], rows["temporal.task_queue"]["source"]) == (
        "fleetway",
        "default",
    )
    assert rows["secrets.vault.token"]["value"] == "set (hidden)"
    assert rows["tenants.http.token"]["value"] == "unset"
    assert secret not in done.stdout + done.stderr + text.stdout + text.stderr
    assert "temporal.address = 10.0.0.1:7233" in text.stdout
    assert len(rows) == len(text.stdout.splitlines())  # one line per setting, none wrapped


def test_every_command_help_names_the_settings_it_reads() -> None:
    env = dict(os.environ)
    top = fleetway("--help", env=env).stdout
    assert "FLEETWAY_CONFIG" in top and "FLEETWAY_TEMPORAL__ADDRESS" in top
    for command in ("migrate", "validate", "worker", "status", "cancel", "pause", "quiesce", "list-tenants"):
        text = " ".join(fleetway(command, "--help", env=env).stdout.split())  # rich wraps lines
        assert "fleetway settings" in text, command
        assert "temporal." in text or "quiesce." in text, command


async def test_cli_migrate_refuses_a_rollout_id_that_ran_or_runs_and_starts_nothing(
    client: Client, postgres: PostgresServer, temporal_server: TemporalDevServer,
    flyway_install: FlywayInstall, tmp_path: Path,
) -> None:  # fmt: skip
    """A reused id would report every tenant "already run" and the rollout "succeeded": refused."""
    fleet = make_fleet(postgres, 3)
    fleet.locations = copy_migrations(tmp_path / "set", upto=2)
    (fleet.locations / "V3__divide.sql").write_text("SELECT 1 / 0;\n")
    env = fleet.cli_env(temporal_server.address, tmp_path, flyway_install)
    ended_id, running_id = f"reuse-{fleet.task_queue}", f"held-{fleet.task_queue}"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return fleetway("migrate", "--principal", "ci", "--continue-on-error", *args, env=env)

    async with fleet.worker(client, flyway_install):
        first = await asyncio.to_thread(cli, "--rollout-id", ended_id)
        again = await asyncio.to_thread(cli, "--rollout-id", ended_id)
        held = await asyncio.to_thread(cli, "--rollout-id", running_id, "--paused", "--detach")
        while_running = await asyncio.to_thread(cli, "--rollout-id", running_id)
        rerun_running = await asyncio.to_thread(cli, "--rerun-failed", running_id)
        await client.get_workflow_handle(running_id).cancel()

    assert first.returncode == 1, first.stderr  # V3 fails on every tenant
    assert again.returncode == 5 and again.stdout == ""  # refused: the id is used
    assert again.stderr.strip().startswith(
        f"rollout_id_reused: rollout id '{ended_id}' is already used by run"
    )
    assert "(completed)" in again.stderr and f"--rerun-failed {ended_id}" in again.stderr
    runs = [w.run_id async for w in client.list_workflows(f'WorkflowId = "{ended_id}"')]
    assert len(runs) == 1  # nothing was started under the reused id
    for tenant in fleet.tenants:
        assert [v for v, _ in history(postgres, tenant)] == ["1", "2"]
    assert held.returncode == 0, held.stderr
    assert while_running.returncode == 5
    assert "(running)" in while_running.stderr and f"fleetway cancel {running_id}" in while_running.stderr
    assert rerun_running.returncode == 2 and "still running" in rerun_running.stderr
    assert running_id in rerun_running.stderr and "nothing started" in rerun_running.stderr


def test_cli_worker_registers_missing_search_attributes_so_a_new_namespace_runs_rollouts(
    postgres: PostgresServer, flyway_install: FlywayInstall, tmp_path: Path
) -> None:
    """A bare namespace made every rollout's first task fail forever on the search-attribute upsert."""
    bare = TemporalDevServer(search_attributes=False)
    bare.start()
    worker: subprocess.Popen[bytes] | None = None
    try:
        fleet = make_fleet(postgres, 2)
        env = fleet.cli_env(bare.address, tmp_path, flyway_install)
        assert not {"FleetwayAction", "FleetwayOutcome"} & asyncio.run(
            _custom_search_attributes(bare.address)
        )
        worker = subprocess.Popen([FLEETWAY, "worker"], env=env, start_new_session=True)
        done = fleetway("migrate", "--principal", "ci", "-o", "json", env=env, timeout=120)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["counts"] == {"succeeded": 2}
        listed = asyncio.run(_custom_search_attributes(bare.address))
        assert {"FleetwayAction", "FleetwayOutcome"} <= listed
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=30)
        bare.stop()


async def _custom_search_attributes(address: str) -> set[str]:
    client = await Client.connect(address)
    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    return set(listed.custom_attributes)
