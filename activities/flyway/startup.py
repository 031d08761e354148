"""The library entry point: an application migrates (or checks) its own schema at start-up."""

from __future__ import annotations

import logging
from typing import Final

from fleetway.activities.database_target import (
    DatabaseTarget,
)
from fleetway.activities.errors import (
    FlywayReportedFailureError,
)
from fleetway.activities.flyway.contract import FlywayEngine
from fleetway.activities.flyway.output import (
    Action,
    ErrorClass,
    FlywayOutcome,
)
from fleetway.activities.flyway.request import FlywayRequest

__all__ = ["DEVELOPMENT_ENVIRONMENTS", "run_migrations_at_startup"]

_log = logging.getLogger(__name__)

DEVELOPMENT_ENVIRONMENTS: Final = frozenset({"development", "dev", "local"})


async def run_migrations_at_startup(
    runner: FlywayEngine, target: DatabaseTarget, *, environment: str
) -> FlywayOutcome:
    """For applications: migrate in development; elsewhere validate and require no pending version.

    ``environment`` is matched trimmed and case-insensitively against ``development``, ``dev``
    and ``local``. Production must not change its schema as a side effect of starting up, and
    must not start against a schema older than its code: outside development a pending version
    fails as ``target_not_ready`` (fleet validation, by contrast, tolerates lagging tenants).

    Raises:
        FlywayReportedFailureError: validation failed, or versions are pending outside development.
        FleetwayError: as :meth:`FlywayRunner.run`.
    """
    if environment.strip().lower() in DEVELOPMENT_ENVIRONMENTS:
        _log.info("running migrations at startup", extra={"action": "migrate"})
        return await runner.run(FlywayRequest(action=Action.MIGRATE), target)
    _log.info("validating migrations at startup", extra={"action": "validate"})
    validated = await runner.run(FlywayRequest(action=Action.VALIDATE), target)
    info = await runner.run(FlywayRequest(action=Action.INFO), target)
    if info.pending_versions:
        raise FlywayReportedFailureError(
            f"{len(info.pending_versions)} migration(s) pending (first {info.pending_versions[0]}); "
            "migrate before starting outside development",
            error_class=ErrorClass.TARGET_NOT_READY,
            retryable=True,
            outcome=info.model_copy(update={"success": False, "error_class": ErrorClass.TARGET_NOT_READY}),
        )
    return validated
