"""Fault loops against a real stack, judged by ``flyway_schema_history`` (not by our own result).

``./dev faults [--tenants 100] [--parallelism 8] [--engines cli,jvm] [--kill-every 3,6] [--max-kills N]``

For each engine: a fresh fleet of N schemas, a real ``fleetway worker`` process, one
``MigrateAllWorkflow``; every few seconds the worker is killed with SIGKILL and a new one started
at once, until the rollout ends. Then every tenant's table is read and compared with the report.
Prints kills survived, wall time, how long Flyway processes outlived a killed worker, and every
misreported tenant. The test suite runs the same loop (``tests/workflows/test_faults.py``) at 50
tenants; this script repeats it at any size. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from fleetway.worker.dev.stack import dev_stack
from tests.fleet import make_fleet
from tests.kill_loop import fault_migrations, kill_loop


async def _main(args: argparse.Namespace) -> int:
    reports = []
    with tempfile.TemporaryDirectory(prefix="fleetway-faults-") as scratch:
        async with dev_stack() as stack:
            for engine in args.engines.split(","):
                fleet = make_fleet(stack.postgres, args.tenants)
                fleet.locations = fault_migrations(Path(scratch) / engine, sleep_s=args.script_sleep)
                env = fleet.cli_env(stack.temporal.address, Path(scratch), stack.flyway)
                low, high = (float(x) for x in args.kill_every.split(","))
                report = await kill_loop(
                    fleet, env, engine=engine, parallelism=args.parallelism,
                    kill_every=(low, high), max_kills=args.max_kills, seed=args.seed,
                )  # fmt: skip
                print(report.line(), flush=True)
                for tenant, problems in sorted(report.misreported.items())[:20]:
                    print(f"  {tenant}: {'; '.join(problems)}", flush=True)
                reports.append(report)
    if args.json:
        print(json.dumps([asdict(r) for r in reports], indent=2))
    return 0 if all(not r.misreported and r.status == "succeeded" for r in reports) else 1


def main() -> None:
    """Parse arguments, run the loops, exit 0 only when every report is the tables' truth."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tenants", type=int, default=100)
    parser.add_argument("--parallelism", type=int, default=8)
    parser.add_argument("--engines", default="cli,jvm")
    parser.add_argument("--kill-every", default="3,6", help="seconds between kills: low,high (uniform)")
    parser.add_argument("--max-kills", type=int, default=None, help="stop killing after this many")
    parser.add_argument("--script-sleep", type=float, default=0.5, help="seconds V6 holds its transaction")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="also print the reports as JSON")
    status = asyncio.run(_main(parser.parse_args()))
    sys.stdout.flush()
    os._exit(status)  # temporalio/sdk-python#300: no interpreter teardown after the work


if __name__ == "__main__":
    main()
