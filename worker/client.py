"""The one way every process (CLI, worker, tests) builds its Temporal client."""

from __future__ import annotations

from temporalio.client import Client, TLSConfig
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.contrib.pydantic import pydantic_data_converter

from worker.settings import TemporalConfig

__all__ = ["connect"]


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
