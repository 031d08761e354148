"""The benchmark stays runnable: a tiny run of every phase on its own embedded stack. Figures are not
asserted (speed targets live in the benchmark's report, not in tests); shape and sanity are."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from fleetway.worker.dev.stack import PROJECT_ROOT


def test_bench_runs_every_phase_and_writes_its_report(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.run",
            "--tenants",
            "2",
            "--parallelism",
            "1,2",
            "--warmup",
            "1",
            "--startup-runs",
            "1",
            "--engines",
            "jvm",  # the phases are the same code per engine; the CLI engine's runs are the slow part
            "--activity-path",
            "--out",
            str(tmp_path),
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads((tmp_path / "latest.json").read_text())
    phases = {(p["name"], p["action"]): p for p in data["phases"] if p["parallelism"] == 2}
    assert sorted({p["parallelism"] for p in data["phases"]}) == [1, 2]  # the sweep ran each level
    assert set(phases) == {
        (name, action)
        for name in ("baseline-xargs", "raw-jvm", "fleetway-jvm", "fleetway-jvm-activity")
        for action in ("migrate", "validate")
    } | {("fleetway-jvm-default", "validate")}  # a user's validate: the tables read first
    assert phases[("fleetway-jvm-default", "validate")]["proven_current"] == 2
    assert all(p["failures"] == 0 and p["tenants"] == 2 for p in phases.values())
    assert phases[("fleetway-jvm", "migrate")]["worker_peak_rss_mb"] > 0
    assert all(n < 10_000 for n in phases[("fleetway-jvm", "migrate")]["parent_history_events"])
    for name in ("fleetway-jvm", "fleetway-jvm-activity"):  # both paths, each with its CPU per tenant
        assert (
            phases[(name, "migrate")]["worker_cpu_ms"] > 0 and phases[(name, "migrate")]["server_cpu_ms"] > 0
        )
    assert set(data["cli_jvm_startup_median_ms"]) == {"default_flags", "tuned_flags", "tuned_flags_appcds"}
    assert "| fleetway-jvm | migrate | 2 |" in (tmp_path / "latest.md").read_text()
    assert set(data["fleetway_vs_raw_engine"]) == {
        f"{action} at P={level}: fleetway-{engine} wall / raw-{engine} wall"
        for level in (1, 2)
        for action in ("migrate", "validate")
        for engine in ("jvm",)
    } | {
        f"{action} at P={level}: fleetway-jvm-activity wall / raw-jvm wall"
        for level in (1, 2)
        for action in ("migrate", "validate")
    }
    assert all(ratio > 0 for ratio in data["fleetway_vs_raw_engine"].values())
    # What each rollout cost in Temporal actions, counted from its histories, and the projection.
    migrate = phases[("fleetway-jvm", "migrate")]
    assert migrate["action_kinds"]["child start"] == 2 and migrate["actions_per_tenant"] >= 2
    cost = data["temporal_cost"]["fleetway-jvm: per tenant with work (migrate)"]
    assert cost["projected_actions_100k"] == round(migrate["actions_per_tenant"] * 100_000)
    assert "| Temporal actions |" in (tmp_path / "latest.md").read_text()


def test_the_noop_bench_on_a_fleets_own_set_proves_every_tenant_current_after_its_releases(
    tmp_path: Path,
) -> None:
    """A tiny ``--noop`` run on a user's folder (``--migrations``, ``--placeholder``) whose repeatable
    names the tenant: after the repeatable's two edits the fast path still proves every tenant current,
    the full path runs Flyway."""
    own = tmp_path / "own-set"
    own.mkdir()
    (own / "V1__accounts.sql").write_text("CREATE TABLE accounts (id int);")
    (own / "V1_1__plans.sql").write_text("CREATE TABLE plans (id int);")
    (own / "R__who.sql").write_text(
        "CREATE OR REPLACE VIEW who AS SELECT '${tenant_id}'::text t, '${region}'::text r;"
    )
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--noop", "6", "--noop-full", "2", "--out", str(tmp_path),
         "--migrations", str(own), "--placeholder", "region=eu"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads((tmp_path / "noop.json").read_text())
    phases = data["phases"]
    assert data["releases"] == ["first release", "R__who.sql edited (1)", "R__who.sql edited (2)"]
    assert phases["fast validate"]["current"] == phases["fast migrate"]["current"] == 6
    assert phases["fast migrate"]["flyway_runs"] == 0 and phases["full migrate"]["flyway_runs"] == 2
    assert "child start" not in phases["fast migrate"]["action_kinds"]  # proven current: no child
    assert phases["full migrate"]["action_kinds"]["child start"] == 2
    assert (
        phases["fleet read"]["current"] == phases["wait poll"]["current"] == 6
        and data["worker_peak_rss_mb"] > 0
    )
    assert "| fast validate | 6 |" in (tmp_path / "noop.md").read_text()


def test_the_report_gives_the_cost_of_per_server_dispatch_against_the_same_rollout_without() -> None:
    from types import SimpleNamespace

    from bench.run import Phase, markdown, report

    phases = [
        Phase("fleetway-jvm", "migrate", 100, 105.0, [1.0], parallelism=8),
        Phase("fleetway-jvm-no-servers", "migrate", 100, 100.0, [1.0], parallelism=8),
    ]
    bench = SimpleNamespace(
        phases=phases,
        args=SimpleNamespace(tenants=100),
        stack=SimpleNamespace(flyway=SimpleNamespace(version="x")),
    )
    data = report(bench, None, [8])  # type: ignore[arg-type]
    key = "migrate: fleetway-jvm wall / fleetway-jvm-no-servers wall"
    assert data["per_server_dispatch_cost"] == {key: 1.05} and data["fleetway_vs_raw_engine"] == {}
    assert f"| {key} (target ≤ 1.05) | 1.05\N{MULTIPLICATION SIGN} |" in markdown(data)
