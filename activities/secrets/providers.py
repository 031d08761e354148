"""Resolving a tenant id to its database target: the ``SecretsProvider`` seam and the static backend.

Workflows only ever hold a tenant id and the *name* of a configured backend; the activity that
runs Flyway calls :meth:`SecretsProvider.resolve` itself, so no credential enters history.
Must not: log or echo a payload or password.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Protocol, cast

from fleetway.activities.backend_identity import check_backend
from fleetway.activities.database_target import DatabaseTarget
from fleetway.activities.errors import (
    ConfigurationError,
    InvalidTenantIdError,
    SecretMalformedError,
    SecretNotFoundError,
)
from fleetway.activities.secrets.payload import parse_target, target_payload

__all__ = [
    "TENANT_ID_PATTERN",
    "FileSecretsProvider",
    "SecretWriter",
    "SecretsProvider",
    "StaticSecretsProvider",
    "as_writer",
    "check_secret_prefix",
    "check_secret_role",
    "provider_for",
    "validate_tenant_id",
    "validate_tenant_ids",
]

TENANT_ID_PATTERN: Final = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def validate_tenant_id(raw: str) -> str:
    """Trim ``raw`` and check it against ``^[A-Za-z0-9_-]{1,128}$``.

    Raises:
        InvalidTenantIdError: naming the offending id, escaped (ids are not secret).
    """
    tenant_id = raw.strip()
    if not TENANT_ID_PATTERN.fullmatch(tenant_id):
        shown = ascii(raw[:140])
        raise InvalidTenantIdError(f"tenant id {shown} is invalid: must match ^[A-Za-z0-9_-]{{1,128}}$")
    return tenant_id


_BAD_IDS_SHOWN = 10


def validate_tenant_ids(raws: Sequence[str], *, where: str) -> list[str]:
    """Every id trimmed and checked; one error naming every bad one (empty and blank ids included).

    ``where`` says where the ids came from ("in --tenant", "in the tenant source's page").

    Raises:
        InvalidTenantIdError: naming up to 10 bad ids, escaped, and how many there were.
    """
    ids, bad = [], []
    for raw in raws:
        tenant_id = raw.strip()
        if TENANT_ID_PATTERN.fullmatch(tenant_id):
            ids.append(tenant_id)
        else:
            bad.append(ascii(raw[:140]))
    if bad:
        shown = ", ".join(bad[:_BAD_IDS_SHOWN]) + (
            f" and {len(bad) - _BAD_IDS_SHOWN} more" if len(bad) > _BAD_IDS_SHOWN else ""
        )
        noun = "tenant id" if len(bad) == 1 else f"{len(bad)} tenant ids"
        verb = "is" if len(bad) == 1 else "are"
        raise InvalidTenantIdError(
            f"{noun} {where} {verb} invalid: {shown}; each must match ^[A-Za-z0-9_-]{{1,128}}$"
        )
    return ids


class SecretsProvider(Protocol):
    """Turns a tenant id into that tenant's database target (credentials included)."""

    async def resolve(self, tenant_id: str) -> DatabaseTarget:
        """Return the tenant's target.

        Raises:
            InvalidTenantIdError: the id breaks the tenant id pattern (nothing is fetched).
            SecretNotFoundError: the store has no such secret.
            SecretMalformedError: the payload is not a valid target.
        """
        ...

    def invalidate(self, tenant_id: str) -> None:
        """Forget any cached copy, so the next resolve reads the store again."""
        ...


class SecretWriter(Protocol):
    """A backend that can also store credentials (provisioning writes the roles it creates).

    ``role`` selects the secret: ``""`` is the tenant's own (the migrator's, which rollouts use),
    ``"runtime"`` the application's, stored beside it (``<name>/runtime``).
    """

    async def store(self, tenant_id: str, target: DatabaseTarget, *, role: str = "") -> None:
        """Create or replace the secret."""
        ...

    async def delete(self, tenant_id: str, *, role: str = "") -> None:
        """Remove the secret; a missing one is fine."""
        ...


def provider_for(backends: Mapping[str, SecretsProvider], name: str, *, pinned: str = "") -> SecretsProvider:
    """The configured secret backend called ``name`` (every activity that resolves a tenant asks here).

    ``pinned``: the description of the backend the rollout pinned ("" for none).

    Raises:
        ConfigurationError: no backend of that name is configured on this worker.
        WorkerConfigMismatchError: this worker's backend is not the pinned one.
    """
    provider = backends.get(name)
    if provider is None:
        raise ConfigurationError(f"secrets backend {name!r} is not configured")
    check_backend("secret backend", name, provider, pinned)
    return provider


def as_writer(provider: SecretsProvider, name: str) -> SecretWriter:
    """``provider`` as a :class:`SecretWriter`.

    Raises:
        ConfigurationError: the backend ``name`` can only read (e.g. a static in-memory one).
    """
    if not (hasattr(provider, "store") and hasattr(provider, "delete")):
        raise ConfigurationError(f"secrets backend {name!r} cannot store secrets")
    return cast("SecretWriter", provider)


def check_secret_prefix(prefix: str) -> str:
    """A non-empty prefix must end with ``/`` (go-bricks), so ``tenant1`` never matches ``tenant10``.

    Raises:
        ConfigurationError: the prefix does not end with ``/``.
    """
    if prefix and not prefix.endswith("/"):
        raise ConfigurationError(f"secret name prefix {prefix!r} must end with '/'")
    return prefix


def check_secret_role(role: str) -> str:
    """Only the tenant's own secret and ``runtime`` exist.

    Raises:
        ConfigurationError: any other role.
    """
    if role not in {"", "runtime"}:
        raise ConfigurationError(f"unknown secret role {role!r} (use '' or 'runtime')")
    return role


class StaticSecretsProvider:
    """Targets held in memory: for tests and embedding applications."""

    def __init__(self, targets: Mapping[str, DatabaseTarget]) -> None:
        self._targets = dict(targets)
        self.description = f"static: {len(self._targets)} tenants in memory"
        """What this backend is, for ``fleetway``'s pre-rollout summary."""

    async def resolve(self, tenant_id: str) -> DatabaseTarget:
        """Return the tenant's target (see :class:`SecretsProvider`)."""
        tenant_id = validate_tenant_id(tenant_id)
        try:
            return self._targets[tenant_id]
        except KeyError:
            raise SecretNotFoundError(f"no target configured for tenant {tenant_id!r}") from None

    def invalidate(self, tenant_id: str) -> None:
        """Nothing is cached."""

    async def store(self, tenant_id: str, target: DatabaseTarget, *, role: str = "") -> None:
        """Keep ``target`` (the runtime role's under ``<id>/runtime``)."""
        key = validate_tenant_id(tenant_id) + ("/" + check_secret_role(role) if role else "")
        self._targets[key] = target

    async def delete(self, tenant_id: str, *, role: str = "") -> None:
        """Forget the target."""
        key = validate_tenant_id(tenant_id) + ("/" + check_secret_role(role) if role else "")
        self._targets.pop(key, None)


class FileSecretsProvider:
    """Targets in a JSON file ``{"tenants": {"<id>": {<DatabaseTarget fields>}}}`` (dev and demo).

    The parsed file is reused while its size and modification time are unchanged (a 10,000-tenant
    file is ~2 MB: re-parsing it per tenant cost more than Flyway), and re-read as soon as it
    changes, so edits apply to the next tenant without a restart.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self.description = f"file: {path}"
        """Where secrets are read: shown by ``fleetway`` before a rollout."""
        self._lock = asyncio.Lock()
        self._parsed: tuple[tuple[int, int], object] | None = None

    def _document(self) -> object:
        stat = self._path.stat()
        key = (stat.st_mtime_ns, stat.st_size)
        if self._parsed is None or self._parsed[0] != key:
            self._parsed = (key, json.loads(self._path.read_text()))
        return self._parsed[1]

    async def resolve(self, tenant_id: str) -> DatabaseTarget:
        """Return the tenant's target (see :class:`SecretsProvider`)."""
        tenant_id = validate_tenant_id(tenant_id)
        name = f"{self._path.name}#{tenant_id}"
        try:
            document = self._document()
        except FileNotFoundError:
            raise SecretNotFoundError(f"secrets file {str(self._path)!r} does not exist") from None
        except ValueError:
            raise SecretMalformedError(f"secrets file {str(self._path)!r} is not valid JSON") from None
        tenants = document.get("tenants") if isinstance(document, dict) else None
        if not isinstance(tenants, dict):
            raise SecretMalformedError(f"secrets file {str(self._path)!r} has no 'tenants' object")
        if tenant_id not in tenants:
            raise SecretNotFoundError(f"secret {name!r} not found")
        return parse_target(tenants[tenant_id], secret_name=name)

    def invalidate(self, tenant_id: str) -> None:
        """Nothing is cached."""

    def _section(self, role: str) -> str:
        return "runtime" if check_secret_role(role) else "tenants"

    async def store(self, tenant_id: str, target: DatabaseTarget, *, role: str = "") -> None:
        """Write the target under ``tenants`` (or ``runtime``), atomically, file mode 0600."""
        tenant_id = validate_tenant_id(tenant_id)
        async with self._lock:
            document = self._read_for_update()
            document.setdefault(self._section(role), {})[tenant_id] = target_payload(target)
            self._replace(document)

    async def delete(self, tenant_id: str, *, role: str = "") -> None:
        """Remove the tenant's entry, if any."""
        tenant_id = validate_tenant_id(tenant_id)
        async with self._lock:
            document = self._read_for_update()
            if document.get(self._section(role), {}).pop(tenant_id, None) is not None:
                self._replace(document)

    def _read_for_update(self) -> dict[str, Any]:
        """A private copy of the document to modify (the parsed one is shared with readers)."""
        try:
            document = self._document()
        except FileNotFoundError:
            return {"tenants": {}}
        except ValueError:
            raise SecretMalformedError(f"secrets file {str(self._path)!r} is not valid JSON") from None
        if not isinstance(document, dict):
            raise SecretMalformedError(f"secrets file {str(self._path)!r} must hold a JSON object")
        return copy.deepcopy(document)

    def _replace(self, document: dict[str, Any]) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self._path.parent, prefix=".secrets-")  # created 0600
        with os.fdopen(fd, "w") as handle:
            json.dump(document, handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self._path)
