"""fleetway's error tree: one named type per condition, each with a stable published ``error_type``.

Library code raises these; only activity wrappers turn them into Temporal ``ApplicationError``s
(see :func:`to_application_error`). Messages name the field and the rule that failed and never
carry a secret value, a DSN or Flyway's free-text output.

    FleetwayError
    ├── ConfigurationError
    ├── PrerequisiteMissingError
    ├── InvalidTenantIdError
    ├── UnsafeIdentifierError
    ├── UnsafeEnvValueError
    ├── PasswordTooShortError
    ├── SecretNotFoundError
    ├── SecretMalformedError
    ├── SecretBackendError
    ├── TenantSourceError
    ├── QuiesceBlockedError
    ├── InvalidQuiesceTtlError
    ├── QuiesceNotSetError
    ├── QuiesceBackendError
    └── FlywayError
        ├── FlywayReportedFailureError
        ├── FlywayOutputUnparsedError
        └── FlywayTimeoutError
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from temporalio.exceptions import ApplicationError

if TYPE_CHECKING:
    from activities.flyway_output import FlywayOutcome

__all__ = [
    "ConfigurationError",
    "FleetwayError",
    "FlywayError",
    "FlywayOutputUnparsedError",
    "FlywayReportedFailureError",
    "FlywayTimeoutError",
    "InvalidQuiesceTtlError",
    "InvalidTenantIdError",
    "PasswordTooShortError",
    "PrerequisiteMissingError",
    "ProvisioningError",
    "ProvisioningUnavailableError",
    "QuiesceBackendError",
    "QuiesceBlockedError",
    "QuiesceNotSetError",
    "SchemaHistoryUnavailableError",
    "SecretAccessDeniedError",
    "SecretBackendError",
    "SecretMalformedError",
    "SecretNotFoundError",
    "TenantSourceError",
    "TenantSourceUnavailableError",
    "UnsafeEnvValueError",
    "UnsafeIdentifierError",
    "to_application_error",
]


class FleetwayError(Exception):
    """Root of every error fleetway raises on purpose.

    Attributes:
        error_type: stable snake_case name, published; matched by retry policies and callers.
        retryable: whether repeating the same call can succeed.
    """

    error_type: ClassVar[str] = "fleetway_error"
    retryable: ClassVar[bool] = False


class ConfigurationError(FleetwayError):
    """A setting is missing or invalid; retrying with the same settings cannot help."""

    error_type = "configuration_error"


class PrerequisiteMissingError(FleetwayError):
    """A program fleetway needs (Java, Maven, PostgreSQL binaries) is not installed."""

    error_type = "prerequisite_missing"


class InvalidTenantIdError(FleetwayError):
    """A tenant id is empty or breaks ``^[A-Za-z0-9_-]{1,128}$`` (after trimming)."""

    error_type = "invalid_tenant_id"


class UnsafeIdentifierError(FleetwayError):
    """A schema, role or table name breaks the safe SQL identifier pattern; nothing was run."""

    error_type = "unsafe_identifier"


class UnsafeEnvValueError(FleetwayError):
    """A value bound for Flyway's environment holds CR, LF or NUL (header/line injection)."""

    error_type = "unsafe_env_value"


class PasswordTooShortError(FleetwayError):
    """A non-empty password under 8 bytes: too short to redact from output without false hits."""

    error_type = "password_too_short"


class SecretNotFoundError(FleetwayError):
    """The secret store has no entry under the computed name. Retrying will not create it."""

    error_type = "secret_not_found"


class SecretMalformedError(FleetwayError):
    """A secret payload is not a valid database target. The message never holds the payload."""

    error_type = "secret_malformed"


class SecretBackendError(FleetwayError):
    """The secret store could not be reached or refused the call; often transient."""

    error_type = "secret_backend_error"
    retryable = True


class SecretAccessDeniedError(FleetwayError):
    """The secret store refused this identity (IAM, Vault policy); retrying with it cannot help."""

    error_type = "secret_access_denied"


class TenantSourceError(FleetwayError):
    """A tenant source failed or answered outside its contract."""

    error_type = "tenant_source_error"


class TenantSourceUnavailableError(TenantSourceError):
    """The tenant source stayed unreachable or overloaded (timeouts, 429, 5xx) after retries."""

    error_type = "tenant_source_unavailable"
    retryable = True


class QuiesceBlockedError(FleetwayError):
    """The deployment quiesce flag is set; the work was not started."""

    error_type = "quiesce_blocked"


class FlywayError(FleetwayError):
    """Flyway ran but did not succeed.

    Attributes:
        error_class: the published :class:`~activities.flyway_output.ErrorClass` value.
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


class ProvisioningUnavailableError(FleetwayError):
    """The provisioning database could not be reached; retrying can succeed."""

    error_type = "provisioning_unavailable"
    retryable = True


class InvalidQuiesceTtlError(FleetwayError):
    """A negative TTL was given to ``set``."""

    error_type = "invalid_quiesce_ttl"


class QuiesceNotSetError(FleetwayError):
    """``clear`` found no flag that was ever set or not already cleared."""

    error_type = "quiesce_not_set"


class SchemaHistoryUnavailableError(FleetwayError):
    """A tenant's ``flyway_schema_history`` could not be read (database unreachable); transient."""

    error_type = "schema_history_unavailable"
    retryable = True


class QuiesceBackendError(FleetwayError):
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
        details = [exc.error_type] + ([exc.outcome.model_dump(mode="json")] if exc.outcome else [])
        return ApplicationError(message, *details, type=exc.error_class, non_retryable=non_retryable)
    return ApplicationError(message, type=exc.error_type, non_retryable=non_retryable)
