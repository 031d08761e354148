"""Ring rollouts through the real ``fleetway`` CLI: --wave, --wave-plan, --dry-run's plan, approve."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from pathlib import Path

from temporalio.client import Client

from fleetway.activities.flyway.contract import FlywayInstall
from fleetway.worker.dev.stack import PostgresServer, TemporalDevServer
from fleetway.workflows.migrate_all import MigrateAllWorkflow
from fleetway.workflows.migrate_all_models import WaveState
from tests.fleet import FLEETWAY, fleetway
from tests.support import history, schema_exists
from tests.workflows.test_waves import progress_until, ring_fleet, wave_state


async def test_cli_dry_run_prints_which_tenant_lands_in_which_wave_and_changes_nothing(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer,
    temporal_server: TemporalDevServer, tmp_path: Path,
) -> None:  # fmt: skip
    fleet = ring_fleet(postgres)
    env = fleet.cli_env(temporal_server.address, tmp_path, flyway_install)
    async with fleet.worker(client, flyway_install):
        done = await asyncio.to_thread(
            fleetway, "migrate", "--dry-run", "-o", "json",
            "--wave", "internal; labels=tier=internal; gate; bake=1d; max-failures=0",
            "--wave", "eu; labels=region=eu",
            "--wave", "others; rest", env=env,
        )  # fmt: skip
        text = await asyncio.to_thread(
            fleetway,
            "migrate",
            "--dry-run",
            "--wave",
            "internal; labels=tier=internal",
            "--wave",
            "x; rest",
            env=env,
        )

    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    placed = {o["tenant_id"]: o["wave"] for o in result["outcomes"]}
    assert placed == (
        dict.fromkeys(fleet.tenants[:2], "internal")
        | dict.fromkeys(fleet.tenants[5:7], "eu")
        | dict.fromkeys(fleet.tenants[2:5] + fleet.tenants[7:], "others")
    )
    assert [(w["name"], w["planned"], w["gate"], w["bake_s"]) for w in result["waves"]] == [
        ("internal", 2, False, 0),  # a plan: no gate to wait at, no bake to sit through
        ("eu", 2, False, 0),
        ("others", 5, False, 0),
    ]
    assert all(o["pending"] == ["1", "2", "3", "4", "5"] for o in result["outcomes"])
    assert text.returncode == 0, text.stderr
    assert "wave plan:" in text.stdout
    assert "wave 1/2 internal [labels tier=internal]: done; 2/2 dispatched" in text.stdout
    assert not any(schema_exists(postgres, t) for t in fleet.tenants)


async def test_cli_ring_rollout_from_a_plan_file_waits_at_its_gate_until_approve(
    client: Client, flyway_install: FlywayInstall, postgres: PostgresServer,
    temporal_server: TemporalDevServer, tmp_path: Path,
) -> None:  # fmt: skip
    fleet = ring_fleet(postgres)
    env = fleet.cli_env(temporal_server.address, tmp_path, flyway_install)
    plan = tmp_path / "waves.yaml"
    plan.write_text(
        "waves:\n"
        "  - {name: internal, labels: 'tier=internal', max_failures: 0, bake: 1s}\n"
        "  - {name: beta, labels: 'tier=beta', gate: true, parallelism: 2}\n"
        "  - {name: everyone-else, rest: true}\n"
    )
    rollout_id = f"ring-cli-{uuid.uuid4().hex[:8]}"
    async with fleet.worker(client, flyway_install):
        follower = subprocess.Popen(
            [FLEETWAY, "migrate", "--wave-plan", str(plan), "--rollout-id", rollout_id, "-o", "ndjson",
             "--principal", "ci"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            handle = client.get_workflow_handle(rollout_id)
            await progress_until(handle, wave_state("beta", WaveState.AWAITING_APPROVAL))
            status = await asyncio.to_thread(fleetway, "status", rollout_id, env=env)
            wrong = await asyncio.to_thread(
                fleetway, "approve", rollout_id, "--wave", "everyone-else", env=env
            )
            approved = await asyncio.to_thread(
                fleetway, "approve", rollout_id, "--principal", "alice", "--reason", "canary clean", env=env
            )
            out, err = await asyncio.to_thread(follower.communicate, timeout=120)
        finally:
            if follower.poll() is None:
                follower.kill()
                follower.wait()
        again = await asyncio.to_thread(fleetway, "reject", rollout_id, env=env)

    assert status.stdout.startswith(f"{rollout_id}: running (at gate); dispatched 2;"), status.stdout
    assert "wave 2/3 beta [labels tier=beta]: awaiting approval (fleetway approve" in status.stdout, status
    assert wrong.returncode == 5  # refused: not the wave waiting
    assert wrong.stderr.strip().endswith(
        "approval_not_pending: wave 'everyone-else' is not the one waiting ('beta' is)"
    ), wrong.stderr
    assert approved.returncode == 0, approved.stderr
    assert approved.stdout.strip() == f"approved wave 'beta' of {rollout_id} (3 tenants)"
    assert follower.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    waves = [(line["name"], line["state"]) for line in lines if line["event"] == "wave"]
    assert ("beta", "awaiting_approval") in waves and ("everyone-else", "done") in waves
    assert waves.index(("internal", "done")) < waves.index(("beta", "awaiting_approval"))
    tenants = {line["tenant_id"]: line["wave"] for line in lines if line["event"] == "tenant_complete"}
    assert tenants == (
        dict.fromkeys(fleet.tenants[:2], "internal")
        | dict.fromkeys(fleet.tenants[2:5], "beta")
        | dict.fromkeys(fleet.tenants[5:], "everyone-else")
    )
    summary = lines[-1]
    assert summary["event"] == "summary" and summary["status"] == "succeeded"
    assert [w["decided_by"] for w in summary["waves"]] == ["", "alice", ""]
    for tenant in fleet.tenants:
        assert len(history(postgres, tenant)) == 5
    assert again.returncode == 5 and "rollout_not_running" in again.stderr


def test_cli_names_every_wave_plan_mistake_in_one_line_and_starts_nothing(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "FLEETWAY_TEMPORAL__ADDRESS": "127.0.0.1:1"}
    plan = tmp_path / "waves.json"
    plan.write_text(
        json.dumps(
            [
                {"name": "internal", "labels": "tier = = internal"},
                {"name": "beta", "count": 3, "percent": 10},
                {"name": "Bad Name", "rest": True},
                {"name": "late", "bake": "soon", "rest": True},
            ]
        )
    )
    cases = {
        ("--wave-plan", str(plan)): (
            f"invalid_wave_plan: wave plan {str(plan)!r}: waves[0] ('internal'): label selector "
            "'tier = = internal': cannot read 'tier = = internal'"
        ),
        (
            "--wave",
            "a; rest",
            "--wave",
            "b; count=1",
        ): "invalid_wave_plan: wave 'b' follows the 'rest' wave 'a'",
        (
            "--wave",
            "a; rest",
            "--wave-plan",
            str(plan),
        ): "invalid_wave_plan: give --wave flags or --wave-plan",
        ("--wave", "a; rest; bake=2w"): "invalid_wave_plan: --wave 1 ('a'): bake '2w' is not a number",
        ("--wave", "a; rest", "--canary", "2"): "invalid_input: give canary_count or waves, not both",
    }
    for args, expected in cases.items():
        done = subprocess.run(
            [FLEETWAY, "migrate", *args], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2, (args, done.stderr)
        assert len(lines) == 1, (args, done.stderr)
        assert lines[0].startswith(expected), (args, lines[0])
    whole = subprocess.run(
        [FLEETWAY, "migrate", "--wave-plan", str(plan)], env=env, capture_output=True, text=True, check=False
    ).stderr
    # All four mistakes at once, each with its index and name.
    for fragment in (
        "waves[0] ('internal')",
        "waves[1] ('beta'): ",
        "waves[2] ('Bad Name')",
        "waves[3] ('late')",
    ):
        assert fragment in whole, whole
    assert "Traceback" not in whole and MigrateAllWorkflow.__name__ not in whole
