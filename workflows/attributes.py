"""The search attributes fleetway writes: what operators filter workflows by in the Temporal UI.

Every one is a Keyword (Temporal Cloud allows 40 per namespace; fleetway uses five), registered by the
worker at start where the server allows it (``worker/process/search_attributes.py``). Values are
ids, verbs, outcomes and digests: never a credential or a tenant's data.

- ``FleetwayAction``: the verb (a rollout at start; a tenant's child at start).
- ``FleetwayOutcome``: how it ended (a rollout at its end; a tenant's child at its end).
- ``FleetwayRollout``: on a tenant's child, the rollout it belongs to.
- ``FleetwayWave``: on a tenant's child, its wave (ring rollouts).
- ``FleetwaySet``: the migration set's digest (a rollout started through the library; every child).

``FleetwayRollout = "R" AND FleetwayOutcome = "failed"`` lists a rollout's failed tenants.
"""

from __future__ import annotations

from typing import Final

from temporalio.common import SearchAttributeKey

__all__ = [
    "ACTION_ATTRIBUTE",
    "ALL_ATTRIBUTES",
    "OUTCOME_ATTRIBUTE",
    "ROLLOUT_ATTRIBUTE",
    "SET_ATTRIBUTE",
    "WAVE_ATTRIBUTE",
]

ACTION_ATTRIBUTE: Final = SearchAttributeKey.for_keyword("FleetwayAction")
OUTCOME_ATTRIBUTE: Final = SearchAttributeKey.for_keyword("FleetwayOutcome")
ROLLOUT_ATTRIBUTE: Final = SearchAttributeKey.for_keyword("FleetwayRollout")
WAVE_ATTRIBUTE: Final = SearchAttributeKey.for_keyword("FleetwayWave")
SET_ATTRIBUTE: Final = SearchAttributeKey.for_keyword("FleetwaySet")
ALL_ATTRIBUTES: Final = (
    ACTION_ATTRIBUTE,
    OUTCOME_ATTRIBUTE,
    ROLLOUT_ATTRIBUTE,
    WAVE_ATTRIBUTE,
    SET_ATTRIBUTE,
)
