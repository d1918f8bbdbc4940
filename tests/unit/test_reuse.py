"""Reusing per-node work across calls (runtime/candidates.py, UsageStore.reader) never
changes an answer: after every one of a long seeded sequence of cluster changes, the
verbs of one long-lived scheduler answer exactly as a scheduler that reuses nothing."""

from __future__ import annotations

import random
from typing import Any

import attrs
from prometheus_client import CollectorRegistry

from edge_sched.codecs import extender as wire
from edge_sched.core.load import PROMETHEUS, Reading, SeriesIndex
from edge_sched.core.model import NodeInfo, PlacedPod
from edge_sched.core.power import ComputeType, HostPower, PowerReport, PowerUnit
from edge_sched.runtime.cluster import ClusterCache
from edge_sched.runtime.metrics import build_metrics
from edge_sched.runtime.plans import PlanStore
from edge_sched.runtime.power import build_power_service
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


def pod(i: int, shape: int) -> dict[str, Any]:
    requests = [{"cpu": "500m"}, {"cpu": "3", "memory": "6Gi"}, {"memory": "1Gi"}, {"cpu": "1"}][shape]
    spec: dict[str, Any] = {"containers": [{"name": "c", "resources": {"requests": requests}}]}
    if shape == 3:
        spec["nodeSelector"] = {"zone": "a"}
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
    return PowerReport(1, (HostPower(name, ComputeType.CPU, 16, rng.choice([2, 8, 15]), (PowerUnit(2.5, load),) * 4),))


async def test_verbs_answer_as_without_reuse_after_every_change() -> None:
    rng = random.Random(20261204)
    clock = Clock()
    base = Settings()
    cfg = attrs.evolve(base, router=attrs.evolve(base.router, enabled=False))
    cache = ClusterCache(clock=clock)
    usage = UsageStore(clock=clock, damping_settle_s=20.0)
    usage.enable(PROMETHEUS, 30.0)
    metrics = build_metrics(CollectorRegistry())
    power = build_power_service(cfg, CollectorRegistry())
    power.store.clock = clock
    usage.attach_reports(power.store.usage)
    plans = PlanStore(clock=clock, expiration_s=300)
    reusing = Scheduler(cfg, cache, plans, metrics, None, wall_clock=clock, usage=usage, power=power)
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
        lambda: cache.upsert_node(node(rng, rng.choice(NAMES))),
        lambda: cache.delete_node(rng.choice(NAMES)),
        lambda: usage.note_placement(rng.choice(NAMES), {"cpu": 1000}),
        lambda: cache.delete_pod(rng.choice(list(cache.pods) or ["none"])),
        lambda: cache.unassume(f"a{rng.randrange(uid + 1)}"),
    ]
    seen = {"passed": 0, "failed": 0, "scored": 0}
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
        call = wire.parse_extender_args({"Pod": pod(step, rng.randrange(4)), "NodeNames": names})
        fresh = Scheduler(
            cfg, cache, PlanStore(clock=clock, expiration_s=300), metrics, None,
            wall_clock=clock, usage=Uncached(usage), power=power,  # type: ignore[arg-type]
        )
        expected = await fresh.filter(call)
        assert await reusing.filter(call) == expected, step
        assert plans.filter_outcome_for(call.pod["metadata"]["uid"]) == fresh.plans.filter_outcome_for(
            call.pod["metadata"]["uid"]
        ), step
        assert await reusing.prioritize(call) == await fresh.prioritize(call), step
        seen["passed"] += len(expected["NodeNames"] or [])
        seen["failed"] += len(expected["FailedNodes"]) + len(expected["FailedAndUnresolvableNodes"])
    # The sequence reached both outcomes often, so the comparison meant something.
    assert seen["passed"] > 300 and seen["failed"] > 300, seen
