"""The server activities a rollout calls: the server keys of a page, one server's health.

Credentials are resolved here from the tenant's secret and never leave: results hold server keys
(``host:port``) and measures only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Final

from temporalio import activity

from fleetway.activities.database_target import DatabaseTarget, Vendor, server_key
from fleetway.activities.errors import FleetwayError, to_application_error
from fleetway.activities.secrets.providers import SecretsProvider, provider_for, validate_tenant_ids
from fleetway.activities.servers.health import check_health
from fleetway.activities.servers.models import CheckServerInput, HealthState, ServerHealth, ServerKeysInput

__all__ = ["ServerActivities"]

_RESOLVES: Final = 32  # secret resolves in flight at once


class ServerActivities:
    """Bound to the worker's secret backends."""

    def __init__(self, secrets: Mapping[str, SecretsProvider]) -> None:
        self._secrets = dict(secrets)

    @activity.defn(name="server_keys")
    async def server_keys(self, request: ServerKeysInput) -> list[str]:
        """Each tenant's ``host:port``, in input order; "" when its secret does not resolve.

        An unresolvable tenant is not this activity's failure: its Flyway run reports why.
        """
        try:
            tenants = validate_tenant_ids(request.tenant_ids, where="in server_keys")
            provider = provider_for(self._secrets, request.secrets_backend, pinned=request.pinned_secrets)
        except FleetwayError as exc:
            raise to_application_error(exc) from None
        gate = asyncio.Semaphore(_RESOLVES)

        async def key(tenant: str) -> str:
            async with gate:
                try:
                    return server_key(await provider.resolve(tenant))
                except FleetwayError:
                    return ""

        return list(await asyncio.gather(*(key(t) for t in tenants)))

    @activity.defn(name="check_server")
    async def check_server(self, request: CheckServerInput) -> ServerHealth:
        """One look at ``request.server`` through ``request.tenant_id``'s login."""
        try:
            provider = provider_for(self._secrets, request.secrets_backend, pinned=request.pinned_secrets)
            target: DatabaseTarget = await provider.resolve(request.tenant_id)
        except FleetwayError as exc:
            raise to_application_error(exc) from None
        if target.vendor is not Vendor.POSTGRESQL or server_key(target) != request.server:
            # Another vendor, or the tenant moved since its key was read: nothing to judge here.
            return ServerHealth(state=HealthState.OK, why="not checked")
        return await check_health(target, request.controls)
