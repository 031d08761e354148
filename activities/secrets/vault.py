"""HashiCorp Vault / OpenBao KV v2 backend via hvac: one secret per tenant at ``<prefix><tenant id>``.

Auth is a token or AppRole. AppRole logs in lazily and again when Vault answers 403 (an expired
token), once per call. hvac is synchronous, so reads run in a worker thread; login is serialised.
Minimum policy: ``read`` on ``<mount>/data/<prefix>*``.
Must not: log or echo a payload, a token or a secret id; hvac's error text is not forwarded.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Final, Literal

import hvac
import hvac.exceptions
import requests
from pydantic import BaseModel, ConfigDict, SecretStr, model_validator

from fleetway.activities.database_target import DatabaseTarget
from fleetway.activities.errors import (
    ConfigurationError,
    SecretAccessDeniedError,
    SecretBackendError,
    SecretMalformedError,
    SecretNotFoundError,
)
from fleetway.activities.secrets.payload import parse_target, target_payload
from fleetway.activities.secrets.providers import check_secret_prefix, check_secret_role, validate_tenant_id

__all__ = ["DEFAULT_VAULT_PREFIX", "VaultAuth", "VaultSecretsProvider"]

DEFAULT_VAULT_PREFIX: Final = "fleetway/migrate/"


class VaultAuth(BaseModel):
    """How the worker authenticates to Vault: ``token``, or ``approle`` with a role and secret id."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: Literal["token", "approle"] = "token"
    token: SecretStr | None = None
    role_id: str | None = None
    secret_id: SecretStr | None = None
    approle_mount: str = "approle"

    @model_validator(mode="after")
    def _complete(self) -> VaultAuth:
        if self.method == "token" and not self.token:
            raise ValueError("token auth needs a token")
        if self.method == "approle" and not (self.role_id and self.secret_id):
            raise ValueError("approle auth needs role_id and secret_id")
        return self


class VaultSecretsProvider:
    """Resolves tenants from a KV v2 mount."""

    def __init__(
        self,
        *,
        url: str,
        auth: VaultAuth,
        mount: str = "secret",
        prefix: str = DEFAULT_VAULT_PREFIX,
        namespace: str | None = None,
        verify: bool | str = True,
        timeout_s: float = 10.0,
    ) -> None:
        if not url.startswith(("https://", "http://")):
            raise ConfigurationError(f"vault url {url!r} must be http(s)")
        self._prefix = check_secret_prefix(prefix)
        self.description = f"vault: {url} mount {mount} prefix {prefix}"
        """Where secrets are read (no credentials): shown by ``fleetway`` before a rollout."""
        self._mount = mount
        self._auth = auth
        self._client = hvac.Client(url=url, namespace=namespace, verify=verify, timeout=timeout_s)
        self._lock = threading.Lock()
        self._logged_in = False
        if auth.method == "token" and auth.token is not None:
            self._client.token = auth.token.get_secret_value()
            self._logged_in = True

    def secret_path(self, tenant_id: str) -> str:
        """The KV path (under the mount) holding ``tenant_id``'s target."""
        return self._prefix + validate_tenant_id(tenant_id)

    async def resolve(self, tenant_id: str) -> DatabaseTarget:
        """Read and parse the tenant's secret (see :class:`SecretsProvider`).

        Raises:
            SecretAccessDeniedError: the policy refuses the path, or login failed.
            SecretBackendError: Vault is sealed, down or unreachable (retryable).
        """
        path = self.secret_path(tenant_id)
        name = f"{self._mount}/{path}"
        data = await asyncio.to_thread(self._read, path, name)
        return parse_target(data, secret_name=name)

    def _login(self, *, force: bool) -> None:
        with self._lock:
            if self._logged_in and not force:
                return
            if self._auth.method != "approle":
                return
            assert self._auth.role_id is not None and self._auth.secret_id is not None  # noqa: S101
            try:
                self._client.auth.approle.login(
                    role_id=self._auth.role_id,
                    secret_id=self._auth.secret_id.get_secret_value(),
                    mount_point=self._auth.approle_mount,
                )
            except (hvac.exceptions.InvalidRequest, hvac.exceptions.Forbidden):
                raise SecretAccessDeniedError("vault approle login was refused") from None
            except (hvac.exceptions.VaultError, requests.RequestException) as exc:
                raise SecretBackendError(f"vault approle login failed ({type(exc).__name__})") from None
            self._logged_in = True

    def _read(self, path: str, name: str) -> object:
        self._login(force=False)
        for attempt in (1, 2):
            try:
                response = self._client.secrets.kv.v2.read_secret_version(
                    path=path, mount_point=self._mount, raise_on_deleted_version=True
                )
            except hvac.exceptions.InvalidPath:
                raise SecretNotFoundError(f"secret {name!r} not found in vault") from None
            except hvac.exceptions.Forbidden:
                if attempt == 1 and self._auth.method == "approle":
                    self._login(force=True)  # the AppRole token may have expired
                    continue
                raise SecretAccessDeniedError(f"vault refused secret {name!r} (403)") from None
            except (hvac.exceptions.VaultError, requests.RequestException) as exc:
                raise SecretBackendError(f"vault read of {name!r} failed ({type(exc).__name__})") from None
            break
        data = response.get("data", {}).get("data") if isinstance(response, dict) else None
        if not isinstance(data, dict):
            raise SecretMalformedError(f"secret {name!r} has no KV v2 data object")
        return data

    def invalidate(self, tenant_id: str) -> None:
        """Nothing is cached here (wrap in :class:`CachedSecretsProvider`)."""

    def _path_for(self, tenant_id: str, role: str) -> str:
        return self.secret_path(tenant_id) + ("/" + check_secret_role(role) if role else "")

    async def store(self, tenant_id: str, target: DatabaseTarget, *, role: str = "") -> None:
        """Write a new KV v2 version (policy: ``create``/``update`` on the prefix)."""
        path = self._path_for(tenant_id, role)
        payload = target_payload(target)
        await asyncio.to_thread(
            self._call,
            path,
            lambda: self._client.secrets.kv.v2.create_or_update_secret(
                path=path, secret=payload, mount_point=self._mount
            ),
        )

    async def delete(self, tenant_id: str, *, role: str = "") -> None:
        """Delete every version and the metadata (policy: ``delete`` on ``<mount>/metadata/<prefix>*``)."""
        path = self._path_for(tenant_id, role)
        await asyncio.to_thread(
            self._call,
            path,
            lambda: self._client.secrets.kv.v2.delete_metadata_and_all_versions(
                path=path, mount_point=self._mount
            ),
        )

    def _call(self, path: str, operation: Callable[[], object]) -> None:
        self._login(force=False)
        name = f"{self._mount}/{path}"
        for attempt in (1, 2):
            try:
                operation()
                return
            except hvac.exceptions.InvalidPath:
                return  # deleting what is not there
            except hvac.exceptions.Forbidden:
                if attempt == 1 and self._auth.method == "approle":
                    self._login(force=True)
                    continue
                raise SecretAccessDeniedError(f"vault refused writing {name!r} (403)") from None
            except (hvac.exceptions.VaultError, requests.RequestException) as exc:
                raise SecretBackendError(f"vault write of {name!r} failed ({type(exc).__name__})") from None
