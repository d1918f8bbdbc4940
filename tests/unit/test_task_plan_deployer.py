"""The task-plan deployer on virtual time against an in-memory API server (spec S11).

The end-to-end suite proves the same behaviours on a real control plane; here the clock is
trio's MockClock, so retry spacing and timeouts are checked to the exact second, and
restarts are simulated at the precise moments that matter (after a step is stored and
before it is acted on).
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from edge_sched.codecs.task_objects import PLAN_UID_ANNOTATION, configmap_name
from edge_sched.core.taskplan import TaskPlan, parse_plan
from edge_sched.core.taskrun import object_name
from edge_sched.errors import KubeConflict, KubeError, KubeNotFound
from edge_sched.runtime.task_plans import PlanExists, TaskPlanService
from edge_sched.settings import Settings, TaskPlanningSettings
from tests.recorded_events import RecordedEvents

NS = "edge-scheduler"


def _matches(obj: Mapping[str, Any], selector: str | None) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    for term in (selector or "").split(","):
        if not term:
            continue
        key, eq, value = term.partition("=")
        if key not in labels or (eq and labels[key] != value):
            return False
    return True


class FakeApi:
    """Just enough of an API server: CRUD with resourceVersions, label-selected lists and
    watches that replay from a resourceVersion, for ConfigMaps, Jobs, Deployments and pods."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}  # (kind, ns, name)
        self.events: list[tuple[int, str, str, dict[str, Any]]] = []  # (rv, kind, type, obj)
        self.rv = itertools.count(1)
        self.uids = itertools.count(1)
        self.changed = trio.Event()
        self.calls: list[tuple[str, str]] = []

    @staticmethod
    def parse(path: str) -> tuple[str, str | None, str | None]:
        parts = path.strip("/").split("/")
        if "namespaces" in parts:
            i = parts.index("namespaces")
            ns, kind = parts[i + 1], parts[i + 2]
            name = parts[i + 3] if len(parts) > i + 3 else None
            return kind, ns, name
        return parts[-1], None, None

    def _emit(self, kind: str, type_: str, obj: dict[str, Any]) -> None:
        rv = next(self.rv)
        obj["metadata"]["resourceVersion"] = str(rv)
        self.events.append((rv, kind, type_, obj))
        self.changed.set()
        self.changed = trio.Event()

    def put_object(self, kind: str, obj: dict[str, Any], type_: str = "ADDED") -> dict[str, Any]:
        meta = obj["metadata"]
        meta.setdefault("uid", f"uid-{next(self.uids)}")
        self.objects[(kind, meta["namespace"], meta["name"])] = obj
        self._emit(kind, type_, obj)
        return obj

    def get(self, kind: str, ns: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((kind, ns, name))

    def of_kind(self, kind: str, selector: str | None = None) -> list[dict[str, Any]]:
        return [o for (k, _, _), o in sorted(self.objects.items()) if k == kind and _matches(o, selector)]

    def remove(self, kind: str, ns: str, name: str) -> None:
        obj = self.objects.pop((kind, ns, name))
        self._emit(kind, "DELETED", obj)

    async def request(
        self, method: str, path: str, *, params: Mapping[str, str] | None = None, body: Any = None
    ) -> dict[str, Any]:
        await trio.lowlevel.checkpoint()
        self.calls.append((method, path))
        kind, ns, name = self.parse(path)
        if method == "GET" and name is None:
            items = [o for (k, n, _), o in sorted(self.objects.items())
                     if k == kind and (ns is None or n == ns) and _matches(o, (params or {}).get("labelSelector"))]
            return {"items": items, "metadata": {"resourceVersion": str(self.events[-1][0] if self.events else 0)}}
        if method == "POST":
            assert ns is not None
            body = dict(body)
            body["metadata"] = {**body["metadata"], "namespace": ns}
            if (kind, ns, body["metadata"]["name"]) in self.objects:
                raise KubeConflict("HTTP 409: already exists", 409)
            return self.put_object(kind, body)
        assert ns is not None
        assert name is not None
        current = self.objects.get((kind, ns, name))
        if current is None:
            raise KubeNotFound(f"HTTP 404: {kind} {name} not found", 404)
        if method == "GET":
            return current
        if method == "PUT":
            if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
                raise KubeConflict("HTTP 409: the object has been modified", 409)
            body = {**body, "metadata": {**body["metadata"], "uid": current["metadata"]["uid"]}}
            self.objects[(kind, ns, name)] = body
            self._emit(kind, "MODIFIED", body)
            return dict(body)
        if method == "DELETE":
            self.remove(kind, ns, name)
            return {}
        raise AssertionError(method)

    async def watch(
        self,
        path: str,
        params: Mapping[str, str],
        on_event: Callable[[dict[str, Any]], Awaitable[None] | None],
        on_open: Callable[[], None] = lambda: None,
    ) -> None:
        kind, ns, _ = self.parse(path)
        seen = int(params.get("resourceVersion") or 0)
        on_open()
        while True:
            changed = self.changed
            for rv, k, type_, obj in [e for e in self.events if e[0] > seen]:
                seen = rv
                if k == kind and _matches(obj, params.get("labelSelector")):
                    result = on_event({"type": type_, "object": obj})
                    if result is not None:
                        await result
            await changed.wait()


# ---------------------------------------------------------------- a scripted cluster


Behaviour = Callable[[str], tuple[str, float] | None]  # task id -> ("complete"|"fail", after_s) or None: never


async def fake_controllers(api: FakeApi, behaviour: Behaviour) -> None:
    """Bind each new Job/Deployment's pod to node n1, then complete or fail it as scripted."""
    handled: set[str] = set()

    async def play(kind: str, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        labels = meta["labels"]
        api.put_object("pods", {"metadata": {"name": meta["name"] + "-pod", "namespace": meta["namespace"],
                                             "labels": dict(obj["spec"]["template"]["metadata"]["labels"]),
                                             "annotations": dict(obj["spec"]["template"]["metadata"]["annotations"])},
                                "spec": {"nodeName": "n1"}})
        script = behaviour(labels["edge-sched.io/task"])
        if script is None:
            return
        what, after = script
        await trio.sleep(after)
        current = api.get(kind, meta["namespace"], meta["name"])
        if current is None or current["metadata"]["uid"] != meta["uid"]:
            return
        current = {**current, "status": _status(kind, what)}
        api.objects[(kind, meta["namespace"], meta["name"])] = current
        api._emit(kind, "MODIFIED", current)

    async with trio.open_nursery() as nursery:
        while True:
            changed = api.changed
            for kind in ("jobs", "deployments"):
                for obj in api.of_kind(kind):
                    if obj["metadata"]["uid"] not in handled:
                        handled.add(obj["metadata"]["uid"])
                        nursery.start_soon(play, kind, obj)
            await changed.wait()


def _status(kind: str, what: str) -> dict[str, Any]:
    if kind == "jobs":
        cond = "Complete" if what == "complete" else "Failed"
        return {"conditions": [{"type": cond, "status": "True", "reason": "Scripted"}]}
    if what == "complete":
        return {"observedGeneration": 0, "availableReplicas": 1,
                "conditions": [{"type": "Available", "status": "True"}]}
    return {"conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]}


def settings(**task_planning: Any) -> Settings:
    defaults = {"deploy_timeout_s": 30.0, "retry_count": 2, "retry_interval_s": 5.0, "default_namespace": "work"}
    return attrs.evolve(Settings(), task_planning=attrs.evolve(TaskPlanningSettings(), **{**defaults, **task_planning}))


def plan(*tasks: tuple[str, list[str]] | tuple[str, list[str], str], name: str = "p") -> TaskPlan:
    docs = [{"task_id": t[0], "name": t[0], "image": "i", "cpu": "100m", "memory": "64Mi", "dependencies": t[1],
             **({"kind": t[2]} if len(t) > 2 else {})} for t in tasks]
    return parse_plan({"plan_name": name, "tasks": docs}, max_tasks=100)


@attrs.define
class Harness:
    api: FakeApi
    service: TaskPlanService
    nursery: trio.Nursery

    async def finished(self, name: str, limit_s: float = 10_000) -> None:
        with trio.fail_after(limit_s):
            while (run := self.service.runs.get(name)) is None or run.state.finished_at is None:  # noqa: ASYNC110
                # Polling on virtual time costs nothing and, unlike waiting for an API event,
                # also sees bookkeeping done after the last write.
                await trio.sleep(0.5)


async def start_service(nursery: trio.Nursery, api: FakeApi, cfg: Settings) -> TaskPlanService:
    service = TaskPlanService(cfg, api, clock=trio.current_time)  # type: ignore[arg-type]
    await nursery.start(service.serve)
    return service


def job_names(api: FakeApi, plan_name: str, task: str | None = None) -> list[str]:
    selector = f"edge-sched.io/plan={plan_name}" + (f",edge-sched.io/task={task}" if task else "")
    return [o["metadata"]["name"] for o in api.of_kind("jobs", selector)]


# ---------------------------------------------------------------- tests


async def test_tasks_start_when_their_dependencies_succeed(autojump_clock: trio.testing.MockClock) -> None:
    api = FakeApi()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(fake_controllers, api, lambda tid: ("complete", {"b": 3.0}.get(tid, 1.0)))
        service = await start_service(nursery, api, settings())
        t0 = trio.current_time()
        run = await service.submit(plan(("d", ["b", "c"]), ("b", ["a"]), ("c", ["a"]), ("a", []), ("e", [])))
        await Harness(api, service, nursery).finished("p")
        tasks = run.state.tasks
        assert run.state.phase == "succeeded"
        starts = {tid: (t.started_at or 0) - t0 for tid, t in tasks.items()}
        ends = {tid: (t.finished_at or 0) - t0 for tid, t in tasks.items()}
        assert starts["a"] == pytest.approx(0, abs=0.01)
        assert starts["e"] == pytest.approx(0, abs=0.01)
        assert starts["b"] == pytest.approx(ends["a"])
        assert starts["c"] == pytest.approx(ends["a"])
        assert starts["d"] == pytest.approx(max(ends["b"], ends["c"])) == pytest.approx(ends["b"])
        assert ends["b"] - starts["b"] == pytest.approx(3.0, abs=0.01)
        assert {tasks[t].node for t in tasks} == {"n1"}
        stored = api.get("configmaps", NS, configmap_name("p"))
        assert stored is not None
        assert '"phase":"succeeded"' in stored["data"]["state.json"]
        nursery.cancel_scope.cancel()


async def test_a_failing_task_is_retried_interval_apart_then_fails_and_skips(
    autojump_clock: trio.testing.MockClock,
) -> None:
    api = FakeApi()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(fake_controllers, api, lambda tid: ("fail", 1.0) if tid == "bad" else ("complete", 20.0))
        service = await start_service(nursery, api, settings(retry_count=2, retry_interval_s=5.0))
        run = await service.submit(plan(("bad", []), ("after", ["bad"]), ("later", ["after"]), ("solo", [])))
        await Harness(api, service, nursery).finished("p")
        bad = run.state.tasks["bad"]
        assert [a.result for a in bad.attempts] == ["failed"] * 3
        for before, after in zip(bad.attempts, bad.attempts[1:], strict=False):
            assert after.started_at - (before.finished_at or 0) == pytest.approx(5.0, abs=0.01)
        assert run.state.phase == "failed"
        assert run.state.failed_tasks == ("bad",)
        assert run.state.tasks["after"].phase == run.state.tasks["later"].phase == "skipped"
        # The independent branch ran to its end (20 s, long after `bad` had failed at ~13 s).
        assert run.state.tasks["solo"].phase == "succeeded"
        assert run.state.finished_at == run.state.tasks["solo"].finished_at
        # Each retry deleted its predecessor; the last failed Job is kept.
        assert job_names(api, "p", "bad") == [object_name("p", "bad", 3)]
        nursery.cancel_scope.cancel()


async def test_failed_attempts_and_the_plans_end_are_kubernetes_events(autojump_clock: trio.testing.MockClock) -> None:
    api = FakeApi()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(fake_controllers, api, lambda tid: ("fail", 1.0) if tid == "bad" else ("complete", 2.0))
        service = await start_service(nursery, api, settings(retry_count=1, retry_interval_s=5.0))
        service.events = events = RecordedEvents()  # type: ignore[assignment]
        await service.submit(plan(("bad", []), ("after", ["bad"])))
        await Harness(api, service, nursery).finished("p")
        first, second = object_name("p", "bad", 1), object_name("p", "bad", 2)
        seen = [(r.kind, r.name, t, reason) for r, t, reason, _ in events.events]
        assert seen == [
            ("Job", first, "Warning", "TaskAttemptFailed"),
            ("Job", second, "Warning", "TaskAttemptFailed"),
            ("ConfigMap", "edge-sched-plan-p", "Warning", "PlanFailed"),
        ]
        # Each Job's event carries its uid: `kubectl describe job` matches events by uid.
        assert all(ref.uid.startswith("uid-") for ref, *_ in events.events), events.events
        assert events.events[0][3].startswith("task plan p, task bad: attempt 1: ")
        assert events.events[0][3].endswith("; task is now retrying")
        assert events.events[2][3] == "task plan p failed: task bad failed; skipped: after"

        events.events.clear()
        await service.submit(plan(("ok", []), name="q"))
        await Harness(api, service, nursery).finished("q")
        assert [(r.name, reason, m) for r, _, reason, m in events.events] == [
            ("edge-sched-plan-q", "PlanSucceeded", "task plan q: all 1 tasks succeeded")
        ]
        nursery.cancel_scope.cancel()


async def test_a_never_completing_task_times_out_each_attempt(autojump_clock: trio.testing.MockClock) -> None:
    api = FakeApi()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(fake_controllers, api, lambda tid: None)
        cfg = settings(deploy_timeout_s=30.0, retry_count=1, retry_interval_s=5.0)
        service = await start_service(nursery, api, cfg)
        run = await service.submit(plan(("stuck", []), ("next", ["stuck"])))
        await Harness(api, service, nursery).finished("p")
        attempts = run.state.tasks["stuck"].attempts
        assert [a.result for a in attempts] == ["timeout", "timeout"]
        assert [(a.finished_at or 0) - a.started_at for a in attempts] == [pytest.approx(30.0, abs=0.01)] * 2
        assert attempts[1].started_at - (attempts[0].finished_at or 0) == pytest.approx(5.0, abs=0.01)
        assert "within 30s (TASK_PLANNING_DEPLOY_TIMEOUT)" in (attempts[0].error or "")
        assert run.state.tasks["next"].phase == "skipped"
        with trio.fail_after(5):  # timed-out attempts are stopped (the last one just after it is stored)
            while job_names(api, "p"):
                await api.changed.wait()
        nursery.cancel_scope.cancel()


async def test_a_service_succeeds_once_available(autojump_clock: trio.testing.MockClock) -> None:
    api = FakeApi()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(fake_controllers, api, lambda tid: ("complete", 2.0))
        service = await start_service(nursery, api, settings())
        run = await service.submit(plan(("web", [], "service"), ("smoke", ["web"])))
        await Harness(api, service, nursery).finished("p")
        assert run.state.phase == "succeeded"
        assert [d["metadata"]["name"] for d in api.of_kind("deployments")] == [object_name("p", "web", 1)]
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("moment", ["before-create", "after-create", "retrying-before-delete"])
async def test_a_restart_at_any_step_creates_nothing_twice(autojump_clock: trio.testing.MockClock, moment: str) -> None:
    """Kill the deployer (cancel its scope) right after a step is stored, start a new one on
    the same API server, and count what gets created."""
    api = FakeApi()
    first_bad = True

    def behaviour(tid: str) -> tuple[str, float] | None:
        nonlocal first_bad
        if tid == "b" and moment == "retrying-before-delete" and first_bad:
            first_bad = False
            return ("fail", 1.0)
        return ("complete", 2.0)

    async with trio.open_nursery() as outer:
        outer.start_soon(fake_controllers, api, behaviour)
        with trio.CancelScope() as first:
            async with trio.open_nursery() as nursery:
                service = await start_service(nursery, api, settings())
                await service.submit(plan(("a", []), ("b", ["a"]), ("c", ["b"])))
                b1 = object_name("p", "b", 1)
                while True:
                    stored = api.get("configmaps", NS, configmap_name("p"))
                    assert stored is not None
                    state = stored["data"]["state.json"]
                    if moment == "before-create" and b1 in state:
                        break  # attempt recorded; its Job not created yet
                    if moment == "after-create" and api.get("jobs", "work", b1) is not None:
                        break
                    if moment == "retrying-before-delete" and '"phase":"retrying"' in state:
                        break
                    await api.changed.wait()
                first.cancel()
        async with trio.open_nursery() as nursery:
            service = await start_service(nursery, api, settings())
            await Harness(api, service, nursery).finished("p")
            run = service.runs["p"]
            assert run.state.phase == "succeeded"
            expected_b = 2 if moment == "retrying-before-delete" else 1
            assert len(run.state.tasks["b"].attempts) == expected_b
            created = [o["metadata"]["name"] for _, kind, type_, o in api.events if kind == "jobs" and type_ == "ADDED"]
            assert len(created) == len(set(created)) == 3 + expected_b - 1  # one Job per attempt, none twice
            assert job_names(api, "p", "b") == [object_name("p", "b", expected_b)]
            nursery.cancel_scope.cancel()
        outer.cancel_scope.cancel()


async def test_an_object_left_by_an_earlier_plan_of_the_same_name_is_not_adopted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    api = FakeApi()
    name = object_name("p", "a", 1)
    api.put_object("jobs", {"metadata": {"name": name, "namespace": "work",
                                         "labels": {"edge-sched.io/plan": "p", "edge-sched.io/task": "a"},
                                         "annotations": {PLAN_UID_ANNOTATION: "an-older-plan"}},
                            "spec": {"template": {"metadata": {"labels": {}, "annotations": {}}}},
                            "status": {"conditions": [{"type": "Complete", "status": "True"}]}})
    async with trio.open_nursery() as nursery:
        service = await start_service(nursery, api, settings())
        run = await service.submit(plan(("a", [])))
        await trio.sleep(10)
        assert run.state.tasks["a"].phase == "running"  # not fooled by the old Job's completion
        assert "earlier plan" in run.problem
        nursery.start_soon(fake_controllers, api, lambda tid: ("complete", 1.0))
        api.remove("jobs", "work", name)  # the old plan's deletion finishes
        await Harness(api, service, nursery).finished("p")
        assert run.state.phase == "succeeded"
        nursery.cancel_scope.cancel()


async def test_delete_stops_the_plan_and_removes_everything(autojump_clock: trio.testing.MockClock) -> None:
    api = FakeApi()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(fake_controllers, api, lambda tid: ("complete", 1.0) if tid == "a" else None)
        service = await start_service(nursery, api, settings(deploy_timeout_s=1000.0))
        await service.submit(plan(("a", []), ("b", ["a"]), ("c", [], "service")))
        await trio.sleep(5)
        assert sorted(job_names(api, "p")) == [object_name("p", "a", 1), object_name("p", "b", 1)]
        finished, _ = await service.delete("p")
        assert finished
        assert api.of_kind("jobs") == []
        assert api.of_kind("deployments") == []
        assert api.get("configmaps", NS, configmap_name("p")) is None
        assert "p" not in service.runs
        # The name is free again.
        await service.submit(plan(("x", [])))
        with pytest.raises(PlanExists):
            await service.submit(plan(("y", [])))
        nursery.cancel_scope.cancel()


async def test_a_configmap_deleted_by_hand_takes_the_plans_objects_with_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    api = FakeApi()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(fake_controllers, api, lambda tid: ("complete", 10.0))
        service = await start_service(nursery, api, settings())
        await service.submit(plan(("a", []), ("b", ["a"])))
        await trio.sleep(1)
        api.remove("configmaps", NS, configmap_name("p"))
        with trio.fail_after(100):
            while "p" in service.runs:  # noqa: ASYNC110 (polling: see Harness.finished)
                await trio.sleep(1)
        assert api.of_kind("jobs") == []
        nursery.cancel_scope.cancel()


async def test_a_stored_plan_marked_deleting_is_deleted_on_start(autojump_clock: trio.testing.MockClock) -> None:
    api = FakeApi()
    async with trio.open_nursery() as outer:
        outer.start_soon(fake_controllers, api, lambda tid: None)
        with trio.CancelScope() as first:
            async with trio.open_nursery() as nursery:
                service = await start_service(nursery, api, settings())
                run = await service.submit(plan(("a", [])))
                await trio.sleep(1)
                # What DELETE stores first; the daemon dies before deleting anything.
                run.update(attrs.evolve(run.state, phase="deleting"))
                await service._persist(run)
                first.cancel()
        assert job_names(api, "p") != []
        async with trio.open_nursery() as nursery:
            service = await start_service(nursery, api, settings())
            with trio.fail_after(100):
                while "p" in service.runs:  # noqa: ASYNC110
                    await trio.sleep(1)
            assert job_names(api, "p") == []
            assert api.get("configmaps", NS, configmap_name("p")) is None
            nursery.cancel_scope.cancel()
        outer.cancel_scope.cancel()


async def test_an_unreadable_configmap_is_reported_and_can_be_deleted(autojump_clock: trio.testing.MockClock) -> None:
    api = FakeApi()
    api.put_object("configmaps", {"metadata": {"name": configmap_name("old"), "namespace": NS,
                                               "labels": {"edge-sched.io/task-plan": "old"}},
                                  "data": {"plan.json": "{", "state.json": "{}"}})
    async with trio.open_nursery() as nursery:
        service = await start_service(nursery, api, settings())
        assert "old" in service.unreadable
        with pytest.raises(PlanExists):
            await service.submit(plan(("a", []), name="old"))
        assert await service.delete("old") == (True, None)
        assert api.get("configmaps", NS, configmap_name("old")) is None
        nursery.cancel_scope.cancel()


async def test_a_refused_listing_shows_in_health(autojump_clock: trio.testing.MockClock) -> None:
    class Forbidden(FakeApi):
        async def request(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                          body: Any = None) -> dict[str, Any]:
            if method == "GET" and path.endswith("/configmaps"):
                raise KubeError('HTTP 403: configmaps is forbidden in the namespace "edge-scheduler"', 403)
            return await super().request(method, path, params=params, body=body)

    service = TaskPlanService(settings(), Forbidden(), clock=trio.current_time)  # type: ignore[arg-type]
    refused = False
    try:
        await service.serve()
    except* KubeError:
        refused = True
    assert refused
    assert service.health() == (
        'starting (listing stored plans failed: HTTP 403: configmaps is forbidden in the namespace "edge-scheduler")'
    )


async def test_loads_when_the_plan_pods_are_listed_last_and_there_are_none(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The deployer waits for its three caches before loading stored plans. An empty list of
    plan pods, arriving after the other two, must wake it too (it once did not, and the
    deployer stayed "starting" until some owned object changed: seen in CI)."""

    class PodsListedLast(FakeApi):
        async def request(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                          body: Any = None) -> dict[str, Any]:
            if method == "GET" and path == "/api/v1/pods":
                await trio.sleep(1)
            return await super().request(method, path, params=params, body=body)

    async with trio.open_nursery() as nursery:
        with trio.fail_after(60):
            service = await start_service(nursery, PodsListedLast(), settings())
        assert service.health().startswith("ready")
        nursery.cancel_scope.cancel()
