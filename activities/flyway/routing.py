"""Which engine runs a target: the worker's ``flyway.engine`` setting turned into one engine object."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from fleetway.activities.database_target import DatabaseTarget, Vendor
from fleetway.activities.flyway.cli_engine import FlywayRunner
from fleetway.activities.flyway.contract import FlywayEngine, FlywayInstall, FlywaySettings
from fleetway.activities.flyway.jvm_engine import JvmFlywayEngine
from fleetway.activities.flyway.output import Action, FlywayOutcome
from fleetway.activities.flyway.request import FlywayRequest

__all__ = ["EngineKind", "VendorRoutedEngine", "engine_for"]

EngineKind = Literal["auto", "cli", "jvm"]


def engine_for(
    kind: EngineKind,
    install: FlywayInstall,
    settings: FlywaySettings,
    *,
    max_threads: int,
    jvm_options: tuple[str, ...],
) -> FlywayEngine:
    """The engine a worker runs: ``cli`` (a process per run), ``jvm`` (one JVM) or ``auto`` (by vendor)."""
    cli = FlywayRunner(install, settings)
    if kind == "cli":
        return cli
    jvm = JvmFlywayEngine(install, settings, max_threads=max_threads, jvm_options=jvm_options)
    return jvm if kind == "jvm" else VendorRoutedEngine(jvm, cli)


class VendorRoutedEngine:
    """The ``auto`` engine: the JVM engine for PostgreSQL targets, the CLI engine for the rest.

    The JVM engine is the default for PostgreSQL (faster, and it passes the same fault tests);
    it does not speak Oracle, so Oracle targets of the same worker go through the CLI.
    """

    def __init__(self, jvm: JvmFlywayEngine, cli: FlywayEngine) -> None:
        self._jvm = jvm
        self._cli = cli

    def start(self) -> None:
        """Start the JVM engine's JVM now (see :meth:`JvmFlywayEngine.start`)."""
        self._jvm.start()

    async def run(
        self,
        request: FlywayRequest,
        target: DatabaseTarget,
        *,
        verb: Action | None = None,
        locations: tuple[Path, ...] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> FlywayOutcome:
        """Route to the engine for ``target``'s vendor (same contract as :meth:`FlywayRunner.run`)."""
        engine: FlywayEngine = self._jvm if target.vendor is Vendor.POSTGRESQL else self._cli
        return await engine.run(request, target, verb=verb, locations=locations, labels=labels)
