"""The progress of a deployed task plan (spec S11), as pure state and transitions.

The deployer (`runtime/task_plans.py`) owns the I/O; every decision about what runs next,
what a failure means and when the plan is over is made here, on frozen records, so it is
tested without a cluster. The same records are what the plan's ConfigMap stores
(`to_json`/`from_json`), which is what makes a restarted daemon resume where it stopped.

Rules:
- A task starts when all its dependencies have `succeeded`.
- Attempt N of a task that fails or times out is followed by attempt N+1 after
  TASK_PLANNING_RETRY_INTERVAL, as long as N <= TASK_PLANNING_RETRY_COUNT.
- After its last attempt fails the task is `failed`, the plan is `failed` at once (its
  outcome is known), and every task that waits for it, directly or not, is `skipped`.
  Tasks on independent branches keep running to their own end; `finished_at` is set when
  nothing is left to run.
- Object names are deterministic (`object_name`), one per attempt, so a restarted daemon
  finds what it created instead of creating it again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, Final, Literal

import attrs

from edge_sched.core.taskplan import TaskPlan

PlanPhase = Literal["running", "succeeded", "failed", "deleting"]
PLAN_PHASES: Final[tuple[PlanPhase, ...]] = ("running", "succeeded", "failed", "deleting")
TaskPhase = Literal["pending", "running", "retrying", "succeeded", "failed", "skipped"]
TASK_PHASES: Final[tuple[TaskPhase, ...]] = ("pending", "running", "retrying", "succeeded", "failed", "skipped")
AttemptResult = Literal["succeeded", "failed", "timeout"]
ACTIVE: Final = frozenset({"running", "retrying"})
DONE: Final = frozenset({"succeeded", "failed", "skipped"})

_NAME_MAX: Final = 63  # Job names become pod label values, which are at most 63 characters
STATE_VERSION: Final = 1


def object_name(plan_name: str, task_id: str, attempt: int) -> str:
    """The Job or Deployment name of one attempt: `<plan>-<task>-<hash>-<attempt>`.

    The short hash of (plan, task) keeps two plans apart whose names merely concatenate
    alike (`a` + `b-c` and `a-b` + `c`); long names are cut so the result stays a DNS
    label of at most 63 characters.
    """
    digest = hashlib.sha256(f"{plan_name}/{task_id}".encode()).hexdigest()[:6]
    tail = f"-{digest}-{attempt}"
    head = f"{plan_name}-{task_id}"[: _NAME_MAX - len(tail)].rstrip("-")
    return head + tail


@attrs.frozen
class Attempt:
    """One try of a task: the object created for it and how it ended."""

    number: int  # 1-based
    object_name: str
    started_at: float  # unix seconds: the attempt was recorded (its object created right after)
    finished_at: float | None = None
    result: AttemptResult | None = None  # None while it runs
    error: str | None = None
    node: str | None = None  # where its pod was bound, once known

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen
class TaskState:
    phase: TaskPhase = "pending"
    attempts: tuple[Attempt, ...] = ()
    retry_at: float | None = None  # when `retrying`: the next attempt's start
    finished_at: float | None = None
    last_error: str | None = None
    skipped_because: str | None = None  # the failed task this one waited for

    @property
    def started_at(self) -> float | None:
        return self.attempts[0].started_at if self.attempts else None

    @property
    def current(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    @property
    def node(self) -> str | None:
        for attempt in reversed(self.attempts):
            if attempt.node:
                return attempt.node
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "attempts": [a.to_json() for a in self.attempts],
            "retry_at": self.retry_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "last_error": self.last_error,
            "skipped_because": self.skipped_because,
            "node": self.node,
        }


@attrs.frozen
class PlanState:
    phase: PlanPhase
    created_at: float
    tasks: Mapping[str, TaskState]
    placements: Mapping[str, str] = attrs.field(factory=dict)  # task_id -> node (S10)
    placement_note: str = ""
    finished_at: float | None = None  # nothing left to run
    failed_tasks: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "phase": self.phase,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            "placements": dict(self.placements),
            "placement_note": self.placement_note,
            "failed_tasks": list(self.failed_tasks),
            "tasks": {tid: t.to_json() for tid, t in self.tasks.items()},
        }


def initial_state(
    plan: TaskPlan, now: float, placements: Mapping[str, str], placement_note: str = ""
) -> PlanState:
    return PlanState(
        phase="running",
        created_at=now,
        tasks={tid: TaskState() for tid in plan.serialized_order},
        placements=dict(placements),
        placement_note=placement_note,
    )


# ---------------------------------------------------------------- decisions


def ready_tasks(plan: TaskPlan, state: PlanState) -> list[str]:
    """Pending tasks whose dependencies have all succeeded, in serialized order."""
    by_id = plan.by_id
    return [
        tid
        for tid in plan.serialized_order
        if state.tasks[tid].phase == "pending"
        and all(state.tasks[dep].phase == "succeeded" for dep in by_id[tid].dependencies)
    ]


def active_tasks(plan: TaskPlan, state: PlanState) -> list[str]:
    """Tasks with an attempt running or a retry waiting, in serialized order."""
    return [tid for tid in plan.serialized_order if state.tasks[tid].phase in ACTIVE]


def start_attempt(plan: TaskPlan, state: PlanState, task_id: str, now: float) -> PlanState:
    """Record the next attempt of `task_id` (the object is created after this is stored)."""
    task = state.tasks[task_id]
    if task.phase not in ("pending", "retrying"):
        raise ValueError(f"task {task_id!r} is {task.phase}; only pending or retrying tasks start")
    number = len(task.attempts) + 1
    attempt = Attempt(number, object_name(plan.plan_name, task_id, number), now)
    updated = attrs.evolve(task, phase="running", attempts=(*task.attempts, attempt), retry_at=None)
    return _with_task(state, task_id, updated)


def note_node(state: PlanState, task_id: str, node: str) -> PlanState:
    """Remember where the current attempt's pod was bound."""
    task = state.tasks[task_id]
    current = task.current
    if current is None or current.node == node:
        return state
    attempts = (*task.attempts[:-1], attrs.evolve(current, node=node))
    return _with_task(state, task_id, attrs.evolve(task, attempts=attempts))


def finish_attempt(
    plan: TaskPlan,
    state: PlanState,
    task_id: str,
    now: float,
    result: AttemptResult,
    error: str | None,
    *,
    retry_count: int,
    retry_interval_s: float,
) -> PlanState:
    """Record how the current attempt ended and what follows: success, a retry, or failure
    with the task's dependants skipped (the plan's phase and end time follow from it)."""
    task = state.tasks[task_id]
    current = task.current
    if task.phase != "running" or current is None:
        raise ValueError(f"task {task_id!r} has no running attempt")
    done = attrs.evolve(current, finished_at=now, result=result, error=error)
    attempts = (*task.attempts[:-1], done)
    if result == "succeeded":
        updated = attrs.evolve(task, phase="succeeded", attempts=attempts, finished_at=now)
        return settle(plan, _with_task(state, task_id, updated), now)
    if current.number <= retry_count:
        updated = attrs.evolve(
            task, phase="retrying", attempts=attempts, retry_at=now + retry_interval_s, last_error=error
        )
        return _with_task(state, task_id, updated)
    message = f"{len(attempts)} attempt(s) failed; last: {error}" if len(attempts) > 1 else error
    updated = attrs.evolve(task, phase="failed", attempts=attempts, finished_at=now, last_error=message)
    state = _with_task(state, task_id, updated)
    state = skip_dependants(plan, state, task_id, now)
    state = attrs.evolve(state, failed_tasks=(*state.failed_tasks, task_id))
    return settle(plan, state, now)


def skip_dependants(plan: TaskPlan, state: PlanState, failed: str, now: float) -> PlanState:
    """Mark every task that waits for `failed`, directly or through others, `skipped`."""
    dependants = plan.dependants()
    tasks = dict(state.tasks)
    todo = list(dependants[failed])
    while todo:
        tid = todo.pop()
        if tasks[tid].phase != "pending":
            continue  # cannot be running: it waited for a task that never succeeded
        tasks[tid] = attrs.evolve(tasks[tid], phase="skipped", finished_at=now, skipped_because=failed)
        todo.extend(dependants[tid])
    return attrs.evolve(state, tasks=tasks)


def settle(plan: TaskPlan, state: PlanState, now: float) -> PlanState:
    """The plan's phase and end time from its tasks' phases."""
    if state.phase == "deleting":
        return state
    phases = [state.tasks[tid].phase for tid in plan.serialized_order]
    phase: PlanPhase = "failed" if "failed" in phases else ("succeeded" if all(
        p == "succeeded" for p in phases) else "running")
    finished = state.finished_at
    if finished is None and not any(p in ACTIVE for p in phases) and not ready_tasks(plan, state):
        finished = now
    return attrs.evolve(state, phase=phase, finished_at=finished)


def _with_task(state: PlanState, task_id: str, task: TaskState) -> PlanState:
    return attrs.evolve(state, tasks={**state.tasks, task_id: task})


# ---------------------------------------------------------------- stored form


class StateError(ValueError):
    """A stored state cannot be read back."""


def _opt_float(value: object, path: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise StateError(f"{path}: expected a number")
    try:
        return float(value)
    except OverflowError:  # a hand-edited ConfigMap may hold a 400-digit integer
        raise StateError(f"{path}: expected a number of seconds, not {len(str(value))} digits") from None


def _opt_str(value: object, path: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise StateError(f"{path}: expected a string")
    return value


def _attempt_from_json(doc: Any, path: str) -> Attempt:
    if not isinstance(doc, Mapping):
        raise StateError(f"{path}: expected an object")
    number = doc.get("number")
    name = doc.get("object_name")
    started = _opt_float(doc.get("started_at"), f"{path}.started_at")
    if not isinstance(number, int) or number < 1 or not isinstance(name, str) or started is None:
        raise StateError(f"{path}: number, object_name and started_at are required")
    result = doc.get("result")
    if result not in (None, "succeeded", "failed", "timeout"):
        raise StateError(f"{path}.result: unknown {result!r}")
    return Attempt(
        number=number,
        object_name=name,
        started_at=started,
        finished_at=_opt_float(doc.get("finished_at"), f"{path}.finished_at"),
        result=result,
        error=_opt_str(doc.get("error"), f"{path}.error"),
        node=_opt_str(doc.get("node"), f"{path}.node"),
    )


def _task_from_json(doc: Any, path: str) -> TaskState:
    if not isinstance(doc, Mapping):
        raise StateError(f"{path}: expected an object")
    phase = doc.get("phase")
    if phase not in TASK_PHASES:
        raise StateError(f"{path}.phase: unknown {phase!r}")
    attempts = doc.get("attempts") or []
    if not isinstance(attempts, list):
        raise StateError(f"{path}.attempts: expected a list")
    return TaskState(
        phase=phase,
        attempts=tuple(_attempt_from_json(a, f"{path}.attempts[{i}]") for i, a in enumerate(attempts)),
        retry_at=_opt_float(doc.get("retry_at"), f"{path}.retry_at"),
        finished_at=_opt_float(doc.get("finished_at"), f"{path}.finished_at"),
        last_error=_opt_str(doc.get("last_error"), f"{path}.last_error"),
        skipped_because=_opt_str(doc.get("skipped_because"), f"{path}.skipped_because"),
    )


def state_from_json(doc: Any, plan: TaskPlan) -> PlanState:
    """Read a stored state back; it must cover exactly the plan's tasks.

    Raises:
        StateError: naming the first field that is wrong.
    """
    if not isinstance(doc, Mapping):
        raise StateError("state: expected an object")
    if doc.get("version") != STATE_VERSION:
        raise StateError(f"state.version: {doc.get('version')!r}, this daemon reads {STATE_VERSION}")
    phase = doc.get("phase")
    if phase not in PLAN_PHASES:
        raise StateError(f"state.phase: unknown {phase!r}")
    created = _opt_float(doc.get("created_at"), "state.created_at")
    if created is None:
        raise StateError("state.created_at: required")
    raw_tasks = doc.get("tasks")
    if not isinstance(raw_tasks, Mapping) or set(raw_tasks) != set(plan.serialized_order):
        raise StateError("state.tasks: must hold exactly the plan's tasks")
    placements = doc.get("placements") or {}
    if not isinstance(placements, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in placements.items()
    ):
        raise StateError("state.placements: expected task_id -> node")
    failed = doc.get("failed_tasks") or []
    if not isinstance(failed, list) or not all(isinstance(f, str) for f in failed):
        raise StateError("state.failed_tasks: expected a list of task ids")
    return PlanState(
        phase=phase,
        created_at=created,
        finished_at=_opt_float(doc.get("finished_at"), "state.finished_at"),
        placements=dict(placements),
        placement_note=_opt_str(doc.get("placement_note"), "state.placement_note") or "",
        failed_tasks=tuple(failed),
        tasks={tid: _task_from_json(raw_tasks[tid], f"state.tasks.{tid}") for tid in plan.serialized_order},
    )


# ---------------------------------------------------------------- what the API shows


def describe(
    plan: TaskPlan,
    state: PlanState | None,
    *,
    placements: Mapping[str, str] | None = None,
    placement_note: str = "",
) -> dict[str, Any]:
    """The S11 response: order, stages, placements, phase and per-task state.

    Args:
        state: None for a dry run (phase `dry-run`, nothing deployed); then `placements`
            and `placement_note` are the dry run's.
    """
    stage_of = {tid: i for i, stage in enumerate(plan.stages) for tid in stage}
    if state is not None:
        placements, placement_note = state.placements, state.placement_note
    placements = dict(placements or {})
    tasks: dict[str, Any] = {}
    for tid in plan.serialized_order:
        task = plan.by_id[tid]
        entry: dict[str, Any] = {
            "name": task.name,
            "kind": task.kind,
            "namespace": task.namespace,
            "image": task.image,
            "dependencies": list(task.dependencies),
            "stage": stage_of[tid],
            "planned_node": placements.get(tid),
        }
        entry.update(state.tasks[tid].to_json() if state is not None else {"phase": "pending", "attempts": []})
        tasks[tid] = entry
    return {
        "plan_name": plan.plan_name,
        "description": plan.description,
        "phase": state.phase if state is not None else "dry-run",
        "deployed": state is not None,
        "serialized_tasks": list(plan.serialized_order),
        "stages": [list(s) for s in plan.stages],
        "placements": placements,
        "placement_note": placement_note,
        "created_at": state.created_at if state is not None else None,
        "finished_at": state.finished_at if state is not None else None,
        "failed_tasks": list(state.failed_tasks) if state is not None else [],
        "tasks": tasks,
    }


def summary(plan: TaskPlan, state: PlanState) -> dict[str, Any]:
    """One line of `GET /task-planning/plans`."""
    counts: dict[str, int] = {}
    for task in state.tasks.values():
        counts[task.phase] = counts.get(task.phase, 0) + 1
    return {
        "plan_name": plan.plan_name,
        "phase": state.phase,
        "tasks": len(plan.tasks),
        "task_phases": counts,
        "created_at": state.created_at,
        "finished_at": state.finished_at,
        "failed_tasks": list(state.failed_tasks),
    }
