"""Per-node work the verbs can reuse from one call to the next (docs/benchmarks.md).

kube-scheduler sends the same nodes for pod after pod, and between two calls only a few
nodes change. Everything a filter verdict depends on is an immutable object: the node
record, its load snapshot, its resolved usage and its fresh power entries (each store
hands out the *same* object while nothing behind it changed). So:

- `CandidateCache` reuses a node's `Candidate` while those four objects are the same ones;
- `VerdictCache` reuses a node's verdict for pods of the same shape (what rules 1-5 read
  of a pod) while the node's `Candidate` is the same object;
- `ScoreCache` does the same for resource scores (an unmeasured node's score also depends
  on the other candidates of the call, through their median usage: it is reused only
  while that is the same too).

Reuse is by identity, never by a version counter that a writer could forget to bump; an
object held here cannot be freed, so its identity cannot be taken by another.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from itertools import compress, count, repeat
from operator import is_, is_not
from typing import Generic, TypeVar

import attrs

from edge_sched.core.filtering import FilterLimits, Verdict, filter_node
from edge_sched.core.load import NodeUsage
from edge_sched.core.model import CPU, MEMORY, Candidate, NodeInfo, NodeLoad, PodDemand
from edge_sched.core.power import NodePower, unjudged_types
from edge_sched.core.scoring import NeutralUsage, NodeScore, ScoreWeights, is_measured, score_nodes

# Pod shapes whose verdicts (and scores) are kept (least recently used dropped): a workload's pods share
# one shape, so a handful covers a stream of pods; each holds one entry per node.
VERDICT_SHAPES = 16

T = TypeVar("T")


def candidate_of(node: NodeInfo, load: NodeLoad, usage: NodeUsage | None, power: NodePower | None) -> Candidate:
    """The candidate for `node` (usage None: the daemon keeps no live usage)."""
    if usage is None:
        return Candidate(node=node, load=load, power=power)
    return Candidate(
        node=node,
        load=load,
        cpu_usage=usage.cpu,
        memory_usage=usage.memory,
        usage_source=usage.source,
        usage_note=usage.note,
        power=power,
    )


@attrs.define(eq=False)
class CandidateCache:
    _kept: dict[str, tuple[NodeLoad, NodeUsage | None, NodePower | None, Candidate]] = attrs.field(factory=dict)

    def candidate(self, node: NodeInfo, load: NodeLoad, usage: NodeUsage | None, power: NodePower | None) -> Candidate:
        hit = self._kept.get(node.name)
        if hit is not None:
            k_load, k_usage, k_power, cand = hit
            if cand.node is node and k_load is load and k_usage is usage and k_power is power:
                return cand
        cand = candidate_of(node, load, usage, power)
        self._kept[node.name] = (load, usage, power, cand)
        return cand

    def __len__(self) -> int:
        return len(self._kept)

    def forget(self, names: set[str]) -> None:
        """Keep only `names` (nodes deleted from the cluster would never match again)."""
        for name in [n for n in self._kept if n not in names]:
            del self._kept[name]


def pod_shape(pod: PodDemand, limits: FilterLimits) -> Hashable:
    """What rules 1-5 read of a pod, with the limits they apply: equal shapes, equal verdicts."""
    return (
        frozenset(pod.requests.items()),
        frozenset(pod.node_selector.items()),
        pod.affinity_terms,
        pod.power_demand,
        limits,
    )


@attrs.frozen(eq=False)  # compared by identity: found in lists fast, never by value
class Judged:
    verdict: Verdict
    # Needed power types the node has no fresh report of (rule 5 could not judge), for the
    # plan's notes, joined with "/"; empty when there are none or the node failed.
    unjudged: str = ""


def judge(pod: PodDemand, cand: Candidate, limits: FilterLimits) -> Judged:
    verdict = filter_node(pod, cand, limits)
    unjudged = ""
    if pod.power_demand is not None and verdict.passed:
        unjudged = "/".join(k.label for k in unjudged_types(pod.power_demand, cand.power))
    return Judged(verdict, unjudged)


@attrs.define(eq=False)
class _Kept(Generic[T]):
    """What is kept for one pod shape: per node, the candidate and what was derived from it,
    also found by the candidate itself (by_id). A candidate is held (by_name) for as long as
    its id is a key of by_id, so that id cannot be another object's."""

    by_name: dict[str, tuple[Candidate, T]] = attrs.field(factory=dict)
    by_id: dict[int, T] = attrs.field(factory=dict)

    def put(self, cand: Candidate, value: T) -> None:
        old = self.by_name.get(cand.node.name)
        if old is not None:
            del self.by_id[id(old[0])]
        self.by_name[cand.node.name] = (cand, value)
        self.by_id[id(cand)] = value

    def forget(self, names: set[str]) -> None:
        for name in [n for n in self.by_name if n not in names]:
            del self.by_id[id(self.by_name.pop(name)[0])]


@attrs.define(eq=False)
class VerdictCache:
    shapes: int = VERDICT_SHAPES
    _by_shape: OrderedDict[Hashable, _Kept[Judged]] = attrs.field(factory=OrderedDict)

    def judge(self, pod: PodDemand, candidates: list[Candidate], limits: FilterLimits) -> list[Judged]:
        """`judge` every candidate, reusing the answer where the candidate is unchanged.

        Only for candidates from `CandidateCache` (node objects sent in a call are new
        objects every time and would only fill the cache)."""
        kept: _Kept[Judged] = _shape_entry(self._by_shape, pod_shape(pod, limits), self.shapes)
        out = list(map(kept.by_id.get, map(id, candidates)))
        if not any(map(is_, out, repeat(None))):
            return out  # type: ignore[return-value]  # every verdict reused
        for i, cand in enumerate(candidates):
            if out[i] is None:
                judged = out[i] = judge(pod, cand, limits)
                kept.put(cand, judged)
        return out  # type: ignore[return-value]

    def forget(self, names: set[str]) -> None:
        """Keep only `names`, as `CandidateCache.forget`."""
        _forget(self._by_shape, names)


@attrs.define(eq=False)
class ScoreCache:
    shapes: int = VERDICT_SHAPES
    # per shape: the node's score, and the neutral usage it was scored with (None when measured)
    _by_shape: OrderedDict[Hashable, _Kept[tuple[NodeScore, NeutralUsage | None]]] = attrs.field(
        factory=OrderedDict
    )

    def scores(self, pod: PodDemand, candidates: list[Candidate], weights: ScoreWeights) -> list[NodeScore]:
        """`score_nodes` of the candidates, reusing unchanged scores: a measured node's while
        its candidate is the same, an unmeasured one's while the neutral usage is too."""
        kept: _Kept[tuple[NodeScore, NeutralUsage | None]] = _shape_entry(
            self._by_shape, (pod.requests.get(CPU, 0), pod.requests.get(MEMORY, 0), weights), self.shapes
        )
        neutral = NeutralUsage() if all(map(is_measured, candidates)) else NeutralUsage.of(candidates)
        hits = list(map(kept.by_id.get, map(id, candidates)))
        out: list[NodeScore | None] = [
            hit[0] if hit is not None and (hit[1] is None or hit[1] == neutral) else None for hit in hits
        ]
        misses = [cand for cand, score in zip(candidates, out) if score is None]
        if not misses:
            return out  # type: ignore[return-value]
        fresh = iter(score_nodes(pod, misses, weights, neutral))
        for i, cand in enumerate(candidates):
            if out[i] is None:
                score = out[i] = next(fresh)
                kept.put(cand, (score, None if is_measured(cand) else neutral))
        return out  # type: ignore[return-value]

    def forget(self, names: set[str]) -> None:
        """Keep only `names`, as `CandidateCache.forget`."""
        _forget(self._by_shape, names)


def _shape_entry(by_shape: OrderedDict[Hashable, _Kept[T]], shape: Hashable, limit: int) -> _Kept[T]:
    """The entries kept for `shape` (new and empty if it had none), most recently used last."""
    kept = by_shape.get(shape)
    return remember(by_shape, shape, _Kept() if kept is None else kept, limit)


V = TypeVar("V")


def remember(by_shape: OrderedDict[Hashable, V], shape: Hashable, value: V, limit: int) -> V:
    """Keep `value` for `shape` as the most recently used, dropping the least recently used
    shapes past `limit`."""
    by_shape[shape] = value
    by_shape.move_to_end(shape)
    while len(by_shape) > limit:
        by_shape.popitem(last=False)
    return value


# Past a quarter of a column's candidates changed, building it anew is as cheap as updating.
REBUILD_SHARE = 4


def changed_positions(candidates: list[Candidate], kept: list[Candidate]) -> list[int] | None:
    """Where `candidates` differ from a column's `kept` ones (by identity); None when the
    column should be built anew: another length, or more than a quarter changed."""
    if len(candidates) != len(kept):
        return None
    changed = list(compress(count(), map(is_not, candidates, kept)))
    return None if len(changed) * REBUILD_SHARE > len(candidates) else changed


def _forget(by_shape: OrderedDict[Hashable, _Kept[T]], names: set[str]) -> None:
    for kept in by_shape.values():
        kept.forget(names)
