"""Task-plan progress (spec S11): what runs next, retries, skips, phases, stored form."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from edge_sched.codecs.task_objects import (
    PLAN_UID_ANNOTATION,
    PLANNED_NODE_ANNOTATION,
    configmap_name,
    deployment_outcome,
    job_outcome,
    placement_pod,
    planned_node,
    read_state_configmap,
    state_configmap,
    task_object,
)
from edge_sched.core.taskplan import TaskPlan, example_plan, parse_plan
from edge_sched.core.taskrun import (
    PlanState,
    StateError,
    active_tasks,
    describe,
    finish_attempt,
    initial_state,
    note_node,
    object_name,
    ready_tasks,
    start_attempt,
    state_from_json,
    summary,
)

RETRIES: dict[str, Any] = {"retry_count": 2, "retry_interval_s": 5.0}


def diamond() -> TaskPlan:
    def t(tid: str, *deps: str) -> dict[str, object]:
        return {"task_id": tid, "name": tid, "image": "i", "cpu": "1", "memory": "1Gi", "dependencies": list(deps)}

    doc = {"plan_name": "dia", "tasks": [t("a"), t("b", "a"), t("c", "a"), t("d", "b", "c"), t("e")]}
    return parse_plan(doc, max_tasks=10).with_default_namespace("default")


def run(plan: TaskPlan, state: PlanState, tid: str, now: float, result: str, error: str | None = None) -> PlanState:
    state = start_attempt(plan, state, tid, now)
    return finish_attempt(plan, state, tid, now + 1, result, error, **RETRIES)  # type: ignore[arg-type]


def test_object_names_are_deterministic_dns_labels_one_per_attempt() -> None:
    assert object_name("dia", "a", 1) == object_name("dia", "a", 1)
    assert object_name("dia", "a", 1) != object_name("dia", "a", 2)
    # Concatenations that read alike stay apart.
    assert object_name("a", "b-c", 1) != object_name("a-b", "c", 1)
    long = object_name("p" * 63, "t" * 63, 12)
    assert len(long) <= 63
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", long)
    assert long.endswith("-12")


def test_diamond_runs_in_dependency_order() -> None:
    plan = diamond()
    state = initial_state(plan, 0.0, {})
    assert ready_tasks(plan, state) == ["a", "e"]
    state = start_attempt(plan, state, "a", 1.0)
    assert active_tasks(plan, state) == ["a"]
    assert ready_tasks(plan, state) == ["e"]
    state = finish_attempt(plan, state, "a", 2.0, "succeeded", None, **RETRIES)
    assert ready_tasks(plan, state) == ["b", "c", "e"]
    state = run(plan, state, "b", 3.0, "succeeded")
    assert ready_tasks(plan, state) == ["c", "e"]  # d still waits for c
    state = run(plan, state, "c", 4.0, "succeeded")
    state = run(plan, state, "e", 4.0, "succeeded")
    assert ready_tasks(plan, state) == ["d"]
    assert state.phase == "running"
    assert state.finished_at is None
    state = run(plan, state, "d", 6.0, "succeeded")
    assert state.phase == "succeeded"
    assert state.finished_at == 7.0
    assert state.tasks["d"].started_at == 6.0


def test_failure_is_retried_retry_count_times_interval_apart_then_fails_and_skips() -> None:
    plan = diamond()
    state = initial_state(plan, 0.0, {})
    for n, now in enumerate([10.0, 20.0], start=1):
        state = run(plan, state, "a", now, "failed", f"boom {n}")
        task = state.tasks["a"]
        assert task.phase == "retrying"
        assert task.retry_at == now + 1 + 5.0
        assert state.phase == "running"
    state = run(plan, state, "a", 30.0, "timeout", "too slow")
    task = state.tasks["a"]
    assert task.phase == "failed"
    assert [a.number for a in task.attempts] == [1, 2, 3]  # 1 + RETRY_COUNT
    assert [a.result for a in task.attempts] == ["failed", "failed", "timeout"]
    assert task.last_error == "3 attempt(s) failed; last: too slow"
    assert state.phase == "failed"
    assert state.failed_tasks == ("a",)
    for dependant in ("b", "c", "d"):
        assert state.tasks[dependant].phase == "skipped"
        assert state.tasks[dependant].skipped_because == "a"
    # The independent branch goes on; the plan is over only when it is done.
    assert state.tasks["e"].phase == "pending"
    assert ready_tasks(plan, state) == ["e"]
    assert state.finished_at is None
    state = run(plan, state, "e", 40.0, "succeeded")
    assert state.phase == "failed"
    assert state.finished_at == 41.0


def test_retry_count_zero_fails_at_once() -> None:
    plan = diamond()
    state = start_attempt(plan, initial_state(plan, 0.0, {}), "e", 0.0)
    state = finish_attempt(plan, state, "e", 1.0, "failed", "x", retry_count=0, retry_interval_s=5)
    assert state.tasks["e"].phase == "failed"
    assert state.tasks["e"].last_error == "x"


def test_a_retry_starts_the_next_attempt_with_a_new_name() -> None:
    plan = diamond()
    state = run(plan, initial_state(plan, 0.0, {}), "a", 0.0, "failed", "x")
    state = start_attempt(plan, state, "a", 10.0)
    current = state.tasks["a"].current
    assert current is not None
    assert current.number == 2
    assert current.object_name == object_name("dia", "a", 2)
    assert state.tasks["a"].retry_at is None


def test_transitions_refuse_what_cannot_happen() -> None:
    plan = diamond()
    state = initial_state(plan, 0.0, {})
    with pytest.raises(ValueError, match="no running attempt"):
        finish_attempt(plan, state, "a", 1.0, "succeeded", None, **RETRIES)
    state = start_attempt(plan, state, "a", 0.0)
    with pytest.raises(ValueError, match="only pending or retrying"):
        start_attempt(plan, state, "a", 0.0)


def test_node_is_kept_per_attempt() -> None:
    plan = diamond()
    state = note_node(start_attempt(plan, initial_state(plan, 0.0, {}), "a", 0.0), "a", "n1")
    assert state.tasks["a"].node == "n1"
    assert note_node(state, "a", "n1") is state


def test_state_round_trips_through_json() -> None:
    plan = diamond()
    state = initial_state(plan, 1.5, {"a": "n1"}, "greedy")
    state = note_node(start_attempt(plan, state, "a", 2.0), "a", "n1")
    state = finish_attempt(plan, state, "a", 3.0, "failed", "x", **RETRIES)
    again = state_from_json(json.loads(json.dumps(state.to_json())), plan)
    assert again == state


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda d: d.update(version=99), "state.version"),
        (lambda d: d.update(phase="dancing"), "state.phase"),
        (lambda d: d["tasks"].pop("a"), "state.tasks: must hold exactly"),
        (lambda d: d["tasks"]["a"].update(phase="?"), "state.tasks.a.phase"),
        (lambda d: d["tasks"]["a"].update(attempts=[{"number": 0}]), "state.tasks.a.attempts[0]"),
        (lambda d: d.update(placements={"a": 1}), "state.placements"),
        (lambda d: d.update(finished_at=10**400), "state.finished_at: expected a number of seconds, not 401 digits"),
    ],
)
def test_bad_stored_state_is_named(mutate, fragment: str) -> None:  # type: ignore[no-untyped-def]
    plan = diamond()
    doc = initial_state(plan, 0.0, {}).to_json()
    mutate(doc)
    with pytest.raises(StateError, match=re.escape(fragment)):
        state_from_json(doc, plan)


def test_describe_and_summary() -> None:
    plan = diamond()
    dry = describe(plan, None, placements={"a": "n1"}, placement_note="greedy")
    assert dry["phase"] == "dry-run"
    assert dry["deployed"] is False
    assert dry["serialized_tasks"] == ["a", "b", "c", "d", "e"]  # d < e once ready
    assert dry["stages"] == [["a", "e"], ["b", "c"], ["d"]]
    assert dry["tasks"]["a"]["planned_node"] == "n1"
    assert dry["tasks"]["d"]["stage"] == 2
    state = run(plan, initial_state(plan, 0.0, {}), "a", 1.0, "succeeded")
    live = describe(plan, state)
    assert live["phase"] == "running"
    assert live["tasks"]["a"]["phase"] == "succeeded"
    assert live["tasks"]["a"]["attempts"][0]["result"] == "succeeded"
    assert summary(plan, state)["task_phases"] == {"succeeded": 1, "pending": 4}


# ---------------------------------------------------------------- Kubernetes objects


def example() -> TaskPlan:
    return parse_plan(example_plan(), max_tasks=10).with_default_namespace("ml")


def test_job_for_an_attempt() -> None:
    plan = example()
    training = plan.by_id["training"]
    name = object_name(plan.plan_name, "training", 2)
    job = task_object(plan, training, 2, name, scheduler_name="edge-scheduler", plan_uid="u1",
                      planned_node="gpu-1", owner=None)
    assert job["kind"] == "Job"
    assert job["metadata"]["name"] == name
    assert job["metadata"]["namespace"] == "ml"
    assert job["metadata"]["labels"]["edge-sched.io/attempt"] == "2"
    assert job["spec"]["backoffLimit"] == 0
    pod = job["spec"]["template"]
    assert pod["spec"]["schedulerName"] == "edge-scheduler"
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["metadata"]["annotations"][PLANNED_NODE_ANNOTATION] == "gpu-1"
    assert pod["metadata"]["annotations"][PLAN_UID_ANNOTATION] == "u1"
    assert pod["metadata"]["labels"]["edge-sched.io/task"] == "training"
    container = pod["spec"]["containers"][0]
    assert container["resources"] == {
        "requests": {"cpu": "2", "memory": "4Gi", "nvidia.com/gpu": "1"},
        "limits": {"nvidia.com/gpu": "1"},
    }
    assert container["command"] == ["python", "-c"]
    assert container["env"] == [{"name": "EPOCHS", "value": "10"}]
    assert "ownerReferences" not in job["metadata"]


def test_service_is_a_deployment_with_an_owner_reference_when_namespaces_match() -> None:
    plan = example()
    owner = {"apiVersion": "v1", "kind": "ConfigMap", "name": configmap_name(plan.plan_name), "uid": "u1"}
    dep = task_object(plan, plan.by_id["deployment"], 1, "x", scheduler_name="s", plan_uid="u1",
                      planned_node=None, owner=owner)
    assert dep["kind"] == "Deployment"
    assert dep["spec"]["replicas"] == 1
    assert dep["metadata"]["ownerReferences"] == [owner]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert dep["spec"]["template"]["spec"]["restartPolicy"] == "Always"
    assert PLANNED_NODE_ANNOTATION not in dep["spec"]["template"]["metadata"]["annotations"]


def test_state_configmap_round_trip() -> None:
    plan = example()
    state = initial_state(plan, 1.0, {"training": "gpu-1"})
    cm = state_configmap(plan, state, "edge-scheduler", "42")
    assert cm["metadata"]["name"] == "edge-sched-plan-ml-pipeline"
    cm["metadata"]["uid"] = "u1"
    stored = read_state_configmap(cm)
    assert (stored.plan, stored.state, stored.uid, stored.resource_version) == (plan, state, "u1", "42")
    cm["data"]["state.json"] = "{"
    with pytest.raises(StateError, match="ConfigMap edge-sched-plan-ml-pipeline"):
        read_state_configmap(cm)


def cond(kind: str, status: str = "True", reason: str = "", message: str = "") -> dict[str, str]:
    return {"type": kind, "status": status, "reason": reason, "message": message}


@pytest.mark.parametrize(
    ("conditions", "expected"),
    [
        ([], None),
        ([cond("Complete")], (True, "Job completed")),
        ([cond("SuccessCriteriaMet")], (True, "Job completed")),
        ([cond("Complete", "False")], None),
        ([cond("FailureTarget", reason="BackoffLimitExceeded", message="Job has reached the specified backoff limit")],
         (False, "Job failed (BackoffLimitExceeded: Job has reached the specified backoff limit)")),
        ([cond("Failed", reason="DeadlineExceeded")], (False, "Job failed (DeadlineExceeded)")),
    ],
)
def test_job_outcome(conditions: list[dict[str, str]], expected: tuple[bool, str] | None) -> None:
    outcome = job_outcome({"status": {"conditions": conditions}})
    assert (None if outcome is None else (outcome.succeeded, outcome.reason)) == expected


def test_deployment_available_only_with_its_replica_up() -> None:
    base = {"metadata": {"generation": 1}, "spec": {"replicas": 1}}
    available = cond("Available", reason="MinimumReplicasAvailable")
    fresh = {**base, "status": {"observedGeneration": 1, "conditions": [available]}}
    assert deployment_outcome(fresh) is None  # Available at once, with nothing running yet
    ready = {**base, "status": {"observedGeneration": 1, "availableReplicas": 1, "conditions": [cond("Available")]}}
    outcome = deployment_outcome(ready)
    assert outcome is not None
    assert outcome.succeeded
    stuck = {**base, "status": {"conditions": [cond("Progressing", "False", "ProgressDeadlineExceeded", "too slow")]}}
    outcome = deployment_outcome(stuck)
    assert outcome is not None
    assert not outcome.succeeded
    assert "ProgressDeadlineExceeded" in outcome.reason


def test_placement_pod_has_the_tasks_requests() -> None:
    from edge_sched.codecs.kube_objects import pod_demand_from_object

    plan = example()
    pod = placement_pod(plan, plan.by_id["training"], scheduler_name="edge-scheduler")
    demand = pod_demand_from_object(pod)
    assert demand.key == "ml/ml-pipeline.training"
    assert dict(demand.requests) == {"cpu": 2000, "memory": 4 * 2**30, "nvidia.com/gpu": 1}


@pytest.mark.parametrize(
    ("pod", "expected"),
    [
        ({"metadata": {"annotations": {PLANNED_NODE_ANNOTATION: "n1"}}}, "n1"),
        ({"metadata": {"annotations": {PLANNED_NODE_ANNOTATION: ""}}}, None),
        ({"metadata": {"annotations": None}}, None),
        ({"metadata": None}, None),
        ({}, None),
        ("not a pod", None),
        ({"metadata": {"annotations": {PLANNED_NODE_ANNOTATION: 7}}}, None),
    ],
)
def test_planned_node_is_read_from_the_pod(pod: object, expected: str | None) -> None:
    assert planned_node(pod) == expected
