"""One tenant's Flyway run, as its rollout decided it: built once, carried unchanged to the engine.

The rollout builds a :class:`FlywayRequest` per tenant (``workflows/tenant_dispatch.py``), the
tenant's child hands it as it is to the ``run_flyway`` activity, and the activity hands it to the
engine. Each value has this one name on the whole route. Only references travel: the activity
resolves the tenant's credentials and migration set itself.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from fleetway.activities.flyway.options import FlywayOptions, needs_current_build
from fleetway.activities.flyway.output import Action
from fleetway.activities.wire import WIRE_MODEL

__all__ = ["FlywayRequest"]


class FlywayRequest(BaseModel):
    """Which verb, for which tenant, with which set, options and budget.

    The wire shape is the ``run_flyway`` activity's input of earlier builds (``RunFlywayInput``),
    field for field, so an activity scheduled by an older rollout decodes unchanged.

    Attributes:
        tenant_id: the tenant; also the ``${tenant_id}`` placeholder. "" only for an engine used
            as a library on one database (the activity refuses it by name).
        secrets_backend: the backend that resolves the tenant's credentials.
        tenant_source: the rollout's tenant source, asked for the tenant's labels when the set
            uses ``${label.KEY}`` placeholders.
        installed_by: the rollout's history marker, recorded in ``flyway_schema_history`` with
            every script a migrate or baseline applies ("" for other verbs: the database user).
        migration_set: the digest of the set to run (``sha256:<hex>``); a worker that cannot
            produce exactly that set refuses, retryably, without running anything. "": the
            worker's own set.
        pinned_secrets: the description of the backend the rollout pinned; a worker whose backend
            differs refuses retryably (``worker_config_mismatch``). "": none pinned.
        timeout_s: the run's budget, the one the child sized its activity timeout from, so a
            worker's default can never outlast it; 0: the engine's ``flyway.timeout_s``.
        retry_budget_s: seconds from the first attempt within which a retryable failure is left
            to Temporal to retry; past it the failure is final (0: no budget).
        with_info: for validate, also run ``info`` in the same attempt (the drift read).
        flyway: target, hotfix, placeholders, baseline version.
    """

    model_config = WIRE_MODEL

    action: Action
    tenant_id: str = Field(default="", max_length=128)
    secrets_backend: str = "default"
    tenant_source: str = "default"
    installed_by: str = ""
    migration_set: str = ""
    pinned_secrets: str = ""
    timeout_s: int = Field(default=0, ge=0)
    retry_budget_s: int = Field(default=0, ge=0)
    with_info: bool = False
    flyway: FlywayOptions = FlywayOptions()

    @property
    def needs_current_build(self) -> bool:
        """Whether an older build, which knows neither the options nor baseline/repair, must not run it."""
        return needs_current_build(self.action, self.flyway)
