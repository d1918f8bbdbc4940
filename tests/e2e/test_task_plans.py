"""Joint task plans deployed on the real control plane (spec S11, issue 8).

One daemon (least-privilege ServiceAccount token, KUBE_NAMESPACE=edge-scheduler) with a
kube-scheduler profile calling it; kwok completes Job pods after a delay (per pod:
`edge-sched.test/complete-after`) and fails pods annotated `edge-sched.test/fail`. The
plans' tasks carry those annotations through the task field `annotations`.

Short settings keep the module quick: DEPLOY_TIMEOUT 8 s, RETRY_COUNT 2, RETRY_INTERVAL
2 s. The slow plans (retries, timeout) are submitted together by one fixture, so their
waits overlap instead of adding up.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cluster import (
    COMPLETE_AFTER_ANNOTATION,
    FAIL_AFTER_ANNOTATION,
    FAIL_ANNOTATION,
    ControlPlane,
    EdgeSchedDaemon,
    NodeSpec,
    wait_for,
)
from tests.cluster.stack import NAMESPACE, EdgeStack, metric_value, start_edge_stack

NS = "tp-e2e"
NODES = [NodeSpec("tp-n1", cpu="8", memory="16Gi"), NodeSpec("tp-n2", cpu="8", memory="16Gi")]
DEPLOY_TIMEOUT_S = 8.0
RETRY_COUNT = 2
RETRY_INTERVAL_S = 2.0
ENV = {
    "KUBE_NAMESPACE": NAMESPACE,
    "TASK_PLANNING_DEFAULT_NAMESPACE": NS,
    "TASK_PLANNING_DEPLOY_TIMEOUT": str(DEPLOY_TIMEOUT_S),
    "TASK_PLANNING_RETRY_COUNT": str(RETRY_COUNT),
    "TASK_PLANNING_RETRY_INTERVAL": str(RETRY_INTERVAL_S),
    "API_AUTH_TOKEN": "tp-secret",
}
AUTH = {"Authorization": "Bearer tp-secret"}
# Scheduling slack on a loaded two-core machine: the gap between a failure and the next
# attempt is RETRY_INTERVAL plus the time to notice the failure and store it.
SLACK_S = 2.0


def task(task_id: str, *deps: str, complete_after: str = "1s", **extra: Any) -> dict[str, Any]:
    annotations = {COMPLETE_AFTER_ANNOTATION: complete_after, **extra.pop("annotations", {})}
    return {"task_id": task_id, "name": task_id.replace("-", " ").title(), "image": "registry.example/task:1",
            "dependencies": list(deps), "cpu": "100m", "memory": "64Mi", "annotations": annotations, **extra}


def failing(task_id: str, *deps: str) -> dict[str, Any]:
    return task(task_id, *deps, annotations={FAIL_ANNOTATION: "true", FAIL_AFTER_ANNOTATION: "500ms"})


@pytest.fixture(scope="module")
def stack(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeStack]:
    control_plane.add_nodes(NODES)
    control_plane.create_namespace(NS)
    s = start_edge_stack(control_plane, tmp_path_factory.mktemp("task-plans"), ENV)
    try:
        # The deployer answers 503 until its caches are synced and stored plans loaded;
        # on a busy machine that can outlast the daemon's own start-up.
        wait_for(lambda: deployer_ready(s), 60, "the task-plan deployer ready", interval_s=0.5)
        yield s
    finally:
        s.stop()
        for group, kind in (("/apis/batch/v1", "jobs"), ("/apis/apps/v1", "deployments")):
            for obj in control_plane.get(f"{group}/{kind}", labelSelector="edge-sched.io/plan")["items"]:
                meta = obj["metadata"]
                control_plane.delete(f"{group}/namespaces/{meta['namespace']}/{kind}/{meta['name']}")
        for cm in control_plane.get(f"/api/v1/namespaces/{NAMESPACE}/configmaps",
                                    labelSelector="edge-sched.io/task-plan")["items"]:
            control_plane.delete(f"/api/v1/namespaces/{NAMESPACE}/configmaps/{cm['metadata']['name']}")
        control_plane.delete(f"/api/v1/namespaces/{NS}")
        control_plane.delete_nodes(n.name for n in NODES)


def deployer_ready(stack: EdgeStack) -> bool:
    health = httpx.get(stack.daemon.api_url + "/scheduler/health", timeout=5).json()
    return str(health["components"].get("task_planning", "")).startswith("ready")


@pytest.fixture
def api(stack: EdgeStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.daemon.api_url + "/task-planning", timeout=30) as client:
        yield client


def submit(api: httpx.Client, name: str, *tasks: dict[str, Any]) -> dict[str, Any]:
    r = api.post("/plans", json={"plan_name": name, "tasks": list(tasks)}, headers=AUTH)
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def wait_finished(api: httpx.Client, name: str, timeout_s: float = 90) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        plan = api.get(f"/plans/{name}").json()
        return plan if plan.get("finished_at") else None

    plan = wait_for(finished, timeout_s, f"task plan {name} finished", interval_s=0.5)
    assert plan is not None  # wait_for returns only a truthy answer
    return plan


def jobs_of(cp: ControlPlane, plan: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cp.get("/apis/batch/v1/jobs", labelSelector=f"edge-sched.io/plan={plan}")["items"]
    return items


def ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def delete_plan(api: httpx.Client, name: str) -> None:
    api.delete(f"/plans/{name}", headers=AUTH)


@pytest.fixture(scope="module")
def slow_plans(stack: EdgeStack) -> Iterator[dict[str, str]]:
    """The retry and timeout plans, submitted at once so their waits overlap."""
    with httpx.Client(base_url=stack.daemon.api_url + "/task-planning", timeout=30) as client:
        submit(client, "tp-retry", failing("bad"), task("after-bad", "bad"), task("then", "after-bad"),
               task("independent", complete_after="2s"))
        submit(client, "tp-timeout", task("stuck", complete_after="1h"), task("after-stuck", "stuck"))
        yield {"retry": "tp-retry", "timeout": "tp-timeout"}
        for name in ("tp-retry", "tp-timeout"):
            delete_plan(client, name)


# ---------------------------------------------------------------- order


def test_diamond_runs_in_dependency_order(api: httpx.Client, control_plane: ControlPlane) -> None:
    name = "tp-diamond"
    try:
        created = submit(api, name, task("d", "b", "c"), task("b", "a", complete_after="2s"), task("c", "a"), task("a"))
        assert created["serialized_tasks"] == ["a", "b", "c", "d"]
        assert created["stages"] == [["a"], ["b", "c"], ["d"]]
        # Placed jointly by the batch optimizer (S10) on this module's nodes...
        placements = created["placements"]
        assert sorted(placements) == ["a", "b", "c", "d"], created
        assert set(placements.values()) <= {n.name for n in NODES}
        plan = wait_finished(api, name)
        assert plan["phase"] == "succeeded", plan
        tasks = plan["tasks"]
        for tid, t in tasks.items():
            assert t["phase"] == "succeeded"
            assert len(t["attempts"]) == 1
            assert t["node"] == placements[tid], t  # ...and its pod ran there (from the pod watch)
            for dep in t["dependencies"]:
                # Our record: started only after every dependency was seen complete...
                assert t["started_at"] >= tasks[dep]["finished_at"], (tid, dep)
        # ...and the API server's own clock agrees (creation after the dependency's Job completed).
        jobs = {j["metadata"]["labels"]["edge-sched.io/task"]: j for j in jobs_of(control_plane, name)}
        assert sorted(jobs) == ["a", "b", "c", "d"]
        for tid, t in tasks.items():
            created_at = ts(jobs[tid]["metadata"]["creationTimestamp"])
            for dep in t["dependencies"]:
                assert created_at >= ts(jobs[dep]["status"]["completionTime"]), (tid, dep)
        # b took 2 s and c 1 s: d waited for the slower one.
        assert tasks["d"]["started_at"] >= tasks["b"]["finished_at"] > tasks["c"]["finished_at"]
        job = jobs["a"]
        pod_spec = job["spec"]["template"]["spec"]
        assert pod_spec["schedulerName"] == "edge-scheduler"
        assert job["spec"]["template"]["metadata"]["annotations"]["edge-sched.io/planned-node"] == placements["a"]
        assert job["metadata"]["namespace"] == NS
        assert job["metadata"]["labels"]["edge-sched.io/plan"] == name
        assert job["metadata"]["annotations"]["edge-sched.io/task-name"] == "A"
    finally:
        delete_plan(api, name)


# ---------------------------------------------------------------- retries and timeouts


def test_failing_task_is_retried_then_plan_fails_and_dependants_are_skipped(
    api: httpx.Client, control_plane: ControlPlane, slow_plans: dict[str, str], stack: EdgeStack
) -> None:
    name = slow_plans["retry"]
    plan = wait_finished(api, name, timeout_s=120)
    assert plan["phase"] == "failed"
    assert plan["failed_tasks"] == ["bad"]
    bad = plan["tasks"]["bad"]
    assert bad["phase"] == "failed"
    attempts = bad["attempts"]
    assert [a["number"] for a in attempts] == list(range(1, RETRY_COUNT + 2))  # exactly RETRY_COUNT retries
    assert all(a["result"] == "failed" for a in attempts), attempts
    assert "Job failed" in attempts[0]["error"]
    for before, after in zip(attempts, attempts[1:], strict=False):
        gap = after["started_at"] - before["finished_at"]
        assert RETRY_INTERVAL_S <= gap < RETRY_INTERVAL_S + SLACK_S, attempts
    assert bad["last_error"].startswith(f"{RETRY_COUNT + 1} attempt(s) failed")
    assert plan["tasks"]["after-bad"]["phase"] == "skipped"
    assert plan["tasks"]["after-bad"]["skipped_because"] == "bad"
    assert plan["tasks"]["then"]["phase"] == "skipped"
    assert plan["tasks"]["independent"]["phase"] == "succeeded"  # its branch went on
    # Each retry deleted the failed Job first; the last one is kept for `kubectl logs`.
    jobs = {j["metadata"]["name"] for j in jobs_of(control_plane, name)
            if j["metadata"]["labels"]["edge-sched.io/task"] == "bad"}
    wait_for(lambda: {j["metadata"]["name"] for j in jobs_of(control_plane, name)
                      if j["metadata"]["labels"]["edge-sched.io/task"] == "bad"} == {attempts[-1]["object_name"]},
             30, f"only the last attempt's Job left (had {jobs})")
    text = httpx.get(f"http://127.0.0.1:{stack.daemon.metrics_port}/metrics", timeout=5).text
    assert metric_value(text, 'edge_sched_task_attempts_total{kind="job",result="failed"}') >= RETRY_COUNT + 1
    assert metric_value(text, 'edge_sched_task_plans{phase="failed"}') >= 1
    # What `kubectl describe` shows, posted with the daemon's least-privilege token (S4).
    def events(namespace: str, name: str) -> list[dict[str, Any]]:
        found = control_plane.get(f"/api/v1/namespaces/{namespace}/events", fieldSelector=f"involvedObject.name={name}")
        return [e for e in found["items"] if e.get("source", {}).get("component") == "edge-sched"]

    last_job = attempts[-1]["object_name"]
    wait_for(lambda: events(NAMESPACE, f"edge-sched-plan-{name}") and events(NS, last_job), 30, "the plan's events")
    (plan_event,) = events(NAMESPACE, f"edge-sched-plan-{name}")
    assert (plan_event["type"], plan_event["reason"]) == ("Warning", "PlanFailed")
    assert plan_event["message"] == f"task plan {name} failed: task bad failed; skipped: after-bad, then"
    (job_event,) = events(NS, last_job)
    assert (job_event["type"], job_event["reason"]) == ("Warning", "TaskAttemptFailed")
    job = control_plane.get(f"/apis/batch/v1/namespaces/{NS}/jobs/{last_job}")
    assert job_event["involvedObject"]["uid"] == job["metadata"]["uid"]  # what kubectl describe matches on
    assert job_event["message"].endswith("; task is now failed")
    text = httpx.get(f"http://127.0.0.1:{stack.daemon.metrics_port}/metrics", timeout=5).text
    assert metric_value(text, 'edge_sched_events_total{result="failed"}') == 0


def test_never_completing_task_hits_the_deploy_timeout(
    api: httpx.Client, control_plane: ControlPlane, slow_plans: dict[str, str]
) -> None:
    name = slow_plans["timeout"]
    plan = wait_finished(api, name, timeout_s=120)
    assert plan["phase"] == "failed"
    stuck = plan["tasks"]["stuck"]
    assert [a["result"] for a in stuck["attempts"]] == ["timeout"] * (RETRY_COUNT + 1)
    for attempt in stuck["attempts"]:
        took = attempt["finished_at"] - attempt["started_at"]
        assert DEPLOY_TIMEOUT_S <= took < DEPLOY_TIMEOUT_S + SLACK_S, attempt
        assert "TASK_PLANNING_DEPLOY_TIMEOUT" in attempt["error"]
    assert plan["tasks"]["after-stuck"]["phase"] == "skipped"
    # A timed-out attempt is stopped: no Job of this plan is left running.
    wait_for(lambda: not jobs_of(control_plane, name), 30, "timed-out Jobs deleted")


# ---------------------------------------------------------------- restart safety


def test_daemon_killed_mid_plan_resumes_without_duplicate_jobs(
    api: httpx.Client, control_plane: ControlPlane, stack: EdgeStack
) -> None:
    name = "tp-restart"
    try:
        submit(api, name, task("first"), task("second", "first", complete_after="4s"), task("third", "second"))

        def second_job() -> dict[str, Any] | None:
            jobs = [j for j in jobs_of(control_plane, name)
                    if j["metadata"]["labels"]["edge-sched.io/task"] == "second"]
            return jobs[0] if jobs else None

        job = wait_for(second_job, 60, "the Job of the second task", interval_s=0.2)
        assert job is not None
        daemon = stack.daemon
        os.kill(daemon.proc.pid or 0, signal.SIGKILL)
        daemon.proc.stop()
        assert daemon.proc.returncode == -signal.SIGKILL
        # The deadline of a resumed attempt runs from its recorded start, across the restart;
        # on a loaded machine the restart plus kube-scheduler's backoff for the pod (its
        # extender was gone) can eat the short test timeout, so the restarted daemon gets a
        # longer one: what this test proves is that nothing is created twice.
        env = {**daemon.env, "TASK_PLANNING_DEPLOY_TIMEOUT": "60"}
        stack.daemon = EdgeSchedDaemon.start(env, daemon.proc.cwd or Path("."), daemon.port)
        plan = wait_finished(api, name)
        assert plan["phase"] == "succeeded", plan
        for tid in ("first", "second", "third"):
            assert len(plan["tasks"][tid]["attempts"]) == 1, plan["tasks"][tid]
        jobs = jobs_of(control_plane, name)
        names = sorted(j["metadata"]["name"] for j in jobs)
        assert names == sorted(plan["tasks"][t]["attempts"][0]["object_name"] for t in ("first", "second", "third"))
        # The Job of `second` was adopted, not created again: same object, one pod ran it.
        adopted = next(j for j in jobs if j["metadata"]["labels"]["edge-sched.io/task"] == "second")
        assert adopted["metadata"]["uid"] == job["metadata"]["uid"]
        pods = control_plane.get(f"/api/v1/namespaces/{NS}/pods",
                                 labelSelector=f"edge-sched.io/plan={name},edge-sched.io/task=second")["items"]
        assert len(pods) == 1
    finally:
        delete_plan(api, name)


# ---------------------------------------------------------------- deletion


def test_delete_removes_everything(api: httpx.Client, control_plane: ControlPlane) -> None:
    name = "tp-delete"
    submit(api, name, task("prep"), task("serve", "prep", kind="service"),
           task("local", namespace=NAMESPACE), task("later", "serve", complete_after="1h"))

    def serving() -> bool:
        return bool(api.get(f"/plans/{name}").json()["tasks"]["later"]["phase"] == "running")

    wait_for(serving, 60, "service available and the next task running", interval_s=0.3)
    # In KUBE_NAMESPACE the Job is owned by the plan's ConfigMap; elsewhere it cannot be.
    jobs = {j["metadata"]["labels"]["edge-sched.io/task"]: j for j in jobs_of(control_plane, name)}
    owners = jobs["local"]["metadata"].get("ownerReferences") or []
    assert [(o["kind"], o["name"]) for o in owners] == [("ConfigMap", f"edge-sched-plan-{name}")]
    assert "ownerReferences" not in jobs["prep"]["metadata"]
    deployments = control_plane.get("/apis/apps/v1/deployments", labelSelector=f"edge-sched.io/plan={name}")["items"]
    assert len(deployments) == 1

    r = api.delete(f"/plans/{name}", headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json() == {"plan_name": name, "deleted": True}
    assert api.get(f"/plans/{name}").status_code == 404

    def nothing_left() -> bool:
        selector = f"edge-sched.io/plan={name}"
        return not (
            jobs_of(control_plane, name)
            or control_plane.get("/apis/apps/v1/deployments", labelSelector=selector)["items"]
            or control_plane.get("/api/v1/pods", labelSelector=selector)["items"]
            or control_plane.get(f"/api/v1/namespaces/{NAMESPACE}/configmaps",
                                 labelSelector=f"edge-sched.io/task-plan={name}")["items"]
        )

    wait_for(nothing_left, 60, "every object of the plan deleted")
    assert api.delete(f"/plans/{name}", headers=AUTH).status_code == 404


# ---------------------------------------------------------------- refusals


def test_bad_plans_get_400_naming_every_problem(api: httpx.Client) -> None:
    cases = {
        "cycle": ([task("a", "b"), task("b", "a")], "dependency cycle a -> b -> a"),
        "unknown": ([task("a", "missing")], "tasks[0].dependencies[0]: unknown task 'missing'"),
        "duplicate": ([task("a"), task("a")], "tasks[1].task_id: 'a' is already the id of tasks[0]"),
        "quantity": ([task("a", cpu="2 cores")], "tasks[0].cpu: '2 cores'"),
        "too-many": ([task(f"t{i}") for i in range(101)], "tasks: 101 tasks, at most 100 are allowed"),
    }
    for case, (tasks, expected) in cases.items():
        r = api.post("/plans", json={"plan_name": f"tp-bad-{case}", "tasks": tasks}, headers=AUTH)
        assert r.status_code == 400, (case, r.text)
        body = r.json()
        assert any(p.startswith(expected) or expected in p for p in body["problems"]), (case, body)
        assert "is invalid" in body["error"]
    assert api.get("/plans/tp-bad-cycle").status_code == 404  # nothing was stored


def test_existing_name_gets_409(api: httpx.Client) -> None:
    name = "tp-clash"
    try:
        submit(api, name, task("a"))
        r = api.post("/plans", json={"plan_name": name, "tasks": [task("b")]}, headers=AUTH)
        assert r.status_code == 409
        assert r.json()["error"].startswith(f"a task plan named '{name}' already exists")
        assert f"DELETE /api/v1/task-planning/plans/{name}" in r.json()["error"]
    finally:
        delete_plan(api, name)


def test_mutating_calls_need_the_token(api: httpx.Client) -> None:
    assert api.post("/plans", json={"plan_name": "tp-x", "tasks": [task("a")]}).status_code == 401
    assert api.delete("/plans/tp-x").status_code == 401
    assert api.get("/plans").status_code == 200
