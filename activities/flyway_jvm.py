"""The in-process Flyway engine: one JVM per worker (JPype), Flyway's Java API in activity threads.

Per-tenant CLI runs pay a JVM start and Flyway's class loading every time (about 1 s here); this
engine pays it once per worker. It builds the same configuration the CLI engine passes on its
command line, turns Flyway's result (or exception) into the same JSON document the CLI prints
(``JsonUtils.toJson`` / ``ErrorOutput.toOperationResult``), redacts it, and hands it to the shared
:func:`interpret_output` — so outcomes and error classes are the CLI engine's, by construction.

Timeouts and cancellation. Flyway's Java API cannot be interrupted mid-statement and a JVM thread
cannot be killed. Each run therefore connects with its own ``ApplicationName``
(``fleetway-<random>``), a server-side ``statement_timeout`` and a JDBC ``socketTimeout`` equal to
the run's budget. On cancellation or
timeout the engine asks PostgreSQL to cancel that run's backends (``pg_cancel_backend``, allowed for
the run's own role), which makes Flyway's current statement fail and its thread return; PostgreSQL
rolls the migration's transaction back. The activity reports cancelled/timed out at once and does
not wait for the thread; if the statement is stuck outside PostgreSQL's reach the thread is
abandoned (it ends at the latest when ``socketTimeout`` fires). Schema state after a cancelled
non-transactional migration is unknown, exactly as with a killed CLI process.

Must not: log the password; put it anywhere but the Java ``dataSource`` call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

import psycopg

from activities.database_target import DatabaseTarget, Vendor
from activities.errors import ConfigurationError, FlywayTimeoutError, PrerequisiteMissingError
from activities.flyway import FlywayInstall, FlywaySettings, check_runnable, interpret_output
from activities.flyway_output import Action, ErrorClass, FlywayOutcome
from activities.redaction import redact

__all__ = ["DEFAULT_JVM_OPTIONS", "JvmFlywayEngine", "start_jvm"]

_log = logging.getLogger(__name__)

# Bounded heap and metaspace keep a worker's RSS flat at fleet scale; SerialGC suits 1-2 cores.
DEFAULT_JVM_OPTIONS: Final = ("-Xmx256m", "-XX:MaxMetaspaceSize=128m", "-XX:+UseSerialGC", "-Xss1m")
_CANCEL_WAIT_S: Final = 5.0

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
        flags = options if "-Xrs" in options else (*options, "-Xrs")
        jpype.startJVM(*flags, classpath=[f"{install.lib_dir}/*"], convertStrings=False)
        level = jpype.JClass("java.util.logging.Level")
        # Flyway logs through java.util.logging here (no SLF4J on the classpath): keep warnings only;
        # results come back as documents, not log lines.
        jpype.JClass("java.util.logging.Logger").getLogger("").setLevel(level.WARNING)
        _jvm_lib = install.lib_dir


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
        self._install = install
        self._settings = settings
        self._options = jvm_options
        # Own threads: a run abandoned after cancellation must not starve asyncio's default executor.
        self._executor = ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="fleetway-flyway")

    def start(self) -> None:
        """Start the JVM now (otherwise the first run does); about 0.6 s once per process."""
        start_jvm(self._install, self._options)

    async def run(self, action: Action, target: DatabaseTarget) -> FlywayOutcome:
        """Same contract as :meth:`FlywayRunner.run`."""
        env = check_runnable(action, target)
        if target.vendor is not Vendor.POSTGRESQL:
            raise ConfigurationError(
                "the jvm engine supports PostgreSQL targets; use the cli engine for Oracle"
            )
        password = target.password.get_secret_value()
        application = f"fleetway-{secrets.token_hex(8)}"
        budget = self._settings.timeout.total_seconds()
        separator = "&" if "?" in env["FLYWAY_URL"] else "?"
        # statement_timeout bounds each statement server-side; socketTimeout is the client backstop.
        options = urllib.parse.quote(f"-c statement_timeout={int(budget * 1000)}", safe="")
        url = (
            f"{env['FLYWAY_URL']}{separator}ApplicationName={application}&options={options}"
            f"&socketTimeout={int(budget) + 5}&connectTimeout=10&tcpKeepAlive=true"
        )
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        await loop.run_in_executor(self._executor, self.start)
        call = loop.run_in_executor(
            self._executor, self._call, action, url, target.user, password, target.schema_name
        )
        deadline = started + budget
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    await self._cancel_backends(target, application, call)
                    raise FlywayTimeoutError(
                        f"flyway timed out after {budget:.0f}s and its statements were cancelled; schema "
                        "state is unknown (a partially applied migration is possible)",
                        error_class=ErrorClass.INTERNAL_ERROR,
                    )
                done, _ = await asyncio.wait({call}, timeout=remaining)
                if done:
                    break
        except asyncio.CancelledError:
            await asyncio.shield(self._cancel_backends(target, application, call))
            _log.warning("flyway cancelled; its statements were cancelled in PostgreSQL")
            raise
        raw, engine_error = call.result()
        output = redact(raw, password)
        elapsed_ms = int((time.monotonic() - started) * 1000)
        return interpret_output(action, output, returncode=1 if engine_error else 0, elapsed_ms=elapsed_ms)

    def _call(self, action: Action, url: str, user: str, password: str, schema: str) -> tuple[str, bool]:
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
            # Argument conversion and overload matching run under _convert_lock: JPype builds a
            # class's conversion hints lazily and two threads doing so at once crashed a worker
            # (SIGSEGV in JPHintsConversion::matches, seen once in a benchmark). Microseconds per
            # run; the Flyway work itself (migrate/validate/info) runs outside the lock, in parallel.
            with _convert_lock:
                config = (
                    flyway_class.configure(loader)
                    .dataSource(url, user, password or None)
                    .locations(*[f"filesystem:{p}" for p in s.locations])
                    .validateMigrationNaming(True)
                    .cleanDisabled(True)
                    .connectRetries(s.connect_retries)
                    .lockRetryCount(s.lock_retry_count)
                )
                if schema:
                    config = config.schemas(schema).defaultSchema(schema)
                if action is Action.VALIDATE:
                    config = config.ignoreMigrationPatterns("*:pending", "*:future")
                flyway = config.load()
            if action is Action.MIGRATE:
                result: Any = flyway.migrate()
            elif action is Action.VALIDATE:
                result = flyway.validateWithResult()
            else:
                result = flyway.info().getInfoResult()
            with _convert_lock:
                return str(json_utils.toJson(result)), False
        except jpype.JException as exc:
            with _convert_lock, contextlib.suppress(jpype.JException):
                return str(json_utils.toJson(error_output.toOperationResult(exc))), False
            return f"engine error: {exc.getClass().getName()}", True

    async def _cancel_backends(
        self, target: DatabaseTarget, application: str, call: asyncio.Future[Any]
    ) -> None:
        """Cancel the run's statements in PostgreSQL, then give its thread a moment to return."""
        try:
            async with await psycopg.AsyncConnection.connect(
                host=target.host, port=target.port, dbname=target.database, user=target.user,
                password=target.password.get_secret_value(), connect_timeout=5, autocommit=True,
                application_name="fleetway-cancel",
            ) as conn:  # fmt: skip
                await conn.execute(
                    "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                    (application,),
                )
        except psycopg.Error as exc:
            _log.warning("could not cancel flyway's statements (%s)", type(exc).__name__)
        with contextlib.suppress(asyncio.TimeoutError, Exception):
            await asyncio.wait_for(asyncio.shield(call), _CANCEL_WAIT_S)
