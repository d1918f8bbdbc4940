"""Task plans placed by the batch optimizer (spec S11 placements, S10).

The deployer hands a plan to `batch_placer(planner)`: each task becomes a stand-in Pod
(`codecs.task_objects.placement_pod`, with the task's containers and requests), the whole
set goes through the batch planner's own entry point (`BatchPlanner.plan`: candidates from
the cache with live usage and computing power, OPTIMIZER_ALGORITHM, GA_* settings, the
GA_TIME_BUDGET deadline, a worker thread), and the assignment comes back per task.

The plan's pods cannot be named in advance (Job and Deployment controllers name them), so
the placement travels on the pods themselves, as the annotation
`edge-sched.io/planned-node`, which prioritize and bind follow (runtime/scheduler.py). The
stand-in pods' own batch plans, stored under `<namespace>/<plan>.<task>`, match no real
pod and expire with PLAN_EXPIRATION_TIME.

All tasks are placed as if they ran together, although a DAG runs them in stages: this
over-counts what a node must hold at once, never under-counts it.
"""

from __future__ import annotations

from edge_sched.codecs.batch_plans import PlanRequest
from edge_sched.codecs.kube_objects import pod_demand_from_object
from edge_sched.codecs.task_objects import placement_pod
from edge_sched.core.taskplan import TaskPlan
from edge_sched.runtime.batch_planner import BatchPlanner
from edge_sched.runtime.task_plans import Placement, Placer

_MAX_REASONS = 5


def batch_placer(planner: BatchPlanner) -> Placer:
    """A `Placer` running the plan's pods through `planner` as one batch."""
    scheduler_name = planner.scheduler.settings.kube.scheduler_name

    async def place(plan: TaskPlan) -> Placement:
        by_id = plan.by_id
        objects = [placement_pod(plan, by_id[tid], scheduler_name=scheduler_name) for tid in plan.serialized_order]
        pods = tuple(pod_demand_from_object(obj) for obj in objects)
        result = await planner.plan(PlanRequest(pods=pods, pod_objects=tuple(objects), node_objects=None,
                                                algorithm=None))
        outcome = result.outcome
        task_of = {pod.key: tid for pod, tid in zip(pods, plan.serialized_order, strict=True)}
        nodes = {task_of[key]: node for key, node in outcome.assignments.items() if key in task_of}
        note = (
            f"{outcome.algorithm}: {len(nodes)} of {len(pods)} tasks placed among {result.candidate_nodes} nodes"
            f" (batch plan {result.plan_id}, fitness {outcome.fitness:.4f})"
        )
        unplaced = [f"{task_of.get(key, key)}: {why}" for key, why in sorted(outcome.unplaced.items())]
        if unplaced:
            more = f"; and {len(unplaced) - _MAX_REASONS} more" if len(unplaced) > _MAX_REASONS else ""
            note += "; not placed (kube-scheduler decides): " + "; ".join(unplaced[:_MAX_REASONS]) + more
        return Placement(nodes, note)

    return place
