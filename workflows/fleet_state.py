"""FleetStateWorkflow: the fleet's state without a rollout (``fleetway fleet``, ``fleetway wait``).

One activity on a worker walks the tenant source and reads every table in bulk (credentials stay
on the worker); the result is the bounded picture. Short-lived; deterministic orchestration only.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from fleetway.activities.fleet.activity import FleetStateActivities
    from fleetway.activities.fleet.report import FleetReport
    from fleetway.activities.fleet.state import ReadFleetInput

__all__ = ["FleetStateWorkflow"]


@workflow.defn(name="FleetStateWorkflow")
class FleetStateWorkflow:
    """Returns what every selected tenant's ``flyway_schema_history`` shows, folded into a picture."""

    @workflow.run
    async def run(self, request: ReadFleetInput) -> FleetReport:
        """One read of the whole fleet (retried a few times: a read changes nothing)."""
        return await workflow.execute_activity_method(
            FleetStateActivities.read_fleet,
            request,
            start_to_close_timeout=timedelta(minutes=15),
            heartbeat_timeout=timedelta(minutes=2),
            retry_policy=RetryPolicy(maximum_attempts=3),
        )
