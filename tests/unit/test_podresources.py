"""Effective pod requests: field cases C09, C11, C12, C13, C17, sidecars, pod-level resources."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_sched.core.podresources import PodSpecError, parse_resource_list, pod_requests

MI = 2**20


def ctr(
    requests: dict[str, Any] | None = None,
    limits: dict[str, Any] | None = None,
    **extra: object,
) -> dict[str, Any]:
    resources: dict[str, Any] = {}
    if requests is not None:
        resources["requests"] = requests
    if limits is not None:
        resources["limits"] = limits
    return {"name": "c", "resources": resources, **extra}


def sidecar(requests: dict[str, Any]) -> dict[str, Any]:
    return ctr(requests, restartPolicy="Always")


def pod(
    containers: list[Any],
    init: list[Any] | None = None,
    overhead: dict[str, Any] | None = None,
    resources: dict[str, Any] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": containers}
    if init is not None:
        spec["initContainers"] = init
    if overhead is not None:
        spec["overhead"] = overhead
    if resources is not None:
        spec["resources"] = resources
    return {"metadata": {"name": "p", "namespace": "default"}, "spec": spec}


def problems_of(obj: object) -> list[str]:
    with pytest.raises(PodSpecError) as info:
        pod_requests(obj)  # type: ignore[arg-type]  # wrong shapes are the point
    assert str(info.value) == "; ".join(info.value.problems)
    return info.value.problems


# --- C09: init containers are a per-resource maximum ----------------------------------


def test_c09_init_containers_per_resource_maximum_plus_overhead() -> None:
    p = pod(
        [ctr({"cpu": "100m", "memory": "64Mi"}), ctr({"cpu": "200m", "memory": "64Mi"})],
        init=[ctr({"cpu": "500m", "memory": "32Mi"}), ctr({"cpu": "250m", "memory": "256Mi"})],
        overhead={"cpu": "50m", "memory": "16Mi"},
    )
    assert pod_requests(p) == {"cpu": 550, "memory": 285_212_672}
    assert 272 * MI == 285_212_672


def test_init_smaller_than_app_does_not_change_the_sum() -> None:
    p = pod([ctr({"cpu": "1"}), ctr({"cpu": "1"})], init=[ctr({"cpu": "1500m"})])
    assert pod_requests(p) == {"cpu": 2000}


def test_resource_only_in_init_containers_counts() -> None:
    p = pod([ctr({"cpu": "100m"})], init=[ctr({"ephemeral-storage": "1Gi"})])
    assert pod_requests(p) == {"cpu": 100, "ephemeral-storage": 2**30}


# --- C11: overhead, and limits-only containers ----------------------------------------


def test_c11_limits_become_requests_and_overhead_is_added_once() -> None:
    p = pod(
        [
            ctr(limits={"cpu": "500m", "memory": "100Mi"}),
            ctr(limits={"cpu": "1500m", "memory": "100Mi"}),
        ],
        overhead={"cpu": "250m", "memory": "120Mi"},
    )
    assert pod_requests(p) == {"cpu": 2250, "memory": 335_544_320}
    assert 320 * MI == 335_544_320


def test_c11_variant_request_wins_over_limit() -> None:
    assert pod_requests(pod([ctr({"cpu": "100m"}, {"cpu": "2"})])) == {"cpu": 100}


def test_limit_fills_only_the_resources_requests_lack() -> None:
    p = pod([ctr({"cpu": "100m"}, {"cpu": "2", "memory": "1Gi"})])
    assert pod_requests(p) == {"cpu": 100, "memory": 2**30}


def test_explicit_zero_request_is_not_replaced_by_the_limit() -> None:
    assert pod_requests(pod([ctr({"cpu": "0"}, {"cpu": "2"})])) == {}


def test_null_quantity_is_a_set_zero_as_in_go() -> None:
    assert pod_requests(pod([ctr({"cpu": None}, {"cpu": "2"})])) == {}


def test_limits_only_init_container() -> None:
    p = pod([ctr({"cpu": "100m"})], init=[ctr(limits={"cpu": "1"})])
    assert pod_requests(p) == {"cpu": 1000}


def test_overhead_alone_counts() -> None:
    assert pod_requests(pod([], overhead={"cpu": "250m"})) == {"cpu": 250}


# --- C12: extended resources ----------------------------------------------------------


def test_c12a_gpu_in_limits_only_requests_one() -> None:
    assert pod_requests(pod([ctr(limits={"nvidia.com/gpu": "1"})])) == {"nvidia.com/gpu": 1}
    node_a = parse_resource_list({"cpu": "4", "memory": "8Gi"}, "status.allocatable")
    node_b = parse_resource_list({"cpu": "4", "nvidia.com/gpu": "2"}, "status.allocatable")
    assert "nvidia.com/gpu" not in node_a
    assert node_b["nvidia.com/gpu"] == 2


def test_c12b_count_resource_written_as_10g_is_ten_billion() -> None:
    p = pod([ctr(limits={"aliyun.com/gpu-mem": "10G"})])
    assert pod_requests(p) == {"aliyun.com/gpu-mem": 10_000_000_000}


def test_c12c_fractional_gpu_is_rejected_naming_the_field() -> None:
    p = pod([ctr({"cpu": "1"}), ctr(limits={"nvidia.com/gpu": "500m"})])
    assert problems_of(p) == [
        "spec.containers[1].resources.limits.nvidia.com/gpu: '500m': "
        "extended resources must be whole numbers"
    ]


def test_gpus_sum_across_containers_and_take_init_maximum() -> None:
    p = pod(
        [ctr(limits={"nvidia.com/gpu": "1"}), ctr(limits={"nvidia.com/gpu": "1"})],
        init=[ctr(limits={"nvidia.com/gpu": "3"})],
    )
    assert pod_requests(p) == {"nvidia.com/gpu": 3}


# --- C13 / C17 through a pod: exact sums, rounded once --------------------------------


def test_c13_fractional_cpu_forms() -> None:
    assert pod_requests(pod([ctr({"cpu": "0.5"})])) == {"cpu": 500}
    assert pod_requests(pod([ctr({"cpu": "1.5"})])) == {"cpu": 1500}
    assert pod_requests(pod([ctr({"cpu": "100m"})])) == {"cpu": 100}
    assert pod_requests(pod([ctr({"cpu": "608u"})])) == {"cpu": 1}
    assert pod_requests(pod([ctr({"cpu": "95647727n"})])) == {"cpu": 96}
    assert pod_requests(pod([ctr({"cpu": "0.1m"})])) == {"cpu": 1}


def test_sums_are_exact_and_rounded_once_like_kube_scheduler() -> None:
    # Two 0.1m containers are 0.2m: 1 millicore, not 2.
    assert pod_requests(pod([ctr({"cpu": "0.1m"}), ctr({"cpu": "0.1m"})])) == {"cpu": 1}
    # Ten 0.1m containers are exactly 1m.
    assert pod_requests(pod([ctr({"cpu": "0.1m"})] * 10)) == {"cpu": 1}
    # Two half bytes are one byte.
    assert pod_requests(pod([ctr({"memory": "500m"})] * 2)) == {"memory": 1}


def test_sub_nano_amounts_round_up_per_quantity_as_apimachinery_parses() -> None:
    # "0.5n" parses as 1n, so three of them are 3n (still 1 millicore after rounding).
    assert pod_requests(pod([ctr({"cpu": "0.5n"})] * 3)) == {"cpu": 1}


def test_c17_memory_milli_is_half_a_byte() -> None:
    assert pod_requests(pod([ctr({"memory": "500m"})])) == {"memory": 1}
    assert pod_requests(pod([ctr({"memory": "100M"})])) == {"memory": 100_000_000}
    assert pod_requests(pod([ctr({"memory": "100Mi"})])) == {"memory": 104_857_600}


@pytest.mark.parametrize("text", ["16g", "1K", "1ki", "k", "1e3Mi", " 1Gi"])
def test_c16_c17_bad_quantities_are_problems(text: str) -> None:
    [problem] = problems_of(pod([ctr({"memory": text})]))
    assert problem.startswith(f"spec.containers[0].resources.requests.memory: {text!r}: ")


def test_negative_request_is_a_problem() -> None:
    assert problems_of(pod([ctr({"cpu": "-1"})])) == [
        "spec.containers[0].resources.requests.cpu: '-1': must not be negative"
    ]


def test_bare_json_numbers_are_quantities_as_in_go() -> None:
    assert pod_requests(pod([ctr({"cpu": 2, "memory": 1.5})])) == {"cpu": 2000, "memory": 2}
    assert pod_requests(pod([ctr({"cpu": 0.25})])) == {"cpu": 250}


# --- Sidecars (restartable init containers) -------------------------------------------


def test_sidecar_adds_to_steady_state_and_is_running_during_later_inits() -> None:
    # steady = 100m + 50m = 150m; init-time of the 200m init = 200m + 50m = 250m.
    p = pod([ctr({"cpu": "100m"})], init=[sidecar({"cpu": "50m"}), ctr({"cpu": "200m"})])
    assert pod_requests(p) == {"cpu": 250}


def test_init_before_sidecar_does_not_run_alongside_it() -> None:
    p = pod([ctr({"cpu": "100m"})], init=[ctr({"cpu": "200m"}), sidecar({"cpu": "50m"})])
    assert pod_requests(p) == {"cpu": 200}


def test_sidecars_accumulate() -> None:
    p = pod(
        [ctr({"cpu": "100m", "memory": "1Gi"})],
        init=[sidecar({"cpu": "1"}), sidecar({"cpu": "1"}), ctr({"cpu": "1", "memory": "2Gi"})],
    )
    # steady cpu 2100m vs init-time 3000m; memory steady 1Gi vs init-time 2Gi.
    assert pod_requests(p) == {"cpu": 3000, "memory": 2 * 2**30}


def test_sidecar_with_limits_only() -> None:
    p = pod([ctr({"cpu": "1"})], init=[ctr(limits={"cpu": "1"}, restartPolicy="Always")])
    assert pod_requests(p) == {"cpu": 2000}


@pytest.mark.parametrize("policy", [None, "Never", "OnFailure", "always", 1])
def test_only_restart_policy_always_makes_a_sidecar(policy: object) -> None:
    p = pod([ctr({"cpu": "1"})], init=[ctr({"cpu": "500m"}, restartPolicy=policy)])
    assert pod_requests(p) == {"cpu": 1000}


# --- Pod-level resources (PodLevelResources) ------------------------------------------


def test_pod_level_requests_replace_the_container_aggregate() -> None:
    p = pod(
        [ctr({"cpu": "100m", "memory": "64Mi", "nvidia.com/gpu": "1"})],
        overhead={"cpu": "10m"},
        resources={"requests": {"cpu": "2", "memory": "1Gi"}},
    )
    assert pod_requests(p) == {"cpu": 2010, "memory": 2**30, "nvidia.com/gpu": 1}


def test_pod_level_limits_only_request_the_limit_when_containers_do_not() -> None:
    p = pod([ctr()], resources={"limits": {"cpu": "2", "memory": "1Gi"}})
    assert pod_requests(p) == {"cpu": 2000, "memory": 2**30}


def test_pod_level_limit_keeps_the_containers_aggregate_when_they_request() -> None:
    p = pod([ctr({"cpu": "300m"})], resources={"limits": {"cpu": "2", "memory": "1Gi"}})
    assert pod_requests(p) == {"cpu": 300, "memory": 2**30}


def test_pod_level_hugepages_limit_is_the_request() -> None:
    p = pod([ctr({"hugepages-2Mi": "2Mi"})], resources={"limits": {"hugepages-2Mi": "8Mi"}})
    assert pod_requests(p) == {"hugepages-2Mi": 8 * MI}


def test_pod_level_ignores_unsupported_resources() -> None:
    p = pod([ctr({"nvidia.com/gpu": "1"})], resources={"requests": {"nvidia.com/gpu": "4"}})
    assert pod_requests(p) == {"nvidia.com/gpu": 1}


def test_pod_level_request_wins_over_pod_level_limit() -> None:
    p = pod([], resources={"requests": {"cpu": "1"}, "limits": {"cpu": "2"}})
    assert pod_requests(p) == {"cpu": 1000}


# --- Tolerance: nulls, missing fields, wrong shapes -----------------------------------


@pytest.mark.parametrize(
    "obj",
    [
        {},
        {"spec": None},
        {"spec": {}},
        {"spec": {"containers": None, "initContainers": None, "overhead": None, "resources": None}},
        {"spec": {"containers": [{"resources": None}]}},
        {"spec": {"containers": [{"resources": {"requests": None, "limits": None}}]}},
        {"spec": {"containers": [{"name": "c"}]}},
    ],
)
def test_missing_and_null_fields_mean_no_request(obj: dict[str, Any]) -> None:
    assert pod_requests(obj) == {}


def test_every_problem_is_collected_with_its_path() -> None:
    p = {
        "spec": {
            "containers": [
                ctr({"cpu": "1K"}),
                "oops",
                {"resources": []},
                ctr({"memory": True}, {"example.com/fpga": "1.5", "cpu": "1e"}),
            ],
            "initContainers": [ctr(requests="2")],  # type: ignore[arg-type]
            "overhead": {"cpu": "-1"},
            "resources": {"requests": 5},
        }
    }
    assert problems_of(p) == [
        "spec.containers[0].resources.requests.cpu: '1K': "
        "unknown suffix 'K' (kilo is lower-case 'k')",
        "spec.containers[1]: expected an object, got string",
        "spec.containers[2].resources: expected an object, got list",
        "spec.containers[3].resources.requests.memory: expected a quantity string, got boolean",
        "spec.containers[3].resources.limits.example.com/fpga: '1.5': "
        "extended resources must be whole numbers",
        "spec.containers[3].resources.limits.cpu: '1e': "
        "exponent 'e' has no digits (exa is upper-case 'E')",
        "spec.initContainers[0].resources.requests: expected an object, got string",
        "spec.resources.requests: expected an object, got number",
        "spec.overhead.cpu: '-1': must not be negative",
    ]


@pytest.mark.parametrize(
    ("obj", "problem"),
    [
        (None, "pod: expected an object, got NoneType"),
        ([], "pod: expected an object, got list"),
        ({"spec": "x"}, "spec: expected an object, got string"),
        ({"spec": {"containers": {"a": 1}}}, "spec.containers: expected a list, got object"),
        ({"spec": {"containers": "abc"}}, "spec.containers: expected a list, got string"),
        ({"spec": {"initContainers": 3}}, "spec.initContainers: expected a list, got number"),
        (
            {"spec": {"containers": [{"resources": {"limits": {1: "1"}}}]}},
            "spec.containers[0].resources.limits: resource name 1 is not a string",
        ),
        (
            {"spec": {"containers": [{"resources": {"limits": {"cpu": [1]}}}]}},
            "spec.containers[0].resources.limits.cpu: expected a quantity string, got list",
        ),
        (
            {"spec": {"containers": [{"resources": {"limits": {"cpu": float("nan")}}}]}},
            "spec.containers[0].resources.limits.cpu: 'nan': must start with a number "
            "(digits with an optional sign and at most one '.')",
        ),
    ],
)
def test_wrong_shapes_are_problems_not_crashes(obj: object, problem: str) -> None:
    assert problems_of(obj) == [problem]


def test_an_int_too_long_to_print_is_a_problem_not_a_crash() -> None:
    [problem] = problems_of(pod([ctr({"memory": 10**5000})]))
    assert problem.startswith("spec.containers[0].resources.requests.memory: ")


# --- parse_resource_list (node allocatable) -------------------------------------------


def test_parse_resource_list_canonical_amounts_keep_zeros() -> None:
    assert parse_resource_list(
        {
            "cpu": "3920m",
            "memory": "16Gi",
            "pods": "110",
            "nvidia.com/gpu": "0",
            "hugepages-2Mi": "0",
        },
        "status.allocatable",
    ) == {"cpu": 3920, "memory": 16 * 2**30, "pods": 110, "nvidia.com/gpu": 0, "hugepages-2Mi": 0}


def test_parse_resource_list_null_is_empty() -> None:
    assert parse_resource_list(None, "status.allocatable") == {}


def test_parse_resource_list_collects_problems_with_the_given_path() -> None:
    with pytest.raises(PodSpecError) as info:
        parse_resource_list(
            {"cpu": "4x", "nvidia.com/gpu": "0.5", "memory": "1Gi"}, "status.allocatable"
        )
    assert info.value.problems == [
        "status.allocatable.cpu: '4x': unknown suffix 'x' "
        "(valid: n u m k M G T P E, Ki Mi Gi Ti Pi Ei, or an exponent like e3)",
        "status.allocatable.nvidia.com/gpu: '0.5': extended resources must be whole numbers",
    ]


def test_parse_resource_list_wrong_shape() -> None:
    with pytest.raises(PodSpecError) as info:
        parse_resource_list(["cpu"], "status.allocatable")
    assert info.value.problems == ["status.allocatable: expected an object, got list"]


def test_pod_spec_error_is_a_value_error() -> None:
    assert issubclass(PodSpecError, ValueError)


# --- Properties -----------------------------------------------------------------------

RESOURCES = ["cpu", "memory", "ephemeral-storage", "nvidia.com/gpu"]


@st.composite
def quantities(draw: st.DrawFn, resource: str) -> str:
    if resource == "nvidia.com/gpu":
        return str(draw(st.integers(0, 8)))
    amount = draw(st.integers(0, 10**6))
    suffix = draw(st.sampled_from(["m", "", "k", "Mi", "n", "u"]))
    return f"{amount}{suffix}"


@st.composite
def resource_lists(draw: st.DrawFn) -> dict[str, str]:
    names = draw(st.lists(st.sampled_from(RESOURCES), unique=True, max_size=4))
    return {name: draw(quantities(name)) for name in names}


@st.composite
def containers(draw: st.DrawFn) -> dict[str, Any]:
    c = ctr(draw(st.none() | resource_lists()), draw(st.none() | resource_lists()))
    if draw(st.booleans()):
        c["restartPolicy"] = "Always"
    return c


@st.composite
def pods(draw: st.DrawFn) -> dict[str, Any]:
    return pod(
        draw(st.lists(containers(), max_size=4)),
        init=draw(st.lists(containers(), max_size=3)),
        overhead=draw(st.none() | resource_lists()),
    )


def _covers(bigger: dict[str, int], smaller: dict[str, int]) -> bool:
    return all(bigger.get(name, 0) >= amount for name, amount in smaller.items())


@given(pods(), containers())
def test_adding_an_app_container_never_lowers_any_request(
    p: dict[str, Any], extra: dict[str, Any]
) -> None:
    before = pod_requests(p)
    p["spec"]["containers"].append(extra)
    assert _covers(pod_requests(p), before)


@given(pods(), containers())
def test_adding_an_init_container_never_lowers_any_request(
    p: dict[str, Any], extra: dict[str, Any]
) -> None:
    before = pod_requests(p)
    p["spec"]["initContainers"].append(extra)
    assert _covers(pod_requests(p), before)


@given(pods())
def test_request_covers_every_single_container(p: dict[str, Any]) -> None:
    total = pod_requests(p)
    assert all(isinstance(amount, int) and amount > 0 for amount in total.values())
    for c in p["spec"]["containers"] + p["spec"]["initContainers"]:
        single = pod_requests(pod([c]))
        assert _covers(total, single)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=12,
)


@given(
    st.fixed_dictionaries(
        {},
        optional={
            "spec": st.fixed_dictionaries(
                {},
                optional={
                    "containers": json_values | st.lists(json_values, max_size=3),
                    "initContainers": json_values,
                    "overhead": json_values,
                    "resources": json_values,
                },
            )
        },
    )
    | json_values
)
def test_arbitrary_json_gives_requests_or_pod_spec_error(obj: object) -> None:
    try:
        result: dict[str, int] | PodSpecError = pod_requests(obj)  # type: ignore[arg-type]
    except PodSpecError as exc:
        result = exc
    if isinstance(result, PodSpecError):
        assert result.problems
    else:
        assert all(isinstance(v, int) and v > 0 for v in result.values())
