"""Audit end to end: the PostgreSQL sink under a real rollout (with an injected activity retry), one
trace per rollout, a stuck sink that must not slow anything, the quiesce CLI's rows, OTLP export."""

from __future__ import annotations

import asyncio
import gzip
import os
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio import activity
from temporalio.client import Client
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from fleetway.activities.audit.events import AuditContext, Emitter
from fleetway.activities.audit.sinks import PostgresAuditSink
from fleetway.activities.flyway.contract import FlywayInstall
from fleetway.activities.quiesce import PostgresQuiesceController
from fleetway.activities.rollouts import Outcome
from fleetway.activities.secrets.providers import StaticSecretsProvider
from fleetway.activities.sets.digest import scan_set
from fleetway.activities.tenants.static import StaticTenantLister
from fleetway.worker.client.connection import FleetwayClient
from fleetway.worker.dev.stack import PostgresServer
from fleetway.worker.process.run import build_worker
from fleetway.workflows.migrate_all_models import MigrateAllInput, MigrateAllResult
from tests.fleet import Fleet, fleetway, make_fleet
from tests.support import DEMO_MIGRATIONS, wait_until


class FailFirstEmitAfterItRan(Interceptor):
    """Fails ``emit_audit``'s first attempt *after* the event was emitted: Temporal retries it, as it
    would after a worker crash between emitting and reporting completion."""

    def __init__(self) -> None:
        self.injected = 0

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        root = self

        class _Inbound(ActivityInboundInterceptor):
            async def execute_activity(self, input: ExecuteActivityInput) -> Any:
                result = await super().execute_activity(input)
                info = activity.info()
                if info.activity_type == "emit_audit" and info.attempt == 1:
                    root.injected += 1
                    raise RuntimeError("injected: completion lost after the event was emitted")
                return result

        return _Inbound(next)


def audit_database(postgres: PostgresServer, name: str = "") -> str:
    """A separate database for the audit trail (its own DSN, as in production), its tables made once
    by their owner's step (``fleetway audit init``)."""
    name = name or f"audit_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    PostgresAuditSink(postgres.dsn_for(name)).install()
    return postgres.dsn_for(name)


async def run_rollout(client: Client, fleet: Fleet, install: FlywayInstall, emitter: Emitter,
                      interceptors: list[Interceptor] | None = None, **request: Any) -> tuple[str, MigrateAllResult]:  # fmt: skip
    worker = build_worker(
        client, fleet.settings(client.service_client.config.target_host),
        secrets={"default": StaticSecretsProvider({t: fleet.target(t) for t in fleet.tenants})},
        tenant_sources={"default": StaticTenantLister(fleet.tenants)},
        quiesce=fleet.quiesce, flyway_install=install, emitter=emitter, interceptors=interceptors or [],
    )  # fmt: skip
    rollout_id = f"audit-{uuid.uuid4().hex[:8]}"
    async with worker:
        result = await FleetwayClient(client, fleet.task_queue).run(MigrateAllInput(audit=AuditContext(principal="release-bot", git_sha="cafe123"), **request), rollout_id=rollout_id)  # fmt: skip
    return rollout_id, result


async def test_postgres_sink_writes_one_row_per_tenant_outcome_despite_a_retried_emit(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer
) -> None:
    fleet = make_fleet(postgres, 4)
    fleet.break_tenant(fleet.tenants[3])
    dsn = audit_database(postgres)
    emitter = Emitter(PostgresAuditSink(dsn))
    injector = FailFirstEmitAfterItRan()
    _, result = await run_rollout(client, fleet, flyway_install, emitter, [injector], continue_on_error=True)
    assert await asyncio.to_thread(emitter.close, 10)
    assert result.counts == {Outcome.SUCCEEDED: 3, Outcome.FAILED: 1}
    assert injector.injected == 4  # every tenant's emit ran twice
    assert emitter.stats.emitted == 8
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT target, type, outcome, error_class, version, principal, git_sha FROM fleetway_audit_events ORDER BY target"
        ).fetchall()
    assert rows == [
        *[(t, "migration.applied", "success", "", "5", "release-bot", "cafe123") for t in fleet.tenants[:3]],
        (
            fleet.tenants[3],
            "migration.applied",
            "failed",
            "schema_history_corrupt",
            "",
            "release-bot",
            "cafe123",
        ),
    ]
    with psycopg.connect(dsn) as conn:
        sets = conn.execute(
            "SELECT DISTINCT attributes->>'migration.set' FROM fleetway_audit_events"
        ).fetchall()
    assert sets == [(scan_set([DEMO_MIGRATIONS])[0].digest,)]  # the set each tenant ran, failures included


async def test_one_trace_spans_the_rollout_children_flyway_and_audit(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer, spans: InMemorySpanExporter
) -> None:
    fleet = make_fleet(postgres, 3)
    rollout_id, result = await run_rollout(client, fleet, flyway_install, Emitter())
    assert result.counts == {Outcome.SUCCEEDED: 3}
    finished = spans.get_finished_spans()
    (root,) = [s for s in finished if s.name == "StartWorkflow:MigrateAllWorkflow"
               and s.attributes and s.attributes.get("temporalWorkflowID") == rollout_id]  # fmt: skip
    assert root.context is not None
    trace_spans = [
        s for s in finished if s.context is not None and s.context.trace_id == root.context.trace_id
    ]
    names = [s.name for s in trace_spans]
    assert names.count("RunWorkflow:MigrateAllWorkflow") >= 1
    assert names.count("StartChildWorkflow:TenantMigrationWorkflow") == 3
    assert names.count("RunActivity:run_flyway") == 3
    assert names.count("RunActivity:emit_audit") == 3
    audit = [s for s in trace_spans if s.name == "audit.migration.applied"]
    assert sorted(str(s.attributes["audit.target"]) for s in audit if s.attributes) == fleet.tenants
    assert all(s.attributes and s.attributes["audit.principal"] == "release-bot" for s in audit)
    assert all(s.attributes and s.attributes["audit.version"] == "5" for s in audit)


async def test_a_sink_outage_delays_the_audit_and_loses_no_event(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer
) -> None:
    """The audit database is not there when the rollout starts (a real connection failure): each
    tenant's event write is retried, by time, until it appears; then every event is there, once."""
    name = f"audit_{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(audit_database, postgres, f"{name}_ready")  # the table, installed
    emitter = Emitter(PostgresAuditSink(postgres.dsn_for(name)))
    fleet = make_fleet(postgres, 4)
    try:
        rollout = asyncio.create_task(run_rollout(client, fleet, flyway_install, emitter, parallelism=4))
        assert await asyncio.to_thread(wait_until, lambda: emitter.stats.sink_failures >= 4, timeout=120)
        with psycopg.connect(postgres.dsn, autocommit=True) as conn:
            # The sink comes back, table and all, in one step.
            conn.execute(f"CREATE DATABASE {name} TEMPLATE {name}_ready")
        _, result = await rollout
    finally:
        emitter.close(5)
    assert result.counts == {Outcome.SUCCEEDED: 4}
    assert all("audit" not in o.message for o in result.outcomes)
    with psycopg.connect(postgres.dsn_for(name)) as conn:
        rows = conn.execute(
            "SELECT target, count(*) FROM fleetway_audit_events WHERE type = 'migration.applied' GROUP BY target"
        ).fetchall()
    assert sorted(rows) == [(t, 1) for t in sorted(fleet.tenants)]


def test_quiesce_cli_writes_set_and_cleared_rows(postgres: PostgresServer, tmp_path: Path) -> None:
    dsn = audit_database(postgres)
    asyncio.run(PostgresQuiesceController(dsn).install())
    env = {
        **os.environ,
        "FLEETWAY_QUIESCE__DSN": dsn,
        "FLEETWAY_AUDIT__SINK": "postgres",
        "FLEETWAY_AUDIT__DSN": dsn,
    }
    assert (
        fleetway(
            "quiesce", "set", "--reason", "db upgrade", "--ttl", "10m", "--by", "alice", env=env
        ).returncode
        == 0
    )
    assert fleetway("quiesce", "clear", "--by", "bob", env=env).returncode == 0
    assert fleetway("quiesce", "status", env=env).returncode == 0  # status is not an audited change
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT type, target, principal, outcome, attributes->>'quiesce.reason' FROM fleetway_audit_events ORDER BY recorded_at"
        ).fetchall()
    assert rows == [("quiesce.set", "global", "alice", "success", "db upgrade"),
                    ("quiesce.cleared", "global", "bob", "success", "db upgrade")]  # fmt: skip


@pytest.fixture
def otlp_collector() -> Iterator[tuple[str, list[ExportTraceServiceRequest]]]:
    """A real OTLP/HTTP endpoint on loopback that keeps what it receives."""
    received: list[ExportTraceServiceRequest] = []

    class _Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            if self.path == "/v1/traces":
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                received.append(request)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


def test_otel_env_exports_audit_spans_over_otlp(
    postgres: PostgresServer, otlp_collector: tuple[str, list[ExportTraceServiceRequest]]
) -> None:
    endpoint, received = otlp_collector
    table = f"q_{uuid.uuid4().hex[:8]}"
    asyncio.run(PostgresQuiesceController(postgres.dsn, table=table).install())
    env = {**os.environ, "FLEETWAY_QUIESCE__DSN": postgres.dsn, "FLEETWAY_QUIESCE__TABLE": table,
           "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_SERVICE_NAME": "fleetway-test"}  # fmt: skip
    done = fleetway("quiesce", "set", "--reason", "traced", "--by", "carol", env=env)
    assert done.returncode == 0, done.stderr
    spans = [
        (span, resource)
        for request in received
        for resource in request.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    ]
    ((span, resource),) = [(s, r) for s, r in spans if s.name == "audit.quiesce.set"]
    attributes = {a.key: a.value.string_value for a in span.attributes}
    assert attributes["audit.principal"] == "carol" and attributes["audit.attr.quiesce.reason"] == "traced"
    assert {a.key: a.value.string_value for a in resource.resource.attributes}[
        "service.name"
    ] == "fleetway-test"
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT")
    received.clear()
    assert fleetway("quiesce", "clear", "--by", "carol", env=env).returncode == 0
    assert received == []  # no OTEL_* export settings: nothing is sent


async def test_a_sink_that_may_not_insert_stops_the_rollout_at_once_by_name(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer
) -> None:
    """A missing grant is a configuration error: dispatch stops at the first refusal, named; before,
    each tenant's emit was retried for its whole budget (15 minutes) and nothing was recorded."""
    fleet = make_fleet(postgres, 6)
    dsn = audit_database(postgres)
    reader = f"ar_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {reader} LOGIN PASSWORD 'a-long-enough-password'")
        conn.execute(f"GRANT SELECT ON fleetway_audit_events TO {reader}")  # no INSERT
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    denied = psycopg.conninfo.make_conninfo(dsn, user=reader, password="a-long-enough-password")
    assert info["user"] != reader
    emitter = Emitter(PostgresAuditSink(denied))
    _, result = await asyncio.wait_for(
        run_rollout(client, fleet, flyway_install, emitter, parallelism=1, continue_on_error=True), 120
    )
    emitter.close()
    assert result.status.value == "failed"
    assert any("audit sink refuses events" in w and "GRANT INSERT" in w for w in result.warnings), (
        result.warnings
    )
    assert result.total < len(fleet.tenants)  # stopped at once, not tenant after tenant
