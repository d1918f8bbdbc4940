"""Prioritize's score columns kept per pod shape, updated only where candidates changed.

A prioritize answer is a whole-call computation: each node's value blends its resource
score with its power term, whose scale is the best availability among all candidates, and
the 0..10 integers are min-max scaled over all values. Computing that afresh cost ~3 µs per
node on every call (docs/benchmarks.md), while between two calls only a few candidates
change. A `Board` keeps one shape's columns (a shape: what the scores read of a pod) and on
the next call recomputes the changed positions only; the call-wide parts (the term's scale,
the integers' range) are recomputed from the columns with C-level `max`/`min`, and where one
of them moved, the column that depends on it is recomputed whole. The numbers are computed
by the same functions in the same order as a fresh board's, so they are equal to the last
bit (tests/unit/test_reuse.py compares every answer with a scheduler that keeps nothing).

A board is rebuilt whole when the call names other nodes (another length), when more than a
quarter of the candidates changed, or when some candidates have a measured usage that others
lack: an unmeasured node is scored with the median usage of the measured ones (core/scoring.py
NeutralUsage), so its score depends on other nodes. When every candidate is measured alike
(all of them, or none, as in a cluster without Prometheus or reports), it does not.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable

import attrs

from edge_sched.core.model import Candidate, PodDemand
from edge_sched.core.power import ComputeType, PowerWeights, TermScale, blend, node_term, term_scale, usable_power
from edge_sched.core.scoring import NodeScore, scaled_scores
from edge_sched.runtime.candidates import changed_positions, remember
from edge_sched.runtime.plans import ScoreTable

# Scores a board's candidates: (candidates) -> their resource scores, in order.
Scorer = Callable[[list[Candidate]], list[NodeScore]]

# Boards kept (least recently used dropped); each holds a few columns per node.
SHAPES = 16


@attrs.frozen
class PowerContext:
    """What the power term reads besides the pod and the candidates (None: computing power off)."""

    weights: PowerWeights
    gpu_preference: bool


@attrs.define(eq=False)
class Board:
    candidates: list[Candidate]
    names: list[str]
    cpu_free: list[float]
    memory_free: list[float]
    resource: list[float]  # the resource values, 0..100
    usable: dict[ComputeType, list[float]]  # per needed type: each node's `usable_power`
    reports: dict[ComputeType, list[bool]]  # per needed type: whether each node reports it
    scale: TermScale
    terms: list[float]
    values: list[float]
    span: tuple[float, float]  # (low, high) of the values
    ints: list[int]
    table: ScoreTable
    # What every candidate has measured, (cpu, memory); None when they differ (no updates).
    measures: tuple[bool, bool] | None


def _scale(board: Board, pod: PodDemand, power: PowerContext | None) -> TermScale:
    if power is None or pod.power_demand is None:
        return TermScale(False)
    reported = [k for k, column in board.reports.items() if True in column]
    best = {k: max(column, default=0.0) for k, column in board.usable.items()}
    return term_scale(pod.power_demand, reported, best, power.weights, gpu_preference=power.gpu_preference)


def _measures(candidates: list[Candidate]) -> tuple[bool, bool] | None:
    """Which of cpu and memory usage every candidate has measured; None when they differ."""
    kinds = {(c.cpu_usage is not None, c.memory_usage is not None) for c in candidates}
    return kinds.pop() if len(kinds) == 1 else None


def _table(board: Board) -> ScoreTable:
    components = {"cpu_free": board.cpu_free, "memory_free": board.memory_free}
    if board.scale.applies:
        components["power"] = board.terms
    return ScoreTable(board.names, board.ints, board.values, components)


def build(pod: PodDemand, candidates: list[Candidate], score: Scorer, power: PowerContext | None) -> Board:
    """A board computed from nothing."""
    resource = score(candidates)
    needed = pod.power_demand.needed if power is not None and pod.power_demand is not None else ()
    powers = [c.power for c in candidates]
    board = Board(
        candidates=list(candidates),
        names=[s.node for s in resource],
        cpu_free=[s.components["cpu_free"] for s in resource],
        memory_free=[s.components["memory_free"] for s in resource],
        resource=[s.value for s in resource],
        usable={k: [usable_power(p, k) for p in powers] for k in needed},
        reports={k: [p is not None and k in p.entries for p in powers] for k in needed},
        scale=TermScale(False),
        terms=[],
        values=[],
        span=(0.0, 0.0),
        ints=[],
        table=ScoreTable((), (), (), {}),
        measures=_measures(candidates),
    )
    board.scale = _scale(board, pod, power)
    if board.scale.applies:
        board.terms = [node_term(board.scale, p) for p in powers]
        board.values = list(map(blend, board.resource, board.terms))
    else:
        board.values = list(board.resource)
    board.span = (min(board.values, default=0.0), max(board.values, default=0.0))
    board.ints = scaled_scores(board.values, *board.span)
    board.table = _table(board)
    return board


def update(board: Board, pod: PodDemand, candidates: list[Candidate], score: Scorer, power: PowerContext | None) -> Board:
    """`board` brought to `candidates` (a new board when it cannot be updated)."""
    changed = changed_positions(candidates, board.candidates) if board.measures is not None else None
    if changed is None:
        return build(pod, candidates, score, power)
    if not changed:
        return board
    fresh = [candidates[i] for i in changed]
    if _measures(fresh) != board.measures:
        return build(pod, candidates, score, power)
    for i, cand, s in zip(changed, fresh, score(fresh)):
        board.candidates[i] = cand
        board.names[i] = s.node
        board.cpu_free[i] = s.components["cpu_free"]
        board.memory_free[i] = s.components["memory_free"]
        board.resource[i] = s.value
        for kind, column in board.usable.items():
            column[i] = usable_power(cand.power, kind)
            board.reports[kind][i] = cand.power is not None and kind in cand.power.entries
    scale = _scale(board, pod, power)
    rescaled = scale != board.scale  # the best availability (or the types in the term) moved
    if rescaled:
        board.scale = scale
        board.terms = [node_term(scale, c.power) for c in board.candidates] if scale.applies else []
        board.values = list(map(blend, board.resource, board.terms)) if scale.applies else list(board.resource)
    else:
        for i in changed:
            if scale.applies:
                board.terms[i] = node_term(scale, board.candidates[i].power)
                board.values[i] = blend(board.resource[i], board.terms[i])
            else:
                board.values[i] = board.resource[i]
    span = (min(board.values), max(board.values))
    if rescaled or span != board.span:  # every value, or the range they are scaled over, moved
        board.span = span
        board.ints = scaled_scores(board.values, *span)
    else:
        for i, v in zip(changed, scaled_scores([board.values[i] for i in changed], *span)):
            board.ints[i] = v
    board.table = _table(board)
    return board


@attrs.define(eq=False)
class Boards:
    """The boards of the most recently scored shapes."""

    shapes: int = SHAPES
    _by_shape: OrderedDict[Hashable, Board] = attrs.field(factory=OrderedDict)

    def table(
        self, shape: Hashable, pod: PodDemand, candidates: list[Candidate], score: Scorer, power: PowerContext | None
    ) -> ScoreTable:
        kept = self._by_shape.get(shape)
        board = build(pod, candidates, score, power) if kept is None else update(kept, pod, candidates, score, power)
        return remember(self._by_shape, shape, board, self.shapes).table
