"""The fleet picture: every tenant's state folded into counts a person (or a pipeline) reads at once.

Built inside the ``read_fleet`` activity while it walks the source, so what leaves the worker is
bounded whatever the fleet's size: counts by state, version, server and label, a strip of at most
``STRIP_CELLS`` cells (the worst state and lowest version of each slice of the fleet, in source
order), and the first tenants of each kind by name. Pure.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from typing import Final

from pydantic import BaseModel, Field

from fleetway.activities.fleet.state import FleetState, TenantState
from fleetway.activities.flyway.checksums import version_key
from fleetway.activities.wire import WIRE_MODEL

__all__ = ["STRIP_CELLS", "FleetReport", "FleetTally"]

STRIP_CELLS: Final = 400
_NAMED: Final = 50  # tenants named per state
_GROUPS: Final = 500  # servers and label values counted; the rest are summed under "…other"
_LAGGARDS: Final = 100
_WORST: Final = list(FleetState)  # declaration order is worst first


class FleetReport(BaseModel):
    """The fleet's state as the tables showed it at ``read_at``.

    Attributes:
        latest: the set's latest version; ``at_least``: the version asked for ("" when none).
        states / versions: tenants per state and per applied version ("" = no version).
        servers / labels: state counts per server key and per ``key=value`` label.
        strip / strip_versions: per slice of the fleet in source order, its worst state and lowest version.
        named: the first tenants of each state other than current.
        laggards: tenants below ``at_least`` (or unreadable), the first ones; ``laggard_count``: all.
    """

    model_config = WIRE_MODEL

    read_at: str = ""
    migration_set: str = ""
    latest: str = ""
    at_least: str = ""
    selector: str = ""
    total: int = 0
    states: dict[str, int] = Field(default_factory=dict)
    versions: dict[str, int] = Field(default_factory=dict)
    servers: dict[str, dict[str, int]] = Field(default_factory=dict)
    labels: dict[str, dict[str, int]] = Field(default_factory=dict)
    strip: list[str] = Field(default_factory=list)
    strip_versions: list[str] = Field(default_factory=list)
    named: dict[str, list[str]] = Field(default_factory=dict)
    laggards: list[str] = Field(default_factory=list)
    laggard_count: int = 0


def _key(version: str) -> tuple[int, ...]:
    return version_key(version) if version else ()


class FleetTally:
    """Folds tenant states into a :class:`FleetReport`, one page at a time."""

    def __init__(self, *, at_least: str = "") -> None:
        self._at_least = at_least
        self._states: list[tuple[FleetState, str]] = []  # source order; two small values per tenant
        self._servers: dict[str, Counter[FleetState]] = defaultdict(Counter)
        self._labels: dict[str, Counter[FleetState]] = defaultdict(Counter)
        self._named: dict[FleetState, list[str]] = defaultdict(list)
        self._laggards: list[str] = []
        self._laggard_count = 0

    def add(self, state: TenantState, labels: Mapping[str, str]) -> None:
        """Count one tenant."""
        kind = state.state
        self._states.append((kind, state.version))
        if state.server in self._servers or len(self._servers) < _GROUPS:
            self._servers[state.server][kind] += 1
        else:
            self._servers["…other"][kind] += 1
        for key, value in labels.items():
            group = f"{key}={value}"
            self._labels[group if group in self._labels or len(self._labels) < _GROUPS else "…other"][
                kind
            ] += 1
        if kind is not FleetState.CURRENT and len(self._named[kind]) < _NAMED:
            self._named[kind].append(state.tenant_id)
        if self._at_least and not state.reaches(self._at_least):
            self._laggard_count += 1
            if len(self._laggards) < _LAGGARDS:
                self._laggards.append(state.tenant_id)

    def report(self, *, read_at: str, migration_set: str, latest: str, selector: str = "") -> FleetReport:
        """The report of everything added."""
        total = len(self._states)
        cells = min(total, STRIP_CELLS)
        strip: list[str] = []
        strip_versions: list[str] = []
        for cell in range(cells):
            part = self._states[cell * total // cells : (cell + 1) * total // cells]
            strip.append(min((k for k, _ in part), key=_WORST.index).value)
            strip_versions.append(min((v for _, v in part), key=_key))
        versions = Counter(v for _, v in self._states)
        return FleetReport(
            read_at=read_at,
            migration_set=migration_set,
            latest=latest,
            at_least=self._at_least,
            selector=selector,
            total=total,
            states={k.value: n for k in _WORST if (n := sum(1 for s, _ in self._states if s is k))},
            versions={v: versions[v] for v in sorted(versions, key=_key)},
            servers={s: {k.value: n for k, n in c.items()} for s, c in sorted(self._servers.items())},
            labels={g: {k.value: n for k, n in c.items()} for g, c in sorted(self._labels.items())},
            strip=strip,
            strip_versions=strip_versions,
            named={k.value: v for k, v in self._named.items()},
            laggards=self._laggards,
            laggard_count=self._laggard_count,
        )
