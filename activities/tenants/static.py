"""Tenant sources: the ``TenantLister`` seam, a static list (config or file), and the paging activity.

Listing never carries secrets: only tenant ids and their labels, validated before anything runs
for them. Labels leave a worker only when asked for (``with_labels``: the wave planner): a plain
rollout's pages carry ids alone, so labels never fill its history.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import yaml
from pydantic import BaseModel, Field
from temporalio import activity

from fleetway.activities.backend_identity import check_backend
from fleetway.activities.errors import (
    ConfigurationError,
    FleetwayError,
    TenantSourceError,
    to_application_error,
)
from fleetway.activities.secrets.providers import validate_tenant_ids
from fleetway.activities.tenants.labels import validate_labels
from fleetway.activities.wire import WIRE_MODEL

__all__ = [
    "ListTenantsInput",
    "StaticTenantLister",
    "TenantLister",
    "TenantPage",
    "TenantSourceActivities",
    "load_tenant_entries",
    "load_tenants_file",
]


class TenantPage(BaseModel):
    """One page of tenant ids; ``next_cursor`` is None on the last page.

    ``labels``: id → labels, for the listed tenants that have any (validated by the source).
    """

    model_config = WIRE_MODEL

    tenant_ids: list[str]
    next_cursor: str | None = None
    labels: dict[str, dict[str, str]] = Field(default_factory=dict)


class ListTenantsInput(BaseModel):
    """Which configured source to page through, from where, how many at a time."""

    model_config = WIRE_MODEL

    source: str = "default"
    cursor: str | None = None
    limit: int = Field(default=200, ge=1, le=1000)
    pinned: str = ""  # the description of the source the rollout pinned ("" for none)
    with_labels: bool = False  # keep the tenants' labels in the page (the wave planner asks)


class TenantLister(Protocol):
    """Lists tenant ids one page at a time (never the whole fleet in one payload)."""

    async def list_page(self, cursor: str | None, limit: int) -> TenantPage:
        """Return the page after ``cursor`` (None: the first page)."""
        ...


class StaticTenantLister:
    """A fixed list of tenant ids (and labels), validated and de-duplicated up front, paged by offset."""

    def __init__(
        self, tenant_ids: Sequence[str], labels: Mapping[str, Mapping[str, str]] | None = None
    ) -> None:
        ids = validate_tenant_ids(tenant_ids, where="in the static tenant list")
        duplicates = sorted(t for t, n in Counter(ids).items() if n > 1)
        if duplicates:
            raise TenantSourceError(f"duplicate tenant ids: {', '.join(duplicates[:10])}")
        unknown = sorted(set(labels or {}) - set(ids))
        if unknown:
            raise TenantSourceError(f"labels given for tenants not in the list: {', '.join(unknown[:10])}")
        self._ids = ids
        self._labels = {
            t: checked
            for t, raw in (labels or {}).items()
            if (checked := validate_labels(raw, tenant=t, where="in the static tenant list"))
        }
        listed = "\n".join(ids) + ("\n" + json.dumps(self._labels, sort_keys=True) if self._labels else "")
        fingerprint = hashlib.sha256(listed.encode()).hexdigest()[:12]
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
        return TenantPage(
            tenant_ids=page,
            next_cursor=str(end) if end < len(self._ids) else None,
            labels={t: self._labels[t] for t in page if t in self._labels},
        )


def load_tenants_file(path: Path) -> list[str]:
    """Read tenant ids from a tenants file (see :func:`load_tenant_entries`), labels dropped."""
    return list(load_tenant_entries(path))


def load_tenant_entries(path: Path) -> dict[str, dict[str, str]]:
    """Read tenants and their labels from YAML/JSON or plain text, in file order.

    Shapes: ``[ids]``, ``{"tenants": [ids]}``, a list mixing ids and ``{"id": ..., "labels": {...}}``
    entries, or ``{"tenants": {"<id>": {labels}}}``; plain text has one id a line, optionally
    followed by ``key=value`` labels (``acme tier=enterprise region=eu``).

    Raises:
        TenantSourceError: the file is missing or not in one of those shapes.
        InvalidTenantIdError: an id breaks the tenant id pattern.
        InvalidTenantLabelError: a label breaks the label rules.
    """
    where = f"in tenants file {str(path)!r}"
    try:
        text = path.read_text()
    except OSError as exc:
        raise TenantSourceError(f"cannot read tenants file {str(path)!r}: {exc.strerror}") from None
    structured = path.suffix in {".json", ".yaml", ".yml"}
    entries = _structured_entries(path, text) if structured else _text_entries(text)
    ids = validate_tenant_ids([t for t, _ in entries], where=where)
    duplicates = sorted(t for t, n in Counter(ids).items() if n > 1)
    if duplicates:
        raise TenantSourceError(
            f"tenants file {str(path)!r} repeats tenant ids: {', '.join(duplicates[:10])}"
        )
    return {t: validate_labels(raw, tenant=t, where=where) for t, (_, raw) in zip(ids, entries, strict=True)}


def _structured_entries(path: Path, text: str) -> list[tuple[str, object]]:
    """(id, raw labels) from a JSON/YAML tenants file, in file order."""
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError):
        raise TenantSourceError(f"tenants file {str(path)!r} is not valid {path.suffix[1:]}") from None
    if isinstance(data, dict):
        data = data.get("tenants")
    if isinstance(data, dict):
        return [(str(t), labels) for t, labels in data.items()]
    if not isinstance(data, list):
        raise TenantSourceError(f"tenants file {str(path)!r} must hold a list of tenant id strings")
    entries: list[tuple[str, object]] = []
    for item in data:
        if isinstance(item, str):
            entries.append((item, None))
        elif isinstance(item, dict) and isinstance(item.get("id"), str) and set(item) <= {"id", "labels"}:
            entries.append((item["id"], item.get("labels")))
        else:
            raise TenantSourceError(
                f"tenants file {str(path)!r}: entry {str(item)[:80]!a} is neither an id "
                'nor {"id": ..., "labels": {...}}'
            )
    return entries


def _text_entries(text: str) -> list[tuple[str, object]]:
    """(id, raw labels) from a plain-text tenants file: ``id [key=value ...]`` a line."""
    entries: list[tuple[str, object]] = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        tenant, *pairs = line.split()
        if any("=" not in pair for pair in pairs):
            # Not "id key=value ...": the whole line is the id, and the id rule names it ('bad id').
            entries.append((line, None))
            continue
        entries.append((tenant, dict(pair.split("=", 1) for pair in pairs) if pairs else None))
    return entries


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
            page = await source.list_page(request.cursor, request.limit)
            return page if request.with_labels or not page.labels else page.model_copy(update={"labels": {}})
        except FleetwayError as exc:
            raise to_application_error(exc) from None
