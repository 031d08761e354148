"""The one way every process (CLI, worker, tests) builds its Temporal client."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client, TLSConfig
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.contrib.pydantic import PydanticPayloadConverter
from temporalio.converter import DataConverter
from temporalio.runtime import LogForwardingConfig, LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.service import RPCError

from fleetway.activities.errors import (
    IncompatiblePayloadError,
    TemporalUnavailableError,
    from_validation_error,
    to_application_error,
)
from fleetway.activities.wire import sent_by_a_client
from fleetway.worker.config.settings import TemporalConfig

__all__ = ["DATA_CONVERTER", "connect", "has_pollers"]


class _NamedErrorsPayloadConverter(PydanticPayloadConverter):
    """The pydantic converter, telling a client's bad input from a payload of another worker build.

    A client's input its model refuses (a workflow started by the ``temporal`` CLI with a misspelt
    field, a bad approval) fails that workflow (or update) at once, as one named, non-retryable
    error: otherwise it would sit RUNNING forever, its first task retrying "Failed decoding
    arguments". Anything else that cannot be decoded was written by another worker build (a
    rolling deploy): it fails only the task (or the activity attempt), which Temporal retries until
    a worker that understands it takes it. A deploy never fails a running rollout.
    """

    def from_payloads(self, payloads: Sequence[Payload], type_hints: list[type] | None = None) -> list[Any]:
        try:
            return super().from_payloads(payloads, type_hints)
        except ValidationError as exc:
            named = from_validation_error(exc)
            if any(
                sent_by_a_client(hint, _json(payload))
                for payload, hint in zip(payloads, type_hints or [], strict=False)
            ):
                raise to_application_error(named) from None
            raise IncompatiblePayloadError(
                f"a payload this worker cannot read, left for a worker that can ({named})"
            ) from None


def _json(payload: Payload) -> Any:
    try:
        return json.loads(payload.data)
    except ValueError:
        return None


DATA_CONVERTER = DataConverter(payload_converter_class=_NamedErrorsPayloadConverter)
"""Every client, worker and test uses this converter (pydantic models as plain JSON)."""


@functools.cache
def _runtime() -> Runtime:
    """The process's Temporal runtime, its core logs forwarded to Python logging.

    The core otherwise prints its warnings (``WARN temporalio_client::retry …`` when the server
    goes away) on stdout, where ``-o json``/``ndjson`` promise nothing but JSON. Forwarded, they go
    wherever logging goes: stderr, configured once per process in ``worker/``.
    """
    forwarding = LogForwardingConfig(logger=logging.getLogger("temporalio.core"))
    logging_config = LoggingConfig(
        filter=TelemetryFilter(core_level="WARN", other_level="ERROR"), forwarding=forwarding
    )
    return Runtime(telemetry=TelemetryConfig(logging=logging_config))


async def connect(config: TemporalConfig) -> Client:
    """Connect with the pydantic converter and the OpenTelemetry tracing interceptor.

    Interceptors set on the client flow to workers built from it, so one trace spans a rollout,
    its children and their activities.
    """
    tls: TLSConfig | bool = config.tls or config.api_key is not None  # Temporal Cloud API keys need TLS
    if config.tls_client_cert or config.tls_server_ca:
        tls = TLSConfig(
            client_cert=config.tls_client_cert.read_bytes() if config.tls_client_cert else None,
            client_private_key=config.tls_client_key.read_bytes() if config.tls_client_key else None,
            server_root_ca_cert=config.tls_server_ca.read_bytes() if config.tls_server_ca else None,
        )
    try:
        return await Client.connect(
            config.address,
            namespace=config.namespace,
            data_converter=DATA_CONVERTER,
            interceptors=[TracingInterceptor()],
            api_key=config.api_key.get_secret_value() if config.api_key else None,
            tls=tls,
            runtime=_runtime(),
        )
    except RuntimeError as exc:  # the Rust core's "Failed client connect: …" (a transport error)
        reason = "connection refused" if "Connection refused" in str(exc) else "no answer"
        raise TemporalUnavailableError(
            f"cannot reach Temporal at {config.address} ({reason}); set temporal.address "
            "(FLEETWAY_TEMPORAL__ADDRESS or TEMPORAL_ADDRESS)"
        ) from None


async def has_pollers(client: Client, task_queue: str) -> bool:
    """Whether some worker polled ``task_queue`` for workflow tasks lately (the server's view).

    A rollout started where no worker listens just waits; saying so beats a silent, stuck CLI.
    An error answers True: this is a hint, never a reason to fail a command.
    """
    try:
        response = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=client.namespace,
                task_queue=TaskQueue(name=task_queue),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            )
        )
    except RPCError:
        return True
    return bool(response.pollers)
