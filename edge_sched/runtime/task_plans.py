"""The task-plan deployer (spec S11): runs plans on Kubernetes and survives restarts.

What it owns:
- `TaskPlanService.serve`, the service in the daemon's nursery. It lists the plans stored
  in KUBE_NAMESPACE (one ConfigMap each, `codecs/task_objects.py`), resumes every plan
  that was running, and keeps three watch caches (reflectors) of what plans created:
  Jobs, Deployments and their pods (label `edge-sched.io/plan`). Task coroutines wait on
  those caches, so a hundred running tasks cost three watches, not a hundred.
- One driver per plan: starts each task once all its dependencies succeeded
  (`core/taskrun.py` decides), runs every attempt under a cancel scope of
  TASK_PLANNING_DEPLOY_TIMEOUT (measured from the attempt's recorded start, so a restart
  does not grant a fresh timeout), retries, and stores every transition in the ConfigMap
  *before* acting on it.

Restart safety: an attempt is recorded (with its deterministic object name) before its
Job/Deployment is created, and creation is create-or-get, so a daemon killed at any point
finds on restart either nothing (and creates it) or the object (and adopts it); a retry is
recorded as `retrying` before the failed object is deleted, and that delete is repeated on
resume. An object from an earlier plan of the same name (still being deleted) is told
apart by the `edge-sched.io/plan-uid` annotation and never adopted.

Deletion (`delete`): the plan is marked `deleting` (so a restart finishes the job instead
of resuming the plan), its driver is cancelled, then every Job and Deployment labelled with
the plan is deleted cluster-wide with background propagation (their pods go with them),
and the ConfigMap last. Owner references to the ConfigMap are set too where the namespace
allows it, so deleting the ConfigMap by hand also cleans up tasks in KUBE_NAMESPACE.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any

import attrs
import trio
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from edge_sched.adapters.kube_client import KubeClient
from edge_sched.adapters.kube_watch import ReflectorStatus, WatchTarget, list_all, run_reflector
from edge_sched.codecs.events import ObjectRef
from edge_sched.codecs.task_objects import (
    ATTEMPT_LABEL,
    OWNED_SELECTOR,
    PLAN_LABEL,
    PLAN_UID_ANNOTATION,
    STATE_LABEL,
    TASK_LABEL,
    Outcome,
    collection_path,
    configmap_name,
    deployment_outcome,
    job_outcome,
    owner_reference,
    read_state_configmap,
    state_configmap,
    task_object,
)
from edge_sched.core.backoff import Backoff
from edge_sched.core.taskplan import Task, TaskPlan
from edge_sched.core.taskrun import (
    PLAN_PHASES,
    PlanState,
    StateError,
    active_tasks,
    finish_attempt,
    initial_state,
    note_node,
    ready_tasks,
    start_attempt,
)
from edge_sched.errors import EdgeSchedError, KubeConflict, KubeError, KubeNotFound, KubeRetryable
from edge_sched.runtime.events import EventRecorder
from edge_sched.settings import Settings

log = logging.getLogger(__name__)

# How long one placement computation may take before the plan is deployed without one.
PLACEMENT_BUDGET_S = 10.0
# How long DELETE waits for the cleanup before answering 202 (it goes on in the background).
DELETE_WAIT_S = 20.0
RETRY_BACKOFF_MAX_S = 5.0


class TaskPlanError(EdgeSchedError):
    """A task-plan request that cannot be served; `status` is the HTTP status to answer."""

    status = 400


class PlanExists(TaskPlanError):
    status = 409


class PlanNotFound(TaskPlanError):
    status = 404


class DeployUnavailable(TaskPlanError):
    status = 503


class PlanGone(EdgeSchedError):
    """The plan's ConfigMap was deleted behind our back."""


class ForeignObject(KubeRetryable):
    """An object with our deterministic name belongs to an earlier plan of the same name
    (it is still being deleted): wait for it to go, never adopt it."""


@attrs.frozen
class Placement:
    """Where the optimizer (S10) would put each task's pod, and anything worth telling."""

    nodes: Mapping[str, str]  # task_id -> node
    note: str = ""


# The batch optimizer's entry point, as the deployer sees it: plan in, placement out.
Placer = Callable[[TaskPlan], Awaitable[Placement]]


# ---------------------------------------------------------------- watch caches


@attrs.define(eq=False)
class Signal:
    """Wakes every waiter on each change (a fresh Event per round).

    A waiter that awaits anything between looking at the state and waiting takes
    `round()` *before* looking, so a change made meanwhile is not missed.
    """

    _event: trio.Event = attrs.field(factory=trio.Event)

    def touch(self) -> None:
        self._event.set()
        self._event = trio.Event()

    def round(self) -> trio.Event:
        """The Event the next change sets."""
        return self._event

    async def wait(self) -> None:
        await self._event.wait()


def _key(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def _plan_uid(obj: Mapping[str, Any]) -> str:
    """The uid of the plan (state ConfigMap) an object was created for."""
    return str(((obj.get("metadata") or {}).get("annotations") or {}).get(PLAN_UID_ANNOTATION) or "")


@attrs.define(eq=False)
class OwnedObjects:
    """A reflector sink of Jobs or Deployments created by plans, by (namespace, name).

    `gone` remembers, for each object seen deleted, the plan uid it was created for, so a
    waiter can tell "deleted" from "not seen yet" (our own create can arrive before the
    watch shows it).
    """

    signal: Signal
    objects: dict[tuple[str, str], dict[str, Any]] = attrs.field(factory=dict)
    gone: dict[tuple[str, str], str] = attrs.field(factory=dict)

    def replace(self, objects: list[dict[str, Any]]) -> None:
        fresh = {_key(o): o for o in objects}
        for key, old in self.objects.items():
            if key not in fresh:
                self.gone[key] = _plan_uid(old)
        self.objects = fresh
        self.signal.touch()

    def upsert(self, obj: dict[str, Any]) -> None:
        self.objects[_key(obj)] = obj
        self.signal.touch()

    def delete(self, obj: dict[str, Any]) -> None:
        key = _key(obj)
        self.objects.pop(key, None)
        self.gone[key] = _plan_uid(obj)
        self.signal.touch()


@attrs.define(eq=False)
class PodNodes:
    """A reflector sink of plan pods: which node each attempt's pod was bound to."""

    signal: Signal
    nodes: dict[tuple[str, str, str, str], str] = attrs.field(factory=dict)

    def _note(self, obj: Mapping[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        labels = meta.get("labels") or {}
        node = (obj.get("spec") or {}).get("nodeName")
        if node and PLAN_LABEL in labels:
            key = (str(meta.get("namespace")), _plan_uid(obj), labels.get(TASK_LABEL, ""),
                   labels.get(ATTEMPT_LABEL, ""))
            if self.nodes.get(key) != node:
                self.nodes[key] = str(node)
                self.signal.touch()

    def replace(self, objects: list[dict[str, Any]]) -> None:
        for obj in objects:
            self._note(obj)
        # A (re)list is news even when it adds nothing: the deployer waits for every cache to
        # have listed before it loads stored plans, and an empty list must wake it too.
        self.signal.touch()

    def upsert(self, obj: dict[str, Any]) -> None:
        self._note(obj)

    def delete(self, obj: dict[str, Any]) -> None:
        # Where a finished attempt ran stays worth knowing after its pod is gone.
        self._note(obj)

    def node(self, namespace: str, plan_uid: str, task: str, attempt: int) -> str | None:
        return self.nodes.get((namespace, plan_uid, task, str(attempt)))


# ---------------------------------------------------------------- one plan


@attrs.define(eq=False)
class PlanRun:
    """A stored plan and its driver's handles. `state` is replaced, never mutated."""

    plan: TaskPlan
    state: PlanState
    uid: str  # the state ConfigMap's
    resource_version: str
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    done: trio.Event = attrs.field(factory=trio.Event)  # the driver has stopped
    deleted: trio.Event = attrs.field(factory=trio.Event)
    deleting: bool = False
    problem: str = ""  # the last error that held the driver up (API down, ...), "" when fine
    lock: trio.Lock = attrs.field(factory=trio.Lock)  # one ConfigMap write at a time
    changed: Signal = attrs.field(factory=Signal)

    @property
    def name(self) -> str:
        return self.plan.plan_name

    def update(self, state: PlanState) -> None:
        self.state = state
        self.changed.touch()


# ---------------------------------------------------------------- metrics


class _PlanCollector(Collector):
    def __init__(self, service: TaskPlanService) -> None:
        self._service = service

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "edge_sched_task_plans", "Task plans known to the deployer, by phase.", labels=["phase"]
        )
        counts = dict.fromkeys(PLAN_PHASES, 0)
        for run in list(self._service.runs.values()):
            counts[run.state.phase] += 1
        for phase, n in counts.items():
            family.add_metric([phase], n)
        yield family


# ---------------------------------------------------------------- the service


@attrs.define(eq=False)
class TaskPlanService:
    """Task plans: dry runs anywhere, deployments when a cluster is configured."""

    settings: Settings
    kube: KubeClient | None
    placer: Placer | None = None
    clock: Callable[[], float] = time.time  # wall clock for stored timestamps
    runs: dict[str, PlanRun] = attrs.field(factory=dict)
    unreadable: dict[str, str] = attrs.field(factory=dict)  # plan name -> why its ConfigMap is unusable
    signal: Signal = attrs.field(factory=Signal)
    jobs: OwnedObjects = attrs.field(init=False)
    deployments: OwnedObjects = attrs.field(init=False)
    pods: PodNodes = attrs.field(init=False)
    reflectors: dict[str, ReflectorStatus] = attrs.field(factory=dict)
    loaded: bool = False
    load_error: str = ""  # why stored plans could not be listed, until they are
    attempts_total: Counter | None = None
    events: EventRecorder | None = None  # Kubernetes Events on failed attempts and finished plans
    _nursery: trio.Nursery | None = None
    _submitting: set[str] = attrs.field(factory=set)

    def __attrs_post_init__(self) -> None:
        self.jobs = OwnedObjects(self.signal)
        self.deployments = OwnedObjects(self.signal)
        self.pods = PodNodes(self.signal)

    @property
    def namespace(self) -> str:
        return self.settings.kube.namespace

    @property
    def _cm_collection(self) -> str:
        return f"/api/v1/namespaces/{self.namespace}/configmaps"

    def register_metrics(self, registry: CollectorRegistry) -> None:
        registry.register(_PlanCollector(self))
        self.attempts_total = Counter(
            "edge_sched_task_attempts",
            "Task-plan attempts that ended, by task kind and result (succeeded, failed, timeout).",
            ["kind", "result"],
            registry=registry,
        )

    def health(self) -> str:
        if self.kube is None:
            return "standalone (dry runs only)"
        if not self.loaded:
            return f"starting (listing stored plans failed: {self.load_error})" if self.load_error else "starting"
        running = sum(1 for r in self.runs.values() if r.state.finished_at is None)
        stuck = [f"{r.name}: {r.problem}" for r in self.runs.values() if r.problem]
        text = f"ready ({len(self.runs)} plans, {running} active)"
        return text + (" degraded: " + "; ".join(stuck) if stuck else "")

    # -- the service ------------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Load stored plans, resume them, keep the watch caches; forever."""
        assert self.kube is not None, "no deployer in standalone mode"
        kube = self.kube
        try:
            async with trio.open_nursery() as nursery:
                backoff_max = self.settings.kube.watch_backoff_max_s
                for kind, path, sink in (
                    ("task-jobs", "/apis/batch/v1/jobs", self.jobs),
                    ("task-deployments", "/apis/apps/v1/deployments", self.deployments),
                    ("task-pods", "/api/v1/pods", self.pods),
                ):
                    status = self.reflectors[kind] = ReflectorStatus()
                    target = WatchTarget(kind, path, {"labelSelector": OWNED_SELECTOR})
                    nursery.start_soon(run_reflector, kube, target, sink, status, Backoff(max_s=backoff_max))
                # Resumed attempts are judged on what the caches show: let them fill first.
                while not all(s.synced for s in self.reflectors.values()):
                    await self.signal.wait()
                try:
                    stored, _ = await list_all(
                        kube, WatchTarget("task-plans", self._cm_collection, {"labelSelector": STATE_LABEL})
                    )
                except KubeError as exc:
                    # e.g. the Role is bound in another namespace than KUBE_NAMESPACE (403):
                    # say so in health; `supervise` restarts this service with backoff.
                    self.load_error = str(exc)
                    raise
                self.load_error = ""
                self.runs = {}
                self.unreadable = {}
                for obj in stored:
                    self._adopt(nursery, obj)
                self._nursery = nursery
                self.loaded = True
                log.info("task plans: %d stored, %d to resume", len(self.runs),
                         sum(1 for r in self.runs.values() if r.state.finished_at is None))
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            self.loaded = False

    def _adopt(self, nursery: trio.Nursery, obj: dict[str, Any]) -> None:
        name = str(((obj.get("metadata") or {}).get("labels") or {}).get(STATE_LABEL) or "")
        try:
            stored = read_state_configmap(obj)
        except StateError as exc:
            log.error("task plan %s cannot be resumed: %s (DELETE it to clean up)", name, exc)
            self.unreadable[name] = str(exc)
            return
        run = PlanRun(stored.plan, stored.state, stored.uid, stored.resource_version)
        self.runs[run.name] = run
        if run.state.phase == "deleting":
            run.done.set()
            nursery.start_soon(self._delete, run)
        else:
            nursery.start_soon(self._drive, run)

    def cache_of(self, task: Task) -> OwnedObjects:
        return self.jobs if task.kind == "job" else self.deployments

    # -- requests ---------------------------------------------------------------

    async def place(self, plan: TaskPlan) -> Placement:
        """The optimizer's placement for the plan's pods, or none (with a note saying why)."""
        if self.placer is None:
            return Placement({}, "no placement: the batch optimizer is not available in this build")
        with trio.move_on_after(PLACEMENT_BUDGET_S) as scope:
            try:
                return await self.placer(plan)
            except Exception as exc:  # a placement problem must not block the deploy
                log.exception("placing task plan %s failed", plan.plan_name)
                return Placement({}, f"no placement: the optimizer failed ({exc.__class__.__name__}: {exc})")
        assert scope.cancelled_caught
        return Placement({}, f"no placement: the optimizer took longer than {PLACEMENT_BUDGET_S:.0f}s")

    async def dry_run(self, plan: TaskPlan) -> tuple[TaskPlan, Placement]:
        plan = plan.with_default_namespace(self.settings.task_planning.default_namespace)
        return plan, await self.place(plan)

    async def submit(self, plan: TaskPlan) -> PlanRun:
        """Store the plan and start deploying it.

        Raises:
            DeployUnavailable: standalone mode, or the deployer has not loaded yet.
            PlanExists: a plan of that name exists (or is being submitted).
            KubeError: the ConfigMap could not be written.
        """
        if self.kube is None:
            raise DeployUnavailable(
                "deploying task plans needs a Kubernetes cluster, and edge-sched runs in standalone mode "
                "(no kubeconfig or service account); add ?deploy=false for a dry run"
            )
        nursery = self._nursery
        if nursery is None:
            raise DeployUnavailable("the task-plan deployer is still loading stored plans; retry in a few seconds")
        name = plan.plan_name
        existing = self.runs.get(name)
        if existing is not None or name in self.unreadable or name in self._submitting:
            phase = existing.state.phase if existing is not None else "unreadable"
            raise PlanExists(
                f"a task plan named {name!r} already exists (phase {phase}); choose another plan_name, "
                f"or DELETE /api/v1/task-planning/plans/{name} first"
            )
        self._submitting.add(name)
        try:
            plan = plan.with_default_namespace(self.settings.task_planning.default_namespace)
            placement = await self.place(plan)
            state = initial_state(plan, self.clock(), placement.nodes, placement.note)
            try:
                obj = await self.kube.request(
                    "POST", self._cm_collection, body=state_configmap(plan, state, self.namespace)
                )
            except KubeConflict:
                raise PlanExists(
                    f"a task plan named {name!r} already exists (ConfigMap {self.namespace}/"
                    f"{configmap_name(name)}); choose another plan_name, or DELETE it first"
                ) from None
            meta = obj.get("metadata") or {}
            run = PlanRun(plan, state, str(meta.get("uid") or ""), str(meta.get("resourceVersion") or ""))
            self.runs[name] = run
            nursery.start_soon(self._drive, run)
            log.info("task plan %s: accepted, %d tasks in %d stages", name, len(plan.tasks), len(plan.stages))
            return run
        finally:
            self._submitting.discard(name)

    def get(self, name: str) -> PlanRun:
        run = self.runs.get(name)
        if run is None:
            raise PlanNotFound(f"no task plan named {name!r}")
        return run

    async def delete(self, name: str) -> tuple[bool, PlanRun | None]:
        """Stop the plan and delete what it created. Returns (finished, run): finished is
        False when cleanup goes on in the background past DELETE_WAIT_S.

        Raises:
            PlanNotFound, DeployUnavailable.
        """
        if self.kube is None:
            raise DeployUnavailable("edge-sched runs in standalone mode: there are no deployed task plans")
        nursery = self._nursery
        if nursery is None:
            raise DeployUnavailable("the task-plan deployer is still loading stored plans; retry in a few seconds")
        run = self.runs.get(name)
        if run is None:
            if name not in self.unreadable:
                raise PlanNotFound(f"no task plan named {name!r}")
            await self._delete_unreadable(name)
            return True, None
        if not run.deleting:
            run.deleting = True
            nursery.start_soon(self._delete, run)
        with trio.move_on_after(DELETE_WAIT_S):
            await run.deleted.wait()
        return run.deleted.is_set(), run

    # -- driving a plan ---------------------------------------------------------

    async def _drive(self, run: PlanRun) -> None:
        """Run the plan's tasks until nothing is left to run (or the plan is deleted)."""
        if run.state.finished_at is not None:  # stored finished: nothing to resume
            run.done.set()
            return
        gone = False
        try:
            with run.scope:
                gone = await self._drive_until_done(run)
        finally:
            run.done.set()
        if gone:
            log.warning("task plan %s: its ConfigMap was deleted; deleting what it created", run.name)
            await self._delete(run, stored=False)
        elif run.state.finished_at is not None:
            log.info("task plan %s: %s", run.name, run.state.phase)
            self._record_finish(run)

    def _record_finish(self, run: PlanRun) -> None:
        """An Event on the plan's ConfigMap: `kubectl describe configmap edge-sched-plan-<name>`."""
        if self.events is None:
            return
        ref = ObjectRef("v1", "ConfigMap", self.namespace, configmap_name(run.name), run.uid)
        tasks = run.state.tasks
        if run.state.phase == "succeeded":
            self.events.record(ref, "Normal", "PlanSucceeded", f"task plan {run.name}: all {len(tasks)} tasks succeeded")
            return
        failed = sorted(t for t, s in tasks.items() if s.phase == "failed")
        skipped = sorted(t for t, s in tasks.items() if s.phase == "skipped")
        message = f"task plan {run.name} failed: task {', '.join(failed)} failed"
        self.events.record(ref, "Warning", "PlanFailed", message + (f"; skipped: {', '.join(skipped)}" if skipped else ""))

    async def _drive_until_done(self, run: PlanRun) -> bool:
        """Returns True when the plan's ConfigMap vanished (deleted by hand)."""
        backoff = Backoff(max_s=30.0)
        while run.state.finished_at is None:
            problem, gone = "", False
            try:
                await self._drive_once(run)
                run.problem = ""
            except* PlanGone:
                gone = True
            except* (KubeError, OSError) as group:
                # API trouble beyond the per-call retries: resume from memory after a pause
                # (every step is idempotent, so repeating one is harmless).
                problem = "; ".join(str(e) for e in group.exceptions)
            if gone:
                return True
            if problem:
                run.problem = problem
                delay = backoff.next_delay()
                log.warning("task plan %s: %s; resuming in %.1fs", run.name, problem, delay)
                await trio.sleep(delay)
        return False

    async def _drive_once(self, run: PlanRun) -> None:
        started: set[str] = set()
        async with trio.open_nursery() as nursery:
            while True:
                changed = run.changed.round()
                for tid in active_tasks(run.plan, run.state) + ready_tasks(run.plan, run.state):
                    if tid not in started:
                        started.add(tid)
                        nursery.start_soon(self._run_task, run, tid)
                if run.state.finished_at is not None:
                    return
                await changed.wait()

    async def _run_task(self, run: PlanRun, task_id: str) -> None:
        task = run.plan.by_id[task_id]
        tp = self.settings.task_planning
        while True:
            state = run.state.tasks[task_id]
            if state.phase == "retrying":
                previous = state.current
                assert previous is not None and state.retry_at is not None
                # Repeated on resume: the failed object may not be gone yet.
                await self._delete_object(task, previous.object_name)
                await trio.sleep(max(0.0, state.retry_at - self.clock()))
            if state.phase in ("pending", "retrying"):
                run.update(start_attempt(run.plan, run.state, task_id, self.clock()))
                await self._persist(run)
            state = run.state.tasks[task_id]
            if state.phase != "running":
                return
            attempt = state.current
            assert attempt is not None
            log.info("task plan %s: task %s attempt %d (%s %s/%s)", run.name, task_id, attempt.number,
                     "Job" if task.kind == "job" else "Deployment", task.namespace, attempt.object_name)
            outcome: Outcome | None = None
            remaining = attempt.started_at + tp.deploy_timeout_s - self.clock()
            with trio.move_on_after(max(0.0, remaining)):
                outcome = await self._attempt(run, task, attempt.number, attempt.object_name)
            if outcome is None:
                # Resumed after the deadline: the attempt may have ended while we were down.
                outcome = self._seen_outcome(run, task, attempt.object_name)
            now = self.clock()
            if outcome is None:
                result, error = "timeout", (
                    f"attempt {attempt.number}: not {'complete' if task.kind == 'job' else 'available'} "
                    f"within {tp.deploy_timeout_s:g}s (TASK_PLANNING_DEPLOY_TIMEOUT)"
                )
            elif outcome.succeeded:
                result, error = "succeeded", None
            else:
                result, error = "failed", f"attempt {attempt.number}: {outcome.reason}"
            if self.attempts_total is not None:
                self.attempts_total.labels(task.kind, result).inc()
            run.update(finish_attempt(
                run.plan, run.state, task_id, now, result, error,  # type: ignore[arg-type]
                retry_count=tp.retry_count, retry_interval_s=tp.retry_interval_s,
            ))
            await self._persist(run)
            after = run.state.tasks[task_id]
            log.log(logging.INFO if result == "succeeded" else logging.WARNING,
                    "task plan %s: task %s attempt %d %s%s -> %s", run.name, task_id, attempt.number, result,
                    f" ({error})" if error else "", after.phase)
            if result != "succeeded" and self.events is not None:
                # With its uid, or `kubectl describe job` does not show the event.
                seen = self.cache_of(task).objects.get((task.namespace, attempt.object_name)) or {}
                self.events.record(
                    ObjectRef("batch/v1" if task.kind == "job" else "apps/v1",
                              "Job" if task.kind == "job" else "Deployment", task.namespace, attempt.object_name,
                              str((seen.get("metadata") or {}).get("uid", ""))),
                    "Warning", "TaskAttemptTimedOut" if result == "timeout" else "TaskAttemptFailed",
                    f"task plan {run.name}, task {task_id}: {error}; task is now {after.phase}",
                )
            if after.phase == "retrying" or (result == "timeout" and after.phase == "failed"):
                # A timed-out attempt may still hold a node: stop it. A failed one has
                # finished; the last one is kept for `kubectl logs` until the plan is deleted.
                await self._delete_object(task, attempt.object_name)
            if after.phase != "retrying":
                return

    async def _attempt(self, run: PlanRun, task: Task, number: int, name: str) -> Outcome:
        """Create (or find) the attempt's object and wait for its outcome."""
        backoff = Backoff(max_s=RETRY_BACKOFF_MAX_S)
        while True:
            try:
                await self._ensure_object(run, task, number, name)
                break
            except KubeRetryable as exc:
                run.problem = str(exc)
                await trio.sleep(backoff.next_delay())
            except KubeError as exc:  # refused for good: namespace missing, forbidden, invalid
                return Outcome(False, f"cannot create {name}: {exc}")
        run.problem = ""
        while True:
            changed = self.signal.round()
            await self._note_node(run, task, number)  # may await a ConfigMap write
            outcome = self._seen_outcome(run, task, name)
            if outcome is not None:
                return outcome
            await changed.wait()

    def _seen_outcome(self, run: PlanRun, task: Task, name: str) -> Outcome | None:
        """The attempt's outcome as the watch cache shows it; None while it runs (or is unseen)."""
        cache = self.cache_of(task)
        key = (str(task.namespace), name)
        obj = cache.objects.get(key)
        if obj is not None and _plan_uid(obj) == run.uid:
            return (job_outcome if task.kind == "job" else deployment_outcome)(obj)
        if obj is None and cache.gone.get(key) == run.uid:
            return Outcome(False, f"{name} was deleted outside edge-sched")
        return None

    async def _note_node(self, run: PlanRun, task: Task, number: int) -> None:
        node = self.pods.node(str(task.namespace), run.uid, task.task_id, number)
        current = run.state.tasks[task.task_id].current
        if node and current is not None and current.number == number and current.node != node:
            run.update(note_node(run.state, task.task_id, node))
            await self._persist(run)

    async def _ensure_object(self, run: PlanRun, task: Task, number: int, name: str) -> None:
        """Create-or-get the attempt's object (ours: it carries the plan's uid)."""
        assert self.kube is not None and task.namespace
        owner = None
        if task.namespace == self.namespace:
            owner = owner_reference({"metadata": {"name": configmap_name(run.name), "uid": run.uid}})
        body = task_object(
            run.plan, task, number, name,
            scheduler_name=self.settings.kube.scheduler_name,
            plan_uid=run.uid,
            planned_node=run.state.placements.get(task.task_id),
            owner=owner,
        )
        path = collection_path(task.kind, task.namespace)
        try:
            obj = await self.kube.request("POST", path, body=body)
        except KubeConflict:
            obj = await self.kube.request("GET", f"{path}/{name}")
            if _plan_uid(obj) != run.uid:
                raise ForeignObject(
                    f"{task.namespace}/{name} belongs to an earlier plan named {run.name!r}; waiting for it to go"
                ) from None
        if self.cache_of(task).objects.get((task.namespace, name)) is None:
            # Seed the cache with what the API answered, so the wait does not depend on the
            # watch having caught up (it will overwrite this with newer versions).
            self.cache_of(task).upsert(obj)

    async def _delete_object(self, task: Task, name: str) -> None:
        assert task.namespace
        await self._delete_path(f"{collection_path(task.kind, task.namespace)}/{name}")

    async def _delete_path(self, path: str) -> None:
        """Delete with background propagation (pods follow); a missing object is fine."""
        assert self.kube is not None
        backoff = Backoff(max_s=RETRY_BACKOFF_MAX_S)
        while True:
            try:
                await self.kube.request("DELETE", path, body={"propagationPolicy": "Background"})
                return
            except KubeNotFound:
                return
            except KubeRetryable as exc:
                log.warning("deleting %s: %s; retrying", path, exc)
                await trio.sleep(backoff.next_delay())

    async def _persist(self, run: PlanRun) -> None:
        """Store the run's current state (the latest one when writes queue up)."""
        assert self.kube is not None
        path = f"{self._cm_collection}/{configmap_name(run.name)}"
        backoff = Backoff(max_s=RETRY_BACKOFF_MAX_S)
        async with run.lock:
            while True:
                body = state_configmap(run.plan, run.state, self.namespace, run.resource_version)
                try:
                    obj = await self.kube.request("PUT", path, body=body)
                    run.resource_version = str((obj.get("metadata") or {}).get("resourceVersion") or "")
                    return
                except KubeConflict:
                    # Our own earlier write landed but its answer was lost, or a hand edit:
                    # this process is the plan's only writer, so its state wins.
                    try:
                        current = await self.kube.request("GET", path)
                    except KubeNotFound:
                        raise PlanGone(run.name) from None
                    run.resource_version = str((current.get("metadata") or {}).get("resourceVersion") or "")
                except KubeNotFound:
                    raise PlanGone(run.name) from None
                except KubeRetryable as exc:
                    run.problem = f"storing state: {exc}"
                    await trio.sleep(backoff.next_delay())

    # -- deletion ---------------------------------------------------------------

    async def _delete(self, run: PlanRun, *, stored: bool = True) -> None:
        """Mark deleting, stop the driver, delete every object of the plan, then its ConfigMap.

        Refusals (e.g. RBAC) are logged and tried again with backoff: the plan stays listed
        as `deleting` meanwhile, and a restart picks the deletion up where it stopped.
        """
        run.deleting = True
        backoff = Backoff(max_s=30.0)
        while True:
            try:
                await self._delete_steps(run, stored=stored)
                break
            except KubeError as exc:
                run.problem = f"deleting: {exc}"
                delay = backoff.next_delay()
                log.warning("task plan %s: deleting: %s; trying again in %.1fs", run.name, exc, delay)
                await trio.sleep(delay)
        run.problem = ""
        if self.runs.get(run.name) is run:
            del self.runs[run.name]
        run.deleted.set()
        log.info("task plan %s: deleted", run.name)

    async def _delete_steps(self, run: PlanRun, *, stored: bool) -> None:
        assert self.kube is not None
        if stored and run.state.phase != "deleting":
            run.update(attrs.evolve(run.state, phase="deleting"))
            try:
                await self._persist(run)
            except PlanGone:
                pass
        run.scope.cancel()
        await run.done.wait()
        await self._delete_owned(run.name)
        await self._delete_path(f"{self._cm_collection}/{configmap_name(run.name)}")

    async def _delete_unreadable(self, name: str) -> None:
        await self._delete_owned(name)
        await self._delete_path(f"{self._cm_collection}/{configmap_name(name)}")
        self.unreadable.pop(name, None)

    async def _delete_owned(self, plan_name: str) -> list[str]:
        """Delete the plan's Jobs and Deployments in every namespace (found by label).

        Two passes: a create the cancelled driver had in flight may land after the first
        list.
        """
        assert self.kube is not None
        deleted: list[str] = []
        selector = {"labelSelector": f"{PLAN_LABEL}={plan_name}"}
        for _ in range(2):
            for kind, path in (("job", "/apis/batch/v1/jobs"), ("service", "/apis/apps/v1/deployments")):
                items, _version = await list_all(self.kube, WatchTarget(kind, path, selector))
                for obj in items:
                    ns, name = _key(obj)
                    if (obj.get("metadata") or {}).get("deletionTimestamp"):
                        continue
                    await self._delete_path(f"{collection_path(kind, ns)}/{name}")
                    deleted.append(f"{ns}/{name}")
        return deleted


def tasks_of(plan: TaskPlan) -> Sequence[Task]:
    """The plan's tasks in serialized order (for placement: earlier tasks first)."""
    by_id = plan.by_id
    return [by_id[t] for t in plan.serialized_order]
