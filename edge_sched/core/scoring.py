"""The default node score of spec S5, as pure functions.

Scores are computed on 0..100 (floats, full precision) and mapped to the
extender's 0..10 integers only at the edge, by `to_extender_scores`, so that
plans and the scores endpoint can show the exact values behind a decision.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import attrs

from edge_sched.core.model import CPU, MEMORY, Candidate, PodDemand

MAX_EXTENDER_SCORE = 10


@attrs.frozen
class ScoreWeights:
    cpu: float = 0.6
    memory: float = 0.4

    def normalised(self) -> tuple[float, float]:
        total = self.cpu + self.memory
        if total <= 0:  # settings reject this; keep the function total anyway
            return 0.5, 0.5
        return self.cpu / total, self.memory / total


@attrs.frozen
class NodeScore:
    node: str
    value: float  # 0..100
    components: Mapping[str, float] = attrs.field(factory=dict)


def free_fraction(resource: str, pod: PodDemand, cand: Candidate) -> float:
    """1 - (used + request) / allocatable, clamped to [0, 1].

    `used` is the larger of what pods request and what is measured, so a node
    whose pods use more than they asked for does not look emptier than it is.
    """
    allocatable = cand.node.allocatable.get(resource, 0)
    if allocatable <= 0:
        return 0.0
    used = float(cand.load.requested.get(resource, 0))
    measured = cand.cpu_usage if resource == CPU else cand.memory_usage
    if measured is not None:
        used = max(used, measured * allocatable)
    fraction = 1.0 - (used + pod.requests.get(resource, 0)) / allocatable
    return min(1.0, max(0.0, fraction))


def score_node(pod: PodDemand, cand: Candidate, weights: ScoreWeights) -> NodeScore:
    w_cpu, w_mem = weights.normalised()
    f_cpu = free_fraction(CPU, pod, cand)
    f_mem = free_fraction(MEMORY, pod, cand)
    value = 100.0 * (w_cpu * f_cpu + w_mem * f_mem)
    return NodeScore(cand.name, value, {"cpu_free": f_cpu, "memory_free": f_mem})


def score_nodes(
    pod: PodDemand, candidates: Iterable[Candidate], weights: ScoreWeights
) -> list[NodeScore]:
    return [score_node(pod, c, weights) for c in candidates]


def to_extender_scores(values: Mapping[str, float]) -> dict[str, int]:
    """Map 0..100 values linearly onto 0..10 integers, best node = 10.

    Min-max scaling keeps the order as far as integers allow and uses the whole
    range, so the extender's preference is not drowned by the in-tree plugins'
    scores. Equal values all get 10.
    """
    if not values:
        return {}
    low, high = min(values.values()), max(values.values())
    span = high - low
    if span <= 1e-9:
        return {node: MAX_EXTENDER_SCORE for node in values}
    return {
        node: round(MAX_EXTENDER_SCORE * (value - low) / span) for node, value in values.items()
    }


def best_node(values: Mapping[str, float]) -> str | None:
    """Highest value; ties go to the alphabetically first node name."""
    if not values:
        return None
    return min(values, key=lambda node: (-values[node], node))
