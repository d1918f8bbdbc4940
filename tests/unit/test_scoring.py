"""The default score (spec S5) and its mapping to the extender's 0..10."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_sched.core.model import Candidate, NodeInfo, NodeLoad, PodDemand
from edge_sched.core.scoring import (
    ScoreWeights,
    best_node,
    free_fraction,
    score_node,
    to_extender_scores,
)

GI = 1024**3
POD = PodDemand("default", "p", "u", requests={"cpu": 1000, "memory": 1 * GI})


def node(name: str, used_cpu: int = 0, used_mem: int = 0, **usage: float) -> Candidate:
    info = NodeInfo(name, allocatable={"cpu": 4000, "memory": 8 * GI})
    return Candidate(info, NodeLoad({"cpu": used_cpu, "memory": used_mem}), **usage)


def test_free_fraction_after_placing_the_pod() -> None:
    assert free_fraction("cpu", POD, node("a", used_cpu=1000)) == pytest.approx(0.5)
    assert free_fraction("memory", POD, node("a", used_mem=3 * GI)) == pytest.approx(0.5)


def test_measured_usage_counts_when_higher_than_requests() -> None:
    # requests say 1 core used, the node actually burns 3 of 4
    busy = node("a", used_cpu=1000, cpu_usage=0.75)
    assert free_fraction("cpu", POD, busy) == pytest.approx(0.0)
    quiet = node("a", used_cpu=1000, cpu_usage=0.10)
    assert free_fraction("cpu", POD, quiet) == pytest.approx(0.5)


def test_weights_are_normalised() -> None:
    s1 = score_node(POD, node("a", used_cpu=1000), ScoreWeights(0.6, 0.4))
    s2 = score_node(POD, node("a", used_cpu=1000), ScoreWeights(3.0, 2.0))
    assert s1.value == pytest.approx(s2.value)
    # cpu free 0.5, memory free 7/8
    assert s1.value == pytest.approx(100 * (0.6 * 0.5 + 0.4 * 0.875))


def test_emptier_node_scores_higher() -> None:
    w = ScoreWeights()
    assert score_node(POD, node("a"), w).value > score_node(POD, node("b", used_cpu=2000), w).value


def test_extender_scores_best_is_ten_worst_is_zero() -> None:
    assert to_extender_scores({"a": 80.0, "b": 40.0, "c": 60.0}) == {"a": 10, "b": 0, "c": 5}
    assert to_extender_scores({"a": 50.0, "b": 50.0}) == {"a": 10, "b": 10}
    assert to_extender_scores({}) == {}


@given(st.dictionaries(st.text(min_size=1, max_size=5), st.floats(0, 100), min_size=1, max_size=30))
def test_extender_scores_preserve_order(values: dict[str, float]) -> None:
    scores = to_extender_scores(values)
    assert set(scores) == set(values)
    assert all(0 <= s <= 10 for s in scores.values())
    assert max(scores.values()) == 10
    for a in values:
        for b in values:
            if values[a] > values[b]:
                assert scores[a] >= scores[b]


def test_best_node_ties_break_by_name() -> None:
    assert best_node({"b": 5.0, "a": 5.0, "c": 1.0}) == "a"
    assert best_node({}) is None
