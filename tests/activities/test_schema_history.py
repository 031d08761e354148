"""The history marker, the summary of a tenant's schema history, and reading it from real PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from fleetway.activities.database_target import DatabaseTarget
from fleetway.activities.errors import SchemaHistoryUnavailableError, UnsafeIdentifierError
from fleetway.activities.flyway.contract import FlywayEngine
from fleetway.activities.flyway.output import Action
from fleetway.activities.flyway.request import FlywayRequest
from fleetway.activities.flyway.schema_history import (
    HistoryRow,
    check_history_marker,
    history_marker,
    read_history,
    summarize_history,
)
from fleetway.worker.dev.stack import PostgresServer

MARK = "fleetway:r1:abcd1234"


def _rows(*rows: tuple[str, bool, str]) -> list[HistoryRow]:
    return [HistoryRow(version=v, success=s, installed_by=b) for v, s, b in rows]


def test_marker_names_the_rollout_fits_flywys_column_and_differs_when_an_id_is_reused() -> None:
    first = history_marker("nightly-2026-12-01", "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0")
    assert first == "fleetway:nightly-2026-12-01:0f1e2d3c"
    assert history_marker("nightly-2026-12-01", "11111111-2222-3333-4444-555555555555") != first
    hostile = history_marker("x'; DROP TABLE t;--\n" + "y" * 300, "abc")
    assert len(hostile) <= 100 and check_history_marker(hostile) == hostile
    assert "'" not in hostile and "\n" not in hostile


@pytest.mark.parametrize(
    "bad", ["", "postgres", "fleetway:", "fleetway:a b", "fleetway:x\n", "fleetway:" + "a" * 91]
)
def test_a_marker_we_could_not_have_made_is_refused(bad: str) -> None:
    with pytest.raises(UnsafeIdentifierError):
        check_history_marker(bad)


def test_summary_counts_only_this_rollouts_rows_and_takes_the_version_before_its_first() -> None:
    rows = _rows(("1", True, "postgres"), ("2", True, "postgres"), ("3", True, MARK), ("4", True, MARK))
    summary = summarize_history(rows, MARK)
    assert (summary.version_before, summary.version_after, summary.applied) == ("2", "4", ["3", "4"])
    assert summary.failed == [] and summary.repeated == []


def test_summary_of_an_untouched_schema_and_of_a_failed_non_transactional_script() -> None:
    untouched = summarize_history(_rows(("1", True, "other"), ("2", True, "other")), MARK)
    assert (untouched.version_before, untouched.version_after, untouched.applied) == ("2", "2", [])
    failed = summarize_history(_rows(("1", True, MARK), ("2", False, MARK)), MARK)
    assert (failed.version_before, failed.version_after, failed.applied, failed.failed) == (
        "",
        "1",
        ["1"],
        ["2"],
    )
    twice = summarize_history(_rows(("1", True, MARK), ("1", True, MARK)), MARK)
    assert twice.repeated == ["1"]


async def test_read_history_of_a_schema_flyway_never_touched_says_no_table(target: DatabaseTarget) -> None:
    summary = await read_history(target, MARK)
    assert not summary.table_exists and summary.applied == []


async def test_read_history_sees_what_each_engine_applied_under_the_marker(
    runner: FlywayEngine, target: DatabaseTarget, postgres: PostgresServer, schema: str
) -> None:
    await runner.run(
        FlywayRequest(action=Action.MIGRATE), target
    )  # not this rollout's: installed by the database user
    ours = target.model_copy(update={"schema_name": schema + "_b"})
    await runner.run(FlywayRequest(action=Action.MIGRATE, installed_by=MARK), ours)

    summary = await read_history(ours, MARK)
    assert summary.table_exists
    assert (summary.version_before, summary.version_after) == ("", "5")
    assert summary.applied == ["1", "2", "3", "4", "5"]
    with psycopg.connect(postgres.dsn) as conn:
        by = conn.execute(
            f'SELECT DISTINCT installed_by FROM "{schema}_b".flyway_schema_history WHERE version IS NOT NULL'
        ).fetchall()
    assert by == [(MARK,)]
    untouched = await read_history(target, MARK)
    assert untouched.applied == []
    assert (untouched.version_before, untouched.version_after) == ("5", "5")


async def test_read_history_of_an_unreachable_database_is_a_named_retryable_error(
    target: DatabaseTarget,
) -> None:
    closed = DatabaseTarget.model_validate({**target.model_dump(), "port": 1, "password": "x" * 12})
    with pytest.raises(SchemaHistoryUnavailableError) as caught:
        await read_history(closed, MARK)
    assert caught.value.retryable
    assert "x" * 12 not in str(caught.value)


async def test_installed_by_must_be_a_marker(runner: FlywayEngine, target: DatabaseTarget) -> None:
    with pytest.raises(UnsafeIdentifierError):
        await runner.run(FlywayRequest(action=Action.MIGRATE, installed_by="root'; --"), target)


async def test_an_ipv6_literal_host_reaches_the_server_flyway_reaches_for_every_read(
    engine_factory: Callable[..., FlywayEngine], postgres: PostgresServer, schema: str, tmp_path: Path
) -> None:
    """``[::1]`` is how JDBC writes an IPv6 host; libpq wants ``::1``. Every read must reach where Flyway did."""
    from fleetway.activities.flyway.session import RunSessions
    from fleetway.activities.postgres.bulk_history import read_histories
    from fleetway.activities.servers.health import check_health
    from fleetway.activities.servers.models import ServerControls

    v6 = DatabaseTarget(
        host="[::1]", port=postgres.port, database="postgres", schema_name=schema,
        user="postgres", password=postgres.superuser_password,
    )  # fmt: skip
    (tmp_path / "V1__a.sql").write_text("CREATE TABLE a (id int);")
    applied = await engine_factory(tmp_path).run(FlywayRequest(action=Action.MIGRATE, installed_by=MARK), v6)
    assert applied.applied_versions == ["1"]

    assert (await read_history(v6, MARK)).applied == ["1"]  # reconciliation after a retry
    assert [r.version for r in (await read_histories({"t": v6}))["t"].rows if r.type == "SQL"] == [
        "1"
    ]  # bulk read
    assert (await check_health(v6, ServerControls())).state.value == "ok"  # the server check
    assert await RunSessions(60).terminate(v6) == 0  # the cancel's session termination connects
