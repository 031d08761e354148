"""The audit emitter (span, log, bounded sink queue, counters) and the two durable sinks."""

from __future__ import annotations

import json
import logging
import stat
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from fleetway.activities.audit.events import AuditEvent, AuditEventType, AuditOutcome, Emitter
from fleetway.activities.audit.sinks import JsonlAuditSink, PostgresAuditSink
from fleetway.activities.errors import AuditNotWritableError, ConfigurationError
from fleetway.worker.dev.stack import PostgresServer

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def event(n: int = 0, **kw: object) -> AuditEvent:
    fields: dict[str, object] = {
        "event_id": f"ev-{uuid.uuid4().hex}-{n}", "type": AuditEventType.MIGRATION_APPLIED, "target": f"tenant_{n}",
        "principal": "ci-bot", "started_at": T0, "completed_at": T0 + timedelta(seconds=2),
        "outcome": AuditOutcome.SUCCESS, "version": "5", "git_sha": "abc123", "pipeline_run_id": "run-9",
        "attributes": {"migration.applied_count": "5"},
    }  # fmt: skip
    fields.update(kw)
    return AuditEvent.model_validate(fields)


def counter(reader: InMemoryMetricReader, name: str) -> int:
    data = reader.get_metrics_data()
    total = 0
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == name:
                    total += sum(int(p.value) for p in metric.data.data_points)  # type: ignore[union-attr,misc]
    return total


class Recording:
    def __init__(self) -> None:
        self.events: list[AuditEvent] = []
        self.closed = False

    def record(self, ev: AuditEvent) -> None:
        self.events.append(ev)

    def verify(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def test_span_log_and_sink_carry_the_event(
    spans: InMemorySpanExporter, caplog: pytest.LogCaptureFixture
) -> None:
    sink = Recording()
    emitter = Emitter(sink)
    with caplog.at_level(logging.INFO, logger="fleetway.activities.audit.events"):
        emitter.emit(event(1))
        emitter.emit(event(2, outcome=AuditOutcome.FAILED, error_class="checksum_mismatch"))
    assert emitter.close(timeout_s=5) and sink.closed
    assert [e.target for e in sink.events] == ["tenant_1", "tenant_2"]
    ok, failed = spans.get_finished_spans()
    assert ok.name == "audit.migration.applied"
    assert ok.attributes is not None and ok.attributes["audit.target"] == "tenant_1"
    assert ok.attributes["audit.principal"] == "ci-bot" and ok.attributes["audit.git_sha"] == "abc123"
    assert ok.attributes["audit.attr.migration.applied_count"] == "5"
    assert (ok.start_time, ok.end_time) == (int(T0.timestamp() * 1e9), int((T0.timestamp() + 2) * 1e9))
    assert failed.status.status_code is StatusCode.ERROR and failed.status.description == "checksum_mismatch"
    levels = [(r.levelno, r.audit["target"]) for r in caplog.records if hasattr(r, "audit")]
    assert levels == [(logging.INFO, "tenant_1"), (logging.ERROR, "tenant_2")]


def test_empty_principal_becomes_the_sentinel_with_a_warning(
    spans: InMemorySpanExporter, caplog: pytest.LogCaptureFixture
) -> None:
    sink = Recording()
    emitter = Emitter(sink)
    emitter.emit(event(principal="  "))
    emitter.close()
    assert sink.events[0].principal == "<unspecified>"
    assert "without a principal" in caplog.text


def test_a_blocked_sink_never_blocks_emit_drops_are_counted_and_close_honours_its_deadline() -> None:
    release, entered = threading.Event(), threading.Event()

    class Blocked(Recording):
        def record(self, ev: AuditEvent) -> None:
            entered.set()
            release.wait()
            super().record(ev)

    reader = InMemoryMetricReader()
    sink = Blocked()
    emitter = Emitter(sink, queue_size=4, meter=MeterProvider(metric_readers=[reader]).get_meter("t"))
    emitter.emit(event(0))
    assert entered.wait(5)  # the consumer holds event 0; the queue (4) is empty
    for n in range(1, 101):
        emitter.emit(event(n))  # returns at once although the sink is stuck
    assert emitter.stats.sink_drops == 96
    assert counter(reader, "fleetway.audit.sink_drops") == 96
    assert counter(reader, "fleetway.audit.events") == 101
    assert emitter.close(timeout_s=0.3) is False  # still blocked: close gives up at its deadline
    release.set()  # the abandoned consumer still delivers what it had queued
    deadline = time.monotonic() + 5
    while len(sink.events) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [e.target for e in sink.events] == ["tenant_0", "tenant_1", "tenant_2", "tenant_3", "tenant_4"]


def test_a_raising_sink_is_counted_and_later_events_still_arrive(caplog: pytest.LogCaptureFixture) -> None:
    class Flaky(Recording):
        def record(self, ev: AuditEvent) -> None:
            if ev.target in {"tenant_1", "tenant_3"}:
                raise OSError("disk full")
            super().record(ev)

    reader = InMemoryMetricReader()
    sink = Flaky()
    emitter = Emitter(sink, meter=MeterProvider(metric_readers=[reader]).get_meter("t"))
    for n in range(5):
        emitter.emit(event(n))
    assert emitter.close()
    assert [e.target for e in sink.events] == ["tenant_0", "tenant_2", "tenant_4"]
    assert emitter.stats.sink_failures == 2 == counter(reader, "fleetway.audit.sink_failures")
    assert "audit sink delivery failed (OSError)" in caplog.text


def test_postgres_sink_is_idempotent_append_only_and_schema_qualified(postgres: PostgresServer) -> None:
    schema = f"audit_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    table = f"{schema}.events"
    sink = PostgresAuditSink(postgres.dsn, table=table)
    sink.install()
    first = event(1)
    sink.record(first)
    sink.record(first)  # a retried activity: same event id
    sink.record(event(2, outcome=AuditOutcome.FAILED, error_class="lock_timeout"))
    sink.close()
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        rows = conn.execute(
            f"SELECT target, outcome, error_class, principal, attributes FROM {table} ORDER BY target"
        ).fetchall()
        assert rows == [
            ("tenant_1", "success", "", "ci-bot", {"migration.applied_count": "5"}),
            ("tenant_2", "failed", "lock_timeout", "ci-bot", {"migration.applied_count": "5"}),
        ]
        for statement in (
            f"UPDATE {table} SET outcome = 'success'",
            f"DELETE FROM {table}",
            f"TRUNCATE {table}",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                conn.execute(statement)
    again = PostgresAuditSink(postgres.dsn, table=table)
    again.install()  # idempotent DDL on an existing table
    again.record(event(3))
    again.close()


def test_postgres_sink_reconnects_after_its_connection_is_killed(postgres: PostgresServer) -> None:
    table = f"audit_{uuid.uuid4().hex[:8]}"
    sink = PostgresAuditSink(postgres.dsn, table=table)
    sink.install()
    sink.record(event(1))
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE %s AND pid <> pg_backend_pid()",
            (f"%{table}%",),
        )
    sink.record(event(2))
    sink.close()
    with psycopg.connect(postgres.dsn) as conn:
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (2,)


async def test_the_audit_trail_runs_on_an_insert_only_role_and_a_missing_grant_is_named(
    postgres: PostgresServer,
) -> None:
    """The documented writer role (INSERT, SELECT) writes the trail; it never needs DDL. Without the
    grant, or the table, the sink says so by name at once, a configuration error never retried."""
    table = f"audit_{uuid.uuid4().hex[:8]}"
    writer = f"aw_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {writer} LOGIN PASSWORD 'a-long-enough-password'")
    dsn = f"host=127.0.0.1 port={postgres.port} dbname=postgres user={writer} password=a-long-enough-password"

    with pytest.raises(AuditNotWritableError, match="fleetway audit init"):
        PostgresAuditSink(dsn, table=table).verify()
    PostgresAuditSink(postgres.dsn, table=table).install()  # the owner's step, no grant yet
    denied = Emitter(PostgresAuditSink(dsn, table=table))
    with pytest.raises(AuditNotWritableError, match="GRANT INSERT, SELECT") as refused:
        await denied.record(event(1))
    assert not refused.value.retryable
    denied.close()

    PostgresAuditSink(postgres.dsn, table=table).install(grant_to=writer)
    sink = PostgresAuditSink(dsn, table=table)
    sink.verify()
    once = event(1)
    sink.record(once)
    sink.record(once)  # a retried emit: deduplicated (ON CONFLICT needs no more than INSERT)
    sink.close()
    with psycopg.connect(postgres.dsn) as conn:
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (1,)
        privileges = conn.execute(
            "SELECT privilege_type FROM information_schema.role_table_grants WHERE grantee = %s ORDER BY 1",
            (writer,),
        ).fetchall()
    assert privileges == [("INSERT",), ("SELECT",)]


def test_unsafe_audit_table_names_are_refused() -> None:
    for bad in ["events; DROP TABLE x", "a.b.c", "1events", 'ev"ents']:
        with pytest.raises(ConfigurationError, match="not a safe"):
            PostgresAuditSink("postgresql://unused", table=bad)


def test_jsonl_sink_appends_once_per_event_id_with_private_permissions(tmp_path: Path) -> None:
    path = tmp_path / "audit" / "events.jsonl"
    sink = JsonlAuditSink(path)
    first = event(1)
    for ev in (first, event(2), first):
        sink.record(ev)
    sink.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["target"] for line in lines] == ["tenant_1", "tenant_2"]
    assert lines[0]["event_id"] == first.event_id and lines[0]["type"] == "migration.applied"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
