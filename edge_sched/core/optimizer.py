"""The batch optimizer's entry point (spec S10): pods + candidates in, a plan out.

`solve` is what the runtime runs in a worker thread: it builds the arrays
(`core/placement.py`), runs `default` (greedy with the S5 score) or `genetic`
(`core/ga.py`), passes the result through `make_feasible` (exact integer check, so a plan
can never over-commit a node whatever the optimizer did) and reports the fitness of the
result. Sync and pure: time comes from the injected `Budget`, randomness from the
injected `numpy.random.Generator`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import attrs
import numpy as np

from edge_sched.core.filtering import FilterLimits
from edge_sched.core.ga import Budget, GAParams, evolve
from edge_sched.core.model import Candidate, PodDemand
from edge_sched.core.placement import (
    FitnessWeights,
    IntArray,
    Problem,
    build_problem,
    evaluate,
    greedy,
    make_feasible,
)

Algorithm = Literal["default", "genetic"]
ALGORITHMS: tuple[Algorithm, ...] = ("default", "genetic")


@attrs.frozen
class Outcome:
    """A computed plan: pod key -> node, unplaced pod key -> reason, and how it scores."""

    algorithm: Algorithm
    assignments: Mapping[str, str]
    unplaced: Mapping[str, str]
    fitness: float  # F of the assignment, with the GA weights (also for `default`)
    components: Mapping[str, float]  # cpu, memory, balance scores (S_cpu, S_mem, S_bal)
    weights: Mapping[str, float]  # the normalised GA weights F used
    generations: int  # GA generations run (0 for `default`)
    stopped_by: str  # "done", or "budget" when GA_TIME_BUDGET cut the run short
    elapsed_s: float
    eligible_nodes: int  # nodes at least one pod passes filter on


def outcome_of(
    problem: Problem,
    genes: IntArray,
    weights: FitnessWeights,
    *,
    algorithm: Algorithm,
    generations: int = 0,
    stopped_by: str = "done",
    elapsed_s: float = 0.0,
) -> Outcome:
    """Describe a (feasible) assignment: who goes where, who does not and why, the score."""
    ev = evaluate(problem, genes[None, :], weights)
    unplaced: dict[str, str] = {}
    for i, pod in enumerate(problem.pods):
        if genes[i] < 0:
            unplaced[pod.key] = problem.why_unplaceable.get(i) or (
                f"passes filter alone on {int(problem.mask[i].sum())} node(s), but no room is left "
                "on them next to the other pods of this plan"
            )
    w = weights.normalised()
    return Outcome(
        algorithm=algorithm,
        assignments={pod.key: problem.nodes[genes[i]] for i, pod in enumerate(problem.pods) if genes[i] >= 0},
        unplaced=unplaced,
        fitness=float(ev.fitness[0]),
        components={"cpu": float(ev.cpu[0]), "memory": float(ev.memory[0]), "balance": float(ev.balance[0])},
        weights={"cpu": w[0], "memory": w[1], "balance": w[2]},
        generations=generations,
        stopped_by=stopped_by,
        elapsed_s=elapsed_s,
        eligible_nodes=problem.n_nodes,
    )


def solve(
    pods: Sequence[PodDemand],
    candidates: Sequence[Candidate],
    limits: FilterLimits,
    *,
    algorithm: Algorithm,
    score_weights: tuple[float, float],
    fitness_weights: FitnessWeights,
    params: GAParams,
    rng: np.random.Generator,
    budget: Budget,
) -> Outcome:
    """Place `pods` jointly on `candidates`.

    Args:
        score_weights: WEIGHT_CPU, WEIGHT_MEMORY normalised (the S5 score of `default`).
        fitness_weights: GA_WEIGHT_CPU/MEMORY/BALANCE (the GA's objective; also reported
            for `default`, so the two algorithms can be compared on one scale).
        budget: deadline; the GA returns its best so far when it passes.
    """
    started = budget.clock()
    problem = build_problem(pods, candidates, limits)
    first = greedy(problem, score_weights)
    generations, stopped_by = 0, "done"
    genes = first
    if algorithm == "genetic":
        result = evolve(problem, fitness_weights, params, rng, budget, seeds=[first])
        genes, generations, stopped_by = result.genes, result.generations, result.stopped_by
        if evaluate(problem, genes[None, :], fitness_weights).penalised[0] < evaluate(
            problem, first[None, :], fitness_weights
        ).penalised[0]:
            genes = first  # never worse than the greedy it was seeded with
    genes, _ = make_feasible(problem, genes)
    return outcome_of(
        problem,
        genes,
        fitness_weights,
        algorithm=algorithm,
        generations=generations,
        stopped_by=stopped_by,
        elapsed_s=budget.clock() - started,
    )
