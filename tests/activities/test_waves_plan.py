"""Tenant labels, label selectors and the wave planner: the rules, the refusals, the 10,000-tenant bound."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError
from temporalio.testing import ActivityEnvironment

from fleetway.activities.durations import parse_duration_s
from fleetway.activities.errors import (
    InvalidInputError,
    InvalidLabelSelectorError,
    InvalidTenantIdError,
    InvalidTenantLabelError,
    InvalidWavePlanError,
    TenantSourceError,
    from_validation_error,
)
from fleetway.activities.tenants.http import HttpTenantLister
from fleetway.activities.tenants.labels import parse_selector, validate_labels
from fleetway.activities.tenants.static import (
    ListTenantsInput,
    StaticTenantLister,
    TenantSourceActivities,
    load_tenant_entries,
)
from fleetway.activities.tenants.waves import (
    MAX_PLANNED_TENANTS,
    PlanWavesInput,
    WavePlanActivities,
    WaveSpec,
    plan_waves,
)
from fleetway.workflows.migrate_all_models import MigrateAllInput, RolloutCarry, WaveProgress
from tests.control_plane import control_plane

LABELS = {"tier": "enterprise", "region": "eu", "canary": "yes"}


@pytest.mark.parametrize(
    ("selector", "selected"),
    [
        ("tier=enterprise", True),
        ("tier==enterprise", True),
        ("tier!=enterprise", False),
        ("tier != free", True),
        ("region in (eu, us)", True),
        ("region notin (eu,us)", False),
        ("tier=enterprise, region in (us)", False),
        ("canary", True),
        ("!canary", False),
        ("!legacy", True),
        ("legacy!=yes", True),  # a missing key is never equal, so != holds (as in Kubernetes)
        ("legacy in (yes)", False),
    ],
)
def test_selectors_follow_the_kubernetes_grammar(selector: str, selected: bool) -> None:
    assert parse_selector(selector).matches(LABELS) is selected


@pytest.mark.parametrize(
    ("selector", "named"),
    [
        ("", "label selector is empty"),
        ("tier in (a,b", "unbalanced parentheses"),
        ("tier in a,b)", "unbalanced parentheses"),
        ("tier = = x", "cannot read 'tier = = x'"),
        ("Tier=x", "cannot read 'Tier=x'"),
        ("tier in (a,,b)", "'' in 'tier in (a,,b)' is not a valid value"),
        ("tier=x,", "cannot read '(empty term)'"),
        ("x" * 1001, "longer than 1000 characters"),
    ],
)
def test_a_bad_selector_is_named(selector: str, named: str) -> None:
    with pytest.raises(InvalidLabelSelectorError, match=named.replace("(", r"\(").replace(")", r"\)")):
        parse_selector(selector)


@pytest.mark.parametrize(
    ("labels", "named"),
    [
        ({"Tier": "x"}, "label key 'Tier'"),
        ({"tier": ""}, "label 'tier' of tenant 'acme' in test has an invalid value"),
        ({"tier": "a b"}, "has an invalid value"),
        ({"tier": 3}, "has an invalid value"),
        ({"db_password": "hunter2hunter2"}, "names a credential; labels must never carry secrets"),
        ({"api-key": "x"}, "names a credential"),
        ({f"k{i}": "v" for i in range(17)}, "has 17 labels; at most 16"),
        (["tier"], "must be an object of strings"),
    ],
)
def test_labels_are_validated_like_ids_and_never_echo_a_value(labels: object, named: str) -> None:
    with pytest.raises(InvalidTenantLabelError, match=named) as raised:
        validate_labels(labels, tenant="acme", where="in test")
    assert "hunter2" not in str(raised.value)


def test_plan_puts_each_tenant_in_the_first_wave_that_selects_it() -> None:
    fleet = {
        "int1": {"tier": "internal"},
        "a": {"tier": "enterprise", "region": "eu"},
        "b": {"tier": "free", "region": "us"},
        "int2": {"tier": "internal", "region": "eu"},
        "c": {},
        "d": {"region": "eu"},
        "e": {},
        "f": {},
    }
    waves = [
        WaveSpec(name="internal", labels="tier=internal"),
        WaveSpec(name="eu", labels="region=eu"),  # int2 is eu too, but internal took it first
        WaveSpec(name="named", tenants=["f", "int1"]),  # int1 taken already: f only
        WaveSpec(name="one", count=1),
        WaveSpec(name="third", percent=34),  # of the 2 left (c, e): ceil(0.68) = 1
        WaveSpec(name="rest", rest=True),
    ]
    plan = plan_waves(waves, fleet)
    assert [(w.name, w.tenants) for w in plan.waves] == [
        ("internal", ["int1", "int2"]),
        ("eu", ["a", "d"]),
        ("named", ["f"]),
        ("one", ["b"]),
        ("third", ["c"]),
        ("rest", ["e"]),
    ]
    assert (plan.listed, plan.unplanned) == (8, 0)
    without_rest = plan_waves(waves[:2], fleet)
    assert (without_rest.unplanned, without_rest.unplanned_sample) == (4, ["b", "c", "e", "f"])


def test_plan_refuses_ids_the_fleet_does_not_list_and_fleets_past_its_bound() -> None:
    with pytest.raises(InvalidWavePlanError, match="wave 'vip' names tenants the fleet does not list: ghost"):
        plan_waves([WaveSpec(name="vip", tenants=["a", "ghost"])], {"a": {}})
    huge: dict[str, dict[str, str]] = {f"t{i}": {} for i in range(MAX_PLANNED_TENANTS + 1)}
    with pytest.raises(InvalidWavePlanError, match=rf"a wave plan holds at most {MAX_PLANNED_TENANTS}\b"):
        plan_waves([WaveSpec(name="all", rest=True)], huge)


def test_wave_specs_and_plans_refuse_each_mistake_by_name() -> None:
    def mistake(**fields: object) -> str:
        with pytest.raises(ValidationError) as raised:
            WaveSpec.model_validate(fields)
        return str(from_validation_error(raised.value))

    assert "exactly one of labels, tenants, count, percent, rest (it gives none)" in mistake(name="a")
    assert "(it gives labels, rest)" in mistake(name="a", labels="x=y", rest=True)
    assert "give max_failures or max_failure_ratio, not both" in mistake(
        name="a", rest=True, max_failures=1, max_failure_ratio=0.1
    )
    assert "a wave's tenants must not repeat an id" in mistake(name="a", tenants=["x", "x"])
    assert "tenant id in the wave's tenants is invalid: 'bad id'" in mistake(name="a", tenants=["bad id"])
    assert "bake_s: Input should be less than or equal to 2592000" in mistake(
        name="a", rest=True, bake_s="31d"
    )
    assert "surprise: Extra inputs are not permitted" in mistake(name="a", rest=True, surprise=1)
    with pytest.raises(ValidationError, match="wave name 'a' is used twice"):
        MigrateAllInput(waves=[WaveSpec(name="a", count=1), WaveSpec(name="a", rest=True)])
    with pytest.raises(ValidationError, match="at most 20 waves"):
        MigrateAllInput(waves=[WaveSpec(name=f"w{i}", count=1) for i in range(21)])
    assert [parse_duration_s(v) for v in (90, "90", "90s", "30m", "2h", "1d", "1h30m")] == [
        90, 90, 90, 1800, 7200, 86400, 5400,
    ]  # fmt: skip
    for bad in ("soon", "1.5h", "-5", True, "h", -5):
        with pytest.raises(InvalidInputError, match="is not a number of seconds or like 90s"):
            parse_duration_s(bad)
    with pytest.raises(ValidationError, match=r"bake '1\.5h' is not"):
        WaveSpec(name="a", rest=True, bake_s="1.5h")


def test_a_plan_for_ten_thousand_tenants_fits_one_payload_and_one_carry() -> None:
    """The bound the workflow relies on: the plan's ids, once in a result and once in the carry."""
    fleet = {f"tenant-{i:05d}": {"tier": "internal" if i % 100 == 0 else "standard"} for i in range(10_000)}
    waves = [
        WaveSpec(name="internal", labels="tier=internal", gate=True),
        WaveSpec(name="canary", percent=5, bake_s="1h"),
        WaveSpec(name="rest", rest=True),
    ]
    plan = plan_waves(waves, fleet)
    assert [len(w.tenants) for w in plan.waves] == [100, 495, 9405]
    result_bytes = len(plan.model_dump_json())
    carry = RolloutCarry(
        waves=[WaveProgress(name=w.name, planned=len(w.tenants)) for w in plan.waves],
        wave_pending=[w.tenants for w in plan.waves],
    )
    carry_bytes = len(carry.model_dump_json())
    # ~18 bytes per id: 10,000 tenants take ~180 kB, a tenth of Temporal's 2 MB payload limit.
    assert result_bytes < 250_000 and carry_bytes < 250_000, (result_bytes, carry_bytes)
    assert "tier" not in plan.model_dump_json()  # ids only: labels never reach workflow history


async def test_labels_leave_a_worker_only_for_the_planner(tmp_path: Path) -> None:
    lister = StaticTenantLister(["a", "b"], {"a": {"tier": "internal"}})
    activities = TenantSourceActivities({"default": lister})
    plain = await activities.list_tenants_page(ListTenantsInput())
    labelled = await activities.list_tenants_page(ListTenantsInput(with_labels=True))
    assert (plain.tenant_ids, plain.labels) == (["a", "b"], {})
    assert labelled.labels == {"a": {"tier": "internal"}}
    with pytest.raises(TenantSourceError, match="labels given for tenants not in the list: ghost"):
        StaticTenantLister(["a"], {"ghost": {"tier": "x"}})
    planner = WavePlanActivities({"default": lister})
    plan = await ActivityEnvironment().run(
        planner.plan_waves,
        PlanWavesInput(waves=[WaveSpec(name="int", labels="tier=internal"), WaveSpec(name="r", rest=True)]),
    )
    assert [w.tenants for w in plan.waves] == [["a"], ["b"]]
    # An explicit list (or a rerun) decides who runs; the source only lends labels.
    narrowed = await ActivityEnvironment().run(
        planner.plan_waves,
        PlanWavesInput(
            waves=[WaveSpec(name="int", labels="tier=internal"), WaveSpec(name="r", rest=True)],
            restrict_to=["b"],
        ),
    )
    assert [w.tenants for w in narrowed.waves] == [[], ["b"]]


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("t.txt", "# fleet\nacme tier=enterprise region=eu\nglobex\n"),
        (
            "t.json",
            json.dumps(
                {"tenants": [{"id": "acme", "labels": {"tier": "enterprise", "region": "eu"}}, "globex"]}
            ),
        ),
        ("t.yaml", "tenants:\n  acme: {tier: enterprise, region: eu}\n  globex:\n"),
    ],
)
def test_tenants_files_carry_labels_in_each_format(tmp_path: Path, name: str, text: str) -> None:
    (tmp_path / name).write_text(text)
    assert load_tenant_entries(tmp_path / name) == {
        "acme": {"tier": "enterprise", "region": "eu"},
        "globex": {},
    }


def test_tenants_file_label_mistakes_are_named(tmp_path: Path) -> None:
    (path := tmp_path / "t.txt").write_text("acme tier\n")  # not "id key=value": the line is one (bad) id
    with pytest.raises(InvalidTenantIdError, match="'acme tier'"):
        load_tenant_entries(path)
    path.write_text("acme secret_token=abc\n")
    with pytest.raises(InvalidTenantLabelError, match="names a credential"):
        load_tenant_entries(path)
    (path := tmp_path / "t.json").write_text(json.dumps([{"id": "a", "labels": {}, "extra": 1}]))
    with pytest.raises(TenantSourceError, match="is neither an id nor"):
        load_tenant_entries(path)


async def test_the_http_source_reads_optional_labels_and_refuses_bad_ones() -> None:
    def body(entries: list[dict[str, object]]) -> bytes:
        return json.dumps({"data": {"tenants": entries, "next_cursor": None}}).encode()

    good = body([{"id": "acme", "labels": {"tier": "enterprise"}}, {"id": "globex"}])
    bad = body([{"id": "acme", "labels": {"tier": "x y"}}])
    with control_plane() as plane:
        plane.handler = lambda path, query, headers: (200, {"Content-Type": "application/json"}, good)
        lister = HttpTenantLister(plane.url + "/api", allow_http_loopback=True)
        page = await lister.list_page(None, 10)
        plane.handler = lambda path, query, headers: (200, {"Content-Type": "application/json"}, bad)
        with pytest.raises(
            InvalidTenantLabelError, match="label 'tier' of tenant 'acme' in the tenant source's page"
        ):
            await lister.list_page(None, 10)
    assert (page.tenant_ids, page.labels) == (["acme", "globex"], {"acme": {"tier": "enterprise"}})
