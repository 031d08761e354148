"""The fleet-state activities: tenants' tables read in bulk and judged against a set (issue 25).

``read_tenant_states`` screens one page of a rollout before dispatch (who is provably current,
who the ``--where`` selection takes); ``read_fleet`` walks a whole tenant source and returns the
fleet picture (``fleetway fleet``, ``fleetway wait``). Credentials are resolved here, as in the
Flyway activity, and never leave: results hold tenant ids, versions and server keys only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final

from temporalio import activity

from fleetway.activities.backend_identity import check_backend
from fleetway.activities.database_target import DatabaseTarget, Vendor
from fleetway.activities.errors import ConfigurationError, FleetwayError, to_application_error
from fleetway.activities.fleet.report import FleetReport, FleetTally
from fleetway.activities.fleet.selection import check_where, selects
from fleetway.activities.fleet.state import (
    LISTED,
    ReadFleetInput,
    ReadStatesInput,
    TenantState,
    TenantStates,
    within_budget,
)
from fleetway.activities.fleet.verdict import judge
from fleetway.activities.flyway.checksums import (
    NOOP_MIGRATE_CALLBACKS,
    VALIDATE_CALLBACKS,
    SetMigrations,
    read_set_migrations,
    version_key,
)
from fleetway.activities.flyway.contract import placeholder_values
from fleetway.activities.flyway.options import LABEL_PREFIX
from fleetway.activities.heartbeats import heartbeating
from fleetway.activities.postgres.bulk_history import TenantHistory, read_histories
from fleetway.activities.secrets.providers import SecretsProvider, provider_for, validate_tenant_ids
from fleetway.activities.sets.store import MigrationSets, ResolvedSet
from fleetway.activities.tenants.label_lookup import LabelLookup
from fleetway.activities.tenants.labels import parse_selector
from fleetway.activities.tenants.static import TenantLister
from fleetway.activities.tenants.walk import list_all_tenants

__all__ = ["FleetStateActivities"]

_RESOLVES: Final = 32  # secret resolves in flight at once
_READ_PAGE: Final = 1000


def _applied_by(history: TenantHistory, marker: str, version: str) -> bool:
    """Whether the table holds a row the marker's rollout wrote (of ``version``, when one is named)."""
    wanted = version_key(version) if version else None
    return any(
        row.installed_by == marker
        and row.type != "DELETE"
        and (wanted is None or (row.version is not None and _same_version(row.version, wanted)))
        for row in history.rows
    )


def _same_version(text: str, wanted: tuple[int, ...]) -> bool:
    try:
        return version_key(text) == wanted
    except ValueError:  # a hand-edited version Flyway itself would refuse
        return False


class FleetStateActivities:
    """Bound to the worker's secret backends, migration sets and tenant sources."""

    def __init__(
        self,
        secrets: Mapping[str, SecretsProvider],
        sets: MigrationSets | None,
        sources: Mapping[str, TenantLister] | None = None,
        *,
        labels: LabelLookup | None = None,
        concurrency: int = 8,
    ) -> None:
        self._secrets = dict(secrets)
        self._sets = sets
        self._sources = dict(sources or {})
        self._labels = labels
        self._concurrency = concurrency
        self._migrations: dict[str, SetMigrations] = {}  # by digest: a set never changes

    async def _set(self, digest: str) -> tuple[str, SetMigrations]:
        if self._sets is None:
            return "", SetMigrations(unknown="this worker runs without migration sets")
        resolved: ResolvedSet = await (self._sets.resolve(digest) if digest else self._sets.local())
        if resolved.digest not in self._migrations:
            self._migrations[resolved.digest] = await asyncio.to_thread(read_set_migrations, resolved.path)
        return resolved.digest, self._migrations[resolved.digest]

    async def _read(
        self,
        tenants: list[str],
        backend: str,
        pinned: str,
        migrations: SetMigrations,
        placeholders: Mapping[str, str] | None = None,
        *,
        tenant_source: str = "default",
    ) -> tuple[list[TenantState], dict[str, TenantHistory]]:
        """Resolve, read in bulk, judge; a tenant whose secret fails is unreadable, not fatal.

        Each tenant is judged with the placeholder values its Flyway run would get: the rollout's,
        its id and schema, and its ``label.KEY`` values when the set's repeatables use them.
        """
        provider = provider_for(self._secrets, backend, pinned=pinned)
        gate = asyncio.Semaphore(_RESOLVES)

        async def resolve(tenant: str) -> DatabaseTarget | str:
            async with gate:
                try:
                    return await provider.resolve(tenant)
                except FleetwayError as exc:
                    return f"{exc.error_type}: credentials unavailable"

        resolved = dict(zip(tenants, await asyncio.gather(*(resolve(t) for t in tenants)), strict=True))
        for tenant, target in resolved.items():
            if isinstance(target, DatabaseTarget) and target.vendor is not Vendor.POSTGRESQL:
                # Only PostgreSQL histories are read here; the others stay Flyway's to judge.
                resolved[tenant] = f"{target.vendor.value} histories are not read in bulk"
        targets = {t: r for t, r in resolved.items() if isinstance(r, DatabaseTarget)}
        histories = await read_histories(targets, concurrency=self._concurrency, tolerate=True)
        read_at = datetime.now(UTC).isoformat(timespec="seconds")
        states = []
        for tenant in tenants:
            target = resolved[tenant]
            if isinstance(target, str):
                history = TenantHistory(tenant_id=tenant, server="", table_exists=False, unreadable=target)
                values: dict[str, str] = {}
            else:
                history = histories[tenant]
                labels = await self._label_values(migrations, tenant_source, tenant)
                values = placeholder_values(tenant, target, placeholders, labels)
            state = judge(history, migrations, values)
            states.append(state.model_copy(update={"read_at": read_at}))
        return states, histories

    async def _label_values(self, migrations: SetMigrations, source: str, tenant: str) -> dict[str, str]:
        """``label.KEY`` → the tenant's label, when a repeatable's checksum depends on one ({} else)."""
        if self._labels is None or not migrations.label_placeholders:
            return {}
        try:
            labels = await self._labels.labels(source, tenant)
        except FleetwayError:
            return {}  # the repeatable's checksum stays unknown: Flyway's run decides
        return {f"{LABEL_PREFIX}{key}": value for key, value in labels.items()}

    @activity.defn(name="read_tenant_states")
    async def read_tenant_states(self, request: ReadStatesInput) -> TenantStates:
        """Read and judge one page of tenants; ``selected`` says which the rollout takes."""
        try:
            tenants = validate_tenant_ids(request.tenant_ids, where="in read_tenant_states")
            where = check_where(request.where)
            async with heartbeating():  # retried by time: a read that stalls is timed out and retried
                digest, migrations = await self._set(request.migration_set)
                states, histories = await self._read(
                    tenants,
                    request.secrets_backend,
                    request.pinned_secrets,
                    migrations,
                    request.placeholders,
                    tenant_source=request.tenant_source,
                )
        except FleetwayError as exc:
            raise to_application_error(exc) from None
        selected = [selects(where, s) for s in states]
        if request.applied_marker:
            selected = [
                chosen
                and s.tenant_id in histories
                and _applied_by(histories[s.tenant_id], request.applied_marker, request.applied_version)
                for chosen, s in zip(selected, states, strict=True)
            ]
        read_at = states[0].read_at if states else datetime.now(UTC).isoformat(timespec="seconds")
        return within_budget(TenantStates(
            read_at=read_at, migration_set=digest, states=states, selected=selected,
            migrate_callbacks=migrations.callbacks_on(NOOP_MIGRATE_CALLBACKS)[:LISTED],
            validate_callbacks=migrations.callbacks_on(VALIDATE_CALLBACKS)[:LISTED],
        ))  # fmt: skip

    @activity.defn(name="read_fleet")
    async def read_fleet(self, request: ReadFleetInput) -> FleetReport:
        """Walk the source, read every (selected) tenant's table, return the picture."""
        try:
            source = self._sources.get(request.tenant_source)
            if source is None:
                raise ConfigurationError(f"tenant source {request.tenant_source!r} is not configured")
            check_backend("tenant source", request.tenant_source, source, "")
            selector = parse_selector(request.selector) if request.selector else None
            digest, migrations = await self._set(request.migration_set)
            listing = await list_all_tenants(source, page_size=_READ_PAGE, on_page=activity.heartbeat)
            tenants = [
                t
                for t in listing.tenant_ids
                if selector is None or selector.matches(listing.labels.get(t, {}))
            ]
            tally = FleetTally(at_least=request.at_least)
            read_at = ""
            for start in range(0, len(tenants), _READ_PAGE):
                page = tenants[start : start + _READ_PAGE]
                states, _ = await self._read(
                    page, request.secrets_backend, "", migrations, request.placeholders,
                    tenant_source=request.tenant_source,
                )  # fmt: skip
                read_at = read_at or (states[0].read_at if states else "")
                for state in states:
                    tally.add(state, listing.labels.get(state.tenant_id, {}))
                activity.heartbeat(start + len(page))
        except FleetwayError as exc:
            raise to_application_error(exc) from None
        latest = max(migrations.versioned.values(), key=lambda m: version_key(m.version), default=None)
        return tally.report(
            read_at=read_at or datetime.now(UTC).isoformat(timespec="seconds"),
            migration_set=digest,
            latest=latest.version if latest else "",
            selector=request.selector,
        )
