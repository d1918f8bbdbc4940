"""Per-pod scheduling plans: what prioritize decided, for bind to follow.

A plan records the scores behind a decision (so `GET .../scheduler/plan` and
`.../scores` can explain it) and the nodes that passed filter (so bind never
follows a plan onto a node filter refused). Plans expire after
PLAN_EXPIRATION_TIME and are removed once bind used them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs

from edge_sched.core.model import PodDemand


@attrs.frozen
class ScoreDetail:
    score: int  # 0..10, what kube-scheduler was told
    value: float  # 0..100, the exact score
    components: Mapping[str, float] = attrs.field(factory=dict)


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
                node: {"score": d.score, "value": round(d.value, 3), "components": dict(d.components)}
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
        return self._alive(self._by_key.get(key))

    def for_uid(self, key: str, uid: str) -> SchedulingPlan | None:
        plan = self.get(key)
        return plan if plan is not None and plan.pod.uid == uid else None

    def remove(self, key: str) -> None:
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
        return len(dead) + len(stale)

    def __len__(self) -> int:
        return len(self._by_key)
