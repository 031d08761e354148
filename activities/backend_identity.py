"""What a worker's backend is (its description), and refusing to serve a rollout pinned to another.

A rollout pins, at its start, the tenant source and secret backend of the worker that answered
(``pin_rollout``). Every later page and every tenant run carries that description; a worker whose
backend of the same name is described differently (another control plane, another secret store,
another file) refuses, retryably, so only workers configured like the first one serve the rollout.
Descriptions never hold a credential: kinds, URLs without user info, paths, counts.
"""

from __future__ import annotations

from fleetway.activities.errors import WorkerConfigMismatchError

__all__ = ["check_backend", "describe"]


def describe(backend: object) -> str:
    """A backend's ``description`` (where it reads from), or its class name when it has none."""
    text = getattr(backend, "description", "")
    return text if isinstance(text, str) and text else type(backend).__name__


def check_backend(kind: str, name: str, backend: object, expected: str) -> None:
    """Refuse when ``backend`` is not the one the rollout pinned ("" expected: nothing pinned).

    Raises:
        WorkerConfigMismatchError: this worker's backend ``name`` is described differently.
    """
    if expected and describe(backend) != expected:
        raise WorkerConfigMismatchError(
            f"this worker's {kind} {name!r} is {describe(backend)!r}; the rollout is pinned to {expected!r}"
        )
