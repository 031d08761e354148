"""fleetway's error tree: one named type per condition, each with a stable published ``error_type``.

Library code raises these; only activity wrappers turn them into Temporal ``ApplicationError``s
(see :func:`to_application_error`). Messages name the field and the rule that failed and never
carry a secret value, a DSN or Flyway's free-text output.

Twelve families under the root, each a kind of trouble a caller handles one way (the CLI maps
them to exit codes, docs/rollouts.md): configuration (fix the settings), invalid input (fix the
request; nothing changed), secrets, the tenant source, the quiesce flag, the audit sink, Flyway, a
safety refusal (a rule kept a tenant as it was), the schema history unread, provisioning, rollout
control (no such rollout, the wrong state), orchestration (Temporal or a fitting worker away).

    FleetwayError
    ├── ConfigurationError
    │   ├── FlywayInstallMissingError
    │   ├── MigrationSetInvalidError
    │   ├── PlaceholderMissingError
    │   ├── QuiesceStoreMissingError
    │   ├── QuiesceStoreNotWritableError
    │   ├── AuditNotWritableError
    │   ├── SearchAttributesMissingError
    │   └── PrerequisiteMissingError
    ├── InvalidInputError
    │   ├── InvalidTenantIdError
    │   ├── InvalidTenantLabelError
    │   ├── InvalidLabelSelectorError
    │   ├── InvalidWavePlanError
    │   ├── InvalidFlywayOptionError
    │   ├── InvalidQuiesceTtlError
    │   ├── UnsafeIdentifierError
    │   ├── UnsafeEnvValueError
    │   └── PasswordTooShortError
    ├── SecretsError
    │   ├── SecretNotFoundError
    │   ├── SecretMalformedError
    │   ├── SecretBackendError
    │   └── SecretAccessDeniedError
    ├── TenantSourceError
    │   ├── TenantSourceUnavailableError
    │   └── WavePlanChangedError
    ├── QuiesceError
    │   ├── QuiesceNotSetError
    │   └── QuiesceBackendError
    ├── AuditSinkError
    ├── FlywayError
    │   ├── FlywayReportedFailureError
    │   ├── FlywayOutputUnparsedError
    │   └── FlywayTimeoutError
    ├── SafetyRefusalError
    │   ├── OutOfOrderRefusedError
    │   ├── RepairRefusedError
    │   └── SchemaFingerprintMismatchError
    ├── SchemaHistoryUnavailableError
    ├── ProvisioningError
    │   └── ProvisioningUnavailableError
    ├── RolloutControlError
    │   ├── RolloutNotFoundError
    │   ├── RolloutIdReusedError
    │   ├── RolloutNotRunningError
    │   ├── ApprovalNotPendingError
    │   └── TenantActionRefusedError
    └── OrchestrationError
        ├── TemporalUnavailableError
        ├── WorkerUnavailableError
        ├── WorkerFailedError
        ├── WorkerConfigMismatchError
        ├── MigrationSetMismatchError
        ├── MigrationStoreError
        └── IncompatiblePayloadError
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, ClassVar

from pydantic import ValidationError
from temporalio.exceptions import ApplicationError

if TYPE_CHECKING:
    from fleetway.activities.flyway.output import FlywayOutcome

__all__ = [
    "ApprovalNotPendingError",
    "AuditNotWritableError",
    "AuditSinkError",
    "ConfigurationError",
    "FleetwayError",
    "FlywayError",
    "FlywayInstallMissingError",
    "FlywayOutputUnparsedError",
    "FlywayReportedFailureError",
    "FlywayTimeoutError",
    "IncompatiblePayloadError",
    "InvalidFlywayOptionError",
    "InvalidInputError",
    "InvalidLabelSelectorError",
    "InvalidQuiesceTtlError",
    "InvalidTenantIdError",
    "InvalidTenantLabelError",
    "InvalidWavePlanError",
    "MigrationSetInvalidError",
    "MigrationSetMismatchError",
    "MigrationStoreError",
    "OrchestrationError",
    "OutOfOrderRefusedError",
    "PasswordTooShortError",
    "PlaceholderMissingError",
    "PrerequisiteMissingError",
    "ProvisioningError",
    "ProvisioningUnavailableError",
    "QuiesceBackendError",
    "QuiesceError",
    "QuiesceNotSetError",
    "QuiesceStoreMissingError",
    "QuiesceStoreNotWritableError",
    "RepairRefusedError",
    "RolloutControlError",
    "RolloutIdReusedError",
    "RolloutNotFoundError",
    "RolloutNotRunningError",
    "SafetyRefusalError",
    "SchemaFingerprintMismatchError",
    "SchemaHistoryUnavailableError",
    "SearchAttributesMissingError",
    "SecretAccessDeniedError",
    "SecretBackendError",
    "SecretMalformedError",
    "SecretNotFoundError",
    "SecretsError",
    "TemporalUnavailableError",
    "TenantActionRefusedError",
    "TenantSourceError",
    "TenantSourceUnavailableError",
    "UnsafeEnvValueError",
    "UnsafeIdentifierError",
    "WavePlanChangedError",
    "WorkerConfigMismatchError",
    "WorkerFailedError",
    "WorkerUnavailableError",
    "from_validation_error",
    "to_application_error",
]


class FleetwayError(Exception):
    """Root of every error fleetway raises on purpose.

    Attributes:
        error_type: stable snake_case name, published; matched by retry policies and callers.
        retryable: whether repeating the same call can succeed.
        retry_after_s: a fixed delay before the next attempt, instead of the retry policy's
            growing backoff (None: the policy decides).
    """

    error_type: ClassVar[str] = "fleetway_error"
    retryable: ClassVar[bool] = False
    retry_after_s: float | None = None


class ConfigurationError(FleetwayError):
    """A setting is missing or invalid; retrying with the same settings cannot help."""

    error_type = "configuration_error"


class SecretsError(FleetwayError):
    """A tenant's credentials could not be had: missing, malformed, refused, or the store failed."""

    error_type = "secrets_error"


class QuiesceError(FleetwayError):
    """The quiesce flag could not be read or changed as asked."""

    error_type = "quiesce_error"


class SafetyRefusalError(FleetwayError):
    """A safety rule refused a tenant's run (a hotfix, a repair, an adoption): nothing was changed."""

    error_type = "safety_refusal"


class RolloutControlError(FleetwayError):
    """An operator's action on a rollout was refused: no such rollout, the wrong state, a reused id."""

    error_type = "rollout_control_error"


class OrchestrationError(FleetwayError):
    """Temporal, or a worker configured as the rollout needs, cannot take the work now (or here)."""

    error_type = "orchestration_error"


class FlywayInstallMissingError(ConfigurationError):
    """A worker has no Flyway jars configured (``flyway.lib_dir``); it never fetches them itself."""

    error_type = "flyway_install_missing"


class MigrationSetInvalidError(ConfigurationError):
    """A migrations folder or set is missing, unreadable, empty, unsafe or not a valid digest.

    Never retried: a run with nothing to apply must not report success, and the same folder
    will not fix itself.
    """

    error_type = "migration_set_invalid"


class QuiesceStoreMissingError(ConfigurationError):
    """The deployment quiesce flag was asked for with no shared store (``quiesce.dsn`` unset).

    A flag kept in one process's memory is seen by no worker: setting it would print ACTIVE and
    stop nothing, so a safety control without a shared store refuses instead.
    """

    error_type = "quiesce_store_missing"


class SearchAttributesMissingError(ConfigurationError):
    """The Temporal namespace lacks fleetway's search attributes and refused to register them.

    Every rollout would fail its first workflow task on the upsert, again and again: the worker
    refuses to start instead, naming the command that registers them.
    """

    error_type = "search_attributes_missing"


class AuditSinkError(FleetwayError):
    """The durable audit sink could not take an event (down, refusing, timed out); retried."""

    error_type = "audit_sink_error"
    retryable = True


class AuditNotWritableError(ConfigurationError):
    """The audit sink's table is missing, or its login may not INSERT into it.

    A configuration error, never retried: the table is created once by ``fleetway audit init``
    with an owner's credentials, and the sink's own login needs INSERT and SELECT on it.
    """

    error_type = "audit_not_writable"


class QuiesceStoreNotWritableError(ConfigurationError):
    """The quiesce store's table is missing, or its login may not use it as the flag needs.

    Created once by ``fleetway quiesce init``; operators' logins need INSERT, UPDATE and SELECT,
    workers' logins SELECT.
    """

    error_type = "quiesce_store_not_writable"


class IncompatiblePayloadError(OrchestrationError):
    """A payload written by another worker build that this one cannot decode (a rolling deploy).

    Deliberately not a Temporal failure: raised while decoding, it fails the workflow task or the
    activity attempt, which is retried until a worker that understands the payload takes it.
    """

    error_type = "incompatible_payload"
    retryable = True


class MigrationSetMismatchError(OrchestrationError):
    """This worker cannot run the set a rollout names (its own set differs, no store has it).

    Retryable on purpose: a worker that has the set, or this one after its deploy, takes the
    tenant on a later attempt; the tenant's retry budget bounds the wait. Nothing was run.
    """

    error_type = "migration_set_mismatch"
    retryable = True
    # A refusal costs milliseconds and touches nothing: retry at a steady 1 s rather than backing
    # off to 15 s, or a rolling deploy's old workers would stretch every tenant they take.
    retry_after_s = 1.0


class MigrationStoreError(OrchestrationError):
    """The migration set store could not be reached, or what it returned failed verification."""

    error_type = "migration_store_error"
    retryable = True


class WorkerConfigMismatchError(OrchestrationError):
    """This worker's tenant source or secret backend differs from the one the rollout pinned.

    Retryable at a steady 1 s, like a set mismatch: a worker configured like the rollout's first
    one takes the work; nothing was read or run here.
    """

    error_type = "worker_config_mismatch"
    retryable = True
    retry_after_s = 1.0


class TemporalUnavailableError(OrchestrationError):
    """The Temporal frontend could not be reached (refused, unresolvable, TLS failure)."""

    error_type = "temporal_unavailable"
    retryable = True


class RolloutNotFoundError(RolloutControlError):
    """No rollout (workflow) with this id exists in the namespace."""

    error_type = "rollout_not_found"


class RolloutIdReusedError(RolloutControlError):
    """A rollout id that already ran (or is running) was given to start a new rollout.

    Re-using it would answer for the earlier rollout (every tenant "already run", the rollout
    "succeeded") without running anything: refused, naming the earlier run.
    """

    error_type = "rollout_id_reused"


class RolloutNotRunningError(RolloutControlError):
    """The rollout has ended; a command that steers a running rollout has nothing to act on."""

    error_type = "rollout_not_running"


class WorkerUnavailableError(OrchestrationError):
    """No worker polls the task queue (or none answered in time) for a question only workers answer."""

    error_type = "worker_unavailable"


class WorkerFailedError(OrchestrationError):
    """The worker failed again and again, each time soon after it was rebuilt: the process gives up."""

    error_type = "worker_failed"


class PrerequisiteMissingError(ConfigurationError):
    """A program fleetway needs (Java, Maven, PostgreSQL binaries) is not installed."""

    error_type = "prerequisite_missing"


class InvalidInputError(FleetwayError, ValueError):
    """A workflow, activity or command input breaks its model (a field's type, range or rule)."""

    error_type = "invalid_input"


class InvalidTenantIdError(InvalidInputError):
    """A tenant id is empty or breaks ``^[A-Za-z0-9_-]{1,128}$`` (after trimming).

    Also a ``ValueError``, so a pydantic validator that raises it yields a ``ValidationError``
    that still carries this error (and its published type) for the one-line rendering.
    """

    error_type = "invalid_tenant_id"


class InvalidTenantLabelError(InvalidInputError):
    """A tenant label breaks the label rules (key or value alphabet, length, count, a secret-like key).

    A ``ValueError`` too, like :class:`InvalidTenantIdError`, so pydantic validators carry it.
    """

    error_type = "invalid_tenant_label"


class InvalidLabelSelectorError(InvalidInputError):
    """A label selector (``tier=internal,region in (eu,us)``) does not parse; nothing was selected."""

    error_type = "invalid_label_selector"


class InvalidWavePlanError(InvalidInputError):
    """A wave plan is malformed, or cannot be applied to the fleet (an id it names is not listed).

    Raised before anything is dispatched: a rollout whose plan is wrong runs nothing.
    """

    error_type = "invalid_wave_plan"


class InvalidFlywayOptionError(InvalidInputError):
    """A Flyway option of a rollout is malformed: a target, a hotfix version, a placeholder's name or value.

    A ``ValueError`` too, so the rollout's input model refuses it before anything is started.
    """

    error_type = "invalid_flyway_option"


class PlaceholderMissingError(ConfigurationError):
    """A script of the set uses a placeholder nobody set: refused before any tenant runs."""

    error_type = "placeholder_missing"


class SchemaFingerprintMismatchError(SafetyRefusalError):
    """A tenant to adopt (baseline) holds another schema than its reference; nothing was written."""

    error_type = "schema_fingerprint_mismatch"


class RepairRefusedError(SafetyRefusalError):
    """Repair was asked with a set that lacks versions the tenant applied; nothing was changed.

    Flyway's repair marks an applied version missing from the set as deleted: with the wrong set,
    it would rewrite the history of every tenant it touched.
    """

    error_type = "repair_refused"


class OutOfOrderRefusedError(SafetyRefusalError):
    """A hotfix would apply more than the one named out-of-order version; nothing was applied."""

    error_type = "out_of_order_refused"


class ApprovalNotPendingError(RolloutControlError):
    """``approve``/``reject`` found nothing to decide: no wave waits for a decision (or another does)."""

    error_type = "approval_not_pending"


class TenantActionRefusedError(RolloutControlError):
    """``skip-tenant``/``retry-tenant``/``tenant-deadline`` could not be done; nothing was recorded."""

    error_type = "tenant_action_refused"


class UnsafeIdentifierError(InvalidInputError):
    """A schema, role or table name breaks the safe SQL identifier pattern; nothing was run."""

    error_type = "unsafe_identifier"


class UnsafeEnvValueError(InvalidInputError):
    """A value bound for Flyway's environment holds CR, LF or NUL (header/line injection)."""

    error_type = "unsafe_env_value"


class PasswordTooShortError(InvalidInputError):
    """A non-empty password under 8 bytes: too short to redact from output without false hits."""

    error_type = "password_too_short"


class SecretNotFoundError(SecretsError):
    """The secret store has no entry under the computed name. Retrying will not create it."""

    error_type = "secret_not_found"


class SecretMalformedError(SecretsError):
    """A secret payload is not a valid database target. The message never holds the payload."""

    error_type = "secret_malformed"


class SecretBackendError(SecretsError):
    """The secret store could not be reached or refused the call; often transient."""

    error_type = "secret_backend_error"
    retryable = True


class SecretAccessDeniedError(SecretsError):
    """The secret store refused this identity (IAM, Vault policy); retrying with it cannot help."""

    error_type = "secret_access_denied"


class TenantSourceError(FleetwayError):
    """A tenant source failed or answered outside its contract."""

    error_type = "tenant_source_error"


class WavePlanChangedError(TenantSourceError):
    """The fleet a wave plan was made from lists differently now: the plan is made again from the start."""

    error_type = "wave_plan_changed"


class TenantSourceUnavailableError(TenantSourceError):
    """The tenant source is unreachable or overloaded (a timeout, 429, 5xx); the caller retries.

    ``retry_after_s``: the server's ``Retry-After`` (capped), the delay before the next attempt.
    """

    error_type = "tenant_source_unavailable"
    retryable = True

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class FlywayError(FleetwayError):
    """Flyway ran but did not succeed.

    Attributes:
        error_class: the published :class:`~activities.flyway.output.ErrorClass` value.
        is_retryable: whether this class can clear by itself (lock, unreachable, not ready).
        outcome: the best-effort parsed result (versions applied before a failure), if any.
    """

    error_type = "flyway_error"

    def __init__(
        self,
        message: str,
        *,
        error_class: str,
        retryable: bool = False,
        outcome: FlywayOutcome | None = None,
    ) -> None:
        super().__init__(message)
        self.error_class = error_class
        self.is_retryable = retryable
        self.outcome = outcome


class FlywayReportedFailureError(FlywayError):
    """Flyway's JSON reported a failure (an ``error`` envelope or ``success: false``)."""

    error_type = "flyway_reported_failure"


class FlywayOutputUnparsedError(FlywayError):
    """Flyway's output held no recognisable JSON document; success cannot be established."""

    error_type = "flyway_output_unparsed"


class FlywayTimeoutError(FlywayError):
    """Flyway overran its time budget and its process group was killed: schema state is unknown."""

    error_type = "flyway_timeout"


class ProvisioningError(FleetwayError):
    """A provisioning step was refused by PostgreSQL (privileges, conflicting objects, bad seed SQL)."""

    error_type = "provisioning_error"


class ProvisioningUnavailableError(ProvisioningError):
    """The provisioning database could not be reached; retrying can succeed."""

    error_type = "provisioning_unavailable"
    retryable = True


class InvalidQuiesceTtlError(InvalidInputError):
    """A quiesce TTL that is negative or not a duration (``--ttl``)."""

    error_type = "invalid_quiesce_ttl"


class QuiesceNotSetError(QuiesceError):
    """``clear`` found no flag that was ever set or not already cleared."""

    error_type = "quiesce_not_set"


class SchemaHistoryUnavailableError(FleetwayError):
    """A tenant's ``flyway_schema_history`` could not be read (database unreachable); transient."""

    error_type = "schema_history_unavailable"
    retryable = True


class QuiesceBackendError(QuiesceError):
    """The control-plane database could not be reached or refused the statement."""

    error_type = "quiesce_backend_error"
    retryable = True


def to_application_error(exc: FleetwayError, *, final_reason: str = "") -> ApplicationError:
    """Convert a fleetway error into the Temporal error an activity raises.

    The only conversion point (activity wrappers call it): ``type`` is the published class for
    Flyway failures and ``error_type`` otherwise, so retry policies and workflows can branch on it
    without parsing text. The message is ours and vetted; no ``__cause__`` is attached.
    ``final_reason``: why a retryable error must not be retried any more (its retry budget is
    spent); it makes the error final and is appended to its message. Ignored for an error that
    is final anyway.
    """
    retryable = exc.is_retryable if isinstance(exc, FlywayError) else exc.retryable
    message = f"{exc}; {final_reason}" if retryable and final_reason else str(exc)
    non_retryable = not retryable or bool(final_reason)
    if isinstance(exc, FlywayError):
        # Details: the error type, then (when Flyway reported one) the outcome's JSON object, which
        # ``activities.flyway.output.outcome_of_failure`` reads back.
        details = [exc.error_type] + ([exc.outcome.model_dump(mode="json")] if exc.outcome else [])
        return ApplicationError(message, *details, type=exc.error_class, non_retryable=non_retryable)
    delay = timedelta(seconds=exc.retry_after_s) if exc.retry_after_s is not None else None
    return ApplicationError(message, type=exc.error_type, non_retryable=non_retryable, next_retry_delay=delay)


_MAX_INPUT_MESSAGE = 1000


def from_validation_error(exc: ValidationError) -> FleetwayError:
    """A pydantic ``ValidationError`` as one named fleetway error, for a one-line answer.

    A single failure raised as a fleetway error by a validator (an invalid tenant id) keeps its
    own type and message; anything else becomes :class:`InvalidInputError` naming each field and
    rule (``parallelism: Input should be less than or equal to 256``). No pydantic URL, no dump.
    """
    errors = exc.errors(include_url=False)
    carried = [e.get("ctx", {}).get("error") for e in errors]
    if len(errors) == 1 and isinstance(carried[0], FleetwayError):
        return carried[0]
    parts = []
    for error, cause in zip(errors, carried, strict=True):
        where = ".".join(str(p) for p in error["loc"]) or "input"
        text = f"{cause.error_type}: {cause}" if isinstance(cause, FleetwayError) else error["msg"]
        parts.append(f"{where}: {text.removeprefix('Value error, ')}")
    return InvalidInputError("; ".join(parts)[:_MAX_INPUT_MESSAGE])
