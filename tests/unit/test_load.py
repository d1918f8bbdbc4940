"""Live load (spec S7, filter rule 4): mapping, freshness, thresholds, damping.

Field cases C19 (NaN/Inf), C20 (empty/partial results) and C21 (instance vs node name)
are checked with their exact expected values, from the raw Prometheus answer through
to the filter verdict and the score.
"""

from __future__ import annotations

import pytest

from edge_sched.codecs.prom import decode_query_response
from edge_sched.core.filtering import FilterLimits, filter_node
from edge_sched.core.load import (
    METRICS_API,
    PROMETHEUS,
    REQUESTS,
    LoadLimits,
    NodeUsage,
    Placement,
    Reading,
    SeriesIndex,
    SourceReadings,
    damp,
    index_samples,
    instance_host,
    load_problem,
    map_samples,
    node_thresholds,
    parse_threshold,
    resolve_usage,
)
from edge_sched.core.model import Candidate, NodeInfo, NodeLoad, PodDemand
from edge_sched.core.scoring import ScoreWeights, score_node, score_nodes

GI = 1024**3
T0 = 1717000000.0
POD = PodDemand("default", "p", "u", requests={"cpu": 500, "memory": GI})


def node(name: str, *ips: str, annotations: dict[str, str] | None = None) -> NodeInfo:
    return NodeInfo(name, {"cpu": 4000, "memory": 8 * GI, "pods": 110}, annotations=annotations or {}, addresses=ips)


def mapped(body: bytes | str, nodes: list[NodeInfo], *, wall_now: float = T0, max_age: float = 30.0):  # type: ignore[no-untyped-def]
    result = decode_query_response(body)
    return map_samples(result.samples, nodes, wall_now_s=wall_now, now=500.0, max_age_s=max_age)


# -- C21 ---------------------------------------------------------------------------------

C21 = """{"status":"success","data":{"resultType":"vector","result":[
 {"metric":{"instance":"10.0.0.5:9100"},"value":[1717000000,"0.30"]},
 {"metric":{"instance":"10.0.0.50:9100"},"value":[1717000000,"0.80"]},
 {"metric":{"instance":"[fd00::c]:9100"},"value":[1717000000,"0.20"]},
 {"metric":{"instance":"host-x","node":"node-c"},"value":[1717000000,"0.10"]}]}}"""
C21_NODES = [node("node-a", "10.0.0.5"), node("node-b", "10.0.0.50"), node("node-c", "fd00::c"), node("node-d", "10.0.0.9")]


def test_c21_instance_ip_port_vs_node_name_exact_values() -> None:
    result = mapped(C21, C21_NODES)
    assert {n: r.value for n, r in result.readings.items()} == {"node-a": 0.30, "node-b": 0.80, "node-c": 0.10}
    assert "node-d" not in result.readings  # no series at all: unknown
    # node-c had two series (IPv6 instance, explicit node label): the label won.
    assert result.duplicates == ("node-c",)
    assert result.rejected == ()


def test_c21_prefix_never_matches_a_longer_ip() -> None:
    # Only node-a (10.0.0.5) exists: the 10.0.0.50 series must not land on it.
    result = mapped(C21, [node("node-a", "10.0.0.5")])
    assert {n: r.value for n, r in result.readings.items()} == {"node-a": 0.30}
    assert sorted(r.reason for r in result.rejected) == ["unmatched"] * 3


def test_c21_instance_equal_to_node_name_beats_ip_match() -> None:
    body = """{"status":"success","data":{"resultType":"vector","result":[
     {"metric":{"instance":"10.0.0.5:9100"},"value":[1717000000,"0.90"]},
     {"metric":{"instance":"node-a:9100"},"value":[1717000000,"0.40"]}]}}"""
    result = mapped(body, [node("node-a", "10.0.0.5")])
    assert result.readings["node-a"].value == 0.40


def test_c21_duplicate_series_take_the_maximum_in_any_order() -> None:
    rows = [
        '{"metric":{"instance":"10.0.0.5:9100","pod":"exporter-old"},"value":[1717000000,"0.70"]}',
        '{"metric":{"instance":"10.0.0.5:9101","pod":"exporter-new"},"value":[1717000000,"0.20"]}',
    ]
    for order in (rows, rows[::-1]):
        body = '{"status":"success","data":{"resultType":"vector","result":[' + ",".join(order) + "]}}"
        result = mapped(body, [node("node-a", "10.0.0.5")])
        assert result.readings["node-a"].value == 0.70
        assert result.duplicates == ("node-a",)


def test_series_whose_instance_matches_no_node_is_reported() -> None:
    body = """{"status":"success","data":{"resultType":"vector","result":[
     {"metric":{"instance":"192.168.9.9:9100"},"value":[1717000000,"0.5"]},
     {"metric":{"node":"gone-node","instance":"10.0.0.5:9100"},"value":[1717000000,"0.6"]},
     {"metric":{"job":"x"},"value":[1717000000,"0.7"]}]}}"""
    result = mapped(body, [node("node-a", "10.0.0.5")])
    assert result.readings == {}
    assert [(r.reason, r.detail) for r in result.rejected] == [
        ("unmatched", "no node or instance label"),
        ("unmatched", "instance='192.168.9.9:9100'"),
        # An explicit node label naming no known node is not re-guessed from instance.
        ("unmatched", "instance='10.0.0.5:9100', node='gone-node'"),
    ]


@pytest.mark.parametrize(
    ("instance", "host"),
    [
        ("10.0.0.5:9100", "10.0.0.5"),
        ("10.0.0.5", "10.0.0.5"),
        ("[fd00::c]:9100", "fd00::c"),
        ("[fd00::c]", "fd00::c"),
        ("fd00::c", "fd00::c"),
        ("node-a", "node-a"),
        ("node-a:9100", "node-a"),
        ("http://10.0.0.5:9100/metrics", "10.0.0.5"),
        ("https://[fd00::c]:9100/metrics", "fd00::c"),
    ],
)
def test_instance_host(instance: str, host: str) -> None:
    assert instance_host(instance) == host


def test_ipv6_matches_by_address_not_by_spelling() -> None:
    body = '{"status":"success","data":{"resultType":"vector","result":[{"metric":{"instance":"[fd00::c]:9100"},"value":[1717000000,"0.2"]}]}}'
    assert mapped(body, [node("v6", "fd00:0:0::000c")]).readings["v6"].value == 0.2


def test_nodes_unknown_at_poll_time_are_matched_at_read_time() -> None:
    """Standalone mode: the nodes arrive in the request, after the poll indexed the series."""
    result = decode_query_response(C21)
    index = index_samples(result.samples, wall_now_s=T0, now=500.0, max_age_s=30.0).index
    assert index.lookup(node("node-a", "10.0.0.5")) == Reading(0.30, 500.0)
    assert index.lookup(node("node-c", "fd00::c")) == Reading(0.10, 500.0)
    assert index.lookup(node("node-z", "10.0.0.77")) is None
    # A node with two InternalIPs that both have series: the larger reading.
    assert index.lookup(node("dual", "10.0.0.5", "10.0.0.50")) == Reading(0.80, 500.0)


# -- C19 / freshness / range ------------------------------------------------------------

C19 = """{"status":"success","data":{"resultType":"vector","result":[
 {"metric":{"instance":"node-a"},"value":[1717000000.5,"NaN"]},
 {"metric":{"instance":"node-b"},"value":[1717000000.5,"+Inf"]},
 {"metric":{"instance":"node-c"},"value":[1717000000.5,"-Inf"]},
 {"metric":{"instance":"node-d"},"value":[1717000000.5,"0.42"]}]}}"""


def test_c19_only_the_finite_value_maps() -> None:
    nodes = [node(n) for n in ("node-a", "node-b", "node-c", "node-d")]
    result = mapped(C19, nodes, wall_now=T0 + 1)
    assert {n: r.value for n, r in result.readings.items()} == {"node-d": 0.42}


def test_c19_unknown_nodes_pass_filter_and_score_neutrally() -> None:
    """NaN/Inf nodes are neither overloaded (filtered) nor idle (0% usage)."""
    nodes = [node(n) for n in ("node-a", "node-b", "node-c", "node-d")]
    prom = SourceReadings(PROMETHEUS, 30.0, cpu=SeriesIndex.of_nodes(mapped(C19, nodes).readings))
    cands = {}
    for info in nodes:
        usage = resolve_usage(info, [prom], now=500.0)
        cands[info.name] = Candidate(
            info, NodeLoad({"cpu": 1000}), cpu_usage=usage.cpu, memory_usage=usage.memory,
            usage_source=usage.source, usage_note=usage.note,
        )
    assert cands["node-d"].cpu_usage == 0.42
    assert cands["node-d"].usage_source == PROMETHEUS
    for name in ("node-a", "node-b", "node-c"):
        assert cands[name].cpu_usage is None
        assert cands[name].usage_source == REQUESTS
        assert filter_node(POD, cands[name], FilterLimits()).passed
    scores = {s.node: s.value for s in score_nodes(POD, cands.values(), ScoreWeights())}
    # node-d's measured 42% counts over its 25% requested ...
    assert scores["node-d"] == pytest.approx(100 * (0.6 * (1 - (0.42 * 4000 + 500) / 4000) + 0.4 * (7 / 8)))
    # ... and the unknown nodes are neither idle (requests alone: 25%) nor full: they score with
    # the measured candidates' median, node-d's 42%, exactly alike.
    assert scores["node-a"] == scores["node-b"] == scores["node-c"] == scores["node-d"]


def test_unknown_usage_scores_with_the_median_of_the_measured_and_requests_still_count() -> None:
    def cand(name: str, cpu_usage: float | None, requested_cpu: int = 0) -> Candidate:
        return Candidate(node(name), NodeLoad({"cpu": requested_cpu}), cpu_usage=cpu_usage)

    cands = [cand("m1", 0.2), cand("m2", 0.3), cand("m3", 0.7), cand("unknown", None), cand("busy", None, 3000)]
    scores = {s.node: s.components["cpu_free"] for s in score_nodes(POD, cands, ScoreWeights())}
    assert scores["unknown"] == pytest.approx(1 - (0.3 * 4000 + 500) / 4000)  # the median, 30%
    assert scores["busy"] == pytest.approx(1 - (3000 + 500) / 4000)  # 75% requested counts over 30%
    # With nothing measured at all, every node is scored from its requests alike.
    alone = {s.node: s.components["cpu_free"] for s in score_nodes(POD, [cand("a", None), cand("b", None, 2000)],
                                                                     ScoreWeights())}
    assert alone == {"a": pytest.approx(1 - 500 / 4000), "b": pytest.approx(1 - 2500 / 4000)}


def test_series_older_than_two_poll_periods_are_stale() -> None:
    body = """{"status":"success","data":{"resultType":"vector","result":[
     {"metric":{"node":"a"},"value":[1716999969,"0.5"]},
     {"metric":{"node":"b"},"value":[1716999971,"0.6"]}]}}"""
    result = mapped(body, [node("a"), node("b")], wall_now=T0, max_age=30.0)
    assert {n: r.value for n, r in result.readings.items()} == {"b": 0.6}
    assert [(r.reason, r.detail) for r in result.rejected] == [("stale", "sample is 31s old (limit 30s)")]
    # The reading carries its age on the store's clock (now=500, 29 s old).
    assert result.readings["b"].observed_at == 471.0


def test_values_outside_zero_to_one_are_clamped_or_rejected() -> None:
    body = """{"status":"success","data":{"resultType":"vector","result":[
     {"metric":{"node":"a"},"value":[1717000000,"-0.01"]},
     {"metric":{"node":"b"},"value":[1717000000,"1.02"]},
     {"metric":{"node":"c"},"value":[1717000000,"85.5"]},
     {"metric":{"node":"d"},"value":[1717000000,"-3"]}]}}"""
    result = mapped(body, [node(n) for n in "abcd"])
    assert {n: r.value for n, r in result.readings.items()} == {"a": 0.0, "b": 1.0}
    assert [(r.reason, r.detail) for r in result.rejected] == [
        ("out_of_range", "value 85.5 is not a 0-1 ratio"),
        ("out_of_range", "value -3 is not a 0-1 ratio"),
    ]


# -- C20 ---------------------------------------------------------------------------------


def test_c20_cpu_empty_memory_known_uses_memory_and_cpu_unknown() -> None:
    nodes = [node("node-a"), node("node-b")]
    cpu = mapped('{"status":"success","data":{"resultType":"vector","result":[]}}', nodes)
    mem = mapped(
        '{"status":"success","data":{"resultType":"vector","result":[{"metric":{"node":"node-a"},"value":[1717000000,"0.55"]}]}}',
        nodes,
    )
    prom = SourceReadings(PROMETHEUS, 30.0, cpu=SeriesIndex.of_nodes(cpu.readings), memory=SeriesIndex.of_nodes(mem.readings))
    usage = resolve_usage(nodes[0], [prom], now=500.0)
    assert (usage.source, usage.cpu, usage.memory) == (PROMETHEUS, None, 0.55)
    assert usage.note == "cpu unknown from prometheus"
    other = resolve_usage(nodes[1], [prom], now=500.0)
    assert (other.source, other.cpu, other.memory) == (REQUESTS, None, None)
    # Open policy: neither node is filtered for the missing CPU figure.
    for info, u in ((nodes[0], usage), (nodes[1], other)):
        cand = Candidate(info, cpu_usage=u.cpu, memory_usage=u.memory, usage_source=u.source, usage_note=u.note)
        assert load_problem(cand, LoadLimits()) is None


def test_c20_empty_results_leave_every_node_unknown() -> None:
    nodes = [node("node-a"), node("node-b")]
    for body in ('{"status":"success","data":{"resultType":"vector","result":[]}}',
                 '{"status":"success","data":{"resultType":"vector","result":null}}'):
        result = mapped(body, nodes)
        assert result.readings == {}
        index = index_samples(decode_query_response(body).samples, wall_now_s=T0, now=500.0, max_age_s=30).index
        prom = SourceReadings(PROMETHEUS, 30.0, cpu=index, memory=index)
        assert resolve_usage(nodes[0], [prom], now=500.0) == NodeUsage(REQUESTS, note="no live usage")


# -- source precedence -----------------------------------------------------------------


def test_first_fresh_source_wins_per_node_and_stale_readings_fall_through() -> None:
    of = SeriesIndex.of_nodes
    prom = SourceReadings(PROMETHEUS, 30.0, cpu=of({"a": Reading(0.9, 100.0), "b": Reading(0.2, 140.0)}))
    api = SourceReadings(METRICS_API, 30.0, cpu=of({"a": Reading(0.3, 140.0)}), memory=of({"a": Reading(0.4, 140.0)}))
    a = resolve_usage(node("a"), [prom, api], now=145.0)  # prometheus' a is 45 s old
    assert (a.source, a.cpu, a.memory) == (METRICS_API, 0.3, 0.4)
    b = resolve_usage(node("b"), [prom, api], now=145.0)
    assert (b.source, b.cpu, b.memory) == (PROMETHEUS, 0.2, None)
    gone = resolve_usage(node("a"), [prom, api], now=200.0)
    assert gone.source == REQUESTS
    assert gone.note == (
        "prometheus cpu stale (100s old, limit 30s); metrics.k8s.io cpu stale (60s old, limit 30s); "
        "metrics.k8s.io memory stale (60s old, limit 30s)"
    )


# -- thresholds and rule 4 --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [("0.9", 0.9), (" 0.5 ", 0.5), ("90%", 0.9), ("0", 0.0), ("1", 1.0), ("100 %", 1.0),
     ("1.5", None), ("-0.1", None), ("abc", None), ("", None), ("nan", None), ("inf", None), ("150%", None)],
)
def test_parse_threshold(text: str, value: float | None) -> None:
    assert parse_threshold(text) == value


def test_annotation_overrides_thresholds_per_node_and_bad_ones_are_named() -> None:
    limits = LoadLimits(cpu_threshold=0.85, memory_threshold=0.8)
    plain = node_thresholds(node("a"), limits)
    assert (plain.cpu, plain.memory, plain.problems) == (0.85, 0.8, ())
    custom = node_thresholds(node("b", annotations={"edge-sched.io/cpu-threshold": "0.95"}), limits)
    assert (custom.cpu, custom.memory) == (0.95, 0.8)
    bad = node_thresholds(node("c", annotations={"edge-sched.io/memory-threshold": "lots"}), limits)
    assert (bad.cpu, bad.memory) == (0.85, 0.8)
    assert bad.problems == ("annotation edge-sched.io/memory-threshold='lots' ignored: expected 0-1 or 0-100%",)


def cand(info: NodeInfo, cpu: float | None, mem: float | None, source: str = PROMETHEUS, note: str = "") -> Candidate:
    return Candidate(info, cpu_usage=cpu, memory_usage=mem, usage_source=source, usage_note=note)


def test_rule4_reason_carries_the_numbers() -> None:
    verdict = filter_node(POD, cand(node("hot"), 0.95, 0.5), FilterLimits())
    assert verdict.reason == "load too high: cpu usage 0.95 > threshold 0.85 (prometheus)"
    assert not verdict.unresolvable
    both = filter_node(POD, cand(node("hot"), 0.9, 0.8534, METRICS_API),
                       FilterLimits(load=LoadLimits(0.85, 0.85)))
    assert both.reason == (
        "load too high: cpu usage 0.9 > threshold 0.85; memory usage 0.853 > threshold 0.85 (metrics.k8s.io)"
    )


def test_rule4_threshold_is_exclusive_and_annotation_lifts_it() -> None:
    assert filter_node(POD, cand(node("n"), 0.85, 0.85), FilterLimits()).passed
    annotated = node("n", annotations={"edge-sched.io/cpu-threshold": "0.97"})
    assert filter_node(POD, cand(annotated, 0.95, 0.1), FilterLimits()).passed
    lowered = node("n", annotations={"edge-sched.io/memory-threshold": "50%"})
    assert filter_node(POD, cand(lowered, 0.1, 0.6), FilterLimits()).reason == (
        "load too high: memory usage 0.6 > threshold 0.5 (prometheus)"
    )


def test_stale_policy_open_passes_and_closed_fails_unknown_usage() -> None:
    unknown = cand(node("n"), None, None, REQUESTS, "prometheus cpu stale (47s old, limit 30s)")
    assert filter_node(POD, unknown, FilterLimits()).passed
    closed = FilterLimits(load=LoadLimits(stale_policy="closed"))
    verdict = filter_node(POD, unknown, closed)
    assert verdict.reason == (
        "load unknown: cpu and memory usage unknown or stale: prometheus cpu stale (47s old, limit 30s) "
        "(LOAD_STALE_POLICY=closed)"
    )
    half = cand(node("n"), 0.3, None, PROMETHEUS, "memory unknown from prometheus")
    assert filter_node(POD, half, closed).reason == (
        "load unknown: memory usage unknown or stale: memory unknown from prometheus (LOAD_STALE_POLICY=closed)"
    )
    assert filter_node(POD, cand(node("n"), 0.3, 0.3), closed).passed
    # An overload is reported as such even under the closed policy.
    assert filter_node(POD, cand(node("n"), 0.99, None), closed).reason.startswith("load too high: cpu usage 0.99")


def test_rules_1_to_3_still_win_over_rule_4() -> None:
    verdict = filter_node(PodDemand("d", "p", "u", requests={"cpu": 8000}), cand(node("n"), 0.99, 0.99), FilterLimits())
    assert verdict.reason == "insufficient cpu (need 8, free 4)"


# -- damping ------------------------------------------------------------------------------


def test_damping_adds_recent_placements_to_measured_usage() -> None:
    info = node("n")  # 4 cores, 8 GiB
    usage = NodeUsage(PROMETHEUS, cpu=0.5, memory=0.25, observed_at={"cpu": 1000.0, "memory": 1000.0})
    placements = [
        Placement("n", 1010.0, {"cpu": 1000, "memory": 2 * GI}),  # after the sample
        Placement("n", 750.0, {"cpu": 1000}),  # 250 s before it: inside a 300 s window
        Placement("n", 650.0, {"cpu": 1000}),  # 350 s before it: already in the rate window
    ]
    damped = damp(usage, info, placements, settle_s=300.0)
    assert damped.cpu == pytest.approx(0.5 + 2000 / 4000)
    assert damped.memory == pytest.approx(0.25 + 0.25)
    assert damped.source == PROMETHEUS


def test_damping_caps_at_one_and_leaves_unknown_alone() -> None:
    info = node("n")
    usage = NodeUsage(PROMETHEUS, cpu=0.9, memory=None, observed_at={"cpu": 1000.0})
    damped = damp(usage, info, [Placement("n", 1001.0, {"cpu": 4000, "memory": GI})], settle_s=300.0)
    assert (damped.cpu, damped.memory) == (1.0, None)
    assert damp(usage, info, [], settle_s=300.0) is usage


def test_damped_node_is_not_chosen_again() -> None:
    """Two equal nodes at 60%: after three pods land on `a`, `b` scores higher."""
    a, b = node("a"), node("b")
    usage = NodeUsage(PROMETHEUS, cpu=0.6, memory=0.6, observed_at={"cpu": 1000.0, "memory": 1000.0})
    placed = [Placement("a", 1005.0 + i, {"cpu": 500, "memory": GI}) for i in range(3)]
    da, db = damp(usage, a, placed, 300.0), damp(usage, b, [], 300.0)
    ca = Candidate(a, cpu_usage=da.cpu, memory_usage=da.memory)
    cb = Candidate(b, cpu_usage=db.cpu, memory_usage=db.memory)
    assert score_node(POD, cb, ScoreWeights()).value > score_node(POD, ca, ScoreWeights()).value
