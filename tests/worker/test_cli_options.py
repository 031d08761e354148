"""Each rollout verb offers exactly the options it uses; the CLI's modules stay small."""

from __future__ import annotations

import pytest
import typer

from fleetway.worker.cli.main import app
from fleetway.worker.dev.stack import PROJECT_ROOT

pytestmark = pytest.mark.fast

_VERB_ONLY = {
    "migrate": {"--target", "--out-of-order", "--dry-run", "--baseline-reference", "--skip-current",
                "--skip-callbacks-when-current"},
    "validate": {"--skip-current", "--skip-callbacks-when-current"},
    "info": set(),
    "repair": {"--dry-run"},
    "baseline": {"--dry-run", "--baseline-version", "--baseline-reference"},
}  # fmt: skip
_SPECIFIC = set().union(*_VERB_ONLY.values())


def _options(verb: str) -> set[str]:
    sub = typer.main.get_command(app).commands[verb]  # type: ignore[attr-defined]
    return {opt for p in sub.params for opt in (*p.opts, *p.secondary_opts) if opt.startswith("--")}


@pytest.mark.parametrize("verb", sorted(_VERB_ONLY))
def test_a_verb_offers_its_own_options_and_none_it_would_ignore(verb: str) -> None:
    offered = _options(verb)
    assert offered & _SPECIFIC - {"--no-skip-current"} == _VERB_ONLY[verb]
    assert {"--tenant", "--parallelism", "--wave", "--principal", "--rollout-id"} <= offered


def test_no_module_of_the_cli_or_the_library_is_over_300_lines() -> None:
    long = {
        str(path.relative_to(PROJECT_ROOT)): n
        for folder in ("worker/cli", "worker/client")
        for path in (PROJECT_ROOT / folder).glob("*.py")
        if (n := len(path.read_text().splitlines())) > 300
    }
    assert long == {}
