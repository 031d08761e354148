"""The README's first command: a fleet of demo tenants migrated end to end through the CLI.

Starts the embedded stack, provisions a least-privilege migrator role and one schema-per-tenant
fleet in PostgreSQL, runs ``fleetway worker`` and ``fleetway migrate`` as real processes (the
same commands a pipeline runs), then prints the per-tenant summary and the Temporal UI address.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import sys
from pathlib import Path
from typing import Literal

import boto3
import hvac
import psycopg
from psycopg import sql

from fleetway.activities.quiesce import PostgresQuiesceController
from fleetway.activities.secrets.aws import silence_boto_body_logging
from fleetway.worker.cli.exit_codes import ExitCode
from fleetway.worker.config.client import connect, has_pollers
from fleetway.worker.config.settings import TemporalConfig
from fleetway.worker.dev.secrets import AWS_TEST_ENV, MotoServer, OpenBaoDevServer
from fleetway.worker.dev.stack import PROJECT_ROOT, DevStack, dev_stack, require_source_checkout

__all__ = ["run_demo"]

_DEMO_DIR = PROJECT_ROOT / ".fleetway" / "demo"


SecretsBackend = Literal["file", "vault", "aws"]
_SECRET_FILES = ("vault-token", "secrets.json", "postgres-password")
# Settings a user's own CLI or worker needs to reach the held stack; never a value that is a secret.
_SHARED_SETTINGS = (
    "FLEETWAY_SECRETS__BACKEND", "FLEETWAY_SECRETS__FILE", "FLEETWAY_SECRETS__VAULT__URL",
    "FLEETWAY_SECRETS__VAULT__TOKEN_FILE", "FLEETWAY_SECRETS__AWS__ENDPOINT_URL", "FLEETWAY_FLYWAY__LIB_DIR",
)  # fmt: skip


def _private_file(name: str, text: str) -> Path:
    _DEMO_DIR.mkdir(parents=True, exist_ok=True)
    path = _DEMO_DIR / name
    path.touch(mode=0o600)
    path.chmod(0o600)  # an older file from a previous run keeps whatever mode it had otherwise
    path.write_text(text)
    return path


def _migrator_password(stack: DevStack) -> str:
    """Create the least-privilege login every demo tenant's secret points at."""
    password = secrets.token_urlsafe(18)
    with psycopg.connect(stack.postgres.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE fleetway_migrator LOGIN PASSWORD {}").format(sql.Literal(password)))
        conn.execute("GRANT CREATE ON DATABASE postgres TO fleetway_migrator")
    return password


def _store_secrets(
    backend: SecretsBackend, stack: DevStack, tenants: list[str], password: str, servers: contextlib.ExitStack
) -> dict[str, str]:
    """Put each tenant's credentials in the chosen store; return the worker's settings for it."""
    target = {"host": "127.0.0.1", "port": stack.postgres.port, "database": "postgres",
              "user": "fleetway_migrator", "password": password}  # fmt: skip
    if backend == "vault":
        bao = OpenBaoDevServer()
        bao.start()
        servers.callback(bao.stop)
        vault = hvac.Client(url=bao.url, token=bao.root_token)
        for t in tenants:  # go-bricks' canonical shape
            payload = {
                "type": "postgresql",
                "host": target["host"],
                "port": target["port"],
                "database": "postgres",
                "username": target["user"],
                "password": password,
                "postgresql": {"schema": t},
            }
            vault.secrets.kv.v2.create_or_update_secret(path=f"fleetway/migrate/{t}", secret=payload)
        print(
            f"credentials in OpenBao at {bao.url} (KV v2 secret/fleetway/migrate/<tenant>)", file=sys.stderr
        )
        token = _private_file("vault-token", bao.root_token)
        return {"FLEETWAY_SECRETS__BACKEND": "vault", "FLEETWAY_SECRETS__VAULT__URL": bao.url,
                "FLEETWAY_SECRETS__VAULT__TOKEN_FILE": str(token)}  # fmt: skip
    if backend == "aws":
        moto = MotoServer()
        moto.start()
        servers.callback(moto.stop)
        silence_boto_body_logging()  # the seeding's CreateSecret bodies hold every password
        aws = boto3.client("secretsmanager", endpoint_url=moto.endpoint_url, **_boto_credentials())
        for t in tenants:  # the AWS RDS rotation shape, plus the tenant's schema
            payload = {
                "engine": "postgres",
                "host": target["host"],
                "port": target["port"],
                "dbname": "postgres",
                "username": target["user"],
                "password": password,
                "schema": t,
            }
            aws.create_secret(Name=f"fleetway/migrate/{t}", SecretString=json.dumps(payload))
        print(f"credentials in AWS Secrets Manager (moto) at {moto.endpoint_url}", file=sys.stderr)
        return {**AWS_TEST_ENV, "FLEETWAY_SECRETS__BACKEND": "aws",
                "FLEETWAY_SECRETS__AWS__ENDPOINT_URL": moto.endpoint_url}  # fmt: skip
    document = {"tenants": {t: {**target, "schema_name": t} for t in tenants}}
    path = _private_file("secrets.json", json.dumps(document, indent=2))
    return {"FLEETWAY_SECRETS__BACKEND": "file", "FLEETWAY_SECRETS__FILE": str(path)}


def _boto_credentials() -> dict[str, str]:
    return {
        "region_name": AWS_TEST_ENV["AWS_DEFAULT_REGION"],
        "aws_access_key_id": AWS_TEST_ENV["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": AWS_TEST_ENV["AWS_SECRET_ACCESS_KEY"],
    }


async def run_demo(*, tenants: int, hold: bool, secrets_backend: SecretsBackend = "file") -> ExitCode:
    """Run the demo; the exit code is the migrate command's."""
    require_source_checkout("fleetway demo")
    ids = [f"demo_tenant_{i:03d}" for i in range(1, tenants + 1)]
    print("starting the embedded stack (PostgreSQL, Temporal dev server, Flyway)...", file=sys.stderr)
    try:
        async with dev_stack() as stack:
            servers = contextlib.ExitStack()
            with servers:
                backend_env = _store_secrets(secrets_backend, stack, ids, _migrator_password(stack), servers)
                return await _run_fleet(stack, ids, backend_env, hold=hold)
    finally:  # credentials of a stack that is gone: a root token and every tenant's password
        for name in _SECRET_FILES:
            (_DEMO_DIR / name).unlink(missing_ok=True)


async def _run_fleet(stack: DevStack, ids: list[str], backend_env: dict[str, str], *, hold: bool) -> ExitCode:
    """Run ``fleetway worker`` and ``fleetway migrate`` as processes; the exit code is migrate's."""
    env = {
        **os.environ,
        **backend_env,
        "FLEETWAY_TEMPORAL__ADDRESS": stack.temporal.address,
        "FLEETWAY_TEMPORAL__TASK_QUEUE": "fleetway",
        "FLEETWAY_TENANTS__TENANTS": json.dumps(ids),
        "FLEETWAY_FLYWAY__LOCATIONS": json.dumps([str(PROJECT_ROOT / "migrations" / "demo")]),
        "FLEETWAY_FLYWAY__LIB_DIR": str(stack.flyway.lib_dir),
        "FLEETWAY_AUDIT__SINK": "jsonl",
        "FLEETWAY_AUDIT__PATH": str(_DEMO_DIR / "audit.jsonl"),
        # The stack's own PostgreSQL holds the quiesce flag, as a deployment's control plane would:
        # `fleetway quiesce set` from the held stack reaches the demo's worker.
        "FLEETWAY_QUIESCE__DSN": stack.postgres.dsn,
    }
    await PostgresQuiesceController(stack.postgres.dsn).install()  # the owner's one-time step
    fleetway = str(Path(sys.executable).parent / "fleetway")
    print(f"Temporal UI: {stack.temporal.ui_url}", file=sys.stderr)
    worker = await asyncio.create_subprocess_exec(fleetway, "worker", env=env)
    migrate: asyncio.subprocess.Process | None = None
    try:
        # Let the worker poll first, so the CLI's summary shows what the worker will use.
        client = await connect(TemporalConfig(address=stack.temporal.address, task_queue="fleetway"))
        for _ in range(600):
            if worker.returncode is not None or await has_pollers(client, "fleetway"):
                break
            await asyncio.sleep(0.1)
        migrate = await asyncio.create_subprocess_exec(
            fleetway, "migrate", "--principal", "demo", "--parallelism", "4", env=env
        )
        code = ExitCode(await migrate.wait())
        print(f"\naudit trail: {_DEMO_DIR / 'audit.jsonl'}", file=sys.stderr)
        print(f"Temporal UI: {stack.temporal.ui_url}", file=sys.stderr)
        if hold:
            print(_hold_banner(stack, env), file=sys.stderr)
            stop = asyncio.Event()
            asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stop.set)
            await stop.wait()
    finally:  # interrupted or not, no process of ours outlives the stack
        for process in (migrate, worker):
            if process is not None and process.returncode is None:
                process.send_signal(signal.SIGTERM)
                await process.wait()
    return code


def _hold_banner(stack: DevStack, env: dict[str, str]) -> str:
    """Every address a user needs to point their own CLI or worker at the held stack.

    The PostgreSQL superuser's password goes to a private file (mode 600, deleted when the demo
    ends), never to the terminal; the tenants' credentials stay in the demo's secret store.
    """
    password_file = _private_file("postgres-password", stack.postgres.superuser_password)
    port = stack.postgres.port
    lines = [
        "stack kept up; Ctrl-C to stop",
        f"  Temporal frontend: {stack.temporal.address} "
        "(namespace default; the demo's worker polls 'fleetway')",
        f"  Temporal UI:       {stack.temporal.ui_url}",
        f"  PostgreSQL:        postgresql://postgres@127.0.0.1:{port}/postgres (password in {password_file})",
        f"  tenants' logins:   fleetway_migrator, credentials in the demo's secret store "
        f"({env.get('FLEETWAY_SECRETS__BACKEND', 'file')})",
        "to point your own CLI or worker at it (your own task queue keeps the demo's worker out):",
        f"  export FLEETWAY_TEMPORAL__ADDRESS={stack.temporal.address}",
        "  export FLEETWAY_TEMPORAL__TASK_QUEUE=my-fleet",
        *[f"  export {name}={env[name]}" for name in _SHARED_SETTINGS if name in env],
        f'  export PGHOST=127.0.0.1 PGPORT={port} PGUSER=postgres PGPASSWORD="$(cat {password_file})"',
    ]
    return "\n".join(lines)
