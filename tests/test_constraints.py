"""The lock is complete: every distribution installed in this environment is pinned in constraints.txt
at exactly the installed version, so a fresh ``./dev setup`` months from now resolves what CI tested."""

from __future__ import annotations

import re
from importlib import metadata

from fleetway.worker.dev.stack import PROJECT_ROOT

# Installed by the venv itself or being the project under test, not by the constraints.
_NOT_LOCKED = {"fleetway", "pip", "setuptools", "wheel"}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_installed_distribution_is_pinned_at_its_installed_version() -> None:
    pins = {}
    for raw in PROJECT_ROOT.joinpath("constraints.txt").read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"not an exact pin: {line!r}"
            pins[_canonical(name)] = version
    installed = {
        _canonical(d.metadata["Name"]): d.version
        for d in metadata.distributions()
        if _canonical(d.metadata["Name"]) not in _NOT_LOCKED
    }
    assert len(installed) > 50  # the real environment, not an empty one
    unpinned = sorted(set(installed) - set(pins))
    assert not unpinned, f"installed but not in constraints.txt: {unpinned}"
    differ = {n: (v, pins[n]) for n, v in installed.items() if pins[n] != v}
    assert not differ, f"installed vs pinned: {differ}"
