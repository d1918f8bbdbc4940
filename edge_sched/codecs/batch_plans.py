"""`POST /api/v1/scheduler/plans` request bodies (spec S10), decoded without I/O.

The body follows the extender's conventions, so one client library serves both: keys in
any case (`Pods`, `pods`, `PODS`), `Nodes` a NodeList (`{"items": [...]}`) as in the
verbs with `nodeCacheCapable: false`. Unlike the verbs, unknown top-level keys are an
error: an operator's typo (`algoritm`) must not silently run the other algorithm.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import attrs

from edge_sched.codecs.extender import fold_keys
from edge_sched.codecs.kube_objects import ObjectError, pod_demand_from_object
from edge_sched.core.model import PodDemand
from edge_sched.core.optimizer import ALGORITHMS, Algorithm

# One plan holds at most this many pods: the GA's population arrays grow with it, and a
# request is meant to be one task plan or one rollout, not a cluster's whole backlog.
MAX_BATCH_PODS = 2000
FIELDS = {"pods": "Pods", "nodes": "Nodes", "algorithm": "algorithm"}


class PlanRequestError(ValueError):
    """The body is not a valid plan request; the message names the field."""


@attrs.frozen
class PlanRequest:
    pods: tuple[PodDemand, ...]
    pod_objects: tuple[Mapping[str, Any], ...]  # as received, for the computing-power demand
    node_objects: tuple[Mapping[str, Any], ...] | None  # None: the cache's nodes
    algorithm: Algorithm | None  # None: OPTIMIZER_ALGORITHM


def parse_plan_request(body: Any) -> PlanRequest:
    """Decode and validate a plan request; PlanRequestError names the first bad field."""
    if not isinstance(body, Mapping):
        raise PlanRequestError(f"body: expected a JSON object, got {type(body).__name__}")
    fields = fold_keys(body)
    unknown = sorted(str(k) for k in body if str(k).lower() not in FIELDS)
    if unknown:
        raise PlanRequestError(f"{unknown[0]}: unknown field (expected {', '.join(FIELDS.values())})")
    raw_pods = fields.get("pods")
    if raw_pods is None:
        raise PlanRequestError("Pods: required (a list of Pod objects)")
    if not isinstance(raw_pods, list):
        raise PlanRequestError(f"Pods: expected a list of Pod objects, got {type(raw_pods).__name__}")
    if not raw_pods:
        raise PlanRequestError("Pods: empty; expected at least one Pod object")
    if len(raw_pods) > MAX_BATCH_PODS:
        raise PlanRequestError(f"Pods: {len(raw_pods)} pods, at most {MAX_BATCH_PODS} per plan")
    pods: list[PodDemand] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(raw_pods):
        if not isinstance(raw, Mapping):
            raise PlanRequestError(f"Pods[{i}]: expected a Pod object, got {type(raw).__name__}")
        try:
            pod = pod_demand_from_object(raw)
        except ObjectError as exc:
            raise PlanRequestError(f"Pods[{i}]: {exc}") from None
        if pod.key in seen:
            raise PlanRequestError(f"Pods[{i}]: duplicate pod {pod.key} (also Pods[{seen[pod.key]}])")
        seen[pod.key] = i
        pods.append(pod)
    return PlanRequest(
        pods=tuple(pods),
        pod_objects=tuple(cast("list[Mapping[str, Any]]", raw_pods)),
        node_objects=_node_objects(fields.get("nodes")),
        algorithm=_algorithm(fields.get("algorithm")),
    )


def _node_objects(nodes: Any) -> tuple[Mapping[str, Any], ...] | None:
    if nodes is None:
        return None
    if not isinstance(nodes, Mapping):
        raise PlanRequestError(f"Nodes: expected a NodeList object, got {type(nodes).__name__}")
    items = fold_keys(nodes).get("items")
    if items is None:
        items = []
    if not isinstance(items, list):
        raise PlanRequestError("Nodes.items: expected a list of Node objects")
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise PlanRequestError(f"Nodes.items[{i}]: expected a Node object, got {type(item).__name__}")
    return tuple(items)


def _algorithm(value: Any) -> Algorithm | None:
    if value is None:
        return None
    if not isinstance(value, str) or value.lower() not in ALGORITHMS:
        raise PlanRequestError(f"algorithm: {value!r} is not one of {', '.join(ALGORITHMS)}")
    return cast("Algorithm", value.lower())
