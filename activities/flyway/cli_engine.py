"""The CLI engine: one Flyway process per run, in its own process group, killed with its worker.

Credentials reach the process only through its environment (never argv); it runs in a scratch
HOME and working directory, so no stray ``flyway.conf`` is read. The JVM is started under
``setpriv --pdeathsig KILL``: the kernel kills it the moment the worker dies, by any signal, with
no helper process. On a timeout or cancel the group is killed, then the run's sessions are
terminated (``activities/flyway/session.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Final

from fleetway.activities.database_target import (
    DatabaseTarget,
    Vendor,
    check_pg_identifier,
)
from fleetway.activities.errors import (
    ConfigurationError,
    FlywayTimeoutError,
)
from fleetway.activities.flyway.contract import (
    POSTGRESQL_SESSION_LOCK,
    FlywayInstall,
    FlywaySettings,
    check_locations,
    check_runnable,
    flyway_configuration,
    interpret_output,
)
from fleetway.activities.flyway.output import (
    Action,
    ErrorClass,
    FlywayOutcome,
)
from fleetway.activities.flyway.request import FlywayRequest
from fleetway.activities.flyway.scratch import scratch_folder, sweep_scratch
from fleetway.activities.flyway.session import RunSessions
from fleetway.activities.redaction import redact

__all__ = ["FlywayRunner"]

_log = logging.getLogger(__name__)

_MAIN_CLASS: Final = "org.flywaydb.commandline.Main"
# Bounds the wait for a killed JVM to be reaped; deliberately not derived from the run timeout.
_KILL_GRACE_S: Final = 10.0


def _with_parent_death_signal(argv: Sequence[str]) -> list[str]:
    """``argv`` run through util-linux ``setpriv --pdeathsig KILL`` (see the module docstring).

    setpriv execs the JVM in the same process, so no Python runs between fork and exec (a
    ``preexec_fn`` can deadlock in a threaded process). The signal covers only a parent that dies
    after it is armed, so a shell then checks that its parent is still this worker before exec'ing
    the JVM. Without setpriv (not Linux), argv is returned unchanged.
    """
    if not _SETPRIV:
        return list(argv)
    guard = 'test "$PPID" = "$0" || exit 137; exec "$@"'
    return [_SETPRIV, "--pdeathsig", "KILL", "--", "/bin/sh", "-c", guard, str(os.getpid()), *argv]


_SETPRIV: Final = shutil.which("setpriv") if sys.platform.startswith("linux") else None
_PLACEHOLDER: Final = "placeholders."


def _placeholders_file(folder: Path, placeholders: Mapping[str, str]) -> Path:
    """``[flyway.placeholders]`` as TOML, in the run's scratch folder.

    Names and values are validated (``options.py``); JSON string literals are TOML basic strings.
    """
    lines = [
        "[flyway.placeholders]",
        *(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in placeholders.items()),
    ]
    path = folder / "placeholders.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class FlywayRunner:
    """Runs one Flyway verb for one target through the real Flyway CLI."""

    def __init__(self, install: FlywayInstall, settings: FlywaySettings) -> None:
        if settings.locations:  # empty: every run names its own (a worker's migration sets)
            check_locations(settings.locations)
        self._install = install
        self._settings = settings
        sweep_scratch()  # what runs of a killed predecessor left (their placeholders among it)

    def argv(
        self,
        request: FlywayRequest,
        target: DatabaseTarget,
        *,
        verb: Action | None = None,
        locations: tuple[Path, ...] | None = None,
        labels: Mapping[str, str] | None = None,
        config_dir: Path | None = None,
    ) -> list[str]:
        """The full command line for a run: no credential, only vetted identifiers and paths.

        Placeholders go to a TOML file in ``config_dir`` (the run's scratch folder), named by
        ``-configFiles``: the command line's ``-placeholders.label.tier=…`` is read by Flyway as
        a nested object and refused, a quoted TOML key is not.

        Raises:
            UnsafeIdentifierError: the target's schema name is not a safe identifier.
            ConfigurationError: a location is relative or holds a comma.
        """
        s = self._settings
        action = verb or request.action
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
        configured = flyway_configuration(action, request, target, labels)
        placeholders = {
            k.removeprefix(_PLACEHOLDER): v for k, v in configured.items() if k.startswith(_PLACEHOLDER)
        }
        args += [f"-{key}={value}" for key, value in configured.items() if not key.startswith(_PLACEHOLDER)]
        if placeholders:
            if config_dir is None:  # never drop a placeholder a script may need
                raise ConfigurationError("placeholders need the run's scratch folder (config_dir)")
            args.append(f"-configFiles={_placeholders_file(config_dir, placeholders)}")
        args.append(action.value)
        return args

    async def run(
        self,
        request: FlywayRequest,
        target: DatabaseTarget,
        *,
        verb: Action | None = None,
        locations: tuple[Path, ...] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> FlywayOutcome:
        """Run one Flyway verb against ``target`` and return its parsed, successful outcome.

        ``request`` (``request.py``) says what its rollout decided: marker, budget, options,
        tenant. ``verb``: this call's verb when it is not the request's own (the validate and info
        that guard a repair or a hotfix, an adoption's baseline). ``locations``: the folders of
        the request's migration set, resolved by the activity (default: the settings' folders).
        ``labels``: the tenant's ``label.KEY`` placeholder values, looked up by the activity.

        Raises:
            PasswordTooShortError: migrate with a non-empty password under 8 bytes (nothing ran).
            UnsafeEnvValueError: CR/LF/NUL in a connection field (nothing ran).
            UnsafeIdentifierError: unsafe schema name (nothing ran).
            FlywayTimeoutError: the budget ran out; the process group was killed.
            FlywayOutputUnparsedError: no Flyway JSON document in the output.
            FlywayReportedFailureError: Flyway reported a failure; ``outcome`` holds what it did.
            asyncio.CancelledError: cancelled; the process group was killed first.
        """
        action = verb or request.action
        password = target.password.get_secret_value()
        env = check_runnable(action, target, installed_by=request.installed_by)
        sessions = self._settings.sessions(request.timeout_s)
        budget = timedelta(seconds=sessions.budget_s)
        env["FLYWAY_URL"] = sessions.jdbc_url(env["FLYWAY_URL"], target)
        started = time.monotonic()
        with scratch_folder() as scratch:
            argv = self.argv(
                request, target, verb=action, locations=locations, labels=labels, config_dir=scratch
            )
            env.update({"HOME": str(scratch), "PATH": os.defpath, "LANG": "C.UTF-8"})
            returncode, raw = await self._execute(
                argv, env, cwd=str(scratch), sessions=sessions, target=target, budget=budget
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
