"""The extender verbs end to end in-process: cache + rules + plans + bind."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from edge_sched.codecs import extender as wire
from edge_sched.core.model import NodeInfo, PlacedPod
from edge_sched.errors import KubeConflict, KubeNotFound
from edge_sched.runtime.cluster import ClusterCache
from edge_sched.runtime.metrics import build_metrics
from edge_sched.runtime.plans import PlanStore
from edge_sched.runtime.scheduler import Scheduler
from edge_sched.settings import Settings
from tests.recorded_events import RecordedEvents

GI = 1024**3


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeKube:
    """Records calls; answers like the API server would."""

    def __init__(self, nodes: set[str], pods: dict[str, str]) -> None:
        self.nodes = nodes
        self.pods = pods  # "ns/name" -> uid
        self.bindings: list[tuple[str, str]] = []

    async def request(self, method: str, path: str, *, params: Any = None, body: Any = None) -> dict[str, Any]:
        parts = path.strip("/").split("/")
        if method == "GET" and parts[:3] == ["api", "v1", "nodes"]:
            if parts[3] not in self.nodes:
                raise KubeNotFound(f'nodes "{parts[3]}" not found', 404)
            return {}
        if method == "GET" and parts[4:5] == ["pods"]:
            key = f"{parts[3]}/{parts[5]}"
            if key not in self.pods:
                raise KubeNotFound(f"pods {key} not found", 404)
            return {"metadata": {"name": parts[5], "namespace": parts[3], "uid": self.pods[key]},
                    "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]}}
        if method == "POST" and parts[-1] == "binding":
            key = f"{parts[3]}/{parts[5]}"
            if key not in self.pods:
                raise KubeNotFound(f"pods {key} not found", 404)
            if self.pods[key] != body["metadata"]["uid"]:
                raise KubeConflict("Precondition failed: UID in precondition", 409)
            self.bindings.append((key, body["target"]["name"]))
            return {}
        raise AssertionError(f"unexpected {method} {path}")


def make(settings: Settings | None = None, kube: FakeKube | None = None) -> tuple[Scheduler, Clock]:
    clock = Clock()
    cache = ClusterCache(clock=clock)
    cfg = settings or Settings()
    plans = PlanStore(clock=clock, expiration_s=cfg.scheduler.plan_expiration_s)
    sched = Scheduler(cfg, cache, plans, build_metrics(), kube, wall_clock=clock)  # type: ignore[arg-type]
    cache.replace_nodes(
        [
            NodeInfo("node-a", {"cpu": 4000, "memory": 8 * GI, "pods": 110}, {"zone": "z1"}),
            NodeInfo("node-b", {"cpu": 4000, "memory": 8 * GI, "pods": 110}, {"zone": "z2"}),
        ]
    )
    cache.replace_pods(
        [
            PlacedPod("x1", "default", "busy-a", "node-a", {"cpu": 2000}),
            PlacedPod("x2", "default", "busy-b", "node-b", {"cpu": 3000}),
        ]
    )
    return sched, clock


def pod(cpu: str, name: str = "p1", uid: str = "u-1", **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "default", "uid": uid},
        "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}], **spec},
    }


async def test_filter_no_node_fits_answers_reasons_not_error() -> None:
    # C03 A
    sched, _ = make()
    result = await sched.filter(wire.parse_extender_args({"Pod": pod("4"), "Nodes": None, "NodeNames": ["node-a", "node-b"]}))
    assert result == {
        "Nodes": None,
        "NodeNames": [],
        "FailedNodes": {
            "node-a": "insufficient cpu (need 4, free 2)",
            "node-b": "insufficient cpu (need 4, free 1)",
        },
        "FailedAndUnresolvableNodes": {},
        "Error": "",
    }


async def test_filter_empty_candidate_list() -> None:
    # C03 B
    sched, _ = make()
    result = await sched.filter(wire.parse_extender_args({"Pod": pod("1"), "Nodes": None, "NodeNames": []}))
    assert result["NodeNames"] == [] and result["FailedNodes"] == {} and result["Error"] == ""


async def test_filter_node_objects_pass_through_intact() -> None:
    # C04 with cache facts: node-a is known; the object offered is echoed untouched.
    sched, _ = make()
    node_a = {"metadata": {"name": "node-a", "labels": {"zone": "z1"}},
              "status": {"allocatable": {"cpu": "4", "memory": "8Gi"}}}
    node_c = {"metadata": {"name": "node-c"}, "status": {"allocatable": {"cpu": "500m", "memory": "1Gi"}}}
    result = await sched.filter(wire.parse_extender_args({"Pod": pod("1"), "NodeNames": None, "Nodes": {"items": [node_a, node_c]}}))
    assert result["Nodes"]["items"] == [node_a]
    assert result["FailedAndUnresolvableNodes"] == {"node-c": "insufficient cpu (need 1, free 500m)"}
    # What the cache knows about pods on node-a still counts: 2 of 4 cores are taken.
    big = await sched.filter(wire.parse_extender_args({"Pod": pod("3"), "Nodes": {"items": [node_a]}}))
    assert big["FailedNodes"] == {"node-a": "insufficient cpu (need 3, free 2)"}


async def test_node_object_sent_twice_scores_as_its_last_copy() -> None:
    # As kube-scheduler reads the answer (by name): one score per node, from the last copy
    # sent; the range and the plan's pick see only that copy (found in review).
    sched, _ = make()
    def obj(name: str, cpu: str) -> dict[str, Any]:
        return {"metadata": {"name": name}, "status": {"allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"}}}
    call = wire.parse_extender_args({"Pod": pod("500m"), "Nodes": {"items": [obj("x", "16"), obj("y", "4"), obj("x", "1")]}})
    await sched.filter(call)
    assert list(await sched.prioritize(call)) == [{"Host": "x", "Score": 0}, {"Host": "y", "Score": 10}]
    plan = sched.plans.get("default/p1")
    assert plan is not None and plan.selected == "y"


async def test_filter_invalid_pod_quantity_is_an_error_not_a_node_failure() -> None:
    sched, _ = make()
    result = await sched.filter(wire.parse_extender_args({"Pod": pod("1b"), "NodeNames": ["node-a"]}))
    assert result["NodeNames"] == [] and result["FailedNodes"] == {}
    assert result["Error"].startswith("Pod: spec.containers[0].resources.requests.cpu")


async def test_unknown_node_names_pass_and_are_noted() -> None:
    sched, _ = make()
    args = wire.parse_extender_args({"Pod": pod("1"), "NodeNames": ["node-a", "ghost"]})
    assert (await sched.filter(args))["NodeNames"] == ["node-a", "ghost"]
    scores = {h["Host"]: h["Score"] for h in await sched.prioritize(args)}
    assert scores == {"node-a": 10, "ghost": 0}
    plan = sched.plans.get("default/p1")
    assert plan is not None and any("ghost" in n for n in plan.notes)


async def test_prioritize_prefers_emptier_node_and_stores_plan() -> None:
    sched, _ = make()
    args = wire.parse_extender_args({"Pod": pod("500m"), "NodeNames": ["node-a", "node-b"]})
    await sched.filter(args)
    scores = await sched.prioritize(args)
    assert scores == [{"Host": "node-a", "Score": 10}, {"Host": "node-b", "Score": 0}]
    plan = sched.plans.get("default/p1")
    assert plan is not None and plan.selected == "node-a"
    assert plan.to_json()["scores"]["node-a"]["components"]["cpu_free"] == pytest.approx(0.375)


async def test_optimizer_disabled_scores_zero() -> None:
    settings = Settings()
    settings = attrs.evolve(settings, optimizer=attrs.evolve(settings.optimizer, enabled=False))
    sched, _ = make(settings)
    args = wire.parse_extender_args({"Pod": pod("500m"), "NodeNames": ["node-a", "node-b"]})
    assert [h["Score"] for h in await sched.prioritize(args)] == [0, 0]


async def test_plan_expires() -> None:
    sched, clock = make()
    await sched.prioritize(wire.parse_extender_args({"Pod": pod("500m"), "NodeNames": ["node-a"]}))
    clock.now += 299
    assert sched.plans.get("default/p1") is not None
    clock.now += 2
    assert sched.plans.get("default/p1") is None


async def test_bind_follows_unexpired_plan_and_assumes_pod() -> None:
    kube = FakeKube({"node-a", "node-b"}, {"default/p1": "u-1"})
    sched, _ = make(kube=kube)
    args = wire.parse_extender_args({"Pod": pod("1"), "NodeNames": ["node-a", "node-b"]})
    await sched.filter(args)
    await sched.prioritize(args)
    result = await sched.bind(wire.BindingArgs("p1", "default", "u-1", "node-b"))
    assert result == {"Error": ""}
    assert kube.bindings == [("default/p1", "node-a")]  # the plan's choice
    assert sched.cache.load("node-a").requested["cpu"] == 3000  # assumed until the watch shows it
    assert sched.plans.get("default/p1") is None  # a used plan is removed
    (decision,) = sched.recent
    assert (decision.pod, decision.node, decision.score, decision.followed_plan) == ("default/p1", "node-a", 10, True)


async def test_bind_without_plan_follows_scheduler_and_assumed_pod_expires() -> None:
    kube = FakeKube({"node-a", "node-b"}, {"default/p1": "u-1"})
    sched, clock = make(kube=kube)
    assert await sched.bind(wire.BindingArgs("p1", "default", "u-1", "node-b")) == {"Error": ""}
    assert kube.bindings == [("default/p1", "node-b")]
    assert sched.cache.load("node-b").pod_count == 2
    clock.now += 31
    assert sched.cache.load("node-b").pod_count == 1


async def test_bind_rechecks_fit_against_binds_that_landed_since_filter() -> None:
    # kube-scheduler filters the next pod while the previous bind is in flight:
    # both plans pick node-a (2 cores free); only the first may land there.
    kube = FakeKube({"node-a", "node-b"}, {"default/p1": "u-1", "default/p2": "u-2"})
    sched, _ = make(kube=kube)
    for name, uid in (("p1", "u-1"), ("p2", "u-2")):
        args = wire.parse_extender_args({"Pod": pod("2", name, uid), "NodeNames": ["node-a", "node-b"]})
        assert (await sched.filter(args))["NodeNames"] == ["node-a"]
        await sched.prioritize(args)
    assert await sched.bind(wire.BindingArgs("p1", "default", "u-1", "node-a")) == {"Error": ""}
    second = await sched.bind(wire.BindingArgs("p2", "default", "u-2", "node-b"))
    assert second["Error"].startswith("bind default/p2: no longer fits: node-a: insufficient cpu (need 2, free 0)")
    assert kube.bindings == [("default/p1", "node-a")]
    assert sched.cache.load("node-a").pod_count == 2 and sched.cache.load("node-b").pod_count == 1


async def test_failed_bind_releases_its_reservation() -> None:
    kube = FakeKube({"node-a"}, {"default/p1": "u-1"})
    sched, _ = make(kube=kube)
    sched.cache.delete_node("node-b")
    result = await sched.bind(wire.BindingArgs("p1", "default", "u-WRONG", "node-a"))
    assert result["Error"]
    assert sched.cache.load("node-a").pod_count == 1


async def test_bind_does_not_follow_plan_when_disabled() -> None:
    kube = FakeKube({"node-a", "node-b"}, {"default/p1": "u-1"})
    settings = Settings()
    settings = attrs.evolve(settings, scheduler=attrs.evolve(settings.scheduler, bind_follow_plan=False))
    sched, _ = make(settings, kube)
    args = wire.parse_extender_args({"Pod": pod("1"), "NodeNames": ["node-a", "node-b"]})
    await sched.filter(args)
    await sched.prioritize(args)
    await sched.bind(wire.BindingArgs("p1", "default", "u-1", "node-b"))
    assert kube.bindings == [("default/p1", "node-b")]


async def test_bind_errors_change_nothing() -> None:
    kube = FakeKube({"node-a"}, {"default/p1": "u-1"})
    sched, _ = make(kube=kube)
    sched.cache.delete_node("node-b")
    missing = await sched.bind(wire.BindingArgs("p1", "default", "u-1", "node-zz"))
    assert "node 'node-zz' does not exist" in missing["Error"]
    wrong_uid = await sched.bind(wire.BindingArgs("p1", "default", "u-OLD", "node-a"))
    assert "Precondition failed" in wrong_uid["Error"]
    assert kube.bindings == []
    assert sched.cache.load("node-a").pod_count == 1


async def test_bind_in_standalone_mode_is_a_clear_error() -> None:
    sched, _ = make()
    result = await sched.bind(wire.BindingArgs("p1", "default", "u-1", "node-a"))
    assert "standalone mode" in result["Error"]


def test_preempt_keeps_nodes_only_where_evicting_the_victims_makes_room() -> None:
    sched, _ = make()
    body = {
        "Pod": pod("3"),
        "NodeNameToMetaVictims": {
            "node-a": {"Pods": [{"UID": "x1"}]},  # frees 2 of 4 cores: 3 fit
            "node-b": {"Pods": []},  # 1 core free, no victims: 3 do not fit
            "elsewhere": {"Pods": [{"UID": "zz"}]},  # unknown node: passed through
        },
    }
    result = sched.preempt(wire.parse_preemption_args(body))
    assert sorted(result["NodeNameToMetaVictims"]) == ["elsewhere", "node-a"]


def test_preempt_drops_nodes_where_eviction_cannot_help() -> None:
    sched, _ = make()
    body = {
        "Pod": pod("1", nodeSelector={"zone": "z1"}),
        "NodeNameToMetaVictims": {"node-a": {"Pods": [{"UID": "x1"}]}, "node-b": {"Pods": [{"UID": "x2"}]}},
    }
    result = sched.preempt(wire.parse_preemption_args(body))
    assert result == {"NodeNameToMetaVictims": {"node-a": {"Pods": [{"UID": "x1"}], "NumPDBViolations": 0}}}


async def test_a_bind_that_overrides_kube_scheduler_posts_an_event_and_an_ordinary_one_does_not() -> None:
    kube = FakeKube({"node-a", "node-b"}, {"default/p1": "u-1", "default/p2": "u-2"})
    sched, _ = make(kube=kube)
    sched.events = RecordedEvents()  # type: ignore[assignment]
    args = wire.parse_extender_args({"Pod": pod("1"), "NodeNames": ["node-a", "node-b"]})
    await sched.prioritize(args)
    assert await sched.bind(wire.BindingArgs("p1", "default", "u-1", "node-b")) == {"Error": ""}
    assert await sched.bind(wire.BindingArgs("p2", "default", "u-2", "node-b")) == {"Error": ""}  # no plan
    ((ref, event_type, reason, message),) = sched.events.events  # type: ignore[attr-defined]
    assert (ref.kind, ref.namespace, ref.name, ref.uid) == ("Pod", "default", "p1", "u-1")
    assert (event_type, reason) == ("Normal", "FollowedPlan")
    assert message == ("edge-sched bound the pod to node-a (score 10/10), the node its plan selected, "
                       "instead of kube-scheduler's pick node-b")


async def test_bind_keeps_kube_schedulers_pick_when_it_scored_exactly_as_well_as_the_plans() -> None:
    # Equal nodes score equal: the plan names node-a (ties break by name) but kube-scheduler's
    # pick of node-b is as good by edge-sched's own score, so it stands, with no event.
    kube = FakeKube({"node-a", "node-b"}, {"default/p1": "u-1", "default/p2": "u-2"})
    sched, _ = make(kube=kube)
    sched.events = RecordedEvents()  # type: ignore[assignment]
    sched.cache.delete_pod("x2")
    sched.cache.upsert_pod(PlacedPod("x2", "default", "busy-b", "node-b", {"cpu": 2000}))
    args = wire.parse_extender_args({"Pod": pod("1"), "NodeNames": ["node-a", "node-b"]})
    await sched.filter(args)
    assert [h["Score"] for h in await sched.prioritize(args)] == [10, 10]
    plan = sched.plans.get("default/p1")
    assert plan is not None and plan.selected == "node-a"
    assert await sched.bind(wire.BindingArgs("p1", "default", "u-1", "node-b")) == {"Error": ""}
    assert kube.bindings == [("default/p1", "node-b")]
    assert sched.events.events == []  # type: ignore[attr-defined]
    assert sched.metrics.plan_overrides._value.get() == 0
    (decision,) = sched.recent
    assert (decision.node, decision.score, decision.followed_plan) == ("node-b", 10, False)
    # One CPU less on node-b: no longer a tie, and bind follows the plan.
    args2 = wire.parse_extender_args({"Pod": pod("1", "p2", "u-2"), "NodeNames": ["node-a", "node-b"]})
    await sched.filter(args2)
    await sched.prioritize(args2)
    assert await sched.bind(wire.BindingArgs("p2", "default", "u-2", "node-b")) == {"Error": ""}
    assert kube.bindings[-1] == ("default/p2", "node-a")
