"""The operator's guide, executed: every sh/python block runs in order against the real stack and must
exit 0; every env block must name real settings with valid values."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fleetway.activities.errors import TemporalUnavailableError
from fleetway.activities.flyway.contract import FlywayInstall
from fleetway.worker.config.client import connect, has_pollers
from fleetway.worker.config.settings import Settings, TemporalConfig
from fleetway.worker.dev.stack import PROJECT_ROOT, PostgresServer, TemporalDevServer
from tests.fleet import FLEETWAY, make_fleet
from tests.support import copy_migrations, history

GUIDE = PROJECT_ROOT / "docs" / "operators-guide.md"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)


def blocks() -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(GUIDE.read_text())]


def test_the_guide_has_runnable_blocks_only() -> None:
    kinds = {kind for kind, _ in blocks()}
    assert kinds <= {"sh", "python", "env"}, kinds
    assert sum(kind == "sh" for kind, _ in blocks()) >= 8


@pytest.mark.parametrize("index", [i for i, (kind, _) in enumerate(blocks()) if kind == "env"])
def test_env_blocks_are_valid_settings(index: int, tmp_path: Path) -> None:
    pairs = dict(line.split("=", 1) for line in blocks()[index][1].splitlines() if line.strip())
    fleetway_vars = {k: v for k, v in pairs.items() if k.startswith("FLEETWAY_")}
    assert set(pairs) - set(fleetway_vars) <= {
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_SERVICE_NAME",
        "OTEL_RESOURCE_ATTRIBUTES",
    }
    for key, value in fleetway_vars.items():
        if key.endswith("_FILE"):  # point file settings at a real file so they load
            (tmp_path / "f").write_text("secret-from-file")
            fleetway_vars[key] = str(tmp_path / "f")
        else:
            fleetway_vars[key] = value
    saved = dict(os.environ)
    try:
        os.environ.update(fleetway_vars)
        settings = Settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    dumped = settings.model_dump(mode="json")
    for key, value in pairs.items():
        if not key.startswith("FLEETWAY_") or key.endswith("_FILE"):
            continue
        node: object = dumped
        for part in key.removeprefix("FLEETWAY_").lower().split("__"):
            assert isinstance(node, dict) and part in node, f"{key} is not a fleetway setting"
            node = node[part]
        assert str(node) == value or (isinstance(node, float) and float(value) == node), key


async def _polling(address: str, task_queue: str) -> bool:
    """Wait (60 s at most) until the guide's worker polls: a reader starts it before following the guide."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while True:  # a loaded CI machine can leave the first connect unanswered: retry, bounded
        try:
            client = await connect(TemporalConfig(address=address))
            break
        except TemporalUnavailableError:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.5)
    for _ in range(600):
        if await has_pollers(client, task_queue):
            return True
        await asyncio.sleep(0.1)
    return False


def test_every_sh_and_python_block_runs_in_order(
    postgres: PostgresServer,
    temporal_server: TemporalDevServer,
    flyway_install: FlywayInstall,
    tmp_path: Path,
) -> None:
    fleet = make_fleet(postgres, 6)
    env = fleet.cli_env(temporal_server.address, tmp_path, flyway_install) | {
        "FLEETWAY_QUIESCE__DSN": postgres.dsn,
        "FLEETWAY_QUIESCE__TABLE": f"q_{fleet.task_queue.replace('-', '_')}",
        "FLEETWAY_AUDIT__SINK": "postgres",
        "FLEETWAY_AUDIT__DSN": postgres.dsn,
        "FLEETWAY_PROVISIONING__ADMIN_DSN": postgres.dsn,
        "FLEETWAY_SETS__STORE": "dir",
        "FLEETWAY_SETS__DIR": str(tmp_path / "set-store"),
        "FLEETWAY_SETS__CACHE": str(tmp_path / "set-cache"),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    copy_migrations(tmp_path / "migrations")  # the guide's "your repo's migrations folder"
    for step in (["audit", "init"], ["quiesce", "init"]):  # the deployment's owner step (chapter 17)
        done = subprocess.run(
            [FLEETWAY, *step], env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, done.stderr
    worker = subprocess.Popen([FLEETWAY, "worker"], env=env, start_new_session=True)
    try:
        assert asyncio.run(_polling(temporal_server.address, fleet.task_queue)), "the worker never polled"
        for number, (kind, body) in enumerate(blocks()):
            if kind == "env":
                continue
            argv = ["bash", "-euo", "pipefail", "-c", body] if kind == "sh" else [sys.executable, "-c", body]
            done = subprocess.run(
                argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180, check=False
            )
            assert done.returncode == 0, (
                f"block {number} ({kind}) failed:\n{body}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
            )
            _assert_block_said(body, done.stdout, postgres, fleet.tenants, tmp_path)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=60)


def _assert_block_said(
    body: str, out: str, postgres: PostgresServer, tenants: list[str], tmp_path: Path
) -> None:
    """What the guide's blocks must print, beyond exiting 0 (the tables checked where they matter)."""
    if "release-1.json" in body:
        assert "succeeded {'succeeded': 6}" in out
    if "quiesced" in body:
        assert "exit code 3 (3: quiesced)" in out
    if "release-3.json" in body:
        assert "[('6',)]" in out and "succeeded True" in out
        for tenant in tenants:
            assert history(postgres, tenant)[-1] == ("6", True)
    if "guide-one-tenant" in body:  # chapter 4: one tenant skipped by name, a refused retry
        assert "exit code 5 (5: refused, it has not failed)" in out
        assert "'skipped': 1" in out and "'succeeded': 5" in out
        assert "skipped by alice: tenant offboarding" in out
    _assert_toolbox_said(body, out, postgres, tenants, tmp_path)


def _assert_toolbox_said(
    body: str, out: str, postgres: PostgresServer, tenants: list[str], tmp_path: Path
) -> None:
    """Chapters 14 and 15: the toolbox and the fleet's state."""
    if "repair.json" in body:  # chapter 14: a failed row repaired, the fixed script run
        assert "[('7',)]" in out and "succeeded [('removed failed 7',)]" in out
        assert "succeeded ['7']" in out
        assert all(history(postgres, t)[-1] == ("7", True) for t in tenants)
    if "release-6.json" in body:
        assert "['8', '8', '8', '8', '8', '9']" in out
    if "hotfix.json" in body:
        assert "[('7.1',)]" in out
        assert all(history(postgres, t)[-1] == ("7.1", True) for t in tenants)
    if "release-8b.json" in body:
        assert "0 True" in out and "succeeded {'region': 'eu-west-1'}" in out
    if "fleet.json" in body:  # chapter 15: the fleet's state from its tables
        assert "6 {'current': 6} {'10': 6}" in out
        assert "all 6 tenants at v10 or later" in out
        assert "{'current': 6} 0" in out and (tmp_path / "fleet.svg").exists()
    if "servers.json" in body:  # chapter 16: per-server controls on a one-server fleet
        assert "succeeded 1 []" in out
    if "drift.md" in body:
        assert "## Schema drift" in out and "**6 clean**" in out
    if "guide-pipeline-1" in body:  # chapter 18: the library's ring rollout, approved, gated on the tables
        assert "approved everyone" in out
        assert "pipeline: succeeded [('canary', 2), ('everyone', 4)]" in out
        assert "deploy the application: True 6" in out
    if "role_table_grants" in body:  # chapter 17: each role holds exactly its grant
        assert "guide_audit_writer fleetway_audit_events INSERT,SELECT" in out
        assert "guide_quiesce_operator " in out and " INSERT,SELECT,UPDATE" in out
        assert (
            out.count("guide_quiesce_reader") == 1
            and out.split("guide_quiesce_reader ")[1].split()[1] == "SELECT"
        )
