"""DescribeFleetWorkflow: ask the workers what a rollout would use, before starting one.

``fleetway list-tenants`` and the summary ``fleetway migrate`` prints before a rollout come from
here, so they answer from the same place a rollout reads: a worker's tenant source (walked
through the same ``list_tenants_page`` activity with the same cycle/page-cap/duplicate rules)
and its profile (task queue, secret backend, migration set, set store). Short-lived; its result
is the answer. Deterministic orchestration only.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from fleetway.activities.errors import TenantSourceError
    from fleetway.activities.tenants.static import ListTenantsInput, TenantPage, TenantSourceActivities
    from fleetway.activities.tenants.walk import list_all_tenants
    from fleetway.activities.wire import CLIENT_INPUT, WIRE_MODEL
    from fleetway.activities.worker_profile import DescribeWorkerInput, WorkerProfile, WorkerProfileActivities

__all__ = ["DescribeFleetInput", "DescribeFleetWorkflow", "FleetDescription"]

MAX_LISTED_BYTES: Final = 512 * 1024  # the ids' encoded bytes in the answer (50,000 of 8 characters)
_SHORT: Final = timedelta(seconds=30)


class DescribeFleetInput(BaseModel):
    """What to ask: always the worker's profile; the whole tenant list when ``list_tenants``."""

    model_config = CLIENT_INPUT

    @classmethod
    def from_client(cls, data: object) -> bool:
        """Always a client's input (see ``activities/wire.py``)."""
        return True

    tenant_source: str = "default"
    list_tenants: bool = False
    migration_set: str = ""
    page_size: int = Field(default=500, ge=1, le=1000)


class FleetDescription(BaseModel):
    """A worker's profile and, when asked, its tenant list (or why it could not be listed)."""

    model_config = WIRE_MODEL

    worker: WorkerProfile
    tenants: list[str] = Field(default_factory=list)
    duplicates: list[str] = Field(default_factory=list)
    pages: int = 0
    total: int = 0  # every id the source listed (``tenants`` may hold a prefix: ``truncated``)
    truncated: bool = False
    error: str = ""


class _ActivityPager:
    """A ``TenantLister`` whose pages come from the ``list_tenants_page`` activity."""

    def __init__(self, source: str) -> None:
        self._source = source

    async def list_page(self, cursor: str | None, limit: int) -> TenantPage:
        return await workflow.execute_activity_method(
            TenantSourceActivities.list_tenants_page,
            ListTenantsInput(source=self._source, cursor=cursor, limit=limit),
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=RetryPolicy(maximum_attempts=5),
        )


@workflow.defn(name="DescribeFleetWorkflow")
class DescribeFleetWorkflow:
    """Returns what a worker on this task queue would use for a rollout."""

    @workflow.run
    async def run(self, request: DescribeFleetInput) -> FleetDescription:
        """The profile, then (when asked) every page of the tenant source."""
        profile = await workflow.execute_activity_method(
            WorkerProfileActivities.describe_worker,
            DescribeWorkerInput(migration_set=request.migration_set),
            start_to_close_timeout=_SHORT,
            retry_policy=RetryPolicy(maximum_attempts=3),
        )
        if not request.list_tenants:
            return FleetDescription(worker=profile)
        try:
            listing = await list_all_tenants(
                _ActivityPager(request.tenant_source), page_size=request.page_size
            )
        except ActivityError as err:
            cause = err.cause
            reason = (
                f"{cause.type}: {cause.message}" if isinstance(cause, ApplicationError) else "activity failed"
            )
            return FleetDescription(worker=profile, error=reason)
        except TenantSourceError as exc:
            return FleetDescription(worker=profile, error=f"{exc.error_type}: {exc}")
        shown = _prefix_within(listing.tenant_ids, MAX_LISTED_BYTES)
        return FleetDescription(
            worker=profile,
            tenants=shown,
            duplicates=_prefix_within(listing.duplicates, 64 * 1024),
            pages=listing.pages,
            total=len(listing.tenant_ids),
            truncated=len(shown) < len(listing.tenant_ids),
        )


def _prefix_within(ids: list[str], budget: int) -> list[str]:
    """The longest prefix of ``ids`` whose encoded size is within ``budget`` bytes."""
    size = 0
    for count, tenant in enumerate(ids):
        size += len(tenant) + 3
        if size > budget:
            return ids[:count]
    return ids
