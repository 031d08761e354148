"""Both Flyway engines (CLI process and in-process JVM) against the real Flyway and a real PostgreSQL.

Tests taking ``runner``/``engine_factory`` run once per engine; the CLI-only ones (process argv and
environment, the reports-jar trap, killing the process group) use ``_runner``."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from fleetway.activities.database_target import DatabaseTarget
from fleetway.activities.errors import (
    ConfigurationError,
    FlywayReportedFailureError,
    FlywayTimeoutError,
    PasswordTooShortError,
    UnsafeEnvValueError,
    UnsafeIdentifierError,
)
from fleetway.activities.flyway.cli_engine import FlywayRunner
from fleetway.activities.flyway.contract import FlywayEngine, FlywayInstall, FlywaySettings
from fleetway.activities.flyway.output import Action, ErrorClass
from fleetway.activities.flyway.request import FlywayRequest
from fleetway.activities.flyway.startup import run_migrations_at_startup
from fleetway.activities.redaction import REDACTED
from fleetway.worker.dev.stack import PostgresServer
from tests.support import copy_migrations, history, java_pids, schema_exists, wait_until


def _with(target: DatabaseTarget, changes: dict[str, object]) -> DatabaseTarget:
    """A validated copy of ``target`` (model_copy would skip validation and SecretStr wrapping)."""
    return DatabaseTarget.model_validate({**target.model_dump(), **changes})


EngineFactory = Callable[..., FlywayEngine]


def _runner(install: FlywayInstall, locations: Path, **settings: object) -> FlywayRunner:
    return FlywayRunner(install, FlywaySettings(locations=(locations,), **settings))  # type: ignore[arg-type]


async def test_migrate_applies_every_version_to_a_fresh_schema_and_rerun_is_a_noop(
    runner: FlywayEngine, target: DatabaseTarget, postgres: PostgresServer, schema: str
) -> None:
    first = await runner.run(FlywayRequest(action=Action.MIGRATE), target)
    assert first.success
    assert first.applied_versions == ["1", "2", "3", "4", "5"]
    assert (first.starting_version, first.ending_version) == ("", "5")
    assert first.flyway_version == "12.4.0"
    assert history(postgres, schema) == [(v, True) for v in ["1", "2", "3", "4", "5"]]

    second = await runner.run(FlywayRequest(action=Action.MIGRATE), target)
    assert second.success
    assert second.applied_versions == []
    assert (second.starting_version, second.ending_version) == ("5", "5")
    assert len(history(postgres, schema)) == 5


async def test_info_lists_pending_versions_of_a_lagging_schema(
    engine_factory: EngineFactory, runner: FlywayEngine, target: DatabaseTarget, tmp_path: Path
) -> None:
    await engine_factory(copy_migrations(tmp_path / "old", upto=3)).run(
        FlywayRequest(action=Action.MIGRATE), target
    )

    info = await runner.run(FlywayRequest(action=Action.INFO), target)

    assert info.success
    assert info.ending_version == "3"
    assert info.pending_versions == ["4", "5"]
    assert [(e.version, e.state) for e in info.info if e.versioned] == [
        ("1", "Success"), ("2", "Success"), ("3", "Success"), ("4", "Pending"), ("5", "Pending"),
    ]  # fmt: skip
    # Flyway's own rows are entries too (the schema's creation marker), as its info lists them.
    assert [(e.category, e.state) for e in info.info if not e.versioned] == [("", "Success")]


async def test_validate_passes_for_intact_and_lagging_schemas(
    engine_factory: EngineFactory, runner: FlywayEngine, target: DatabaseTarget, tmp_path: Path
) -> None:
    await engine_factory(copy_migrations(tmp_path / "old", upto=2)).run(
        FlywayRequest(action=Action.MIGRATE), target
    )
    outcome = await runner.run(FlywayRequest(action=Action.VALIDATE), target)
    assert outcome.success
    assert outcome.validation_issues == []


async def test_validate_fails_with_checksum_mismatch_although_flyway_exits_zero(
    engine_factory: EngineFactory, runner: FlywayEngine, target: DatabaseTarget, tmp_path: Path
) -> None:
    await runner.run(FlywayRequest(action=Action.MIGRATE), target)
    edited = copy_migrations(tmp_path / "edited")
    (edited / "V2__create_orders.sql").write_text("CREATE TABLE orders (id BIGINT);\n")

    with pytest.raises(FlywayReportedFailureError) as caught:
        await engine_factory(edited).run(FlywayRequest(action=Action.VALIDATE), target)

    outcome = caught.value.outcome
    assert outcome is not None
    assert caught.value.error_class == ErrorClass.CHECKSUM_MISMATCH
    assert not caught.value.is_retryable
    assert [(i.version, i.error_code) for i in outcome.validation_issues] == [("2", "CHECKSUM_MISMATCH")]


async def test_migrate_after_editing_an_applied_script_is_classified_checksum_mismatch(
    engine_factory: EngineFactory, runner: FlywayEngine, target: DatabaseTarget, tmp_path: Path,
    postgres: PostgresServer, schema: str,
) -> None:  # fmt: skip
    await runner.run(FlywayRequest(action=Action.MIGRATE), target)
    edited = copy_migrations(tmp_path / "edited")
    (edited / "V1__create_accounts.sql").write_text("-- rewritten\nCREATE TABLE accounts (id INT);\n")

    with pytest.raises(FlywayReportedFailureError) as caught:
        await engine_factory(edited).run(FlywayRequest(action=Action.MIGRATE), target)

    # The trap in flyway.md: during migrate the mismatch arrives as VALIDATE_ERROR, not CHECKSUM_MISMATCH.
    assert caught.value.outcome is not None
    assert caught.value.outcome.error_code == "VALIDATE_ERROR"
    assert caught.value.error_class == ErrorClass.CHECKSUM_MISMATCH
    assert len(history(postgres, schema)) == 5


async def test_failed_script_reports_partial_progress_and_the_failing_file(
    engine_factory: EngineFactory,
    target: DatabaseTarget,
    tmp_path: Path,
    postgres: PostgresServer,
    schema: str,
) -> None:
    broken = copy_migrations(tmp_path / "broken")
    (broken / "V6__broken.sql").write_text("CREATE TABLE broken (id int;\n")

    with pytest.raises(FlywayReportedFailureError) as caught:
        await engine_factory(broken).run(FlywayRequest(action=Action.MIGRATE), target)

    outcome = caught.value.outcome
    assert outcome is not None
    assert outcome.applied_versions == ["1", "2", "3", "4", "5"]
    assert outcome.error_code == "FAILED_VERSIONED_MIGRATION"
    assert outcome.detail == "FAILED_VERSIONED_MIGRATION in V6__broken.sql line 1 (SQLSTATE 42601)"
    assert outcome.error_class is ErrorClass.SCRIPT_FAILED and not caught.value.is_retryable
    assert outcome.db_message == 'ERROR: syntax error at or near ";"'
    assert str(caught.value) == (
        "flyway migrate failed: script_failed: FAILED_VERSIONED_MIGRATION in V6__broken.sql line 1 "
        '(SQLSTATE 42601): ERROR: syntax error at or near ";"'
    )
    assert [v for v, _ in history(postgres, schema)] == ["1", "2", "3", "4", "5"]


async def test_failed_migrate_is_a_failure_even_when_flyway_exits_zero_without_reports_jar(
    flyway_install: FlywayInstall, target: DatabaseTarget, tmp_path: Path
) -> None:
    # The trap in flyway.md: without flyway-reports a failed migrate prints success:false and exits 0.
    lib = tmp_path / "lib" / "flyway"
    lib.mkdir(parents=True)
    for jar in flyway_install.lib_dir.glob("*.jar"):
        if not jar.name.startswith("flyway-reports"):
            (lib / jar.name).symlink_to(jar)
    no_reports = FlywayInstall(lib_dir=lib, java=flyway_install.java, version=flyway_install.version)
    broken = copy_migrations(tmp_path / "broken", upto=1)
    (broken / "V2__broken.sql").write_text("SELEC 1;\n")

    with pytest.raises(FlywayReportedFailureError) as caught:
        await _runner(no_reports, broken).run(FlywayRequest(action=Action.MIGRATE), target)

    assert caught.value.outcome is not None
    assert caught.value.outcome.applied_versions == ["1"]
    assert caught.value.outcome.error_code == "FAILED_VERSIONED_MIGRATION"


async def test_both_engines_refuse_a_missing_location_and_reject_the_same_location_strings(
    runner: FlywayEngine, target: DatabaseTarget, postgres: PostgresServer, tmp_path: Path
) -> None:
    """Flyway 12.4.0 reports success for a missing folder unless failOnMissingLocations is set."""
    with pytest.raises(FlywayReportedFailureError) as missing:
        await runner.run(FlywayRequest(action=Action.MIGRATE), target, locations=(tmp_path / "gone",))
    rejected = []
    for bad in (Path("relative/scripts"), tmp_path / "a,b", ()):
        with pytest.raises(ConfigurationError) as err:
            await runner.run(
                FlywayRequest(action=Action.MIGRATE),
                target,
                locations=bad if isinstance(bad, tuple) else (bad,),
            )
        rejected.append(str(err.value))

    assert missing.value.outcome is not None and missing.value.outcome.error_code == "ERROR"
    assert rejected == [
        "flyway location 'relative/scripts' must be absolute and comma-free",
        f"flyway location '{tmp_path / 'a,b'}' must be absolute and comma-free",
        "no flyway location given",
    ]
    assert not schema_exists(postgres, target.schema_name)


async def test_unreachable_database_is_classified_target_unreachable_and_retryable(
    runner: FlywayEngine, target: DatabaseTarget
) -> None:
    closed = _with(target, {"port": 1})
    with pytest.raises(FlywayReportedFailureError) as caught:
        await runner.run(FlywayRequest(action=Action.MIGRATE), closed)
    assert caught.value.error_class == ErrorClass.TARGET_UNREACHABLE
    assert caught.value.is_retryable


async def test_password_echoed_by_flyway_is_redacted_from_errors_results_and_logs(
    runner: FlywayEngine, target: DatabaseTarget, caplog: pytest.LogCaptureFixture
) -> None:
    # PostgreSQL echoes the user name on a failed login; a user name equal to the password makes
    # Flyway print the password in its JSON (message, cause chain and stack traces).
    secret = "Sup3r-Secret+pw/%x"
    leaky = _with(target, {"user": secret, "password": secret})
    caplog.set_level(logging.DEBUG)

    with pytest.raises(FlywayReportedFailureError) as caught:
        await runner.run(FlywayRequest(action=Action.MIGRATE), leaky)

    assert caught.value.outcome is not None
    assert caught.value.error_class == ErrorClass.TARGET_UNREACHABLE
    visible = [str(caught.value), caught.value.outcome.model_dump_json(), caplog.text]
    visible += [str(getattr(r, "output_tail", "")) for r in caplog.records]
    assert all(secret not in text for text in visible)
    assert any(REDACTED in str(getattr(r, "output_tail", "")) for r in caplog.records)


async def test_password_travels_in_the_environment_never_in_the_process_argv(
    flyway_install: FlywayInstall, target: DatabaseTarget, tmp_path: Path, schema: str
) -> None:
    slow = copy_migrations(tmp_path / "slow", upto=1)
    (slow / "V2__slow.sql").write_text("SELECT pg_sleep(3);\n")
    task = asyncio.create_task(
        _runner(flyway_install, slow).run(FlywayRequest(action=Action.MIGRATE), target)
    )
    pids: list[int] = []
    for _ in range(200):
        pids = java_pids(schema)
        if pids:
            break
        await asyncio.sleep(0.05)
    assert pids, "the Flyway JVM never appeared"
    cmdline = Path(f"/proc/{pids[0]}/cmdline").read_bytes()
    environ = Path(f"/proc/{pids[0]}/environ").read_bytes()
    await task

    password = target.password.get_secret_value().encode()
    assert password not in cmdline
    assert b"FLYWAY_PASSWORD=" + password in environ.split(b"\0")


@pytest.mark.parametrize("bad", ["pass\nword1", "pass\rword1", "pass\x00word1"])
async def test_control_characters_in_credentials_are_rejected_before_flyway_runs(
    runner: FlywayEngine, target: DatabaseTarget, postgres: PostgresServer, schema: str, bad: str
) -> None:
    with pytest.raises(UnsafeEnvValueError) as caught:
        await runner.run(FlywayRequest(action=Action.MIGRATE), _with(target, {"password": bad}))
    assert "password" in str(caught.value)
    assert bad not in str(caught.value)
    assert not schema_exists(postgres, schema)
    assert not java_pids(schema)


@pytest.mark.parametrize("bad_schema", ["a,b", 'x"; DROP SCHEMA public; --', "1leading", "s" * 64, "tenánt"])
async def test_unsafe_schema_name_is_rejected_with_nothing_run(
    runner: FlywayEngine, target: DatabaseTarget, postgres: PostgresServer, bad_schema: str
) -> None:
    with pytest.raises(UnsafeIdentifierError):
        await runner.run(FlywayRequest(action=Action.MIGRATE), _with(target, {"schema_name": bad_schema}))
    assert not schema_exists(postgres, bad_schema)


async def test_short_password_is_refused_for_migrate(runner: FlywayEngine, target: DatabaseTarget) -> None:
    with pytest.raises(PasswordTooShortError) as caught:
        await runner.run(FlywayRequest(action=Action.MIGRATE), _with(target, {"password": "pw12345"}))
    assert "pw12345" not in str(caught.value)


async def test_cancellation_mid_run_kills_the_jvm_within_five_seconds(
    flyway_install: FlywayInstall,
    target: DatabaseTarget,
    tmp_path: Path,
    postgres: PostgresServer,
    schema: str,
) -> None:
    slow = copy_migrations(tmp_path / "slow", upto=1)
    (slow / "V2__slow.sql").write_text("SELECT pg_sleep(60);\n")
    task = asyncio.create_task(
        _runner(flyway_install, slow).run(FlywayRequest(action=Action.MIGRATE), target)
    )
    for _ in range(400):
        if java_pids(schema) and schema_exists(postgres, schema):
            break
        await asyncio.sleep(0.05)
    assert java_pids(schema)

    cancelled_at = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    while java_pids(schema) and time.monotonic() - cancelled_at < 5:
        await asyncio.sleep(0.05)
    assert java_pids(schema) == []
    assert time.monotonic() - cancelled_at < 5


async def test_timeout_kills_the_process_group_and_reports_unknown_schema_state(
    flyway_install: FlywayInstall, target: DatabaseTarget, tmp_path: Path, schema: str
) -> None:

    slow = copy_migrations(tmp_path / "slow", upto=1)
    (slow / "V2__slow.sql").write_text("SELECT pg_sleep(60);\n")
    runner = _runner(flyway_install, slow, timeout=timedelta(seconds=4))

    with pytest.raises(FlywayTimeoutError) as caught:
        await runner.run(FlywayRequest(action=Action.MIGRATE), target)

    assert "schema state is unknown" in str(caught.value)
    assert not caught.value.is_retryable
    assert java_pids(schema) == []


async def test_startup_entry_point_migrates_in_development_and_validates_elsewhere(
    runner: FlywayEngine, target: DatabaseTarget, postgres: PostgresServer, schema: str
) -> None:
    with pytest.raises(FlywayReportedFailureError) as caught:
        await run_migrations_at_startup(runner, target, environment="production")
    assert caught.value.error_class == ErrorClass.TARGET_NOT_READY
    assert not schema_exists(postgres, schema)

    outcome = await run_migrations_at_startup(runner, target, environment=" Development ")
    assert outcome.action is Action.MIGRATE
    assert outcome.ending_version == "5"


async def test_stray_flyway_conf_in_home_or_cwd_is_never_read(
    runner: FlywayEngine, target: DatabaseTarget, tmp_path: Path, postgres: PostgresServer, schema: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    # A config that would send migrations to another schema, where a careless runner would pick it up.
    stray = "flyway.schemas=hijacked\nflyway.defaultSchema=hijacked\n"
    (tmp_path / "flyway.conf").write_text(stray)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("FLYWAY_SCHEMAS", "hijacked")
    monkeypatch.chdir(tmp_path)

    outcome = await runner.run(FlywayRequest(action=Action.MIGRATE), target)

    assert outcome.schema_name == schema
    assert not schema_exists(postgres, "hijacked")
    with psycopg.connect(postgres.dsn) as conn:
        assert conn.execute(f'SELECT count(*) FROM "{schema}".accounts').fetchone() == (50,)
    assert os.environ["HOME"] == str(tmp_path)


async def test_run_flyway_activity_rereads_the_secret_once_after_an_authentication_failure(
    runner: FlywayEngine, target: DatabaseTarget, postgres: PostgresServer, schema: str
) -> None:
    from temporalio.testing import ActivityEnvironment

    from fleetway.activities.flyway.activity import FlywayActivities
    from fleetway.activities.flyway.request import FlywayRequest
    from fleetway.activities.secrets.providers import StaticSecretsProvider

    rotated = "rotated-Passw0rd"
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {schema} LOGIN PASSWORD '{rotated}'")
        conn.execute(f"GRANT CREATE ON DATABASE postgres TO {schema}")

    class RotatedSinceCached(StaticSecretsProvider):
        """Serves the password it cached before the rotation until told to forget it (our seam,
        standing in for issue 4's caching backends; the database and Flyway are real)."""

        invalidations = 0

        def invalidate(self, tenant_id: str) -> None:
            self.invalidations += 1
            self._targets[tenant_id] = _with(self._targets[tenant_id], {"password": rotated})

    stale = _with(target, {"user": schema, "password": "stale-Passw0rd"})
    provider = RotatedSinceCached({schema: stale})
    activities = FlywayActivities(runner, {"default": provider})

    outcome = await ActivityEnvironment().run(
        activities.run_flyway, FlywayRequest(action=Action.MIGRATE, tenant_id=schema)
    )

    assert outcome.ending_version == "5"
    assert provider.invalidations == 1


async def test_a_server_ending_the_session_mid_migration_is_retryable_not_the_tenants_failure(
    engine_factory: EngineFactory, target: DatabaseTarget, postgres: PostgresServer, tmp_path: Path
) -> None:
    slow = copy_migrations(tmp_path / "slow")
    (slow / "V6__slow.sql").write_text("SELECT pg_sleep(30.25);\n")
    run = asyncio.ensure_future(engine_factory(slow).run(FlywayRequest(action=Action.MIGRATE), target))

    def terminate() -> int:  # what a server shutdown or failover does to a session: SQLSTATE 57P01
        with psycopg.connect(postgres.dsn, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE query LIKE '%pg_sleep(30.25)%' AND application_name LIKE 'fleetway-%'"
            ).fetchone()
        return int(row[0]) if row else 0

    deadline = time.monotonic() + 60
    while not await asyncio.to_thread(terminate):
        assert time.monotonic() < deadline and not run.done()
        await asyncio.sleep(0.1)
    with pytest.raises(FlywayReportedFailureError) as caught:
        await asyncio.wait_for(run, 30)

    assert caught.value.error_class == ErrorClass.TARGET_UNREACHABLE
    assert caught.value.is_retryable


async def test_sqlstates_a_real_server_produces_on_demand_are_classified(
    engine_factory: EngineFactory, target: DatabaseTarget, tmp_path: Path
) -> None:
    runner = engine_factory()
    # 3D000: the tenant's database does not exist (yet) - retryable, the target is not ready.
    with pytest.raises(FlywayReportedFailureError) as missing_db:
        await runner.run(FlywayRequest(action=Action.MIGRATE), _with(target, {"database": "no_such_db_here"}))
    assert (missing_db.value.outcome.sql_state if missing_db.value.outcome else "") == "3D000"
    assert missing_db.value.error_class == ErrorClass.TARGET_NOT_READY
    assert missing_db.value.is_retryable
    # 22012 in the tenant's own script: its failure, never retried, the failing version named.
    broken = copy_migrations(tmp_path / "div", upto=2)
    (broken / "V3__divide.sql").write_text("SELECT 1 / 0;\n")
    with pytest.raises(FlywayReportedFailureError) as own:
        await engine_factory(broken).run(FlywayRequest(action=Action.MIGRATE), target)
    assert own.value.outcome is not None
    assert (own.value.outcome.sql_state, own.value.outcome.failed_version) == ("22012", "3")
    assert own.value.error_class == ErrorClass.SCRIPT_FAILED
    assert not own.value.is_retryable


_RUN_UNTIL_KILLED = """
import asyncio, json, os, sys
from pathlib import Path
from fleetway.activities.database_target import DatabaseTarget
from fleetway.activities.flyway.contract import FlywayInstall, FlywaySettings
from fleetway.activities.flyway.cli_engine import FlywayRunner
from fleetway.activities.flyway.jvm_engine import JvmFlywayEngine
from fleetway.activities.flyway.output import Action
from fleetway.activities.flyway.request import FlywayRequest

spec = json.loads(os.environ["RUN_SPEC"])
install = FlywayInstall(lib_dir=Path(spec["lib"]), java=Path(spec["java"]), version="test")
settings = FlywaySettings(locations=(Path(spec["locations"]),))
engine = FlywayRunner(install, settings) if spec["engine"] == "cli" else JvmFlywayEngine(install, settings)
asyncio.run(engine.run(FlywayRequest(action=Action.MIGRATE), DatabaseTarget.model_validate(spec["target"])))
"""


@pytest.mark.parametrize("engine", ["cli", "jvm"])
async def test_a_process_killed_with_sigkill_takes_its_flyway_and_its_statement_with_it(
    flyway_install: FlywayInstall,
    target: DatabaseTarget,
    postgres: PostgresServer,
    tmp_path: Path,
    engine: str,
) -> None:
    import json
    import signal
    import subprocess
    import sys

    slow = copy_migrations(tmp_path / "slow", upto=1)
    (slow / "V2__slow.sql").write_text("SELECT pg_sleep(30.75);\n")
    spec = {
        "engine": engine, "lib": str(flyway_install.lib_dir), "java": str(flyway_install.java),
        "locations": str(slow), "target": target.model_dump(mode="json") | {"password": postgres.superuser_password},
    }  # fmt: skip
    # The spec (with the password) travels in the environment, never in argv.
    proc = subprocess.Popen(
        # TMPDIR: the killed process cannot remove its run's scratch folder; pytest's tmp_path can.
        [sys.executable, "-c", _RUN_UNTIL_KILLED],
        env={**os.environ, "RUN_SPEC": json.dumps(spec), "TMPDIR": str(tmp_path)},
        start_new_session=True,
    )  # fmt: skip

    def sleeping() -> int:
        with psycopg.connect(postgres.dsn, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(30.75)%' "
                "AND pid <> pg_backend_pid()"
            ).fetchone()
        return int(row[0]) if row else 0

    try:
        assert await asyncio.to_thread(wait_until, lambda: sleeping() == 1, timeout=60)
        jvms = java_pids(str(slow)) if engine == "cli" else []
        assert (engine == "cli") == bool(
            jvms
        )  # the CLI engine's JVM is a child; the jvm engine's is the process
        os.kill(proc.pid, signal.SIGKILL)  # the process only: its JVM is in its own session
        killed_at = time.monotonic()
        proc.wait()
        assert await asyncio.to_thread(wait_until, lambda: not java_pids(str(slow)), timeout=1.0)
        assert await asyncio.to_thread(wait_until, lambda: sleeping() == 0, timeout=5.0)
        assert time.monotonic() - killed_at < 5.5
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert [v for v, _ in history(postgres, target.schema_name)] == ["1"]  # V2 rolled back


async def test_the_default_auto_engine_runs_postgresql_in_process_and_oracle_through_the_cli(
    flyway_install: FlywayInstall, target: DatabaseTarget, postgres: PostgresServer, schema: str
) -> None:
    from fleetway.activities.database_target import Vendor
    from fleetway.activities.errors import FlywayError
    from fleetway.activities.flyway.jvm_engine import JvmFlywayEngine
    from fleetway.activities.flyway.routing import VendorRoutedEngine
    from tests.support import DEMO_MIGRATIONS

    settings = FlywaySettings(locations=(DEMO_MIGRATIONS,))
    auto = VendorRoutedEngine(
        JvmFlywayEngine(flyway_install, settings), FlywayRunner(flyway_install, settings)
    )
    migrated = await auto.run(FlywayRequest(action=Action.MIGRATE), target)
    assert migrated.applied_versions == ["1", "2", "3", "4", "5"]
    assert [v for v, _ in history(postgres, schema)] == ["1", "2", "3", "4", "5"]
    oracle = DatabaseTarget(
        vendor=Vendor.ORACLE, host="127.0.0.1", port=1, database="FREEPDB1", user="app", password="x" * 12
    )
    # The jvm engine refuses Oracle with a ConfigurationError before running anything; auto hands
    # it to the CLI engine, whose Flyway (Oracle module and thin driver shipped) then fails to
    # reach the absent server: a retryable, classified failure, not a missing driver.
    with pytest.raises(FlywayError) as unreachable:
        await auto.run(FlywayRequest(action=Action.INFO), oracle)
    assert unreachable.value.error_class is ErrorClass.TARGET_UNREACHABLE
    assert unreachable.value.is_retryable


def test_the_pinned_jar_set_carries_both_vendors(flyway_install: FlywayInstall) -> None:
    jars = {p.name for p in flyway_install.lib_dir.glob("*.jar")}
    assert {"flyway-database-postgresql-12.4.0.jar", "flyway-database-oracle-12.4.0.jar"} <= jars
    assert any(j.startswith("ojdbc11-") for j in jars) and any(j.startswith("postgresql-") for j in jars)


def test_an_oracle_run_names_no_schema_and_carries_no_credential_in_argv(
    flyway_install: FlywayInstall, tmp_path: Path
) -> None:
    from fleetway.activities.database_target import Vendor

    oracle = DatabaseTarget(
        vendor=Vendor.ORACLE,
        host="ora.example",
        port=1521,
        database="PDB1",
        user="app",
        password="s3cret-pass",
    )
    argv = _runner(flyway_install, Path("/srv/set")).argv(
        FlywayRequest(action=Action.MIGRATE, tenant_id="acme"), oracle, config_dir=tmp_path
    )

    assert not [a for a in argv if a.startswith(("-schemas", "-defaultSchema", "-postgresql"))]
    assert f"-configFiles={tmp_path / 'placeholders.toml'}" in argv
    assert (tmp_path / "placeholders.toml").read_text() == '[flyway.placeholders]\n"tenant_id" = "acme"\n'
    assert not [a for a in argv if "s3cret" in a or "ora.example" in a]  # the URL travels in the env


async def test_a_script_and_its_history_row_commit_in_one_transaction(
    engine_factory: EngineFactory, target: DatabaseTarget, postgres: PostgresServer, schema: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    """A worker killed between two commits must not leave a script applied without its row.

    Under Flyway's default PostgreSQL transactional lock a script runs on one connection and its
    history row is written on another (flyway/flyway#3492), so they commit separately: a kill in
    between left a column added and no V5 row, and the retry failed "already exists" (seen in the
    kill loop). Both rows must carry the same transaction id.
    """
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "V1__marks.sql").write_text("CREATE TABLE marks (version TEXT);\n")
    (scripts / "V2__mark.sql").write_text("INSERT INTO marks VALUES ('2');\n")
    (scripts / "V3__mark.sql").write_text("INSERT INTO marks VALUES ('3');\n")

    outcome = await engine_factory(scripts).run(FlywayRequest(action=Action.MIGRATE), target)

    assert outcome.applied_versions == ["1", "2", "3"]
    with psycopg.connect(postgres.dsn) as conn:
        rows = conn.execute(
            f'SELECT m.version, m.xmin = h.xmin FROM "{schema}".marks m '
            f'JOIN "{schema}".flyway_schema_history h ON h.version = m.version ORDER BY m.version'
        ).fetchall()
    assert rows == [("2", True), ("3", True)]


async def test_create_index_concurrently_does_not_wait_on_flyways_own_lock(
    engine_factory: EngineFactory, target: DatabaseTarget, postgres: PostgresServer, schema: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    """A non-transactional script (CREATE INDEX CONCURRENTLY) completes on both engines.

    With the transactional lock the lock's open transaction is one CREATE INDEX CONCURRENTLY
    waits for, forever (flyway/flyway#3508); a session lock is not.
    """
    scripts = copy_migrations(tmp_path / "scripts")
    (scripts / "V6__index_status.sql").write_text(
        "CREATE INDEX CONCURRENTLY accounts_status_idx ON accounts (status);\n"
    )

    outcome = await engine_factory(scripts, timeout=timedelta(seconds=60)).run(
        FlywayRequest(action=Action.MIGRATE), target
    )

    assert outcome.applied_versions == ["1", "2", "3", "4", "5", "6"]
    assert history(postgres, schema)[-1] == ("6", True)


async def test_two_runs_on_one_schema_at_once_apply_each_script_once(
    engine_factory: EngineFactory, target: DatabaseTarget, postgres: PostgresServer, schema: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    """Flyway's advisory lock serialises two runners of one schema (a retry racing a lost attempt)."""
    scripts = copy_migrations(tmp_path / "scripts")
    (scripts / "V6__settle.sql").write_text("SELECT pg_sleep(1);\n")
    engine = engine_factory(scripts)

    first, second = await asyncio.gather(
        engine.run(FlywayRequest(action=Action.MIGRATE), target),
        engine.run(FlywayRequest(action=Action.MIGRATE), target),
    )

    assert sorted(first.applied_versions + second.applied_versions) == ["1", "2", "3", "4", "5", "6"]
    assert history(postgres, schema) == [(v, True) for v in ["1", "2", "3", "4", "5", "6"]]


async def test_a_migration_queued_behind_an_application_lock_gives_up_instead_of_blocking_the_app(
    engine_factory: Callable[..., FlywayEngine],
    target: DatabaseTarget,
    postgres: PostgresServer,
    schema: str,
    tmp_path: Path,
) -> None:
    """An ALTER TABLE waiting for a lock queues every later query on the table behind itself; with
    lock_timeout it fails (55P03, ``lock_timeout``, retryable) within a second, and the
    application's queries go on."""
    await engine_factory(copy_migrations(tmp_path / "v4", upto=4)).run(
        FlywayRequest(action=Action.MIGRATE), target
    )
    altering = engine_factory(copy_migrations(tmp_path / "v5"), lock_timeout=timedelta(seconds=2))
    with psycopg.connect(postgres.dsn) as app, psycopg.connect(postgres.dsn, autocommit=True) as reader:
        app.execute(f'SELECT count(*) FROM "{schema}".accounts')  # an open transaction's ACCESS SHARE lock
        migration = asyncio.create_task(altering.run(FlywayRequest(action=Action.MIGRATE), target))
        reader.execute("SET statement_timeout = '8s'")

        def alter_queued() -> bool:
            row = reader.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query ILIKE 'ALTER TABLE accounts%'"
            ).fetchone()
            return bool(row and row[0])

        assert await asyncio.to_thread(wait_until, alter_queued, timeout=60, interval=0.02)
        started = time.monotonic()
        await asyncio.to_thread(reader.execute, f'SELECT count(*) FROM "{schema}".accounts')
        waited = time.monotonic() - started
        with pytest.raises(FlywayReportedFailureError) as failure:
            await migration
        app.rollback()
    assert 0.2 < waited < 4  # queued behind the ALTER, but only until its lock_timeout
    assert failure.value.outcome is not None
    assert failure.value.outcome.error_class is ErrorClass.LOCK_TIMEOUT and failure.value.is_retryable
    assert [v for v, _ in history(postgres, schema)] == ["1", "2", "3", "4"]  # V5 rolled back, retried later
