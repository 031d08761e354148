"""The Flyway toolbox on both engines, real Flyway and PostgreSQL: target, hotfix, placeholders,
baseline, repair, repeatables. ``flyway_schema_history`` is read after each run: it is the judge."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from fleetway.activities.database_target import DatabaseTarget
from fleetway.activities.errors import FlywayReportedFailureError
from fleetway.activities.flyway.contract import FlywayEngine
from fleetway.activities.flyway.options import FlywayOptions
from fleetway.activities.flyway.output import Action, ErrorClass, FlywayOutcome
from fleetway.activities.flyway.request import FlywayRequest
from fleetway.activities.flyway.schema_history import read_history
from fleetway.worker.dev.stack import PostgresServer
from tests.support import history

EngineFactory = Callable[..., FlywayEngine]


def _scripts(folder: Path, scripts: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, sql in scripts.items():
        (folder / name).write_text(sql)
    return folder


def _tables(n: int) -> dict[str, str]:
    return {f"V{i}__t{i}.sql": f"CREATE TABLE t{i} (id int);" for i in range(1, n + 1)}


def _rows(postgres: PostgresServer, schema: str) -> list[tuple[str | None, str, str, bool]]:
    """(version, description, type, success) of every history row, repeatables included."""
    with psycopg.connect(postgres.dsn) as conn:
        return [
            (v, d, t, bool(s))
            for v, d, t, s in conn.execute(
                f'SELECT version, description, type, success FROM "{schema}".flyway_schema_history '
                "ORDER BY installed_rank"
            ).fetchall()
        ]


async def test_a_target_holds_the_schema_and_next_steps_one_version(
    engine_factory: EngineFactory,
    target: DatabaseTarget,
    postgres: PostgresServer,
    schema: str,
    tmp_path: Path,
) -> None:
    engine = engine_factory(_scripts(tmp_path / "set", _tables(4)))

    held = await engine.run(FlywayRequest(action=Action.MIGRATE, flyway=FlywayOptions(target="2")), target)
    assert (held.applied_versions, held.ending_version) == (["1", "2"], "2")
    stepped = await engine.run(
        FlywayRequest(action=Action.MIGRATE, flyway=FlywayOptions(target="next")), target
    )
    assert stepped.applied_versions == ["3"]
    still = await engine.run(
        FlywayRequest(action=Action.MIGRATE, flyway=FlywayOptions(target="current")), target
    )
    assert still.applied_versions == []

    assert history(postgres, schema) == [("1", True), ("2", True), ("3", True)]


async def test_placeholders_reach_the_scripts_fleet_wide_and_per_tenant(
    engine_factory: EngineFactory,
    target: DatabaseTarget,
    postgres: PostgresServer,
    schema: str,
    tmp_path: Path,
) -> None:
    sql = (
        "CREATE TABLE owner (tenant text DEFAULT '${tenant_id}', region text DEFAULT '${region}', "
        "schema_name text DEFAULT '${tenant_schema}', tier text DEFAULT '${label.tier}'); "
        "INSERT INTO owner DEFAULT VALUES;"
    )
    engine = engine_factory(_scripts(tmp_path / "set", {"V1__owner.sql": sql}))

    await engine.run(
        FlywayRequest(
            action=Action.MIGRATE,
            flyway=FlywayOptions(placeholders={"region": "eu-west-1"}),
            tenant_id="acme",
        ),
        target,
        labels={"label.tier": "gold"},
    )

    with psycopg.connect(postgres.dsn) as conn:
        row = conn.execute(f'SELECT tenant, region, schema_name, tier FROM "{schema}".owner').fetchone()
    assert row == ("acme", "eu-west-1", schema, "gold")


async def test_an_unset_placeholder_is_flyways_failure_at_the_tenant(
    engine_factory: EngineFactory, target: DatabaseTarget, tmp_path: Path
) -> None:
    """What the rollout's pre-check (``check_placeholders``) spares the fleet: verified on the binary."""
    engine = engine_factory(_scripts(tmp_path / "set", {"V1__x.sql": "SELECT '${region}';"}))

    with pytest.raises(FlywayReportedFailureError):
        await engine.run(FlywayRequest(action=Action.MIGRATE, tenant_id="acme"), target)


async def test_placeholder_names_match_without_case_as_in_flyway(
    engine_factory: EngineFactory, target: DatabaseTarget, tmp_path: Path
) -> None:
    """``${REGION}`` is ``region`` and ``${Tenant_Id}`` is ``tenant_id`` to Flyway: the pre-check agrees."""
    from fleetway.activities.errors import PlaceholderMissingError
    from fleetway.activities.flyway.options import check_placeholders

    folder = _scripts(
        tmp_path / "set", {"V1__x.sql": "CREATE TABLE x AS SELECT '${REGION}' AS r, '${Tenant_Id}' AS t;"}
    )
    check_placeholders(folder, {"region": ""})  # nothing unset
    done = await engine_factory(folder).run(
        FlywayRequest(
            action=Action.MIGRATE, flyway=FlywayOptions(placeholders={"region": "eu"}), tenant_id="acme"
        ),
        target,
    )
    assert done.applied_versions == ["1"]
    (folder / "V2__y.sql").write_text("SELECT '${Other}';")
    with pytest.raises(PlaceholderMissingError, match=r"\$\{other\} in V2__y.sql"):
        check_placeholders(folder, {"region": ""})


async def test_a_hotfix_applies_only_the_named_out_of_order_version(
    engine_factory: EngineFactory,
    target: DatabaseTarget,
    postgres: PostgresServer,
    schema: str,
    tmp_path: Path,
) -> None:
    scripts = {k: v for k, v in _tables(3).items() if not k.startswith("V2__")}
    await engine_factory(_scripts(tmp_path / "old", scripts)).run(
        FlywayRequest(action=Action.MIGRATE), target
    )
    # The hotfix V2 arrives below the tenant's V3, with V4 already in the set too.
    full = _scripts(tmp_path / "new", {**_tables(4), "V2__t2.sql": "CREATE TABLE t2 (id int);"})
    engine = engine_factory(full)

    fixed = await engine.run(
        FlywayRequest(action=Action.MIGRATE, flyway=FlywayOptions(out_of_order="2")), target
    )

    assert fixed.applied_versions == ["2"]
    assert history(postgres, schema) == [("1", True), ("3", True), ("2", True)]


async def test_baseline_adopts_a_brownfield_schema_at_its_version(
    engine_factory: EngineFactory,
    target: DatabaseTarget,
    postgres: PostgresServer,
    schema: str,
    tmp_path: Path,
) -> None:
    with psycopg.connect(postgres.dsn) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"; CREATE TABLE "{schema}".t1 (id int)')
    engine = engine_factory(_scripts(tmp_path / "set", _tables(3)))
    with pytest.raises(FlywayReportedFailureError) as refused:
        await engine.run(FlywayRequest(action=Action.MIGRATE), target)
    assert refused.value.error_class is ErrorClass.SCHEMA_HISTORY_CORRUPT

    marker = "fleetway:adopt-test:0"
    based = await engine.run(
        FlywayRequest(
            action=Action.BASELINE, installed_by=marker, flyway=FlywayOptions(baseline_version="1")
        ),
        target,
    )
    assert (based.success, based.ending_version) == (True, "1")
    migrated = await engine.run(FlywayRequest(action=Action.MIGRATE), target)

    assert migrated.applied_versions == ["2", "3"]
    rows = _rows(postgres, schema)
    assert rows[0] == ("1", "fleetway baseline", "BASELINE", True)
    with psycopg.connect(postgres.dsn) as conn:
        by = conn.execute(
            f"SELECT installed_by FROM \"{schema}\".flyway_schema_history WHERE type = 'BASELINE'"
        ).fetchone()
    assert by == (marker,)


async def test_repair_removes_the_failed_row_a_non_transactional_script_left(
    engine_factory: EngineFactory,
    target: DatabaseTarget,
    postgres: PostgresServer,
    schema: str,
    tmp_path: Path,
) -> None:
    broken = {
        **_tables(1),
        # CREATE INDEX CONCURRENTLY cannot run in a transaction: its failure leaves a failed row.
        "V2__idx.sql": "CREATE INDEX CONCURRENTLY idx_missing ON no_such_table (id);",
    }
    engine = engine_factory(_scripts(tmp_path / "set", broken))
    with pytest.raises(FlywayReportedFailureError):
        await engine.run(FlywayRequest(action=Action.MIGRATE), target)
    assert history(postgres, schema) == [("1", True), ("2", False)]

    repaired = await engine.run(FlywayRequest(action=Action.REPAIR), target)
    again = await engine.run(FlywayRequest(action=Action.REPAIR), target)

    assert repaired.repaired == ["removed failed 2"]
    assert again.repaired == []
    assert history(postgres, schema) == [("1", True)]


async def test_a_repeatable_is_reported_when_applied_and_outdated_when_edited(
    engine_factory: EngineFactory,
    target: DatabaseTarget,
    postgres: PostgresServer,
    schema: str,
    tmp_path: Path,
) -> None:
    folder = _scripts(
        tmp_path / "set", {**_tables(1), "R__views.sql": "CREATE OR REPLACE VIEW v1 AS SELECT id FROM t1;"}
    )
    engine = engine_factory(folder)
    first = await engine.run(FlywayRequest(action=Action.MIGRATE), target)
    assert (first.applied_versions, first.applied_repeatables) == (["1"], ["views"])

    (folder / "R__views.sql").write_text("CREATE OR REPLACE VIEW v1 AS SELECT id, 1 AS one FROM t1;")
    info = await engine.run(FlywayRequest(action=Action.INFO), target)
    # Flyway lists the applied row as outdated and the edited script as pending.
    assert [(e.category, e.description, e.state) for e in info.info if e.category == "Repeatable"] == [
        ("Repeatable", "views", "Outdated"),
        ("Repeatable", "views", "Pending"),
    ]
    assert info.pending_versions == []
    again = await engine.run(FlywayRequest(action=Action.MIGRATE), target)

    assert (again.applied_versions, again.applied_repeatables) == ([], ["views"])
    assert [r for r in _rows(postgres, schema) if r[2] == "SQL" and r[0] is None] == [
        (None, "views", "SQL", True),
        (None, "views", "SQL", True),
    ]


async def test_the_history_reader_reports_the_repeatables_a_rollout_applied(
    engine_factory: EngineFactory, target: DatabaseTarget, tmp_path: Path
) -> None:
    """A retried or failed tenant is reported from the table: repeatables included, not only versions."""
    folder = _scripts(
        tmp_path / "set", {**_tables(1), "R__views.sql": "CREATE OR REPLACE VIEW v1 AS SELECT id FROM t1;"}
    )
    marker = "fleetway:history-test:0"
    await engine_factory(folder).run(FlywayRequest(action=Action.MIGRATE, installed_by=marker), target)

    summary = await read_history(target, marker)

    assert (summary.applied, summary.repeatables, summary.repeatables_failed) == (["1"], ["views"], [])
    assert (await read_history(target, "fleetway:another:0")).repeatables == []


async def test_sql_callbacks_in_the_set_run_after_a_migrate_and_after_its_failure(
    engine_factory: EngineFactory,
    target: DatabaseTarget,
    postgres: PostgresServer,
    schema: str,
    tmp_path: Path,
) -> None:
    """``afterMigrate.sql`` / ``afterMigrateError.sql`` beside the scripts are Flyway's free SQL callbacks."""
    log = "CREATE TABLE IF NOT EXISTS callback_log (event text); INSERT INTO callback_log VALUES ('{}');"
    folder = _scripts(
        tmp_path / "set",
        {**_tables(1), "afterMigrate.sql": log.format("after"), "afterMigrateError.sql": log.format("error")},
    )
    engine = engine_factory(folder)
    await engine.run(FlywayRequest(action=Action.MIGRATE), target)
    (folder / "V2__bad.sql").write_text("SELECT * FROM no_such_table;")
    with pytest.raises(FlywayReportedFailureError):
        await engine.run(FlywayRequest(action=Action.MIGRATE), target)

    with psycopg.connect(postgres.dsn) as conn:
        events = [e for (e,) in conn.execute(f'SELECT event FROM "{schema}".callback_log').fetchall()]
    assert events == ["after", "error"]
    assert history(postgres, schema) == [("1", True)]  # callbacks are not history rows


async def test_every_flyway_call_of_a_tenants_run_gets_its_placeholders(
    engine_factory: EngineFactory,
    target: DatabaseTarget,
    postgres: PostgresServer,
    schema: str,
    tmp_path: Path,
) -> None:
    """Validate, the repair decision and the hotfix guard run Flyway too: each with the run's placeholders.

    Flyway fills placeholders into a repeatable's checksum and refuses a script whose placeholder has
    no value; a call made without them misjudges the tenant (repair "nothing to do" with a failed row).
    """
    from fleetway.activities.flyway.activity import FlywayActivities
    from fleetway.activities.flyway.request import FlywayRequest
    from fleetway.activities.secrets.providers import StaticSecretsProvider
    from fleetway.activities.tenants.label_lookup import LabelLookup
    from fleetway.activities.tenants.static import StaticTenantLister

    view = "CREATE OR REPLACE VIEW whose AS SELECT '${Tenant_Id}'::text AS t, '${region}'::text AS r, '${label.tier}'::text AS l;"
    folder = _scripts(tmp_path / "set", {**_tables(3), "R__whose.sql": view})
    tenant = "acme"
    activities = FlywayActivities(
        engine_factory(folder), {"default": StaticSecretsProvider({tenant: target})},
        labels=LabelLookup({"default": StaticTenantLister([tenant], {tenant: {"tier": "gold"}})}),
    )  # fmt: skip
    options = FlywayOptions(placeholders={"region": "eu"})

    async def run(action: Action, **fields: Any) -> FlywayOutcome:
        request = FlywayRequest(action=action, tenant_id=tenant, **({"flyway": options} | fields))
        return await activities._run(request, tenant, (folder,))

    await run(Action.MIGRATE)
    (folder / "V4__idx.sql").write_text("CREATE INDEX CONCURRENTLY i ON nope (id);")
    with pytest.raises(FlywayReportedFailureError):  # a failed row stays behind
        await run(Action.MIGRATE)

    with pytest.raises(FlywayReportedFailureError) as refused:  # validate names the failed row, nothing else
        await run(Action.VALIDATE, with_info=True)
    judged = refused.value.outcome
    assert judged is not None and [(i.version, i.error_code) for i in judged.validation_issues] == [
        ("4", "FAILED_VERSIONED_MIGRATION")
    ]
    assert ("whose", "Success") in [(e.description, e.state) for e in judged.info]  # not "Outdated"
    repaired = await run(Action.REPAIR)
    assert repaired.skipped == "" and repaired.repaired and ("4", False) not in _versions(postgres, schema)

    (folder / "V4__idx.sql").unlink()
    (folder / "V2_5__hotfix.sql").write_text("CREATE TABLE hotfix (id int);")
    hotfixed = await run(Action.MIGRATE, flyway=options.model_copy(update={"out_of_order": "2.5"}))
    assert hotfixed.applied_versions == ["2.5"]
    assert _rows(postgres, schema)[-1][:3] == ("2.5", "hotfix", "SQL")


def _versions(postgres: PostgresServer, schema: str) -> list[tuple[str | None, bool]]:
    return [(v, ok) for v, _, _, ok in _rows(postgres, schema)]


async def test_a_concurrent_index_waits_out_older_transactions_and_an_alter_still_gives_up(
    engine_factory: EngineFactory,
    target: DatabaseTarget,
    postgres: PostgresServer,
    schema: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """``CREATE INDEX CONCURRENTLY`` waits for every older transaction: a wait that blocks nobody.

    In process (jvm) the build gets no lock timeout and finishes once the older transaction ends; a
    Flyway process (cli) cannot lift it per script, so the build gives up, named, and the invalid
    index it left is dropped. Either way the next script's ALTER, behind an application's lock,
    still gives up after the lock timeout instead of queueing the application behind it.
    """
    from datetime import timedelta

    from fleetway.activities.flyway.activity import FlywayActivities
    from fleetway.activities.flyway.request import FlywayRequest
    from fleetway.activities.secrets.providers import StaticSecretsProvider

    folder = _scripts(tmp_path / "set", {"V1__a.sql": "CREATE TABLE a (id int);"})
    engine = engine_factory(folder, lock_timeout=timedelta(seconds=1))
    activities = FlywayActivities(engine, {"default": StaticSecretsProvider({"acme": target})})

    async def migrate() -> FlywayOutcome:
        return await activities._run(
            FlywayRequest(action=Action.MIGRATE, tenant_id="acme"), "acme", (folder,)
        )

    def indexes() -> list[tuple[str, bool]]:
        with psycopg.connect(postgres.dsn) as conn:
            return conn.execute(
                f"SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                f"WHERE i.indrelid = '\"{schema}\".a'::regclass"
            ).fetchall()

    await migrate()
    (folder / "V2__ix.sql").write_text("CREATE INDEX CONCURRENTLY IF NOT EXISTS ix ON a (id);")
    older = await psycopg.AsyncConnection.connect(postgres.dsn)  # an application's long transaction
    await older.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    await older.execute("SELECT 1")

    async def end_it() -> None:
        await asyncio.sleep(3)  # three lock timeouts
        await older.rollback()

    ending = asyncio.create_task(end_it())
    try:
        if request.node.callspec.params["engine_factory"] == "jvm":
            built = await migrate()
            assert built.applied_versions == ["2"] and indexes() == [("ix", True)]
        else:
            with pytest.raises(FlywayReportedFailureError) as gave_up:
                await migrate()
            assert gave_up.value.error_class is ErrorClass.LOCK_TIMEOUT
            assert indexes() == []  # the invalid index is gone: a repaired re-run builds it anew
            assert _versions(postgres, schema)[-1] == ("2", False)
            return
    finally:
        await ending
        await older.close()

    (folder / "V3__alter.sql").write_text("ALTER TABLE a ADD COLUMN x int;")
    holder = await psycopg.AsyncConnection.connect(postgres.dsn)  # an application reading table a
    await holder.execute(f'LOCK TABLE "{schema}".a IN ACCESS SHARE MODE')
    try:
        with pytest.raises(FlywayReportedFailureError) as queued:
            await migrate()
    finally:
        await holder.rollback()
        await holder.close()
    assert queued.value.error_class is ErrorClass.LOCK_TIMEOUT
    assert ("3", False) not in _versions(postgres, schema)  # transactional: rolled back, no row
