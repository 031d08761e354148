"""Running the real Flyway CLI against one target, and the ``run_flyway`` activity over it.

The runner owns the subprocess contract: credentials only in the child's environment, a scratch
working directory and HOME (no stray ``flyway.conf``/``flyway.toml``), its own process group,
a time budget, and a kill of the whole group on timeout or cancellation. Output is redacted
before it is parsed, logged or returned. Must not: put a credential in argv, a log or a result.

Nothing of a run outlives the worker. The JVM is started with a parent-death signal
(``PR_SET_PDEATHSIG`` = SIGKILL, armed by util-linux ``setpriv --pdeathsig KILL``, which then
execs the JVM in the same process), so the kernel kills it the moment the worker dies, by any
signal, SIGKILL included. Chosen over a supervising pipe because it needs no helper process and
no cooperation from the JVM, and it cannot be missed: the kernel delivers it. (It fires when the
*thread* that forked dies; that is the event loop's thread, which lives as long as the worker.)
Not a ``preexec_fn``: Python code between fork and exec can deadlock in a threaded process.
The run's statements are then ended by PostgreSQL itself
(``client_connection_check_interval``, see ``activities/flyway/session.py``); on a timeout or a
cancel the runner also cancels them explicitly after killing the process group.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final, Protocol

from pydantic import BaseModel, Field
from temporalio import activity

from activities.database_target import (
    DatabaseTarget,
    Vendor,
    check_pg_identifier,
    flyway_environment,
)
from activities.errors import (
    ConfigurationError,
    FleetwayError,
    FlywayError,
    FlywayOutputUnparsedError,
    FlywayReportedFailureError,
    FlywayTimeoutError,
    PasswordTooShortError,
    to_application_error,
)
from activities.flyway.output import (
    RETRYABLE_CLASSES,
    Action,
    ErrorClass,
    FlywayOutcome,
    find_flyway_document,
    outcome_from_document,
)
from activities.flyway.schema_history import check_history_marker
from activities.flyway.session import DEFAULT_LOCK_TIMEOUT_MS, RunSessions
from activities.redaction import MIN_REDACTABLE_LENGTH, redact
from activities.secrets.providers import SecretsProvider, provider_for, validate_tenant_id
from activities.sets.store import MigrationSets
from activities.wire import WIRE_MODEL

__all__ = [
    "DEVELOPMENT_ENVIRONMENTS",
    "POSTGRESQL_SESSION_LOCK",
    "FlywayActivities",
    "FlywayEngine",
    "FlywayInstall",
    "FlywayRunner",
    "FlywaySettings",
    "RunFlywayInput",
    "check_locations",
    "check_runnable",
    "interpret_output",
    "run_migrations_at_startup",
]

_log = logging.getLogger(__name__)

DEVELOPMENT_ENVIRONMENTS: Final = frozenset({"development", "dev", "local"})
_MAIN_CLASS: Final = "org.flywaydb.commandline.Main"
# Flyway's PostgreSQL default (a transactional advisory lock) runs each script on one connection
# and writes its history row on another, committed separately (flyway/flyway#3492): a worker
# killed between the two commits left a script applied without its row, and the retry failed
# "already exists". The lock connection's open transaction also makes CREATE INDEX CONCURRENTLY
# wait forever (flyway/flyway#3508). The session lock keeps script and row on one connection and
# in one commit; both engines pass it (tests/activities/test_flyway.py proves both effects).
# One (key, value) for both engines: the CLI takes ``-<key>=<value>``, the Java API ``flyway.<key>``.
POSTGRESQL_SESSION_LOCK: Final = ("postgresql.transactional.lock", "false")
# Bounds the wait for a killed JVM to be reaped; deliberately not derived from the run timeout.
_KILL_GRACE_S: Final = 10.0
_AUTH_SQLSTATE_PREFIX: Final = "28"


def _with_parent_death_signal(argv: Sequence[str]) -> list[str]:
    """``argv`` run through util-linux ``setpriv --pdeathsig KILL`` (see the module docstring).

    setpriv arms the signal and execs Flyway's JVM in the same process, so no Python code runs
    between fork and exec (a ``preexec_fn`` can deadlock in a process with other threads, such as
    a worker's JVM threads: seen in CI). Without setpriv (not Linux), argv is returned unchanged.

    The signal only covers a parent that dies *after* it is armed. A worker killed between the fork
    and setpriv's ``prctl`` would leave an unarmed JVM running its whole migration (seen once in CI:
    a Flyway process outlived its worker by 1.8 s). So after arming, a shell checks that its parent
    is still this worker (a dead parent means the child was re-parented) before exec'ing the JVM;
    the check runs after ``prctl``, so no death can fall between the two.
    """
    if not _SETPRIV:
        return list(argv)
    guard = 'test "$PPID" = "$0" || exit 137; exec "$@"'
    return [_SETPRIV, "--pdeathsig", "KILL", "--", "/bin/sh", "-c", guard, str(os.getpid()), *argv]


_SETPRIV: Final = shutil.which("setpriv") if sys.platform.startswith("linux") else None


@dataclass(frozen=True)
class FlywayInstall:
    """Where the pinned Flyway jars are and which Java runs them.

    ``jvm_options`` trade peak JIT for start-up: a Flyway run is short-lived, so C1-only
    compilation and the serial collector start faster and use less memory on 2 cores.
    """

    lib_dir: Path
    java: Path
    version: str
    jvm_options: tuple[str, ...] = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xshare:auto")


@dataclass(frozen=True)
class FlywaySettings:
    """How every run is configured (the same for all tenants of a worker).

    Attributes:
        locations: absolute folders holding the versioned SQL scripts, used by runs that name
            none (a worker's runs always name their set's snapshot; see ``activities/sets/store.py``).
        timeout: budget for one Flyway run that names none; past it the run is stopped.
        lock_retry_count: seconds Flyway waits for another runner's advisory lock.
        connect_retries: Flyway's own connection retries (0: let Temporal retry instead).
        lock_timeout: how long one statement may wait for a table lock (PostgreSQL
            ``lock_timeout``); past it the statement fails (``lock_timeout``, retried) instead of
            queueing the application's queries behind it.
    """

    locations: tuple[Path, ...] = ()
    timeout: timedelta = timedelta(minutes=5)
    lock_retry_count: int = 50
    connect_retries: int = 0
    lock_timeout: timedelta = timedelta(milliseconds=DEFAULT_LOCK_TIMEOUT_MS)

    def sessions(self, timeout: timedelta | None = None) -> RunSessions:
        """The sessions of one run: its budget (``timeout``, or these settings'), this lock timeout."""
        budget = timeout or self.timeout
        return RunSessions(
            budget.total_seconds(), lock_timeout_ms=int(self.lock_timeout.total_seconds() * 1000)
        )


class FlywayRunner:
    """Runs ``migrate``, ``validate`` or ``info`` for one target through the real Flyway CLI."""

    def __init__(self, install: FlywayInstall, settings: FlywaySettings) -> None:
        if settings.locations:  # empty: every run names its own (a worker's migration sets)
            check_locations(settings.locations)
        self._install = install
        self._settings = settings

    def argv(
        self, action: Action, target: DatabaseTarget, *, locations: tuple[Path, ...] | None = None
    ) -> list[str]:
        """The full command line for a run: no credential, only vetted identifiers and paths.

        Raises:
            UnsafeIdentifierError: the target's schema name is not a safe identifier.
            ConfigurationError: a location is relative or holds a comma.
        """
        s = self._settings
        folders = check_locations(locations if locations is not None else s.locations)
        args = [
            str(self._install.java), *self._install.jvm_options,
            "-cp", f"{self._install.lib_dir}/*", _MAIN_CLASS,
            "-outputType=json", "-skipCheckForUpdate", "-validateMigrationNaming=true",
            "-cleanDisabled=true", f"-connectRetries={s.connect_retries}",
            f"-lockRetryCount={s.lock_retry_count}",
            "-failOnMissingLocations=true",
            "-locations=" + ",".join(f"filesystem:{p}" for p in folders),
        ]  # fmt: skip
        if target.vendor is Vendor.POSTGRESQL:
            key, value = POSTGRESQL_SESSION_LOCK
            args.append(f"-{key}={value}")
            if target.schema_name:
                schema = check_pg_identifier(target.schema_name, field="schema")
                args += [f"-schemas={schema}", f"-defaultSchema={schema}"]
        if action is Action.VALIDATE:
            # Validate asks "are the applied scripts intact?"; a lagging tenant is not invalid
            # (info reports its pending versions), a tenant ahead is reported by info too.
            args.append("-ignoreMigrationPatterns=*:pending,*:future")
        args.append(action.value)
        return args

    async def run(
        self,
        action: Action,
        target: DatabaseTarget,
        *,
        installed_by: str = "",
        locations: tuple[Path, ...] | None = None,
        timeout: timedelta | None = None,
    ) -> FlywayOutcome:
        """Run one Flyway verb against ``target`` and return its parsed, successful outcome.

        ``installed_by``: recorded in ``flyway_schema_history.installed_by`` for every script this
        run applies (a rollout's marker; default: the database user). ``locations``: the folders
        of this run's migration set (default: the settings' folders). ``timeout``: this run's
        budget (default: the settings'); a rollout passes its own, so one value bounds both the
        run and the activity around it.

        Raises:
            PasswordTooShortError: migrate with a non-empty password under 8 bytes (nothing ran).
            UnsafeEnvValueError: CR/LF/NUL in a connection field (nothing ran).
            UnsafeIdentifierError: unsafe schema name (nothing ran).
            FlywayTimeoutError: the budget ran out; the process group was killed.
            FlywayOutputUnparsedError: no Flyway JSON document in the output.
            FlywayReportedFailureError: Flyway reported a failure; ``outcome`` holds what it did.
            asyncio.CancelledError: cancelled; the process group was killed first.
        """
        password = target.password.get_secret_value()
        env = check_runnable(action, target, installed_by=installed_by)
        sessions = self._settings.sessions(timeout)
        budget = timedelta(seconds=sessions.budget_s)
        env["FLYWAY_URL"] = sessions.jdbc_url(env["FLYWAY_URL"], target)
        argv = self.argv(action, target, locations=locations)
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="fleetway-flyway-") as scratch:
            env.update({"HOME": scratch, "PATH": os.defpath, "LANG": "C.UTF-8"})
            returncode, raw = await self._execute(
                argv, env, cwd=scratch, sessions=sessions, target=target, budget=budget
            )
        output = redact(raw, password)
        elapsed_ms = int((time.monotonic() - started) * 1000)
        return interpret_output(action, output, returncode=returncode, elapsed_ms=elapsed_ms)

    async def _execute(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        *,
        cwd: str,
        sessions: RunSessions,
        target: DatabaseTarget,
        budget: timedelta,
    ) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            *_with_parent_death_signal(argv),
            cwd=cwd,
            env=dict(env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # launcher and JVM share a group we can kill as one
        )
        communicate = asyncio.ensure_future(proc.communicate())
        deadline = time.monotonic() + budget.total_seconds()
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    await self._stop(proc, communicate, sessions, target)
                    raise FlywayTimeoutError(
                        f"flyway timed out after {budget.total_seconds():.0f}s and its "
                        "process group was killed; schema state is unknown (a partially applied "
                        "migration is possible)",
                        error_class=ErrorClass.INTERNAL_ERROR,
                    )
                done, _ = await asyncio.wait({communicate}, timeout=remaining)
                if done:
                    stdout, _ = communicate.result()
                    return proc.returncode if proc.returncode is not None else -1, stdout.decode(
                        "utf-8", errors="replace"
                    )
        except asyncio.CancelledError:
            await asyncio.shield(self._stop(proc, communicate, sessions, target))
            _log.warning("flyway cancelled; process group killed, statements cancelled")
            raise

    async def _stop(  # kill the JVM first: a cancelled statement must not be followed by the next
        self,
        proc: asyncio.subprocess.Process,
        communicate: asyncio.Future[tuple[bytes, bytes]],
        sessions: RunSessions,
        target: DatabaseTarget,
    ) -> None:
        await self._kill_group(proc, communicate)
        await sessions.terminate(target)

    @staticmethod
    async def _kill_group(
        proc: asyncio.subprocess.Process, communicate: asyncio.Future[tuple[bytes, bytes]]
    ) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(proc.wait(), _KILL_GRACE_S)
        communicate.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await communicate


class FlywayEngine(Protocol):
    """How Flyway runs: one CLI process per run, or one in-process JVM per worker.

    :class:`FlywayRunner` and ``activities/flyway/jvm.py`` take the same inputs, return the same
    outcomes and raise the same errors; the engine tests run against both.
    """

    async def run(
        self,
        action: Action,
        target: DatabaseTarget,
        *,
        installed_by: str = "",
        locations: tuple[Path, ...] | None = None,
        timeout: timedelta | None = None,
    ) -> FlywayOutcome:
        """Run one verb against ``target`` (see :meth:`FlywayRunner.run` for the contract)."""
        ...


def check_locations(locations: tuple[Path, ...]) -> tuple[Path, ...]:
    """The folders Flyway may read, vetted the same way for both engines.

    Flyway splits ``locations`` on commas (the CLI on its flag, the API on each string), so a
    comma in a folder name would silently turn one folder into two. Both engines also pass
    ``failOnMissingLocations``: a folder that vanished fails the run instead of applying nothing.

    Raises:
        ConfigurationError: no folder, or a folder is relative or holds a comma.
    """
    if not locations:
        raise ConfigurationError("no flyway location given")
    for location in locations:
        if not location.is_absolute() or "," in str(location):
            raise ConfigurationError(f"flyway location {str(location)!r} must be absolute and comma-free")
    return locations


def check_runnable(action: Action, target: DatabaseTarget, *, installed_by: str = "") -> dict[str, str]:
    """The checks every engine makes before Flyway runs; returns the ``FLYWAY_*`` connection fields.

    Raises:
        PasswordTooShortError: migrate with a non-empty password under 8 bytes.
        UnsafeEnvValueError: CR/LF/NUL in a connection field.
        UnsafeIdentifierError: unsafe schema name or ``installed_by`` marker.
    """
    password = target.password.get_secret_value()
    if action is Action.MIGRATE and password and len(password.encode()) < MIN_REDACTABLE_LENGTH:
        raise PasswordTooShortError(
            f"password is shorter than {MIN_REDACTABLE_LENGTH} bytes; refusing to migrate"
        )
    env = flyway_environment(target)
    if installed_by:
        env["FLYWAY_INSTALLED_BY"] = check_history_marker(installed_by)
    return env


def interpret_output(action: Action, output: str, *, returncode: int, elapsed_ms: int) -> FlywayOutcome:
    """Turn Flyway's (already redacted) output into a successful outcome, or raise the failure.

    Shared by both engines so they return the same results and the same error classes. A success
    document with a non-zero exit code (or, in process, an engine-level failure) is not trusted.

    Raises:
        FlywayOutputUnparsedError: no Flyway JSON document in the output.
        FlywayReportedFailureError: Flyway reported a failure; ``outcome`` holds what it did.
    """
    document = find_flyway_document(output)
    if document is None:
        _log.warning(
            "flyway output unparsed",
            extra={"action": action.value, "exit_code": returncode, "output_tail": output[-2000:]},
        )
        raise FlywayOutputUnparsedError(
            f"flyway {action.value} exited {returncode} without a JSON result",
            error_class=ErrorClass.INTERNAL_ERROR,
        )
    outcome = outcome_from_document(action, document)
    if outcome.success and returncode != 0:
        outcome = outcome.model_copy(
            update={"success": False, "error_class": ErrorClass.INTERNAL_ERROR,
                    "detail": f"flyway exited {returncode} despite a success document"}
        )  # fmt: skip
    if not outcome.success:
        error_class = outcome.error_class or ErrorClass.INTERNAL_ERROR
        _log.warning(
            "flyway reported failure",
            extra={"action": action.value, "error_class": error_class.value,
                   "error_code": outcome.error_code, "output_tail": output[-4000:]},
        )  # fmt: skip
        said = f": {outcome.db_message}" if outcome.db_message else ""
        raise FlywayReportedFailureError(
            f"flyway {action.value} failed: {error_class.value}: {outcome.detail}{said}",
            error_class=error_class,
            retryable=error_class in RETRYABLE_CLASSES,
            outcome=outcome,
        )
    return outcome.model_copy(update={"duration_ms": outcome.duration_ms or elapsed_ms})


async def run_migrations_at_startup(
    runner: FlywayEngine, target: DatabaseTarget, *, environment: str
) -> FlywayOutcome:
    """For applications: migrate in development; elsewhere validate and require no pending version.

    ``environment`` is matched trimmed and case-insensitively against ``development``, ``dev``
    and ``local``. Production must not change its schema as a side effect of starting up, and
    must not start against a schema older than its code: outside development a pending version
    fails as ``target_not_ready`` (fleet validation, by contrast, tolerates lagging tenants).

    Raises:
        FlywayReportedFailureError: validation failed, or versions are pending outside development.
        FleetwayError: as :meth:`FlywayRunner.run`.
    """
    if environment.strip().lower() in DEVELOPMENT_ENVIRONMENTS:
        _log.info("running migrations at startup", extra={"action": "migrate"})
        return await runner.run(Action.MIGRATE, target)
    _log.info("validating migrations at startup", extra={"action": "validate"})
    validated = await runner.run(Action.VALIDATE, target)
    info = await runner.run(Action.INFO, target)
    if info.pending_versions:
        raise FlywayReportedFailureError(
            f"{len(info.pending_versions)} migration(s) pending (first {info.pending_versions[0]}); "
            "migrate before starting outside development",
            error_class=ErrorClass.TARGET_NOT_READY,
            retryable=True,
            outcome=info.model_copy(update={"success": False, "error_class": ErrorClass.TARGET_NOT_READY}),
        )
    return validated


class RunFlywayInput(BaseModel):
    """Input of ``run_flyway``: which verb, for which tenant, resolved through which backend.

    Only references: the activity resolves the credentials itself.

    Attributes:
        installed_by: the rollout's history marker, recorded with every script applied.
        retry_budget_s: seconds since the first attempt was scheduled within which a retryable
            failure is left to Temporal to retry; past it the failure is final (0: no budget).
        migration_set: the digest of the set to run (``sha256:<hex>``); a worker that cannot
            produce exactly that set refuses, retryably, without running anything. Empty: the
            worker's own set (histories from before sets were named).
        pinned_secrets: the description of the secret backend the rollout pinned; a worker whose
            backend differs refuses retryably (``worker_config_mismatch``). "": none pinned.
        with_info: for validate, also run ``info`` in the same attempt and return its entries and
            pending versions with the validate outcome (also on a validate failure): the drift
            read without a second activity.
        timeout_s: the run's budget, the one the workflow sized the activity's timeout from (a
            rollout's ``flyway_timeout_s``), so the worker's default can never outlast it and get
            a healthy run retried into Flyway's lock; 0: the worker's ``flyway.timeout_s``.
    """

    model_config = WIRE_MODEL

    action: Action
    tenant_id: str = Field(min_length=1, max_length=128)
    secrets_backend: str = "default"
    installed_by: str = ""
    retry_budget_s: int = Field(default=0, ge=0)
    migration_set: str = ""
    pinned_secrets: str = ""
    with_info: bool = False
    timeout_s: int = Field(default=0, ge=0)


@contextlib.asynccontextmanager
async def _heartbeating() -> AsyncIterator[None]:
    """Heartbeat at a third of this activity's heartbeat timeout (at most every 2 s) meanwhile.

    The interval follows the timeout the workflow chose: a fixed interval at or above a short
    timeout (2 s is allowed) lets the server time a healthy run out and retry it. Heartbeats
    also carry cancellation to this activity, which the engines turn into killing Flyway.
    """
    timeout = activity.info().heartbeat_timeout
    interval = min(2.0, timeout.total_seconds() / 3) if timeout else 2.0

    async def beat() -> None:
        while True:  # the first beat after one interval: most runs end before it (no extra RPC)
            await asyncio.sleep(interval)
            activity.heartbeat()

    beating = asyncio.create_task(beat())
    try:
        yield
    finally:
        beating.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beating


class FlywayActivities:
    """The Flyway activity, bound to a runner, the worker's secret backends and its migration sets.

    Without ``sets`` (library use, tests of one engine) runs use the runner's own locations and
    report no set digest.
    """

    def __init__(
        self,
        runner: FlywayEngine,
        secrets: Mapping[str, SecretsProvider],
        *,
        sets: MigrationSets | None = None,
    ) -> None:
        self._runner = runner
        self._secrets = dict(secrets)
        self._sets = sets

    @activity.defn(name="run_flyway")
    async def run_flyway(self, request: RunFlywayInput) -> FlywayOutcome:
        """Resolve the tenant's target, run Flyway, heartbeat throughout, map errors.

        The migration set is resolved first (a worker without it refuses before it touches the
        secret store or the database). A Flyway authentication failure invalidates the cached
        secret and retries once with a fresh read, so a rotated password is picked up mid-rollout.
        The outcome carries the attempt number and the set's digest: the workflow trusts a
        single first attempt's report and reads the schema history after any other.
        """
        info = activity.info()
        ran = ""
        try:
            tenant_id = validate_tenant_id(request.tenant_id)
            async with _heartbeating():
                locations: tuple[Path, ...] | None = None
                if self._sets is not None:
                    resolved = await (
                        self._sets.resolve(request.migration_set)
                        if request.migration_set
                        else self._sets.local()
                    )
                    ran, locations = resolved.digest, (resolved.path,)
                outcome = await self._run(request, tenant_id, locations)
        except FleetwayError as exc:  # the only conversion point; library code just raises
            if isinstance(exc, FlywayError) and exc.outcome is not None:
                exc.outcome = exc.outcome.model_copy(update={"attempt": info.attempt, "migration_set": ran})
            raise to_application_error(exc, final_reason=_budget_spent(request, info)) from None
        return outcome.model_copy(update={"attempt": info.attempt, "migration_set": ran})

    async def _validate_with_info(
        self, target: DatabaseTarget, locations: tuple[Path, ...] | None, timeout: timedelta | None
    ) -> FlywayOutcome:
        """Validate, then info on the same target: one attempt, one credential resolve.

        A validate failure still gets the info entries (the drift summary needs both); an info
        failure after a passed validate is the run's failure, as a second activity's would be.
        """
        try:
            validated = await self._runner.run(Action.VALIDATE, target, locations=locations, timeout=timeout)
        except FlywayReportedFailureError as exc:
            if exc.outcome is not None:
                with contextlib.suppress(FleetwayError):
                    exc.outcome = exc.outcome.model_copy(
                        update=await _info_fields(self._runner, target, locations)
                    )
            raise
        return validated.model_copy(update=await _info_fields(self._runner, target, locations))

    async def _run(
        self, request: RunFlywayInput, tenant_id: str, locations: tuple[Path, ...] | None
    ) -> FlywayOutcome:
        provider = provider_for(self._secrets, request.secrets_backend, pinned=request.pinned_secrets)
        timeout = timedelta(seconds=request.timeout_s) if request.timeout_s else None
        run = functools.partial(
            self._runner.run,
            request.action,
            installed_by=request.installed_by,
            locations=locations,
            timeout=timeout,
        )
        target = await provider.resolve(tenant_id)
        if request.with_info and request.action is Action.VALIDATE:
            return await self._validate_with_info(target, locations, timeout)
        try:
            return await run(target)
        except FlywayReportedFailureError as exc:
            if exc.outcome is None or not exc.outcome.sql_state.startswith(_AUTH_SQLSTATE_PREFIX):
                raise
            activity.logger.warning(
                "flyway authentication failed; re-reading secret", extra={"tenant_id": tenant_id}
            )
            provider.invalidate(tenant_id)
            return await run(await provider.resolve(tenant_id))


async def _info_fields(
    runner: FlywayEngine, target: DatabaseTarget, locations: tuple[Path, ...] | None
) -> dict[str, object]:
    """``info``'s entries and pending versions, for merging into a validate outcome."""
    info = await runner.run(Action.INFO, target, locations=locations)
    return {
        "info": info.info,
        "pending_versions": info.pending_versions,
        "ending_version": info.ending_version,
    }


def _budget_spent(request: RunFlywayInput, info: activity.Info) -> str:
    """Why a retryable failure is final now ("" while the tenant's retry budget lasts).

    The budget is time since the first attempt was scheduled, not a count: a 20 s outage costs
    the same whether it produced three refused connections or thirty.
    """
    if request.retry_budget_s <= 0:
        return ""
    elapsed = (datetime.now(UTC) - info.scheduled_time).total_seconds()
    if elapsed < request.retry_budget_s:
        return ""
    return f"retry budget of {request.retry_budget_s}s spent after {info.attempt} attempts"
