"""AWS Secrets Manager backend: one secret per tenant, named ``<prefix><tenant id>``.

boto3 is synchronous, so each fetch runs in a worker thread; the client is built once (clients are
thread-safe) with bounded timeouts and botocore's standard retry mode, which already backs off on
throttling. Minimum IAM: ``secretsmanager:GetSecretValue`` on ``arn:...:secret:<prefix>*``.
Must not: log or echo a ``SecretString``; AWS error messages are not forwarded either (they can
quote request data), only the error code.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Final

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from fleetway.activities.database_target import DatabaseTarget
from fleetway.activities.errors import (
    SecretAccessDeniedError,
    SecretBackendError,
    SecretNotFoundError,
)
from fleetway.activities.secrets.payload import decode_secret, parse_target, target_payload
from fleetway.activities.secrets.providers import check_secret_prefix, check_secret_role, validate_tenant_id

__all__ = ["DEFAULT_AWS_PREFIX", "AwsSecretsManagerProvider", "silence_boto_body_logging"]

DEFAULT_AWS_PREFIX: Final = "fleetway/migrate/"
_NOT_FOUND: Final = frozenset({"ResourceNotFoundException"})
_DENIED: Final = frozenset(
    {"AccessDeniedException", "AccessDenied", "UnrecognizedClientException", "InvalidSignatureException",
     "ExpiredTokenException", "DecryptionFailure", "InvalidRequestException"}
)  # fmt: skip


def silence_boto_body_logging() -> None:
    """Keep botocore from logging secrets: at DEBUG, ``botocore.parsers`` logs every response body.

    Measured on the real client: with the root logger at DEBUG, ``GetSecretValue`` put the whole
    ``SecretString`` into a ``Response body:`` record. A worker run with ``FLEETWAY_LOG_LEVEL=DEBUG``
    must not leak credentials, so botocore and boto3 are held at INFO or above. Every process
    that talks to a secret store through boto3 calls it first (the worker's provider, the demo's
    seeding: its ``CreateSecret`` request bodies were logged at DEBUG too).
    """
    for name in ("botocore", "boto3"):
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET or logger.level < logging.INFO:
            logger.setLevel(logging.INFO)


class AwsSecretsManagerProvider:
    """Resolves tenants from AWS Secrets Manager (canonical or RDS-rotation payloads)."""

    def __init__(
        self,
        *,
        prefix: str = DEFAULT_AWS_PREFIX,
        region: str | None = None,
        endpoint_url: str | None = None,
        profile: str | None = None,
        client: Any = None,
    ) -> None:
        self._prefix = check_secret_prefix(prefix)
        self.description = f"aws: {endpoint_url or 'AWS'} region {region or 'default'} prefix {prefix}"
        """Where secrets are read (no credentials): shown by ``fleetway`` before a rollout."""
        silence_boto_body_logging()
        if client is None:
            session = boto3.session.Session(profile_name=profile, region_name=region)
            client = session.client(
                "secretsmanager",
                endpoint_url=endpoint_url,
                config=Config(
                    connect_timeout=5, read_timeout=10, retries={"mode": "standard", "max_attempts": 4}
                ),
            )
        self._client = client

    def secret_name(self, tenant_id: str) -> str:
        """The secret holding ``tenant_id``'s target."""
        return self._prefix + validate_tenant_id(tenant_id)

    async def resolve(self, tenant_id: str) -> DatabaseTarget:
        """Fetch and parse the tenant's secret (see :class:`SecretsProvider`).

        Raises:
            SecretAccessDeniedError: IAM or KMS refused this identity.
            SecretBackendError: the service could not be reached (retryable).
        """
        name = self.secret_name(tenant_id)
        raw = await asyncio.to_thread(self._fetch, name)
        return parse_target(decode_secret(raw, secret_name=name), secret_name=name)

    def _fetch(self, name: str) -> str | bytes:
        try:
            response = self._client.get_secret_value(SecretId=name)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", "Unknown"))
            if code in _NOT_FOUND:
                raise SecretNotFoundError(f"secret {name!r} not found in AWS Secrets Manager") from None
            if code in _DENIED:
                raise SecretAccessDeniedError(f"AWS Secrets Manager refused {name!r} ({code})") from None
            raise SecretBackendError(f"AWS Secrets Manager failed for secret {name!r} ({code})") from None
        except BotoCoreError as exc:
            raise SecretBackendError(
                f"AWS Secrets Manager unreachable for secret {name!r} ({type(exc).__name__})"
            ) from None
        if response.get("SecretString") is not None:
            return str(response["SecretString"])
        if response.get("SecretBinary"):
            return bytes(response["SecretBinary"])
        raise SecretNotFoundError(f"secret {name!r} has neither SecretString nor SecretBinary")

    def invalidate(self, tenant_id: str) -> None:
        """Nothing is cached here (wrap in :class:`CachedSecretsProvider`)."""

    def _name_for(self, tenant_id: str, role: str) -> str:
        return self.secret_name(tenant_id) + ("/" + check_secret_role(role) if role else "")

    async def store(self, tenant_id: str, target: DatabaseTarget, *, role: str = "") -> None:
        """Create the secret, or put a new current version (IAM: Create/PutSecretValue on the prefix)."""
        name = self._name_for(tenant_id, role)
        await asyncio.to_thread(self._put, name, json.dumps(target_payload(target)))

    def _put(self, name: str, value: str) -> None:
        try:
            try:
                self._client.put_secret_value(SecretId=name, SecretString=value)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in _NOT_FOUND:
                    raise
                self._client.create_secret(Name=name, SecretString=value)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", "Unknown"))
            error = SecretAccessDeniedError if code in _DENIED else SecretBackendError
            raise error(f"AWS Secrets Manager could not store {name!r} ({code})") from None
        except BotoCoreError as exc:
            raise SecretBackendError(
                f"AWS Secrets Manager unreachable storing {name!r} ({type(exc).__name__})"
            ) from None

    async def delete(self, tenant_id: str, *, role: str = "") -> None:
        """Delete immediately (no recovery window: a deprovisioned tenant's credentials must go)."""
        name = self._name_for(tenant_id, role)

        def remove() -> None:
            try:
                self._client.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)
            except ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code", "Unknown"))
                if code not in _NOT_FOUND:
                    raise SecretBackendError(
                        f"AWS Secrets Manager could not delete {name!r} ({code})"
                    ) from None
            except BotoCoreError as exc:
                raise SecretBackendError(
                    f"AWS Secrets Manager unreachable deleting {name!r} ({type(exc).__name__})"
                ) from None

        await asyncio.to_thread(remove)
