"""A short TTL cache in front of any :class:`SecretsProvider`.

A 10,000-tenant rollout resolves each tenant at least once per attempt; without a cache a retry
storm hammers the secret store (AWS bills per call, Vault rate-limits). The TTL is short (default
5 min) so a rotated secret is picked up without a restart, and :meth:`invalidate` lets the Flyway
activity drop an entry the database just rejected. Concurrent misses for one tenant share one fetch.
Failures are never cached. Must not: log a target.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from fleetway.activities.database_target import DatabaseTarget
from fleetway.activities.secrets.providers import SecretsProvider, SecretWriter, as_writer, validate_tenant_id

__all__ = ["CacheStats", "CachedSecretsProvider"]


@dataclass
class CacheStats:
    """Counters for tests, benchmarks and metrics."""

    hits: int = 0
    misses: int = 0
    invalidations: int = 0


class CachedSecretsProvider:
    """Caches ``inner.resolve`` per tenant for ``ttl_s`` seconds, at most ``max_entries`` tenants."""

    def __init__(
        self,
        inner: SecretsProvider,
        *,
        ttl_s: float = 300.0,
        max_entries: int = 20_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl_s < 0 or max_entries < 1:
            raise ValueError("ttl_s must be >= 0 and max_entries >= 1")
        self._inner = inner
        self.description: str = getattr(inner, "description", type(inner).__name__)
        """The inner backend's description (caching does not change what is read)."""
        self._ttl = ttl_s
        self._max = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, DatabaseTarget]] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[DatabaseTarget]] = {}
        self.stats = CacheStats()

    async def resolve(self, tenant_id: str) -> DatabaseTarget:
        """Return the cached target while fresh, else fetch it (see :class:`SecretsProvider`)."""
        tenant_id = validate_tenant_id(tenant_id)
        entry = self._entries.get(tenant_id)
        if entry is not None and self._clock() < entry[0]:
            self.stats.hits += 1
            self._entries.move_to_end(tenant_id)
            return entry[1]
        pending = self._inflight.get(tenant_id)
        if pending is not None:
            self.stats.hits += 1
            try:
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not pending.cancelled() or (task is not None and task.cancelling()):
                    raise
                return await self.resolve(tenant_id)  # the fetching caller was cancelled, not us
        self.stats.misses += 1
        future: asyncio.Future[DatabaseTarget] = asyncio.get_running_loop().create_future()
        self._inflight[tenant_id] = future
        try:
            target = await self._inner.resolve(tenant_id)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it, nobody else must
            raise
        finally:
            del self._inflight[tenant_id]
        future.set_result(target)
        if self._ttl > 0:
            self._entries[tenant_id] = (self._clock() + self._ttl, target)
            self._entries.move_to_end(tenant_id)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
        return target

    def invalidate(self, tenant_id: str) -> None:
        """Drop the tenant's entry here and in the backend's own cache, if it has one."""
        self.stats.invalidations += 1
        self._entries.pop(tenant_id.strip(), None)
        self._inner.invalidate(tenant_id)

    async def store(self, tenant_id: str, target: DatabaseTarget, *, role: str = "") -> None:
        """Write through to the backend (it must be a :class:`SecretWriter`) and drop the entry."""
        await self._writer().store(tenant_id, target, role=role)
        self.invalidate(tenant_id)

    async def delete(self, tenant_id: str, *, role: str = "") -> None:
        """Delete in the backend and drop the entry."""
        await self._writer().delete(tenant_id, role=role)
        self.invalidate(tenant_id)

    def _writer(self) -> SecretWriter:
        return as_writer(self._inner, type(self._inner).__name__)
