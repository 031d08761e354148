""" "Provably current" against real Flyway: our checksums equal the ones Flyway wrote, and a tenant made
non-current in each way is never judged current where Flyway, asked about the same tenant, has work or
refuses."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from pathlib import Path

import psycopg
import pytest

from fleetway.activities.database_target import DatabaseTarget
from fleetway.activities.errors import FlywayReportedFailureError
from fleetway.activities.fleet.selection import check_where, selects
from fleetway.activities.fleet.state import FleetState
from fleetway.activities.fleet.verdict import judge
from fleetway.activities.flyway.checksums import (
    flyway_checksum,
    read_set_migrations,
    repeatable_checksum,
    version_key,
)
from fleetway.activities.flyway.cli_engine import FlywayRunner
from fleetway.activities.flyway.contract import FlywayInstall, FlywaySettings
from fleetway.activities.flyway.options import FlywayOptions
from fleetway.activities.flyway.output import Action
from fleetway.activities.flyway.request import FlywayRequest
from fleetway.activities.postgres.bulk_history import read_histories
from fleetway.worker.dev.stack import PostgresServer

# Each script stresses one rule of Flyway's checksum: line endings, BOM, non-ASCII, trailing
# whitespace, blank lines, a lone CR, a per-tenant placeholder in a repeatable.
_SCRIPTS: dict[str, bytes] = {
    "V1__crlf_lines.sql": b"CREATE TABLE a (id int);\r\n\r\nCREATE TABLE b (id int);\r\n",
    "V2__bom.sql": b"\xef\xbb\xbfCREATE TABLE c (id int);\n",
    "V3__non_ascii.sql": "CREATE TABLE d (name text DEFAULT 'Zürich \u2013 東京');\n".encode(),
    "V4__trailing_space.sql": b"CREATE TABLE e (id int);   \t\n\n\n",
    "V5__lone_cr.sql": b"CREATE TABLE f (id int);\rCREATE TABLE g (id int);",
    "sub/V6__in_a_folder.sql": b"CREATE TABLE h (id int);",
    "R__tenant_view.sql": b"CREATE OR REPLACE VIEW v AS SELECT '${tenant_id}'::text AS t, id FROM a;\n",
    "R__plain_view.sql": b"CREATE OR REPLACE VIEW w AS SELECT 1 AS one;",
    "afterMigrate.sql": b"SELECT 1;",
}


def _write(folder: Path, scripts: dict[str, bytes]) -> Path:
    for name, data in scripts.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


def _target(postgres: PostgresServer, schema: str) -> DatabaseTarget:
    return DatabaseTarget(
        host="127.0.0.1", port=postgres.port, database="postgres", schema_name=schema,
        user="postgres", password=postgres.superuser_password,
    )  # fmt: skip


def test_checksums_follow_flywayss_rules() -> None:
    """Line breaks and a BOM do not count, whitespace does; undecodable bytes are not guessed."""
    assert flyway_checksum(b"a\r\n\r\nb") == flyway_checksum(b"a\nb") == flyway_checksum(b"ab")
    assert flyway_checksum(b"\xef\xbb\xbfab") == flyway_checksum(b"ab")
    assert flyway_checksum(b"ab ") != flyway_checksum(b"ab")
    assert flyway_checksum(b"") == 0
    assert flyway_checksum(b"\xff\xfe broken") is None
    assert version_key("1.0") == version_key("1") == version_key("1_0_0") != version_key("1.0.1")


def test_a_set_flyway_would_refuse_is_never_judged(tmp_path: Path) -> None:
    """Two files of one version, or of one repeatable: the whole set is unknown, nothing proven."""
    twice = _write(tmp_path / "v", {"V1__a.sql": b"SELECT 1;", "sub/V1_0__b.sql": b"SELECT 2;"})
    assert "appears twice" in read_set_migrations(twice).unknown
    again = _write(tmp_path / "r", {"R__view.sql": b"SELECT 1;", "sub/R__view.sql": b"SELECT 2;"})
    assert "appears twice" in read_set_migrations(again).unknown


async def test_set_checksums_equal_what_flyway_wrote(
    flyway_install: FlywayInstall, postgres: PostgresServer, tmp_path: Path
) -> None:
    scripts = _write(tmp_path / "set", _SCRIPTS)
    schema = f"cs{uuid.uuid4().hex[:8]}"
    engine = FlywayRunner(flyway_install, FlywaySettings(locations=(scripts,)))
    await engine.run(FlywayRequest(action=Action.MIGRATE, tenant_id="acme"), _target(postgres, schema))

    with psycopg.connect(postgres.dsn) as conn:
        rows = conn.execute(
            f'SELECT version, description, checksum FROM "{schema}".flyway_schema_history '
            "WHERE type = 'SQL' ORDER BY installed_rank"
        ).fetchall()
    migrations = read_set_migrations(scripts)
    ours = {("V" + m.version, m.description, m.checksum) for m in migrations.versioned.values()}
    ours |= {
        ("R", m.description, repeatable_checksum(m, {"tenant_id": "acme"}))
        for m in migrations.repeatables.values()
    }
    flyways = {("V" + v if v else "R", d, c) for v, d, c in rows}
    assert ours == flyways and len(flyways) == 8
    tenant_view = migrations.repeatables["tenant view"]
    assert repeatable_checksum(tenant_view, {"tenant_id": "other"}) != repeatable_checksum(
        tenant_view, {"tenant_id": "acme"}
    )
    assert repeatable_checksum(tenant_view, {}) is None  # an unknown value is never guessed


async def test_each_way_of_not_being_current_is_caught_as_flyway_sees_it(
    flyway_install: FlywayInstall, postgres: PostgresServer, tmp_path: Path
) -> None:
    """Every tenant but one is non-current in one way; Flyway's own info/validate agrees on each."""
    base = {k: v for k, v in _SCRIPTS.items() if k.startswith(("V1", "V2", "R__plain"))}
    scripts = _write(tmp_path / "set", base)
    engine = FlywayRunner(flyway_install, FlywaySettings(locations=(scripts,)))
    prefix = f"nc{uuid.uuid4().hex[:6]}"
    names = ["current", "failed", "edited", "extra", "outdated", "no_table", "behind", "baselined"]
    targets = {n: _target(postgres, f"{prefix}_{n}") for n in names}
    await asyncio.gather(
        *(
            engine.run(FlywayRequest(action=Action.MIGRATE), targets[n])
            for n in ("current", "edited", "outdated")
        ),
        engine.run(FlywayRequest(action=Action.MIGRATE, flyway=FlywayOptions(target="1")), targets["behind"]),
    )
    # A failed row: a non-transactional script that fails leaves one behind on PostgreSQL.
    broken = _write(tmp_path / "broken", base | {"V3__idx.sql": b"CREATE INDEX CONCURRENTLY i ON nope (id);"})
    with pytest.raises(FlywayReportedFailureError):
        await engine.run(FlywayRequest(action=Action.MIGRATE), targets["failed"], locations=(broken,))
    extra = _write(tmp_path / "extra", base | {"V9__more.sql": b"CREATE TABLE z (id int);"})
    await engine.run(FlywayRequest(action=Action.MIGRATE), targets["extra"], locations=(extra,))
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{prefix}_no_table"')
        conn.execute(f'CREATE SCHEMA "{prefix}_baselined"')
    await engine.run(
        FlywayRequest(action=Action.BASELINE, flyway=FlywayOptions(baseline_version="1")),
        targets["baselined"],
    )
    await engine.run(FlywayRequest(action=Action.MIGRATE), targets["baselined"])
    # Now the repository moves on: V1 edited for "edited", the view edited for "outdated".
    edited = _write(tmp_path / "edited", base | {"V1__crlf_lines.sql": b"CREATE TABLE a (id bigint);"})
    outdated = _write(
        tmp_path / "outdated", base | {"R__plain_view.sql": b"CREATE OR REPLACE VIEW w AS SELECT 2 AS one;"}
    )
    sets = {n: scripts for n in names} | {"edited": edited, "outdated": outdated, "failed": broken}

    histories = await read_histories(targets)
    states = {
        n: judge(
            histories[n], read_set_migrations(sets[n]), {"tenant_id": n, "tenant_schema": f"{prefix}_{n}"}
        )
        for n in names
    }

    assert [n for n in names if states[n].current] == ["current", "baselined"]
    assert {n: states[n].state for n in names} == {
        "current": FleetState.CURRENT, "failed": FleetState.FAILED, "edited": FleetState.TAMPERED,
        "extra": FleetState.AHEAD, "outdated": FleetState.OUTDATED, "no_table": FleetState.BEHIND,
        "behind": FleetState.BEHIND, "baselined": FleetState.CURRENT,
    }  # fmt: skip
    assert states["behind"].intact and states["behind"].pending == ["2"]
    assert not any(states[n].intact for n in ("failed", "edited", "extra", "outdated"))
    # No table yet: Flyway's validate (pending ignored) passes, and a migrate has everything to do.
    assert states["no_table"].intact and not states["no_table"].current
    assert states["edited"].tampered == ["1"] and states["extra"].ahead == ["9"]
    assert states["failed"].failed == ["3"] and states["outdated"].outdated == ["plain view"]

    # The judge of the judge: real Flyway, asked about each tenant with the same set.
    async def flyway_agrees(name: str) -> None:
        on = targets[name]
        if states[name].current:
            migrated = await engine.run(FlywayRequest(action=Action.MIGRATE), on, locations=(sets[name],))
            assert migrated.applied_versions == [] and migrated.applied_repeatables == [], name
            return
        try:
            validated = await engine.run(FlywayRequest(action=Action.VALIDATE), on, locations=(sets[name],))
        except FlywayReportedFailureError:
            assert not states[name].intact, name  # Flyway refuses: we never said intact
            return
        info = await engine.run(FlywayRequest(action=Action.INFO), on, locations=(sets[name],))
        # Flyway has work, or a row the set lacks (Future: it would migrate nothing, but the
        # table holds what the set does not): either way we never said current.
        differs = {e.state for e in info.info} & {"Pending", "Outdated", "Future"}
        assert validated.success and differs, name

    await asyncio.gather(*(flyway_agrees(n) for n in names))
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_where_terms_select_and_typos_are_refused() -> None:
    from fleetway.activities.errors import InvalidInputError
    from fleetway.activities.fleet.state import TenantState

    behind = TenantState(tenant_id="a", version="3", pending=["4"], pending_count=1)
    failed = TenantState(tenant_id="b", version="5", failed=["6"])
    unread = TenantState(tenant_id="c", unreadable=True)
    assert check_where(" behind , version<5 ") == "behind,version<5"
    assert selects("behind", behind) and not selects("behind", failed)
    assert selects("version<5", behind) and not selects("version<5", failed)
    assert selects("version>=5,failed", failed) and selects("version<1", TenantState(tenant_id="d"))
    assert not selects("behind", unread) and selects("", unread)  # a selection never guesses
    with pytest.raises(InvalidInputError, match="behnd"):
        check_where("behnd")


async def test_a_tenant_on_another_vendor_is_left_to_flyway_not_failing_the_page() -> None:
    """The bulk read is PostgreSQL's: an Oracle tenant in the page is unreadable, never guessed."""
    from fleetway.activities.database_target import Vendor
    from fleetway.activities.fleet.activity import FleetStateActivities
    from fleetway.activities.flyway.checksums import SetMigrations
    from fleetway.activities.secrets.providers import StaticSecretsProvider

    oracle = DatabaseTarget(
        host="127.0.0.1", port=1, database="FREEPDB1", schema_name="ACME", user="acme",
        password="not-a-real-one", vendor=Vendor.ORACLE,
    )  # fmt: skip
    reader = FleetStateActivities({"default": StaticSecretsProvider({"acme": oracle})}, None)
    states, histories = await reader._read(["acme"], "default", "", SetMigrations())
    assert states[0].unreadable and not states[0].current and "oracle" in states[0].unknown
    assert histories == {} and "not-a-real-one" not in states[0].model_dump_json()


async def test_the_callbacks_a_no_op_migrate_and_a_validate_run_are_the_ones_real_flyway_runs(
    flyway_install: FlywayInstall, postgres: PostgresServer, tmp_path: Path
) -> None:
    """A tenant proven current skips its run, and with it these: asked of real Flyway, not assumed."""
    from fleetway.activities.flyway.checksums import _EVENTS, NOOP_MIGRATE_CALLBACKS, VALIDATE_CALLBACKS

    log = f"cb_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE public.{log} (event text)")
    scripts = {"V1__a.sql": b"CREATE TABLE a (id int);"} | {
        f"{event}__log.sql": f"INSERT INTO public.{log} VALUES ('{event}');".encode() for event in _EVENTS
    }
    folder = _write(tmp_path / "set", scripts)
    engine = FlywayRunner(flyway_install, FlywaySettings(locations=(folder,)))
    target = _target(postgres, f"cb{uuid.uuid4().hex[:8]}")
    await engine.run(FlywayRequest(action=Action.MIGRATE), target)

    fired: dict[Action, set[str]] = {}
    for action in (Action.MIGRATE, Action.VALIDATE):
        with psycopg.connect(postgres.dsn, autocommit=True) as conn:
            conn.execute(f"DELETE FROM public.{log}")
        await engine.run(FlywayRequest(action=action), target)
        with psycopg.connect(postgres.dsn) as conn:
            fired[action] = {row[0] for row in conn.execute(f"SELECT event FROM public.{log}").fetchall()}

    assert fired[Action.MIGRATE] == NOOP_MIGRATE_CALLBACKS
    assert fired[Action.VALIDATE] == VALIDATE_CALLBACKS
    migrations = read_set_migrations(folder)
    assert sorted(migrations.callbacks_on(NOOP_MIGRATE_CALLBACKS)) == sorted(
        f"{event}__log.sql" for event in NOOP_MIGRATE_CALLBACKS
    )
    assert len(migrations.callbacks) == len(_EVENTS) and len(migrations.versioned) == 1
