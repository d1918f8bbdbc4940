"""Lean, immutable records of the cluster facts that scheduling decisions need.

The watch cache and the extender codec turn Kubernetes JSON into these records
once, so the decision code never walks raw API objects and never holds the full
client models (a 5,000-node cache must stay small).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from edge_sched.core.power import NodePower, PowerDemand

# Resource names the default score looks at; everything else is fit-only.
CPU = "cpu"
MEMORY = "memory"
PODS = "pods"


@attrs.frozen
class NodeSelectorRequirement:
    """One `matchExpressions` / `matchFields` entry of a node selector term."""

    key: str
    operator: str
    values: tuple[str, ...] = ()


@attrs.frozen
class NodeSelectorTerm:
    """Requirements that must all hold (terms themselves are ORed)."""

    match_expressions: tuple[NodeSelectorRequirement, ...] = ()
    match_fields: tuple[NodeSelectorRequirement, ...] = ()


@attrs.frozen
class NodeInfo:
    """What edge-sched knows about a node from the API server."""

    name: str
    allocatable: Mapping[str, int] = attrs.field(factory=dict)
    labels: Mapping[str, str] = attrs.field(factory=dict)
    # Only `edge-sched.io/*` annotations are kept: they carry per-node overrides.
    annotations: Mapping[str, str] = attrs.field(factory=dict)
    addresses: tuple[str, ...] = ()
    ready: bool = True
    unschedulable: bool = False


@attrs.frozen
class PodDemand:
    """A pod as the scheduler sees it: identity, request and placement rules."""

    namespace: str
    name: str
    uid: str
    requests: Mapping[str, int] = attrs.field(factory=dict)
    node_selector: Mapping[str, str] = attrs.field(factory=dict)
    # Required node affinity; empty means "no constraint".
    affinity_terms: tuple[NodeSelectorTerm, ...] = ()
    # Computing-power demand (S6.4), attached by the runtime when computing power is on;
    # filter rule 5 and the score's power term read it.
    power_demand: PowerDemand | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@attrs.frozen
class NodeLoad:
    """What is already placed on a node: summed requests and pod count."""

    requested: Mapping[str, int] = attrs.field(factory=dict)
    pod_count: int = 0


@attrs.frozen
class Candidate:
    """A node offered to filter/prioritize, with what is already on it."""

    node: NodeInfo
    load: NodeLoad = NodeLoad()
    # Measured utilisation 0..1 (None when unknown or stale), see core/load.py.
    cpu_usage: float | None = None
    memory_usage: float | None = None
    # Where the usage came from (prometheus, metrics.k8s.io, udp-report, requests)
    # and why a value is missing; rule 4 names both in its reason.
    usage_source: str = ""
    usage_note: str = ""
    # Fresh computing-power reports by type (None: none fresh), see core/power.py.
    power: NodePower | None = None

    @property
    def name(self) -> str:
        return self.node.name


@attrs.frozen
class PlacedPod:
    """A pod that occupies a node (bound, or assumed bound by us)."""

    uid: str
    namespace: str
    name: str
    node: str
    requests: Mapping[str, int] = attrs.field(factory=dict)
