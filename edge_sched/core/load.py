"""Live node load: series -> node mapping, freshness, thresholds, filter rule 4, damping.

Pure functions (no I/O, no clocks: callers pass `now`), so every rule of spec S7 is
unit-tested on plain values. The pollers feed `map_samples`; the usage store keeps
what it returns per source and asks `resolve_usage` which source a node's decision
uses; filter rule 4 is `load_problem`; the score reads the resolved values through
`Candidate.cpu_usage` / `memory_usage` (`used = max(requested, measured)`).

Mapping a series to a node (C21), best match first:

1. a non-empty `node` label naming a known node (an explicit `node` label that names
   no known node maps nowhere: it is never second-guessed from `instance`);
2. the host part of `instance` equal to a node name;
3. the host part of `instance` equal, as an IP address, to a node's InternalIP
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

import ipaddress
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal, Protocol

import attrs

from edge_sched.core.model import CPU, MEMORY, Candidate, NodeInfo

# Sources of live usage, in the order decisions prefer them (spec S7).
PROMETHEUS = "prometheus"
METRICS_API = "metrics.k8s.io"
UDP_REPORT = "udp-report"
REQUESTS = "requests"  # no live usage: pod requests only
SOURCE_ORDER: tuple[str, ...] = (PROMETHEUS, METRICS_API, UDP_REPORT)

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

MatchRule = Literal["node-label", "instance-name", "instance-ip"]
_RULE_RANK: dict[str, int] = {"node-label": 0, "instance-name": 1, "instance-ip": 2}


@attrs.frozen
class NodeIndex:
    """Node names and InternalIPs, for matching series labels."""

    names: frozenset[str]
    by_ip: Mapping[ipaddress.IPv4Address | ipaddress.IPv6Address, str]

    @classmethod
    def build(cls, nodes: Iterable[NodeInfo]) -> NodeIndex:
        names: set[str] = set()
        by_ip: dict[ipaddress.IPv4Address | ipaddress.IPv6Address, str] = {}
        shared: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
        for node in nodes:
            names.add(node.name)
            for address in node.addresses:
                ip = parse_ip(address)
                if ip is None:
                    continue
                if ip in by_ip and by_ip[ip] != node.name:
                    shared.add(ip)  # two nodes claim one IP: it identifies neither
                by_ip[ip] = node.name
        for ip in shared:
            del by_ip[ip]
        return cls(frozenset(names), by_ip)


def parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
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


def match_series(labels: Mapping[str, str], index: NodeIndex) -> tuple[str, MatchRule] | None:
    """The node a series belongs to and the rule that matched, or None."""
    node_label = labels.get("node", "")
    if node_label:
        return (node_label, "node-label") if node_label in index.names else None
    instance = labels.get("instance", "")
    if not instance:
        return None
    host = instance_host(instance)
    if host in index.names:
        return host, "instance-name"
    ip = parse_ip(host)
    if ip is not None and ip in index.by_ip:
        return index.by_ip[ip], "instance-ip"
    return None


@attrs.frozen
class Reading:
    """One resource's utilisation 0..1 on one node, and when it was true (store clock)."""

    value: float
    observed_at: float


@attrs.frozen
class Rejected:
    """A sample that reached no decision, and why (`unmatched`, `stale`, `out_of_range`)."""

    labels: Mapping[str, str]
    reason: str
    detail: str = ""


@attrs.frozen
class MappedSamples:
    """One query's samples, mapped: the reading per node and what was left out."""

    readings: Mapping[str, Reading]
    rejected: tuple[Rejected, ...] = ()
    duplicates: tuple[str, ...] = ()  # nodes that had several series (the maximum was kept)


class _Sample(Protocol):
    """What `map_samples` needs of a sample (`codecs.prom.Sample` fits)."""

    @property
    def labels(self) -> Mapping[str, str]: ...
    @property
    def timestamp_s(self) -> float: ...
    @property
    def value(self) -> float: ...


def map_samples(
    samples: Iterable[_Sample],
    index: NodeIndex,
    *,
    wall_now_s: float,
    now: float,
    max_age_s: float,
) -> MappedSamples:
    """Map one query's samples onto nodes.

    Args:
        samples: finite samples (NaN/Inf were already left out by the codec).
        index: the known nodes.
        wall_now_s: unix time the answer arrived (sample timestamps are unix seconds).
        now: the same instant on the store's clock; readings are stamped on that clock.
        max_age_s: samples older than this (two poll periods) are stale and left out.
    """
    best: dict[str, tuple[int, float, float]] = {}  # node -> (rule rank, value, age)
    rejected: list[Rejected] = []
    seen: dict[str, int] = {}
    for sample in samples:
        labels = sample.labels
        age = max(0.0, wall_now_s - sample.timestamp_s)
        if age > max_age_s:
            rejected.append(Rejected(labels, "stale", f"sample is {age:.0f}s old (limit {max_age_s:g}s)"))
            continue
        value = as_ratio(sample.value)
        if value is None:
            rejected.append(Rejected(labels, "out_of_range", f"value {sample.value:g} is not a 0-1 ratio"))
            continue
        matched = match_series(labels, index)
        if matched is None:
            rejected.append(Rejected(labels, "unmatched", _describe(labels)))
            continue
        node, rule = matched
        rank = _RULE_RANK[rule]
        seen[node] = seen.get(node, 0) + 1
        current = best.get(node)
        if current is None or rank < current[0] or (rank == current[0] and value > current[1]):
            best[node] = (rank, value, age)
    readings = {node: Reading(value, now - age) for node, (_, value, age) in best.items()}
    duplicates = tuple(sorted(node for node, count in seen.items() if count > 1))
    return MappedSamples(readings, tuple(rejected), duplicates)


def as_ratio(value: float) -> float | None:
    """A finite utilisation clamped to 0..1, or None when it is not a ratio."""
    if not math.isfinite(value) or value < -RATIO_TOLERANCE or value > 1 + RATIO_TOLERANCE:
        return None
    return min(1.0, max(0.0, value))


def _describe(labels: Mapping[str, str]) -> str:
    shown = {k: labels[k] for k in ("node", "instance") if k in labels} or dict(labels)
    return ", ".join(f"{k}={v!r}" for k, v in sorted(shown.items())) or "no labels"


# -- which source a decision uses -----------------------------------------------------


@attrs.frozen
class SourceReadings:
    """The latest data of one source: per resource, per node; and how long it stays fresh."""

    source: str
    max_age_s: float
    cpu: Mapping[str, Reading] = attrs.field(factory=dict)
    memory: Mapping[str, Reading] = attrs.field(factory=dict)

    def get(self, resource: str, node: str) -> Reading | None:
        return (self.cpu if resource == CPU else self.memory).get(node)


@attrs.frozen
class NodeUsage:
    """What decisions use for one node: the source, the fresh values, why any is missing."""

    source: str
    cpu: float | None = None
    memory: float | None = None
    observed_at: Mapping[str, float] = attrs.field(factory=dict)  # resource -> store clock
    note: str = ""


def resolve_usage(node: str, sources: Sequence[SourceReadings], now: float) -> NodeUsage:
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
                notes.append(f"{src.source} {resource} stale ({age:.0f}s old, limit {src.max_age_s:g}s)")
        if fresh:
            missing = [f"{r} unknown from {src.source}" for r in RESOURCES if r not in fresh]
            return NodeUsage(
                source=src.source,
                cpu=fresh[CPU].value if CPU in fresh else None,
                memory=fresh[MEMORY].value if MEMORY in fresh else None,
                observed_at={r: fresh[r].observed_at for r in fresh},
                note="; ".join(missing),
            )
    return NodeUsage(REQUESTS, note="; ".join(notes) or "no live usage")


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
