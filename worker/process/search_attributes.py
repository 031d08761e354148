"""The custom search attributes a rollout upserts, checked (and registered where allowed) at worker start.

A namespace without them (a new self-hosted cluster, a Temporal Cloud namespace) makes every
rollout's ``upsert_search_attributes`` fail its workflow task, forever: the rollout sits RUNNING
and nothing says why. The worker finds out before it polls.
"""

from __future__ import annotations

import logging
from typing import Final

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.service import RPCError

from fleetway.activities.errors import SearchAttributesMissingError
from fleetway.workflows.attributes import ALL_ATTRIBUTES

__all__ = ["REQUIRED_SEARCH_ATTRIBUTES", "ensure_search_attributes"]

REQUIRED_SEARCH_ATTRIBUTES: Final = tuple(key.name for key in ALL_ATTRIBUTES)
"""Keyword attributes rollouts and their tenants' children write (``workflows/attributes.py``)."""

_log = logging.getLogger(__name__)


def register_command(namespace: str, names: tuple[str, ...] | list[str]) -> str:
    """The ``temporal`` command that registers ``names`` as Keyword attributes of ``namespace``."""
    flags = " ".join(f"--name {n} --type Keyword" for n in names)
    return f"temporal operator search-attribute create --namespace {namespace} {flags}"


async def ensure_search_attributes(client: Client) -> list[str]:
    """Register the missing attributes where the server allows it; return those registered.

    A listing the server refuses (no operator rights) is logged and passed over: the check is a
    guard, not a requirement of its own.

    Raises:
        SearchAttributesMissingError: some are missing and the server refused to register them
            (Temporal Cloud: ``tcld``; self-hosted: the command in the message).
    """
    namespace = client.namespace
    try:
        listed = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace)
        )
    except RPCError as exc:
        _log.warning(
            "cannot list search attributes; not checked",
            extra={"namespace": namespace, "error_type": exc.status.name.lower()},
        )
        return []
    known = set(listed.custom_attributes) | set(listed.system_attributes)
    missing = [name for name in REQUIRED_SEARCH_ATTRIBUTES if name not in known]
    if not missing:
        return []
    try:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=namespace,
                search_attributes=dict.fromkeys(missing, IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD),
            )
        )
    except RPCError as exc:
        raise SearchAttributesMissingError(
            f"namespace {namespace!r} lacks the search attributes {', '.join(missing)} and the server "
            f"refused to register them ({exc.status.name.lower()}); register them once: "
            f"{register_command(namespace, missing)}"
        ) from None
    _log.warning("registered missing search attributes", extra={"namespace": namespace, "names": missing})
    return missing
