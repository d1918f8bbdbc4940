"""The usage store: the last live-usage readings per source and node (spec S7).

One writer per source (the Prometheus poller, the metrics.k8s.io poller; the UDP
report store is read through a provider, see `attach`), many readers: the extender
verbs call `usage(node)` and get an answer from memory at once. They never wait on
a poll; a poll that is slow or failing only makes its readings age until they are
stale (two poll periods), and then the next source in line answers.

A failed poll keeps the previous readings (they age out by themselves); a successful
one replaces that resource's readings entirely, so a node that vanished from the
answer is unknown at once rather than stuck at an old value.

Also kept here: the pods edge-sched placed recently, for hot-spot damping
(`core.load.damp`), and what health and the per-node source gauge report.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import attrs
import trio
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from edge_sched.core.load import (
    REQUESTS,
    SOURCE_ORDER,
    UDP_REPORT,
    NodeUsage,
    Placement,
    Reading,
    SeriesIndex,
    SourceReadings,
    UsageSource,
    damp,
    resolve_usage,
)
from edge_sched.core.model import CPU, MEMORY, NodeInfo
from edge_sched.runtime.changes import ChangeLog
from edge_sched.runtime.power_store import ReportLoad

log = logging.getLogger(__name__)

DISABLED = "disabled"


@attrs.define(eq=False)
class SourceState:
    """One source's latest readings and the outcome of its last polls."""

    name: str
    max_age_s: float
    readings: dict[str, SeriesIndex] = attrs.field(factory=dict)  # resource -> readings
    last_ok_at: float | None = None
    errors: dict[str, str] = attrs.field(factory=dict)  # what failed last ("cpu", "memory", "") -> why
    polls: int = 0
    _snapshot: SourceReadings | None = None  # rebuilt after a change, not per read

    def snapshot(self) -> SourceReadings:
        if self._snapshot is None:
            empty = SeriesIndex()
            self._snapshot = SourceReadings(
                self.name, self.max_age_s, cpu=self.readings.get(CPU, empty), memory=self.readings.get(MEMORY, empty)
            )
        return self._snapshot

    def changed(self) -> None:
        self._snapshot = None


@attrs.frozen
class ReportUsage:
    """UDP report load as a usage source, read per node from the power store.

    The power store drops reports older than COMPUTING_POWER_EXPIRY_TIME (`max_age_s`) by
    itself; each reading is stamped with when its report arrived. The store hands out the same `ReportLoad` object while a
    node's answer holds, so `version` tells a reader when a kept answer is still good.
    """

    usage_of: Callable[[str], ReportLoad]
    source: str = UDP_REPORT
    max_age_s: float = math.inf

    def get(self, resource: str, node: NodeInfo) -> Reading | None:
        load = self.usage_of(node.name)
        return load.cpu if resource == CPU else load.memory

    def version(self, node: NodeInfo) -> object:
        return self.usage_of(node.name)


@attrs.frozen
class _Resolved:
    """A node's resolved usage, kept while nothing it was resolved from changes (`reader`)."""

    node: NodeInfo
    placements: list[Placement] | None
    oldest: float  # store clock: when its oldest reading was observed
    max_age_s: float  # that reading's source's freshness limit
    versions: tuple[object, ...]  # what each versioned source answered for the node, in order


@attrs.define(eq=False)
class UsageStore:
    """Live usage by source; read by the verbs, written by the pollers.

    Args:
        clock: seconds on the clock readings are stamped with (trio's by default).
        damping_settle_s: hot-spot damping window (the metrics window), None for off.
    """

    clock: Callable[[], float] = trio.current_time
    damping_settle_s: float | None = None
    _sources: dict[str, SourceState] = attrs.field(factory=dict)
    _providers: dict[str, Callable[[], UsageSource | None]] = attrs.field(factory=dict)
    _placements: dict[str, list[Placement]] = attrs.field(factory=dict)
    # node -> (how it was resolved, the answer); see `reader`.
    _resolved: dict[str, tuple[_Resolved, NodeUsage]] = attrs.field(factory=dict)
    _epoch: int = 0  # bumped whenever any source's readings or the source list change
    changes: ChangeLog = attrs.field(factory=ChangeLog)  # per node, for the verbs (runtime/rows.py)
    # attached source -> the log its own store writes; None: it keeps none
    _attached_logs: dict[str, ChangeLog | None] = attrs.field(factory=dict)

    def _sources_changed(self) -> None:
        # Every kept answer was resolved from the old sources; a reader made before the
        # change (same call) must not store what it resolves from them (see `reader`).
        self._epoch += 1
        self._resolved.clear()
        self.changes.everything()

    # -- writers -----------------------------------------------------------------------
    def enable(self, source: str, max_age_s: float) -> None:
        """Declare a polled source; until its first answer it has no readings.

        Idempotent: a poller restarted after a crash keeps the readings it had.
        """
        state = self._sources.get(source)
        if state is None:
            self._sources[source] = SourceState(source, max_age_s)
        else:
            state.max_age_s = max_age_s
            state.changed()
        self._sources_changed()

    def attach(
        self, source: str, provider: Callable[[], UsageSource | None], changes: ChangeLog | None = None
    ) -> None:
        """Read a source through `provider` at decision time instead of a poller; `changes`:
        the log its store writes each node's changes to (without one, `change_logs` is None
        and the verbs look at every node on every call)."""
        self._providers[source] = provider
        self._attached_logs[source] = changes
        self._sources_changed()

    def change_logs(self) -> list[ChangeLog] | None:
        """Every log a change of a node's usage is written to (this store's and the attached
        sources' stores'); None when an attached source keeps none."""
        attached = list(self._attached_logs.values())
        if any(log is None for log in attached):
            return None
        return [self.changes, *attached]  # type: ignore[list-item]

    def attach_reports(
        self, reader: Callable[[], Callable[[str], ReportLoad]], max_age_s: float, changes: ChangeLog | None = None
    ) -> None:
        """Use the CPU/memory load of fresh UDP computing-power reports as the live source
        after the polled ones; `reader` gives a node -> load look-up for one decision
        (`PowerStore.usage_reader`), `max_age_s` is how long a report stays fresh and
        `changes` the power store's log."""
        self.attach(UDP_REPORT, lambda: ReportUsage(reader(), max_age_s=max_age_s), changes)

    def publish(self, source: str, resource: str, readings: SeriesIndex) -> None:
        """A successful answer: replace `resource`'s readings of `source`."""
        state = self._sources[source]
        state.readings[resource] = readings
        state.changed()
        self._sources_changed()
        state.last_ok_at = self.clock()
        state.errors.pop(resource, None)
        state.errors.pop("", None)
        state.polls += 1

    def fail(self, source: str, error: str, resource: str = "") -> None:
        """A failed poll (of one resource's query, or of the whole source): keep the old
        readings, which age out by themselves, and remember why for health."""
        state = self._sources[source]
        state.errors[resource] = error
        state.polls += 1

    def note_placement(self, node: str, requests: Mapping[str, int]) -> None:
        """A pod edge-sched just placed on `node` (for damping)."""
        if self.damping_settle_s is None:
            return
        now = self.clock()
        kept = [p for p in self._placements.get(node, ()) if p.at > now - self._placement_horizon()]
        kept.append(Placement(node, now, dict(requests)))
        self._placements[node] = kept
        self.changes.node(node)

    def _placement_horizon(self) -> float:
        # A placement matters while some fresh reading can still predate it by less
        # than the settle window: settle window + the longest freshness limit.
        longest = max((s.max_age_s for s in self._sources.values()), default=0.0)
        return (self.damping_settle_s or 0.0) + longest

    # -- readers -----------------------------------------------------------------------
    def _order(self) -> list[str]:
        # The S7 chain first; other attached sources (e.g. statuses reported on the
        # resource-status feed) after it, in the order they were attached.
        return [*SOURCE_ORDER, *(name for name in self._providers if name not in SOURCE_ORDER)]

    def snapshots(self) -> list[UsageSource]:
        """Every source's data in precedence order (polled and attached)."""
        out: list[UsageSource] = []
        for name in self._order():
            if name in self._sources:
                out.append(self._sources[name].snapshot())
            elif name in self._providers:
                provided = self._providers[name]()
                if provided is not None:
                    out.append(provided)
        return out

    def usage(self, node: NodeInfo, snapshots: list[UsageSource] | None = None, now: float | None = None) -> NodeUsage:
        """What decisions use for `node` now (damped when damping is on).

        Pass `snapshots` (from `snapshots()`) and `now` when resolving many nodes in one
        call (`reader()` does).
        """
        sources = self.snapshots() if snapshots is None else snapshots
        resolved = resolve_usage(node, sources, self.clock() if now is None else now)
        placements = self._placements.get(node.name)
        if self.damping_settle_s is None or not placements or resolved.source == REQUESTS:
            return resolved
        return damp(resolved, node, placements, self.damping_settle_s)

    def reader(self) -> Callable[[NodeInfo], NodeUsage]:
        """`usage` for the many nodes of one call: the sources and the clock are read once,
        and a node's answer is reused from earlier calls while it still holds.

        It holds while no polled source published, the node object and its recent
        placements are the same, the readings it used are still fresh (a stale reading never
        becomes fresh again, so time alone can only end it) and every versioned source (UDP
        reports, reported statuses) still answers the same for the node (the power store and
        the status book hand out the same object until the node reports again or its report
        expires). Nodes resolved to requests only are resolved anew on every call (their
        notes tell the age of stale readings). Resolution was a quarter of a verb's time at
        1,000 nodes (docs/benchmarks.md).
        """
        snapshots = self.snapshots()
        now = self.clock()
        epoch = self._epoch
        keepable: dict[str, float] = {}  # the leading polled and versioned sources -> their freshness limit
        versioned: list[Callable[[NodeInfo], object]] = []
        for snap in snapshots:
            version = getattr(snap, "version", None)  # see UsageSource
            if version is not None:
                versioned.append(version)
            elif not isinstance(snap, SourceReadings):
                break
            keepable[snap.source] = snap.max_age_s
        kept = self._resolved

        def read(node: NodeInfo) -> NodeUsage:
            placements = self._placements.get(node.name)
            hit = kept.get(node.name)
            if hit is not None:
                how, answer = hit
                if (
                    how.node is node
                    and how.placements is placements
                    and now - how.oldest <= how.max_age_s  # resolve_usage's own test
                    and all(version(node) is was for version, was in zip(versioned, how.versions))
                ):
                    return answer
            # Versions first: one that moves on while the node is resolved leaves an older
            # version with the answer, which fails the next check instead of passing a stale one.
            versions = tuple(version(node) for version in versioned)
            answer = self.usage(node, snapshots, now)
            max_age = keepable.get(answer.source)
            if max_age is not None and epoch == self._epoch:
                oldest = min(answer.observed_at.values())
                kept[node.name] = (_Resolved(node, placements, oldest, max_age, versions), answer)
            return answer

        return read

    def sources_by_node(self, nodes: Iterable[NodeInfo]) -> dict[str, str]:
        """node -> the source its decisions use now."""
        sources = self.snapshots()
        now = self.clock()
        return {n.name: resolve_usage(n, sources, now).source for n in nodes}

    def source_status(self) -> dict[str, str]:
        """One line per source for health: ok / failing / never answered / disabled."""
        now = self.clock()
        out: dict[str, str] = {}
        for name in self._order():
            state = self._sources.get(name)
            if state is None:
                out[name] = "attached" if name in self._providers else DISABLED
                continue
            if state.errors:
                since = "never answered"
                if state.last_ok_at is not None:
                    since = f"last success {now - state.last_ok_at:.0f}s ago"
                out[name] = f"failing: {'; '.join(e for _, e in sorted(state.errors.items()))} ({since})"
            elif state.last_ok_at is None:
                out[name] = "waiting for the first poll"
            else:
                age = now - state.last_ok_at
                state_word = "ok" if age <= state.max_age_s else "stale"
                out[name] = f"{state_word} (last poll {age:.0f}s ago)"
        return out

    def collector(self, nodes: Callable[[], Iterable[NodeInfo]]) -> LoadSourceCollector:
        """The per-node source gauge for `registry.register(...)`."""
        return LoadSourceCollector(lambda: self.sources_by_node(nodes()))

    def health(self, nodes: Iterable[NodeInfo]) -> dict[str, Any]:
        """The `load` component of the health endpoint."""
        by_node = self.sources_by_node(nodes)
        counts: dict[str, int] = {}
        for source in by_node.values():
            counts[source] = counts.get(source, 0) + 1
        in_use = [s for s in (*self._order(), REQUESTS) if counts.get(s)]
        return {
            "source": in_use[0] if len(in_use) == 1 else ("mixed" if in_use else REQUESTS),
            "sources": self.source_status(),
            "nodes_by_source": counts,
            "nodes": dict(sorted(by_node.items())),
        }


class LoadSourceCollector(Collector):
    """`edge_sched_load_source{node,source} 1`: which usage source each node's decisions use.

    Computed at scrape time from the store, so it is never older than the scrape: a source
    going stale shows up without any poll having to run, and a deleted node disappears.
    """

    def __init__(self, sources_by_node: Callable[[], Mapping[str, str]]) -> None:
        self._sources_by_node = sources_by_node

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "edge_sched_load_source",
            "Live-usage source in use per node (prometheus, metrics.k8s.io, udp-report, requests); value 1.",
            labels=["node", "source"],
        )
        for node, source in sorted(self._sources_by_node().items()):
            gauge.add_metric([node, source], 1.0)
        yield gauge
