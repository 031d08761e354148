"""The CLI's exit codes: one per family of error, documented where pipelines read them."""

from __future__ import annotations

import re

import pytest

from fleetway.activities import errors
from fleetway.worker.cli.exit_codes import ExitCode, exit_code_for_error
from fleetway.worker.dev.stack import PROJECT_ROOT

pytestmark = pytest.mark.fast


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.InvalidTenantIdError("bad id"), ExitCode.USAGE),
        (errors.InvalidWavePlanError("two rest waves"), ExitCode.USAGE),
        (errors.MigrationSetInvalidError("no folder"), ExitCode.USAGE),
        (errors.RolloutNotFoundError("no rollout"), ExitCode.NOT_FOUND),
        (errors.RolloutIdReusedError("used"), ExitCode.REFUSED),
        (errors.ApprovalNotPendingError("nothing waits"), ExitCode.REFUSED),
        (errors.OutOfOrderRefusedError("above"), ExitCode.REFUSED),
        (errors.QuiesceNotSetError("no flag"), ExitCode.REFUSED),
        (errors.TemporalUnavailableError("refused"), ExitCode.UNAVAILABLE),
        (errors.WorkerUnavailableError("no poller"), ExitCode.UNAVAILABLE),
        (errors.TenantSourceUnavailableError("HTTP 503"), ExitCode.UNAVAILABLE),
        (errors.QuiesceBackendError("down"), ExitCode.UNAVAILABLE),
        (errors.TenantSourceError("not JSON"), ExitCode.FAILED),
        (errors.SecretNotFoundError("no secret"), ExitCode.FAILED),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else v.name,
)
def test_each_family_has_its_exit_code(error: errors.FleetwayError, code: ExitCode) -> None:
    assert exit_code_for_error(error) is code


def test_the_exit_codes_are_the_ones_the_docs_publish() -> None:
    text = (PROJECT_ROOT / "docs" / "rollouts.md").read_text()
    published = {int(n) for n in re.findall(r"^\| \*\*(\d+)\*\* \|", text, flags=re.M)}
    assert published == {int(c) for c in ExitCode}
