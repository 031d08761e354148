"""Audit events: who changed which database when, as an OpenTelemetry span plus a structured log.

Emitted from activities only (workflows stay deterministic). An event carries a target name
(tenant id or schema), never a DSN or a credential. Must not: block the migration it records.
"""

from __future__ import annotations

import logging
from datetime import datetime
from enum import StrEnum
from typing import Final

from opentelemetry import trace
from pydantic import BaseModel, ConfigDict, Field
from temporalio import activity

__all__ = ["AuditActivities", "AuditContext", "AuditEvent", "AuditEventType", "AuditOutcome", "Emitter"]

_log = logging.getLogger(__name__)
_tracer: Final = trace.get_tracer("fleetway.audit")


class AuditEventType(StrEnum):
    """Published event types (additions only)."""

    MIGRATION_APPLIED = "migration.applied"
    STATE_TRANSITIONED = "state.transitioned"
    QUIESCE_SET = "quiesce.set"
    QUIESCE_CLEARED = "quiesce.cleared"


class AuditOutcome(StrEnum):
    """Outcome of the audited change."""

    SUCCESS = "success"
    FAILED = "failed"
    SKIPPED = "skipped"


class AuditContext(BaseModel):
    """Who and what started a change; the principal is never invented (empty: ``<unspecified>``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    principal: str = ""
    git_sha: str = ""
    pipeline_run_id: str = ""


class AuditEvent(BaseModel):
    """One audited change. ``event_id`` is deterministic per outcome so sinks can dedupe retries."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: str
    type: AuditEventType
    target: str
    principal: str
    started_at: datetime | None = None
    completed_at: datetime | None = None
    outcome: AuditOutcome
    version: str = ""
    from_state: str = ""
    to_state: str = ""
    error_class: str = ""
    git_sha: str = ""
    pipeline_run_id: str = ""
    attributes: dict[str, str] = Field(default_factory=dict)


class Emitter:
    """Records events as a span (``audit.<type>``) and one structured log record."""

    def emit(self, event: AuditEvent) -> None:
        """Emit ``event``; never raises for telemetry problems."""
        attributes = {
            f"audit.{k}": str(v)
            for k, v in event.model_dump(mode="json", exclude={"attributes"}).items()
            if v not in (None, "")
        }
        attributes.update({f"audit.attr.{k}": v for k, v in event.attributes.items()})
        with _tracer.start_as_current_span(f"audit.{event.type.value}", attributes=attributes):
            _log.info("audit event", extra={"audit": event.model_dump(mode="json")})


class AuditActivities:
    """The ``emit_audit`` activity, bound to the worker's emitter."""

    def __init__(self, emitter: Emitter) -> None:
        self._emitter = emitter

    @activity.defn(name="emit_audit")
    async def emit_audit(self, event: AuditEvent) -> None:
        """Emit one event (retries are safe: sinks dedupe on ``event_id``)."""
        self._emitter.emit(event)
