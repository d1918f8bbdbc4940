"""metrics.k8s.io `NodeMetricsList` (`GET /apis/metrics.k8s.io/v1beta1/nodes`) -> usage.

Sans-I/O, like the Prometheus codec: absolute usage per node (CPU in cores, memory
working set in bytes) parsed exactly with the Kubernetes quantity parser. Items that
cannot be read are reported one by one and never stop the others. Turning usage into
a 0..1 utilisation needs the node's allocatable, which is the caller's (`to_readings`).
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction
from typing import Any

import attrs

from edge_sched.core.load import Reading, as_ratio
from edge_sched.core.model import CPU, MEMORY, NodeInfo
from edge_sched.core.quantities import QuantityError, parse_quantity


class NodeMetricsError(ValueError):
    """The answer is not a NodeMetricsList at all."""


@attrs.frozen
class NodeMetric:
    """Usage of one node: CPU cores and memory bytes (exact)."""

    name: str
    cpu_cores: Fraction
    memory_bytes: Fraction


@attrs.frozen
class NodeMetricsList:
    items: tuple[NodeMetric, ...] = ()
    problems: tuple[str, ...] = ()


def decode_node_metrics(doc: Any) -> NodeMetricsList:
    """Decode a NodeMetricsList; raises NodeMetricsError when `items` is missing."""
    if not isinstance(doc, Mapping):
        raise NodeMetricsError(f"expected a JSON object, got {type(doc).__name__}")
    items = doc.get("items")
    if items is None:
        items = []
    if not isinstance(items, list):
        raise NodeMetricsError(f"items: expected a list, got {type(items).__name__}")
    out: list[NodeMetric] = []
    problems: list[str] = []
    for i, item in enumerate(items):
        meta = item.get("metadata") if isinstance(item, Mapping) else None
        name = meta.get("name") if isinstance(meta, Mapping) else None
        if not isinstance(name, str) or not name:
            problems.append(f"items[{i}]: no metadata.name")
            continue
        usage = item.get("usage")
        if not isinstance(usage, Mapping):
            problems.append(f"{name}: no usage")
            continue
        try:
            cpu = parse_quantity(str(usage.get(CPU, "")))
            memory = parse_quantity(str(usage.get(MEMORY, "")))
        except QuantityError as exc:
            problems.append(f"{name}: usage {exc}")
            continue
        out.append(NodeMetric(name, cpu, memory))
    return NodeMetricsList(tuple(out), tuple(problems))


def to_readings(
    metrics: NodeMetricsList, nodes: Mapping[str, NodeInfo], now: float
) -> dict[str, dict[str, Reading]]:
    """resource -> node -> utilisation of allocatable, stamped `now` (when it was fetched).

    Nodes without allocatable for a resource get no reading for it. Usage above
    allocatable (system daemons run outside it) counts as full, 1.0.
    """
    out: dict[str, dict[str, Reading]] = {CPU: {}, MEMORY: {}}
    for item in metrics.items:
        node = nodes.get(item.name)
        if node is None:
            continue
        for resource, used in ((CPU, item.cpu_cores * 1000), (MEMORY, item.memory_bytes)):
            allocatable = node.allocatable.get(resource, 0)
            if allocatable <= 0 or used < 0:
                continue
            ratio = as_ratio(min(1.0, float(used / allocatable)))
            if ratio is not None:
                out[resource][item.name] = Reading(ratio, now)
    return out
