"""The cluster cache: nodes, pods on nodes, and pods we bound but have not seen.

One writer per kind (the node and pod reflectors, plus `assume` after a bind)
and many readers (the extender verbs). Per-node sums are kept incrementally so
that filtering 5,000 nodes never walks 50,000 pods.

Assumed pods: after a successful bind the watch may take a moment to show the
pod on its node; until then (or until ASSUMED_POD_TTL passes) the pod counts
on that node, so two pods bound in quick succession are not both fitted into
the same free space.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs
import trio

from edge_sched.codecs.kube_objects import ObjectError, node_from_object, placed_pod_from_object
from edge_sched.core.model import NodeInfo, NodeLoad, PlacedPod
from edge_sched.runtime.changes import ChangeLog

log = logging.getLogger(__name__)


def _add(total: dict[str, int], amounts: Mapping[str, int], sign: int) -> None:
    for resource, amount in amounts.items():
        value = total.get(resource, 0) + sign * amount
        if value:
            total[resource] = value
        else:
            total.pop(resource, None)


@attrs.define(eq=False)
class ClusterCache:
    clock: Callable[[], float] = trio.current_time
    nodes: dict[str, NodeInfo] = attrs.field(factory=dict)
    pods: dict[str, PlacedPod] = attrs.field(factory=dict)
    nodes_synced: bool = False
    pods_synced: bool = False
    _requested: dict[str, dict[str, int]] = attrs.field(factory=dict)
    _pod_count: dict[str, int] = attrs.field(factory=dict)
    # node -> uid -> (pod, expiry on `clock`)
    _assumed: dict[str, dict[str, tuple[PlacedPod, float]]] = attrs.field(factory=dict)
    _assumed_node: dict[str, str] = attrs.field(factory=dict)  # uid -> node
    # node -> its NodeLoad without assumed pods, built on first read after a change:
    # the verbs read every candidate's load per call, pods change far less often.
    _loads: dict[str, NodeLoad] = attrs.field(factory=dict)
    _changed: trio.Event = attrs.field(factory=trio.Event)
    changes: ChangeLog = attrs.field(factory=ChangeLog)  # per node, for the verbs (runtime/rows.py)

    # -- change notification -------------------------------------------------
    def _touch(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_changed(self) -> None:
        await self._changed.wait()

    # -- nodes ---------------------------------------------------------------
    def replace_nodes(self, nodes: Iterable[NodeInfo]) -> None:
        self.nodes = {n.name: n for n in nodes}
        self.nodes_synced = True
        self.changes.everything()
        self._touch()

    def upsert_node(self, node: NodeInfo) -> None:
        if self.nodes.get(node.name) == node:
            # Heartbeats and status updates that change nothing edge-sched keeps: keeping
            # the same record keeps the verbs' per-node work reusable (runtime/candidates.py).
            return
        self.nodes[node.name] = node
        self.changes.node(node.name)
        self._touch()

    def delete_node(self, name: str) -> None:
        self.nodes.pop(name, None)
        self.changes.node(name)
        self._touch()

    # -- pods ----------------------------------------------------------------
    def _account(self, pod: PlacedPod, sign: int) -> None:
        self._loads.pop(pod.node, None)
        self.changes.node(pod.node)
        totals = self._requested.setdefault(pod.node, {})
        _add(totals, pod.requests, sign)
        self._pod_count[pod.node] = self._pod_count.get(pod.node, 0) + sign

    def replace_pods(self, pods: Iterable[PlacedPod]) -> None:
        self.pods = {}
        self._requested = {}
        self._pod_count = {}
        self._loads = {}
        for pod in pods:
            self._store_pod(pod)
        self.pods_synced = True
        self.changes.everything()
        self._touch()

    def _store_pod(self, pod: PlacedPod) -> None:
        old = self.pods.get(pod.uid)
        if old is not None:
            self._account(old, -1)
        self.pods[pod.uid] = pod
        self._account(pod, +1)
        self._forget_assumed(pod.uid)

    def upsert_pod(self, pod: PlacedPod) -> None:
        if self.pods.get(pod.uid) == pod:
            return  # a status update: same node, same requests (see upsert_node)
        self._store_pod(pod)
        self._touch()

    def delete_pod(self, uid: str) -> None:
        old = self.pods.pop(uid, None)
        if old is not None:
            self._account(old, -1)
        self._forget_assumed(uid)
        self._touch()

    # -- assumed pods --------------------------------------------------------
    def assume(self, pod: PlacedPod, ttl_s: float) -> None:
        if pod.uid in self.pods:
            return  # the watch was faster than us
        self._forget_assumed(pod.uid)
        self._assumed.setdefault(pod.node, {})[pod.uid] = (pod, self.clock() + ttl_s)
        self._assumed_node[pod.uid] = pod.node
        self.changes.node(pod.node)
        self._touch()

    def unassume(self, uid: str) -> None:
        """Release a reservation whose bind failed."""
        self._forget_assumed(uid)
        self._touch()

    def _forget_assumed(self, uid: str) -> None:
        node = self._assumed_node.pop(uid, None)
        if node is None:
            return
        self.changes.node(node)
        pods = self._assumed.get(node, {})
        pods.pop(uid, None)
        if not pods:
            self._assumed.pop(node, None)

    def _live_assumed(self, node: str) -> list[PlacedPod]:
        pods = self._assumed.get(node)
        if not pods:
            return []
        now = self.clock()
        expired = [uid for uid, (_, until) in pods.items() if until <= now]
        for uid in expired:
            self._forget_assumed(uid)
        return [pod for pod, _ in pods.values()]

    # -- reads ---------------------------------------------------------------
    def load(self, node: str) -> NodeLoad:
        """Requests and pod count on `node`, assumed pods included (a snapshot: later
        changes to the cache never show through an earlier answer)."""
        base = self._loads.get(node)
        if base is None:
            base = NodeLoad(dict(self._requested.get(node, {})), self._pod_count.get(node, 0))
            self._loads[node] = base
        if node not in self._assumed:
            return base
        requested = dict(base.requested)
        count = base.pod_count
        for pod in self._live_assumed(node):
            _add(requested, pod.requests, +1)
            count += 1
        return NodeLoad(requested, count)

    def load_until(self, node: str) -> float:
        """When `load(node)` changes by time alone: its first assumed pod's reservation ends
        (`clock`); infinity without assumed pods."""
        pods = self._assumed.get(node)
        return min(until for _, until in pods.values()) if pods else math.inf

    @property
    def synced(self) -> bool:
        return self.nodes_synced and self.pods_synced


@attrs.define(eq=False)
class NodeSink:
    """Feeds Node events from the reflector into the cache."""

    cache: ClusterCache

    def replace(self, objects: list[dict[str, Any]]) -> None:
        self.cache.replace_nodes(n for n in map(_decode_node, objects) if n is not None)

    def decode(self, obj: dict[str, Any]) -> NodeInfo | None:
        return _decode_node(obj)

    def replace_decoded(self, records: list[NodeInfo]) -> None:
        self.cache.replace_nodes(records)

    def upsert(self, obj: dict[str, Any]) -> None:
        node = _decode_node(obj)
        if node is not None:
            self.cache.upsert_node(node)

    def delete(self, obj: dict[str, Any]) -> None:
        name = (obj.get("metadata") or {}).get("name")
        if name:
            self.cache.delete_node(str(name))


@attrs.define(eq=False)
class PodSink:
    """Feeds events of pods on nodes (non-terminal) into the cache."""

    cache: ClusterCache

    def replace(self, objects: list[dict[str, Any]]) -> None:
        self.cache.replace_pods(p for p in map(placed_pod_from_object, objects) if p is not None)

    def decode(self, obj: dict[str, Any]) -> PlacedPod | None:
        return placed_pod_from_object(obj)

    def replace_decoded(self, records: list[PlacedPod]) -> None:
        self.cache.replace_pods(records)

    def upsert(self, obj: dict[str, Any]) -> None:
        pod = placed_pod_from_object(obj)
        if pod is not None:
            self.cache.upsert_pod(pod)

    def delete(self, obj: dict[str, Any]) -> None:
        uid = (obj.get("metadata") or {}).get("uid")
        if uid:
            self.cache.delete_pod(str(uid))


def _decode_node(obj: dict[str, Any]) -> NodeInfo | None:
    try:
        return node_from_object(obj)
    except ObjectError as exc:
        name = (obj.get("metadata") or {}).get("name", "?")
        log.warning("ignoring node %s from the watch: %s", name, exc)
        return None
