"""Kubernetes Node and Pod JSON -> the lean records of `core.model`.

Both the watch cache and the extender verbs decode through here, so a node sent
by kube-scheduler in `Nodes.items` and the same node from the watch become the
same record. Malformed input raises `ObjectError` with every problem found,
each naming the field path; nothing here raises TypeError or KeyError on odd
shapes (explicit nulls are common in what kube-scheduler sends).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edge_sched.core.model import (
    NodeInfo,
    NodeSelectorRequirement,
    NodeSelectorTerm,
    PlacedPod,
    PodDemand,
)
from edge_sched.core.podresources import PodSpecError, parse_resource_list, pod_requests

ANNOTATION_PREFIX = "edge-sched.io/"
_OPERATORS = frozenset({"In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"})


class ObjectError(ValueError):
    """An API object that cannot be decoded; `problems` name each field."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def _mapping(value: Any, path: str, problems: list[str]) -> Mapping[str, Any]:
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return value
    problems.append(f"{path}: expected an object, got {type(value).__name__}")
    return {}


def _list(value: Any, path: str, problems: list[str]) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list):
        return value
    problems.append(f"{path}: expected a list, got {type(value).__name__}")
    return []


def _str_map(value: Any, path: str, problems: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, item in _mapping(value, path, problems).items():
        if not isinstance(item, str):
            problems.append(f"{path}.{key}: expected a string")
            continue
        out[str(key)] = item
    return out


def _name(meta: Mapping[str, Any], path: str, problems: list[str]) -> str:
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        problems.append(f"{path}.name: required")
        return ""
    return name


def node_from_object(obj: Any) -> NodeInfo:
    """Decode a v1.Node; raises ObjectError naming every bad field."""
    problems: list[str] = []
    node = _mapping(obj, "node", problems)
    meta = _mapping(node.get("metadata"), "metadata", problems)
    spec = _mapping(node.get("spec"), "spec", problems)
    status = _mapping(node.get("status"), "status", problems)
    name = _name(meta, "metadata", problems)
    allocatable: dict[str, int] = {}
    try:
        allocatable = parse_resource_list(status.get("allocatable"), "status.allocatable")
    except PodSpecError as exc:
        problems.extend(exc.problems)
    annotations = {
        k: v
        for k, v in _str_map(meta.get("annotations"), "metadata.annotations", problems).items()
        if k.startswith(ANNOTATION_PREFIX)
    }
    addresses = tuple(
        str(a["address"])
        for a in _list(status.get("addresses"), "status.addresses", problems)
        if isinstance(a, Mapping) and a.get("type") == "InternalIP" and a.get("address")
    )
    ready = any(
        isinstance(c, Mapping) and c.get("type") == "Ready" and c.get("status") == "True"
        for c in _list(status.get("conditions"), "status.conditions", problems)
    )
    if problems:
        raise ObjectError(problems)
    return NodeInfo(
        name=name,
        allocatable=allocatable,
        labels=_str_map(meta.get("labels"), "metadata.labels", problems),
        annotations=annotations,
        addresses=addresses,
        # A node object without conditions (as in hand-written extender calls)
        # is taken as ready: readiness is kube-scheduler's business, not ours.
        ready=ready or not status.get("conditions"),
        unschedulable=bool(spec.get("unschedulable")),
    )


def _requirements(value: Any, path: str, problems: list[str]) -> tuple[NodeSelectorRequirement, ...]:
    out: list[NodeSelectorRequirement] = []
    for i, raw in enumerate(_list(value, path, problems)):
        item_path = f"{path}[{i}]"
        req = _mapping(raw, item_path, problems)
        key, op = req.get("key"), req.get("operator")
        values = _list(req.get("values"), f"{item_path}.values", problems)
        if not isinstance(key, str) or not key:
            problems.append(f"{item_path}.key: required")
            continue
        if op not in _OPERATORS:
            problems.append(f"{item_path}.operator: {op!r} is not one of {sorted(_OPERATORS)}")
            continue
        out.append(NodeSelectorRequirement(key, op, tuple(str(v) for v in values)))
    return tuple(out)


def _affinity_terms(spec: Mapping[str, Any], problems: list[str]) -> tuple[NodeSelectorTerm, ...]:
    path = "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
    affinity = _mapping(spec.get("affinity"), "spec.affinity", problems)
    node_affinity = _mapping(affinity.get("nodeAffinity"), "spec.affinity.nodeAffinity", problems)
    required = _mapping(
        node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution"), path, problems
    )
    raw_terms = _list(required.get("nodeSelectorTerms"), f"{path}.nodeSelectorTerms", problems)
    if node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution") is not None and not raw_terms:
        # Kubernetes refuses such a pod; matching every node would be the opposite of "none".
        problems.append(f"{path}.nodeSelectorTerms: must have at least one term")
    terms: list[NodeSelectorTerm] = []
    for i, raw in enumerate(raw_terms):
        term_path = f"{path}.nodeSelectorTerms[{i}]"
        term = _mapping(raw, term_path, problems)
        terms.append(
            NodeSelectorTerm(
                _requirements(term.get("matchExpressions"), f"{term_path}.matchExpressions", problems),
                _requirements(term.get("matchFields"), f"{term_path}.matchFields", problems),
            )
        )
    return tuple(terms)


def pod_demand_from_object(obj: Any) -> PodDemand:
    """Decode a v1.Pod into what filter and score need; ObjectError if invalid."""
    problems: list[str] = []
    pod = _mapping(obj, "Pod", problems)
    meta = _mapping(pod.get("metadata"), "metadata", problems)
    spec = _mapping(pod.get("spec"), "spec", problems)
    name = _name(meta, "metadata", problems)
    namespace = meta.get("namespace") or "default"
    uid = meta.get("uid") or ""
    requests: dict[str, int] = {}
    if not problems:
        try:
            requests = pod_requests(pod)
        except PodSpecError as exc:
            problems.extend(exc.problems)
    selector = _str_map(spec.get("nodeSelector"), "spec.nodeSelector", problems)
    terms = _affinity_terms(spec, problems)
    if problems:
        raise ObjectError(problems)
    return PodDemand(
        namespace=str(namespace),
        name=name,
        uid=str(uid),
        requests=requests,
        node_selector=selector,
        affinity_terms=terms,
    )


def placed_pod_from_object(obj: Mapping[str, Any]) -> PlacedPod | None:
    """Decode a pod from the watch; None when it is not on a node.

    The API server has already validated these pods; should our stricter
    quantity parser still refuse one, the pod counts with no requests rather
    than disappearing from its node's pod count.
    """
    problems: list[str] = []
    meta = _mapping(obj.get("metadata"), "metadata", problems)
    spec = _mapping(obj.get("spec"), "spec", problems)
    node = spec.get("nodeName")
    uid = meta.get("uid")
    if not node or not uid:
        return None
    try:
        requests = pod_requests(obj)
    except PodSpecError:
        requests = {}
    return PlacedPod(
        uid=str(uid),
        namespace=str(meta.get("namespace") or "default"),
        name=str(meta.get("name") or ""),
        node=str(node),
        requests=requests,
    )
