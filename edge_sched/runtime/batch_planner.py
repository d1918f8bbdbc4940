"""Batch plans (spec S10): a set of pods placed jointly, one stored plan per pod.

Owns the path of `POST /api/v1/scheduler/plans` from decoded request to stored plans:
candidates are gathered exactly as the extender verbs gather them (the request's `Nodes`,
else every node of the cache, with live usage and pods already placed), the pods get
their computing-power demand when rule 5 is on, and `core.optimizer.solve` runs in a
worker thread so the event loop keeps answering filter/prioritize/bind meanwhile.

Time: the optimizer is pure and sync and a worker thread cannot be cancelled, so the
budget is a deadline handed to it (GA_TIME_BUDGET from the moment the candidates and
demands are ready, waiting for the limiter included): the GA returns its best plan so far
when it passes. Computing-power demands are asked for concurrently, each within the
router's own budget, so they cost about one router budget per plan.
The cancel scope around the thread is only the backstop for a bug, not the budget.
CapacityLimiter(1): plans are computed one at a time; they are CPU-bound, and two at
once would only halve each one's share of the budget.

Each placed pod gets a `SchedulingPlan` (algorithm, the node as `selected` and only
`feasible` node, the fitness in `notes` and score components) that prioritize turns into
"this node scores 10" and bind follows (S5), until PLAN_EXPIRATION_TIME.
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import numpy as np
import trio
from prometheus_client import CollectorRegistry, Counter, Histogram

from edge_sched.codecs import extender as wire
from edge_sched.codecs.batch_plans import PlanRequest, PlanRequestError
from edge_sched.core.ga import Budget, GAParams
from edge_sched.core.model import PodDemand
from edge_sched.core.optimizer import Algorithm, Outcome, solve
from edge_sched.core.placement import FitnessWeights
from edge_sched.core.power import PowerDemand, with_power_demand
from edge_sched.core.scoring import ScoreWeights
from edge_sched.runtime.plans import MAX_SCORE, SchedulingPlan, ScoreDetail
from edge_sched.runtime.power import PowerService
from edge_sched.runtime.scheduler import Scheduler

log = logging.getLogger(__name__)

# Backstop only (see the module docstring): how far past its budget a computation may run
# before the request gives up on it with 503.
OVERRUN_GRACE_S = 10.0
_DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)


class PlanOverrun(Exception):
    """The optimizer ran far past its budget (a bug); the request answers 503."""


@attrs.frozen
class BatchMetrics:
    plans: Counter
    duration: Histogram

    @classmethod
    def register(cls, registry: CollectorRegistry) -> BatchMetrics:
        return cls(
            plans=Counter(
                "edge_sched_batch_plans",
                "Batch plans computed (S10) by algorithm and result (ok, partial: some pods unplaced).",
                ["algorithm", "result"],
                registry=registry,
            ),
            duration=Histogram(
                "edge_sched_batch_plan_duration_seconds",
                "Time the optimizer took for one batch plan.",
                ["algorithm"],
                buckets=_DURATION_BUCKETS,
                registry=registry,
            ),
        )


@attrs.frozen
class BatchPlan:
    """One computed batch plan, as answered to the client."""

    plan_id: str
    outcome: Outcome
    candidate_nodes: int
    created_at: float  # unix seconds
    expires_at: float

    def to_json(self) -> dict[str, Any]:
        o = self.outcome
        return {
            "plan_id": self.plan_id,
            "algorithm": o.algorithm,
            "assignments": dict(sorted(o.assignments.items())),
            "unplaced": dict(sorted(o.unplaced.items())),
            "fitness": round(o.fitness, 6),
            "components": {k: round(v, 6) for k, v in o.components.items()},
            "weights": {k: round(v, 6) for k, v in o.weights.items()},
            "generations": o.generations,
            "stopped_by": o.stopped_by,
            "elapsed_s": round(o.elapsed_s, 6),
            "candidate_nodes": self.candidate_nodes,
            "eligible_nodes": o.eligible_nodes,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
        }


async def _with_power_demands(
    power: PowerService, pods: list[PodDemand], objects: Sequence[Mapping[str, Any]]
) -> list[PodDemand]:
    """The pods with their computing-power demands, asked for all at once: each waits at
    most the router budget, so a batch waits about one budget, not one per pod."""
    demands: list[PowerDemand | None] = [None] * len(pods)

    async def fill(k: int) -> None:
        demands[k] = await power.demand(objects[k], pods[k])

    async with trio.open_nursery() as nursery:
        for k in range(len(pods)):
            nursery.start_soon(fill, k)
    return [with_power_demand(pod, d) if d is not None else pod for pod, d in zip(pods, demands, strict=True)]


@attrs.define(eq=False)
class BatchPlanner:
    scheduler: Scheduler
    metrics: BatchMetrics
    limiter: trio.CapacityLimiter = attrs.field(factory=lambda: trio.CapacityLimiter(1))
    # The optimizer's clock (its deadline is on it) and the RNG for each run.
    clock: Callable[[], float] = time.perf_counter
    rng_factory: Callable[[int | None], np.random.Generator] = np.random.default_rng

    @classmethod
    def for_scheduler(cls, scheduler: Scheduler) -> BatchPlanner:
        """A planner using the scheduler's cache, plans and metrics registry."""
        return cls(scheduler, BatchMetrics.register(scheduler.metrics.registry))

    async def plan(self, request: PlanRequest) -> BatchPlan:
        """Compute a joint placement for the request's pods and store a plan per pod.

        Raises:
            PlanRequestError: a node object in `Nodes` cannot be decoded.
            PlanOverrun: the optimizer ran far past its budget (a bug).
        """
        settings = self.scheduler.settings
        opt = settings.optimizer
        algorithm: Algorithm = request.algorithm or opt.algorithm
        gathered = self.scheduler.gather(
            wire.ExtenderArgs(
                pod={},
                node_objects=request.node_objects,
                node_list=None,
                node_names=None if request.node_objects is not None else tuple(sorted(self.scheduler.cache.nodes)),
            )
        )
        if gathered.invalid:
            name, why = sorted(gathered.invalid.items())[0]
            raise PlanRequestError(f"Nodes: node {name}: {why}")
        candidates = gathered.candidates
        pods = list(request.pods)
        power = self.scheduler.power
        cp = settings.computing_power
        if power is not None and cp.enabled and cp.filter_enabled:
            pods = await _with_power_demands(power, pods, request.pod_objects)
            candidates = power.attach(candidates)
        # The budget is the optimizer's: the demands above have their own (the router's).
        budget = Budget(self.clock() + opt.ga_time_budget_s, self.clock)
        work = functools.partial(
            solve,
            pods,
            candidates,
            self.scheduler.limits,
            algorithm=algorithm,
            score_weights=ScoreWeights(opt.weight_cpu, opt.weight_memory).normalised(),
            fitness_weights=FitnessWeights(opt.ga_weight_cpu, opt.ga_weight_memory, opt.ga_weight_balance),
            params=GAParams(opt.ga_population_size, opt.ga_generations, opt.ga_mutation_rate),
            rng=self.rng_factory(opt.ga_seed),
            budget=budget,
        )
        outcome: Outcome | None = None
        with trio.move_on_after(opt.ga_time_budget_s + OVERRUN_GRACE_S):
            outcome = await trio.to_thread.run_sync(work, limiter=self.limiter, abandon_on_cancel=True)
        if outcome is None:
            raise PlanOverrun(
                f"the optimizer ran more than {OVERRUN_GRACE_S:g}s past GA_TIME_BUDGET ({opt.ga_time_budget_s:g}s)"
            )
        self.metrics.duration.labels(algorithm).observe(outcome.elapsed_s)
        self.metrics.plans.labels(algorithm, "partial" if outcome.unplaced else "ok").inc()
        plan = self._store(pods, outcome, len(candidates))
        log.info(
            "batch plan %s (%s): %d placed, %d unplaced, fitness %.4f, %d generations in %.3fs (%s)",
            plan.plan_id, algorithm, len(outcome.assignments), len(outcome.unplaced), outcome.fitness,
            outcome.generations, outcome.elapsed_s, outcome.stopped_by,
        )
        return plan

    def _store(self, pods: list[PodDemand], outcome: Outcome, n_candidates: int) -> BatchPlan:
        now = self.scheduler.wall_clock()
        expires = now + self.scheduler.settings.scheduler.plan_expiration_s
        plan_id = uuid.uuid4().hex[:12]
        c = outcome.components
        summary = (
            f"batch plan {plan_id} ({outcome.algorithm}): {len(outcome.assignments)} of {len(pods)} pods placed, "
            f"fitness {outcome.fitness:.4f} (cpu {c['cpu']:.4f}, memory {c['memory']:.4f}, balance {c['balance']:.4f})"
        )
        components = {"plan_fitness": outcome.fitness, **{f"plan_{k}": v for k, v in c.items()}}
        for pod in pods:
            node = outcome.assignments.get(pod.key)
            notes = (summary,) if node else (summary, f"unplaced: {outcome.unplaced.get(pod.key, '')}")
            self.scheduler.plans.put_batch(
                SchedulingPlan(
                    pod=pod,
                    algorithm=outcome.algorithm,
                    selected=node,
                    scores={node: ScoreDetail(MAX_SCORE, 100.0, components)} if node else {},
                    feasible=frozenset({node}) if node else frozenset(),
                    notes=notes,
                    created_at=now,
                    expires_at=expires,
                )
            )
        return BatchPlan(plan_id, outcome, n_candidates, now, expires)
