"""The extender verbs, wired to the cache, the plan store and the API server.

This module owns the order of things (decode, gather candidates, apply the
pure rules, remember the plan, bind); the rules themselves live in `core/`.
"""

from __future__ import annotations

import logging
import time
from functools import partial
from itertools import repeat
from operator import is_
from collections import deque
from collections.abc import Callable
from typing import Any, cast

import attrs

from edge_sched.adapters.kube_client import KubeClient
from edge_sched.codecs import extender as wire
from edge_sched.codecs.events import pod_ref
from edge_sched.codecs.kube_objects import (
    ObjectError,
    node_from_object,
    pod_demand_from_object,
)
from edge_sched.codecs.task_objects import PLANNED_NODE_ANNOTATION, planned_node
from edge_sched.core.filtering import FilterLimits, filter_node
from edge_sched.core.load import LoadLimits, NodeUsage
from edge_sched.core.model import CPU, MEMORY, Candidate, NodeInfo, NodeLoad, PlacedPod, PodDemand
from edge_sched.core.power import NodePower, with_power_demand
from edge_sched.core.scoring import ScoreWeights, score_nodes
from edge_sched.errors import KubeConflict, KubeError, KubeNotFound
from edge_sched.runtime.candidates import CandidateCache, ScoreCache, VerdictCache, candidate_of, judge, pod_shape
from edge_sched.runtime.changes import ChangeLog
from edge_sched.runtime.cluster import ClusterCache
from edge_sched.runtime.events import EventRecorder
from edge_sched.runtime.filter_board import FilterBoards, answer_of
from edge_sched.runtime.metrics import Metrics
from edge_sched.runtime.plans import (
    PlanStore,
    SchedulingPlan,
    ScoreTable,
    prefer_planned,
)
from edge_sched.runtime.power import PowerService
from edge_sched.runtime.rows import NodeRows
from edge_sched.runtime.score_board import Boards, PowerContext, build
from edge_sched.runtime.usage import UsageStore
from edge_sched.settings import Settings

log = logging.getLogger(__name__)

UNKNOWN_NODE_NOTE = "not in edge-sched's node cache; passed unchecked"
RECENT_DECISIONS = 500
# Deleted nodes' reusable entries are dropped once this many have piled up.
FORGET_SLACK = 64


@attrs.frozen
class Decision:
    """A bind edge-sched performed, for the decisions feed and the status page."""

    pod: str
    node: str
    score: int | None  # what prioritize gave the node; None without a plan
    followed_plan: bool  # bound to the plan's node instead of kube-scheduler's pick
    at: float  # unix seconds

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


class NoRoom(Exception):
    """Every node bind could use has filled up since filter ran."""


@attrs.frozen
class Gathered:
    """Candidates for one call, plus per-node problems found on the way."""

    candidates: list[Candidate]
    invalid: dict[str, str]  # node -> why its object could not be used
    unknown: list[str]  # NodeNames the cache does not know
    # Candidates of cached nodes (NodeNames), whose per-node work can be reused across
    # calls; False for node objects sent in the call (new objects every time).
    reusable: bool = True


@attrs.define(eq=False)
class Scheduler:
    settings: Settings
    cache: ClusterCache
    plans: PlanStore
    metrics: Metrics
    kube: KubeClient | None = None
    wall_clock: Callable[[], float] = time.time
    power: PowerService | None = None  # None: computing power disabled
    usage: UsageStore | None = None  # live node usage (S7); None: requests only
    events: EventRecorder | None = None  # Kubernetes Events (S4); None: standalone
    recent: deque[Decision] = attrs.field(factory=lambda: deque(maxlen=RECENT_DECISIONS))
    _candidates: CandidateCache = attrs.field(factory=CandidateCache)
    _verdicts: VerdictCache = attrs.field(factory=VerdictCache)
    _scores: ScoreCache = attrs.field(factory=ScoreCache)
    # Candidates of NodeNames calls, without and with computing power (runtime/rows.py).
    _rows: dict[bool, NodeRows] = attrs.field(factory=lambda: {False: NodeRows(), True: NodeRows()})
    _boards: Boards = attrs.field(factory=Boards)  # prioritize's columns per pod shape
    _filter_boards: FilterBoards = attrs.field(factory=FilterBoards)  # filter's verdicts per pod shape

    # -- inputs --------------------------------------------------------------
    def gather(self, args: wire.ExtenderArgs, *, with_power: bool = False) -> Gathered:
        """The candidates of a call with their load and live usage (and, `with_power`,
        their fresh computing-power entries). Per-node cost is what bounds a verb at 5,000
        nodes: cached nodes' candidates are reused while unchanged (runtime/candidates.py);
        node objects sent in the call are new each time and built afresh."""
        candidates: list[Candidate] = []
        invalid: dict[str, str] = {}
        unknown: list[str] = []
        usage_of = self.usage.reader() if self.usage is not None else None
        power_of = self.power.store.reader() if with_power and self.power is not None else None
        if args.node_objects is not None:
            for obj in args.node_objects:
                name = wire.node_object_name(obj)
                try:
                    node = node_from_object(obj)
                except ObjectError as exc:
                    invalid[name or "?"] = f"invalid node object: {exc}"
                    continue
                candidates.append(self._candidate(node, usage_of, power_of))
            return Gathered(candidates, invalid, unknown, reusable=False)
        nodes = self.cache.nodes
        load_of = self.cache.load
        reuse = self._candidates.candidate
        names = args.node_names or ()
        now = self.cache.clock()
        logs = self._change_logs()
        rows = None
        if logs is not None:
            rows = self._rows[with_power]
            rows.refresh(logs, now)
            kept = list(map(rows.candidates.get, names))
            if not any(map(is_, kept, repeat(None))):  # every node unchanged
                return Gathered(cast(list[Candidate], kept), invalid, unknown)
        for name in names:
            if rows is not None and (row := rows.candidates.get(name)) is not None:
                candidates.append(row)
                continue
            known = nodes.get(name)
            if known is None:
                unknown.append(name)
                continue
            usage = usage_of(known) if usage_of is not None else None
            cand = reuse(known, load_of(name), usage, power_of(name) if power_of is not None else None)
            candidates.append(cand)
            if rows is not None:
                until = self.cache.load_until(name)
                if usage is not None:
                    until = min(until, usage.until)
                if power_of is not None and self.power is not None:
                    until = min(until, self.power.store.until(name, now))
                rows.put(name, cand, until, now)
        if len(self._candidates) > len(nodes) + FORGET_SLACK:
            names = set(nodes)
            self._candidates.forget(names)
            self._verdicts.forget(names)
            self._scores.forget(names)
        return Gathered(candidates, invalid, unknown)

    def _change_logs(self) -> list[ChangeLog] | None:
        """Every log a change to a candidate's inputs is written to; None when some store
        behind the usage keeps none (then every node is looked at on every call)."""
        logs = [self.cache.changes]
        if self.usage is not None:
            usage_logs = self.usage.change_logs()
            if usage_logs is None:
                return None
            logs += usage_logs
        if self.power is not None:
            logs.append(self.power.store.changes)
        return logs

    @property
    def limits(self) -> FilterLimits:
        load = self.settings.load
        return FilterLimits(
            max_pods_per_node=self.settings.scheduler.max_pods_per_node,
            load=LoadLimits(load.cpu_threshold, load.memory_threshold, load.stale_policy),
        )

    def _candidate(
        self,
        node: NodeInfo,
        usage_of: Callable[[NodeInfo], NodeUsage] | None = None,
        power_of: Callable[[str], NodePower | None] | None = None,
    ) -> Candidate:
        """The node with what is placed on it, its live usage (read from memory, never
        polled) and, given a power reader, its fresh power entries. Pass the stores'
        `reader()`s when building many candidates in one call."""
        node_power = power_of(node.name) if power_of is not None else None
        usage = (usage_of or self.usage.usage)(node) if self.usage is not None else None
        return candidate_of(node, self.cache.load(node.name), usage, node_power)

    # -- filter --------------------------------------------------------------
    async def filter(self, args: wire.ExtenderArgs) -> dict[str, Any]:
        try:
            pod = pod_demand_from_object(args.pod)
        except ObjectError as exc:
            # The pod itself is unusable: that is an error for the whole cycle,
            # not a reason to fail any node.
            return wire.filter_result(args, [], {}, {}, error=f"Pod: {exc}")
        pod, with_power = await self._with_power(args, pod, rule5=True)
        gathered = self.gather(args, with_power=with_power)
        limits = self.limits
        if gathered.reusable:
            judge_all = partial(self._verdicts.judge, pod, limits=limits)
            answer = self._filter_boards.answer(pod_shape(pod, limits), gathered.candidates, judge_all)
        else:
            answer = answer_of([judge(pod, c, limits) for c in gathered.candidates])
        notes = tuple(f"{name}: {UNKNOWN_NODE_NOTE}" for name in gathered.unknown)
        notes += _power_notes(pod, answer.unjudged)
        failed = answer.failed
        if gathered.invalid:
            failed = {**gathered.invalid, **failed}
        if not gathered.unknown and args.node_names is not None:  # the names sent are the candidates'
            self.plans.record_filter(pod, answer.feasible, notes)
            return wire.filter_result(args, answer.passed, failed, answer.unresolvable, node_names=list(answer.passed))
        passed = [*gathered.unknown, *answer.passed]
        self.plans.record_filter(pod, frozenset(passed), notes)
        return wire.filter_result(args, passed, failed, answer.unresolvable)

    # -- prioritize ----------------------------------------------------------
    async def prioritize(self, args: wire.ExtenderArgs) -> wire.HostPriorityList:
        try:
            pod = pod_demand_from_object(args.pod)
        except ObjectError as exc:
            log.warning("prioritize: neutral scores for an undecodable pod: %s", exc)
            return wire.HostPriorityList.of(dict.fromkeys([c.name for c in self.gather(args).candidates], 0))
        if not self.settings.optimizer.enabled:
            gathered = self.gather(args)
            names = [c.name for c in gathered.candidates] + list(gathered.invalid) + gathered.unknown
            return wire.HostPriorityList.of(dict.fromkeys(names, 0))
        pod, with_power = await self._with_power(args, pod, rule5=False)
        gathered = self.gather(args, with_power=with_power)
        table = self._score(pod, gathered, self._planned(pod, args.pod))
        if not gathered.invalid and not gathered.unknown:
            return table.priorities()
        scored = table.extender_scores()  # in candidate order
        for name in [*gathered.invalid, *gathered.unknown]:  # nodes not scored get 0
            scored.setdefault(name, 0)
        return wire.HostPriorityList.of(scored)

    def _planned(self, pod: PodDemand, pod_object: Any) -> SchedulingPlan | None:
        """The joint placement this pod should follow (S10): a batch plan made for it, else
        the node its task plan placed it on (annotation `edge-sched.io/planned-node`, which
        the pods of a task plan carry because their names are not known in advance)."""
        batch = self.plans.batch_for(pod)
        node = planned_node(pod_object)
        if batch is not None or node is None:
            return batch
        now = self.wall_clock()
        return SchedulingPlan(
            pod=pod,
            algorithm="task-plan",
            selected=node,
            scores={},
            feasible=frozenset({node}),
            notes=(f"task plan placement: {node} (annotation {PLANNED_NODE_ANNOTATION})",),
            created_at=now,
            expires_at=now + self.settings.scheduler.plan_expiration_s,
        )

    def _score_table(self, pod: PodDemand, gathered: Gathered) -> ScoreTable:
        """Every candidate's score: kept per shape and updated where candidates changed
        (runtime/score_board.py), or, for node objects sent in the call, computed afresh."""
        opt = self.settings.optimizer
        weights = ScoreWeights(cpu=opt.weight_cpu, memory=opt.weight_memory)
        power = None
        if self.power is not None:
            power = PowerContext(self.power.weights, self.settings.scheduler.enable_gpu_scheduling)
        if not gathered.reusable:
            # Node objects may name a node twice with different contents: the last one counts,
            # at the first one's place (as kube-scheduler reads our answer, by name).
            last = list({c.name: c for c in gathered.candidates}.values())
            return build(pod, last, lambda cands: score_nodes(pod, cands, weights), power).table
        demand = pod.power_demand
        shape = (
            pod.requests.get(CPU, 0), pod.requests.get(MEMORY, 0), weights, power,
            (demand.cpu, demand.gpu, demand.fpga) if demand is not None else None,
        )
        score = partial(self._scores.scores, pod, weights=weights)
        return self._boards.table(shape, pod, gathered.candidates, score, power)

    def _score(self, pod: PodDemand, gathered: Gathered, planned: SchedulingPlan | None) -> ScoreTable:
        opt = self.settings.optimizer
        table = self._score_table(pod, gathered)
        outcome = self.plans.filter_outcome(pod)
        feasible = outcome.feasible if outcome is not None else frozenset(table.names)
        notes = outcome.notes if outcome is not None else ()
        now = self.wall_clock()
        selected = table.best(feasible)
        # A joint placement (S10) that puts this pod on a node that passed filter: that node scores 10.
        table, batch = prefer_planned(table, planned, feasible)
        if batch is not None:
            selected, notes = batch.selected, notes + batch.notes
        self.plans.put(
            SchedulingPlan(
                pod=pod,
                algorithm=batch.algorithm if batch is not None else opt.algorithm,
                selected=selected,
                scores=table,
                feasible=feasible,
                notes=notes,
                created_at=now,
                expires_at=now + self.settings.scheduler.plan_expiration_s,
            )
        )
        return table

    # -- computing power (S6) -------------------------------------------------
    async def _with_power(
        self, args: wire.ExtenderArgs, pod: PodDemand, *, rule5: bool
    ) -> tuple[PodDemand, bool]:
        """The pod with its power demand, and whether candidates need their fresh reports.

        Unchanged (and False) when computing power is off (or, for filter, when rule 5 is
        off). The demand never takes longer than the router budget (a share of
        SCHEDULER_FILTER_TIMEOUT); past it the S6.4 estimate is used.
        """
        cp = self.settings.computing_power
        if self.power is None or not cp.enabled or (rule5 and not cp.filter_enabled):
            return pod, False
        demand = await self.power.demand(args.pod, pod)
        return with_power_demand(pod, demand), True

    # -- bind ----------------------------------------------------------------
    def _choices(self, args: wire.BindingArgs, plan: SchedulingPlan | None) -> list[str]:
        """Nodes to try, in order: the plan's (when followed), then kube-scheduler's."""
        choices = [args.node]
        if (
            self.settings.scheduler.bind_follow_plan
            and plan is not None
            and plan.selected
            and plan.selected != args.node
            and plan.selected in plan.feasible
            and not _tied(plan, args.node)
        ):
            choices.insert(0, plan.selected)
        return choices

    async def _demand(self, args: wire.BindingArgs, plan: SchedulingPlan | None) -> PodDemand:
        if plan is not None:
            return plan.pod
        outcome = self.plans.filter_outcome_for(args.pod_uid)
        if outcome is not None:
            return outcome.pod
        assert self.kube is not None
        obj = await self.kube.request("GET", f"/api/v1/namespaces/{args.pod_namespace}/pods/{args.pod_name}")
        try:
            return pod_demand_from_object(obj)
        except ObjectError as exc:
            raise KubeError(f"pod cannot be decoded: {exc}") from None

    def _reserve(self, args: wire.BindingArgs, demand: PodDemand, choices: list[str]) -> str:
        """Pick the first choice that still fits and reserve it, with no await in between.

        Filter ran before earlier binds of this batch landed (kube-scheduler binds
        asynchronously), so fit is checked again against the cache including every
        pod reserved since; reserving before the API call keeps two concurrent
        binds from taking the same free space.
        """
        reasons = []
        for node in choices:
            info = self.cache.nodes.get(node)
            if info is not None:
                verdict = filter_node(demand, self._candidate(info), self.limits)
                if not verdict.passed:
                    reasons.append(f"{node}: {verdict.reason}")
                    continue
            placed = PlacedPod(args.pod_uid, args.pod_namespace, args.pod_name, node, demand.requests)
            self.cache.assume(placed, self.settings.kube.assumed_pod_ttl_s)
            return node
        raise NoRoom("no longer fits: " + "; ".join(reasons))

    async def bind(self, args: wire.BindingArgs) -> dict[str, str]:
        key = f"{args.pod_namespace}/{args.pod_name}"
        if self.kube is None:
            self.metrics.binds.labels("standalone").inc()
            return wire.binding_result(
                "bind is unavailable in standalone mode: no Kubernetes cluster is configured"
            )
        plan = self.plans.for_uid(key, args.pod_uid)
        node = args.node
        try:
            demand = await self._demand(args, plan)
            choices = self._choices(args, plan)
            for candidate in choices:
                await self._ensure_node_exists(candidate)
            node = self._reserve(args, demand, choices)
            try:
                await self._post_binding(args, node)
            except BaseException:
                self.cache.unassume(args.pod_uid)
                raise
        except NoRoom as exc:
            self.metrics.binds.labels("no_room").inc()
            return wire.binding_result(f"bind {key}: {exc}")
        except KubeNotFound as exc:
            self.metrics.binds.labels("not_found").inc()
            return wire.binding_result(f"bind {key} to {node}: {exc}")
        except KubeConflict as exc:
            self.metrics.binds.labels("conflict").inc()
            return wire.binding_result(f"bind {key} to {node}: {exc}")
        except KubeError as exc:
            self.metrics.binds.labels("error").inc()
            return wire.binding_result(f"bind {key} to {node}: {exc}")
        self.metrics.binds.labels("ok").inc()
        if self.usage is not None:  # hot-spot damping until the node's metrics show the pod
            self.usage.note_placement(node, demand.requests)
        self.plans.remove(key)
        detail = plan.scores.get(node) if plan is not None else None
        self.recent.append(
            Decision(
                pod=key,
                node=node,
                score=detail.score if detail is not None else None,
                followed_plan=node != args.node,
                at=self.wall_clock(),
            )
        )
        if node != args.node:
            self.metrics.plan_overrides.inc()
            log.info("bound %s to planned node %s instead of %s", key, node, args.node)
            if self.events is not None:
                score = f" (score {detail.score}/10)" if detail is not None else ""
                self.events.record(
                    pod_ref(args.pod_namespace, args.pod_name, args.pod_uid), "Normal", "FollowedPlan",
                    f"edge-sched bound the pod to {node}{score}, the node its plan selected, "
                    f"instead of kube-scheduler's pick {args.node}",
                )
        return wire.binding_result()

    async def _post_binding(self, args: wire.BindingArgs, node: str) -> None:
        assert self.kube is not None
        await self.kube.request(
            "POST",
            f"/api/v1/namespaces/{args.pod_namespace}/pods/{args.pod_name}/binding",
            body={
                "apiVersion": "v1",
                "kind": "Binding",
                # The UID is a precondition: a pod recreated under the same name
                # since kube-scheduler looked at it is not bound.
                "metadata": {"name": args.pod_name, "namespace": args.pod_namespace, "uid": args.pod_uid},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node},
            },
        )

    async def _ensure_node_exists(self, node: str) -> None:
        if node in self.cache.nodes:
            return
        assert self.kube is not None
        try:
            await self.kube.request("GET", f"/api/v1/nodes/{node}")
        except KubeNotFound:
            raise KubeNotFound(f"node {node!r} does not exist", 404) from None

    # -- preempt -------------------------------------------------------------
    def preempt(self, args: wire.PreemptionArgs) -> dict[str, Any]:
        """Pass victims through, except on nodes where evicting them cannot help.

        kube-scheduler's dry run does not see edge-sched's rules, so each
        proposal is checked here: with the victims' requests removed from the
        node, the pod must pass filter; otherwise the node is dropped, since
        evicting pods there would be pure damage. Unknown nodes pass through.
        """
        try:
            pod = pod_demand_from_object(args.pod)
        except ObjectError:
            return wire.preemption_result(args.victims)
        keep: dict[str, tuple[tuple[str, ...], int]] = {}
        for node, victims in args.victims.items():
            info = self.cache.nodes.get(node)
            if info is not None:
                load = self.cache.load(node)
                requested = dict(load.requested)
                evicted = [self.cache.pods[uid] for uid in victims[0] if uid in self.cache.pods]
                for victim in evicted:
                    for resource, amount in victim.requests.items():
                        requested[resource] = requested.get(resource, 0) - amount
                after = NodeLoad(requested, load.pod_count - len(evicted))
                if not filter_node(pod, attrs.evolve(self._candidate(info), load=after), self.limits).passed:
                    continue
            keep[node] = victims
        return wire.preemption_result(keep)


def _tied(plan: SchedulingPlan, node: str) -> bool:
    """Whether `node` passed filter and scored exactly as well as the plan's selected node
    (docs/optimizer.md).

    The plan names one best node, ties broken by name; kube-scheduler breaks the same tie at
    random, which spreads equal pods over equal nodes. Overriding its pick for a node no
    better by edge-sched's own score would undo that and cost an API event per pod. A batch
    or task plan's node scores 10 and every other node at most 9, so it is never tied.
    """
    scores, selected = plan.scores, plan.selected
    if selected is None or node not in plan.feasible or node not in scores or selected not in scores:
        return False
    mine, best = scores[node], scores[selected]
    return mine.score == best.score and mine.value == best.value


def _power_notes(pod: PodDemand, unjudged: dict[str, list[str]]) -> tuple[str, ...]:
    """Plan notes for rule 5: the demand and where it came from, and the nodes that passed
    without being judged (`unjudged`: needed types without a fresh report -> nodes), grouped
    so 5,000 nodes make few lines."""
    demand = pod.power_demand
    if demand is None:
        return ()
    notes = [f"power demand: {demand.describe()}"]
    for kinds, names in sorted(unjudged.items()):
        shown = ", ".join(names[:20]) + (f" and {len(names) - 20} more" if len(names) > 20 else "")
        notes.append(f"rule 5 not applied (no fresh {kinds} power report), passed: {shown}")
    return tuple(notes)
