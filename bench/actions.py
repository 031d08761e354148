"""What a rollout costs in Temporal actions, counted from the histories it wrote.

Temporal Cloud bills, and a namespace rate-limits (500 actions/s to start), per action: workflow
and child starts, continue-as-new, activity attempts, local activities, signals, updates, timers,
search-attribute and memo upserts, markers. Heartbeats past the first and queries count too but
leave no history event: they are not in these counts (fleetway's children send no heartbeats when
Flyway runs in their task; the CLI's ``--follow`` queries once per second while it follows).

Walked: every run of the rollout (continue-as-new chain), every child it started (each run of
each), and the wave plan's holder. Each event kind is counted apart so docs/speed.md can say what
each action buys.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

__all__ = ["ActionCount", "count_actions"]

_KINDS: dict[int, str] = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW: "continue-as-new",
    EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED: "child start",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED: "signal",
    EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED: "signal",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED: "update",
    EventType.EVENT_TYPE_TIMER_STARTED: "timer",
    EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES: "search-attribute upsert",
    EventType.EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED: "memo upsert",
}


@dataclass
class ActionCount:
    """Actions by kind; ``workflows``: the histories walked (runs)."""

    kinds: Counter[str] = field(default_factory=Counter)
    workflows: int = 0

    @property
    def total(self) -> int:
        return sum(self.kinds.values())

    def per(self, tenants: int) -> float:
        return round(self.total / tenants, 3) if tenants else 0.0

    def summary(self, tenants: int) -> dict[str, Any]:
        return {
            "total": self.total,
            "per_tenant": self.per(tenants),
            "kinds": dict(sorted(self.kinds.items())),
            "runs": self.workflows,
        }


def _count(events: list[Any], into: ActionCount) -> tuple[list[str], str]:
    """Count one run's events; return the child workflow ids it started and its next run ("": none)."""
    children: list[str] = []
    next_run = ""
    for event in events:
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            # Each attempt is an action; the started event carries the last attempt's number.
            into.kinds["activity attempt"] += max(1, event.activity_task_started_event_attributes.attempt)
        elif kind == EventType.EVENT_TYPE_MARKER_RECORDED:
            name = event.marker_recorded_event_attributes.marker_name
            into.kinds["local activity" if name == "core_local_activity" else f"marker {name}"] += 1
        elif kind in _KINDS:
            into.kinds[_KINDS[kind]] += 1
        if kind == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
            children.append(event.start_child_workflow_execution_initiated_event_attributes.workflow_id)
        if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
            next_run = event.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
    return children, next_run


async def _walk(client: Client, workflow_id: str, into: ActionCount, gate: asyncio.Semaphore) -> None:
    async with gate:
        handle = client.get_workflow_handle(workflow_id)
        run_id = (await handle.describe()).raw_description.workflow_execution_info.first_run_id
    children: list[str] = []
    while run_id:
        async with gate:
            history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        into.workflows += 1
        started, run_id = _count(list(history.events), into)
        children += started
    await asyncio.gather(*(_walk(client, child, into, gate) for child in children))


async def count_actions(client: Client, rollout_id: str) -> ActionCount:
    """Every action the rollout ``rollout_id`` cost, from its histories and its children's.

    A child's start is counted once, as its parent's "child start"; the rollout's own start once.
    """
    count = ActionCount()
    count.kinds["workflow start"] = 1
    await _walk(client, rollout_id, count, asyncio.Semaphore(16))
    return count
