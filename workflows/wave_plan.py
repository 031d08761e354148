"""WavePlanWorkflow: holds a ring rollout's wave plan, in chunks, for as long as the rollout runs.

Why a workflow: the plan is a snapshot of the fleet (each wave's ids, fixed at the start) and at
100,000 tenants it is megabytes, while a payload is refused above 2 MiB and the rollout's state
crosses continue-as-new as one payload. Held here, the plan is in Temporal, durable with no
store to configure, and the rollout carries only a chunk index. The alternatives: a store beside
the migration set (not every deployment has one), or walking the source again per wave (no
snapshot: a count or percentage wave shifts when the fleet changes mid-rollout).

The holder fetches the summary, then each chunk (one activity each, at most 256 KiB); a chunk made
from another walk of the source than the summary's starts planning over (at most three times).
It answers the ``plan`` query (the rollout reads it through ``read_wave_plan``) and ends on the
rollout's ``release`` signal, or when a daily check finds the rollout gone (a terminated one sends
none). Deterministic orchestration only.
"""

from __future__ import annotations

import asyncio
from contextlib import suppress
from datetime import timedelta
from typing import Final

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.common import RetryPolicy, VersioningBehavior
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from fleetway.activities.errors import WavePlanChangedError
    from fleetway.activities.rollouts import RolloutActivities
    from fleetway.activities.tenants.wave_book import (
        PlanChunk,
        PlanChunkInput,
        PlanRead,
        PlanSummary,
        WaveBookActivities,
    )
    from fleetway.activities.tenants.waves import PlanWavesInput
    from fleetway.activities.wire import WIRE_MODEL
    from fleetway.workflows.activity_failures import failure_reason, failure_type, reraise_cancel

__all__ = ["AutoUpgradingWavePlanWorkflow", "HoldPlanInput", "WavePlanWorkflow", "holder_id"]

_ATTEMPTS: Final = 3
_CHECK_EVERY: Final = timedelta(days=1)


def holder_id(rollout_id: str) -> str:
    """The holder's workflow id: beside the rollout's, never a tenant's child id (``rollout/tenant``)."""
    return f"{rollout_id}//wave-plan"


class HoldPlanInput(BaseModel):
    """The plan to make and hold, the rollout it serves, and how long a source outage is ridden out."""

    model_config = WIRE_MODEL

    request: PlanWavesInput
    rollout_id: str
    retry_budget_s: int = Field(default=900, ge=0)


@workflow.defn(name="WavePlanWorkflow")
class WavePlanWorkflow:
    """Makes the plan in chunks, then answers ``plan`` until the rollout releases it."""

    def __init__(self) -> None:
        self._summary: PlanSummary | None = None
        self._chunks: list[PlanChunk] = []
        self._error = ""
        self._released = False

    @workflow.run
    async def run(self, hold: HoldPlanInput) -> str:
        """Plan, hold, and return why the holding ended."""
        making = asyncio.create_task(self._make(hold))
        await workflow.wait_condition(lambda: self._released or making.done())
        if not making.done():  # the rollout ended (a cancel) while the plan was being made
            making.cancel()
            with suppress(asyncio.CancelledError):
                await making
            return "released while planning"
        while not self._released:
            try:
                await workflow.wait_condition(lambda: self._released, timeout=_CHECK_EVERY)
            except TimeoutError:
                if not await self._rollout_open(hold):
                    return "the rollout ended without releasing its plan"
        return "released by the rollout"

    async def _make(self, hold: HoldPlanInput) -> None:
        budget = timedelta(seconds=hold.retry_budget_s or 300)
        retry = RetryPolicy(maximum_interval=timedelta(seconds=30), maximum_attempts=0)
        for _ in range(_ATTEMPTS):
            try:
                summary = await workflow.execute_activity_method(
                    WaveBookActivities.plan_wave_summary,
                    hold.request,
                    start_to_close_timeout=min(budget, timedelta(minutes=10)),
                    schedule_to_close_timeout=budget,
                    heartbeat_timeout=timedelta(minutes=2),
                    retry_policy=retry,
                )
                chunks = []
                for index in range(summary.chunks):
                    chunks.append(
                        await workflow.execute_activity_method(
                            WaveBookActivities.plan_wave_chunk,
                            PlanChunkInput(request=hold.request, index=index, digest=summary.digest),
                            start_to_close_timeout=min(budget, timedelta(minutes=10)),
                            schedule_to_close_timeout=budget,
                            heartbeat_timeout=timedelta(minutes=2),
                            retry_policy=retry,
                        )
                    )
            except ActivityError as err:
                reraise_cancel(err)
                if failure_type(err) == WavePlanChangedError.error_type:
                    continue
                self._error = failure_reason(err)
                return
            self._summary, self._chunks = summary, chunks
            return
        self._error = f"the tenant source changed while the plan was made, {_ATTEMPTS} times; no plan"

    async def _rollout_open(self, hold: HoldPlanInput) -> bool:
        try:
            return await workflow.execute_activity_method(
                RolloutActivities.rollout_is_open,
                hold.rollout_id,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(maximum_attempts=5),
            )
        except ActivityError as err:
            reraise_cancel(err)
            return True  # unknown: keep holding; the next check asks again

    @workflow.query(name="plan", description="The plan's summary (index -1) or one chunk, once made.")
    def plan(self, index: int) -> PlanRead:
        """Not ready, the planning error, the summary, or chunk ``index``."""
        if self._error:
            return PlanRead(ready=True, error=self._error)
        if self._summary is None:
            return PlanRead()
        if index < 0:
            return PlanRead(ready=True, summary=self._summary)
        if index >= len(self._chunks):
            return PlanRead(ready=True, error=f"the plan has {len(self._chunks)} chunks, not {index + 1}")
        return PlanRead(ready=True, chunk=self._chunks[index])

    @workflow.signal(description="The rollout is over: stop holding its plan.")
    def release(self) -> None:
        """End the holding."""
        self._released = True


@workflow.defn(name="WavePlanWorkflow", versioning_behavior=VersioningBehavior.AUTO_UPGRADE)
class AutoUpgradingWavePlanWorkflow(WavePlanWorkflow):
    """The holder as a versioned worker registers it (an unversioned worker may not name a behavior).

    Auto-upgrade: it lives as long as its rollout and only answers reads; pinned, it would keep an
    old build from draining until the rollout ends.
    """

    @workflow.run
    async def run(self, hold: HoldPlanInput) -> str:
        """As the holder's: plan, hold, return why the holding ended."""
        return await super().run(hold)
