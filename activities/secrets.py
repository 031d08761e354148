"""Resolving a tenant id to its database target: the ``SecretsProvider`` seam and the static backend.

Workflows only ever hold a tenant id and the *name* of a configured backend; the activity that
runs Flyway calls :meth:`SecretsProvider.resolve` itself, so no credential enters history.
Must not: log or echo a payload or password.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Final, Protocol

from activities.database_target import DatabaseTarget
from activities.errors import InvalidTenantIdError, SecretMalformedError, SecretNotFoundError
from activities.secret_payload import parse_target

__all__ = [
    "TENANT_ID_PATTERN",
    "FileSecretsProvider",
    "SecretsProvider",
    "StaticSecretsProvider",
    "validate_tenant_id",
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


class StaticSecretsProvider:
    """Targets held in memory: for tests and embedding applications."""

    def __init__(self, targets: Mapping[str, DatabaseTarget]) -> None:
        self._targets = dict(targets)

    async def resolve(self, tenant_id: str) -> DatabaseTarget:
        """Return the tenant's target (see :class:`SecretsProvider`)."""
        tenant_id = validate_tenant_id(tenant_id)
        try:
            return self._targets[tenant_id]
        except KeyError:
            raise SecretNotFoundError(f"no target configured for tenant {tenant_id!r}") from None

    def invalidate(self, tenant_id: str) -> None:
        """Nothing is cached."""


class FileSecretsProvider:
    """Targets in a JSON file ``{"tenants": {"<id>": {<DatabaseTarget fields>}}}`` (dev and demo).

    The file is re-read on every resolve, so edits apply to the next tenant without a restart.
    """

    def __init__(self, path: Path) -> None:
        self._path = path

    async def resolve(self, tenant_id: str) -> DatabaseTarget:
        """Return the tenant's target (see :class:`SecretsProvider`)."""
        tenant_id = validate_tenant_id(tenant_id)
        name = f"{self._path.name}#{tenant_id}"
        try:
            document = json.loads(self._path.read_text())
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
