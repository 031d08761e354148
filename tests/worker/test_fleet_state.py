"""The fleet's state in one read, on the real stack: ``fleetway fleet``, ``fleetway wait``, a rollout that
skips tenants its tables prove current, and rollouts selected by what the tables show."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

from temporalio.client import Client

from fleetway.activities.flyway.contract import FlywayInstall
from fleetway.activities.flyway.options import FlywayOptions
from fleetway.activities.rollouts import Outcome, OutcomeSource
from fleetway.worker.client.connection import FleetwayClient
from fleetway.worker.dev.stack import PostgresServer, TemporalDevServer
from fleetway.workflows.migrate_all_models import MigrateAllInput, MigrateAllResult
from tests.fleet import Fleet, fleetway, make_fleet
from tests.support import history


async def _rollout(client: Client, fleet: Fleet, rollout_id: str, **fields: object) -> MigrateAllResult:
    return await FleetwayClient(client, fleet.task_queue).run(
        MigrateAllInput(**fields), rollout_id=rollout_id
    )


async def test_the_fleet_read_drives_the_picture_the_gate_and_the_selection(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer,
    temporal_server: TemporalDevServer, tmp_path: Path,
) -> None:  # fmt: skip
    fleet = make_fleet(postgres, 6)
    t = fleet.tenants
    fleet.labels = {x: {"tier": "a" if i < 3 else "b"} for i, x in enumerate(t)}
    env = fleet.cli_env(temporal_server.address, tmp_path, flyway_install)
    first = f"first-{uuid.uuid4().hex[:8]}"
    async with fleet.worker(client, flyway_install):
        done = await _rollout(client, fleet, first, tenants=t[:3])
        assert done.counts == {Outcome.SUCCEEDED: 3}
        await _rollout(
            client, fleet, f"held-{uuid.uuid4().hex[:8]}", tenants=[t[3]], flyway=FlywayOptions(target="3")
        )

        shown = await asyncio.to_thread(fleetway, "fleet", "-o", "json", env=env)
        assert shown.returncode == 0, shown.stderr
        report = json.loads(shown.stdout)
        assert (report["total"], report["latest"]) == (6, "5")
        assert report["states"] == {"behind": 3, "current": 3}
        assert report["versions"] == {"": 2, "3": 1, "5": 3}
        assert report["labels"]["tier=a"] == {"current": 3} and report["labels"]["tier=b"] == {"behind": 3}
        assert report["servers"] == {f"127.0.0.1:{postgres.port}": {"current": 3, "behind": 3}}
        assert postgres.superuser_password not in shown.stdout

        drawn = await asyncio.to_thread(fleetway, "fleet", "--report", str(tmp_path / "fleet.html"), env=env)
        assert drawn.returncode == 0 and "heat strip" in drawn.stdout and "current 3" in drawn.stdout
        page = (tmp_path / "fleet.html").read_text()
        assert page.count("<rect") >= 6 and "tier=b" in page

        ready = await asyncio.to_thread(
            fleetway, "wait", "--at-least", "5", "--labels", "tier=a", "--timeout", "5s", env=env
        )
        assert ready.returncode == 0 and "all 3 tenants at v5" in ready.stdout, ready.stderr
        late = await asyncio.to_thread(
            fleetway, "wait", "--at-least", "4", "--labels", "tier=b", "--timeout", "2s", "--interval", "1s",
            env=env,
        )  # fmt: skip
        assert late.returncode == 1 and "3 of 3 tenants below v4" in late.stdout
        assert all(x in late.stdout for x in t[3:])
        nobody = await asyncio.to_thread(fleetway, "wait", "--at-least", "1", "--labels", "tier=zz", env=env)
        assert nobody.returncode == 2  # a selector that matches no one never opens a gate

        # A re-run: t0 is proven current and never reaches Flyway; t3 is migrated from v3.
        before = history(postgres, t[0])
        rerun = await asyncio.to_thread(
            fleetway,
            "migrate",
            "--tenant",
            t[0],
            "--tenant",
            t[3],
            "--principal",
            "ci",
            "-o",
            "json",
            env=env,
        )
        assert rerun.returncode == 0, rerun.stderr
        result = json.loads(rerun.stdout)
        by_tenant = {o["tenant_id"]: o for o in result["outcomes"]}
        assert by_tenant[t[0]]["outcome"] == Outcome.CURRENT.value
        assert by_tenant[t[0]]["source"] == OutcomeSource.HISTORY.value and by_tenant[t[0]]["read_at"]
        assert by_tenant[t[3]]["outcome"] == "succeeded" and by_tenant[t[3]]["applied_versions"] == ["4", "5"]
        assert history(postgres, t[0]) == before  # the table is the judge: nothing ran there

        # Only the tenants whose table shows V2 applied by the first rollout, read-only.
        chosen = await asyncio.to_thread(
            fleetway, "validate", "--applied-in", first, "--version", "2", "--principal", "ci", "-o", "json",
            env=env,
        )  # fmt: skip
        assert chosen.returncode == 0, chosen.stderr
        validated = json.loads(chosen.stdout)
        assert sorted(o["tenant_id"] for o in validated["outcomes"]) == t[:3]
        assert validated["excluded"] == 3 and validated["counts"] == {"current": 3}

        behind = await asyncio.to_thread(
            fleetway,
            "migrate",
            "--where",
            "version<5",
            "--dry-run",
            "--principal",
            "ci",
            "-o",
            "json",
            env=env,
        )
        assert behind.returncode == 0, behind.stderr
        planned = json.loads(behind.stdout)
        assert sorted(o["tenant_id"] for o in planned["outcomes"]) == t[4:]
        assert all(o["pending"] == ["1", "2", "3", "4", "5"] for o in planned["outcomes"])
