"""Audit events: who changed which database when, as a span, a log record and a durable sink.

Emitted from activities and CLI commands only (workflows stay deterministic). An event carries a
target name (tenant id or schema), never a DSN or a credential. The ``emit_audit`` activity writes
the event to the sink before it completes (:meth:`Emitter.record`): a sink outage or a killed
worker makes Temporal retry the write, by time, and sinks make it idempotent by ``event_id``, so
each outcome is recorded exactly once and none is lost. CLI commands, which have no retrying
caller, hand their events to a bounded queue drained by one background thread
(:meth:`Emitter.emit`), and :meth:`Emitter.close` drains it within a deadline.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final, Protocol

from opentelemetry import metrics, trace
from opentelemetry.trace import Status, StatusCode
from pydantic import BaseModel, Field
from temporalio import activity

from fleetway.activities.errors import AuditSinkError, FleetwayError, to_application_error
from fleetway.activities.wire import CLIENT_INPUT, WIRE_MODEL

__all__ = [
    "UNSPECIFIED_PRINCIPAL",
    "AuditActivities",
    "AuditContext",
    "AuditEvent",
    "AuditEventType",
    "AuditOutcome",
    "AuditSink",
    "Emitter",
    "EmitterStats",
]

_log = logging.getLogger(__name__)
_tracer: Final = trace.get_tracer("fleetway.audit")
UNSPECIFIED_PRINCIPAL: Final = "<unspecified>"
DEFAULT_QUEUE_SIZE: Final = 256
_SINK_WRITE_TIMEOUT_S: Final = 20.0
_STOP: Final = object()


class AuditEventType(StrEnum):
    """Published event types (additions only)."""

    MIGRATION_APPLIED = "migration.applied"
    STATE_TRANSITIONED = "state.transitioned"
    QUIESCE_SET = "quiesce.set"
    QUIESCE_CLEARED = "quiesce.cleared"
    WAVE_APPROVED = "rollout.wave_approved"  # fleetway's addition: an operator opened a gated wave
    WAVE_REJECTED = "rollout.wave_rejected"  # … or refused it (the rollout ends halted)
    SERVER_HELD = "rollout.server_held"  # a rollout stopped dispatching to a server (parked or held)
    SERVER_RELEASED = "rollout.server_released"  # … and resumed once it was fit again
    TENANT_SKIPPED = "rollout.tenant_skipped"  # an operator took one tenant out of a running rollout
    TENANT_RETRIED = "rollout.tenant_retried"  # … ran one failed tenant again now
    TENANT_DEADLINE = "rollout.tenant_deadline"  # … gave one running tenant's Flyway call a new deadline


class AuditOutcome(StrEnum):
    """Outcome of the audited change."""

    SUCCESS = "success"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELED = "canceled"  # fleetway's addition: a cancelled tenant run, with what it applied


class AuditContext(BaseModel):
    """Who and what started a change; the principal is never invented (empty: ``<unspecified>``)."""

    model_config = CLIENT_INPUT

    principal: str = ""
    git_sha: str = ""
    pipeline_run_id: str = ""


class AuditEvent(BaseModel):
    """One audited change. ``event_id`` is deterministic per outcome so sinks can dedupe retries."""

    model_config = WIRE_MODEL

    event_id: str = Field(min_length=1, max_length=512)
    type: AuditEventType
    target: str = Field(min_length=1, max_length=256)
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


class AuditSink(Protocol):
    """Where events are kept durably. Called on the emitter's own thread, one event at a time.

    ``record`` must be idempotent by ``event.event_id`` (a retried activity emits the same id) and
    may block or raise: the emitter counts failures and moves on (no retry).
    """

    def record(self, event: AuditEvent) -> None:
        """Persist ``event`` (once per ``event_id``)."""
        ...

    def verify(self) -> None:
        """Check the sink can take events now (a worker checks at start); raise a named error if not."""
        ...

    def close(self) -> None:
        """Release connections and files."""
        ...


@dataclass
class EmitterStats:
    """What happened to events, for tests and the ``fleetway.audit.*`` metrics."""

    emitted: int = 0
    recorded: int = 0
    sink_drops: int = 0
    sink_failures: int = 0


def _with_principal(event: AuditEvent) -> AuditEvent:
    """Never invent a principal: an empty one becomes the sentinel, with a warning."""
    if event.principal.strip():
        return event
    _log.warning("audit event without a principal; operators must pass one explicitly")
    return event.model_copy(update={"principal": UNSPECIFIED_PRINCIPAL})


def _ns(moment: datetime | None) -> int | None:
    return int(moment.timestamp() * 1_000_000_000) if moment is not None else None


class Emitter:
    """Records each event as a span (``audit.<type>``), a log record, and optionally in a sink."""

    def __init__(
        self,
        sink: AuditSink | None = None,
        *,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        meter: metrics.Meter | None = None,
    ) -> None:
        self._sink = sink
        self.stats = EmitterStats()
        meter = meter or metrics.get_meter("fleetway.audit")
        self._events = meter.create_counter("fleetway.audit.events", description="audit events emitted")
        self._drops = meter.create_counter(
            "fleetway.audit.sink_drops", description="events dropped: queue full"
        )
        self._failures = meter.create_counter(
            "fleetway.audit.sink_failures", description="sink writes that failed"
        )
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._closed = False
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        if sink is not None:
            self._thread = threading.Thread(target=self._consume, name="fleetway-audit-sink", daemon=True)
            self._thread.start()

    async def record(self, event: AuditEvent) -> None:
        """Write ``event`` to the sink now, then emit its span and log record.

        For the ``emit_audit`` activity: a failed write raises, so Temporal retries it (the sink
        dedupes on ``event_id``); telemetry follows the write, once per recorded event.

        Raises:
            AuditSinkError: the sink could not take the event (retryable).
            AuditNotWritableError: the sink's login may not write its table (never retried).
        """
        event = _with_principal(event)
        if self._sink is not None:
            try:
                # Bounded below the activity's own timeout: a hung sink is a failed attempt, retried.
                await asyncio.wait_for(asyncio.to_thread(self._sink.record, event), _SINK_WRITE_TIMEOUT_S)
            except FleetwayError as exc:  # named by the sink (a table it may not write): as it is
                self.stats.sink_failures += 1
                self._failures.add(1, {"audit.type": event.type.value})
                if exc.retryable:
                    raise AuditSinkError(str(exc)) from None
                raise
            except Exception as exc:  # any other sink's failure: the caller retries, the class is named
                self.stats.sink_failures += 1
                self._failures.add(1, {"audit.type": event.type.value})
                raise AuditSinkError(
                    f"the audit sink could not record the event ({type(exc).__name__})"
                ) from None
            self.stats.recorded += 1
        self._telemetry(event)

    def verify(self) -> None:
        """Check the sink can take events now (a worker's start); nothing for a sink without a check.

        Raises:
            AuditNotWritableError: the sink's table is missing or its login may not insert.
            AuditSinkError: the sink could not be reached.
        """
        if self._sink is not None:
            self._sink.verify()

    def emit(self, event: AuditEvent) -> None:
        """Emit ``event`` without blocking (the queue); never raises for telemetry or sink problems."""
        event = _with_principal(event)
        self._telemetry(event)
        if self._sink is None:
            return
        with self._lock:
            if self._closed:
                return
            try:
                self._queue.put_nowait(event)
            except queue.Full:
                self.stats.sink_drops += 1
                self._drops.add(1, {"audit.type": event.type.value})
                _log.warning("audit sink queue full; event dropped", extra={"queue_cap": self._queue.maxsize})

    def _telemetry(self, event: AuditEvent) -> None:
        failed = event.outcome is AuditOutcome.FAILED
        attributes = {
            f"audit.{k}": str(v)
            for k, v in event.model_dump(mode="json", exclude={"attributes"}).items()
            if v not in (None, "")
        }
        attributes.update({f"audit.attr.{k}": v for k, v in event.attributes.items()})
        span = _tracer.start_span(
            f"audit.{event.type.value}", attributes=attributes, start_time=_ns(event.started_at)
        )
        if failed:
            span.set_status(Status(StatusCode.ERROR, event.error_class or "failed"))
        span.end(end_time=max(_ns(event.completed_at) or 0, _ns(event.started_at) or 0) or None)
        _log.log(
            logging.ERROR if failed else logging.INFO,
            "audit event",
            extra={"audit": event.model_dump(mode="json")},
        )
        self.stats.emitted += 1
        self._events.add(1, {"audit.type": event.type.value, "audit.outcome": event.outcome.value})

    def _consume(self) -> None:
        assert self._sink is not None  # noqa: S101 - only started with a sink
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            assert isinstance(item, AuditEvent)  # noqa: S101
            try:
                self._sink.record(item)
                self.stats.recorded += 1
            except Exception as exc:
                self.stats.sink_failures += 1
                self._failures.add(1, {"audit.type": item.type.value})
                _log.warning("audit sink delivery failed (%s)", type(exc).__name__)

    def close(self, timeout_s: float = 5.0) -> bool:
        """Stop accepting events, drain the queue within ``timeout_s``; True when fully drained.

        Idempotent. A sink still blocked at the deadline is abandoned (its thread is a daemon).
        """
        with self._lock:
            if self._closed:
                return self._thread is None or not self._thread.is_alive()
            self._closed = True
        if self._thread is None:
            return True
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self._queue.put(_STOP, timeout=max(0.0, min(0.1, deadline - time.monotonic())))
                break
            except queue.Full:
                if time.monotonic() >= deadline:
                    return False
        self._thread.join(timeout=max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            return False
        assert self._sink is not None  # noqa: S101
        try:
            self._sink.close()
        except Exception as exc:
            _log.warning("audit sink close failed (%s)", type(exc).__name__)
        return True


class AuditActivities:
    """The ``emit_audit`` activity, bound to the worker's emitter."""

    def __init__(self, emitter: Emitter) -> None:
        self._emitter = emitter

    @activity.defn(name="emit_audit")
    async def emit_audit(self, event: AuditEvent) -> None:
        """Record one event in the sink before completing (retries are safe: sinks dedupe on ``event_id``)."""
        try:
            await self._emitter.record(event)
        except FleetwayError as exc:
            raise to_application_error(exc, final_reason=_budget_spent(activity.info())) from None


def _budget_spent(info: activity.Info) -> str:
    """Why a failed emit is final now ("" while its ``schedule_to_close`` lasts).

    The SDK does not enforce ``schedule_to_close`` between a local activity's retries (measured),
    so the emit ends them itself; ``scheduled_time`` is the first attempt's, across retries.
    """
    limit = info.schedule_to_close_timeout
    if not limit:
        return ""
    elapsed = datetime.now(UTC) - info.scheduled_time
    if elapsed < limit:
        return ""
    return f"audit retried for {int(elapsed.total_seconds())}s over {info.attempt} attempts"
