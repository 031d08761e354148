"""One tenant's labels, looked up in a worker's tenant source, for ``${label.KEY}`` placeholders.

A rollout's pages carry ids only (labels never fill its history), so the Flyway activity asks the
source itself when its set uses a label placeholder. The source is walked once per worker and kept
for ``ttl_s``: a rollout asks for every tenant within minutes, and one walk serves them all.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

from fleetway.activities.errors import ConfigurationError
from fleetway.activities.tenants.static import TenantLister
from fleetway.activities.tenants.walk import list_all_tenants

__all__ = ["LabelLookup"]


class LabelLookup:
    """Labels by tenant, per configured source, refreshed after ``ttl_s``."""

    def __init__(self, sources: Mapping[str, TenantLister], *, ttl_s: float = 60.0) -> None:
        self._sources = dict(sources)
        self._ttl_s = ttl_s
        self._cached: dict[str, tuple[float, dict[str, dict[str, str]]]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def labels(self, source: str, tenant_id: str) -> dict[str, str]:
        """The tenant's labels in ``source`` ({} for a tenant it does not label or list).

        Raises:
            ConfigurationError: ``source`` is not configured on this worker.
            TenantSourceError: the source could not be walked.
        """
        lister = self._sources.get(source)
        if lister is None:
            raise ConfigurationError(
                f"tenant source {source!r} is not configured; label placeholders need it"
            )
        async with self._locks.setdefault(source, asyncio.Lock()):  # one walk, however many tenants ask
            cached = self._cached.get(source)
            if cached is None or time.monotonic() - cached[0] > self._ttl_s:
                cached = (time.monotonic(), (await list_all_tenants(lister)).labels)
                self._cached[source] = cached
        return dict(cached[1].get(tenant_id, {}))
