"""Ring rollouts: the wave plan a rollout declares, and the planner that splits the fleet into waves.

A rollout may declare ordered waves. Each selects tenants by a label selector, by explicit ids, by
a count or a percentage of what remains, or takes "the rest"; a tenant belongs to the first wave
that selects it, exactly once. Count and percent take the remaining tenants in source order.

The plan is made once, at the rollout's start, on a worker that walks the tenant source (labels
never enter workflow history): each wave's ids, a snapshot. The rollout then runs exactly that plan
(``--dry-run`` prints it), across crashes and continue-as-new, whatever the source lists later.
Chosen over re-paging the source per wave, which would hold no ids in history but lets a count or
percentage wave shift when the source changes mid-rollout. ``wave_book.py`` hands the plan out in
chunks bounded in bytes; ``plan_waves`` here answers whole (``--dry-run``, older rollouts).

The models are plain JSON on the wire; a pipeline can write a plan by hand. Pure except for the
activity at the bottom.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Final

from pydantic import BaseModel, Field, field_validator, model_validator
from temporalio import activity

from fleetway.activities.backend_identity import check_backend
from fleetway.activities.durations import parse_duration_s
from fleetway.activities.errors import (
    ConfigurationError,
    FleetwayError,
    InvalidWavePlanError,
    to_application_error,
)
from fleetway.activities.flyway.options import FlywayOptions
from fleetway.activities.secrets.providers import validate_tenant_ids
from fleetway.activities.tenants.labels import parse_selector
from fleetway.activities.tenants.static import TenantLister
from fleetway.activities.tenants.walk import list_all_tenants
from fleetway.activities.wire import CLIENT_INPUT, WIRE_MODEL

__all__ = [
    "MAX_PLANNED_TENANTS",
    "MAX_WAVES",
    "PlanWavesInput",
    "PlannedWave",
    "WavePlan",
    "WavePlanActivities",
    "WaveSpec",
    "check_waves",
    "plan_waves",
]

MAX_WAVES: Final = 20
# The largest fleet a ring rollout plans. The plan travels in chunks bounded in bytes
# (``wave_book.py``) and is held by its own workflow, ~13 MB of history at 128-character ids.
MAX_PLANNED_TENANTS: Final = 100_000
MAX_BAKE_S: Final = 30 * 86400
WAVE_NAME_PATTERN: Final = re.compile(r"[a-z0-9][a-z0-9_.-]{0,39}")


class WaveSpec(BaseModel):
    """One ring of a rollout: whom it takes, how fast, how much failure it tolerates, what follows.

    Attributes:
        name: shown in progress, results and audit events (``[a-z0-9][a-z0-9_.-]{0,39}``).
        labels: a label selector (``tier=internal``, ``region in (eu,us)``).
        tenants: explicit tenant ids.
        count: this many of the tenants no earlier wave took, in source order.
        percent: this share (0 < p ≤ 100) of the tenants no earlier wave took, rounded up.
        rest: every tenant no earlier wave took (only the last wave).
        parallelism: tenants of this wave in flight at once (default: the rollout's).
        max_failures: failed tenants this wave tolerates; one more halts the rollout.
        max_failure_ratio: failed share of this wave's planned tenants it tolerates; crossing it
            halts the rollout. Neither set: the rollout's own rules (fail-fast by default).
        bake_s: after the wave finishes, wait this long before the next starts (seconds, or a
            duration such as ``30m``, ``2h``, ``1d``).
        gate: before this wave starts, wait for an operator's ``approve`` (or ``reject``).
        target: migrate this wave's tenants up to this version (a later wave may go further);
            empty: the rollout's own target.
    """

    model_config = CLIENT_INPUT

    name: str
    labels: str = ""
    tenants: list[str] = Field(default_factory=list, max_length=10_000)
    count: int | None = Field(default=None, ge=1)
    percent: float | None = Field(default=None, gt=0, le=100)
    rest: bool = False
    parallelism: int | None = Field(default=None, ge=1, le=256)
    max_failures: int | None = Field(default=None, ge=0)
    max_failure_ratio: float | None = Field(default=None, ge=0.0, le=1.0)
    bake_s: int = Field(default=0, ge=0, le=MAX_BAKE_S)
    gate: bool = False
    target: str = ""

    @field_validator("target")
    @classmethod
    def _valid_target(cls, value: str) -> str:
        return FlywayOptions(target=value).target if value else value

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not WAVE_NAME_PATTERN.fullmatch(value):
            raise InvalidWavePlanError(
                f"wave name {value[:60]!a} is invalid; names match ^[a-z0-9][a-z0-9_.-]{{0,39}}$"
            )
        return value

    @field_validator("labels")
    @classmethod
    def _valid_selector(cls, value: str) -> str:
        return parse_selector(value).text if value else value

    @field_validator("tenants")
    @classmethod
    def _valid_ids(cls, value: list[str]) -> list[str]:
        ids = validate_tenant_ids(value, where="in the wave's tenants")
        if len(set(ids)) != len(ids):
            raise InvalidWavePlanError("a wave's tenants must not repeat an id")
        return ids

    @field_validator("bake_s", mode="before")
    @classmethod
    def _duration(cls, value: object) -> int:
        return parse_duration_s(value, what="bake", error=InvalidWavePlanError)

    @model_validator(mode="after")
    def _one_selection(self) -> WaveSpec:
        given = [
            name
            for name, on in (
                ("labels", bool(self.labels)),
                ("tenants", bool(self.tenants)),
                ("count", self.count is not None),
                ("percent", self.percent is not None),
                ("rest", self.rest),
            )
            if on
        ]
        if len(given) != 1:
            raise InvalidWavePlanError(
                f"wave {self.name!r} must select by exactly one of labels, tenants, count, percent, rest"
                + (f" (it gives {', '.join(given)})" if given else " (it gives none)")
            )
        if self.max_failures is not None and self.max_failure_ratio is not None:
            raise InvalidWavePlanError(
                f"wave {self.name!r}: give max_failures or max_failure_ratio, not both"
            )
        return self

    def selection(self) -> str:
        """How this wave selects, in one phrase (for plans and status lines)."""
        if self.labels:
            return f"labels {self.labels}"
        if self.tenants:
            return f"{len(self.tenants)} named tenants"
        if self.count is not None:
            return f"next {self.count}"
        if self.percent is not None:
            return f"next {self.percent:g}%"
        return "the rest"


def check_waves(waves: Sequence[WaveSpec]) -> None:
    """The plan as a whole: at most 20 waves, unique names, nothing after a ``rest`` wave.

    Raises:
        InvalidWavePlanError: naming the first rule broken.
    """
    if len(waves) > MAX_WAVES:
        raise InvalidWavePlanError(f"a rollout takes at most {MAX_WAVES} waves, not {len(waves)}")
    seen: set[str] = set()
    for index, wave in enumerate(waves):
        if wave.name in seen:
            raise InvalidWavePlanError(f"wave name {wave.name!r} is used twice")
        seen.add(wave.name)
        if wave.rest and index != len(waves) - 1:
            raise InvalidWavePlanError(
                f"wave {waves[index + 1].name!r} follows the 'rest' wave {wave.name!r}; "
                "it could select nothing"
            )


class PlannedWave(BaseModel):
    """One wave's tenants, in dispatch order."""

    model_config = WIRE_MODEL

    name: str
    tenants: list[str]


class WavePlan(BaseModel):
    """Which tenant lands in which wave; ``unplanned``: listed tenants no wave selected (not run)."""

    model_config = WIRE_MODEL

    waves: list[PlannedWave]
    listed: int
    unplanned: int = 0
    unplanned_sample: list[str] = Field(default_factory=list)


def plan_waves(waves: Sequence[WaveSpec], fleet: Mapping[str, Mapping[str, str]]) -> WavePlan:
    """Split ``fleet`` (id → labels, in source order) into ``waves``; first selecting wave wins.

    Raises:
        InvalidWavePlanError: a wave names tenants the fleet does not hold, or the fleet is larger
            than :data:`MAX_PLANNED_TENANTS`.
    """
    if len(fleet) > MAX_PLANNED_TENANTS:
        raise InvalidWavePlanError(
            f"the fleet lists {len(fleet)} tenants; a wave plan holds at most {MAX_PLANNED_TENANTS}"
        )
    remaining: dict[str, None] = dict.fromkeys(fleet)
    planned: list[PlannedWave] = []
    for wave in waves:
        if wave.labels:
            selector = parse_selector(wave.labels)
            chosen = [t for t in remaining if selector.matches(fleet[t])]
        elif wave.tenants:
            unknown = [t for t in wave.tenants if t not in fleet]
            if unknown:
                shown = ", ".join(unknown[:10]) + (
                    f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
                )
                raise InvalidWavePlanError(
                    f"wave {wave.name!r} names tenants the fleet does not list: {shown}"
                )
            chosen = [t for t in wave.tenants if t in remaining]
        elif wave.count is not None:
            chosen = list(remaining)[: wave.count]
        elif wave.percent is not None:
            chosen = list(remaining)[: math.ceil(len(remaining) * wave.percent / 100)]
        else:
            chosen = list(remaining)
        for tenant in chosen:
            del remaining[tenant]
        planned.append(PlannedWave(name=wave.name, tenants=chosen))
    left = list(remaining)
    return WavePlan(waves=planned, listed=len(fleet), unplanned=len(left), unplanned_sample=left[:20])


class PlanWavesInput(BaseModel):
    """Plan ``waves`` over the named source, or over ``restrict_to`` (an explicit list or a rerun)."""

    model_config = WIRE_MODEL

    waves: list[WaveSpec]
    source: str = "default"
    pinned: str = ""
    restrict_to: list[str] = Field(default_factory=list)
    page_size: int = Field(default=1000, ge=1, le=1000)


class WavePlanActivities:
    """The ``plan_waves`` activity over the worker's configured tenant sources."""

    def __init__(self, sources: Mapping[str, TenantLister]) -> None:
        self._sources = dict(sources)

    async def fleet(self, request: PlanWavesInput) -> dict[str, dict[str, str]]:
        """The fleet to plan: id → labels, in order (the source's, or ``restrict_to``'s)."""
        needs_labels = any(w.labels for w in request.waves)
        if request.restrict_to and not needs_labels:
            return {tenant: {} for tenant in request.restrict_to}
        source = self._sources.get(request.source)
        if source is None:
            raise ConfigurationError(f"tenant source {request.source!r} is not configured")
        check_backend("tenant source", request.source, source, request.pinned)
        # The same walk as `fleetway list-tenants` (cycle and page-cap rules); a source's own
        # errors keep their names (and retryability: an unavailable source is retried).
        listing = await list_all_tenants(source, page_size=request.page_size, on_page=activity.heartbeat)
        if request.restrict_to:
            # The rollout's own list decides who runs; the source only lends labels.
            return {t: listing.labels.get(t, {}) for t in request.restrict_to}
        return {t: listing.labels.get(t, {}) for t in listing.tenant_ids}

    @activity.defn(name="plan_waves")
    async def plan_waves(self, request: PlanWavesInput) -> WavePlan:
        """List the fleet on the worker and return each wave's tenants (ids only, no labels)."""
        try:
            return plan_waves(request.waves, await self.fleet(request))
        except FleetwayError as exc:
            raise to_application_error(exc) from None
