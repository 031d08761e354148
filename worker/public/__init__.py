"""fleetway as a library: start, follow and steer rollouts, read the fleet, catch errors by family.

    import asyncio
    from fleetway import FleetwayClient, RolloutRequest, WaveSpec

    async def main() -> None:
        client = await FleetwayClient.connect()  # the CLI's settings: environment, FLEETWAY_CONFIG
        rollout = await client.start(RolloutRequest(waves=[WaveSpec(name="all", rest=True)]))
        async for event in rollout.events():
            print(event)
        print((await rollout.result()).status)

    asyncio.run(main())

Everything here is typed; what is not in ``__all__`` is private and may change. The names load on
first use (PEP 562): importing one of fleetway's modules (a worker's, a workflow sandbox's) does not
load the client. This folder (``worker/public/``) is installed as the package ``fleetway`` itself.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fleetway.activities.audit.events import AuditContext
    from fleetway.activities.errors import (
        ApprovalNotPendingError,
        AuditSinkError,
        ConfigurationError,
        FleetwayError,
        FlywayError,
        InvalidInputError,
        OrchestrationError,
        ProvisioningError,
        QuiesceError,
        RolloutControlError,
        RolloutIdReusedError,
        RolloutNotFoundError,
        RolloutNotRunningError,
        SafetyRefusalError,
        SchemaHistoryUnavailableError,
        SecretsError,
        TemporalUnavailableError,
        TenantActionRefusedError,
        TenantSourceError,
        WorkerUnavailableError,
    )
    from fleetway.activities.fleet.report import FleetReport
    from fleetway.activities.fleet.state import FleetState, ReadFleetInput
    from fleetway.activities.flyway.options import FlywayOptions
    from fleetway.activities.flyway.output import Action
    from fleetway.activities.rollouts import Outcome, TenantOutcome
    from fleetway.activities.servers.models import ServerControls, ServerHold
    from fleetway.activities.tenants.waves import WaveSpec
    from fleetway.worker.client.connection import FleetwayClient
    from fleetway.worker.client.events import FeedGap, RolloutEvent, ServerHeld, TenantFinished, WaveChanged
    from fleetway.worker.client.rollout import Rollout
    from fleetway.worker.config.settings import Settings, load_settings
    from fleetway.workflows.migrate_all_models import MigrateAllInput as RolloutRequest
    from fleetway.workflows.migrate_all_models import MigrateAllResult as RolloutResult
    from fleetway.workflows.migrate_all_models import (
        Progress,
        RolloutStatus,
        TenantDecision,
        WaveDecision,
        WaveProgress,
        WaveState,
    )

# The error families, and the leaves a pipeline commonly catches by name.
_ERRORS = (
    "FleetwayError", "ConfigurationError", "InvalidInputError", "SecretsError", "TenantSourceError",
    "QuiesceError", "AuditSinkError", "FlywayError", "SafetyRefusalError", "SchemaHistoryUnavailableError",
    "ProvisioningError", "RolloutControlError", "OrchestrationError", "RolloutNotFoundError",
    "RolloutIdReusedError", "RolloutNotRunningError", "ApprovalNotPendingError", "WorkerUnavailableError",
    "TemporalUnavailableError", "TenantActionRefusedError",
)  # fmt: skip
# Public name -> (module, name there): ``__all__`` lists exactly these (a test holds both).
_EXPORTS: dict[str, tuple[str, str]] = {
    "FleetwayClient": ("fleetway.worker.client.connection", "FleetwayClient"),
    "Rollout": ("fleetway.worker.client.rollout", "Rollout"),
    "RolloutEvent": ("fleetway.worker.client.events", "RolloutEvent"),
    "TenantFinished": ("fleetway.worker.client.events", "TenantFinished"),
    "WaveChanged": ("fleetway.worker.client.events", "WaveChanged"),
    "ServerHeld": ("fleetway.worker.client.events", "ServerHeld"),
    "FeedGap": ("fleetway.worker.client.events", "FeedGap"),
    "RolloutRequest": ("fleetway.workflows.migrate_all_models", "MigrateAllInput"),
    "RolloutResult": ("fleetway.workflows.migrate_all_models", "MigrateAllResult"),
    "Progress": ("fleetway.workflows.migrate_all_models", "Progress"),
    "RolloutStatus": ("fleetway.workflows.migrate_all_models", "RolloutStatus"),
    "WaveDecision": ("fleetway.workflows.migrate_all_models", "WaveDecision"),
    "TenantDecision": ("fleetway.workflows.migrate_all_models", "TenantDecision"),
    "WaveProgress": ("fleetway.workflows.migrate_all_models", "WaveProgress"),
    "WaveState": ("fleetway.workflows.migrate_all_models", "WaveState"),
    "WaveSpec": ("fleetway.activities.tenants.waves", "WaveSpec"),
    "Action": ("fleetway.activities.flyway.output", "Action"),
    "FlywayOptions": ("fleetway.activities.flyway.options", "FlywayOptions"),
    "AuditContext": ("fleetway.activities.audit.events", "AuditContext"),
    "ServerControls": ("fleetway.activities.servers.models", "ServerControls"),
    "ServerHold": ("fleetway.activities.servers.models", "ServerHold"),
    "Outcome": ("fleetway.activities.rollouts", "Outcome"),
    "TenantOutcome": ("fleetway.activities.rollouts", "TenantOutcome"),
    "ReadFleetInput": ("fleetway.activities.fleet.state", "ReadFleetInput"),
    "FleetReport": ("fleetway.activities.fleet.report", "FleetReport"),
    "FleetState": ("fleetway.activities.fleet.state", "FleetState"),
    "Settings": ("fleetway.worker.config.settings", "Settings"),
    "load_settings": ("fleetway.worker.config.settings", "load_settings"),
    **{name: ("fleetway.activities.errors", name) for name in _ERRORS},
}

__all__ = [  # noqa: RUF022 - grouped as above: the client, the request, the outcome, the errors
    "FleetwayClient", "Rollout", "RolloutEvent", "TenantFinished", "WaveChanged", "ServerHeld", "FeedGap",
    "RolloutRequest", "RolloutResult", "Progress", "RolloutStatus", "WaveDecision", "WaveProgress",
    "WaveState", "WaveSpec", "Action", "FlywayOptions", "AuditContext", "ServerControls", "ServerHold",
    "Outcome", "TenantOutcome", "ReadFleetInput", "FleetReport", "FleetState", "Settings", "load_settings",
    "FleetwayError", "ConfigurationError", "InvalidInputError", "SecretsError", "TenantSourceError",
    "QuiesceError", "AuditSinkError", "FlywayError", "SafetyRefusalError", "SchemaHistoryUnavailableError",
    "ProvisioningError", "RolloutControlError", "OrchestrationError", "RolloutNotFoundError",
    "RolloutIdReusedError", "RolloutNotRunningError", "ApprovalNotPendingError", "WorkerUnavailableError",
    "TemporalUnavailableError", "TenantActionRefusedError", "TenantDecision",
]  # fmt: skip


def __getattr__(name: str) -> Any:
    """Load a public name on first use (PEP 562)."""
    try:
        module, attribute = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'fleetway' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
