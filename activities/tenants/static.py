"""Tenant sources: the ``TenantLister`` seam, a static list (config or file), and the paging activity.

Listing never carries secrets: only tenant ids, validated before anything runs for them.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import yaml
from pydantic import BaseModel, ConfigDict, Field
from temporalio import activity

from activities.backend_identity import check_backend
from activities.errors import ConfigurationError, FleetwayError, TenantSourceError, to_application_error
from activities.secrets.providers import validate_tenant_ids

__all__ = [
    "ListTenantsInput",
    "StaticTenantLister",
    "TenantLister",
    "TenantPage",
    "TenantSourceActivities",
    "load_tenants_file",
]


class TenantPage(BaseModel):
    """One page of tenant ids; ``next_cursor`` is None on the last page."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tenant_ids: list[str]
    next_cursor: str | None = None


class ListTenantsInput(BaseModel):
    """Which configured source to page through, from where, how many at a time."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str = "default"
    cursor: str | None = None
    limit: int = Field(default=200, ge=1, le=1000)
    pinned: str = ""  # the description of the source the rollout pinned ("" for none)


class TenantLister(Protocol):
    """Lists tenant ids one page at a time (never the whole fleet in one payload)."""

    async def list_page(self, cursor: str | None, limit: int) -> TenantPage:
        """Return the page after ``cursor`` (None: the first page)."""
        ...


class StaticTenantLister:
    """A fixed list of tenant ids, validated and de-duplicated up front, paged by offset."""

    def __init__(self, tenant_ids: Sequence[str]) -> None:
        ids = validate_tenant_ids(tenant_ids, where="in the static tenant list")
        duplicates = sorted(t for t, n in Counter(ids).items() if n > 1)
        if duplicates:
            raise TenantSourceError(f"duplicate tenant ids: {', '.join(duplicates[:10])}")
        self._ids = ids
        fingerprint = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:12]
        self.description = f"static: {len(ids)} tenants (ids sha256 {fingerprint})"
        """What this source lists, comparable across processes without printing every id."""

    async def list_page(self, cursor: str | None, limit: int) -> TenantPage:
        """Return up to ``limit`` ids after the offset ``cursor``."""
        try:
            start = int(cursor or 0)
        except ValueError:
            raise TenantSourceError(f"invalid cursor {cursor!r} for a static tenant list") from None
        page = self._ids[start : start + limit]
        end = start + len(page)
        return TenantPage(tenant_ids=page, next_cursor=str(end) if end < len(self._ids) else None)


def load_tenants_file(path: Path) -> list[str]:
    """Read tenant ids from YAML/JSON (``[ids]`` or ``{"tenants": [ids]}``) or plain text (one a line).

    Raises:
        TenantSourceError: the file is missing or not in one of those shapes.
        InvalidTenantIdError: an id breaks the tenant id pattern.
    """
    try:
        text = path.read_text()
    except OSError as exc:
        raise TenantSourceError(f"cannot read tenants file {str(path)!r}: {exc.strerror}") from None
    if path.suffix in {".json", ".yaml", ".yml"}:
        try:
            data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError):
            raise TenantSourceError(f"tenants file {str(path)!r} is not valid {path.suffix[1:]}") from None
        if isinstance(data, dict):
            data = data.get("tenants")
        if not isinstance(data, list) or not all(isinstance(t, str) for t in data):
            raise TenantSourceError(f"tenants file {str(path)!r} must hold a list of tenant id strings")
        raw = data
    else:
        raw = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return validate_tenant_ids(raw, where=f"in tenants file {str(path)!r}")


class TenantSourceActivities:
    """The paging activity over the worker's configured tenant sources."""

    def __init__(self, sources: Mapping[str, TenantLister]) -> None:
        self._sources = dict(sources)

    @activity.defn(name="list_tenants_page")
    async def list_tenants_page(self, request: ListTenantsInput) -> TenantPage:
        """Return one page from the named source; ids are validated by the source."""
        try:
            source = self._sources.get(request.source)
            if source is None:
                raise ConfigurationError(f"tenant source {request.source!r} is not configured")
            check_backend("tenant source", request.source, source, request.pinned)
            return await source.list_page(request.cursor, request.limit)
        except FleetwayError as exc:
            raise to_application_error(exc) from None
