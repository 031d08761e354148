"""One Flyway run's PostgreSQL sessions: named, bounded, and cancellable from outside the run.

Both engines connect through :class:`RunSessions`. Why: a Flyway run can end without its
statements ending. A killed CLI process or an abandoned JVM thread leaves its backend running the
current statement (a ``pg_sleep(60)`` ran on for 58 s after a cancel), holding Flyway's lock and
racing the retry. So every run

- connects with its own ``ApplicationName`` (``fleetway-<random>``), which :meth:`terminate` uses
  to end exactly that run's sessions (``pg_terminate_backend`` is allowed for the run's own role).
  Terminated, not cancelled: a cancel only stops the statement running at that instant, and when
  it lands between statements (a script of many short ones, a commit, the next script's start)
  nothing stops and Flyway goes on; a terminated session fails every later statement too;
- sets ``client_connection_check_interval`` (PostgreSQL 14+), so a backend whose client died
  (worker killed with SIGKILL: nobody is left to cancel anything) notices within seconds and
  aborts its transaction instead of running on for the statement's full length;
- sets ``statement_timeout`` to the run's budget, a server-side backstop;
- sets ``lock_timeout`` (default 10 s): a DDL statement queued behind the application's locks
  would otherwise block every later application query on that table behind itself until the
  statement timeout (the classic migration outage); it fails instead with 55P03, classified
  ``lock_timeout`` and retried within the tenant's budget.

Must not: log the password or put it anywhere but the connection call.
"""

from __future__ import annotations

import logging
import secrets
import urllib.parse
from dataclasses import dataclass, field
from typing import Final

import psycopg

from fleetway.activities.database_target import DatabaseTarget, Vendor, libpq_conninfo

__all__ = ["CLIENT_CHECK_INTERVAL_MS", "DEFAULT_LOCK_TIMEOUT_MS", "RunSessions"]

_log = logging.getLogger(__name__)

# How soon a backend notices that its client is gone, mid-statement. PostgreSQL polls the socket
# this often; the cost is one poll() per interval per running statement.
CLIENT_CHECK_INTERVAL_MS: Final = 2000
# How long a migration's statement may wait for a lock before it gives up (and is retried).
DEFAULT_LOCK_TIMEOUT_MS: Final = 10_000


@dataclass(frozen=True)
class RunSessions:
    """The connection identity of one Flyway run (see the module docstring)."""

    budget_s: float
    lock_timeout_ms: int = DEFAULT_LOCK_TIMEOUT_MS
    application_name: str = field(default_factory=lambda: f"fleetway-{secrets.token_hex(8)}")

    def jdbc_url(self, base_url: str, target: DatabaseTarget) -> str:
        """``base_url`` with this run's name, server-side bounds and client timeouts added.

        Oracle URLs are returned unchanged (no such parameters there).
        """
        if target.vendor is not Vendor.POSTGRESQL:
            return base_url
        options = (
            f"-c statement_timeout={int(self.budget_s * 1000)} "
            f"-c lock_timeout={self.lock_timeout_ms} "
            f"-c client_connection_check_interval={CLIENT_CHECK_INTERVAL_MS}"
        )
        params = urllib.parse.urlencode(
            {
                "ApplicationName": self.application_name,
                "options": options,
                "socketTimeout": int(self.budget_s) + 5,  # the client's backstop
                "connectTimeout": 10,
                "tcpKeepAlive": "true",
            },
            quote_via=urllib.parse.quote,
        )
        separator = "&" if "?" in base_url else "?"
        return f"{base_url}{separator}{params}"

    async def terminate(self, target: DatabaseTarget) -> int:
        """End every session this run still has in PostgreSQL; return how many backends.

        Each one's open transaction rolls back (a script under way leaves nothing) and its locks go.

        Best effort (the database may be the reason the run is ending): a failure is logged by
        type only, never raised.
        """
        if target.vendor is not Vendor.POSTGRESQL:
            return 0
        try:
            conninfo = libpq_conninfo(target, application_name="fleetway-cancel", connect_timeout=5)
            async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
                cursor = await conn.execute(
                    "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = %s",
                    (self.application_name,),
                )
                row = await cursor.fetchone()
                return int(row[0]) if row else 0
        except psycopg.Error as exc:
            _log.warning("could not end flyway's sessions (%s)", type(exc).__name__)
        return 0
