"""Live node load: series -> node mapping, freshness, thresholds, filter rule 4, damping.

Pure functions (no I/O, no clocks: callers pass `now`), so every rule of spec S7 is
unit-tested on plain values. The pollers index each answer with `index_samples`; the
usage store keeps the index per source and resource, looks nodes up in it when a verb
runs, and asks `resolve_usage` which source a node's decision uses. Filter rule 4 is
`load_problem`; the score reads the resolved values through `Candidate.cpu_usage` /
`memory_usage` (`used = max(requested, measured)`).

Mapping a series to a node (C21), best match first:

1. a non-empty `node` label equal to the node name (a series with an explicit `node`
   label is matched by that label only, never second-guessed from `instance`);
2. the host part of `instance` equal to the node name;
3. the host part of `instance` equal, as an IP address, to one of the node's InternalIPs
   (`10.0.0.5:9100` -> `10.0.0.5`, `[fd00::c]:9100` -> `fd00::c`; exact address
   comparison, never a prefix: 10.0.0.5 does not match 10.0.0.50).
When several series reach one node, the best rule wins; among series of the same
rule the largest value wins (an exporter rollout briefly has two; the busier reading
is the safe one), never "whichever came last".

Hot-spot damping: measured usage lags placement (scrape interval, poll interval and
the `rate()` window). A node that just received pods would look as idle as before and
win again. So the measured value is raised by the requests of the pods edge-sched
placed on the node since `observed_at - settle_s` (settle_s = the metrics window): a
pod placed after the sample, or so shortly before it that the window cannot show it
yet, counts with its full request. See docs/live-load.md.
"""

from __future__ import annotations

import functools
import ipaddress
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, Literal, Protocol

import attrs

from edge_sched.core.model import CPU, MEMORY, Candidate, NodeInfo

# Sources of live usage, in the order decisions prefer them (spec S7).
PROMETHEUS = "prometheus"
METRICS_API = "metrics.k8s.io"
UDP_REPORT = "udp-report"
STATUS_REPORT = "status-report"  # statuses reported over the resource-status feed (S8)
REQUESTS = "requests"  # no live usage: pod requests only
SOURCE_ORDER: tuple[str, ...] = (PROMETHEUS, METRICS_API, UDP_REPORT, STATUS_REPORT)

RESOURCES: tuple[str, ...] = (CPU, MEMORY)

CPU_THRESHOLD_ANNOTATION = "edge-sched.io/cpu-threshold"
MEMORY_THRESHOLD_ANNOTATION = "edge-sched.io/memory-threshold"
THRESHOLD_ANNOTATIONS = {CPU: CPU_THRESHOLD_ANNOTATION, MEMORY: MEMORY_THRESHOLD_ANNOTATION}

# Utilisation samples a little outside 0..1 are rounding (rate() jitter on idle CPU
# counters); they are clamped. Anything further out is not a ratio at all (a query
# returning bytes or percent) and is left out rather than failing every node.
RATIO_TOLERANCE = 0.05

StalePolicy = Literal["open", "closed"]


# -- series -> node -------------------------------------------------------------------

IP = ipaddress.IPv4Address | ipaddress.IPv6Address


@functools.lru_cache(maxsize=65536)
def parse_ip(text: str) -> IP | None:
    """The address, or None; cached because every verb looks up every node's InternalIPs."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def instance_host(instance: str) -> str:
    """The host part of an `instance` label.

    `10.0.0.5:9100` -> `10.0.0.5`; `[fd00::c]:9100` -> `fd00::c`; `fd00::c` (bare IPv6)
    stays whole; `node-a:9100` -> `node-a`; `http://10.0.0.5:9100/metrics` -> `10.0.0.5`.
    """
    text = instance.strip()
    if "://" in text:
        text = text.split("://", 1)[1].split("/", 1)[0]
        text = text.rsplit("@", 1)[-1]
    if text.startswith("["):
        end = text.find("]")
        return text[1:end] if end > 0 else text
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host if port.isdigit() or not port else text
    return text  # no port, or a bare IPv6 address


@attrs.frozen
class Reading:
    """One resource's utilisation 0..1, and when it was true (store clock seconds)."""

    value: float
    observed_at: float


@attrs.frozen
class Rejected:
    """A sample that reached no decision, and why (`unmatched`, `stale`, `out_of_range`)."""

    labels: Mapping[str, str]
    reason: str
    detail: str = ""


def _keep_max(table: dict[Any, Reading], key: Any, reading: Reading) -> None:
    current = table.get(key)
    if current is None or reading.value > current.value:
        table[key] = reading


@attrs.frozen
class SeriesIndex:
    """One query's fresh readings, keyed the three ways a node can be matched.

    Matching happens at read time (`lookup`), so nodes sent in a request that the cache
    has never seen (standalone mode) are matched as well as cached ones.
    """

    by_node_label: Mapping[str, Reading] = attrs.field(factory=dict)
    by_instance_host: Mapping[str, Reading] = attrs.field(factory=dict)
    by_ip: Mapping[IP, Reading] = attrs.field(factory=dict)
    # How many series each key had (duplicates are reported, the maximum is kept).
    series_per_key: Mapping[Any, int] = attrs.field(factory=dict)

    @classmethod
    def of_nodes(cls, readings: Mapping[str, Reading]) -> SeriesIndex:
        """Readings already keyed by node name (metrics.k8s.io, UDP reports)."""
        return cls(by_node_label=dict(readings))

    def lookup(self, node: NodeInfo) -> Reading | None:
        """The node's reading by the best rule that finds one (module docstring)."""
        by_rule = self.by_node_label.get(node.name) or self.by_instance_host.get(node.name)
        if by_rule is not None or not self.by_ip:  # no address index: nothing left to try
            return by_rule
        by_address = [r for ip in _ips(node) if (r := self.by_ip.get(ip)) is not None]
        return max(by_address, key=lambda r: r.value, default=None)

    def series_for(self, node: NodeInfo) -> int:
        """How many series reached `node` by any rule (more than 1: duplicates)."""
        keys: list[Any] = [("node", node.name), ("host", node.name), *(("ip", ip) for ip in _ips(node))]
        return sum(self.series_per_key.get(k, 0) for k in keys)

    def __len__(self) -> int:
        return len(self.by_node_label) + len(self.by_instance_host) + len(self.by_ip)


def _ips(node: NodeInfo) -> list[IP]:
    return [ip for a in node.addresses if (ip := parse_ip(a)) is not None]


def _series_key(labels: Mapping[str, str]) -> tuple[str, Any] | None:
    """Which table a series goes to: an explicit `node` label is never second-guessed
    from `instance`; an `instance` host that is an IP is matched as an address."""
    node_label = labels.get("node", "")
    if node_label:
        return ("node", node_label)
    instance = labels.get("instance", "")
    if not instance:
        return None
    host = instance_host(instance)
    ip = parse_ip(host)
    return ("ip", ip) if ip is not None else ("host", host)


@attrs.frozen
class IndexedSamples:
    index: SeriesIndex
    accepted: tuple[Mapping[str, str], ...] = ()  # labels of the samples indexed
    rejected: tuple[Rejected, ...] = ()


class _Sample(Protocol):
    """What `index_samples` needs of a sample (`codecs.prom.Sample` fits)."""

    @property
    def labels(self) -> Mapping[str, str]: ...
    @property
    def timestamp_s(self) -> float: ...
    @property
    def value(self) -> float: ...


def index_samples(
    samples: Iterable[_Sample],
    *,
    wall_now_s: float,
    now: float,
    max_age_s: float,
) -> IndexedSamples:
    """Index one query's samples for node lookup, leaving out stale and non-ratio ones.

    Args:
        samples: finite samples (NaN/Inf were already left out by the codec).
        wall_now_s: unix time the answer arrived (sample timestamps are unix seconds).
        now: the same instant on the store's clock; readings are stamped on that clock.
        max_age_s: samples older than this (two poll periods) are stale and left out.
    """
    tables: dict[str, dict[Any, Reading]] = {"node": {}, "host": {}, "ip": {}}
    counts: dict[tuple[str, Any], int] = {}
    accepted: list[Mapping[str, str]] = []
    rejected: list[Rejected] = []
    for sample in samples:
        labels = sample.labels
        age = max(0.0, wall_now_s - sample.timestamp_s)
        if age > max_age_s:
            rejected.append(Rejected(labels, "stale", f"sample is {format_seconds(age)}s old (limit {max_age_s:g}s)"))
            continue
        value = as_ratio(sample.value)
        if value is None:
            rejected.append(Rejected(labels, "out_of_range", f"value {sample.value:g} is not a 0-1 ratio"))
            continue
        key = _series_key(labels)
        if key is None:
            rejected.append(Rejected(labels, "unmatched", "no node or instance label"))
            continue
        _keep_max(tables[key[0]], key[1], Reading(value, now - age))
        counts[key] = counts.get(key, 0) + 1
        accepted.append(labels)
    index = SeriesIndex(
        by_node_label=tables["node"], by_instance_host=tables["host"], by_ip=tables["ip"], series_per_key=counts
    )
    return IndexedSamples(index, tuple(accepted), tuple(rejected))


@attrs.frozen
class MappedSamples:
    """One query's samples mapped onto given nodes: readings and what was left out."""

    readings: Mapping[str, Reading]
    rejected: tuple[Rejected, ...] = ()
    duplicates: tuple[str, ...] = ()  # nodes that several series reached (the best was kept)


def map_samples(
    samples: Iterable[_Sample],
    nodes: Iterable[NodeInfo],
    *,
    wall_now_s: float,
    now: float,
    max_age_s: float,
) -> MappedSamples:
    """`index_samples`, then look every node up; series reaching no node are `unmatched`."""
    nodes = list(nodes)
    indexed = index_samples(samples, wall_now_s=wall_now_s, now=now, max_age_s=max_age_s)
    index = indexed.index
    readings = {n.name: r for n in nodes if (r := index.lookup(n)) is not None}
    rejected = [*indexed.rejected, *unmatched_series(indexed.accepted, nodes)]
    duplicates = tuple(sorted(n.name for n in nodes if index.series_for(n) > 1))
    return MappedSamples(readings, tuple(rejected), duplicates)


def unmatched_series(accepted: Iterable[Mapping[str, str]], nodes: Iterable[NodeInfo]) -> list[Rejected]:
    """The series (by labels) that reach none of `nodes`, for metrics and logs."""
    keys: set[tuple[str, Any]] = set()
    for node in nodes:
        keys.update((("node", node.name), ("host", node.name)))
        keys.update(("ip", ip) for ip in _ips(node))
    return [Rejected(labels, "unmatched", _describe(labels)) for labels in accepted if _series_key(labels) not in keys]


def format_seconds(value: float) -> str:
    """30.46 -> `30.5`, 45.0 -> `45`: ages in reasons and health, one decimal at most."""
    return f"{value:.1f}".rstrip("0").rstrip(".")


def as_ratio(value: float) -> float | None:
    """A finite utilisation clamped to 0..1, or None when it is not a ratio."""
    if not math.isfinite(value) or value < -RATIO_TOLERANCE or value > 1 + RATIO_TOLERANCE:
        return None
    return min(1.0, max(0.0, value))


def _describe(labels: Mapping[str, str]) -> str:
    shown = {k: labels[k] for k in ("node", "instance") if k in labels} or dict(labels)
    return ", ".join(f"{k}={v!r}" for k, v in sorted(shown.items())) or "no labels"


# -- which source a decision uses -----------------------------------------------------


class UsageSource(Protocol):
    """Anything `resolve_usage` can ask for a node's reading.

    A source may also tell when its answer for a node changes: a method `version(node)` that
    returns the same object for as long as `get` answers the same for that node (the UDP
    report and status feed sources have it; `UsageStore.reader` keeps answers by it).
    """

    @property
    def source(self) -> str: ...
    @property
    def max_age_s(self) -> float: ...
    def get(self, resource: str, node: NodeInfo) -> Reading | None: ...


@attrs.frozen
class SourceReadings:
    """The latest data of one polled source per resource, and how long it stays fresh."""

    source: str
    max_age_s: float
    cpu: SeriesIndex = SeriesIndex()
    memory: SeriesIndex = SeriesIndex()

    def get(self, resource: str, node: NodeInfo) -> Reading | None:
        return (self.cpu if resource == CPU else self.memory).lookup(node)


@attrs.frozen
class NodeUsage:
    """What decisions use for one node: the source, the fresh values, why any is missing."""

    source: str
    cpu: float | None = None
    memory: float | None = None
    observed_at: Mapping[str, float] = attrs.field(factory=dict)  # resource -> store clock
    note: str = ""
    # Until when (store clock) the answer holds unless a source changes: its first reading
    # goes stale then; -inf when it changes with every call (notes giving readings' ages).
    until: float = math.inf


# The answer for a node no source has any reading for: one object, so that a candidate
# built from it is recognised as unchanged from call to call (runtime/candidates.py).
NO_LIVE_USAGE: Final = NodeUsage(REQUESTS, note="no live usage")


def resolve_usage(node: NodeInfo, sources: Sequence[UsageSource], now: float) -> NodeUsage:
    """The first source (in the given precedence order) with a fresh reading for `node`.

    A node uses one source for both resources, so decisions and health name one source
    per node; a resource that source lacks stays unknown (C20: memory from Prometheus,
    CPU unknown) rather than being patched in from a different source.
    """
    notes: list[str] = []
    for src in sources:
        fresh: dict[str, Reading] = {}
        for resource in RESOURCES:
            reading = src.get(resource, node)
            if reading is None:
                continue
            age = now - reading.observed_at
            if age <= src.max_age_s:
                fresh[resource] = reading
            else:
                notes.append(f"{src.source} {resource} stale ({format_seconds(age)}s old, limit {src.max_age_s:g}s)")
        if fresh:
            missing = [f"{r} unknown from {src.source}" for r in RESOURCES if r not in fresh]
            return NodeUsage(
                source=src.source,
                cpu=fresh[CPU].value if CPU in fresh else None,
                memory=fresh[MEMORY].value if MEMORY in fresh else None,
                observed_at={r: fresh[r].observed_at for r in fresh},
                note="; ".join(missing),
                until=min(r.observed_at for r in fresh.values()) + src.max_age_s,
            )
    return NodeUsage(REQUESTS, note="; ".join(notes), until=-math.inf) if notes else NO_LIVE_USAGE


# -- hot-spot damping -----------------------------------------------------------------


@attrs.frozen
class Placement:
    """A pod edge-sched placed on a node, when (store clock), and its requests."""

    node: str
    at: float
    requests: Mapping[str, int] = attrs.field(factory=dict)


def damp(
    usage: NodeUsage,
    node: NodeInfo,
    placements: Iterable[Placement],
    settle_s: float,
) -> NodeUsage:
    """Raise measured usage by the requests of pods placed too recently to show in it.

    A placement counts for a resource when it happened after `observed_at - settle_s`
    of that resource's reading. The result is capped at 1.
    """
    recent = list(placements)
    if not recent:
        return usage
    values: dict[str, float | None] = {CPU: usage.cpu, MEMORY: usage.memory}
    for resource, measured in values.items():
        allocatable = node.allocatable.get(resource, 0)
        observed_at = usage.observed_at.get(resource)
        if measured is None or observed_at is None or allocatable <= 0:
            continue
        extra = sum(p.requests.get(resource, 0) for p in recent if p.at > observed_at - settle_s)
        if extra:
            values[resource] = min(1.0, measured + extra / allocatable)
    if values[CPU] == usage.cpu and values[MEMORY] == usage.memory:
        return usage
    return attrs.evolve(usage, cpu=values[CPU], memory=values[MEMORY])


# -- filter rule 4 --------------------------------------------------------------------


@attrs.frozen
class LoadLimits:
    """Filter rule 4's settings: default thresholds and the policy for unknown usage."""

    cpu_threshold: float = 0.85
    memory_threshold: float = 0.85
    stale_policy: StalePolicy = "open"


@attrs.frozen
class Thresholds:
    cpu: float
    memory: float
    problems: tuple[str, ...] = ()  # annotations that were ignored, and why


def parse_threshold(text: str) -> float | None:
    """`0.9` or `90%` -> 0.9; None when not a number in 0..1 (0..100%)."""
    raw = text.strip()
    scale = 1.0
    if raw.endswith("%"):
        raw, scale = raw[:-1].strip(), 100.0
    try:
        value = float(raw) / scale
    except ValueError:
        return None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        return None
    return value


def node_thresholds(node: NodeInfo, limits: LoadLimits) -> Thresholds:
    """The node's thresholds: its annotations where valid, else the configured defaults."""
    if not node.annotations:  # the common case, on every candidate of every call
        return Thresholds(limits.cpu_threshold, limits.memory_threshold)
    chosen = {CPU: limits.cpu_threshold, MEMORY: limits.memory_threshold}
    problems: list[str] = []
    for resource, annotation in THRESHOLD_ANNOTATIONS.items():
        text = node.annotations.get(annotation)
        if text is None:
            continue
        value = parse_threshold(text)
        if value is None:
            problems.append(f"annotation {annotation}={text!r} ignored: expected 0-1 or 0-100%")
        else:
            chosen[resource] = value
    return Thresholds(chosen[CPU], chosen[MEMORY], tuple(problems))


def format_ratio(value: float) -> str:
    """0.95 -> `0.95`, 0.8534 -> `0.853` (never `nan`: callers pass finite values)."""
    return f"{value:.3f}".rstrip("0").rstrip(".") if value else "0"


def load_problem(cand: Candidate, limits: LoadLimits) -> str | None:
    """Filter rule 4: the reason `cand` fails, or None when it passes.

    Fails when a known utilisation is above the node's threshold; with
    `stale_policy="closed"` also when a utilisation is unknown or stale.
    """
    thresholds = node_thresholds(cand.node, limits)
    over: list[str] = []
    for resource, usage, threshold in (
        (CPU, cand.cpu_usage, thresholds.cpu),
        (MEMORY, cand.memory_usage, thresholds.memory),
    ):
        if usage is not None and usage > threshold:
            over.append(f"{resource} usage {format_ratio(usage)} > threshold {format_ratio(threshold)}")
    source = cand.usage_source or "live usage"
    if over:
        return f"load too high: {'; '.join(over)} ({source})"
    if limits.stale_policy == "closed":
        missing = [r for r, u in ((CPU, cand.cpu_usage), (MEMORY, cand.memory_usage)) if u is None]
        if missing:
            why = f": {cand.usage_note}" if cand.usage_note else ""
            return f"load unknown: {' and '.join(missing)} usage unknown or stale{why} (LOAD_STALE_POLICY=closed)"
    return None
