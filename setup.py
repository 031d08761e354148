"""Which packages the wheel holds: every package under the three rooms, found, never listed.

The rest of the build is declared in ``pyproject.toml``. This file exists because setuptools'
declarative ``packages.find`` cannot install a folder under another name: the repository keeps
``activities/``, ``workflows/`` and ``worker/`` at its root, site-packages gets
``fleetway.activities`` and so on (docs/decisions.md, "one fleetway namespace"). A subpackage added
to any room ships without anyone editing a list; ``tests/test_installed_package.py`` proves it on
the built wheel.
"""

from setuptools import find_packages, setup

ROOMS = ("activities", "workflows", "worker")
# The root package ``fleetway`` (the public API, ``from fleetway import ...``) is the one folder
# ``worker/public/``; it is not also ``fleetway.worker.public``.
PUBLIC = "worker/public"
FOUND = find_packages(include=[*ROOMS, *(f"{room}.*" for room in ROOMS)], exclude=["worker.public"])

setup(
    packages=["fleetway", *(f"fleetway.{name}" for name in FOUND)],
    package_dir={"fleetway": PUBLIC, **{f"fleetway.{room}": room for room in ROOMS}},
    # What the installed tool reads at run time: the pinned Flyway jar set (`fleetway flyway install`).
    package_data={"fleetway.worker.flyway": ["pom.xml"]},
)
