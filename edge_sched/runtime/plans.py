"""Per-pod scheduling plans: what prioritize decided, for bind to follow.

A plan records the scores behind a decision (so `GET .../scheduler/plan` and
`.../scores` can explain it) and the nodes that passed filter (so bind never
follows a plan onto a node filter refused). Plans expire after
PLAN_EXPIRATION_TIME and are removed once bind used them.

Batch plans (spec S10, `POST /scheduler/plans`) are kept apart, by pod key: the pods are
often created after the plan, so their UID is not known yet. Prioritize folds a pod's
batch plan into the plan it stores (`prefer_planned`), which bind then follows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from itertools import compress, repeat
from operator import eq
from typing import Any

import attrs

from edge_sched.codecs.extender import HostPriorityList
from edge_sched.core.model import PodDemand
from edge_sched.core.scoring import best_node

MAX_SCORE = 10  # extender scores are 0..10


@attrs.frozen
class ScoreDetail:
    score: int  # 0..10, what kube-scheduler was told
    value: float  # 0..100, the exact score
    components: Mapping[str, float] = attrs.field(factory=dict)


class ScoreTable(Mapping[str, ScoreDetail]):
    """One prioritize call's scores as columns, read as node -> ScoreDetail.

    A plan is kept until bind uses it; as 1,000 `ScoreDetail`s with their component dicts
    it was thousands of objects for the garbage collector to walk on every full
    collection, which made prioritize's p99 at 1,000 nodes 70 ms (docs/benchmarks.md).
    Here it is a few lists; a `ScoreDetail` is built only when one is read.
    """

    __slots__ = ("_names", "_scores", "_values", "_components", "_by_name", "_priorities", "_best")

    def __init__(
        self,
        names: Sequence[str],
        scores: Sequence[int],
        values: Sequence[float],
        components: Mapping[str, Sequence[float]],
    ) -> None:
        self._names = tuple(names)
        self._scores = tuple(scores)
        self._values = tuple(values)
        self._components = {k: tuple(v) for k, v in components.items()}
        self._by_name: dict[str, int] | None = None
        # Derived once: an unchanged table is handed out again (runtime/score_board.py).
        self._priorities: HostPriorityList | None = None
        self._best: tuple[frozenset[str], str | None] | None = None

    @property
    def _index(self) -> dict[str, int]:
        """node -> column position, built on first use (bind reads one node, most plans none)."""
        if self._by_name is None:
            self._by_name = {n: i for i, n in enumerate(self._names)}
        return self._by_name

    def __getitem__(self, node: str) -> ScoreDetail:
        i = self._index[node]
        return ScoreDetail(self._scores[i], self._values[i], {k: v[i] for k, v in self._components.items()})

    def __contains__(self, node: object) -> bool:
        return isinstance(node, str) and node in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    @property
    def scores(self) -> tuple[int, ...]:
        return self._scores

    def extender_scores(self) -> dict[str, int]:
        """node -> the 0..10 score kube-scheduler is told."""
        return dict(zip(self._names, self._scores))

    def priorities(self) -> HostPriorityList:
        """The scores as prioritize answers them, in column order, each node once."""
        if self._priorities is None:
            self._priorities = HostPriorityList.of(self.extender_scores())
        return self._priorities

    def best(self, feasible: frozenset[str]) -> str | None:
        """core/scoring.py `best_node` over the feasible nodes: the highest value, ties to
        the alphabetically first name."""
        if self._best is not None and self._best[0] is feasible:
            return self._best[1]
        if feasible.issuperset(self._names):
            top = max(self._values, default=None)
            best = None if top is None else min(compress(self._names, map(eq, self._values, repeat(top))))
        else:
            best = best_node({n: v for n, v in zip(self._names, self._values) if n in feasible})
        self._best = (feasible, best)
        return best

    def with_scores(self, scores: Sequence[int]) -> ScoreTable:
        return ScoreTable(self._names, scores, self._values, self._components)


@attrs.frozen
class SchedulingPlan:
    pod: PodDemand
    algorithm: str
    selected: str | None
    scores: Mapping[str, ScoreDetail]
    feasible: frozenset[str]
    notes: tuple[str, ...]
    created_at: float  # unix seconds
    expires_at: float

    def to_json(self) -> dict[str, Any]:
        return {
            "pod": self.pod.key,
            "uid": self.pod.uid,
            "algorithm": self.algorithm,
            "selected_node": self.selected,
            "scores": {
                node: {"score": d.score, "value": round(d.value, 3),
                       "components": {k: round(v, 6) for k, v in d.components.items()}}
                for node, d in sorted(self.scores.items())
            },
            "feasible_nodes": sorted(self.feasible),
            "notes": list(self.notes),
            "created_at": self.created_at,
            "expires_at": self.expires_at,
        }


@attrs.frozen
class FilterOutcome:
    """The last filter answer for a pod, kept until prioritize folds it into a plan."""

    pod: PodDemand
    feasible: frozenset[str]
    notes: tuple[str, ...]
    at: float


@attrs.define(eq=False)
class PlanStore:
    clock: Callable[[], float]
    expiration_s: float
    _by_key: dict[str, SchedulingPlan] = attrs.field(factory=dict)
    _filters: dict[str, FilterOutcome] = attrs.field(factory=dict)  # by pod uid or key
    _batch: dict[str, SchedulingPlan] = attrs.field(factory=dict)  # by pod key (S10)

    def _alive(self, plan: SchedulingPlan | None) -> SchedulingPlan | None:
        if plan is None or plan.expires_at <= self.clock():
            return None
        return plan

    def record_filter(self, pod: PodDemand, feasible: frozenset[str], notes: tuple[str, ...]) -> None:
        self._filters[pod.uid or pod.key] = FilterOutcome(pod, feasible, notes, self.clock())

    def filter_outcome(self, pod: PodDemand) -> FilterOutcome | None:
        return self.filter_outcome_for(pod.uid or pod.key)

    def filter_outcome_for(self, uid: str) -> FilterOutcome | None:
        outcome = self._filters.get(uid)
        if outcome is None or outcome.at + self.expiration_s <= self.clock():
            return None
        return outcome

    def put(self, plan: SchedulingPlan) -> None:
        self._by_key[plan.pod.key] = plan

    def get(self, key: str) -> SchedulingPlan | None:
        """The pod's current plan: prioritize's, else a batch plan not yet folded into one."""
        return self._alive(self._by_key.get(key)) or self._alive(self._batch.get(key))

    def for_uid(self, key: str, uid: str) -> SchedulingPlan | None:
        plan = self._alive(self._by_key.get(key))
        return plan if plan is not None and plan.pod.uid == uid else None

    def put_batch(self, plan: SchedulingPlan) -> None:
        """Store a batch plan; it supersedes a per-pod plan made before it."""
        self._batch[plan.pod.key] = plan
        self._by_key.pop(plan.pod.key, None)

    def batch_for(self, pod: PodDemand) -> SchedulingPlan | None:
        """The unexpired batch plan for `pod` (by key; by UID too when the plan has one)."""
        plan = self._alive(self._batch.get(pod.key))
        if plan is None or (plan.pod.uid and pod.uid and plan.pod.uid != pod.uid):
            return None
        return plan

    def remove(self, key: str) -> None:
        self._batch.pop(key, None)
        plan = self._by_key.pop(key, None)
        if plan is not None:
            self._filters.pop(plan.pod.uid or key, None)

    def sweep(self) -> int:
        """Drop expired plans and filter outcomes; returns how many went."""
        now = self.clock()
        dead = [k for k, p in self._by_key.items() if p.expires_at <= now]
        for key in dead:
            self.remove(key)
        stale = [k for k, f in self._filters.items() if f.at + self.expiration_s <= now]
        for key in stale:
            del self._filters[key]
        batch = [k for k, p in self._batch.items() if p.expires_at <= now]
        for key in batch:
            del self._batch[key]
        return len(dead) + len(stale) + len(batch)

    def __len__(self) -> int:
        return len(self._by_key)


def prefer_planned(
    table: ScoreTable, batch: SchedulingPlan | None, feasible: frozenset[str]
) -> tuple[ScoreTable, SchedulingPlan | None]:
    """Prioritize's scores with a batch plan applied (spec S5).

    When `batch` assigns the pod to a node that is scored and passed filter, that node
    scores 10 and every other node at most 9, so kube-scheduler's own pick agrees with
    the plan unless its in-tree scores outweigh ours (bind follows the plan either way).
    Returns the scores and the batch plan when it applies, else None.
    """
    if batch is None or batch.selected not in table or batch.selected not in feasible:
        return table, None
    scores = [
        MAX_SCORE if node == batch.selected else min(score, MAX_SCORE - 1)
        for node, score in zip(table.names, table.scores)
    ]
    return table.with_scores(scores), batch
