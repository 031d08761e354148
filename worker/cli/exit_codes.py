"""The CLI's exit codes: one per family of error, a published contract for pipelines.

docs/rollouts.md lists them (a test holds the two equal); the library raises the families
(``from fleetway import RolloutControlError``), and this maps them.
"""

from __future__ import annotations

from enum import IntEnum

from fleetway.activities.errors import (
    ConfigurationError,
    FleetwayError,
    InvalidInputError,
    QuiesceNotSetError,
    RolloutControlError,
    RolloutNotFoundError,
    SafetyRefusalError,
    WorkerUnavailableError,
)
from fleetway.workflows.migrate_all_models import RolloutStatus

__all__ = ["ExitCode", "exit_code_for", "exit_code_for_error"]


class ExitCode(IntEnum):
    """The CLI's exit statuses (a published contract for pipelines; docs/rollouts.md lists them)."""

    OK = 0
    FAILED = 1  # a tenant failed, the rollout failed, halted or was cancelled; any other failure
    USAGE = 2  # bad input or configuration: fix the command or the settings; nothing was done
    QUIESCED = 3  # the rollout stopped for the quiesce flag, or is paused
    NOT_FOUND = 4  # no such rollout
    REFUSED = (
        5  # the action was refused: a reused id, a rollout not running, nothing to approve, a safety rule
    )
    UNAVAILABLE = 6  # Temporal, a worker or a store did not answer in time: the same command may work later
    INTERRUPTED = 130  # Ctrl-C: the CLI stopped following; the rollout was not touched


def exit_code_for_error(exc: FleetwayError) -> ExitCode:
    """The exit status of a command that ended on ``exc``: by its family, then by retryability."""
    if isinstance(exc, InvalidInputError | ConfigurationError):
        return ExitCode.USAGE
    if isinstance(exc, RolloutNotFoundError):
        return ExitCode.NOT_FOUND
    if isinstance(exc, RolloutControlError | SafetyRefusalError | QuiesceNotSetError):
        return ExitCode.REFUSED
    if exc.retryable or isinstance(exc, WorkerUnavailableError):
        return ExitCode.UNAVAILABLE
    return ExitCode.FAILED


def exit_code_for(status: RolloutStatus) -> ExitCode:
    """0 succeeded, 1 failed/halted/cancelled, 3 quiesced or paused."""
    if status is RolloutStatus.SUCCEEDED:
        return ExitCode.OK
    if status in {RolloutStatus.QUIESCED, RolloutStatus.PAUSED}:
        return ExitCode.QUIESCED
    if status is RolloutStatus.RUNNING:
        return ExitCode.OK
    return ExitCode.FAILED
