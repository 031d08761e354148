"""Helpers the tests share: reading real state back out of PostgreSQL and the process table."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import psycopg
from temporalio.api.history.v1 import HistoryEvent

from fleetway.worker.dev.stack import PROJECT_ROOT, PostgresServer

DEMO_MIGRATIONS = PROJECT_ROOT / "migrations" / "demo"


def history(postgres: PostgresServer, schema: str) -> list[tuple[str, bool]]:
    """(version, success) rows of the schema's flyway_schema_history, in installed order."""
    with psycopg.connect(postgres.dsn) as conn:
        rows = conn.execute(
            f'SELECT version, success FROM "{schema}".flyway_schema_history '
            "WHERE version IS NOT NULL ORDER BY installed_rank"
        ).fetchall()
    return [(str(v), bool(s)) for v, s in rows]


def schema_exists(postgres: PostgresServer, schema: str) -> bool:
    with psycopg.connect(postgres.dsn) as conn:
        row = conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()
    return bool(row and row[0])


def copy_migrations(dest: Path, *, upto: int = 99) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for script in sorted(DEMO_MIGRATIONS.glob("V*.sql")):
        if int(script.name[1 : script.name.index("__")]) <= upto:
            (dest / script.name).write_text(script.read_text())
    return dest


def live_processes() -> Iterator[tuple[int, int, bytes]]:
    """(pid, parent pid, command line) of every live, non-zombie process, read from /proc."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            stat = (proc / "stat").read_text().rsplit(") ", 1)[1].split()
        except OSError:
            continue
        if stat[0] != "Z":
            yield int(proc.name), int(stat[1]), cmdline


def java_pids(marker: str) -> list[int]:
    """PIDs of live processes whose command line contains ``marker`` (e.g. a test's schema)."""
    return [pid for pid, _, cmdline in live_processes() if marker.encode() in cmdline and b"java" in cmdline]


def wait_until(predicate: Callable[[], bool], *, timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


def activity_calls(events: Iterable[HistoryEvent]) -> list[str]:
    """The activity types a workflow called, task-queue activities and local ones (their markers)."""
    calls = []
    for e in events:
        if e.HasField("activity_task_scheduled_event_attributes"):
            calls.append(e.activity_task_scheduled_event_attributes.activity_type.name)
        elif e.marker_recorded_event_attributes.marker_name == "core_local_activity":
            data = e.marker_recorded_event_attributes.details["data"].payloads[0].data
            calls.append(json.loads(data)["activity_type"])
    return calls
