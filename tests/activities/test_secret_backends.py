"""AWS Secrets Manager (moto's real HTTP server) and Vault KV v2 (a real OpenBao dev server), plus the
TTL cache in front of them. boto3 and hvac talk HTTP to the servers; nothing is patched."""

from __future__ import annotations

import asyncio
import json
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import hvac
import psycopg
import pytest
from pydantic import SecretStr
from temporalio.testing import ActivityEnvironment

from fleetway.activities.database_target import DatabaseTarget
from fleetway.activities.errors import (
    ConfigurationError,
    InvalidTenantIdError,
    SecretAccessDeniedError,
    SecretBackendError,
    SecretMalformedError,
    SecretNotFoundError,
)
from fleetway.activities.flyway.activity import FlywayActivities
from fleetway.activities.flyway.cli_engine import FlywayRunner
from fleetway.activities.flyway.output import Action
from fleetway.activities.flyway.request import FlywayRequest
from fleetway.activities.secrets.aws import AwsSecretsManagerProvider
from fleetway.activities.secrets.cache import CachedSecretsProvider
from fleetway.activities.secrets.providers import FileSecretsProvider
from fleetway.activities.secrets.vault import VaultAuth, VaultSecretsProvider
from fleetway.worker.dev.secrets import AWS_TEST_ENV, MotoServer, OpenBaoDevServer
from fleetway.worker.dev.stack import PostgresServer

PASSWORD = "Tenant-Passw0rd-9c1e"


def rds_secret(host: str = "db.internal", password: str = PASSWORD) -> str:
    return json.dumps({"engine": "postgres", "host": host, "port": 5432, "username": "app",
                       "password": password, "dbname": "tenants"})  # fmt: skip


@pytest.fixture
def aws(moto_server: MotoServer) -> Any:
    return boto3.client(
        "secretsmanager",
        endpoint_url=moto_server.endpoint_url,
        region_name=AWS_TEST_ENV["AWS_DEFAULT_REGION"],
        aws_access_key_id=AWS_TEST_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=AWS_TEST_ENV["AWS_SECRET_ACCESS_KEY"],
    )


@pytest.fixture
def aws_provider(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> AwsSecretsManagerProvider:
    for key, value in AWS_TEST_ENV.items():
        monkeypatch.setenv(key, value)  # the default credential chain, as a deployed worker uses it
    return AwsSecretsManagerProvider(prefix="fw/", endpoint_url=moto_server.endpoint_url)


# ---- AWS Secrets Manager ----------------------------------------------------------------------


async def test_aws_rds_and_canonical_shapes(aws: Any, aws_provider: AwsSecretsManagerProvider) -> None:
    rds, canonical = f"rds_{uuid.uuid4().hex[:6]}", f"can_{uuid.uuid4().hex[:6]}"
    aws.create_secret(Name=f"fw/{rds}", SecretString=rds_secret())
    aws.create_secret(
        Name=f"fw/{canonical}",
        SecretString=json.dumps(
            {
                "type": "postgresql",
                "host": "h2",
                "database": "d",
                "username": "u",
                "password": PASSWORD,
                "postgresql": {"schema": canonical},
            }
        ),
    )
    target = await aws_provider.resolve(f"  {rds} ")
    assert (target.host, target.database, target.user) == ("db.internal", "tenants", "app")
    assert target.password.get_secret_value() == PASSWORD
    assert (await aws_provider.resolve(canonical)).schema_name == canonical


async def test_aws_binary_secret(aws: Any, aws_provider: AwsSecretsManagerProvider) -> None:
    tenant = f"bin_{uuid.uuid4().hex[:6]}"
    aws.create_secret(Name=f"fw/{tenant}", SecretBinary=rds_secret().encode())
    assert (await aws_provider.resolve(tenant)).host == "db.internal"


async def test_aws_missing_and_malformed(aws: Any, aws_provider: AwsSecretsManagerProvider) -> None:
    with pytest.raises(SecretNotFoundError, match="'fw/nobody_here' not found"):
        await aws_provider.resolve("nobody_here")
    tenant = f"bad_{uuid.uuid4().hex[:6]}"
    aws.create_secret(Name=f"fw/{tenant}", SecretString='{"password": "' + PASSWORD + '", "host": ')
    with pytest.raises(SecretMalformedError, match="not valid JSON") as err:
        await aws_provider.resolve(tenant)
    assert PASSWORD not in str(err.value)
    aws.put_secret_value(
        SecretId=f"fw/{tenant}", SecretString=json.dumps({"host": "h", "password": PASSWORD})
    )
    with pytest.raises(SecretMalformedError, match="bad or missing database, user") as err:
        await aws_provider.resolve(tenant)
    assert PASSWORD not in str(err.value)


async def test_aws_invalid_ids_never_reach_the_store(aws_provider: AwsSecretsManagerProvider) -> None:
    for bad in ["", "a/b", "../x", "t\n1", "x" * 129, "ünï"]:
        with pytest.raises(InvalidTenantIdError):
            await aws_provider.resolve(bad)


async def test_aws_unreachable_endpoint_is_a_retryable_backend_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in AWS_TEST_ENV.items():
        monkeypatch.setenv(key, value)
    provider = AwsSecretsManagerProvider(endpoint_url="http://127.0.0.1:9")  # discard port: refused
    with pytest.raises(SecretBackendError, match="unreachable") as err:
        await provider.resolve("t1")
    assert err.value.retryable


def test_prefix_must_end_with_a_slash() -> None:
    with pytest.raises(ConfigurationError, match="must end with '/'"):
        AwsSecretsManagerProvider(prefix="fleetway/migrate", client=object())
    with pytest.raises(ConfigurationError, match="must end with '/'"):
        VaultSecretsProvider(url="http://127.0.0.1:1", auth=VaultAuth(token=SecretStr("t")), prefix="x")


# ---- Vault / OpenBao --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vault_root(openbao: OpenBaoDevServer) -> Iterator[hvac.Client]:
    client = hvac.Client(url=openbao.url, token=openbao.root_token)
    client.sys.create_or_update_policy(
        name="fleetway-read", policy='path "secret/data/fleetway/migrate/*" { capabilities = ["read"] }'
    )
    client.sys.enable_auth_method("approle")
    client.auth.approle.create_or_update_approle(
        role_name="fleetway", token_policies=["fleetway-read"], token_ttl="2s", token_max_ttl="2s"
    )
    yield client
    client.adapter.close()


def put(vault: hvac.Client, tenant: str, payload: dict[str, object]) -> None:
    vault.secrets.kv.v2.create_or_update_secret(
        path=f"fleetway/migrate/{tenant}", secret=payload, mount_point="secret"
    )


def approle_auth(vault: hvac.Client) -> VaultAuth:
    role_id = vault.auth.approle.read_role_id(role_name="fleetway")["data"]["role_id"]
    secret_id = vault.auth.approle.generate_secret_id(role_name="fleetway")["data"]["secret_id"]
    return VaultAuth(method="approle", role_id=role_id, secret_id=SecretStr(secret_id))


async def test_vault_token_auth_reads_kv2(openbao: OpenBaoDevServer, vault_root: hvac.Client) -> None:
    tenant = f"v_{uuid.uuid4().hex[:6]}"
    put(
        vault_root,
        tenant,
        {"type": "postgresql", "host": "h", "database": "d", "username": "u", "password": PASSWORD},
    )
    provider = VaultSecretsProvider(url=openbao.url, auth=VaultAuth(token=SecretStr(openbao.root_token)))
    target = await provider.resolve(tenant)
    assert (target.user, target.password.get_secret_value()) == ("u", PASSWORD)


async def test_vault_approle_logs_in_and_again_when_its_token_expires(
    openbao: OpenBaoDevServer, vault_root: hvac.Client
) -> None:
    tenant = f"ar_{uuid.uuid4().hex[:6]}"
    put(vault_root, tenant, json.loads(rds_secret()))
    provider = VaultSecretsProvider(url=openbao.url, auth=approle_auth(vault_root))
    assert (await provider.resolve(tenant)).database == "tenants"
    await asyncio.sleep(2.5)  # the AppRole token (ttl 2s) has expired: Vault answers 403
    assert (await provider.resolve(tenant)).database == "tenants"


async def test_vault_missing_path_denied_and_bad_login(
    openbao: OpenBaoDevServer, vault_root: hvac.Client
) -> None:
    provider = VaultSecretsProvider(url=openbao.url, auth=approle_auth(vault_root))
    with pytest.raises(SecretNotFoundError, match="'secret/fleetway/migrate/absent_1' not found"):
        await provider.resolve("absent_1")
    outside = VaultSecretsProvider(url=openbao.url, auth=approle_auth(vault_root), prefix="elsewhere/")
    with pytest.raises(SecretAccessDeniedError, match="refused secret 'secret/elsewhere/t1' \\(403\\)"):
        await outside.resolve("t1")
    wrong = VaultAuth(method="approle", role_id="nope", secret_id=SecretStr("also-nope-123"))
    with pytest.raises(SecretAccessDeniedError, match="approle login was refused") as err:
        await VaultSecretsProvider(url=openbao.url, auth=wrong).resolve("t1")
    assert "also-nope-123" not in str(err.value)


async def test_vault_malformed_payload(openbao: OpenBaoDevServer, vault_root: hvac.Client) -> None:
    tenant = f"m_{uuid.uuid4().hex[:6]}"
    put(vault_root, tenant, {"host": "h", "database": "d", "username": "u", "password": PASSWORD + "\r\n"})
    provider = VaultSecretsProvider(url=openbao.url, auth=VaultAuth(token=SecretStr(openbao.root_token)))
    with pytest.raises(SecretMalformedError, match="field password contains CR, LF or NUL") as err:
        await provider.resolve(tenant)
    assert PASSWORD not in str(err.value)


async def test_vault_down_is_a_retryable_backend_error() -> None:
    provider = VaultSecretsProvider(
        url="http://127.0.0.1:9", auth=VaultAuth(token=SecretStr("t")), timeout_s=2
    )
    with pytest.raises(SecretBackendError, match="failed \\(ConnectionError\\)"):
        await provider.resolve("t1")


# ---- the cache ----------------------------------------------------------------------------------


class Counting:
    """Counts calls through to the real backend (the seam under test is the cache)."""

    def __init__(self, inner: VaultSecretsProvider) -> None:
        self.inner, self.calls = inner, 0

    async def resolve(self, tenant_id: str) -> DatabaseTarget:
        self.calls += 1
        return await self.inner.resolve(tenant_id)

    def invalidate(self, tenant_id: str) -> None:
        self.inner.invalidate(tenant_id)


async def test_cache_hits_expires_and_picks_up_rotation(
    openbao: OpenBaoDevServer, vault_root: hvac.Client
) -> None:
    tenant = f"c_{uuid.uuid4().hex[:6]}"
    put(vault_root, tenant, json.loads(rds_secret(password="first-Passw0rd")))
    backend = Counting(
        VaultSecretsProvider(url=openbao.url, auth=VaultAuth(token=SecretStr(openbao.root_token)))
    )
    now = [0.0]
    cache = CachedSecretsProvider(backend, ttl_s=60, clock=lambda: now[0])
    assert (await cache.resolve(tenant)).password.get_secret_value() == "first-Passw0rd"
    put(vault_root, tenant, json.loads(rds_secret(password="second-Passw0rd")))  # rotation
    now[0] = 59.0
    assert (await cache.resolve(tenant)).password.get_secret_value() == "first-Passw0rd"  # still fresh
    assert (backend.calls, cache.stats.hits) == (1, 1)
    now[0] = 60.0
    assert (await cache.resolve(tenant)).password.get_secret_value() == "second-Passw0rd"  # TTL expired
    put(vault_root, tenant, json.loads(rds_secret(password="third-Passw0rd")))
    cache.invalidate(tenant)
    assert (await cache.resolve(tenant)).password.get_secret_value() == "third-Passw0rd"
    assert backend.calls == 3


async def test_cache_coalesces_concurrent_misses_and_never_caches_failures(
    openbao: OpenBaoDevServer, vault_root: hvac.Client
) -> None:
    tenant = f"cc_{uuid.uuid4().hex[:6]}"
    backend = Counting(
        VaultSecretsProvider(url=openbao.url, auth=VaultAuth(token=SecretStr(openbao.root_token)))
    )
    cache = CachedSecretsProvider(backend, ttl_s=300)
    for _ in range(2):
        with pytest.raises(SecretNotFoundError):
            await cache.resolve(tenant)
    assert backend.calls == 2  # a failure is not cached
    put(vault_root, tenant, json.loads(rds_secret()))
    targets = await asyncio.gather(*(cache.resolve(tenant) for _ in range(20)))
    assert backend.calls == 3 and len({id(t) for t in targets}) == 1


async def test_flyway_auth_failure_invalidates_the_cache_and_rereads_vault(
    runner: FlywayRunner,
    postgres: PostgresServer,
    openbao: OpenBaoDevServer,
    vault_root: hvac.Client,
    schema: str,
) -> None:
    rotated = "rotated-Vault-Passw0rd"
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {schema} LOGIN PASSWORD '{rotated}'")
        conn.execute(f"GRANT CREATE ON DATABASE postgres TO {schema}")
    secret = {"engine": "postgres", "host": "127.0.0.1", "port": postgres.port, "dbname": "postgres",
              "username": schema, "schema": schema}  # fmt: skip
    put(vault_root, schema, secret | {"password": "stale-Vault-Passw0rd"})
    backend = Counting(
        VaultSecretsProvider(url=openbao.url, auth=VaultAuth(token=SecretStr(openbao.root_token)))
    )
    cache = CachedSecretsProvider(backend, ttl_s=3600)
    await cache.resolve(schema)  # the stale password is cached
    put(vault_root, schema, secret | {"password": rotated})  # rotated in Vault (and in the database)

    outcome = await ActivityEnvironment().run(
        FlywayActivities(runner, {"default": cache}).run_flyway,
        FlywayRequest(action=Action.MIGRATE, tenant_id=schema),
    )
    assert outcome.ending_version == "5"
    assert (cache.stats.invalidations, backend.calls) == (1, 2)


# ---- the file backend ---------------------------------------------------------------------------


async def test_file_backend_rereads_an_edited_file_and_writes_atomically_with_private_mode(
    tmp_path: Path,
) -> None:
    path = tmp_path / "secrets.json"
    target = {"host": "h", "database": "d", "user": "u", "password": PASSWORD}
    path.write_text(json.dumps({"tenants": {"t1": target}}))
    provider = FileSecretsProvider(path)
    assert (await provider.resolve("t1")).password.get_secret_value() == PASSWORD
    path.write_text(json.dumps({"tenants": {"t1": target | {"password": "rotated-in-the-file-1"}}}))
    assert (await provider.resolve("t1")).password.get_secret_value() == "rotated-in-the-file-1"

    await provider.store(
        "t2", DatabaseTarget(host="h2", database="d", user="u2", password=SecretStr(PASSWORD))
    )
    await provider.store(
        "t2",
        DatabaseTarget(host="h2", database="d", user="app", password=SecretStr(PASSWORD)),
        role="runtime",
    )
    assert (await provider.resolve("t2")).user == "u2"
    assert json.loads(path.read_text())["runtime"]["t2"]["user"] == "app"
    assert (await provider.resolve("t1")).host == "h"  # other entries kept
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    await provider.delete("t2")
    with pytest.raises(SecretNotFoundError):
        await provider.resolve("t2")
    path.write_text("{not json")
    with pytest.raises(SecretMalformedError, match="not valid JSON"):
        await provider.resolve("t1")
