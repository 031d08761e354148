"""The Flyway toolbox as durable rollouts on the real stack: a target held and stepped through waves,
placeholders, baseline of a brownfield fleet, repair of failed rows, a hotfix, an edited repeatable.
Each test reads ``flyway_schema_history`` afterwards: the table, not our result, is the judge."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import psycopg
from temporalio.client import Client

from fleetway.activities.audit.events import AuditContext, Emitter
from fleetway.activities.audit.sinks import JsonlAuditSink
from fleetway.activities.flyway.cli_engine import FlywayRunner
from fleetway.activities.flyway.contract import FlywayInstall, FlywaySettings
from fleetway.activities.flyway.options import FlywayOptions
from fleetway.activities.flyway.output import Action
from fleetway.activities.flyway.request import FlywayRequest
from fleetway.activities.rollouts import Outcome
from fleetway.activities.tenants.waves import WaveSpec
from fleetway.worker.client.connection import FleetwayClient
from fleetway.worker.dev.stack import PostgresServer
from fleetway.workflows.migrate_all_models import MigrateAllInput, MigrateAllResult, RolloutStatus
from tests.fleet import Fleet, fleetway, make_fleet
from tests.support import history, schema_exists

_V1 = "CREATE TABLE account (id int PRIMARY KEY, name text NOT NULL);"
_V2 = "ALTER TABLE account ADD COLUMN plan text; CREATE INDEX account_plan ON account (plan);"


def _folder(path: Path, scripts: dict[str, str]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for old in path.glob("*.sql"):
        old.unlink()
    for name, sql in scripts.items():
        (path / name).write_text(sql)
    return path


def _tables(*versions: int) -> dict[str, str]:
    return {f"V{v}__t{v}.sql": f"CREATE TABLE t{v} (id int);" for v in versions}


async def _rollout(
    client: Client, fleet: Fleet, install: FlywayInstall, *, emitter: Emitter | None = None, **request: Any
) -> MigrateAllResult:
    async with fleet.worker(client, install, engine="jvm", emitter=emitter):
        return await FleetwayClient(client, fleet.task_queue).run(
            MigrateAllInput(audit=AuditContext(principal="ops@example.com"), **request),
            rollout_id=f"toolbox-{uuid.uuid4().hex[:8]}",
        )


def _events(path: Path) -> dict[str, dict[str, Any]]:
    """The audit trail's migration events, by tenant (one each)."""
    events = [json.loads(line) for line in path.read_text().splitlines()]
    return {e["target"]: e for e in events if e["type"] == "migration.applied"}


def _by_tenant(result: MigrateAllResult) -> dict[str, Any]:
    return {o.tenant_id: o for o in result.outcomes}


async def test_a_target_holds_the_fleet_and_a_wave_steps_ahead_of_the_rest(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer, tmp_path: Path
) -> None:
    fleet = make_fleet(postgres, 3)
    fleet.locations = _folder(tmp_path / "set", _tables(1, 2, 3, 4))
    first, ahead, *rest = fleet.tenants

    held = await _rollout(client, fleet, flyway_install, flyway=FlywayOptions(target="2"))
    assert held.status is RolloutStatus.SUCCEEDED and held.flyway.target == "2"
    assert all(history(postgres, t) == [("1", True), ("2", True)] for t in fleet.tenants)

    audit = tmp_path / "audit.jsonl"
    waves = [WaveSpec(name="ring1", tenants=[ahead], target="3"), WaveSpec(name="rest", rest=True)]
    stepped = await _rollout(
        client, fleet, flyway_install, emitter=Emitter(JsonlAuditSink(audit)),
        flyway=FlywayOptions(target="2"), waves=waves,
    )  # fmt: skip

    assert stepped.status is RolloutStatus.SUCCEEDED
    assert history(postgres, ahead) == [("1", True), ("2", True), ("3", True)]
    assert all(history(postgres, t) == [("1", True), ("2", True)] for t in [first, *rest])
    assert _events(audit)[ahead]["attributes"]["migration.target"] == "3"
    assert _events(audit)[first]["attributes"]["migration.target"] == "2"


async def test_placeholders_reach_each_tenant_and_an_unset_one_stops_the_rollout_first(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer, tmp_path: Path
) -> None:
    fleet = make_fleet(postgres, 3)
    gold, silver, unlabelled = fleet.tenants
    fleet.labels = {gold: {"tier": "gold"}, silver: {"tier": "silver"}}
    sql = (
        "CREATE TABLE owner (tenant text, region text, tier text); "
        "INSERT INTO owner VALUES ('${tenant_id}', '${region}', '${label.tier}');"
    )
    fleet.locations = _folder(tmp_path / "set", {"V1__owner.sql": sql})

    refused = await _rollout(client, fleet, flyway_install)
    assert refused.status is RolloutStatus.FAILED and refused.total == 0
    assert any("placeholder_missing" in w and "${region} in V1__owner.sql" in w for w in refused.warnings)
    assert not any(schema_exists(postgres, t) for t in fleet.tenants)  # nothing ran anywhere

    env = fleet.cli_env(client.service_client.config.target_host, tmp_path, flyway_install)
    async with fleet.worker(client, flyway_install, engine="jvm"):
        done = await asyncio.to_thread(
            fleetway, "migrate", "--placeholder", "region=eu-west-1", "--principal", "ci", "--continue-on-error",
            "-o", "json", env=env,
        )  # fmt: skip
    assert done.returncode == 1, done.stderr  # the unlabelled tenant failed, by name
    result = json.loads(done.stdout)
    assert result["flyway"]["placeholders"] == {"region": "eu-west-1"}
    failed = {o["tenant_id"]: o for o in result["failed"]}
    assert failed[unlabelled]["error_class"] == "placeholder_missing"
    assert "${label.tier}" in failed[unlabelled]["message"]
    assert not schema_exists(postgres, unlabelled)  # refused before Flyway ran
    with psycopg.connect(postgres.dsn) as conn:
        rows = {
            t: conn.execute(f'SELECT tenant, region, tier FROM "{t}".owner').fetchone()
            for t in (gold, silver)
        }
    assert rows == {gold: (gold, "eu-west-1", "gold"), silver: (silver, "eu-west-1", "silver")}


def _legacy(postgres: PostgresServer, schema: str, *statements: str) -> None:
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(f'SET search_path TO "{schema}"')
        for statement in statements:
            conn.execute(statement)


def _has_history(postgres: PostgresServer, schema: str) -> bool:
    with psycopg.connect(postgres.dsn) as conn:
        row = conn.execute("SELECT to_regclass(%s)", (f'"{schema}".flyway_schema_history',)).fetchone()
    return bool(row and row[0])


async def test_a_brownfield_fleet_is_adopted_only_where_it_equals_the_reference(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer, tmp_path: Path
) -> None:
    fleet = make_fleet(postgres, 5)
    reference, legacy, differs, fresh, late = fleet.tenants
    fleet.locations = _folder(
        tmp_path / "set",
        {"V1__account.sql": _V1, "V2__plan.sql": _V2, "V3__t3.sql": "CREATE TABLE t3 (id int);"},
    )
    engine = FlywayRunner(flyway_install, FlywaySettings(locations=(fleet.locations,)))
    await engine.run(
        FlywayRequest(action=Action.MIGRATE, flyway=FlywayOptions(target="2")), fleet.target(reference)
    )
    _legacy(postgres, legacy, _V1, _V2)  # built by hand, exactly as V1 and V2 would
    _legacy(postgres, differs, _V1)  # missing V2's column and index
    _legacy(postgres, late, _V1, _V2)
    adopt = FlywayOptions(baseline_version="2", baseline_reference=reference)
    everyone = [reference, legacy, differs, fresh]

    checked = await _rollout(
        client, fleet, flyway_install, action=Action.BASELINE, tenants=everyone, continue_on_error=True,
        flyway=adopt.model_copy(update={"dry_run": True}),
    )  # fmt: skip
    said = {t: (o.outcome, o.error_class, o.message) for t, o in _by_tenant(checked).items()}
    assert said[legacy][0] is Outcome.SKIPPED and said[legacy][2].startswith(
        "would baseline at 2: fingerprint"
    )
    assert said[differs][:2] == (Outcome.FAILED, "schema_fingerprint_mismatch")
    assert "missing: column account.plan text" in said[differs][2]
    assert said[reference][2] == "already under Flyway: nothing to adopt"
    assert said[fresh][2] == "empty schema: nothing to adopt"
    assert not any(_has_history(postgres, t) for t in (legacy, differs))  # a dry run writes nothing

    adopted = await _rollout(
        client, fleet, flyway_install, action=Action.BASELINE, tenants=everyone, continue_on_error=True,
        flyway=adopt,
    )  # fmt: skip
    assert _by_tenant(adopted)[legacy].outcome is Outcome.SUCCEEDED
    assert history(postgres, legacy) == [("2", True)]
    assert not _has_history(postgres, differs)
    with psycopg.connect(postgres.dsn) as conn:
        row = conn.execute(f'SELECT type, installed_by FROM "{legacy}".flyway_schema_history').fetchone()
    assert row == ("BASELINE", adopted.history_marker)

    # The safe baselineOnMigrate: a legacy tenant checked and baselined, a new one built from V1.
    mixed = await _rollout(
        client, fleet, flyway_install, tenants=[late, fresh],
        flyway=FlywayOptions(baseline_version="2", baseline_reference=reference),
    )  # fmt: skip
    assert mixed.status is RolloutStatus.SUCCEEDED
    assert history(postgres, late) == [("2", True), ("3", True)]
    assert history(postgres, fresh) == [("1", True), ("2", True), ("3", True)]


async def test_repair_fixes_only_the_tenants_with_a_failed_row_and_says_what_it_removed(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer, tmp_path: Path
) -> None:
    fleet = make_fleet(postgres, 3)
    clean, *broken = fleet.tenants
    fleet.locations = _folder(tmp_path / "set", _tables(1))
    await _rollout(client, fleet, flyway_install, tenants=[clean])
    # CREATE INDEX CONCURRENTLY cannot run in a transaction: its failure leaves a failed row behind.
    _folder(fleet.locations, {**_tables(1), "V2__idx.sql": "CREATE INDEX CONCURRENTLY i ON missing (id);"})
    failed = await _rollout(client, fleet, flyway_install, tenants=broken, continue_on_error=True)
    assert failed.counts == {Outcome.FAILED: 2}
    assert all(history(postgres, t) == [("1", True), ("2", False)] for t in broken)

    preview = await _rollout(client, fleet, flyway_install, action=Action.VALIDATE, continue_on_error=True)
    assert {t: o.failed_versions for t, o in _by_tenant(preview).items()} == {
        clean: [],
        **{t: ["2"] for t in broken},
    }
    audit = tmp_path / "audit.jsonl"
    repaired = await _rollout(
        client, fleet, flyway_install, emitter=Emitter(JsonlAuditSink(audit)), action=Action.REPAIR
    )

    outcomes = _by_tenant(repaired)
    assert (outcomes[clean].outcome, outcomes[clean].message) == (Outcome.SKIPPED, "nothing to repair")
    assert all(outcomes[t].repaired == ["removed failed 2"] for t in broken)
    assert all(history(postgres, t) == [("1", True)] for t in broken)
    events = _events(audit)
    assert events[broken[0]]["principal"] == "ops@example.com"
    assert events[broken[0]]["attributes"]["migration.repaired"] == "removed failed 2"
    assert events[clean]["outcome"] == "skipped"

    # Repair with a set that lacks an applied version would mark it deleted: refused, nothing changed.
    _folder(fleet.locations, {"V2__t2.sql": "CREATE TABLE t2 (id int);"})
    wrong = await _rollout(client, fleet, flyway_install, action=Action.REPAIR, continue_on_error=True)
    assert {o.error_class for o in wrong.outcomes} == {"repair_refused"}
    assert all(history(postgres, t) == [("1", True)] for t in fleet.tenants)


async def test_a_hotfix_applies_one_version_and_an_edited_repeatable_is_reported(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer, tmp_path: Path
) -> None:
    fleet = make_fleet(postgres, 2)
    guarded, fixed = fleet.tenants
    views = "CREATE OR REPLACE VIEW v AS SELECT id FROM t1;"
    engine = FlywayRunner(flyway_install, FlywaySettings())
    old = _folder(tmp_path / "old", {**_tables(1, 3), "R__views.sql": views})
    await engine.run(FlywayRequest(action=Action.MIGRATE), fleet.target(guarded), locations=(old,))
    with_2_5 = _folder(
        tmp_path / "with_2_5", {**_tables(1, 3), "V2_5__t25.sql": "SELECT 1;", "R__views.sql": views}
    )
    await engine.run(FlywayRequest(action=Action.MIGRATE), fleet.target(fixed), locations=(with_2_5,))
    fleet.locations = _folder(
        tmp_path / "hotfix",
        {
            **_tables(1, 2, 3),
            "V2_5__t25.sql": "SELECT 1;",
            "R__views.sql": views.replace("id", "id, 1 AS one"),
        },
    )

    drift = await _rollout(client, fleet, flyway_install, action=Action.VALIDATE, continue_on_error=True)
    assert drift.drift["outdated_repeatables"] == 2
    assert all(o.outdated_repeatables == ["views"] for o in drift.outcomes)

    result = await _rollout(
        client, fleet, flyway_install, continue_on_error=True, flyway=FlywayOptions(out_of_order="2")
    )

    outcomes = _by_tenant(result)
    assert (outcomes[fixed].outcome, outcomes[fixed].applied_versions) == (Outcome.SUCCEEDED, ["2"])
    assert outcomes[fixed].repeatables == ["views"]
    assert history(postgres, fixed) == [("1", True), ("2.5", True), ("3", True), ("2", True)]
    assert (outcomes[guarded].outcome, outcomes[guarded].error_class) == (
        Outcome.FAILED,
        "out_of_order_refused",
    )
    assert "2.5" in outcomes[guarded].message
    assert history(postgres, guarded) == [("1", True), ("3", True)]  # nothing applied there
