"""The kill loop: a worker SIGKILLed again and again mid-rollout, judged by ``flyway_schema_history``.

The suite runs it at 50 tenants (``tests/workflows/test_faults.py``); ``./dev faults``
(``bench/faults.py``) runs it at any size. Every tenant's table is read afterwards and compared
with what the rollout reported.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from temporalio.client import Client

from fleetway.activities.rollouts import Outcome, TenantOutcome
from fleetway.worker.client.connection import FleetwayClient
from fleetway.worker.config.client import connect
from fleetway.worker.config.settings import TemporalConfig
from fleetway.workflows.migrate_all_models import MigrateAllInput, MigrateAllResult
from tests.fleet import FLEETWAY, Fleet
from tests.support import copy_migrations, live_processes

__all__ = [
    "KillLoopReport",
    "fault_migrations",
    "history_rows",
    "kill_loop",
    "report_problems",
    "worker_children",
]


def history_rows(dsn: str, schema: str) -> list[tuple[str, bool, str]]:
    """(version, success, installed_by) of a schema's versioned history rows; [] without a table."""
    with psycopg.connect(dsn) as conn:
        try:
            rows = conn.execute(
                f'SELECT version, success, installed_by FROM "{schema}".flyway_schema_history '
                "WHERE version IS NOT NULL ORDER BY installed_rank"
            ).fetchall()
        except psycopg.errors.UndefinedTable:
            return []
    return [(str(v), bool(s), str(b)) for v, s, b in rows]


def report_problems(
    outcome: TenantOutcome | None,
    rows: list[tuple[str, bool, str]],
    marker: str,
    *,
    expected: list[str] | None = None,
) -> list[str]:
    """How ``outcome`` disagrees with the tenant's table ([] = it is the table's truth).

    Checked independently of fleetway's own summary code: every version at most once and
    successful; the versions this rollout applied (rows carrying ``marker``) and the version now
    equal the report; a non-success names what it applied. With ``expected``, the tenant must
    hold exactly those versions.
    """
    problems: list[str] = []
    versions = [v for v, _, _ in rows]
    if len(set(versions)) != len(versions):
        problems.append(f"a version applied twice: {versions}")
    if not all(ok for _, ok, _ in rows):
        problems.append(f"failed rows: {[v for v, ok, _ in rows if not ok]}")
    if expected is not None and versions != expected:
        problems.append(f"table holds {versions}, expected {expected}")
    if outcome is None:
        return [*problems, "no outcome reported"]
    ours = [v for v, ok, by in rows if ok and by == marker]
    now = next((v for v, ok, _ in reversed(rows) if ok), "")
    if outcome.applied_versions != ours or outcome.applied != len(ours):
        problems.append(f"reported applied {outcome.applied_versions}, table shows {ours} by this rollout")
    if (outcome.outcome is Outcome.SUCCEEDED or outcome.source is not None) and outcome.version_after != now:
        problems.append(f"reported version {outcome.version_after!r}, table is at {now!r}")
    if outcome.outcome is not Outcome.SUCCEEDED and ours and f"V{ours[0]}" not in outcome.message:
        problems.append(f"{outcome.outcome.value} message does not say what was applied: {outcome.message!r}")
    return problems


def worker_children(pid: int) -> list[int]:
    """Live (non-zombie) processes whose parent is ``pid`` (a CLI-engine worker's Flyway JVMs)."""
    return [child for child, parent, _ in live_processes() if parent == pid]


@dataclass
class KillLoopReport:
    """What one kill loop did and what the tables say about its report."""

    engine: str
    tenants: int
    parallelism: int
    kills: int = 0
    wall_s: float = 0.0
    status: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    orphans_seen: int = 0
    orphan_max_s: float = 0.0
    orphans_over_1s: int = 0
    max_attempts: int = 0
    lost_attempts: int = 0  # children whose history shows a Flyway call or a task lost with a worker
    misreported: dict[str, list[str]] = field(default_factory=dict)

    def line(self) -> str:
        """One human line of figures."""
        return (
            f"{self.engine}: {self.tenants} tenants, P={self.parallelism}: {self.status} in {self.wall_s:.1f}s "
            f"after {self.kills} kills; counts {self.counts}; max attempts {self.max_attempts}; "
            f"{self.lost_attempts} tenants with a lost attempt; "
            f"{self.orphans_seen} Flyway processes at kill time, longest survivor {self.orphan_max_s:.2f}s, "
            f"{self.orphans_over_1s} over 1 s; misreported tenants: {len(self.misreported)}"
        )


_LOST = ("workflow_task_timed_out_event_attributes", "workflow_task_failed_event_attributes",
         "activity_task_timed_out_event_attributes")  # fmt: skip


async def _lost_attempts(client: Client, rollout_id: str, tenants: list[str]) -> int:
    """Children whose history shows a task or an activity lost (a killed worker's work)."""
    lost = 0
    for tenant in tenants:
        events = [
            e async for e in client.get_workflow_handle(f"{rollout_id}/{tenant}").fetch_history_events()
        ]
        lost += any(e.WhichOneof("attributes") in _LOST for e in events)
    return lost


async def kill_loop(
    fleet: Fleet,
    env: dict[str, str],
    *,
    engine: str,
    parallelism: int = 8,
    kill_every: tuple[float, float] = (3.0, 6.0),
    max_kills: int | None = None,
    seed: int = 0,
    timeout_s: float = 900,
) -> KillLoopReport:
    """Run one rollout over ``fleet`` while killing its worker (see the module docstring).

    ``env`` is a ``fleetway worker`` environment serving ``fleet`` (``Fleet.cli_env``).
    """
    rng = random.Random(seed)  # noqa: S311 - kill timing, not cryptography
    # A killed worker cannot remove its runs' scratch folders: give the workers a private TMPDIR
    # that this loop removes at the end.
    worker_tmp = tempfile.mkdtemp(prefix="fleetway-killloop-")
    env = {
        **env, "FLEETWAY_FLYWAY__ENGINE": engine, "FLEETWAY_WORKER__GRACEFUL_SHUTDOWN_S": "0", "TMPDIR": worker_tmp,
    }  # fmt: skip
    report = KillLoopReport(engine=engine, tenants=len(fleet.tenants), parallelism=parallelism)
    client = await connect(TemporalConfig(address=env["FLEETWAY_TEMPORAL__ADDRESS"]))

    def start_worker() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [FLEETWAY, "worker"], env=env, start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    worker = start_worker()
    started = time.monotonic()
    handle = (
        await FleetwayClient(client, fleet.task_queue).start(
            MigrateAllInput(parallelism=parallelism, heartbeat_timeout_s=3, continue_on_error=True),
            rollout_id=f"faults-{engine}-{uuid.uuid4().hex[:8]}",
        )
    ).handle
    result_task = asyncio.ensure_future(handle.result())
    try:
        while not result_task.done():
            if max_kills is not None and report.kills >= max_kills:
                await asyncio.wait({result_task}, timeout=timeout_s - (time.monotonic() - started))
                break
            done, _ = await asyncio.wait({result_task}, timeout=rng.uniform(*kill_every))
            if done or time.monotonic() - started > timeout_s:
                break
            children = worker_children(worker.pid)
            os.kill(worker.pid, signal.SIGKILL)  # the worker only: its Flyway JVMs must die with it
            killed_at = time.monotonic()
            worker.wait()
            report.kills += 1
            report.orphans_seen += len(children)
            worker = start_worker()
            survived, over_1s = await _outlived(children, killed_at)
            report.orphan_max_s = max(report.orphan_max_s, survived)
            report.orphans_over_1s += over_1s
        result: MigrateAllResult = await asyncio.wait_for(
            result_task, timeout=max(1.0, timeout_s - (time.monotonic() - started))
        )
    finally:
        result_task.cancel()
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        shutil.rmtree(worker_tmp, ignore_errors=True)
    report.wall_s = time.monotonic() - started
    report.status = result.status.value
    report.counts = {k.value: v for k, v in result.counts.items()}
    outcomes = {o.tenant_id: o for o in result.outcomes}
    expected = _expected_versions(fleet)
    report.max_attempts = max((o.attempts for o in result.outcomes), default=0)
    report.lost_attempts = await _lost_attempts(client, handle.id, fleet.tenants)
    for tenant in fleet.tenants:
        rows = history_rows(fleet.postgres.dsn, tenant)
        problems = report_problems(outcomes.get(tenant), rows, result.history_marker, expected=expected)
        if outcomes.get(tenant) and outcomes[tenant].outcome is not Outcome.SUCCEEDED:
            problems.append(f"not succeeded: {outcomes[tenant].message}")
        if problems:
            report.misreported[tenant] = problems
    return report


async def _outlived(children: list[int], killed_at: float) -> tuple[float, int]:
    """Seconds until the last of ``children`` died (≤ 10 s watched), and how many lived past 1 s."""
    over_1s, elapsed = 0, 0.0
    checked = False
    while children:
        live = {pid for pid, _, _ in live_processes()}
        alive = [p for p in children if p in live]
        elapsed = time.monotonic() - killed_at
        if not checked and elapsed >= 1:
            over_1s, checked = len(alive), True
        if not alive or elapsed > 10:
            break
        await asyncio.sleep(0.02)
    return elapsed, over_1s


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def _expected_versions(fleet: Fleet) -> list[str]:
    names = [p.name for p in fleet.locations.glob("V*__*.sql")]
    return sorted((n[1 : n.index("__")].replace("_", ".") for n in names), key=_version_key)


def fault_migrations(dest: Path, *, sleep_s: float) -> Path:
    """The demo scripts plus a V6 that holds its transaction ``sleep_s`` (kills land mid-migration)."""
    scripts = copy_migrations(dest)
    (scripts / "V6__settle.sql").write_text(f"SELECT pg_sleep({sleep_s});\n")
    return scripts
