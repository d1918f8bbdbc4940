"""The computing-power state: the last report per (node, type), and its expiry (S6.1, S6.2).

One writer (the UDP listener applies whole reports) and many readers (filter, prioritize,
the read API, the live-load fallback). A report is applied atomically: all its entries
are built first and stored in one synchronous step, so no reader ever sees half a
packet (trio does not switch tasks without an await).

*Fresh* means received at most COMPUTING_POWER_EXPIRY_TIME seconds ago on the store's
monotonic clock. Reads filter on freshness themselves, so an expired entry stops
counting the moment it expires; the sweeper only reclaims the memory. Reports are
ordered by arrival, not by report_id: a reporter that restarts begins again at a low id,
and UDP reordering across a whole report interval does not happen in practice.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Iterator

import attrs
import trio

from edge_sched.core.load import Reading, as_ratio
from edge_sched.core.power import ComputeType, HostPower, NodePower, PowerReport
from edge_sched.runtime.changes import ChangeLog


@attrs.frozen
class StoredEntry:
    """One (node, type) entry as received."""

    host: HostPower
    report_id: int
    received_at: float  # store clock (monotonic)
    received_wall: float  # unix seconds, for people and metrics


@attrs.frozen
class FreshEntry:
    entry: StoredEntry
    age_s: float


@attrs.frozen
class ReportLoad:
    """A node's CPU and memory utilisation (0..1) from its fresh reports, each stamped with
    when the report it came from arrived (store clock); None where no report says."""

    cpu: Reading | None = None
    memory: Reading | None = None


NO_REPORT_LOAD = ReportLoad()


@attrs.frozen
class _View:
    """What reads derive from a node's fresh entries, valid until `until` (store clock): the
    first of them expires then, and an expired one never comes back."""

    power: NodePower | None
    load: ReportLoad
    until: float


@attrs.define(eq=False)
class PowerStore:
    expiry_s: float
    clock: Callable[[], float] = trio.current_time
    wall_clock: Callable[[], float] = time.time
    _by_node: dict[str, dict[ComputeType, StoredEntry]] = attrs.field(factory=dict)
    latest_report_wall: float | None = None
    # node -> what its fresh entries give: the verbs ask for every candidate per call, and
    # a node's answer only changes when it reports or when one of its entries expires. The
    # same objects are handed out while it holds (readers reuse work by identity).
    _views: dict[str, _View] = attrs.field(factory=dict)
    changes: ChangeLog = attrs.field(factory=ChangeLog)  # per node, for the verbs (runtime/rows.py)

    # -- writes ---------------------------------------------------------------------------
    def apply(self, report: PowerReport) -> None:
        """Store every entry of a decoded report (the decoder guarantees it is complete)."""
        now, wall = self.clock(), self.wall_clock()
        fresh = [(h.name, h.type, StoredEntry(h, report.report_id, now, wall)) for h in report.hosts]
        for name, kind, entry in fresh:
            self._by_node.setdefault(name, {})[kind] = entry
            self._views.pop(name, None)
            self.changes.node(name)
        self.latest_report_wall = wall

    def sweep(self) -> int:
        """Remove expired entries; returns how many went."""
        now = self.clock()
        removed = 0
        for name in list(self._by_node):
            kinds = self._by_node[name]
            for kind in [k for k, e in kinds.items() if not self._is_fresh(e, now)]:
                del kinds[kind]
                removed += 1
            if not kinds:
                del self._by_node[name]
                self._views.pop(name, None)
        return removed

    # -- reads ----------------------------------------------------------------------------
    def _is_fresh(self, entry: StoredEntry, now: float) -> bool:
        return now - entry.received_at <= self.expiry_s

    def _view(self, name: str, now: float) -> _View | None:
        view = self._views.get(name)
        if view is not None and now < view.until:
            return view
        kinds = self._by_node.get(name)
        if not kinds:
            return None
        fresh = {k: e for k, e in kinds.items() if self._is_fresh(e, now)}
        power = NodePower({k: e.host for k, e in fresh.items()}) if fresh else None
        until = min((e.received_at + self.expiry_s for e in fresh.values()), default=math.inf)
        view = self._views[name] = _View(power, _report_load([fresh[k] for k in sorted(fresh)]), until)
        return view

    def until(self, name: str, now: float) -> float:
        """When the node's answers change by time alone: its first fresh report expires."""
        view = self._view(name, now)
        return view.until if view is not None else math.inf

    def node_power(self, name: str, now: float | None = None) -> NodePower | None:
        """The node's fresh entries by type, or None when it has none (as of `now`, default
        the store's clock)."""
        view = self._view(name, self.clock() if now is None else now)
        return view.power if view is not None else None

    def reader(self) -> Callable[[str], NodePower | None]:
        """`node_power` for the many nodes of one call, the clock read once."""
        return functools.partial(self.node_power, now=self.clock())

    def fresh(self, name: str | None = None) -> Iterator[FreshEntry]:
        """Fresh entries (of one node, or of all), by node name then type."""
        now = self.clock()
        names = [name] if name is not None else sorted(self._by_node)
        for node in names:
            for kind, entry in sorted(self._by_node.get(node, {}).items()):
                if self._is_fresh(entry, now):
                    yield FreshEntry(entry, max(0.0, now - entry.received_at))

    def fresh_node_count(self) -> int:
        """Nodes with at least one fresh entry (computing_power_nodes_total)."""
        now = self.clock()
        return sum(
            1 for kinds in self._by_node.values() if any(self._is_fresh(e, now) for e in kinds.values())
        )

    def stored_entry_count(self) -> int:
        """Entries held, fresh or not (what the sweeper reclaims)."""
        return sum(len(kinds) for kinds in self._by_node.values())

    def usage(self, name: str, now: float | None = None) -> ReportLoad:
        """CPU and memory utilisation from the node's fresh reports (S7's live source after
        the polled ones), as of `now` (default the store's clock).

        CPU: the average load of its CPU units. Memory: 1 − available/total from its most
        recent fresh entry of any type that reports memory. A value outside 0..1 is left out.
        """
        view = self._view(name, self.clock() if now is None else now)
        return view.load if view is not None else NO_REPORT_LOAD

    def usage_reader(self) -> Callable[[str], ReportLoad]:
        """`usage` for the many nodes of one call, the clock read once."""
        return functools.partial(self.usage, now=self.clock())


def _report_load(fresh: list[StoredEntry]) -> ReportLoad:
    """`usage` of fresh entries (ordered by type)."""
    cpu = memory = None
    loaded = [e for e in fresh if e.host.type is ComputeType.CPU and e.host.average_load_pct is not None]
    if loaded:
        cpu = _reading(loaded[0].host.average_load_pct / 100.0, loaded[0])  # type: ignore[operator]
    with_memory = [e for e in fresh if e.host.total_memory_gib > 0]
    if with_memory:
        newest = max(with_memory, key=lambda e: e.received_at)
        memory = _reading(1.0 - newest.host.available_memory_gib / newest.host.total_memory_gib, newest)
    return ReportLoad(cpu, memory) if cpu is not None or memory is not None else NO_REPORT_LOAD


def _reading(value: float, entry: StoredEntry) -> Reading | None:
    ratio = as_ratio(value)
    return Reading(ratio, entry.received_at) if ratio is not None else None
