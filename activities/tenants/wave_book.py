"""A ring rollout's wave plan in chunks bounded in bytes, for the workflow that holds it.

The plan is a snapshot of the fleet: each wave's ids, fixed at the rollout's start. At 100,000
tenants with 128-character ids it is ~13 MB, far over one Temporal payload (2 MiB), so it never
travels whole: :func:`chunk_plan` cuts it into chunks of at most :data:`PLAN_CHUNK_BYTES` encoded
(a chunk never spans two waves), a :class:`PlanSummary` says which chunks each wave has, and the
``WavePlanWorkflow`` fetches them one activity at a time and holds them for the rollout, which
reads one chunk when it needs the next tenants of a wave (``workflows/wave_plan.py`` says why a
workflow holds the plan rather than a store or a re-walk of the source).

The plan is made once per worker and kept in memory, keyed by the request: the summary and the
chunks are usually answered by one walk of the source. A worker that did not make it walks the
source again; its plan must have the summary's digest, or :class:`WavePlanChangedError` says the
source changed meanwhile and the holder starts over.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from typing import Final

from pydantic import BaseModel, Field
from temporalio import activity

from fleetway.activities.errors import FleetwayError, WavePlanChangedError, to_application_error
from fleetway.activities.tenants.waves import PlanWavesInput, WavePlan, WavePlanActivities, plan_waves
from fleetway.activities.wire import WIRE_MODEL

__all__ = [
    "PLAN_CHUNK_BYTES",
    "PlanChunk",
    "PlanChunkInput",
    "PlanRead",
    "PlanSummary",
    "ReadPlanInput",
    "WaveBookActivities",
    "WaveExtent",
    "chunk_plan",
]

PLAN_CHUNK_BYTES: Final = 256 * 1024
_CACHED_PLANS: Final = 4  # plans a worker keeps (rollouts planning at once on it)


class PlanChunk(BaseModel):
    """Consecutive tenants of one wave, in dispatch order."""

    model_config = WIRE_MODEL

    wave: int
    tenants: list[str]


class WaveExtent(BaseModel):
    """One wave of the plan: its name, its size and the chunks that hold its ids."""

    model_config = WIRE_MODEL

    name: str
    planned: int
    first_chunk: int
    chunks: int


class PlanSummary(BaseModel):
    """The plan without its ids: what the rollout keeps, and what every chunk is checked against."""

    model_config = WIRE_MODEL

    digest: str
    waves: list[WaveExtent]
    chunks: int
    listed: int
    unplanned: int = 0
    unplanned_sample: list[str] = Field(default_factory=list)


class PlanRead(BaseModel):
    """The holder's answer: not ready yet, why planning failed, the summary, or one chunk."""

    model_config = WIRE_MODEL

    ready: bool = False
    error: str = ""
    summary: PlanSummary | None = None
    chunk: PlanChunk | None = None


class ReadPlanInput(BaseModel):
    """Read chunk ``index`` (-1: the summary) from the workflow ``holder``."""

    model_config = WIRE_MODEL

    holder: str
    index: int = Field(ge=-1)


class PlanChunkInput(BaseModel):
    """Chunk ``index`` of the plan ``request`` makes, which must have the digest ``digest``."""

    model_config = WIRE_MODEL

    request: PlanWavesInput
    index: int = Field(ge=0)
    digest: str


def _digest(plan: WavePlan) -> str:
    """The plan's identity: every wave's name and ids, in order."""
    text = json.dumps([[w.name, w.tenants] for w in plan.waves], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def chunk_plan(plan: WavePlan, *, budget: int = PLAN_CHUNK_BYTES) -> tuple[PlanSummary, list[PlanChunk]]:
    """Cut ``plan`` into chunks of at most ``budget`` encoded bytes; one wave's ids per chunk. Pure."""
    chunks: list[PlanChunk] = []
    extents: list[WaveExtent] = []
    for index, wave in enumerate(plan.waves):
        first = len(chunks)
        size, ids = 0, list[str]()
        for tenant in wave.tenants:
            cost = len(json.dumps(tenant)) + 1  # the id encoded, and its comma
            if ids and size + cost > budget - 64:  # 64: the chunk's own fields
                chunks.append(PlanChunk(wave=index, tenants=ids))
                size, ids = 0, []
            ids.append(tenant)
            size += cost
        if ids:
            chunks.append(PlanChunk(wave=index, tenants=ids))
        extents.append(
            WaveExtent(
                name=wave.name, planned=len(wave.tenants), first_chunk=first, chunks=len(chunks) - first
            )
        )
    summary = PlanSummary(
        digest=_digest(plan),
        waves=extents,
        chunks=len(chunks),
        listed=plan.listed,
        unplanned=plan.unplanned,
        unplanned_sample=plan.unplanned_sample,
    )
    return summary, chunks


class WaveBookActivities:
    """``plan_wave_summary`` and ``plan_wave_chunk``: the plan made on the worker, handed out in chunks."""

    def __init__(self, planner: WavePlanActivities) -> None:
        self._planner = planner
        self._plans: OrderedDict[str, tuple[PlanSummary, list[PlanChunk]]] = OrderedDict()

    async def _plan(self, request: PlanWavesInput, *, fresh: bool) -> tuple[PlanSummary, list[PlanChunk]]:
        key = hashlib.sha256(request.model_dump_json().encode()).hexdigest()
        if not fresh and key in self._plans:
            self._plans.move_to_end(key)
            return self._plans[key]
        made = chunk_plan(plan_waves(request.waves, await self._planner.fleet(request)))
        self._plans[key] = made
        while len(self._plans) > _CACHED_PLANS:
            self._plans.popitem(last=False)
        return made

    @activity.defn(name="plan_wave_summary")
    async def plan_wave_summary(self, request: PlanWavesInput) -> PlanSummary:
        """Walk the source and plan the waves (always afresh: a new plan is a new snapshot)."""
        try:
            return (await self._plan(request, fresh=True))[0]
        except FleetwayError as exc:
            raise to_application_error(exc) from None

    @activity.defn(name="plan_wave_chunk")
    async def plan_wave_chunk(self, request: PlanChunkInput) -> PlanChunk:
        """Chunk ``index`` of the plan; refused when this worker's plan is not the summary's.

        Raises:
            ApplicationError: ``wave_plan_changed`` (non-retryable): the source lists another fleet
                than when the summary was made; the holder plans again.
        """
        try:
            summary, chunks = await self._plan(request.request, fresh=False)
            if summary.digest != request.digest:
                summary, chunks = await self._plan(request.request, fresh=True)  # made elsewhere
            if summary.digest != request.digest or request.index >= len(chunks):
                raise WavePlanChangedError(
                    "the tenant source lists another fleet than when the wave plan was made; planning again"
                )
            return chunks[request.index]
        except FleetwayError as exc:
            raise to_application_error(exc) from None
