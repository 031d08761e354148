"""OpenTelemetry for fleetway processes, configured only by the standard ``OTEL_*`` variables.

Nothing is exported unless asked: an OTLP/HTTP exporter when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or the
per-signal ``..._TRACES_/..._METRICS_ENDPOINT``) is set or ``OTEL_TRACES_EXPORTER=otlp``; a console
exporter with ``OTEL_TRACES_EXPORTER=console``; ``OTEL_SDK_DISABLED=true`` turns everything off. The
exporter itself reads the rest (headers, protocol details, timeouts), and ``OTEL_SERVICE_NAME`` /
``OTEL_RESOURCE_ATTRIBUTES`` name the process. Temporal's ``TracingInterceptor`` (installed by
``worker/client.py``) makes one trace of a rollout, its children and their activities.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

__all__ = ["configure_telemetry", "wants_export"]


def _exporter_choice(env: Mapping[str, str], signal: str) -> str:
    explicit = env.get(f"OTEL_{signal}_EXPORTER", "").strip().lower()
    if explicit:
        return explicit
    if env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT"):
        return "otlp"
    return "none"


def wants_export(env: Mapping[str, str] | None = None) -> tuple[str, str]:
    """The (traces, metrics) exporter the environment asks for: ``otlp``, ``console`` or ``none``."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return "none", "none"
    return _exporter_choice(env, "TRACES"), _exporter_choice(env, "METRICS")


def configure_telemetry(service_name: str) -> Callable[[], None]:
    """Install global tracer/meter providers as the environment asks; return a flush-and-shutdown.

    Call once per process, before the Temporal client is built.
    """
    traces, metric_kind = wants_export()
    if traces == "none" and metric_kind == "none":
        return lambda: None
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name)})
    shutdowns: list[Callable[[], object]] = []
    if traces in {"otlp", "console"}:
        exporter: SpanExporter
        if traces == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: PLC0415

            exporter = OTLPSpanExporter()
        else:
            exporter = ConsoleSpanExporter()
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(BatchSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        shutdowns.append(provider.shutdown)
    if metric_kind == "otlp":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter  # noqa: PLC0415

        reader: MetricReader = PeriodicExportingMetricReader(OTLPMetricExporter())
        meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
        metrics.set_meter_provider(meter_provider)
        shutdowns.append(meter_provider.shutdown)

    def shutdown() -> None:
        for step in shutdowns:
            step()

    return shutdown
