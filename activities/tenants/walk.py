"""Walking a paged tenant source to the end, safely: cycle detection, a page cap, duplicate report.

Used by ``fleetway list-tenants`` (and anything else that wants the whole list in one process);
a rollout walks pages inside the workflow with the same rules (see ``workflows/migrate_all.py``),
so both see the same fleet. Pure but for the optional wait between a page's retries (never used
by a workflow): safe to import from workflows.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from fleetway.activities.errors import TenantSourceError, TenantSourceUnavailableError
from fleetway.activities.tenants.static import TenantLister, TenantPage

__all__ = ["MAX_PAGES", "TenantListing", "cursor_digest", "list_all_tenants"]

MAX_PAGES: Final = 10_000


def cursor_digest(cursor: str) -> str:
    """A short stable digest of a cursor: cycle detection without keeping opaque cursors around."""
    return hashlib.sha256(cursor.encode()).hexdigest()[:16]


@dataclass
class TenantListing:
    """Every id once, in source order, plus the ids the source returned more than once.

    ``labels``: id → labels for the listed tenants the source labelled (first occurrence wins).
    """

    tenant_ids: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    pages: int = 0
    labels: dict[str, dict[str, str]] = field(default_factory=dict)


async def list_all_tenants(
    lister: TenantLister,
    *,
    page_size: int = 200,
    max_pages: int = MAX_PAGES,
    on_page: Callable[[], None] | None = None,
    retry_for_s: float = 0,
    on_retry: Callable[[TenantSourceUnavailableError, float], None] | None = None,
) -> TenantListing:
    """Walk ``lister`` to its last page; ``on_page`` is called after each (an activity's heartbeat).

    With ``retry_for_s``, a page the source could not serve for now (a 5xx, a 429, a timeout) is
    asked again, after its ``Retry-After`` or a backoff of 1 s up to 15 s, for that long: what a
    rollout's listing activity gets from Temporal's retries, for callers outside one (``fleetway
    list-tenants --local``). ``on_retry`` hears each failure and the wait before the next try.

    Raises:
        TenantSourceError: a cursor came back twice (cycle) or more than ``max_pages`` pages.
        TenantSourceUnavailableError: the source stayed unavailable past ``retry_for_s``.
    """
    listing = TenantListing()
    seen_ids: set[str] = set()
    seen_cursors: set[str] = set()
    cursor: str | None = None
    while True:
        if listing.pages >= max_pages:
            raise TenantSourceError(f"tenant source pagination exceeded {max_pages} pages")
        page = await _page(lister, cursor, page_size, retry_for_s, on_retry)
        listing.pages += 1
        if on_page is not None:
            on_page()
        for tenant in page.tenant_ids:
            if tenant in seen_ids:
                listing.duplicates.append(tenant)
            else:
                seen_ids.add(tenant)
                listing.tenant_ids.append(tenant)
                if tenant in page.labels:
                    listing.labels[tenant] = page.labels[tenant]
        if page.next_cursor is None:
            return listing
        digest = cursor_digest(page.next_cursor)
        if digest in seen_cursors:
            raise TenantSourceError(
                f"tenant source repeated next_cursor {page.next_cursor[:80]!a} (cycle detected)"
            )
        seen_cursors.add(digest)
        cursor = page.next_cursor


async def _page(
    lister: TenantLister,
    cursor: str | None,
    page_size: int,
    retry_for_s: float,
    on_retry: Callable[[TenantSourceUnavailableError, float], None] | None,
) -> TenantPage:
    """One page, asked again while the source is unavailable and ``retry_for_s`` lasts."""
    deadline = time.monotonic() + retry_for_s
    backoff = 1.0
    while True:
        try:
            return await lister.list_page(cursor, page_size)
        except TenantSourceUnavailableError as exc:
            wait = exc.retry_after_s if exc.retry_after_s is not None else backoff
            if time.monotonic() + wait > deadline:
                raise
            if on_retry is not None:
                on_retry(exc, wait)
            await asyncio.sleep(wait)
            backoff = min(backoff * 2, 15.0)
