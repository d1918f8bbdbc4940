"""Filter rules of the extender (spec S5), as pure functions.

Each rule answers with a one-line reason naming the rule and the numbers, so
that `kubectl describe pod` tells an operator exactly why a node was refused.
A failure is *unresolvable* when evicting pods cannot help (selector or
affinity mismatch, or a request larger than the node's whole allocatable);
kube-scheduler then skips preemption on that node.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import attrs

from edge_sched.core.load import LoadLimits, load_problem
from edge_sched.core.model import (
    PODS,
    Candidate,
    NodeInfo,
    NodeSelectorRequirement,
    NodeSelectorTerm,
    PodDemand,
)
from edge_sched.core.power import power_shortage
from edge_sched.core.quantities import format_amount


@attrs.frozen
class Verdict:
    """Outcome of filtering one node."""

    node: str
    reason: str = ""  # empty means the node passes
    unresolvable: bool = False

    @property
    def passed(self) -> bool:
        return not self.reason


@attrs.frozen
class FilterLimits:
    max_pods_per_node: int = 110
    load: LoadLimits = LoadLimits()


def check_resources(pod: PodDemand, cand: Candidate) -> Verdict | None:
    """Rule 1: every requested resource fits in allocatable minus requested."""
    problems: list[str] = []
    unresolvable = False
    for resource, need in sorted(pod.requests.items()):
        if need <= 0:
            continue
        allocatable = cand.node.allocatable.get(resource, 0)
        free = allocatable - cand.load.requested.get(resource, 0)
        if need > free:
            problems.append(
                f"insufficient {resource} (need {format_amount(resource, need)}, "
                f"free {format_amount(resource, max(free, 0))})"
            )
            # Evicting every pod frees at most `allocatable`.
            unresolvable = unresolvable or need > allocatable
    if not problems:
        return None
    return Verdict(cand.name, "; ".join(problems), unresolvable)


def check_pod_count(cand: Candidate, limits: FilterLimits) -> Verdict | None:
    """Rule 2: one more pod must fit under the node's and our pod limit."""
    limit = limits.max_pods_per_node
    node_pods = cand.node.allocatable.get(PODS)
    if node_pods is not None:
        limit = min(limit, node_pods)
    if cand.load.pod_count + 1 <= limit:
        return None
    return Verdict(cand.name, f"too many pods ({cand.load.pod_count} of max {limit})")


def check_placement_rules(pod: PodDemand, node: NodeInfo) -> Verdict | None:
    """Rule 3: nodeSelector and required node affinity."""
    for key, want in sorted(pod.node_selector.items()):
        have = node.labels.get(key)
        if have != want:
            shown = "absent" if have is None else f"{have!r}"
            return Verdict(
                node.name,
                f"node selector mismatch: {key}={want!r} required, node has {shown}",
                unresolvable=True,
            )
    if pod.affinity_terms and not any(term_matches(t, node) for t in pod.affinity_terms):
        return Verdict(
            node.name, "node affinity mismatch: no required nodeSelectorTerm matches", True
        )
    return None


def term_matches(term: NodeSelectorTerm, node: NodeInfo) -> bool:
    """A term matches when all its expressions and fields match.

    As in Kubernetes, a term with no requirements matches nothing.
    """
    if not term.match_expressions and not term.match_fields:
        return False
    fields = {"metadata.name": node.name}
    return all(requirement_matches(r, node.labels) for r in term.match_expressions) and all(
        requirement_matches(r, fields) for r in term.match_fields
    )


def requirement_matches(req: NodeSelectorRequirement, labels: Mapping[str, str]) -> bool:
    value = labels.get(req.key)
    op = req.operator
    if op == "In":
        return value is not None and value in req.values
    if op == "NotIn":
        return value is None or value not in req.values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    if op in ("Gt", "Lt"):
        return _compare_int(value, req.values, greater=op == "Gt")
    return False  # unknown operators were rejected when the pod was decoded


def _compare_int(value: str | None, values: Sequence[str], *, greater: bool) -> bool:
    if value is None or len(values) != 1:
        return False
    try:
        have, bound = int(value), int(values[0])
    except ValueError:
        return False
    return have > bound if greater else have < bound


def check_load(cand: Candidate, limits: FilterLimits) -> Verdict | None:
    """Rule 4: live utilisation under the node's thresholds (core/load.py).

    Load changes and evicting pods lowers it, so this failure is never unresolvable.
    """
    reason = load_problem(cand, limits.load)
    return Verdict(cand.name, reason) if reason else None


def check_power(pod: PodDemand, cand: Candidate) -> Verdict | None:
    """Rule 5: fresh reports must show at least the pod's power demand (core/power.py).

    Applies only when the runtime attached a demand (ENABLE_COMPUTING_POWER_FILTER); a
    node without a fresh report of a needed type passes for that type. Unresolvable
    only when even the idle node (load 0) has too little: evicting pods lowers load.
    """
    if pod.power_demand is None:
        return None
    shortage = power_shortage(pod.power_demand, cand.power)
    if shortage is None:
        return None
    return Verdict(cand.name, shortage.reason, shortage.unresolvable)


def filter_node(pod: PodDemand, cand: Candidate, limits: FilterLimits) -> Verdict:
    """Apply rules 1-3 in order of how much they explain; first failure wins."""
    for verdict in (
        check_placement_rules(pod, cand.node),
        check_resources(pod, cand),
        check_pod_count(cand, limits),
        check_load(cand, limits),
        check_power(pod, cand),
    ):
        if verdict is not None:
            return verdict
    return Verdict(cand.name)


def filter_nodes(
    pod: PodDemand, candidates: Iterable[Candidate], limits: FilterLimits
) -> list[Verdict]:
    return [filter_node(pod, c, limits) for c in candidates]
