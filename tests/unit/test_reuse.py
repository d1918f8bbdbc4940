"""Reusing per-node work across calls (runtime/candidates.py, UsageStore.reader) never
changes an answer: after every one of a long seeded sequence of cluster changes, the
verbs of one long-lived scheduler answer exactly as a scheduler that reuses nothing."""

from __future__ import annotations

import random
from typing import Any

import attrs
import pytest
from prometheus_client import CollectorRegistry

from edge_sched.codecs import extender as wire
from edge_sched.codecs.resource_status import RESOURCES, StatusReport
from edge_sched.core.load import PROMETHEUS, REQUESTS, STATUS_REPORT, UDP_REPORT, Reading, SeriesIndex
from edge_sched.core.model import NodeInfo, PlacedPod
from edge_sched.core.power import ComputeType, HostPower, PowerReport, PowerUnit
from edge_sched.runtime.cluster import ClusterCache
from edge_sched.runtime.metrics import build_metrics
from edge_sched.runtime.plans import PlanStore
from edge_sched.runtime.power import build_power_service
from edge_sched.runtime.resource_status import StatusBook
from edge_sched.runtime.scheduler import Scheduler
from edge_sched.runtime.usage import UsageStore
from edge_sched.settings import Settings

GI = 1024**3
NAMES = [f"n{i}" for i in range(12)]
STEPS = 400


@attrs.define
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@attrs.define
class Uncached:
    """The usage store as a scheduler that reuses nothing reads it: every node resolved anew."""

    store: UsageStore

    def reader(self) -> Any:
        return self.store.usage

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


SHAPES = 6


def status(rng: random.Random, name: str) -> StatusReport:
    """A status update on the resource-status feed (the last usage source before requests)."""
    usages = {r: float(rng.randrange(101)) for r in RESOURCES}
    return StatusReport(1, name, 1, {r: "in_use" for r in RESOURCES}, usages, 50.0)


def pod(i: int, shape: int) -> dict[str, Any]:
    requests = [
        {"cpu": "500m"}, {"cpu": "3", "memory": "6Gi"}, {"memory": "1Gi"}, {"cpu": "1"}, {"cpu": "2"},
        {"cpu": "1", "nvidia.com/gpu": "1"},
    ][shape]
    container: dict[str, Any] = {"name": "c", "resources": {"requests": requests}}
    if shape == 5:
        container["resources"]["limits"] = {"nvidia.com/gpu": "1"}
    spec: dict[str, Any] = {"containers": [container]}
    if shape == 3:
        spec["nodeSelector"] = {"zone": "a"}
    if shape == 4:
        term = {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]}
        spec["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}}
    return {"metadata": {"name": f"p{i}", "namespace": "default", "uid": f"u{i}"}, "spec": spec}


def node(rng: random.Random, name: str) -> NodeInfo:
    annotations = {"edge-sched.io/cpu-threshold": rng.choice(["0.5", "90%", "bad"])} if rng.random() < 0.2 else {}
    return NodeInfo(
        name,
        {"cpu": rng.choice([2000, 4000, 8000]), "memory": rng.choice([4, 8, 16]) * GI, "pods": rng.choice([3, 110])},
        labels={"zone": rng.choice("ab")},
        annotations=annotations,
        addresses=(f"10.0.0.{NAMES.index(name)}",),
    )


def report(rng: random.Random, name: str) -> PowerReport:
    load = rng.randrange(0, 100)
    hosts = [HostPower(name, ComputeType.CPU, 16, rng.choice([2, 8, 15]), (PowerUnit(2.5, load),) * 4)]
    if rng.random() < 0.5:
        hosts.append(HostPower(name, ComputeType.GPU, 16, 8, (PowerUnit(10.0, rng.randrange(0, 100), 16.0),)))
    return PowerReport(1, tuple(hosts))


def node_object(info: NodeInfo) -> dict[str, Any]:
    """The node as kube-scheduler sends it without nodeCacheCapable."""
    allocatable = {"cpu": f"{info.allocatable['cpu']}m", "memory": str(info.allocatable["memory"]),
                   "pods": str(info.allocatable["pods"])}
    return {
        "metadata": {"name": info.name, "labels": dict(info.labels), "annotations": dict(info.annotations)},
        "status": {"allocatable": allocatable, "addresses": [{"type": "InternalIP", "address": a} for a in info.addresses],
                   "conditions": [{"type": "Ready", "status": "True"}]},
    }


@pytest.mark.parametrize(
    ("stale_policy", "gpu_preference", "seed"), [("open", False, 20261204), ("closed", True, 7)]
)
async def test_verbs_answer_as_without_reuse_after_every_change(stale_policy: str, gpu_preference: bool, seed: int) -> None:
    rng = random.Random(seed)
    clock = Clock()
    base = Settings()
    cfg = attrs.evolve(
        base,
        router=attrs.evolve(base.router, enabled=False),
        load=attrs.evolve(base.load, stale_policy=stale_policy),
        scheduler=attrs.evolve(base.scheduler, enable_gpu_scheduling=gpu_preference),
        computing_power=attrs.evolve(base.computing_power, expiry_s=45.0),  # reports expire often
    )
    cache = ClusterCache(clock=clock)
    usage = UsageStore(clock=clock, damping_settle_s=20.0)
    usage.enable(PROMETHEUS, 30.0)
    metrics = build_metrics(CollectorRegistry())
    power = build_power_service(cfg, CollectorRegistry())
    power.store.clock = clock
    usage.attach_reports(power.store.usage_reader, power.store.expiry_s, power.store.changes)
    book = StatusBook(cache, report_max_age_s=60.0, clock=clock)
    usage.attach(STATUS_REPORT, book.usage_source, book.changes)
    plans = PlanStore(clock=clock, expiration_s=300)
    reusing = Scheduler(cfg, cache, plans, metrics, None, wall_clock=clock, usage=usage, power=power)
    reusing._verdicts.shapes = reusing._scores.shapes = 3  # fewer than SHAPES: shapes are dropped and come back
    cache.replace_nodes([node(rng, n) for n in NAMES])
    cache.replace_pods([])
    uid = 0

    def publish() -> None:
        for resource in ("cpu", "memory"):
            picked = rng.sample(NAMES, rng.randrange(len(NAMES)))
            usage.publish(
                PROMETHEUS, resource, SeriesIndex.of_nodes({n: Reading(rng.random(), clock.now) for n in picked})
            )

    changes = [
        lambda: clock.__setattr__("now", clock.now + rng.choice([0.5, 3.0, 11.0, 31.0])),
        publish,
        lambda: power.store.apply(report(rng, rng.choice(NAMES))),
        lambda: book.apply(status(rng, rng.choice(NAMES))),
        lambda: cache.upsert_node(node(rng, rng.choice(NAMES))),
        lambda: cache.delete_node(rng.choice(NAMES)),
        lambda: usage.note_placement(rng.choice(NAMES), {"cpu": 1000}),
        lambda: cache.delete_pod(rng.choice(list(cache.pods) or ["none"])),
        lambda: cache.unassume(f"a{rng.randrange(uid + 1)}"),
        lambda: cache.unassume(rng.choice(sorted(cache._assumed_node) or ["none"])),  # a live reservation
        # A pod re-sent unchanged (a status update), or moved with other requests.
        lambda: [cache.upsert_pod(p) for p in rng.sample(list(cache.pods.values()), min(2, len(cache.pods)))],
        lambda: [cache.upsert_pod(attrs.evolve(p, node=rng.choice(NAMES), requests={"cpu": 300}))
                 for p in rng.sample(list(cache.pods.values()), min(1, len(cache.pods)))],
        lambda: cache.replace_pods(list(cache.pods.values())[::2]),  # a relist
        lambda: cache.upsert_node(cache.nodes[n]) if (n := rng.choice(NAMES)) in cache.nodes else None,
    ]
    seen = {"passed": 0, "failed": 0, "scored": 0}
    sources: set[str] = set()
    for step in range(STEPS):
        uid += 1
        kind = rng.randrange(len(changes) + 2)
        if kind < len(changes):
            changes[kind]()
        elif kind == len(changes):
            cache.upsert_pod(PlacedPod(f"u-{uid}", "default", f"q{uid}", rng.choice(NAMES), {"cpu": 700, "memory": GI}))
        else:
            cache.assume(PlacedPod(f"a{uid}", "default", f"a{uid}", rng.choice(NAMES), {"cpu": 900}), 5.0)
        names = rng.sample(NAMES, rng.randrange(1, len(NAMES) + 1)) + (["ghost"] if step % 7 == 0 else [])
        if step % 5 == 0:
            names.append(names[0])  # a name sent twice
        body: dict[str, Any] = {"Pod": pod(step, rng.randrange(SHAPES)), "NodeNames": names}
        if step % 11 == 0:  # node objects instead of names, between NodeNames calls
            body = {"Pod": body["Pod"], "Nodes": {"items": [node_object(cache.nodes[n]) for n in names if n in cache.nodes]}}
        call = wire.parse_extender_args(body)
        fresh = Scheduler(
            cfg, cache, PlanStore(clock=clock, expiration_s=300), metrics, None,
            wall_clock=clock, usage=Uncached(usage), power=power,  # type: ignore[arg-type]
        )
        answer = await reusing.filter(call)
        expected = await fresh.filter(call)
        assert answer == expected, step
        key = call.pod["metadata"]["uid"]
        assert plans.filter_outcome_for(key) == fresh.plans.filter_outcome_for(key), step
        assert await reusing.prioritize(call) == await fresh.prioritize(call), step
        ours, theirs = plans.get(f"default/p{step}"), fresh.plans.get(f"default/p{step}")
        assert (ours and ours.to_json()) == (theirs and theirs.to_json()), step
        seen["passed"] += len(expected["NodeNames"] or [])
        seen["failed"] += len(expected["FailedNodes"]) + len(expected["FailedAndUnresolvableNodes"])
        sources.update(usage.sources_by_node(cache.nodes.values()).values())
    # The sequence reached both outcomes often, so the comparison meant something.
    assert seen["passed"] > 300 and seen["failed"] > 300, seen
    assert sources == {PROMETHEUS, UDP_REPORT, STATUS_REPORT, REQUESTS}, sources


@pytest.mark.parametrize("measured", [("cpu", "memory"), ("cpu",), ()])
async def test_filter_and_prioritize_update_their_columns_as_without_reuse(measured: tuple[str, ...]) -> None:
    """Every node measured and named in the same order, a few changing between calls: the
    verdicts and scores are updated in place (runtime/filter_board.py, score_board.py),
    including when a change moves a verdict, the best power availability or the range of
    values, and every answer must still equal a fresh scheduler's. `measured`: the resources
    Prometheus has series for (none: every node scored from its requests alike)."""
    rng = random.Random(1204)
    names = [f"m{i}" for i in range(40)]
    clock = Clock()
    base = Settings()
    cfg = attrs.evolve(  # reports expire: types leave the term and come back
        base, router=attrs.evolve(base.router, enabled=False),
        computing_power=attrs.evolve(base.computing_power, expiry_s=20.0),
    )
    cache = ClusterCache(clock=clock)
    usage = UsageStore(clock=clock)
    usage.enable(PROMETHEUS, 60.0)
    metrics = build_metrics(CollectorRegistry())
    power = build_power_service(cfg, CollectorRegistry())
    power.store.clock = clock
    plans = PlanStore(clock=clock, expiration_s=300)
    reusing = Scheduler(cfg, cache, plans, metrics, None, wall_clock=clock, usage=usage, power=power)
    cache.replace_nodes([attrs.evolve(node(rng, "n0"), name=n, addresses=()) for n in names])
    cache.replace_pods([])
    readings = {r: {n: rng.random() for n in names} for r in measured}

    def publish(resource: str, aged: str | None = None) -> None:
        """`aged`: a node whose reading is nearly a minute old, so it alone ages out at the
        next step, leaving it unmeasured (scored with the others' median: a rebuild)."""
        index = {n: Reading(v, clock.now - (59.2 if n == aged else 0)) for n, v in readings[resource].items()}
        usage.publish(PROMETHEUS, resource, SeriesIndex.of_nodes(index))

    def reading() -> None:
        if not measured:
            return
        resource = rng.choice(measured)
        for n in names:  # series gone missing come back
            readings[resource].setdefault(n, rng.random())
        readings[resource][rng.choice(names)] = rng.choice([0.0, 0.99, rng.random()])  # extremes move the range
        publish(resource)

    def missing() -> None:  # a node's series goes missing (its score then uses the others' median), or come back
        if not measured:
            return
        for resource in measured:
            if len(readings[resource]) < len(names):
                readings[resource].update({n: rng.random() for n in names if n not in readings[resource]})
                publish(resource)
                return
        resource = rng.choice(measured)
        del readings[resource][rng.choice(names)]
        publish(resource)

    def gpu_report() -> None:  # a free GPU far above the others moves the best availability
        name = rng.choice(names)
        units = (PowerUnit(rng.choice([10.0, 80.0]), rng.randrange(0, 100), 16.0),)
        power.store.apply(PowerReport(1, (HostPower(name, ComputeType.GPU, 16, 8, units),)))

    for resource in measured:
        publish(resource)
    for n in names:  # CPU only: the first GPU report brings the GPU type into the term
        power.store.apply(PowerReport(1, (HostPower(n, ComputeType.CPU, 16, 8, (PowerUnit(2.5, rng.randrange(100)),) * 4),)))
    changes = [  # readings and missing series replace every node's usage: a rebuild; the rest, updates
        reading,
        missing,
        lambda: publish(rng.choice(measured), aged=rng.choice(names)) if measured else None,
        gpu_report,
        gpu_report,
        lambda: power.store.apply(report(rng, rng.choice(names))),
        lambda: power.store.apply(report(rng, rng.choice(names))),
        lambda: cache.upsert_node(attrs.evolve(node(rng, "n0"), name=rng.choice(names), addresses=())),
        lambda: cache.assume(PlacedPod(f"a{rng.random()}", "default", "a", rng.choice(names), {"cpu": 900}), 600.0),
        lambda: cache.assume(PlacedPod(f"a{rng.random()}", "default", "a", rng.choice(names), {"cpu": 900}), 600.0),
    ]
    updated = 0
    for step in range(900):
        for _ in range(rng.choice([0, 1, 1, 2])):
            rng.choice(changes)()
        clock.now += 0.5
        if step % 50 == 0:  # now and then another order: a rebuild
            names = rng.sample(names, len(names))
        elif step % 10 == 0:  # two nodes swapped: an update that moves names
            i, j = rng.sample(range(len(names)), 2)
            names[i], names[j] = names[j], names[i]
        call = wire.parse_extender_args({"Pod": pod(step, rng.choice([0, 1, 2, 5, 5])), "NodeNames": list(names)})
        fresh = Scheduler(cfg, cache, PlanStore(clock=clock, expiration_s=300), metrics, None,
                          wall_clock=clock, usage=Uncached(usage), power=power)  # type: ignore[arg-type]
        before = {shape: (board, board.table) for shape, board in reusing._boards._by_shape.items()}
        assert await reusing.filter(call) == await fresh.filter(call), step
        key = call.pod["metadata"]["uid"]
        assert plans.filter_outcome_for(key) == fresh.plans.filter_outcome_for(key), step
        assert await reusing.prioritize(call) == await fresh.prioritize(call), step
        ours, theirs = plans.get(f"default/p{step}"), fresh.plans.get(f"default/p{step}")
        assert ours is not None and theirs is not None and ours.to_json() == theirs.to_json(), step
        shape, board = next(reversed(reusing._boards._by_shape.items()))  # the board this call used
        kept, table = before.get(shape, (None, None))
        updated += kept is board and table is not board.table
    print(updated)
    # Many calls updated a kept board (rather than building one), so the comparison covered updates.
    assert updated > 60, updated
