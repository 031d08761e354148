"""The library under the CLI: a typed client for rollouts, their steering and the fleet's state.

Imported as ``from fleetway import FleetwayClient, ...`` (``worker/public/__init__.py``); the CLI
(``worker/cli/``) is one of its users, tests and the benchmark are others.
"""
