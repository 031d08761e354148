"""The public surface: ``from fleetway import ...``, held name by name."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

import fleetway

pytestmark = pytest.mark.fast

# What a pipeline is promised. A name added to fleetway's __all__ is added here on purpose.
PUBLIC = {
    "FleetwayClient", "Rollout", "RolloutEvent", "TenantFinished", "WaveChanged", "ServerHeld", "FeedGap",
    "RolloutRequest", "RolloutResult", "Progress", "RolloutStatus", "WaveDecision", "WaveProgress", "WaveState",
    "WaveSpec", "Action", "FlywayOptions", "AuditContext", "ServerControls", "ServerHold", "Outcome",
    "TenantOutcome", "ReadFleetInput", "FleetReport", "FleetState", "Settings", "load_settings",
    "FleetwayError", "ConfigurationError", "InvalidInputError", "SecretsError", "TenantSourceError",
    "QuiesceError", "AuditSinkError", "FlywayError", "SafetyRefusalError", "SchemaHistoryUnavailableError",
    "ProvisioningError", "RolloutControlError", "OrchestrationError", "RolloutNotFoundError",
    "RolloutIdReusedError", "RolloutNotRunningError", "ApprovalNotPendingError", "WorkerUnavailableError",
    "TemporalUnavailableError", "TenantActionRefusedError", "TenantDecision",
}  # fmt: skip


def test_the_exported_names_are_the_promised_ones_and_each_is_documented() -> None:
    assert set(fleetway.__all__) == PUBLIC and len(fleetway.__all__) == len(PUBLIC)
    for name in fleetway.__all__:
        value = getattr(fleetway, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert (value.__doc__ or "").strip(), name
    with pytest.raises(AttributeError, match="no attribute 'MigrateAllWorkflow'"):
        fleetway.MigrateAllWorkflow  # noqa: B018 - internal: not part of the surface


def test_every_error_family_is_exported_and_catches_its_leaves() -> None:
    root = fleetway.FleetwayError
    families = {c.__name__ for c in root.__subclasses__() if c.__module__ == "fleetway.activities.errors"}
    assert families <= PUBLIC
    assert issubclass(fleetway.RolloutIdReusedError, fleetway.RolloutControlError)
    assert issubclass(fleetway.TemporalUnavailableError, fleetway.OrchestrationError)


def test_importing_a_module_of_fleetway_does_not_load_the_client() -> None:
    """Workers and workflow sandboxes import fleetway's modules: the root package stays lazy."""
    probe = (
        "import sys, fleetway.activities.errors; print('fleetway.worker.client.connection' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
