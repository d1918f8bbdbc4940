"""Filter rules 1-3 (spec S5): reasons carry the rule and the numbers."""

from typing import Any

import pytest

from edge_sched.codecs.kube_objects import ObjectError, pod_demand_from_object
from edge_sched.core.filtering import FilterLimits, filter_node, term_matches
from edge_sched.core.model import (
    Candidate,
    NodeInfo,
    NodeLoad,
    NodeSelectorRequirement,
    NodeSelectorTerm,
    PodDemand,
)

GI = 1024**3


def pod(**kw: object) -> PodDemand:
    return PodDemand(namespace="default", name="p", uid="u", **kw)  # type: ignore[arg-type]


def cand(name: str = "n1", *, cpu: int = 4000, mem: int = 8 * GI, pods: int = 110,
         used_cpu: int = 0, count: int = 0, labels: dict[str, str] | None = None,
         extra: dict[str, int] | None = None) -> Candidate:
    alloc = {"cpu": cpu, "memory": mem, "pods": pods, **(extra or {})}
    node = NodeInfo(name=name, allocatable=alloc, labels=labels or {})
    return Candidate(node, NodeLoad({"cpu": used_cpu} if used_cpu else {}, count))


def test_fitting_pod_passes() -> None:
    verdict = filter_node(pod(requests={"cpu": 1000}), cand(), FilterLimits())
    assert verdict.passed and verdict.reason == ""


def test_insufficient_cpu_reason_names_need_and_free() -> None:
    # C03: node-a has 2 free cores, node-b 1; the pod asks for 4.
    a = filter_node(pod(requests={"cpu": 4000}), cand("node-a", used_cpu=2000), FilterLimits())
    b = filter_node(pod(requests={"cpu": 4000}), cand("node-b", used_cpu=3000), FilterLimits())
    assert a.reason == "insufficient cpu (need 4, free 2)"
    assert b.reason == "insufficient cpu (need 4, free 1)"
    # Evicting pods could free 4 cores on a 4-core node: preemption may help.
    assert not a.unresolvable


def test_request_larger_than_the_node_is_unresolvable() -> None:
    verdict = filter_node(pod(requests={"cpu": 8000}), cand(cpu=4000), FilterLimits())
    assert verdict.unresolvable
    assert verdict.reason == "insufficient cpu (need 8, free 4)"


def test_missing_extended_resource() -> None:
    # C12 A: the node advertises no nvidia.com/gpu at all.
    verdict = filter_node(pod(requests={"nvidia.com/gpu": 1}), cand("node-a"), FilterLimits())
    assert verdict.reason == "insufficient nvidia.com/gpu (need 1, free 0)"
    assert verdict.unresolvable
    ok = filter_node(pod(requests={"nvidia.com/gpu": 1}), cand("node-b", extra={"nvidia.com/gpu": 2}), FilterLimits())
    assert ok.passed


def test_several_resources_all_named() -> None:
    verdict = filter_node(
        pod(requests={"cpu": 5000, "memory": 16 * GI}), cand(cpu=4000, mem=8 * GI), FilterLimits()
    )
    assert verdict.reason == "insufficient cpu (need 5, free 4); insufficient memory (need 16Gi, free 8Gi)"


def test_pod_count_uses_the_smaller_limit() -> None:
    assert filter_node(pod(), cand(pods=10, count=9), FilterLimits(110)).passed
    full = filter_node(pod(), cand(pods=10, count=10), FilterLimits(110))
    assert full.reason == "too many pods (10 of max 10)"
    capped = filter_node(pod(), cand(pods=110, count=5), FilterLimits(5))
    assert capped.reason == "too many pods (5 of max 5)"


def test_node_selector_mismatch_is_unresolvable() -> None:
    verdict = filter_node(pod(node_selector={"zone": "z1"}), cand(labels={"zone": "z2"}), FilterLimits())
    assert verdict.unresolvable
    assert verdict.reason == "node selector mismatch: zone='z1' required, node has 'z2'"
    absent = filter_node(pod(node_selector={"zone": "z1"}), cand(), FilterLimits())
    assert absent.reason == "node selector mismatch: zone='z1' required, node has absent"


def test_affinity_operators() -> None:
    node = NodeInfo("n1", labels={"zone": "z1", "gen": "5"})

    def term(*reqs: NodeSelectorRequirement) -> NodeSelectorTerm:
        return NodeSelectorTerm(match_expressions=reqs)

    req = NodeSelectorRequirement
    assert term_matches(term(req("zone", "In", ("z1", "z2"))), node)
    assert not term_matches(term(req("zone", "NotIn", ("z1",))), node)
    assert term_matches(term(req("gpu", "DoesNotExist")), node)
    assert term_matches(term(req("zone", "Exists")), node)
    assert term_matches(term(req("gen", "Gt", ("4",))), node)
    assert not term_matches(term(req("gen", "Lt", ("4",))), node)
    assert not term_matches(term(req("zone", "Gt", ("1",))), node)  # not an integer
    assert not term_matches(NodeSelectorTerm(), node)  # an empty term matches nothing
    by_name = NodeSelectorTerm(match_fields=(req("metadata.name", "In", ("n1",)),))
    assert term_matches(by_name, node)


def test_affinity_terms_are_ored() -> None:
    terms = (
        NodeSelectorTerm((NodeSelectorRequirement("zone", "In", ("z9",)),)),
        NodeSelectorTerm((NodeSelectorRequirement("zone", "In", ("z1",)),)),
    )
    assert filter_node(pod(affinity_terms=terms), cand(labels={"zone": "z1"}), FilterLimits()).passed
    miss = filter_node(pod(affinity_terms=terms[:1]), cand(labels={"zone": "z1"}), FilterLimits())
    assert miss.unresolvable and "node affinity mismatch" in miss.reason


@pytest.mark.parametrize("required", [{"nodeSelectorTerms": []}, {}])
def test_required_affinity_without_terms_is_an_error_not_a_match_for_every_node(required: dict[str, Any]) -> None:
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}],
           "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": required}}}}
    with pytest.raises(ObjectError, match="requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms: "
                                          "must have at least one term"):
        pod_demand_from_object(pod)
