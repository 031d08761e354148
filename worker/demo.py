"""The README's first command: a fleet of demo tenants migrated end to end through the CLI.

Starts the embedded stack, provisions a least-privilege migrator role and one schema-per-tenant
fleet in PostgreSQL, runs ``fleetway worker`` and ``fleetway migrate`` as real processes (the
same commands a pipeline runs), then prints the per-tenant summary and the Temporal UI address.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import sys
from pathlib import Path

import psycopg
from psycopg import sql

from worker.devstack import PROJECT_ROOT, DevStack, dev_stack
from worker.output import ExitCode

__all__ = ["run_demo"]

_DEMO_DIR = PROJECT_ROOT / ".fleetway" / "demo"


def _prepare(stack: DevStack, tenants: list[str]) -> Path:
    """Create the migrator role and write the secrets file the worker resolves credentials from."""
    password = secrets.token_urlsafe(18)
    with psycopg.connect(stack.postgres.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE fleetway_migrator LOGIN PASSWORD {}").format(sql.Literal(password)))
        conn.execute("GRANT CREATE ON DATABASE postgres TO fleetway_migrator")
    _DEMO_DIR.mkdir(parents=True, exist_ok=True)
    path = _DEMO_DIR / "secrets.json"
    target = {"host": "127.0.0.1", "port": stack.postgres.port, "database": "postgres",
              "user": "fleetway_migrator", "password": password}  # fmt: skip
    path.touch(mode=0o600)
    path.chmod(0o600)  # an older file from a previous run keeps whatever mode it had otherwise
    path.write_text(json.dumps({"tenants": {t: {**target, "schema_name": t} for t in tenants}}, indent=2))
    return path


async def run_demo(*, tenants: int, hold: bool) -> ExitCode:
    """Run the demo; the exit code is the migrate command's."""
    ids = [f"demo_tenant_{i:03d}" for i in range(1, tenants + 1)]
    print("starting the embedded stack (PostgreSQL, Temporal dev server, Flyway)...", file=sys.stderr)
    async with dev_stack() as stack:
        secrets_file = _prepare(stack, ids)
        env = {
            **os.environ,
            "FLEETWAY_TEMPORAL__ADDRESS": stack.temporal.address,
            "FLEETWAY_TEMPORAL__TASK_QUEUE": "fleetway",
            "FLEETWAY_SECRETS__FILE": str(secrets_file),
            "FLEETWAY_TENANTS__TENANTS": json.dumps(ids),
            "FLEETWAY_FLYWAY__LOCATIONS": json.dumps([str(PROJECT_ROOT / "migrations" / "demo")]),
            "FLEETWAY_FLYWAY__LIB_DIR": str(stack.flyway.lib_dir),
        }
        fleetway = str(Path(sys.executable).parent / "fleetway")
        print(f"Temporal UI: {stack.temporal.ui_url}", file=sys.stderr)
        worker = await asyncio.create_subprocess_exec(fleetway, "worker", env=env)
        try:
            migrate = await asyncio.create_subprocess_exec(
                fleetway, "migrate", "--principal", "demo", "--parallelism", "4", env=env
            )
            code = ExitCode(await migrate.wait())
            print(f"\nTemporal UI: {stack.temporal.ui_url}", file=sys.stderr)
            if hold:
                print("stack kept up; Ctrl-C to stop", file=sys.stderr)
                stop = asyncio.Event()
                asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stop.set)
                await stop.wait()
        finally:
            worker.send_signal(signal.SIGTERM)
            await worker.wait()
    return code
