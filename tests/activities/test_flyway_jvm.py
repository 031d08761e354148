"""What only the in-process JVM engine has: cancellation and timeouts through PostgreSQL (a JVM thread
cannot be killed), many tenants at once through one JVM, and the one-JVM-per-process rule."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from fleetway.activities.database_target import DatabaseTarget
from fleetway.activities.errors import ConfigurationError, FlywayTimeoutError
from fleetway.activities.flyway.contract import FlywayInstall, FlywaySettings
from fleetway.activities.flyway.jvm_engine import JvmFlywayEngine
from fleetway.activities.flyway.output import Action
from fleetway.activities.flyway.request import FlywayRequest
from fleetway.worker.dev.stack import PROJECT_ROOT, PostgresServer
from tests.support import DEMO_MIGRATIONS, copy_migrations, history


def engine(install: FlywayInstall, locations: Path, **settings: object) -> JvmFlywayEngine:
    return JvmFlywayEngine(install, FlywaySettings(locations=(locations,), **settings))  # type: ignore[arg-type]


def sleeping_backends(postgres: PostgresServer) -> list[str]:
    with psycopg.connect(postgres.dsn) as conn:
        rows = conn.execute(
            "SELECT application_name FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(60)%' "
            "AND application_name LIKE 'fleetway-%'"
        ).fetchall()
    return [r[0] for r in rows]


async def wait_for(predicate: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        await asyncio.sleep(0.05)
    return False


async def test_cancellation_cancels_the_statement_in_postgresql_and_returns_at_once(
    flyway_install: FlywayInstall,
    target: DatabaseTarget,
    postgres: PostgresServer,
    schema: str,
    tmp_path: Path,
) -> None:
    slow = copy_migrations(tmp_path / "slow", upto=1)
    (slow / "V2__slow.sql").write_text("SELECT pg_sleep(60);\n")
    task = asyncio.create_task(engine(flyway_install, slow).run(FlywayRequest(action=Action.MIGRATE), target))
    assert await wait_for(lambda: sleeping_backends(postgres), 30), "the migration never reached pg_sleep"

    cancelled_at = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - cancelled_at < 5
    assert await wait_for(lambda: not sleeping_backends(postgres), 5)  # the statement is really gone
    assert history(postgres, schema) == [("1", True)]  # V2's transaction rolled back, not recorded


async def test_timeout_cancels_the_statement_and_reports_unknown_schema_state(
    flyway_install: FlywayInstall, target: DatabaseTarget, postgres: PostgresServer, tmp_path: Path
) -> None:
    slow = copy_migrations(tmp_path / "slow", upto=1)
    (slow / "V2__slow.sql").write_text("SELECT pg_sleep(60);\n")
    started = time.monotonic()
    with pytest.raises(FlywayTimeoutError) as caught:
        await engine(flyway_install, slow, timeout=timedelta(seconds=4)).run(
            FlywayRequest(action=Action.MIGRATE), target
        )
    assert time.monotonic() - started < 15
    assert "schema state is unknown" in str(caught.value) and not caught.value.is_retryable
    assert await wait_for(lambda: not sleeping_backends(postgres), 5)


async def test_one_jvm_migrates_many_tenants_concurrently(
    flyway_install: FlywayInstall, target: DatabaseTarget, postgres: PostgresServer
) -> None:
    shared = engine(flyway_install, DEMO_MIGRATIONS)
    schemas = [f"c_{uuid.uuid4().hex[:10]}" for _ in range(8)]
    targets = [
        DatabaseTarget.model_validate({**target.model_dump(), "password": target.password, "schema_name": s})
        for s in schemas
    ]
    outcomes = await asyncio.gather(*(shared.run(FlywayRequest(action=Action.MIGRATE), t) for t in targets))
    assert [o.ending_version for o in outcomes] == ["5"] * 8
    for s in schemas:
        assert history(postgres, s) == [(v, True) for v in ["1", "2", "3", "4", "5"]]


def test_the_process_jvm_cannot_switch_flyway_installs(flyway_install: FlywayInstall, tmp_path: Path) -> None:
    engine(flyway_install, DEMO_MIGRATIONS).start()
    other = FlywayInstall(lib_dir=tmp_path, java=flyway_install.java, version="other")
    with pytest.raises(ConfigurationError, match="cannot be restarted"):
        engine(other, DEMO_MIGRATIONS).start()


def test_the_process_jvm_leaves_sigterm_to_python_and_leaves_no_attach_socket(
    flyway_install: FlywayInstall,
) -> None:
    """A JVM started in-process must not take SIGTERM over (it would exit 143 at once, skipping a
    worker's graceful drain and the demo's and benchmark's cleanup). Needs a fresh process: this
    one's JVM is already up."""
    script = f"""
import os, signal, time
from pathlib import Path
from fleetway.activities.flyway.contract import FlywayInstall
from fleetway.activities.flyway.jvm_engine import start_jvm
seen = []
signal.signal(signal.SIGTERM, lambda *_: seen.append("python"))  # installed first, as dev_stack does
start_jvm(FlywayInstall(lib_dir=Path({str(flyway_install.lib_dir)!r}), java=Path({str(flyway_install.java)!r}), version=""),
          ("-Xmx128m", "-XX:+UseSerialGC"))  # caller options without -Xrs: start_jvm adds it
os.kill(os.getpid(), signal.SIGTERM)
time.sleep(1)
print(seen, Path(f"/tmp/.java_pid{{os.getpid()}}").exists(), flush=True)
os._exit(0)
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # False: no attach socket in /tmp (with -Xrs HotSpot opens one at start; an os._exit leaves it).
    assert (done.returncode, done.stdout.strip()) == (0, "['python'] False"), done.stderr[-2000:]


def _many_short_statements(folder: Path, scripts: int = 120, rows: int = 600) -> Path:
    """Scripts of many short statements: a cancel lands between statements, never inside a long one."""
    folder.mkdir()
    (folder / "V1__table.sql").write_text("CREATE TABLE t (i int);\n")
    body = "".join(f"INSERT INTO t VALUES ({j});\n" for j in range(rows))
    for version in range(2, scripts + 2):
        (folder / f"V{version}__rows.sql").write_text(body)
    return folder


def _run_backends(postgres: PostgresServer) -> int:
    with psycopg.connect(postgres.dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'fleetway-%' "
            "AND application_name <> 'fleetway-cancel'"
        ).fetchone()
    return int(row[0]) if row else 0


@pytest.mark.parametrize("stop", ["cancel", "timeout"])
async def test_a_stopped_run_applies_nothing_after_it_reports_stopped(
    flyway_install: FlywayInstall,
    target: DatabaseTarget,
    postgres: PostgresServer,
    schema: str,
    tmp_path: Path,
    stop: str,
) -> None:
    """A JVM thread cannot be killed: the run's sessions are terminated and a callback refuses the
    next script, so Flyway stops with the run instead of applying the rest of the set."""
    many = _many_short_statements(tmp_path / "many")
    timeout = timedelta(seconds=3 if stop == "timeout" else 600)
    task = asyncio.create_task(
        engine(flyway_install, many, timeout=timeout).run(FlywayRequest(action=Action.MIGRATE), target)
    )

    def applied() -> int:
        try:
            return len(history(postgres, schema))
        except psycopg.errors.UndefinedTable:
            return 0

    assert await wait_for(lambda: applied() >= 4, 60), "the migration never got going"
    if stop == "cancel":
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    else:
        with pytest.raises(FlywayTimeoutError):
            await task
    at_stop = applied()
    assert at_stop < len(list(many.iterdir()))  # stopped mid-set
    assert not await wait_for(lambda: applied() > at_stop, 5)  # and nothing applied after it said so
    assert _run_backends(postgres) == 0
