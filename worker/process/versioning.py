"""Worker Versioning: the deployment and build a worker polls as, and what its workflows do on an upgrade.

Rollouts are **pinned**: a run stays on the build it started on, so a new build never replays an
old run's history mid-wave (no patch needed for it). A rollout moves to the deployment's current
build only at its continue-as-new, where its children are drained and its state is the carry
(``MigrateAllWorkflow`` asks for ``AUTO_UPGRADE`` there): a long rollout crosses a deploy at a safe
point instead of holding the old build for days. The wave-plan holder is auto-upgrade (it lives as
long as its rollout and only answers reads: ``AutoUpgradingWavePlanWorkflow``), so an old build
drains once the rollout runs it started have ended.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.worker import WorkerDeploymentConfig

from fleetway.worker.config.settings import WorkerConfig

__all__ = ["build_id", "deployment_config"]


def build_id(config: WorkerConfig) -> str:
    """The configured build id, else the installed fleetway's version (what an image was built from)."""
    if config.build_id:
        return config.build_id
    try:
        return version("fleetway")
    except PackageNotFoundError:  # a source tree run without an install
        return "source"


def deployment_config(config: WorkerConfig) -> WorkerDeploymentConfig | None:
    """The worker's Worker Versioning options; None when it joins no deployment (unversioned)."""
    if not config.deployment_name:
        return None
    return WorkerDeploymentConfig(
        version=WorkerDeploymentVersion(deployment_name=config.deployment_name, build_id=build_id(config)),
        use_worker_versioning=True,
        default_versioning_behavior=VersioningBehavior.PINNED,
    )
