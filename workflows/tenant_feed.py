"""The tenant feed: the line of listed, undispatched tenants, and where the source's listing stands.

Pure: no Temporal call, no I/O. A rollout takes the tenant source's pages into the line (a cursor
past the last, a cycle or a runaway source refused by name), reads the front of the line's tables
before dispatch (``read`` counts the tenants at the front already read), and takes tenants off the
front to dispatch them. What continue-as-new carries of it is :meth:`TenantFeed.carried`.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any, Final

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from fleetway.activities.tenants.walk import MAX_PAGES, cursor_digest
    from fleetway.workflows.migrate_all_models import RolloutCarry

__all__ = ["TenantFeed"]

# Cursor digests carried: a cycle longer than this many pages is still ended by MAX_PAGES.
_CARRIED_CURSORS: Final = 1000


class TenantFeed:
    """The listed tenants not yet dispatched, in order; the source's cursor; how much is read.

    ``read``: how many tenants at the front of the line have had their tables read (their verdict
    taken) and wait only for dispatch. Fields are read from outside, changed only by the methods.
    """

    def __init__(self, carry: RolloutCarry) -> None:
        self._line: deque[str] = deque(carry.pending)
        self._read = carry.screened
        self._cursor = carry.cursor
        self._exhausted = carry.source_exhausted
        self._pages = carry.pages
        # In page order (a dict keeps it): only the latest are carried (see ``carried``).
        self._cursor_digests = dict.fromkeys(carry.cursor_digests)

    def __len__(self) -> int:
        return len(self._line)

    def __bool__(self) -> bool:
        return bool(self._line)

    def __iter__(self) -> Iterator[str]:
        return iter(self._line)

    @property
    def cursor(self) -> str | None:
        """The source's cursor for the next page (None: none asked yet, or none left)."""
        return self._cursor

    @property
    def exhausted(self) -> bool:
        """The source has nothing more to list (or the rollout's list was whole from the start)."""
        return self._exhausted

    @property
    def read(self) -> int:
        """How many tenants at the front of the line have been read."""
        return self._read

    @property
    def pages(self) -> int:
        """Pages taken from the source, across the rollout's runs."""
        return self._pages

    # ---- listing -----------------------------------------------------------------------------

    def add(self, tenants: Iterable[str], *, whole: bool = False) -> None:
        """Append ``tenants`` (a wave opened, a plan's chunk); ``whole``: no source is paged after them."""
        self._line.extend(tenants)
        if whole:
            self._exhausted = True

    def replace_with_plan(self) -> None:
        """A plan holds the rollout's tenants now: the line empties and no source is paged."""
        self._line.clear()
        self._exhausted = True

    def needs_page(self) -> bool:
        """Nothing left in the line, and the source has more."""
        return not self._line and not self._exhausted

    def accept_page(self, tenant_ids: list[str], next_cursor: str | None) -> str:
        """Take a page of the source; "" when taken, else how the source broke its paging.

        A source that repeats a cursor, or pages past ``MAX_PAGES``, is not trusted with the rest
        of its list: the page is taken (its tenants are listed) and the rollout stops dispatching.
        """
        self._pages += 1
        self._line.extend(tenant_ids)
        self._cursor = next_cursor
        self._exhausted = next_cursor is None
        if next_cursor is None:
            return ""
        digest = cursor_digest(next_cursor)
        if digest in self._cursor_digests:
            return "repeated a cursor (cycle detected)"
        if self._pages >= MAX_PAGES:
            return f"exceeded {MAX_PAGES} pages"
        self._cursor_digests[digest] = None
        return ""

    # ---- reading the tables before dispatch ---------------------------------------------------

    def unread_front(self) -> bool:
        """The next tenant in line has not been read."""
        return self._read == 0 and bool(self._line)

    def front(self, count: int) -> list[str]:
        """The first ``count`` tenants in line (a read's worth), left in line."""
        return list(itertools.islice(self._line, count))

    def read_front(self, count: int, keep: list[str]) -> None:
        """The first ``count`` were read: ``keep`` (in order) stay first in line, read; the rest leave it."""
        for _ in range(count):
            self._line.popleft()
        self._line.extendleft(reversed(keep))
        self._read = len(keep)

    def mark_read(self, count: int) -> None:
        """The first ``count`` go on unread-but-settled (a failed read: they run Flyway as before)."""
        self._read = count

    # ---- dispatch -----------------------------------------------------------------------------

    def take(self) -> str:
        """The next tenant in line (the caller dispatches it or puts it back)."""
        self._read = max(0, self._read - 1)
        return self._line.popleft()

    def take_front(self, count: int, *, read: bool) -> list[str]:
        """The first ``count`` tenants, out of the line (to their servers' queues); ``read``: counted so."""
        if read:
            self._read -= count
        return [self._line.popleft() for _ in range(count)]

    def put_back(self, tenant: str, *, read: bool) -> None:
        """``tenant`` first in line again; ``read``: it counts as read (read before, or needs a run)."""
        self._line.appendleft(tenant)
        if read:
            self._read += 1

    def carried(self, queued: list[str], *, queued_read: bool) -> dict[str, Any]:
        """The feed's part of the carry; ``queued``: tenants drained from the servers' queues, first."""
        return {
            "pending": queued + list(self._line),
            "cursor": self._cursor,
            "source_exhausted": self._exhausted,
            "pages": self._pages,
            "cursor_digests": list(self._cursor_digests)[-_CARRIED_CURSORS:],
            "screened": self._read + (len(queued) if queued_read else 0),
        }
