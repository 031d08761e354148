"""The in-process Flyway engine: one JVM per worker (JPype), Flyway's Java API in activity threads.

A CLI run pays a JVM start and Flyway's class loading every time (about 1 s); this engine pays it
once per worker. It builds the configuration the CLI engine passes on its command line and turns
Flyway's result (or exception) into the JSON document the CLI prints, read by the shared
``interpret_output``: outcomes and error classes are the CLI engine's by construction.

Flyway's Java API cannot be interrupted, and a JVM thread cannot be killed, so a cancelled or
timed-out run is stopped in two ways, each covering the other's gap: its sessions are terminated
(``pg_terminate_backend``: the statement under way fails, the script rolls back, every later
statement on that connection fails), and a Flyway callback refuses the next migration once the
run's stop flag is set (a connection opened after the terminate). The activity then waits a few
seconds for the thread, so "cancelled" is said after Flyway stopped. The same callback lifts
``lock_timeout`` for the length of a non-transactional migration (``CREATE INDEX CONCURRENTLY``).

Must not: log the password or put it anywhere but the Java ``dataSource`` call.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final, TypeVar, cast

from fleetway.activities.database_target import DatabaseTarget, Vendor
from fleetway.activities.errors import ConfigurationError, FlywayTimeoutError, PrerequisiteMissingError
from fleetway.activities.flyway.contract import (
    DEFAULT_JVM_OPTIONS,
    POSTGRESQL_SESSION_LOCK,
    FlywayInstall,
    FlywaySettings,
    check_locations,
    check_runnable,
    flyway_configuration,
    interpret_output,
)
from fleetway.activities.flyway.output import Action, ErrorClass, FlywayOutcome
from fleetway.activities.flyway.request import FlywayRequest
from fleetway.activities.flyway.session import RunSessions
from fleetway.activities.redaction import redact

__all__ = ["JvmFlywayEngine", "start_jvm"]

_log = logging.getLogger(__name__)

_CANCEL_WAIT_S: Final = 5.0
_Method = TypeVar("_Method", bound=Callable[..., Any])

_jvm_lock = threading.Lock()
_convert_lock = threading.Lock()  # see JvmFlywayEngine._call
_jvm_lib: Path | None = None


def start_jvm(install: FlywayInstall, options: tuple[str, ...] = DEFAULT_JVM_OPTIONS) -> None:
    """Start the process's one JVM with the pinned Flyway jars (idempotent; it cannot restart)."""
    global _jvm_lib  # noqa: PLW0603 - one JVM per process is a JPype fact, not a design choice
    with _jvm_lock:
        try:
            import jpype  # noqa: PLC0415 - only the JVM engine needs it
        except ImportError:
            raise PrerequisiteMissingError("the jvm engine needs jpype1 (pip install jpype1)") from None
        if jpype.isJVMStarted():
            if _jvm_lib is not None and _jvm_lib != install.lib_dir:
                raise ConfigurationError(
                    f"this process's JVM already runs Flyway from {_jvm_lib}; a JVM cannot be restarted"
                )
            return
        # -Xrs always: without it the JVM takes over SIGTERM/SIGINT for the whole process and
        # exits 143 at once, so a worker would skip its graceful drain (and the demo its cleanup).
        # No attach mechanism either: with -Xrs HotSpot opens /tmp/.java_pid<pid> at start, which a
        # killed or os._exit'ed worker leaves behind (hundreds were found in /tmp), and nothing may
        # attach to a process that holds tenant credentials.
        flags = tuple(options)
        for flag in ("-Xrs", "-XX:+DisableAttachMechanism"):
            flags = flags if flag in flags else (*flags, flag)
        jpype.startJVM(*flags, classpath=[f"{install.lib_dir}/*"], convertStrings=False)
        level = jpype.JClass("java.util.logging.Level")
        # Flyway logs through java.util.logging here (no SLF4J on the classpath): keep warnings only;
        # results come back as documents, not log lines.
        jpype.JClass("java.util.logging.Logger").getLogger("").setLevel(level.WARNING)
        _jvm_lib = install.lib_dir


def _run_callback(stopped: threading.Event, lock_timeout_ms: int) -> Any:
    """The run's Flyway ``Callback`` (see :func:`_run_callback_class`); the JVM must be started."""
    import jpype  # noqa: PLC0415

    return _run_callback_class(jpype)(stopped, lock_timeout_ms)


@functools.cache
def _run_callback_class(jpype: Any) -> Any:
    """The callback class, defined once the JVM is up (JPype proxies need the Java interface).

    It does two things around each migration: refuses the next one once the run is stopped, and
    lifts ``lock_timeout`` for a migration Flyway runs outside a transaction (``CREATE INDEX
    CONCURRENTLY``): such a statement waits for every older transaction in the database, a wait
    that blocks nobody's queries but counts as a lock wait; under the 10 s timeout it would fail and
    leave an invalid index. The run's ``statement_timeout`` still bounds it; the timeout is back
    for the next migration, whose DDL may queue the application's queries behind it.
    """
    event = jpype.JClass("org.flywaydb.core.api.callback.Event")
    refusal = jpype.JClass("org.flywaydb.core.api.FlywayException")
    after = (event.AFTER_EACH_MIGRATE, event.AFTER_EACH_MIGRATE_ERROR)

    def override(method: _Method) -> _Method:  # JPype matches interface methods marked so
        return cast("_Method", jpype.JOverride(method))

    def set_lock_timeout(context: Any, ms: int) -> None:
        statement = context.getConnection().createStatement()
        try:
            statement.execute(f"SET lock_timeout = {int(ms)}")
        finally:
            statement.close()

    @jpype.JImplements("org.flywaydb.core.api.callback.Callback")
    class RunCallback:
        def __init__(self, stopped: threading.Event, lock_timeout_ms: int) -> None:
            self._stopped = stopped
            self._lock_timeout_ms = lock_timeout_ms
            self._lifted = False

        @override
        def supports(self, e: Any, context: Any) -> bool:
            return bool(e == event.BEFORE_EACH_MIGRATE or e in after)

        @override
        def canHandleInTransaction(self, e: Any, context: Any) -> bool:
            return True

        @override
        def handle(self, e: Any, context: Any) -> None:
            if e == event.BEFORE_EACH_MIGRATE:
                if self._stopped.is_set():
                    raise refusal("fleetway stopped this run (cancelled or timed out)")
                migration = context.getMigrationInfo()
                if migration is not None and not migration.canExecuteInTransaction():
                    set_lock_timeout(context, 0)
                    self._lifted = True
            elif self._lifted:
                set_lock_timeout(context, self._lock_timeout_ms)
                self._lifted = False

        @override
        def getCallbackName(self) -> str:
            return "fleetway-run"

    return RunCallback


class JvmFlywayEngine:
    """Runs Flyway through its Java API in this process (see the module docstring)."""

    def __init__(
        self,
        install: FlywayInstall,
        settings: FlywaySettings,
        *,
        max_threads: int = 16,
        jvm_options: tuple[str, ...] = DEFAULT_JVM_OPTIONS,
    ) -> None:
        if settings.locations:
            check_locations(settings.locations)
        self._install = install
        self._settings = settings
        self._options = jvm_options
        # Own threads: a run abandoned after cancellation must not starve asyncio's default executor.
        self._executor = ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="fleetway-flyway")

    def start(self) -> None:
        """Start the JVM now (otherwise the first run does); about 0.6 s once per process."""
        start_jvm(self._install, self._options)

    async def run(
        self,
        request: FlywayRequest,
        target: DatabaseTarget,
        *,
        verb: Action | None = None,
        locations: tuple[Path, ...] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> FlywayOutcome:
        """Same contract as :meth:`FlywayRunner.run`."""
        action, installed_by = verb or request.action, request.installed_by
        env = check_runnable(action, target, installed_by=installed_by)
        folders = check_locations(locations if locations is not None else self._settings.locations)
        if target.vendor is not Vendor.POSTGRESQL:
            raise ConfigurationError(
                "the jvm engine supports PostgreSQL targets; use the cli engine for Oracle"
            )
        password = target.password.get_secret_value()
        sessions = self._settings.sessions(request.timeout_s)
        budget = sessions.budget_s
        url = sessions.jdbc_url(env["FLYWAY_URL"], target)
        configured = {
            f"flyway.{key}": value
            for key, value in (
                POSTGRESQL_SESSION_LOCK,
                *flyway_configuration(action, request, target, labels).items(),
            )
        }
        stopped = threading.Event()
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        await loop.run_in_executor(self._executor, self.start)
        call = loop.run_in_executor(
            self._executor,
            functools.partial(
                self._call,
                action,
                url,
                target.user,
                password,
                target.schema_name,
                installed_by=installed_by,
                folders=folders,
                configured=configured,
                stopped=stopped,
                lock_timeout_ms=sessions.lock_timeout_ms,
            ),
        )
        deadline = started + budget
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    await self._stop(target, sessions, call, stopped)
                    raise FlywayTimeoutError(
                        f"flyway timed out after {budget:.0f}s and its sessions were ended; schema "
                        "state is unknown (a partially applied migration is possible)",
                        error_class=ErrorClass.INTERNAL_ERROR,
                    )
                done, _ = await asyncio.wait({call}, timeout=remaining)
                if done:
                    break
        except asyncio.CancelledError:
            await asyncio.shield(self._stop(target, sessions, call, stopped))
            _log.warning("flyway cancelled; its sessions were ended in PostgreSQL")
            raise
        raw, engine_error = call.result()
        output = redact(raw, password)
        elapsed_ms = int((time.monotonic() - started) * 1000)
        return interpret_output(action, output, returncode=1 if engine_error else 0, elapsed_ms=elapsed_ms)

    def _call(
        self,
        action: Action,
        url: str,
        user: str,
        password: str,
        schema: str,
        *,
        installed_by: str,
        folders: tuple[Path, ...],
        configured: dict[str, str],
        stopped: threading.Event,
        lock_timeout_ms: int,
    ) -> tuple[str, bool]:
        """In a worker thread: configure, run, and render the result as the CLI's JSON document.

        Returns the document and whether the engine itself failed (a non-Flyway exception).
        """
        import jpype  # noqa: PLC0415

        with _convert_lock:
            flyway_class = jpype.JClass("org.flywaydb.core.Flyway")
            json_utils = jpype.JClass("org.flywaydb.core.internal.util.JsonUtils")
            error_output = jpype.JClass("org.flywaydb.core.api.output.ErrorOutput")
            # Threads JPype attaches have no context class loader: name the loader Flyway scans with.
            loader = jpype.JClass("java.lang.ClassLoader").getSystemClassLoader()
        s = self._settings
        try:
            # JPype builds conversion hints lazily and not thread-safely (a SIGSEGV in
            # JPHintsConversion::matches): configure under a lock; Flyway's work runs outside it.
            with _convert_lock:
                config = (
                    flyway_class.configure(loader)
                    .configuration(configured)
                    .dataSource(url, user, password or None)
                    .locations(*[f"filesystem:{p}" for p in folders])
                    .failOnMissingLocations(True)
                    .validateMigrationNaming(True)
                    .cleanDisabled(True)
                    .connectRetries(s.connect_retries)
                    .lockRetryCount(s.lock_retry_count)
                    .callbacks(_run_callback(stopped, lock_timeout_ms))
                )
                if schema:
                    config = config.schemas(schema).defaultSchema(schema)
                if installed_by:
                    config = config.installedBy(installed_by)
                if action is Action.VALIDATE:
                    config = config.ignoreMigrationPatterns("*:pending", "*:future")
                flyway = config.load()
            if action is Action.MIGRATE:
                result: Any = flyway.migrate()
            elif action is Action.VALIDATE:
                result = flyway.validateWithResult()
            elif action is Action.BASELINE:
                result = flyway.baseline()
            elif action is Action.REPAIR:
                result = flyway.repair()
            else:
                result = flyway.info().getInfoResult()
            with _convert_lock:
                return str(json_utils.toJson(result)), False
        except jpype.JException as exc:
            with _convert_lock, contextlib.suppress(jpype.JException):
                return str(json_utils.toJson(error_output.toOperationResult(exc))), False
            return f"engine error: {exc.getClass().getName()}", True

    async def _stop(
        self,
        target: DatabaseTarget,
        sessions: RunSessions,
        call: asyncio.Future[Any],
        stopped: threading.Event,
    ) -> None:
        """Stop the run: flag it (no next script), end its sessions, then wait for its thread."""
        stopped.set()
        await sessions.terminate(target)
        try:
            await asyncio.wait_for(asyncio.shield(call), _CANCEL_WAIT_S)
        except TimeoutError:
            # Between the flag and the terminate, a connection opened meanwhile is ended by the
            # statement timeout at the latest; say so rather than pretend the thread is gone.
            _log.warning("a stopped flyway run has not returned yet; its next script is refused")
        except Exception:  # noqa: S110 - the run's own failure: it stopped, as asked
            pass
