"""The fleet benchmark: the shell loop users write today vs fleetway with each Flyway engine.

``./dev bench [--tenants 200] [--parallelism 4[,8,16]] [--engines cli,jvm] [--skip-baseline] [--skip-raw]``

On the embedded stack (one PostgreSQL, the Temporal dev server, the pinned Flyway), each phase gets
a fresh fleet of N schemas and runs the repo's sample migrations (5 scripts: tables, indexes, a
50-row backfill), then a no-op validate over the same fleet:

- ``baseline``: the Flyway CLI once per schema with ``xargs -P <parallelism>`` and default JVM flags;
- ``raw-<engine>``: fleetway's engine called in a plain asyncio loop (no Temporal), for the overhead;
- ``fleetway-<engine>``: a real ``fleetway worker`` process and one ``MigrateAllWorkflow`` rollout.

The JVM engine is warmed first on a fleet of its own (``--warmup``, untimed), for the raw engine
and for each fleetway worker alike. Every timed phase starts from a settled database: ``VACUUM ANALYZE`` and a ``CHECKPOINT``, untimed.
Without it a phase paid for the autovacuum of the fleets before it (measured: PostgreSQL used 31.8
CPU-s in a fleetway phase that ran right after the raw phase, 9.2 after a settle; the wall went
from 41 s to 26 s), so the later phase, always fleetway, looked slower than it was. A comma list of
parallelisms repeats the raw and fleetway phases at each one.

It prints tenants per minute, median and p95 per-tenant time, fleetway's orchestration overhead per
tenant (vs the raw engine), the worker's peak RSS, parent history events per run, the ratios
against the baseline, and the CLI engine's JVM start-up with default flags, tuned flags and AppCDS.
Results land in ``bench/results/latest.json`` and ``latest.md``. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from bench.actions import count_actions
from bench.history import history_benchmark, history_markdown
from fleetway.activities.database_target import DatabaseTarget
from fleetway.activities.flyway.cli_engine import FlywayRunner
from fleetway.activities.flyway.contract import FlywayEngine, FlywayInstall, FlywaySettings
from fleetway.activities.flyway.jvm_engine import JvmFlywayEngine
from fleetway.activities.flyway.options import FlywayOptions, parse_placeholders
from fleetway.activities.flyway.output import Action
from fleetway.activities.flyway.request import FlywayRequest
from fleetway.activities.servers.models import ServerControls
from fleetway.worker.client.connection import FleetwayClient
from fleetway.worker.config.client import connect
from fleetway.worker.config.settings import TemporalConfig
from fleetway.worker.dev.stack import PROJECT_ROOT, DevStack, dev_stack
from fleetway.workflows.migrate_all_models import MigrateAllInput
from fleetway.workflows.tenant_migration import IN_TASK_MAX_S

MIGRATIONS = PROJECT_ROOT / "migrations" / "demo"
RESULTS = PROJECT_ROOT / "bench" / "results"
FLEETWAY = str(Path(sys.executable).parent / "fleetway")
SCALE_TENANTS = 2000


@dataclass
class Phase:
    """One measured run over one fleet."""

    name: str
    action: str
    tenants: int
    wall_s: float
    per_tenant_ms: list[float] = field(default_factory=list, repr=False)
    failures: int = 0
    worker_peak_rss_mb: float | None = None
    parent_history_events: list[int] | None = None
    parallelism: int = 0
    worker_cpu_ms: float | None = None  # per tenant: the worker process (Python, Core and its JVM)
    server_cpu_ms: float | None = None  # per tenant: the Temporal dev server
    proven_current: int | None = None  # the default path: tenants its read proved current (no Flyway run)
    actions_per_tenant: float | None = None  # Temporal actions, counted from the histories (bench/actions.py)
    action_kinds: dict[str, int] | None = None

    @property
    def tenants_per_minute(self) -> float:
        return self.tenants / self.wall_s * 60

    def summary(self) -> dict[str, Any]:
        times = sorted(self.per_tenant_ms)
        p95 = times[min(len(times) - 1, int(len(times) * 0.95))] if times else None
        data = {k: v for k, v in asdict(self).items() if k != "per_tenant_ms"}
        data |= {
            "tenants_per_minute": round(self.tenants_per_minute, 1),
            "median_ms": round(statistics.median(times), 1) if times else None,
            "p95_ms": round(p95, 1) if p95 is not None else None,
            "wall_s": round(self.wall_s, 2),
        }
        return data


class Bench:
    """Owns the stack, the benchmark login, and the phases' results."""

    def __init__(self, stack: DevStack, args: argparse.Namespace, workdir: Path) -> None:
        self.stack, self.args, self.workdir = stack, args, workdir
        # The fleet's own set (``--migrations``) and the placeholders its settings give it.
        self.migrations = Path(args.migrations).resolve()
        self.flyway_options = FlywayOptions(placeholders=parse_placeholders(args.placeholder or []))
        self.password = secrets.token_urlsafe(18)
        self.role = "fleetway_bench"
        self.phases: list[Phase] = []
        self._raw_warm: set[str] = set()
        with psycopg.connect(stack.postgres.dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(self.role), sql.Literal(self.password)
                )
            )
            conn.execute(sql.SQL("GRANT CREATE ON DATABASE postgres TO {}").format(sql.Identifier(self.role)))

    def fleet(self, prefix: str, size: int | None = None) -> list[str]:
        count = self.args.tenants if size is None else size
        return [f"{prefix}{self.args.parallelism}_{i:05d}" for i in range(count)]

    def settle(self) -> None:
        """Untimed: finish the database's pending maintenance so no phase pays for the one before."""
        with psycopg.connect(self.stack.postgres.dsn, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
            conn.execute("CHECKPOINT")

    def target(self, schema: str) -> DatabaseTarget:
        return DatabaseTarget(
            host="127.0.0.1",
            port=self.stack.postgres.port,
            database="postgres",
            schema_name=schema,
            user=self.role,
            password=self.password,
        )

    def record(self, phase: Phase) -> None:
        phase.parallelism = self.args.parallelism
        self.phases.append(phase)
        s = phase.summary()
        print(
            f"  {phase.name:<16} {phase.action:<8} {s['wall_s']:>8.1f}s  {s['tenants_per_minute']:>8.1f}/min  "
            f"median {s['median_ms']} ms  p95 {s['p95_ms']} ms  failures {phase.failures}",
            file=sys.stderr,
        )

    # ---- (a) the baseline: xargs -P over the Flyway CLI ---------------------------------------

    def baseline(self, schemas: list[str], action: Action) -> Phase:
        install = self.stack.flyway
        script = self.workdir / "one-tenant.sh"
        script.write_text(
            "#!/bin/sh\n"
            "start=$(date +%s%N)\n"
            f'"{install.java}" -cp "{install.lib_dir}/*" org.flywaydb.commandline.Main -outputType=json '
            f'-skipCheckForUpdate -locations=filesystem:{self.migrations} -schemas="$1" -defaultSchema="$1" '
            f'-placeholders.tenant_id="$1" -placeholders.tenant_schema="$1" {self._placeholder_flags()} '
            f"{action.value} > /dev/null 2>&1\nrc=$?\n"
            'end=$(date +%s%N)\necho "$1 $rc $(( (end - start) / 1000000 ))"\n'
        )
        script.chmod(0o755)
        env = {
            **os.environ,
            "FLYWAY_URL": f"jdbc:postgresql://127.0.0.1:{self.stack.postgres.port}/postgres",
            "FLYWAY_USER": self.role,
            "FLYWAY_PASSWORD": self.password,
        }
        self.settle()
        started = time.monotonic()
        done = subprocess.run(
            ["xargs", "-P", str(self.args.parallelism), "-n", "1", str(script)],
            input="\n".join(schemas),
            env=env,
            capture_output=True,
            text=True,
            check=False,
            cwd=self.workdir,
        )
        wall = time.monotonic() - started
        rows = [line.split() for line in done.stdout.splitlines() if line.strip()]
        return Phase(
            "baseline-xargs",
            action.value,
            len(schemas),
            wall,
            [float(r[2]) for r in rows],
            failures=sum(r[1] != "0" for r in rows),
        )

    def _placeholder_flags(self) -> str:
        return " ".join(f"-placeholders.{k}={v}" for k, v in self.flyway_options.placeholders.items())

    # ---- raw engine: fleetway's engine without Temporal ---------------------------------------

    async def raw(self, engine_name: str, schemas: list[str], action: Action) -> Phase:
        settings = FlywaySettings(locations=(self.migrations,))
        engine: FlywayEngine = (
            FlywayRunner(self.stack.flyway, settings) if engine_name == "cli" else self._jvm(settings)
        )
        gate = asyncio.Semaphore(self.args.parallelism)
        times: list[float] = []
        failures = 0

        async def one(schema: str) -> None:
            nonlocal failures
            async with gate:
                t0 = time.monotonic()
                try:
                    await engine.run(
                        FlywayRequest(action=action, flyway=self.flyway_options, tenant_id=schema),
                        self.target(schema),
                    )
                except Exception:
                    failures += 1
                times.append((time.monotonic() - t0) * 1000)

        if engine_name == "jvm" and "jvm" not in self._raw_warm and self.args.warmup:
            # The process's one JVM stays warm for every later raw phase; so the first is warmed
            # too, as a long-lived worker's is (a cold first phase ran 19 s, a warm one 8 s).
            warm = self.fleet("warmraw", self.args.warmup)
            for step in (Action.MIGRATE, Action.VALIDATE):
                await asyncio.gather(
                    *(
                        engine.run(
                            FlywayRequest(action=step, flyway=self.flyway_options, tenant_id=s),
                            self.target(s),
                        )
                        for s in warm
                    )
                )
            self._raw_warm.add("jvm")
        self.settle()
        started = time.monotonic()
        await asyncio.gather(*(one(s) for s in schemas))
        return Phase(
            f"raw-{engine_name}", action.value, len(schemas), time.monotonic() - started, times, failures
        )

    def _jvm(self, settings: FlywaySettings) -> JvmFlywayEngine:
        engine = JvmFlywayEngine(self.stack.flyway, settings, max_threads=self.args.parallelism + 2)
        engine.start()  # JVM start-up is a once-per-worker cost, not a per-tenant one
        return engine

    # ---- fleetway: a real worker process and one rollout --------------------------------------

    def worker_env(
        self,
        task_queue: str,
        engine_name: str,
        schemas: list[str],
        warm: list[str],
        migrations: Path | None = None,
    ) -> dict[str, str]:
        """A ``fleetway worker`` process's environment: ``schemas`` as its tenant source, the bench's set."""
        tenants_file = self.workdir / f"{task_queue}.txt"
        tenants_file.write_text("\n".join(schemas) + "\n")
        secrets_file = self.workdir / f"{task_queue}-secrets.json"
        secrets_file.write_text(
            json.dumps(
                {
                    "tenants": {
                        s: {**self.target(s).model_dump(mode="json"), "password": self.password}
                        for s in [*schemas, *warm]
                    }
                }
            )
        )
        return {
            **os.environ,
            "FLEETWAY_TEMPORAL__ADDRESS": self.stack.temporal.address,
            "FLEETWAY_TEMPORAL__TASK_QUEUE": task_queue,
            "FLEETWAY_SECRETS__FILE": str(secrets_file),
            "FLEETWAY_TENANTS__KIND": "file",
            "FLEETWAY_TENANTS__FILE": str(tenants_file),
            "FLEETWAY_FLYWAY__LOCATIONS": json.dumps([str(migrations or self.migrations)]),
            "FLEETWAY_FLYWAY__LIB_DIR": str(self.stack.flyway.lib_dir),
            "FLEETWAY_FLYWAY__ENGINE": engine_name,
            "FLEETWAY_WORKER__MAX_CONCURRENT_ACTIVITIES": str(self.args.parallelism + 2),
            "FLEETWAY_WORKER__GRACEFUL_SHUTDOWN_S": "5",
        }

    async def fleetway(
        self,
        engine_name: str,
        schemas: list[str],
        actions: list[Action],
        activity_path: list[str] | None = None,
        servers_off: list[str] | None = None,
    ) -> list[Phase]:
        """Timed rollouts on one worker, after an untimed warm-up.

        With ``activity_path``, each action runs again over that fleet with the Flyway call as a
        task-queue activity; with ``servers_off``, without the per-server keys and checks; the
        rollouts then name their tenants explicitly.
        """
        task_queue = f"bench-{uuid.uuid4().hex[:8]}"
        warm = self.fleet(f"warm{engine_name}", self.args.warmup)
        extra = [*(activity_path or []), *(servers_off or [])]
        env = self.worker_env(task_queue, engine_name, schemas, [*warm, *extra])
        on: ServerControls | None = ServerControls()
        variants: list[tuple[str, list[str], int, ServerControls | None]] = [("", schemas, 600, on)]
        if activity_path:
            variants.append(("-activity", activity_path, IN_TASK_MAX_S + 1, on))
        if servers_off:
            variants.append(("-no-servers", servers_off, 600, None))
        worker = subprocess.Popen([FLEETWAY, "worker"], env=env, start_new_session=True)
        client = await connect(TemporalConfig(address=self.stack.temporal.address, task_queue=task_queue))
        phases = []
        try:
            for action in actions if warm else []:
                # Untimed: the worker's JVM and caches warmed on a fleet of their own, like the raw
                # engine's (a long-lived worker is warm; a cold JIT is not what we compare).
                await FleetwayClient(client, task_queue).run(
                    MigrateAllInput(
                        action=action,
                        tenants=warm,
                        parallelism=self.args.parallelism,
                        drift_check=False,
                        skip_current=False,
                        flyway=self.flyway_options,
                    ),
                    rollout_id=f"bench-warmup-{uuid.uuid4().hex[:6]}",
                )
            for action, (suffix, fleet, flyway_timeout_s, servers) in [
                (a, v) for a in actions for v in variants
            ]:
                rollout_id = f"bench-{engine_name}-{action.value}-{uuid.uuid4().hex[:6]}"
                self.settle()
                cpu = _cpu_s(worker.pid), _cpu_s(self.stack.temporal.pid)
                started = time.monotonic()
                result = await FleetwayClient(client, task_queue).run(
                    MigrateAllInput(
                        action=action,
                        tenants=fleet if extra else [],
                        parallelism=self.args.parallelism,
                        continue_on_error=True,
                        drift_check=False,  # validate only, like the baseline (drift adds an info call)
                        skip_current=False,  # every tenant runs Flyway: the engine comparison
                        flyway_timeout_s=flyway_timeout_s,  # over IN_TASK_MAX_S: a task-queue activity
                        servers=servers,  # None: no server keys, checks or turns (the cost's baseline)
                        flyway=self.flyway_options,
                    ),
                    rollout_id=rollout_id,
                )
                wall = time.monotonic() - started
                cpu_per_tenant = [
                    round((_cpu_s(pid) - before) * 1000 / len(fleet), 1)
                    for pid, before in zip((worker.pid, self.stack.temporal.pid), cpu, strict=True)
                ]
                events: list[int] = []
                for _ in range(50):  # visibility catches up with the closed run(s) asynchronously
                    events = [
                        e.history_length async for e in client.list_workflows(f"WorkflowId = '{rollout_id}'")
                    ]
                    if events and all(events):
                        break
                    await asyncio.sleep(0.2)
                cost = await count_actions(client, rollout_id)
                phase = Phase(
                    f"fleetway-{engine_name}{suffix}",
                    action.value,
                    len(fleet),
                    wall,
                    [float(o.duration_ms) for o in result.outcomes],
                    result.counts.get("failed", 0),  # type: ignore[call-overload]
                    parent_history_events=sorted(events),
                    worker_cpu_ms=cpu_per_tenant[0],
                    server_cpu_ms=cpu_per_tenant[1],
                    actions_per_tenant=cost.per(len(fleet)),
                    action_kinds=dict(cost.kinds),
                )
                phases.append(phase)
            if Action.VALIDATE in actions and Action.MIGRATE in actions:
                # What a user's validate runs by default: the tables read first, current tenants proven
                # without a Flyway run (the full path above is the engine comparison).
                self.settle()
                started = time.monotonic()
                default_id = f"bench-{engine_name}-default-{uuid.uuid4().hex[:6]}"
                result = await FleetwayClient(client, task_queue).run(
                    MigrateAllInput(
                        action=Action.VALIDATE,
                        tenants=schemas if extra else [],
                        parallelism=self.args.parallelism,
                        continue_on_error=True,
                        drift_check=False,
                        flyway=self.flyway_options,
                    ),
                    rollout_id=default_id,
                )
                wall = time.monotonic() - started
                cost = await count_actions(client, default_id)
                phases.append(
                    Phase(
                        f"fleetway-{engine_name}-default", Action.VALIDATE.value, len(schemas),
                        wall, [float(o.duration_ms) for o in result.outcomes],
                        result.counts.get("failed", 0),  # type: ignore[call-overload]
                        proven_current=result.counts.get("current", 0),  # type: ignore[call-overload]
                        actions_per_tenant=cost.per(len(schemas)), action_kinds=dict(cost.kinds),
                    )
                )  # fmt: skip
            rss = _peak_rss_mb(worker.pid)
            for phase in phases:
                phase.worker_peak_rss_mb = rss
                phase.parallelism = self.args.parallelism
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=60)
        return phases

    # ---- the CLI engine's JVM start-up ---------------------------------------------------------

    def cli_startup(self, schema: str, runs: int = 7) -> dict[str, float]:
        install: FlywayInstall = self.stack.flyway
        url = f"-url=jdbc:postgresql://127.0.0.1:{self.stack.postgres.port}/postgres"
        common = [
            "-cp",
            f"{install.lib_dir}/*",
            "org.flywaydb.commandline.Main",
            "-outputType=json",
            "-skipCheckForUpdate",
            url,
            f"-user={self.role}",
            f"-schemas={schema}",
            "info",
        ]
        base_flags = ["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xshare:auto"]
        variants = {
            "default_flags": [],
            "tuned_flags": base_flags,
            "tuned_flags_appcds": list(install.jvm_options),
        }
        env = {**os.environ, "FLYWAY_PASSWORD": self.password}
        out: dict[str, float] = {}
        for name, flags in variants.items():
            times = []
            for _ in range(runs):
                t0 = time.monotonic()
                subprocess.run(
                    [str(install.java), *flags, *common],
                    env=env,
                    capture_output=True,
                    check=False,
                    cwd=self.workdir,
                )
                times.append((time.monotonic() - t0) * 1000)
            out[name] = round(statistics.median(times), 1)
        return out


def _peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def _cpu_s(pid: int | None) -> float:
    """CPU seconds (user + system, reaped children included) a process has used so far."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _ratio(a: Phase | None, b: Phase | None) -> float | None:
    """How many times faster ``a`` is than ``b`` (wall time)."""
    return round(b.wall_s / a.wall_s, 2) if a and b and a.wall_s else None


def report(bench: Bench, startup: dict[str, float] | None, parallelisms: list[int]) -> dict[str, Any]:
    by = {(p.name, p.action, p.parallelism): p for p in bench.phases}
    ratios: dict[str, Any] = {}
    overhead: dict[str, Any] = {}
    versus_raw: dict[str, Any] = {}
    servers_cost: dict[str, Any] = {}
    for level, action in [(level, a) for level in parallelisms for a in ("migrate", "validate")]:
        # Keys name the parallelism only in a sweep, so a single-level report keeps its old keys.
        at = f" at P={level}" if len(parallelisms) > 1 else ""
        base = by.get(("baseline-xargs", action, level))
        for engine, path in [(e, p) for e in ("cli", "jvm") for p in ("", "-activity")]:
            name = f"fleetway-{engine}{path}"
            fw, raw = by.get((name, action, level)), by.get((f"raw-{engine}", action, level))
            if path and fw is None:
                continue  # the activity path runs only when asked for
            ratios[f"{action}{at}: {name} speed-up vs baseline"] = _ratio(fw, base)
            if not path and fw and (default := by.get((f"{name}-default", action, level))) and default.wall_s:
                ratios[f"{action}{at}: {name} full path / default path"] = round(
                    fw.wall_s / default.wall_s, 2
                )
            if not path and fw and (off := by.get((f"{name}-no-servers", action, level))) and off.wall_s:
                # What the per-server dispatch costs (issue 26: <= 1.05): the same rollout without it.
                servers_cost[f"{action}{at}: {name} wall / {name}-no-servers wall"] = round(
                    fw.wall_s / off.wall_s, 2
                )
            if fw and raw and raw.wall_s:
                # The engine's own cost is the floor: the target is fleetway <= 1.25 x raw (issue 15).
                versus_raw[f"{action}{at}: {name} wall / raw-{engine} wall"] = round(
                    fw.wall_s / raw.wall_s, 2
                )
            if fw and raw:
                # Extra wall time per tenant over driving the same engine in a plain loop, and the
                # difference in per-tenant latency (child workflow vs bare engine call), medians.
                overhead[f"{action}{at}: {name}, wall per tenant"] = round(
                    (fw.wall_s - raw.wall_s) / fw.tenants * 1000, 1
                )
                fw_median, raw_median = (
                    statistics.median(fw.per_tenant_ms),
                    statistics.median(raw.per_tenant_ms),
                )
                overhead[f"{action}{at}: {name}, latency per tenant"] = round(fw_median - raw_median, 1)
    return {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "flyway": bench.stack.flyway.version,
        },
        "tenants": bench.args.tenants,
        "parallelism": parallelisms if len(parallelisms) > 1 else parallelisms[0],
        "phases": [p.summary() for p in bench.phases],
        "speedup_vs_baseline": ratios,
        "orchestration_overhead_ms_per_tenant": overhead,
        "fleetway_vs_raw_engine": versus_raw,
        "per_server_dispatch_cost": servers_cost,
        "temporal_cost": temporal_cost(bench.phases),
        "cli_jvm_startup_median_ms": startup,
    }


NAMESPACE_ACTIONS_PER_S = 500  # a Temporal Cloud namespace's starting rate (it scales up on demand)
PROJECTED_FLEET = 100_000


def temporal_cost(phases: list[Phase]) -> dict[str, Any]:
    """Actions per tenant with work and per current tenant, projected to 100,000 tenants.

    With work: the timed migrate and validate (every tenant runs Flyway); current: the default
    validate (proven from the tables). "At least": the projected actions at 500 actions/s.
    """
    cost: dict[str, Any] = {}
    for phase in phases:
        if phase.actions_per_tenant is None:
            continue
        kind = "current tenant" if phase.name.endswith("-default") else f"tenant with work ({phase.action})"
        actions = round(phase.actions_per_tenant * PROJECTED_FLEET)
        cost[f"{phase.name}: per {kind}"] = {
            "actions_per_tenant": phase.actions_per_tenant,
            "projected_actions_100k": actions,
            "min_wall_s_at_500_per_s": round(actions / NAMESPACE_ACTIONS_PER_S, 1),
            "kinds": phase.action_kinds,
        }
    return cost


def markdown(data: dict[str, Any]) -> str:
    lines = [
        f"Fleet benchmark: {data['tenants']} tenants, parallelism {data['parallelism']}, "
        f"{data['machine']['cpus']} CPUs, Flyway {data['machine']['flyway']}",
        "",
        "| phase | action | P | wall s | tenants/min | median ms | p95 ms | failures | worker peak RSS MB | parent history events "
        "| worker / server CPU ms per tenant |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in data["phases"]:
        lines.append(
            f"| {p['name']} | {p['action']} | {p['parallelism']} | {p['wall_s']} | {p['tenants_per_minute']} | {p['median_ms']} | "
            f"{p['p95_ms']} | {p['failures']} | {p['worker_peak_rss_mb'] or ''} | {p['parent_history_events'] or ''} | "
            + (
                f"{p['worker_cpu_ms']} / {p['server_cpu_ms']} |"
                if p.get("worker_cpu_ms") is not None
                else " |"
            )
        )
    lines += ["", "| ratio | value |", "|---|---|"]
    lines += [f"| {k} | {v}× |" for k, v in data["speedup_vs_baseline"].items() if v is not None]
    lines += [
        f"| orchestration overhead, {k} | {v} ms/tenant |"
        for k, v in data["orchestration_overhead_ms_per_tenant"].items()
    ]
    lines += [f"| {k} (target ≤ 1.25) | {v}× |" for k, v in data["fleetway_vs_raw_engine"].items()]
    lines += [f"| {k} (target ≤ 1.05) | {v}× |" for k, v in data["per_server_dispatch_cost"].items()]
    cost = data.get("temporal_cost") or {}
    if cost:
        lines += [
            "",
            "| Temporal actions | per tenant | 100,000 tenants | at least, at 500 actions/s |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {k} | {v['actions_per_tenant']} | {v['projected_actions_100k']:,} | {v['min_wall_s_at_500_per_s']} s |"
            for k, v in cost.items()
        ]
    if data["cli_jvm_startup_median_ms"]:
        lines += [f"| CLI run (`info`), {k} | {v} ms |" for k, v in data["cli_jvm_startup_median_ms"].items()]
    return "\n".join(lines) + "\n"


async def run(args: argparse.Namespace) -> int:
    engines = [e for e in args.engines.split(",") if e]
    actions = [Action(a) for a in args.actions.split(",") if a]
    parallelisms = [int(p) for p in str(args.parallelism).split(",") if p]
    print(
        f"starting the embedded stack; {args.tenants} tenants per phase, parallelism {args.parallelism}",
        file=sys.stderr,
    )
    if args.noop:
        return await _run_noop(args)
    async with dev_stack() as stack:
        with tempfile.TemporaryDirectory(prefix="fleetway-bench-") as tmp:
            bench = Bench(stack, args, Path(tmp))
            startup = None
            for level in parallelisms:
                args.parallelism = level
                if not args.skip_baseline:
                    fleet = bench.fleet("base")
                    for action in actions:
                        bench.record(bench.baseline(fleet, action))
                    startup = startup or bench.cli_startup(fleet[0], args.startup_runs)
                for engine in engines:
                    if not args.skip_raw:
                        fleet = bench.fleet(f"raw{engine}")
                        for action in actions:
                            bench.record(await bench.raw(engine, fleet, action))
                    activity_path = bench.fleet(f"fa{engine}") if args.activity_path else None
                    servers_off = bench.fleet(f"fs{engine}") if args.servers_off else None
                    for phase in await bench.fleetway(
                        engine, bench.fleet(f"fw{engine}"), actions, activity_path, servers_off
                    ):
                        bench.record(phase)
            data = report(bench, startup, parallelisms)
            table = markdown(data)
            if args.history:
                data["history"] = await history_benchmark(bench, bench.fleet("hist"))
                table += "\n" + history_markdown(data["history"])
    _write(Path(args.out), "latest", data, table)
    return 0


def _write(out: Path, name: str, data: dict[str, Any], table: str) -> None:
    """``<name>.json`` and ``<name>.md`` in ``out``; the table printed too."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")
    (out / f"{name}.md").write_text(table)
    print(table)


async def _run_noop(args: argparse.Namespace) -> int:
    from bench.noop import noop_benchmark, noop_markdown  # noqa: PLC0415 - noop imports this module

    args.parallelism = int(str(args.parallelism).split(",")[0])
    async with dev_stack() as stack:
        with tempfile.TemporaryDirectory(prefix="fleetway-bench-") as tmp:
            data = await noop_benchmark(Bench(stack, args, Path(tmp)), args.noop, args.noop_full)
    _write(Path(args.out), "noop", data, noop_markdown(data))
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tenants", type=int, default=200)
    parser.add_argument(
        "--parallelism", default="4", help="one level, or a comma list (4,8,16): the phases repeat at each"
    )
    parser.add_argument(
        "--engines", default=None, help="comma-separated: cli, jvm (default: both; jvm at scale)"
    )
    parser.add_argument(
        "--startup-runs", type=int, default=7, help="CLI start-up runs per JVM flag set (the median is kept)"
    )
    parser.add_argument(
        "--warmup", type=int, default=200, help="untimed tenants that warm each JVM engine first (0: none)"
    )
    parser.add_argument("--skip-baseline", action="store_true", help="skip the xargs baseline (scale runs)")
    parser.add_argument("--skip-raw", action="store_true", help="skip the raw-engine phases (scale runs)")
    parser.add_argument(
        "--activity-path",
        action="store_true",
        help="also run each rollout with the Flyway call as a task-queue activity, side by side",
    )
    parser.add_argument(
        "--servers-off",
        action="store_true",
        help="also run each rollout without per-server keys, checks and turns, side by side",
    )
    parser.add_argument("--actions", default="migrate,validate", help="comma-separated: migrate, validate")
    parser.add_argument("--out", default=str(RESULTS), help="where latest.json and latest.md go")
    parser.add_argument(
        "--noop",
        type=int,
        default=0,
        help="instead: the no-op benchmark over N current tenants (bench/noop.py)",
    )
    parser.add_argument("--noop-full", type=int, default=1000, help="tenants the no-op full path runs")
    parser.add_argument(
        "--migrations",
        default=None,
        help="the fleet's own migrations folder (default: the demo set); also runs its releases (bench/history.py)",
    )
    parser.add_argument(
        "--placeholder", action="append", default=[], help="NAME=VALUE for the set's ${NAME} (repeatable)"
    )
    args = parser.parse_args()
    args.history = args.migrations is not None
    args.migrations = args.migrations or str(MIGRATIONS)
    if args.engines is None:
        if args.tenants >= SCALE_TENANTS:
            # The scale run: fleetway with the in-process engine only (migrate, then no-op validate).
            args.engines, args.skip_baseline, args.skip_raw = "jvm", True, True
        else:
            args.engines = "cli,jvm"
    code = asyncio.run(run(args))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # temporalio/sdk-python#300


if __name__ == "__main__":
    main()
