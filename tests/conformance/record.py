"""Record conformance cases for the fast tier: ``python -m tests.conformance.record [SEED]``.

Builds a generated fleet on the embedded PostgreSQL with real Flyway, keeps cases whose verdicts
agreed (a small set each, a spread of verdicts) and writes them to ``recorded.json`` beside this file.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from fleetway.activities.flyway.contract import FlywaySettings
from fleetway.activities.flyway.jvm_engine import JvmFlywayEngine
from fleetway.worker.dev.stack import PostgresServer, ensure_flyway
from tests.conformance.run import conformance_run

_PER_VERDICT = 8
_MAX_FILES = 40


async def _record(seed: int) -> list[dict[str, Any]]:
    postgres = PostgresServer()
    postgres.start()
    try:
        engine = JvmFlywayEngine(ensure_flyway(), FlywaySettings(), max_threads=8)
        with tempfile.TemporaryDirectory(prefix="fleetway-record-") as work:
            report = await conformance_run(
                postgres, engine, Path(work), seed=seed, families=12, members=10, record=True
            )
    finally:
        postgres.stop()
    print(report.summary(), file=sys.stderr)
    by_word: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for case in report.recorded or []:
        flyway = case["flyway"]
        kind = ",".join(
            k for k in ("failed", "tampered", "ahead", "outdated", "ignored", "pending") if flyway[k]
        )
        if len(case["files"]) <= _MAX_FILES and len(by_word[kind]) < _PER_VERDICT:
            by_word[kind].append(case)
    return [case for kind in sorted(by_word) for case in by_word[kind]]


def _shared_sets(cases: list[dict[str, Any]]) -> dict[str, Any]:
    """The cases with each set's files stored once (tenants of a family share them)."""
    sets: dict[str, dict[str, str]] = {}
    for case in cases:
        files = case.pop("files")
        digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:16]
        sets[digest] = files
        case["set"] = digest
    return {"sets": sets, "cases": cases}


def main() -> int:
    """Record and write; the exit is hard, as every fleetway process's (temporalio/sdk-python#300)."""
    seed = int(sys.argv[1]) if len(sys.argv) > 1 else 20261206
    cases = asyncio.run(_record(seed))
    recorded = _shared_sets(cases)
    Path(__file__).with_name("recorded.json").write_text(json.dumps(recorded, sort_keys=True) + "\n")
    print(f"recorded {len(cases)} cases from seed {seed}", file=sys.stderr)
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
