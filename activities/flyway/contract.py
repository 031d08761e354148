"""The Flyway engine contract: what an engine is given, what it returns, the checks all engines share.

Both engines (``cli_engine.py``: one process per run; ``jvm_engine.py``: one JVM per worker) build
the same configuration, vet the same inputs and read Flyway's JSON through :func:`interpret_output`,
so outcomes and error classes do not depend on the engine.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Final, Protocol

from fleetway.activities.database_target import (
    DatabaseTarget,
    flyway_environment,
)
from fleetway.activities.errors import (
    ConfigurationError,
    FlywayOutputUnparsedError,
    FlywayReportedFailureError,
    PasswordTooShortError,
)
from fleetway.activities.flyway.output import (
    RETRYABLE_CLASSES,
    Action,
    ErrorClass,
    FlywayOutcome,
    find_flyway_document,
    outcome_from_document,
)
from fleetway.activities.flyway.request import FlywayRequest
from fleetway.activities.flyway.schema_history import check_history_marker
from fleetway.activities.flyway.session import DEFAULT_LOCK_TIMEOUT_MS, RunSessions
from fleetway.activities.redaction import MIN_REDACTABLE_LENGTH

__all__ = [
    "DEFAULT_JVM_OPTIONS",
    "POSTGRESQL_SESSION_LOCK",
    "FlywayEngine",
    "FlywayInstall",
    "FlywaySettings",
    "check_locations",
    "check_runnable",
    "flyway_configuration",
    "interpret_output",
]

_log = logging.getLogger(__name__)

# The in-process JVM's options: a bounded heap keeps a worker's RSS flat; SerialGC suits 1-2 cores.
DEFAULT_JVM_OPTIONS: Final = ("-Xmx256m", "-XX:MaxMetaspaceSize=128m", "-XX:+UseSerialGC", "-Xss1m")
# A session advisory lock keeps each script and its history row in one commit on one connection
# (the default splits them, flyway/flyway#3492) and lets CREATE INDEX CONCURRENTLY finish (#3508).
POSTGRESQL_SESSION_LOCK: Final = ("postgresql.transactional.lock", "false")


@dataclass(frozen=True)
class FlywayInstall:
    """Where the pinned Flyway jars are and which Java runs them.

    ``jvm_options`` trade peak JIT for start-up: a Flyway run is short-lived, so C1-only
    compilation and the serial collector start faster and use less memory on 2 cores.
    """

    lib_dir: Path
    java: Path
    version: str
    jvm_options: tuple[str, ...] = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xshare:auto")


@dataclass(frozen=True)
class FlywaySettings:
    """How every run is configured (the same for all tenants of a worker).

    Attributes:
        locations: absolute folders holding the versioned SQL scripts, used by runs that name
            none (a worker's runs always name their set's snapshot; see ``activities/sets/store.py``).
        timeout: budget for one Flyway run that names none; past it the run is stopped.
        lock_retry_count: seconds Flyway waits for another runner's advisory lock.
        connect_retries: Flyway's own connection retries (0: let Temporal retry instead).
        lock_timeout: how long one statement may wait for a table lock (PostgreSQL
            ``lock_timeout``); past it the statement fails (``lock_timeout``, retried) instead of
            queueing the application's queries behind it.
    """

    locations: tuple[Path, ...] = ()
    timeout: timedelta = timedelta(minutes=5)
    lock_retry_count: int = 50
    connect_retries: int = 0
    lock_timeout: timedelta = timedelta(milliseconds=DEFAULT_LOCK_TIMEOUT_MS)

    def sessions(self, timeout_s: int = 0) -> RunSessions:
        """The sessions of one run: its budget (``timeout_s``, or these settings'), this lock timeout."""
        budget = timeout_s or self.timeout.total_seconds()
        return RunSessions(budget, lock_timeout_ms=int(self.lock_timeout.total_seconds() * 1000))


class FlywayEngine(Protocol):
    """How Flyway runs: one CLI process per run, or one in-process JVM per worker.

    :class:`FlywayRunner` and ``activities/flyway/jvm.py`` take the same inputs, return the same
    outcomes and raise the same errors; the engine tests run against both.
    """

    async def run(
        self,
        request: FlywayRequest,
        target: DatabaseTarget,
        *,
        verb: Action | None = None,
        locations: tuple[Path, ...] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> FlywayOutcome:
        """Run ``verb`` (default: the request's action) against ``target``.

        See :meth:`FlywayRunner.run` for the contract.
        """
        ...


def flyway_configuration(
    verb: Action,
    request: FlywayRequest,
    target: DatabaseTarget,
    labels: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Flyway settings (``key`` → value, without the ``flyway.`` prefix) a call's request makes.

    One mapping for both engines: the CLI passes each as ``-key=value``, the JVM engine as its
    configuration map. Values are validated already (``options.py``); per tenant, ``tenant_id``
    and ``tenant_schema`` placeholders are set here, so a script may name its tenant, and
    ``labels`` (the tenant's ``label.KEY`` values) are added.
    """
    action, opts, tenant_id = verb, request.flyway, request.tenant_id
    config: dict[str, str] = {}
    if action is Action.MIGRATE and opts.target:
        config["target"] = opts.target
    if action is Action.MIGRATE and opts.out_of_order:
        # Only the named version may come from below: nothing above the current version runs.
        config |= {"outOfOrder": "true", "target": "current"}
    if action is Action.BASELINE:
        config["baselineVersion"] = opts.baseline_version or "1"
        config["baselineDescription"] = "fleetway baseline"
    tenant = dict(labels or {})
    if tenant_id:
        tenant["tenant_id"] = tenant_id
    if target.schema_name:
        tenant["tenant_schema"] = target.schema_name
    config |= {f"placeholders.{k}": v for k, v in {**opts.placeholders, **tenant}.items()}
    return config


def placeholder_values(
    tenant_id: str,
    target: DatabaseTarget,
    placeholders: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Every placeholder value a run for this tenant sees, as far as a table read can know them.

    The rollout's, the tenant's labels, fleetway's ``tenant_id``/``tenant_schema`` and Flyway's
    built-ins. What a repeatable's recorded checksum is computed from (``flyway/checksums.py``). Never known
    here: ``${flyway:timestamp}`` (a run's clock), ``${flyway:workingDirectory}`` (a worker's folder).
    """
    values = dict(placeholders or {}) | dict(labels or {}) | {"tenant_id": tenant_id}
    values |= {"flyway:user": target.user, "flyway:database": target.database}
    values["flyway:table"] = "flyway_schema_history"
    if target.schema_name:
        values |= {"tenant_schema": target.schema_name, "flyway:defaultSchema": target.schema_name}
    return values


def check_locations(locations: tuple[Path, ...]) -> tuple[Path, ...]:
    """The folders Flyway may read, vetted the same way for both engines.

    Flyway splits ``locations`` on commas (the CLI on its flag, the API on each string), so a
    comma in a folder name would silently turn one folder into two. Both engines also pass
    ``failOnMissingLocations``: a folder that vanished fails the run instead of applying nothing.

    Raises:
        ConfigurationError: no folder, or a folder is relative or holds a comma.
    """
    if not locations:
        raise ConfigurationError("no flyway location given")
    for location in locations:
        if not location.is_absolute() or "," in str(location):
            raise ConfigurationError(f"flyway location {str(location)!r} must be absolute and comma-free")
    return locations


def check_runnable(action: Action, target: DatabaseTarget, *, installed_by: str = "") -> dict[str, str]:
    """The checks every engine makes before Flyway runs; returns the ``FLYWAY_*`` connection fields.

    Raises:
        PasswordTooShortError: migrate with a non-empty password under 8 bytes.
        UnsafeEnvValueError: CR/LF/NUL in a connection field.
        UnsafeIdentifierError: unsafe schema name or ``installed_by`` marker.
    """
    password = target.password.get_secret_value()
    if action is Action.MIGRATE and password and len(password.encode()) < MIN_REDACTABLE_LENGTH:
        raise PasswordTooShortError(
            f"password is shorter than {MIN_REDACTABLE_LENGTH} bytes; refusing to migrate"
        )
    env = flyway_environment(target)
    if installed_by:
        env["FLYWAY_INSTALLED_BY"] = check_history_marker(installed_by)
    return env


def interpret_output(action: Action, output: str, *, returncode: int, elapsed_ms: int) -> FlywayOutcome:
    """Turn Flyway's (already redacted) output into a successful outcome, or raise the failure.

    Shared by both engines so they return the same results and the same error classes. A success
    document with a non-zero exit code (or, in process, an engine-level failure) is not trusted.

    Raises:
        FlywayOutputUnparsedError: no Flyway JSON document in the output.
        FlywayReportedFailureError: Flyway reported a failure; ``outcome`` holds what it did.
    """
    document = find_flyway_document(output)
    if document is None:
        _log.warning(
            "flyway output unparsed",
            extra={"action": action.value, "exit_code": returncode, "output_tail": output[-2000:]},
        )
        raise FlywayOutputUnparsedError(
            f"flyway {action.value} exited {returncode} without a JSON result",
            error_class=ErrorClass.INTERNAL_ERROR,
        )
    outcome = outcome_from_document(action, document)
    if outcome.success and returncode != 0:
        outcome = outcome.model_copy(
            update={"success": False, "error_class": ErrorClass.INTERNAL_ERROR,
                    "detail": f"flyway exited {returncode} despite a success document"}
        )  # fmt: skip
    if not outcome.success:
        error_class = outcome.error_class or ErrorClass.INTERNAL_ERROR
        _log.warning(
            "flyway reported failure",
            extra={"action": action.value, "error_class": error_class.value,
                   "error_code": outcome.error_code, "output_tail": output[-4000:]},
        )  # fmt: skip
        said = f": {outcome.db_message}" if outcome.db_message else ""
        raise FlywayReportedFailureError(
            f"flyway {action.value} failed: {error_class.value}: {outcome.detail}{said}",
            error_class=error_class,
            retryable=error_class in RETRYABLE_CLASSES,
            outcome=outcome,
        )
    return outcome.model_copy(update={"duration_ms": outcome.duration_ms or elapsed_ms})
