"""The worker: the single place where every workflow and activity is registered and wired.

Dependencies are built here from settings and passed into activity class constructors.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path

from temporalio.client import Client
from temporalio.worker import Interceptor, Worker

from fleetway.activities.audit.events import AuditActivities, Emitter
from fleetway.activities.backend_identity import describe
from fleetway.activities.errors import AuditSinkError, FlywayInstallMissingError, QuiesceBackendError
from fleetway.activities.fleet.activity import FleetStateActivities
from fleetway.activities.flyway.activity import FlywayActivities
from fleetway.activities.flyway.attempts import AttemptReporter
from fleetway.activities.flyway.contract import FlywayInstall, FlywaySettings
from fleetway.activities.flyway.jvm_engine import start_jvm
from fleetway.activities.flyway.routing import engine_for
from fleetway.activities.flyway.schema_history import SchemaHistoryActivities
from fleetway.activities.quiesce import QuiesceActivities, QuiesceController
from fleetway.activities.rollouts import RolloutActivities
from fleetway.activities.secrets.providers import SecretsProvider
from fleetway.activities.servers.activity import ServerActivities
from fleetway.activities.tenants.label_lookup import LabelLookup
from fleetway.activities.tenants.static import TenantLister, TenantSourceActivities
from fleetway.activities.tenants.wave_book import WaveBookActivities
from fleetway.activities.tenants.waves import WavePlanActivities
from fleetway.activities.worker_profile import WorkerProfile, WorkerProfileActivities
from fleetway.worker.config.backends import (
    audit_emitter,
    migration_sets,
    provisioning_activities,
    quiesce_controller,
    secrets_provider,
    tenant_lister,
)
from fleetway.worker.config.client import connect
from fleetway.worker.config.settings import Settings
from fleetway.worker.process.search_attributes import ensure_search_attributes
from fleetway.worker.process.serve import serve
from fleetway.worker.process.versioning import deployment_config
from fleetway.workflows.describe_fleet import DescribeFleetWorkflow
from fleetway.workflows.fleet_state import FleetStateWorkflow
from fleetway.workflows.migrate_all import MigrateAllWorkflow
from fleetway.workflows.provision_tenant import DeprovisionTenantWorkflow, ProvisionTenantWorkflow
from fleetway.workflows.tenant_migration import TenantMigrationWorkflow, TenantToolboxWorkflow
from fleetway.workflows.wave_plan import AutoUpgradingWavePlanWorkflow, WavePlanWorkflow

__all__ = ["build_worker", "run_worker"]

_log = logging.getLogger(__name__)


def _flyway_install(settings: Settings) -> FlywayInstall:
    """The Flyway the settings name; a worker never fetches one (the image or ``./dev setup`` does).

    Raises:
        FlywayInstallMissingError: ``flyway.lib_dir`` is unset.
    """
    if settings.flyway.lib_dir is None:
        raise FlywayInstallMissingError(
            "no Flyway jars configured; set FLEETWAY_FLYWAY__LIB_DIR to the folder "
            "of the pinned jar set (the image sets it; `./dev setup` fetches one into .fleetway/)"
        )
    return FlywayInstall(lib_dir=settings.flyway.lib_dir, java=Path(settings.flyway.java), version="custom")


def build_worker(
    client: Client,
    settings: Settings,
    *,
    secrets: Mapping[str, SecretsProvider] | None = None,
    tenant_sources: Mapping[str, TenantLister] | None = None,
    quiesce: QuiesceController | None = None,
    flyway_install: FlywayInstall | None = None,
    emitter: Emitter | None = None,
    interceptors: Sequence[Interceptor] = (),
) -> Worker:
    """A worker for ``settings.temporal.task_queue`` with every workflow and activity registered.

    Keyword arguments replace what settings would build (tests and embedding applications).

    Raises:
        MigrationSetInvalidError: the worker's migrations folder is missing, unreadable or empty
            (and no set store is configured): refused at start, not reported per tenant.
    """
    sets = migration_sets(settings)
    install = flyway_install or _flyway_install(settings)
    flyway_settings = FlywaySettings(
        timeout=timedelta(seconds=settings.flyway.timeout_s),
        lock_retry_count=settings.flyway.lock_retry_count,
        lock_timeout=timedelta(seconds=settings.flyway.lock_timeout_s),
    )
    runner = engine_for(
        settings.flyway.engine, install, flyway_settings,
        max_threads=settings.worker.max_concurrent_activities + 4,
        jvm_options=tuple(settings.flyway.jvm_options),
    )  # fmt: skip
    secrets = secrets or {"default": secrets_provider(settings)}
    tenant_sources = tenant_sources or {"default": tenant_lister(settings)}
    labels = LabelLookup(tenant_sources)
    flyway = FlywayActivities(
        runner,
        secrets,
        sets=sets,
        labels=labels,
        max_local_runs=settings.worker.max_concurrent_activities,
        attempts=AttemptReporter(client),
    )
    history = SchemaHistoryActivities(secrets)
    sources = TenantSourceActivities(tenant_sources)
    plans = WavePlanActivities(tenant_sources)
    book = WaveBookActivities(plans)
    task_queue = settings.effective_temporal().task_queue
    profile = WorkerProfile(
        task_queue=task_queue,
        identity=client.identity,
        engine=settings.flyway.engine,
        tenant_source=describe(tenant_sources["default"]),
        secrets_backend=describe(secrets["default"]),
    )
    store = quiesce or quiesce_controller(settings)
    quiesce_activities = QuiesceActivities(store)
    audit = AuditActivities(emitter or Emitter())
    profiles = WorkerProfileActivities(profile, sets, sources=tenant_sources, secrets=secrets, quiesce=store)
    provisioning = provisioning_activities(settings, secrets)
    rollouts = RolloutActivities(client)
    fleet = FleetStateActivities(secrets, sets, tenant_sources, labels=labels)
    servers = ServerActivities(secrets)
    versioning = deployment_config(settings.worker)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[
            MigrateAllWorkflow,
            DescribeFleetWorkflow,
            FleetStateWorkflow,
            TenantMigrationWorkflow,
            TenantToolboxWorkflow,
            ProvisionTenantWorkflow,
            DeprovisionTenantWorkflow,
            WavePlanWorkflow if versioning is None else AutoUpgradingWavePlanWorkflow,
        ],
        activities=[
            flyway.run_flyway,
            flyway.run_flyway_with_options,
            history.read_schema_history,
            sources.list_tenants_page,
            plans.plan_waves,
            book.plan_wave_summary,
            book.plan_wave_chunk,
            quiesce_activities.check_quiesce,
            audit.emit_audit,
            rollouts.failed_tenants_of,
            rollouts.history_marker_of,
            rollouts.read_wave_plan,
            rollouts.rollout_is_open,
            fleet.read_tenant_states,
            fleet.read_fleet,
            servers.server_keys,
            servers.check_server,
            profiles.pin_rollout,
            profiles.describe_worker,
            provisioning.create_schema,
            provisioning.create_roles,
            provisioning.seed,
            provisioning.cleanup,
            provisioning.deprovision,
        ],
        max_concurrent_activities=settings.worker.max_concurrent_activities,
        interceptors=interceptors,
        graceful_shutdown_timeout=timedelta(seconds=settings.worker.graceful_shutdown_s),
        max_heartbeat_throttle_interval=timedelta(seconds=settings.worker.heartbeat_flush_s),
        deployment_config=versioning,
    )


async def run_worker(settings: Settings) -> None:
    """Run until SIGTERM/SIGINT, then shut down gracefully (in-flight activities get to finish).

    Raises:
        MigrationSetInvalidError: the migrations folder is unusable (before connecting to Temporal).
        FlywayInstallMissingError: ``flyway.lib_dir`` is unset (before connecting to Temporal).
        SearchAttributesMissingError: the namespace lacks fleetway's search attributes and refused
            to register them.
        WorkerFailedError: the worker failed again and again soon after each rebuild.
        AuditNotWritableError: the audit sink's table is missing or its login may not insert.
        QuiesceStoreNotWritableError: the quiesce table is missing or its login may not read it.
    """
    migration_sets(settings)  # a worker that would apply nothing must not start, let alone poll
    install = _flyway_install(settings)
    client = await connect(settings.effective_temporal())
    await ensure_search_attributes(client)  # a rollout would otherwise fail its first task forever
    emitter = audit_emitter(settings)
    # What this worker writes and reads outside the tenants, checked now and named: a sink it may
    # not write, a quiesce table it may not read, would otherwise fail each tenant in turn.
    quiesce = quiesce_controller(settings)
    try:
        await asyncio.to_thread(emitter.verify)
    except AuditSinkError:  # unreachable now (a blip): events are retried then; a grant is not
        _log.warning("audit sink unreachable at start; events will be retried")
    try:
        await quiesce.status()
    except QuiesceBackendError:
        _log.warning("quiesce store unreachable at start; checks fail open until it answers")
    worker = build_worker(client, settings, emitter=emitter, flyway_install=install, quiesce=quiesce)
    if settings.flyway.engine != "cli":
        # Pay the JVM start (and Flyway's class loading) before polling, not in the first tenant.
        await asyncio.to_thread(start_jvm, install, tuple(settings.flyway.jvm_options))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if settings.quiesce.dsn is None:
        _log.warning("no quiesce store (quiesce.dsn unset): the deployment flag cannot reach this worker")
    _log.info("worker started", extra={"task_queue": settings.effective_temporal().task_queue})
    try:
        await serve(worker, stop)  # a fatal poll error (a restarting Temporal server) rebuilds it
        _log.info("worker stopped")
    finally:  # giving up too: events already accepted still reach the sink
        if not await asyncio.to_thread(emitter.close, settings.audit.close_timeout_s):
            _log.warning("audit sink did not drain within %ss", settings.audit.close_timeout_s)
