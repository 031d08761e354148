"""The no-op benchmark (issue 25): a fleet with nothing to do, the fast path against the full path.

``./dev bench --noop 10000 [--noop-full 1000]``

Every tenant's ``flyway_schema_history`` is a copy of the one real Flyway wrote for a template
schema (the demo set, or ``--migrations DIR`` with its ``--placeholder`` values, fully applied), so every
tenant is current and its table is Flyway's own. A set with a repeatable goes through its releases
first (``bench/history.py``: the repeatable edited twice, each applied), so the no-op is measured on
histories where it was applied three times; a repeatable whose checksum depends on the tenant
(``${tenant_id}``) gets each tenant's own checksum in its latest row, as that tenant's run would write.
One ``fleetway worker`` (JVM engine) serves, and in the same run:

- ``fast validate`` / ``fast migrate``: rollouts over the whole source, tables read first (default);
- ``full validate`` / ``full migrate``: ``skip_current=False`` over the first ``--noop-full``
  tenants, every tenant a child and a Flyway run (projected to the full size per tenant);
- ``fleet read`` and ``wait poll``: ``FleetStateWorkflow`` over the whole source, and one
  ``wait --at-least`` read (its extra cost is the laggard bookkeeping).

Prints wall times, per-tenant figures, the full/fast ratio and the worker's peak RSS.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from bench.actions import count_actions
from bench.history import releases
from bench.run import FLEETWAY, Bench, _peak_rss_mb
from fleetway.activities.fleet.state import ReadFleetInput
from fleetway.activities.flyway.checksums import (
    SetMigration,
    read_set_migrations,
    repeatable_checksum,
    version_key,
)
from fleetway.activities.flyway.cli_engine import FlywayRunner
from fleetway.activities.flyway.contract import FlywaySettings, placeholder_values
from fleetway.activities.flyway.output import Action
from fleetway.activities.flyway.request import FlywayRequest
from fleetway.activities.rollouts import Outcome
from fleetway.worker.client.connection import FleetwayClient
from fleetway.worker.config.client import connect
from fleetway.worker.config.settings import TemporalConfig
from fleetway.workflows.migrate_all_models import MigrateAllInput

__all__ = ["noop_benchmark"]

_CLONE_BATCH = 250


async def _fleet(bench: Bench, size: int) -> tuple[list[str], Path, list[str]]:
    """A template taken through the set's releases by real Flyway, then ``size`` copies of its history.

    Returns the schemas, the folder of the last release (what the worker serves) and the releases' names.
    """
    template = f"noop_tmpl_{uuid.uuid4().hex[:6]}"
    runner = FlywayRunner(bench.stack.flyway, FlywaySettings(locations=(bench.migrations,)))
    stages = releases(bench.migrations, bench.workdir)
    for _, folder in stages:
        await runner.run(
            FlywayRequest(action=Action.MIGRATE, flyway=bench.flyway_options, tenant_id=template),
            bench.target(template),
            locations=(folder,),
        )
    last = stages[-1][1]
    schemas = [f"noop{uuid.uuid4().hex[:4]}_{i:05d}" for i in range(size)]
    conninfo = bench.stack.postgres.dsn
    per_tenant = [
        m
        for m in read_set_migrations(last).repeatables.values()
        if {p.lower() for p in m.placeholders} & _TENANT_NAMES
    ]
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for start in range(0, size, _CLONE_BATCH):
            statements: list[sql.Composable] = []
            for schema in schemas[start : start + _CLONE_BATCH]:
                table = sql.Identifier(schema, "flyway_schema_history")
                source = sql.Identifier(template, "flyway_schema_history")
                statements.append(
                    sql.SQL(
                        "CREATE SCHEMA {s} AUTHORIZATION {role}; "
                        "CREATE TABLE {t} (LIKE {src} INCLUDING ALL); INSERT INTO {t} SELECT * FROM {src}; "
                        "ALTER TABLE {t} OWNER TO {role};"
                    ).format(s=sql.Identifier(schema), t=table, src=source, role=sql.Identifier(bench.role))
                )
                statements += [_own_checksum(bench, schema, m) for m in per_tenant]
            with conn.transaction():
                conn.execute(sql.SQL(" ").join(statements))
            print(f"  cloned {min(start + _CLONE_BATCH, size)}/{size} histories", file=sys.stderr)
    return schemas, last, [name for name, _ in stages]


_TENANT_NAMES = frozenset(
    {"tenant_id", "tenant_schema", "flyway:defaultschema"}
)  # lower-cased, as Flyway matches


def _own_checksum(bench: Bench, schema: str, migration: SetMigration) -> sql.Composable:
    """The tenant's own checksum in the latest row of a repeatable whose text names the tenant."""
    values = placeholder_values(schema, bench.target(schema), bench.flyway_options.placeholders)
    table = sql.Identifier(schema, "flyway_schema_history")
    return sql.SQL(
        "UPDATE {t} SET checksum = {c} WHERE installed_rank = "
        "(SELECT max(installed_rank) FROM {t} WHERE version IS NULL AND description = {d});"
    ).format(
        t=table, c=sql.Literal(repeatable_checksum(migration, values)), d=sql.Literal(migration.description)
    )


async def noop_benchmark(bench: Bench, size: int, full: int) -> dict[str, Any]:
    """Run the phases; returns the report's ``noop`` section."""
    print(f"no-op fleet of {size} tenants (history copies of a real Flyway run)", file=sys.stderr)
    schemas, served, stages = await _fleet(bench, size)
    full = min(full, size)
    task_queue = f"bench-noop-{uuid.uuid4().hex[:8]}"
    env = bench.worker_env(task_queue, "jvm", schemas, [], migrations=served)
    top = max((m.version for m in read_set_migrations(served).versioned.values()), key=version_key)
    worker = subprocess.Popen([FLEETWAY, "worker"], env=env, start_new_session=True)
    client = await connect(TemporalConfig(address=bench.stack.temporal.address, task_queue=task_queue))
    phases: dict[str, dict[str, Any]] = {}

    async def rollout(name: str, count: int, **fields: Any) -> None:
        bench.settle()
        started = time.monotonic()
        rollout_id = f"bench-noop-{uuid.uuid4().hex[:8]}"
        result = await FleetwayClient(client, task_queue).run(
            MigrateAllInput(
                parallelism=bench.args.parallelism, drift_check=False, flyway=bench.flyway_options, **fields
            ),
            rollout_id=rollout_id,
        )
        wall = time.monotonic() - started
        cost = await count_actions(client, rollout_id)
        phases[name] = {
            "tenants": count,
            "wall_s": round(wall, 2),
            "ms_per_tenant": round(wall / count * 1000, 2),
            "current": result.counts.get(Outcome.CURRENT, 0),
            "flyway_runs": result.total - result.counts.get(Outcome.CURRENT, 0),
            "failures": result.counts.get(Outcome.FAILED, 0),
            "runs": result.runs,
            "actions": cost.total,
            "actions_per_tenant": cost.per(count),
            "action_kinds": dict(cost.kinds),
        }
        print(
            f"  {name:<16} {count:>6} tenants {wall:>8.1f}s {cost.per(count)} actions/tenant", file=sys.stderr
        )

    async def read(name: str, **fields: Any) -> None:
        started = time.monotonic()
        report = await FleetwayClient(client, task_queue).read_fleet(
            ReadFleetInput(placeholders=bench.flyway_options.placeholders, **fields)
        )
        wall = time.monotonic() - started
        phases[name] = {
            "tenants": report.total,
            "wall_s": round(wall, 2),
            "ms_per_tenant": round(wall / max(report.total, 1) * 1000, 3),
            "current": report.states.get("current", 0),
        }
        print(f"  {name:<16} {report.total:>6} tenants {wall:>8.1f}s", file=sys.stderr)

    try:
        subset = schemas[:full]
        # Untimed: the worker's JVM warmed on a few full runs, as a long-lived worker's is.
        await FleetwayClient(client, task_queue).run(
            MigrateAllInput(
                action=Action.VALIDATE,
                tenants=schemas[: min(40, size)],
                skip_current=False,
                flyway=bench.flyway_options,
            ),
            rollout_id=f"bench-noop-warm-{uuid.uuid4().hex[:6]}",
        )
        for action in (Action.VALIDATE, Action.MIGRATE):
            await rollout(f"fast {action.value}", size, action=action, continue_on_error=True)
            await rollout(
                f"full {action.value}", full, action=action, tenants=subset, skip_current=False,
                continue_on_error=True,
            )  # fmt: skip
        await read("fleet read")
        await read("wait poll", at_least=top)
        rss = _peak_rss_mb(worker.pid)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    ratios = {
        f"{action}: full / fast, per tenant": round(
            phases[f"full {action}"]["ms_per_tenant"] / phases[f"fast {action}"]["ms_per_tenant"], 1
        )
        for action in ("validate", "migrate")
    }
    projected = {
        f"{action}: full path projected to {size} tenants, s": round(
            phases[f"full {action}"]["ms_per_tenant"] * size / 1000, 1
        )
        for action in ("validate", "migrate")
    }
    return {
        "set": str(bench.migrations),
        "releases": stages,
        "tenants": size,
        "full_path_tenants": full,
        "parallelism": bench.args.parallelism,
        "phases": phases,
        "ratios": ratios,
        "projected": projected,
        "wait_poll_extra_s": round(phases["wait poll"]["wall_s"] - phases["fleet read"]["wall_s"], 2),
        "worker_peak_rss_mb": rss,
    }


def noop_markdown(data: dict[str, Any]) -> str:
    """The no-op section of ``latest.md``."""
    lines = [
        f"No-op fleet: {data['tenants']} tenants (full path over {data['full_path_tenants']}), "
        f"parallelism {data['parallelism']}, worker peak RSS {data['worker_peak_rss_mb']} MB; "
        f"set {data['set']} after {', then '.join(data['releases'])}",
        "",
        "| phase | tenants | wall s | ms/tenant | proven current | Flyway runs | actions/tenant | runs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, p in data["phases"].items():
        lines.append(
            f"| {name} | {p['tenants']} | {p['wall_s']} | {p['ms_per_tenant']} | {p.get('current', '')} "
            f"| {p.get('flyway_runs', '')} | {p.get('actions_per_tenant', '')} | {p.get('runs', '')} |"
        )
    lines += ["", "| figure | value |", "|---|---|"]
    lines += [f"| {k} | {v}× |" for k, v in data["ratios"].items()]
    lines += [f"| {k} | {v} |" for k, v in data["projected"].items()]
    lines.append(f"| wait poll over a fleet read, s | {data['wait_poll_extra_s']} |")
    return "\n".join(lines) + "\n"
