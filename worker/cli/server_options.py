"""The rollout commands' per-server controls: flags over the plan file over the ``rollout.*`` settings.

Each value is checked by ``ServerControls`` (``activities/servers/models.py``) before anything
connects; ``--no-server-checks`` turns checks, parking and holds off, keeping only the budget.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from fleetway.activities.durations import parse_duration_s
from fleetway.activities.errors import InvalidInputError, from_validation_error
from fleetway.activities.servers.models import ServerControls
from fleetway.worker.config.settings import Settings

__all__ = ["server_controls"]


def server_controls(
    settings: Settings,
    plan: dict[str, Any],
    *,
    per_server: int | None,
    checks: bool | None,
    max_lock_waiters: int | None,
    max_replica_lag_bytes: int | None,
    min_free_connections: int | None,
    replicas: list[str],
    health_probe: str,
    health_probe_max: float | None,
    park_limit: str,
) -> ServerControls:
    """The rollout's ``servers`` input.

    Raises:
        InvalidInputError: a value out of range, a probe without its maximum, a bad duration.
    """
    defaults = settings.rollout
    fields: dict[str, Any] = {
        "per_server": defaults.per_server,
        "checks": defaults.server_checks,
        "max_lock_waiters": defaults.max_lock_waiters,
        "min_free_connections": defaults.min_free_connections,
        "park_limit_s": defaults.park_limit_s,
    } | plan
    given = {
        "per_server": per_server,
        "checks": checks,
        "max_lock_waiters": max_lock_waiters,
        "max_replica_lag_bytes": max_replica_lag_bytes,
        "min_free_connections": min_free_connections,
        "replicas": dict(_pair(r) for r in replicas) or None,
        "probe_sql": health_probe or None,
        "probe_max": health_probe_max,
        "park_limit_s": parse_duration_s(park_limit, what="--park-limit") if park_limit else None,
    }
    fields |= {k: v for k, v in given.items() if v is not None}
    try:
        return ServerControls.model_validate(fields)
    except ValidationError as exc:
        raise InvalidInputError(f"per-server controls: {from_validation_error(exc)}") from None


def _pair(text: str) -> tuple[str, str]:
    primary, sep, replica = text.partition("=")
    if not sep:
        raise InvalidInputError(f"--replica {text[:80]!r} is not PRIMARY=REPLICA (host:port each)")
    return primary.strip(), replica.strip()
