"""Which server each queued tenant is on, and which servers may take one more now: pure.

No Temporal call, no I/O, no clock (the shell passes workflow time in). Tenants whose server key
is known wait in one queue per server; ``pick`` serves the servers in turn (round-robin over the
servers with work), skipping a server at its per-server budget or on hold, so a source ordered by
server does not run one server's 500 tenants before another's first.
"""

from __future__ import annotations

from collections import Counter, deque
from typing import Final

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from fleetway.activities.servers.models import (
        HealthState,
        HoldKind,
        ServerControls,
        ServerHealth,
        ServerHold,
    )

__all__ = ["MAX_QUEUED", "UNKNOWN_SERVER", "ServerBook"]

MAX_QUEUED: Final = 2000  # tenants listed ahead into the server queues (the fairness horizon)
# ... and their ids' encoded bytes, checked before each refill of up to a page: the queues cross
# continue-as-new in the carry, ~200 KiB at most whatever the ids' length.
MAX_QUEUED_BYTES: Final = 64 * 1024
UNKNOWN_SERVER: Final = ""  # a tenant whose secret did not resolve: no budget, no check


class ServerBook:
    """The per-server queues, budgets and holds of one rollout run (holds are carried)."""

    def __init__(self, controls: ServerControls, holds: list[ServerHold], *, park_limit_s: int = 900) -> None:
        self.controls = controls
        self.park_limit_s = controls.park_limit_s or park_limit_s  # the rollout's retry budget unless set
        self.holds: dict[str, ServerHold] = {h.server: h for h in holds}
        self._queues: dict[str, deque[str]] = {}
        self._ring: deque[str] = deque()  # servers with queued tenants; the next to serve first
        self._keys: dict[str, str] = {}  # every queued, picked or running tenant's server
        self._busy: Counter[str] = Counter()
        self._checked: dict[str, float] = {}  # when a server was last found fit
        self._queued = 0
        self._queued_bytes = 0
        self.holds_started: Counter[str] = Counter()  # numbers each hold's audit event

    # ---- queues ---------------------------------------------------------------------------------

    def queued(self) -> int:
        """Tenants waiting in the server queues."""
        return self._queued

    def room(self) -> int:
        """How many more tenants may be queued now (0 once the queues hold their bytes' worth)."""
        return 0 if self._queued_bytes >= MAX_QUEUED_BYTES else max(0, MAX_QUEUED - self._queued)

    def _count(self, tenant: str, sign: int) -> None:
        self._queued += sign
        self._queued_bytes += sign * (len(tenant) + 3)  # encoded: quotes and a comma

    def server_of(self, tenant: str) -> str | None:
        """The server key of a queued, picked or running tenant (None: not in the book)."""
        return self._keys.get(tenant)

    def enqueue(self, tenant: str, server: str) -> None:
        """``tenant`` waits for a turn on ``server``."""
        self._keys[tenant] = server
        if server not in self._queues:
            self._queues[server] = deque()
            self._ring.append(server)
        self._queues[server].append(tenant)
        self._count(tenant, 1)

    def put_back(self, tenant: str) -> None:
        """A picked tenant that was not dispatched goes first in its server's queue again."""
        server = self._keys[tenant]
        if server in self._queues:
            self._ring.remove(server)
        else:
            self._queues[server] = deque()
        self._ring.appendleft(server)  # it keeps the turn it was picked in
        self._queues[server].appendleft(tenant)
        self._count(tenant, 1)

    def may_take(self, server: str) -> bool:
        """Not on hold, and under the per-server budget."""
        if server == UNKNOWN_SERVER:
            return True
        budget = self.controls.per_server
        return server not in self.holds and (budget is None or self._busy[server] < budget)

    def pickable(self) -> bool:
        """Some queued tenant's server may take it now."""
        return any(self.may_take(s) for s in self._ring)

    def pick(self) -> tuple[str, str] | None:
        """The next tenant of the first server in turn that may take one; it goes to the back."""
        for i, server in enumerate(self._ring):
            if self.may_take(server):
                queue = self._queues[server]
                tenant = queue.popleft()
                self._count(tenant, -1)
                del self._ring[i]
                if queue:
                    self._ring.append(server)
                else:
                    del self._queues[server]
                return tenant, server
        return None

    def drain(self) -> list[str]:
        """Every queued tenant, in turn order (for continue-as-new), the queues emptied."""
        order: list[str] = []
        while self._ring:
            server = self._ring.popleft()
            order.extend(self._queues.pop(server))
        for tenant in order:
            del self._keys[tenant]
        self._queued = self._queued_bytes = 0
        return order

    # ---- in flight ------------------------------------------------------------------------------

    def started(self, tenant: str) -> None:
        """A picked tenant was dispatched: it counts against its server's budget."""
        self._busy[self._keys[tenant]] += 1

    def finished(self, tenant: str) -> str:
        """A dispatched tenant ended; returns its server key ("" when unknown)."""
        server = self._keys.pop(tenant, UNKNOWN_SERVER)
        if self._busy[server] > 0:
            self._busy[server] -= 1
        return server

    def in_flight(self, server: str) -> int:
        """The rollout's tenants running on ``server``."""
        return self._busy[server]

    # ---- health and holds -----------------------------------------------------------------------

    def check_due(self, server: str, now_s: float) -> bool:
        """Whether ``server`` must be checked before a dispatch (never for an unknown server)."""
        if not self.controls.checks or server == UNKNOWN_SERVER:
            return False
        last = self._checked.get(server)
        return last is None or now_s - last >= self.controls.check_every_s

    def recheck(self, server: str) -> None:
        """Forget the last good check (a tenant there just failed for an infrastructure reason)."""
        self._checked.pop(server, None)

    def found(self, server: str, health: ServerHealth, now_s: float, now: str = "") -> ServerHold | None:
        """Record a check; returns a hold that starts now, else None (fit, or held already).

        ``now_s`` is workflow time in epoch seconds, ``now`` the same instant in ISO 8601.
        """
        if health.state is HealthState.OK:
            self._checked[server] = now_s
            return None
        if server in self.holds:
            return None
        kind = HoldKind.PARKED if health.state is HealthState.UNREACHABLE else HoldKind.HELD
        hold = ServerHold(server=server, kind=kind, since=now, since_s=now_s, why=health.why)
        self.holds[server] = hold
        self.holds_started[server] += 1
        return hold

    def release(self, server: str, now_s: float) -> ServerHold | None:
        """The server is fit again: its hold ends (returned), its tenants may go."""
        self._checked[server] = now_s
        return self.holds.pop(server, None)

    def over_limit(self, server: str, now_s: float) -> bool:
        """Parked longer than the rollout allows."""
        hold = self.holds.get(server)
        return hold is not None and hold.kind is HoldKind.PARKED and now_s - hold.since_s >= self.park_limit_s

    def abandon(self, server: str) -> list[str]:
        """Take every queued tenant of ``server`` out (they end without a dispatch)."""
        queue = self._queues.pop(server, deque())
        if server in self._ring:
            self._ring.remove(server)
        for tenant in queue:
            del self._keys[tenant]
        self._queued -= len(queue)
        return list(queue)

    def reference(self, server: str) -> str | None:
        """A tenant whose login can check ``server`` (a queued one), None when none waits."""
        queue = self._queues.get(server)
        return queue[0] if queue else None

    def view(self) -> list[ServerHold]:
        """The holds with how many tenants wait behind each (for ``progress``)."""
        return [
            hold.model_copy(update={"queued": len(self._queues.get(server, ()))})
            for server, hold in sorted(self.holds.items())
        ]
