"""Per-tenant records of a rollout, and the activity that reads a finished rollout's failures.

The records are shared by the workflows (which build them) and the CLI (which renders them), so
they live here, below both. Must not: hold a credential or Flyway free text.
"""

from __future__ import annotations

import asyncio
from enum import StrEnum
from typing import Any

from pydantic import BaseModel
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowQueryFailedError
from temporalio.service import RPCError, RPCStatusCode

from fleetway.activities.errors import (
    ConfigurationError,
    FleetwayError,
    InvalidInputError,
    RolloutNotFoundError,
    to_application_error,
)
from fleetway.activities.flyway.schema_history import history_marker
from fleetway.activities.tenants.wave_book import PlanRead, ReadPlanInput
from fleetway.activities.wire import WIRE_MODEL

__all__ = ["Outcome", "OutcomeSource", "RolloutActivities", "TenantOutcome"]


class Outcome(StrEnum):
    """How one tenant's run ended. Wire value: never rename a member."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    SKIPPED = "skipped"
    CURRENT = "current"  # its table proved it current (migrate) or intact (validate): no Flyway run


class OutcomeSource(StrEnum):
    """Where a tenant outcome's versions come from. Wire value: never rename a member."""

    FLYWAY = "flyway"  # one complete Flyway run reported them (a first attempt that finished)
    HISTORY = "history"  # read from flyway_schema_history after the run (retried, failed, cancelled)
    UNKNOWN = "unknown"  # neither: the table could not be read (the message says why)


class TenantOutcome(BaseModel):
    """One tenant's result, compact enough to keep thousands in one payload.

    ``message`` is fleetway's vetted text (error class and structured detail), at most 300 chars.
    For migrate, the versions are what happened to the schema during this rollout across every
    attempt: ``version_before`` when the rollout first touched it, ``version_after`` now,
    ``applied_versions`` those this rollout applied (whichever attempt did), ``failed_at`` the
    version whose script failed. ``source`` says whether Flyway's report or the table said so.
    ``migration_set`` is the digest of the set the tenant ran (or, when nothing ran, was named).
    ``db_message`` is the database's own message for a failed script (redacted, one line, ≤ 300).
    ``wave`` names the rollout wave the tenant ran in (ring rollouts only).
    ``read_at``: for ``current``, when its ``flyway_schema_history`` was read (ISO 8601, UTC).
    """

    model_config = WIRE_MODEL

    tenant_id: str
    outcome: Outcome
    version_before: str = ""
    version_after: str = ""
    applied: int = 0
    pending: list[str] = []
    tampered: list[str] = []
    ahead: list[str] = []
    failed_versions: list[str] = []
    duration_ms: int = 0
    error_class: str = ""
    message: str = ""
    applied_versions: list[str] = []
    failed_at: str = ""
    attempts: int = 0
    source: OutcomeSource | None = None
    migration_set: str = ""
    db_message: str = ""
    wave: str = ""
    repeatables: list[str] = []
    outdated_repeatables: list[str] = []
    repaired: list[str] = []
    read_at: str = ""
    server: str = ""  # ``host:port`` of its database server, when the rollout knew it
    audit_refused: str = ""  # why the audit sink refused its event for good (a grant, a table)


class RolloutActivities:
    """Activities that read other rollouts through the Temporal client."""

    def __init__(self, client: Client) -> None:
        self._client = client

    @activity.defn(name="failed_tenants_of")
    async def failed_tenants_of(self, rollout_id: str) -> list[str]:
        """The tenants that failed or were cancelled in an ended rollout (for ``rerun_failed_of``).

        A completed rollout's result names them (read as plain JSON: activities must not import
        workflow models); a cancelled or terminated one has no result and answers the
        ``rerun_tenants`` query from its history instead. A running one is refused at once: its
        list is not final. Refused too when some failures were not even named.
        """
        try:
            return await self._rerun_list(rollout_id)
        except FleetwayError as exc:
            raise to_application_error(exc) from None

    async def _rerun_list(self, rollout_id: str) -> list[str]:
        handle = self._client.get_workflow_handle(rollout_id, result_type=dict)
        try:
            status = (await handle.describe()).status
        except RPCError:
            raise RolloutNotFoundError(f"rollout {rollout_id!r} not found") from None
        if status is WorkflowExecutionStatus.RUNNING:
            raise InvalidInputError(
                f"rollout {rollout_id!r} is still running: its failed tenants are not final; "
                "rerun them once it ends (or cancel it first)"
            )
        if status is WorkflowExecutionStatus.COMPLETED:
            result: dict[str, Any] = await handle.result(follow_runs=True)
        else:  # cancelled, terminated, failed, timed out: no result, but the history holds the ledger
            try:
                result = await handle.query("rerun_tenants", result_type=dict)
            except (RPCError, WorkflowQueryFailedError):
                raise RolloutNotFoundError(
                    f"rollout {rollout_id!r} ended {status.name.lower() if status else ''} and its tenants "
                    "could not be read"
                ) from None
            result = {"failed_overflow": result.get("tenants") or [], "failed_lost": result.get("lost") or 0}
        return _rerun(rollout_id, result)

    @activity.defn(name="read_wave_plan")
    async def read_wave_plan(self, request: ReadPlanInput) -> PlanRead:
        """The plan's summary or one chunk from its holder, waiting (heartbeating) until it is made."""
        handle = self._client.get_workflow_handle(request.holder)
        while True:
            answer: PlanRead = await handle.query("plan", request.index, result_type=PlanRead)
            if answer.ready:
                return answer
            activity.heartbeat()
            await asyncio.sleep(1.0)

    @activity.defn(name="rollout_is_open")
    async def rollout_is_open(self, rollout_id: str) -> bool:
        """Whether the rollout still runs (its wave plan's holder ends when it does not)."""
        try:
            status = (await self._client.get_workflow_handle(rollout_id).describe()).status
        except RPCError as exc:
            if exc.status is RPCStatusCode.NOT_FOUND:
                return False
            raise
        return status is WorkflowExecutionStatus.RUNNING

    @activity.defn(name="history_marker_of")
    async def history_marker_of(self, rollout_id: str) -> str:
        """The ``installed_by`` marker of another rollout's rows (``applied_in`` selects by it).

        Computed as the rollout computed it: its id and its first run's id.
        """
        handle = self._client.get_workflow_handle(rollout_id)
        try:
            described = await handle.describe()
        except RPCError:
            raise to_application_error(ConfigurationError(f"rollout {rollout_id!r} not found")) from None
        first_run = described.raw_description.workflow_execution_info.first_run_id or described.run_id
        return history_marker(rollout_id, first_run)


def _rerun(rollout_id: str, result: dict[str, Any]) -> list[str]:
    """The tenants to run again, from a result (or a rerun list shaped like one).

    Raises:
        ConfigurationError: some failures were only counted, not named.
    """
    lost = result.get("failed_lost") or 0
    if lost:
        # Re-running a subset while calling it "the failed tenants" would hide the rest.
        raise ConfigurationError(
            f"rollout {rollout_id!r} had {lost} more failed tenants than its result could name; "
            "re-run the whole fleet instead (tenants already migrated are no-ops)"
        )
    rerun = {Outcome.FAILED.value, Outcome.CANCELED.value}  # cancelled ones never finished either
    failed = result.get("failed") or []
    detailed = [
        str(item["tenant_id"])
        for item in failed
        if isinstance(item, dict) and "tenant_id" in item and item.get("outcome") in rerun
    ]
    return detailed + [str(t) for t in result.get("failed_overflow") or []]
