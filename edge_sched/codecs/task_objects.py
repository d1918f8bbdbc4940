"""Kubernetes JSON for task plans (spec S11): what the deployer writes and how it reads it.

- `state_configmap` / `read_state_configmap`: the plan's spec and progress in one ConfigMap
  in KUBE_NAMESPACE (`edge-sched-plan-<plan_name>`), the one place a restarted daemon
  resumes from.
- `task_object`: the Job (`kind: job`) or Deployment (`kind: service`) for one attempt of
  a task, with `schedulerName`, labels naming plan, task and attempt, the plan's placement
  as the pod annotation `edge-sched.io/planned-node`, and an owner reference to the state
  ConfigMap when both live in the same namespace (Kubernetes ignores, and garbage-collects
  the dependants of, owner references that cross namespaces).
- `job_outcome` / `deployment_outcome`: whether an attempt has succeeded or failed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

import attrs

from edge_sched.core.taskplan import GPU_RESOURCE, PlanInvalid, Task, TaskPlan, parse_plan
from edge_sched.core.taskrun import PlanState, StateError, state_from_json

MANAGED_BY: Final = "app.kubernetes.io/managed-by"
MANAGER: Final = "edge-sched"
PLAN_LABEL: Final = "edge-sched.io/plan"
TASK_LABEL: Final = "edge-sched.io/task"
ATTEMPT_LABEL: Final = "edge-sched.io/attempt"
STATE_LABEL: Final = "edge-sched.io/task-plan"  # on the state ConfigMap only
PLAN_UID_ANNOTATION: Final = "edge-sched.io/plan-uid"  # the state ConfigMap's uid
TASK_NAME_ANNOTATION: Final = "edge-sched.io/task-name"
PLANNED_NODE_ANNOTATION: Final = "edge-sched.io/planned-node"
CONFIGMAP_PREFIX: Final = "edge-sched-plan-"
PLAN_KEY: Final = "plan.json"
STATE_KEY: Final = "state.json"
# Selects every object the deployer creates (the Jobs, Deployments and their pods).
OWNED_SELECTOR: Final = PLAN_LABEL

JOBS_PATH: Final = "/apis/batch/v1"
DEPLOYMENTS_PATH: Final = "/apis/apps/v1"


def configmap_name(plan_name: str) -> str:
    return CONFIGMAP_PREFIX + plan_name


def collection_path(kind: str, namespace: str) -> str:
    """The API path of a task kind's objects in `namespace`."""
    if kind == "job":
        return f"{JOBS_PATH}/namespaces/{namespace}/jobs"
    return f"{DEPLOYMENTS_PATH}/namespaces/{namespace}/deployments"


def _dump(doc: Any) -> str:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True, allow_nan=False)


def state_configmap(
    plan: TaskPlan, state: PlanState, namespace: str, resource_version: str | None = None
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": configmap_name(plan.plan_name),
        "namespace": namespace,
        "labels": {MANAGED_BY: MANAGER, STATE_LABEL: plan.plan_name},
    }
    if resource_version:
        meta["resourceVersion"] = resource_version
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta,
        "data": {PLAN_KEY: _dump(plan.to_json()), STATE_KEY: _dump(state.to_json())},
    }


@attrs.frozen
class StoredPlan:
    plan: TaskPlan
    state: PlanState
    uid: str
    resource_version: str


def read_state_configmap(obj: Mapping[str, Any]) -> StoredPlan:
    """A state ConfigMap back as plan + state.

    Raises:
        StateError: the ConfigMap is not a readable plan state (hand-edited, or written by
            an incompatible version); the message says what is wrong.
    """
    meta = obj.get("metadata") or {}
    data = obj.get("data") or {}
    name = meta.get("name", "?")
    try:
        # The stored plan was validated on submission; validating it again costs little and
        # guards against hand edits. No task limit: TASK_PLANNING_MAX_TASKS may have shrunk.
        plan = parse_plan(json.loads(data.get(PLAN_KEY, "")), max_tasks=1 << 30)
        state = state_from_json(json.loads(data.get(STATE_KEY, "")), plan)
    except (ValueError, PlanInvalid) as exc:  # json.JSONDecodeError and StateError are ValueErrors
        raise StateError(f"ConfigMap {name}: {exc}") from None
    return StoredPlan(plan, state, str(meta.get("uid") or ""), str(meta.get("resourceVersion") or ""))


def owner_reference(configmap: Mapping[str, Any]) -> dict[str, Any]:
    meta = configmap.get("metadata") or {}
    return {"apiVersion": "v1", "kind": "ConfigMap", "name": meta.get("name"), "uid": meta.get("uid")}


def _container(task: Task) -> dict[str, Any]:
    requests: dict[str, Any] = {"cpu": task.cpu, "memory": task.memory}
    resources: dict[str, Any] = {"requests": requests}
    if task.gpu:
        # Extended resources cannot be overcommitted: the limit must equal the request.
        requests[GPU_RESOURCE] = str(task.gpu)
        resources["limits"] = {GPU_RESOURCE: str(task.gpu)}
    container: dict[str, Any] = {"name": task.task_id, "image": task.image, "resources": resources}
    if task.commands:
        container["command"] = list(task.commands)
    if task.args:
        container["args"] = list(task.args)
    if task.env_vars:
        container["env"] = [{"name": k, "value": v} for k, v in task.env_vars]
    return container


def task_object(
    plan: TaskPlan,
    task: Task,
    attempt: int,
    name: str,
    *,
    scheduler_name: str,
    plan_uid: str,
    planned_node: str | None,
    owner: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The Job or Deployment for one attempt of `task`.

    Args:
        name: `core.taskrun.object_name(...)` of this attempt.
        plan_uid: the state ConfigMap's uid; an object carrying another uid belongs to an
            earlier plan of the same name.
        planned_node: the plan's placement for the task (S10), if any.
        owner: the state ConfigMap's owner reference, only when it is in the task's namespace.
    """
    assert task.namespace, "namespaces are resolved on submission"
    labels = {
        MANAGED_BY: MANAGER,
        PLAN_LABEL: plan.plan_name,
        TASK_LABEL: task.task_id,
        ATTEMPT_LABEL: str(attempt),
    }
    annotations = {PLAN_UID_ANNOTATION: plan_uid, TASK_NAME_ANNOTATION: task.name}
    pod_annotations = {**dict(task.annotations), TASK_NAME_ANNOTATION: task.name, PLAN_UID_ANNOTATION: plan_uid}
    if planned_node:
        pod_annotations[PLANNED_NODE_ANNOTATION] = planned_node
    pod_spec: dict[str, Any] = {
        "schedulerName": scheduler_name,
        "containers": [_container(task)],
        "restartPolicy": "Never" if task.kind == "job" else "Always",
    }
    template = {"metadata": {"labels": dict(labels), "annotations": pod_annotations}, "spec": pod_spec}
    meta: dict[str, Any] = {"name": name, "namespace": task.namespace, "labels": labels, "annotations": annotations}
    if owner is not None:
        meta["ownerReferences"] = [dict(owner)]
    if task.kind == "job":
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": meta,
            # backoffLimit 0: retries are edge-sched's (TASK_PLANNING_RETRY_COUNT), each a new
            # Job, so the count and the interval are exactly what the operator configured.
            "spec": {"backoffLimit": 0, "completions": 1, "parallelism": 1, "template": template},
        }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {PLAN_LABEL: plan.plan_name, TASK_LABEL: task.task_id,
                                         ATTEMPT_LABEL: str(attempt)}},
            "template": template,
        },
    }


def planned_node(pod: Any) -> str | None:
    """The node a task plan placed this pod on (annotation `edge-sched.io/planned-node`), if any.

    Any pod may carry it; it is a preference the extender weighs like a batch plan, never
    a way past filter, so it grants nothing a node affinity preference would not.
    """
    meta = pod.get("metadata") if isinstance(pod, Mapping) else None
    annotations = meta.get("annotations") if isinstance(meta, Mapping) else None
    value = annotations.get(PLANNED_NODE_ANNOTATION) if isinstance(annotations, Mapping) else None
    return value if isinstance(value, str) and value else None


def placement_pod(plan: TaskPlan, task: Task, *, scheduler_name: str) -> dict[str, Any]:
    """A Pod object standing for the task's pod when the plan is placed (S10), before any
    Job exists: the same containers, requests and scheduler as the real pods will have.

    Its name, `<plan>.<task>`, is only the key of the placement (real pod names are
    chosen by the Job and Deployment controllers); the dot keeps it apart from any name
    those controllers generate.
    """
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{plan.plan_name}.{task.task_id}",
            "namespace": task.namespace or "",
            "labels": {MANAGED_BY: MANAGER, PLAN_LABEL: plan.plan_name, TASK_LABEL: task.task_id},
        },
        "spec": {"schedulerName": scheduler_name, "containers": [_container(task)]},
    }


@attrs.frozen
class Outcome:
    succeeded: bool
    reason: str


def _conditions(obj: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    status = obj.get("status") or {}
    out: dict[str, Mapping[str, Any]] = {}
    for cond in status.get("conditions") or []:
        if isinstance(cond, Mapping) and isinstance(cond.get("type"), str):
            out[cond["type"]] = cond
    return out


def _why(cond: Mapping[str, Any]) -> str:
    reason = str(cond.get("reason") or "")
    message = str(cond.get("message") or "")
    return ": ".join(p for p in (reason, message) if p) or "no reason given"


def job_outcome(obj: Mapping[str, Any]) -> Outcome | None:
    """Complete (or SuccessCriteriaMet) -> succeeded; Failed (or FailureTarget, which Jobs
    set first since Kubernetes 1.31) -> failed; else None (still running)."""
    conds = _conditions(obj)
    for kind in ("Complete", "SuccessCriteriaMet"):
        if conds.get(kind, {}).get("status") == "True":
            return Outcome(True, "Job completed")
    for kind in ("Failed", "FailureTarget"):
        cond = conds.get(kind)
        if cond is not None and cond.get("status") == "True":
            return Outcome(False, f"Job failed ({_why(cond)})")
    return None


def deployment_outcome(obj: Mapping[str, Any]) -> Outcome | None:
    """Available with every replica up -> succeeded; ProgressDeadlineExceeded -> failed.

    The `Available` condition alone is not enough: a new one-replica Deployment reports it
    at once (0 unavailable is within maxUnavailable), so the available replica count must
    reach the desired one for the observed generation.
    """
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    conds = _conditions(obj)
    progressing = conds.get("Progressing")
    if progressing is not None and progressing.get("status") == "False" \
            and progressing.get("reason") == "ProgressDeadlineExceeded":
        return Outcome(False, f"Deployment did not progress ({_why(progressing)})")
    wanted = int(spec.get("replicas", 1) or 0)
    observed = int(status.get("observedGeneration") or 0) >= int(meta.get("generation") or 0)
    available = int(status.get("availableReplicas") or 0)
    if observed and available >= wanted and conds.get("Available", {}).get("status") == "True":
        return Outcome(True, "Deployment available")
    return None
