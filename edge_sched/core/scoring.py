"""The default node score of spec S5, as pure functions.

Scores are computed on 0..100 (floats, full precision) and mapped to the
extender's 0..10 integers only at the edge, by `to_extender_scores`, so that
plans and the scores endpoint can show the exact values behind a decision.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

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


@attrs.frozen
class NeutralUsage:
    """The utilisation a node of unknown usage is scored with (field cases C19, C20).

    A node whose Prometheus series is NaN, missing or stale must score neither as idle (0%,
    so that an outage would send every pod to the nodes without data) nor as full: it is
    scored as using the median measured utilisation of the candidates of the same call whose
    usage is known, per resource. When no candidate is measured, None: every node is then
    scored from its requests alike. Filter rule 4 never sees this value (an unknown node passes
    or fails by LOAD_STALE_POLICY).
    """

    cpu: float | None = None
    memory: float | None = None

    @classmethod
    def of(cls, candidates: Iterable[Candidate]) -> NeutralUsage:
        cands = list(candidates)
        return cls(
            _median([c.cpu_usage for c in cands if c.cpu_usage is not None]),
            _median([c.memory_usage for c in cands if c.memory_usage is not None]),
        )


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def used_amount(resource: str, cand: Candidate, neutral: NeutralUsage) -> float:
    """`used_r` of the S5 score: the larger of what pods request and what is measured (or,
    unmeasured, the neutral utilisation), so a node whose pods use more than they asked for
    does not look emptier than it is."""
    allocatable = cand.node.allocatable.get(resource, 0)
    used = float(cand.load.requested.get(resource, 0))
    measured = cand.cpu_usage if resource == CPU else cand.memory_usage
    if measured is None:
        measured = neutral.cpu if resource == CPU else neutral.memory
    if measured is not None and allocatable > 0:
        used = max(used, measured * allocatable)
    return used


def free_fraction(resource: str, pod: PodDemand, cand: Candidate, neutral: NeutralUsage = NeutralUsage()) -> float:
    """1 - (used + request) / allocatable, clamped to [0, 1]."""
    allocatable = cand.node.allocatable.get(resource, 0)
    if allocatable <= 0:
        return 0.0
    fraction = 1.0 - (used_amount(resource, cand, neutral) + pod.requests.get(resource, 0)) / allocatable
    return min(1.0, max(0.0, fraction))


def score_node(
    pod: PodDemand, cand: Candidate, weights: ScoreWeights, neutral: NeutralUsage = NeutralUsage()
) -> NodeScore:
    w_cpu, w_mem = weights.normalised()
    f_cpu = free_fraction(CPU, pod, cand, neutral)
    f_mem = free_fraction(MEMORY, pod, cand, neutral)
    value = 100.0 * (w_cpu * f_cpu + w_mem * f_mem)
    return NodeScore(cand.name, value, {"cpu_free": f_cpu, "memory_free": f_mem})


def score_nodes(
    pod: PodDemand, candidates: Iterable[Candidate], weights: ScoreWeights, neutral: NeutralUsage | None = None
) -> list[NodeScore]:
    """Every candidate's score; unmeasured ones with the others' median usage (NeutralUsage,
    by default of these candidates; pass it when scoring part of a call's candidates)."""
    cands = list(candidates)
    if neutral is None:
        neutral = NeutralUsage.of(cands)
    return [score_node(pod, c, weights, neutral) for c in cands]


def is_measured(cand: Candidate) -> bool:
    """Both utilisations known: the node's score does not depend on the other candidates."""
    return cand.cpu_usage is not None and cand.memory_usage is not None


def to_extender_scores(values: Mapping[str, float]) -> dict[str, int]:
    """Map 0..100 values linearly onto 0..10 integers, best node = 10.

    Min-max scaling keeps the order as far as integers allow and uses the whole
    range, so the extender's preference is not drowned by the in-tree plugins'
    scores. Equal values all get 10.
    """
    if not values:
        return {}
    column = list(values.values())
    return dict(zip(values, scaled_scores(column, min(column), max(column))))


def scaled_scores(values: Sequence[float], low: float, high: float) -> list[int]:
    """`to_extender_scores` over a column whose range (`low`, `high`) is already known."""
    span = high - low
    if span <= 1e-9:
        return [MAX_EXTENDER_SCORE] * len(values)
    return [round(MAX_EXTENDER_SCORE * (value - low) / span) for value in values]


def best_node(values: Mapping[str, float]) -> str | None:
    """Highest value; ties go to the alphabetically first node name."""
    if not values:
        return None
    return min(values, key=lambda node: (-values[node], node))
