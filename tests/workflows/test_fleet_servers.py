"""Fleets on several real PostgreSQL servers, a database per tenant: an outage stays on its server,
the per-server budget holds in ``pg_stat_activity``, a lock queue and a paused replica hold dispatch.

Each test starts its own servers (it stops, locks or pauses them): never the session's. Every
claim is read from the servers: ``flyway_schema_history`` in each tenant's database, and
``pg_stat_activity`` sampled while the rollout runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError

from fleetway.activities.database_target import DatabaseTarget
from fleetway.activities.flyway.contract import FlywayInstall
from fleetway.activities.rollouts import Outcome
from fleetway.activities.servers.models import HoldKind, ServerControls
from fleetway.worker.client.connection import FleetwayClient
from fleetway.worker.dev.stack import PostgresServer, TemporalDevServer
from fleetway.workflows.migrate_all import MigrateAllWorkflow
from fleetway.workflows.migrate_all_models import MigrateAllInput, MigrateAllResult, Progress, RolloutStatus
from tests.fleet import FLEETWAY, Fleet, fleetway
from tests.kill_loop import fault_migrations
from tests.support import wait_until

VERSIONS = ["1", "2", "3", "4", "5"]
_OURS = ("fleetway-health", "fleetway-bulk-history")  # our checks, not tenants' runs


@dataclass
class SpreadFleet(Fleet):
    """Tenants each in their own database, on the server ``placed`` names."""

    placed: dict[str, PostgresServer] = field(default_factory=dict)

    def target(self, tenant: str) -> DatabaseTarget:
        server = self.placed[tenant]
        return DatabaseTarget(
            host="127.0.0.1", port=server.port, database=tenant, user="postgres",
            password=server.superuser_password,
        )  # fmt: skip


def spread(servers: dict[str, PostgresServer], per_server: int, *, first: str = "") -> SpreadFleet:
    """``per_server`` tenant databases on each server, ``first``'s tenants listed first."""
    prefix = f"t{uuid.uuid4().hex[:6]}"
    order = sorted(servers, key=lambda name: name != first)
    placed = {f"{prefix}_{name}{i}": servers[name] for name in order for i in range(per_server)}
    for tenant, server in placed.items():
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{tenant}"')
    return SpreadFleet(postgres=next(iter(servers.values())), tenants=list(placed), placed=placed)


def applied(fleet: SpreadFleet, tenant: str) -> list[tuple[str, datetime]]:
    """(version, installed_on) of the tenant's successful versioned rows, from its own database."""
    with psycopg.connect(fleet.placed[tenant].dsn_for(tenant)) as conn:
        try:
            rows = conn.execute(
                "SELECT version, installed_on FROM flyway_schema_history "
                "WHERE version IS NOT NULL AND success ORDER BY installed_rank"
            ).fetchall()
        except psycopg.errors.UndefinedTable:
            return []
    return [(str(v), on.replace(tzinfo=UTC) if on.tzinfo is None else on) for v, on in rows]


@contextlib.contextmanager
def own_servers(count: int) -> Iterator[list[PostgresServer]]:
    servers = [PostgresServer() for _ in range(count)]
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()


async def progress_until(
    handle: WorkflowHandle[Any, Any], check: Callable[[Progress], object], timeout: float = 60
) -> Progress:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            progress = await handle.query(MigrateAllWorkflow.progress)
        except RPCError:  # a CLI that has not started it yet
            await asyncio.sleep(0.3)
            continue
        if check(progress):
            return progress
        await asyncio.sleep(0.3)
    raise AssertionError("progress never showed it")


def _now() -> datetime:
    """The database servers' clock and ours are the same machine's."""
    return datetime.now(UTC)


async def test_a_stopped_server_is_parked_and_the_rest_of_the_fleet_runs_meanwhile(
    client: Client, flyway_install: FlywayInstall, temporal_server: TemporalDevServer, tmp_path: Path
) -> None:
    """As an operator would: ``fleetway migrate -o ndjson`` while one server is down for 40 s."""
    with own_servers(2) as (a, b):
        fleet = spread({"a": a, "b": b}, 4, first="b")
        env = fleet.cli_env(temporal_server.address, tmp_path, flyway_install)
        b_key = f"127.0.0.1:{b.port}"
        await asyncio.to_thread(b.halt, "fast")  # down before the rollout starts
        rollout_id = f"outage-{uuid.uuid4().hex[:8]}"
        async with fleet.worker(client, flyway_install, engine="jvm"):
            cli = await asyncio.create_subprocess_exec(
                FLEETWAY, "migrate", "--parallelism", "4", "--rollout-id", rollout_id, "--principal", "t",
                "-o", "ndjson", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            started = _now()
            handle = client.get_workflow_handle(rollout_id, result_type=MigrateAllResult)
            progress = await progress_until(handle, lambda p: p.servers)
            (hold,) = progress.servers
            assert hold.server == b_key and hold.kind is HoldKind.PARKED
            assert "does not answer" in hold.why and hold.queued >= 1
            await asyncio.sleep(max(0.0, 40 - (_now() - started).total_seconds()))
            returned = _now()
            await asyncio.to_thread(b.start)  # same port, same data
            out, err = await asyncio.wait_for(cli.communicate(), timeout=180)
        assert cli.returncode == 0, err.decode()[-2000:]
        lines = [json.loads(line) for line in out.decode().splitlines()]
        holds = [(line["server"], line["kind"], line["ended"]) for line in lines if line["event"] == "server"]
        assert holds == [(b_key, "parked", False), (b_key, "parked", True)]
        servers = {line["tenant_id"]: line["server"] for line in lines if line["event"] == "tenant_complete"}
        assert servers == {t: f"127.0.0.1:{fleet.placed[t].port}" for t in fleet.tenants}
        summary = lines[-1]
        assert summary["status"] == "succeeded" and summary["counts"] == {"succeeded": 8}
        assert summary["servers"] == []
        for tenant in fleet.tenants:
            rows = applied(fleet, tenant)
            assert [v for v, _ in rows] == VERSIONS, tenant
            if fleet.placed[tenant] is b:  # its own tenants ran only after it came back
                assert rows[0][1] > returned, (tenant, rows[0][1], returned)
            else:  # the other server's finished while it was down
                assert rows[-1][1] < returned, (tenant, rows[-1][1], returned)


class ActivitySampler:
    """Samples ``pg_stat_activity`` of each server: the tenant databases with a session, at most."""

    def __init__(self, servers: list[PostgresServer], prefix: str) -> None:
        self._servers, self._prefix = servers, prefix
        self.most = dict.fromkeys((s.port for s in servers), 0)
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        conns = [psycopg.connect(s.dsn, autocommit=True) for s in self._servers]
        try:
            while not self._stop.is_set():
                for server, conn in zip(self._servers, conns, strict=True):
                    row = conn.execute(
                        "SELECT count(DISTINCT datname) FROM pg_stat_activity "
                        "WHERE datname LIKE %s AND NOT application_name = ANY(%s)",
                        (f"{self._prefix}%", list(_OURS)),
                    ).fetchone()
                    self.most[server.port] = max(self.most[server.port], int(row[0]) if row else 0)
                self.samples += 1
                time.sleep(0.05)
        finally:
            for conn in conns:
                conn.close()

    def __enter__(self) -> ActivitySampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


async def test_per_server_2_never_has_more_than_2_tenants_on_a_server(
    client: Client, flyway_install: FlywayInstall, temporal_server: TemporalDevServer, tmp_path: Path
) -> None:
    with own_servers(2) as (a, b):
        fleet = spread({"a": a, "b": b}, 6, first="a")
        fleet.locations = fault_migrations(tmp_path / "scripts", sleep_s=1.5)  # runs overlap
        env = fleet.cli_env(temporal_server.address, tmp_path, flyway_install)
        prefix = fleet.tenants[0].split("_")[0]
        async with fleet.worker(client, flyway_install, engine="jvm", max_activities=12):
            with ActivitySampler([a, b], prefix) as sampler:
                done = await asyncio.to_thread(
                    fleetway, "migrate", "--parallelism", "12", "--per-server", "2", "--principal", "t",
                    "-o", "json", env=env, timeout=240,
                )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        result = MigrateAllResult.model_validate_json(done.stdout)
        assert result.counts == {Outcome.SUCCEEDED: 12}
        assert sampler.samples > 50
        assert sampler.most == {a.port: 2, b.port: 2}  # never more, and the budget was used
        for tenant in fleet.tenants:
            assert [v for v, _ in applied(fleet, tenant)] == [*VERSIONS, "6"]


async def held_until(
    handle: WorkflowHandle[Any, MigrateAllResult],
    fleet: SpreadFleet,
    why: str,
    release: Callable[[], Awaitable[object]],
) -> None:
    """The rollout holds its server saying ``why`` and runs nothing; after ``release`` every
    tenant migrates, each one's first row written after the release."""
    progress = await progress_until(handle, lambda p: p.servers)
    (hold,) = progress.servers
    assert hold.kind is HoldKind.HELD and why in hold.why, hold
    await asyncio.sleep(3)
    assert all(applied(fleet, t) == [] for t in fleet.tenants)  # nothing ran meanwhile
    released = _now()
    await release()
    result = await asyncio.wait_for(handle.result(), timeout=120)
    assert result.status is RolloutStatus.SUCCEEDED, result.warnings
    for tenant in fleet.tenants:
        rows = applied(fleet, tenant)
        assert [v for v, _ in rows] == VERSIONS and rows[0][1] > released


async def start(
    client: Client, fleet: SpreadFleet, controls: ServerControls
) -> WorkflowHandle[Any, MigrateAllResult]:
    return (
        await FleetwayClient(client, fleet.task_queue).start(
            MigrateAllInput(parallelism=3, servers=controls), rollout_id=f"held-{uuid.uuid4().hex[:8]}"
        )
    ).handle


async def test_sessions_queued_on_a_lock_hold_their_server_until_the_queue_clears(
    client: Client, flyway_install: FlywayInstall
) -> None:
    with own_servers(1) as (a,):
        fleet = spread({"a": a}, 3)
        holder = psycopg.connect(a.dsn)  # an application holding a lock, another waiting on it
        holder.execute("CREATE TABLE app_orders (id int)")
        holder.commit()
        holder.execute("LOCK TABLE app_orders IN ACCESS EXCLUSIVE MODE")
        waiter = await psycopg.AsyncConnection.connect(a.dsn, autocommit=True)
        queued = asyncio.ensure_future(waiter.execute("SELECT count(*) FROM app_orders"))

        async def release() -> None:
            holder.commit()  # the lock goes, the waiter gets it and finishes
            await asyncio.wait_for(queued, timeout=10)

        try:
            async with fleet.worker(client, flyway_install, engine="jvm"):
                handle = await start(client, fleet, ServerControls(max_lock_waiters=0))
                await held_until(handle, fleet, "1 sessions wait on locks (max 0)", release)
        finally:
            holder.close()
            await waiter.close()


@pytest.mark.parametrize("read_on", ["primary", "replica"])
async def test_a_paused_replica_holds_dispatch_to_its_primary_until_replay_resumes(
    client: Client, flyway_install: FlywayInstall, read_on: str
) -> None:
    """The lag read from the primary's pg_stat_replication, or on the replica itself (``replicas``)."""
    with own_servers(1) as (primary,):
        replica = await asyncio.to_thread(primary.start_replica)
        try:
            fleet = spread({"p": primary}, 3)
            with psycopg.connect(primary.dsn, autocommit=True) as conn:
                assert wait_until(
                    lambda: (
                        conn.execute(
                            "SELECT count(*) FROM pg_stat_replication WHERE replay_lsn IS NOT NULL"
                        ).fetchone()
                        == (1,)
                    ),
                    timeout=30,
                )
            with psycopg.connect(replica.dsn, autocommit=True) as conn:
                conn.execute("SELECT pg_wal_replay_pause()")
            with psycopg.connect(primary.dsn, autocommit=True) as conn:  # WAL the replica must replay
                conn.execute(
                    "CREATE TABLE app_events AS SELECT g, repeat('x', 200) s FROM generate_series(1, 20000) g"
                )

            async def release() -> None:
                with psycopg.connect(replica.dsn, autocommit=True) as conn:
                    conn.execute("SELECT pg_wal_replay_resume()")

            async with fleet.worker(client, flyway_install, engine="jvm"):
                replicas = (
                    {f"127.0.0.1:{primary.port}": f"127.0.0.1:{replica.port}"} if read_on == "replica" else {}
                )
                controls = ServerControls(max_replica_lag_bytes=1_000_000, replicas=replicas)
                handle = await start(client, fleet, controls)
                why = f"replica 127.0.0.1:{replica.port} replay " if replicas else "replica replay "
                await held_until(handle, fleet, why, release)
        finally:
            replica.stop()


async def test_a_server_short_of_free_connections_is_held_until_sessions_close(
    client: Client, flyway_install: FlywayInstall, temporal_server: TemporalDevServer, tmp_path: Path
) -> None:
    with own_servers(1) as (a,):
        fleet = spread({"a": a}, 2)
        env = fleet.cli_env(temporal_server.address, tmp_path, flyway_install)
        hogs = [psycopg.connect(a.dsn) for _ in range(60)]  # an application's pool, grown (max 300)
        try:
            async with fleet.worker(client, flyway_install, engine="jvm"):
                started = await asyncio.to_thread(
                    fleetway, "migrate", "--min-free-connections", "250", "--principal", "t", "--detach",
                    env=env,
                )  # fmt: skip
                assert started.returncode == 0, started.stderr[-2000:]
                handle = client.get_workflow_handle(started.stdout.strip(), result_type=MigrateAllResult)

                async def release() -> None:
                    for hog in hogs:
                        hog.close()

                await held_until(handle, fleet, "connections free (min 250)", release)
        finally:
            for hog in hogs:
                hog.close()


async def test_a_users_probe_over_its_maximum_holds_the_server(
    client: Client, flyway_install: FlywayInstall
) -> None:
    with own_servers(1) as (a,):
        fleet = spread({"a": a}, 2)
        gate = psycopg.connect(a.dsn + " application_name=release-gate")  # what the probe counts

        async def release() -> None:
            gate.close()

        try:
            async with fleet.worker(client, flyway_install, engine="jvm"):
                probe = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'release-gate'"
                handle = await start(client, fleet, ServerControls(probe_sql=probe, probe_max=0))
                await held_until(handle, fleet, "health probe 1 over 0", release)
        finally:
            gate.close()


def test_bad_per_server_controls_are_refused_before_anything_starts(
    temporal_server: TemporalDevServer, tmp_path: Path
) -> None:
    env = {"FLEETWAY_TEMPORAL__ADDRESS": temporal_server.address, "PATH": "/usr/bin:/bin"}
    for args, said in (
        (["--replica", "db1:5432"], "is not PRIMARY=REPLICA"),
        (["--replica", "db1:5432=db2", "--max-replica-lag-bytes", "1"], "'db2' is not host:port"),
        (["--health-probe", "select 1; drop table x", "--health-probe-max", "1"], "one query"),
        (["--health-probe", "select 1"], "probe_sql and probe_max go together"),
        (["--park-limit", "soon"], "--park-limit 'soon' is not"),
    ):
        done = fleetway("migrate", "--tenant", "a", *args, env=env)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert said in done.stderr, (args, done.stderr)
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"waves": [{"name": "all", "rest": True}], "servers": {"per_server": 0}}))
    done = fleetway("migrate", "--tenant", "a", "--wave-plan", str(plan), env=env)
    assert done.returncode == 2 and "per_server" in done.stderr, done.stderr
