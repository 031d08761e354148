"""The one way every process (CLI, worker, tests) builds its Temporal client."""

from __future__ import annotations

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client, TLSConfig
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError

from worker.settings import TemporalConfig

__all__ = ["connect", "has_pollers"]


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
    return await Client.connect(
        config.address,
        namespace=config.namespace,
        data_converter=pydantic_data_converter,
        interceptors=[TracingInterceptor()],
        api_key=config.api_key.get_secret_value() if config.api_key else None,
        tls=tls,
    )


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
